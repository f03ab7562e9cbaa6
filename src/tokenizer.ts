/**
 * Tokenizers. {@link Tokenizer} is the minimal interface the rest of recalign uses (a
 * Hugging Face `tokenizer.json` wrapper can implement it too); {@link WordTokenizer} is a
 * small word-level tokenizer built from a corpus, for the synthetic world.
 *
 * **Normalisation ({@link normalizeText}).** Text is split on whitespace; the punctuation
 * characters `, ; : . ? ! < > ( )` become tokens of their own; literal special-token strings
 * (`<eos>`, …) are read as those tokens first. Decoding joins tokens with single spaces,
 * except that `, ; : . ? ! ) >` attach to the token before them and the token after `( <`
 * attaches to it. So `decode(encode(t)) === normalizeText(t)`, and text already in normal
 * form — single spaces, no space before `, ; : . ? ! ) >` or after `( <`, one after the rest —
 * round-trips exactly (every world title and world S-DPO prompt does). Case is kept.
 *
 * @module
 */
import { InputError } from "./errors.ts";

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Leave special tokens (`<pad>`, `<bos>`, …) out of the text (default false). */
  skipSpecial?: boolean;
}

/** What recalign needs from a tokenizer. `encode` never adds special tokens. */
export interface Tokenizer {
  /** Number of token ids (ids are 0 … vocabSize − 1). */
  readonly vocabSize: number;
  /** Beginning-of-sequence id. */
  readonly bosId: number;
  /** End-of-sequence id. */
  readonly eosId: number;
  /** Padding id. */
  readonly padId: number;
  /** Text → ids (no BOS/EOS added). */
  encode(text: string): number[];
  /** Ids → text. */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** The id of a token string, if in the vocabulary. */
  tokenToId(token: string): number | undefined;
  /** The token string of an id, if in range. */
  idToToken(id: number): string | undefined;
}

/** The special tokens every {@link WordTokenizer} has, with ids 0, 1, 2, 3. */
export const BASE_SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"] as const;

const PUNCT = /([,;:.?!<>()])/;
const ATTACH_LEFT = new Set([",", ";", ":", ".", "?", "!", ")", ">"]);
const OPEN = new Set(["(", "<"]);

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function longestFirst(xs: readonly string[]): string[] {
  return [...xs].sort((a, b) => b.length - a.length);
}

/** Split text into normalised tokens; `specials` literals are kept whole. */
function splitTokens(text: string, specials: readonly string[]): string[] {
  const pieces = specials.length > 0
    ? text.split(new RegExp(`(${longestFirst(specials).map(escapeRegExp).join("|")})`))
    : [text];
  const special = new Set(specials);
  const out: string[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const p = pieces[i];
    // With a capturing split, odd pieces are the matched specials.
    if (specials.length > 0 && i % 2 === 1 && special.has(p)) {
      out.push(p);
      continue;
    }
    for (const chunk of p.split(/\s+/)) {
      if (chunk === "") continue;
      for (const t of chunk.split(PUNCT)) if (t !== "") out.push(t);
    }
  }
  return out;
}

/** Join tokens by the normalisation rules (see the module doc). */
function joinTokens(tokens: readonly string[]): string {
  let out = "";
  let prevOpen = false;
  for (const t of tokens) {
    if (out === "" || prevOpen || ATTACH_LEFT.has(t)) out += t;
    else out += " " + t;
    prevOpen = OPEN.has(t);
  }
  return out;
}

/**
 * The normal form of a text under {@link WordTokenizer}'s rules (see the module doc):
 * what `decode(encode(text))` gives when every word is in the vocabulary. Idempotent.
 *
 * @example Usage
 * ```ts
 * import { normalizeText } from "./tokenizer.ts";
 * console.assert(normalizeText("a  ,b ( c )  Answer :") === "a, b (c) Answer:");
 * ```
 * @param text Any text.
 * @param specials Special-token literals kept whole (default {@link BASE_SPECIALS}).
 * @returns The normalised text.
 */
export function normalizeText(
  text: string,
  specials: readonly string[] = BASE_SPECIALS,
): string {
  return joinTokens(splitTokens(text, specials));
}

/** Options of {@link WordTokenizer.fromTexts}. */
export interface WordTokenizerOptions {
  /** Extra special tokens after `<pad> <bos> <eos> <unk>` (e.g. `["<sep>"]`). */
  specials?: string[];
  /** Keep words seen at least this often (default 1). */
  minCount?: number;
}

/** JSON form of a {@link WordTokenizer}. */
export interface WordTokenizerJSON {
  /** Always "word". */
  type: "word";
  /** Format version, 1. */
  version: 1;
  /** Special tokens; they are `vocab[0 … specials.length − 1]`, base four first. */
  specials: string[];
  /** Token strings by id. */
  vocab: string[];
}

/**
 * Word-level tokenizer: one id per normalised word or punctuation mark; unknown words map
 * to `<unk>`. Ids: specials first (`<pad>` 0, `<bos>` 1, `<eos>` 2, `<unk>` 3, then extras),
 * then words by corpus count (descending), ties in code-unit order.
 *
 * @example Usage
 * ```ts
 * import { WordTokenizer } from "./tokenizer.ts";
 * const tok = WordTokenizer.fromTexts(["ghost3 night, laser1"]);
 * console.assert(tok.decode(tok.encode("laser1, ghost3")) === "laser1, ghost3");
 * console.assert(tok.encode("zebra")[0] === tok.unkId);
 * ```
 */
export class WordTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly padId = 0;
  readonly bosId = 1;
  readonly eosId = 2;
  /** Id of `<unk>`, used for every word outside the vocabulary. */
  readonly unkId = 3;
  /** The special tokens (ids 0 … specials.length − 1). */
  readonly specials: readonly string[];
  private readonly vocab: readonly string[];
  private readonly ids: Map<string, number>;

  private constructor(vocab: string[], specials: string[]) {
    this.vocab = Object.freeze(vocab.slice());
    this.specials = Object.freeze(specials.slice());
    this.ids = new Map(vocab.map((t, i) => [t, i]));
    this.vocabSize = vocab.length;
  }

  /**
   * Build the vocabulary from a corpus.
   *
   * @param texts Corpus texts (titles, prompts).
   * @param options Extra specials and a minimum count.
   * @returns The tokenizer.
   */
  static fromTexts(texts: Iterable<string>, options: WordTokenizerOptions = {}): WordTokenizer {
    const specials: string[] = [...BASE_SPECIALS, ...(options.specials ?? [])];
    checkSpecials(specials);
    const minCount = options.minCount ?? 1;
    const counts = new Map<string, number>();
    const special = new Set(specials);
    for (const text of texts) {
      for (const t of splitTokens(text, specials)) {
        if (!special.has(t)) counts.set(t, (counts.get(t) ?? 0) + 1);
      }
    }
    const words = [...counts.entries()]
      .filter(([, c]) => c >= minCount)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([w]) => w);
    return new WordTokenizer([...specials, ...words], specials);
  }

  /**
   * Rebuild a tokenizer from {@link toJSON} output (object or JSON string).
   *
   * @param json The JSON form.
   * @returns The tokenizer.
   * @throws {InputError} When the JSON is not a valid word tokenizer.
   */
  static fromJSON(json: WordTokenizerJSON | string): WordTokenizer {
    let obj: WordTokenizerJSON;
    try {
      obj = typeof json === "string" ? JSON.parse(json) : json;
    } catch (e) {
      throw new InputError("json", `not valid JSON: ${(e as Error).message}`, { cause: e });
    }
    if (obj?.type !== "word" || obj.version !== 1) {
      throw new InputError(
        "json",
        `expected type "word", version 1; got type ${JSON.stringify(obj?.type)}, version ${
          JSON.stringify(obj?.version)
        }`,
      );
    }
    const { vocab, specials } = obj;
    if (!Array.isArray(vocab) || !vocab.every((t) => typeof t === "string" && t !== "")) {
      throw new InputError("json", `field "vocab": expected an array of non-empty strings`);
    }
    if (!Array.isArray(specials)) {
      throw new InputError("json", `field "specials": expected an array of strings`);
    }
    checkSpecials(specials);
    specials.forEach((s, i) => {
      if (vocab[i] !== s) {
        throw new InputError(
          "json",
          `field "vocab": expected special "${s}" at id ${i}, got ${JSON.stringify(vocab[i])}`,
        );
      }
    });
    if (new Set(vocab).size !== vocab.length) {
      throw new InputError("json", `field "vocab": duplicate tokens`);
    }
    return new WordTokenizer(vocab, specials);
  }

  /** The JSON form (vocabulary by id and the special tokens). */
  toJSON(): WordTokenizerJSON {
    return { type: "word", version: 1, specials: [...this.specials], vocab: [...this.vocab] };
  }

  /**
   * The same tokenizer as Hugging Face files: `tokenizer.json` (a `WordLevel` model with these
   * ids; specials as added tokens; pre-tokenizer = split on whitespace, then punctuation
   * `, ; : . ? ! < > ( )` isolated; a post-processor that puts `<bos>` first, as recalign's
   * prompts start; a decoder that joins by the normalisation rules) and `tokenizer_config.json`
   * (the special tokens). `transformers.AutoTokenizer`, `tokenizers.Tokenizer.from_file` and
   * transformers.js read them; encoding without special tokens gives {@link encode}'s ids and
   * decoding gives {@link decode}'s text.
   *
   * @returns The two files' JSON objects, by file name.
   */
  toHuggingFace(): {
    "tokenizer.json": Record<string, unknown>;
    "tokenizer_config.json": Record<string, unknown>;
  } {
    const vocab: Record<string, number> = {};
    this.vocab.forEach((t, i) => vocab[t] = i);
    const regex = (p: string) => ({ Regex: p });
    // Decoding: a marker before tokens that attach to the left and after `(`/`<`; the WordPiece
    // decoder puts a space before every token except those starting with the marker; then the
    // spaces after an opener and the markers are removed.
    const L = "\uE000", R = "\uE001";
    const esc = (c: string) => c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const decoders: Record<string, unknown>[] = [
      ...[...ATTACH_LEFT].map((c) => ({
        type: "Replace",
        pattern: regex(`^${esc(c)}$`),
        content: L + c,
      })),
      ...[...OPEN].map((c) => ({ type: "Replace", pattern: regex(`^${esc(c)}$`), content: c + R })),
      { type: "WordPiece", prefix: L, cleanup: false },
      { type: "Fuse" },
      { type: "Replace", pattern: { String: R + " " }, content: "" },
      { type: "Replace", pattern: regex(`[${L}${R}]`), content: "" },
    ];
    const bos = BASE_SPECIALS[1];
    return {
      "tokenizer.json": {
        version: "1.0",
        truncation: null,
        padding: null,
        added_tokens: this.specials.map((content, id) => ({
          id,
          content,
          single_word: false,
          lstrip: false,
          rstrip: false,
          normalized: false,
          special: true,
        })),
        normalizer: null,
        pre_tokenizer: {
          type: "Sequence",
          pretokenizers: [
            { type: "WhitespaceSplit" },
            {
              type: "Split",
              pattern: regex(PUNCT.source.slice(1, -1)),
              behavior: "Isolated",
              invert: false,
            },
          ],
        },
        post_processor: {
          type: "TemplateProcessing",
          single: [
            { SpecialToken: { id: bos, type_id: 0 } },
            { Sequence: { id: "A", type_id: 0 } },
          ],
          pair: [
            { SpecialToken: { id: bos, type_id: 0 } },
            { Sequence: { id: "A", type_id: 0 } },
            { Sequence: { id: "B", type_id: 0 } },
          ],
          special_tokens: { [bos]: { id: bos, ids: [this.bosId], tokens: [bos] } },
        },
        decoder: { type: "Sequence", decoders },
        model: { type: "WordLevel", vocab, unk_token: BASE_SPECIALS[3] },
      },
      "tokenizer_config.json": {
        tokenizer_class: "PreTrainedTokenizerFast",
        bos_token: BASE_SPECIALS[1],
        eos_token: BASE_SPECIALS[2],
        unk_token: BASE_SPECIALS[3],
        pad_token: BASE_SPECIALS[0],
        additional_special_tokens: this.specials.slice(BASE_SPECIALS.length),
        clean_up_tokenization_spaces: false,
      },
    };
  }

  /** Normalised token strings of a text (before id lookup). */
  tokenize(text: string): string[] {
    return splitTokens(text, this.specials);
  }

  /** Text → ids; unknown words → {@link unkId}; no BOS/EOS added. */
  encode(text: string): number[] {
    return this.tokenize(text).map((t) => this.ids.get(t) ?? this.unkId);
  }

  /** Ids → text, joined by the normalisation rules; `skipSpecial` drops special tokens. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const n = this.specials.length;
    const toks: string[] = [];
    for (const id of ids) {
      const t = this.vocab[id];
      if (t === undefined || !Number.isInteger(id)) {
        throw new InputError("ids", `expected token ids in [0, ${this.vocabSize}), got ${id}`);
      }
      if (options.skipSpecial && id < n) continue;
      toks.push(t);
    }
    return joinTokens(toks);
  }

  /** The id of a token string, if in the vocabulary. */
  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }

  /** The token string of an id, if in range. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) ? this.vocab[id] : undefined;
  }
}

function checkSpecials(specials: readonly string[]): void {
  BASE_SPECIALS.forEach((s, i) => {
    if (specials[i] !== s) {
      throw new InputError(
        "specials",
        `expected "${s}" at position ${i}, got ${JSON.stringify(specials[i])}`,
      );
    }
  });
  if (new Set(specials).size !== specials.length) {
    throw new InputError("specials", `duplicate special tokens in [${specials.join(", ")}]`);
  }
  for (const s of specials) {
    if (typeof s !== "string" || s === "" || /\s/.test(s)) {
      throw new InputError("specials", `expected non-empty tokens without spaces, got "${s}"`);
    }
  }
}
