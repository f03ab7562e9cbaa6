/**
 * A Hugging Face `tokenizer.json` as a recalign {@link Tokenizer}, read fully offline by
 * `@huggingface/tokenizers` (tokenizers.js: pure JS, no dependencies; the tokenizer core that
 * transformers.js itself runs). The library is imported on first use, so modules that import
 * this file do not pay for it unless a tokenizer is actually loaded.
 *
 * Special tokens follow transformers.js's `PreTrainedTokenizer`: `bos_token`, `eos_token`,
 * `pad_token` (else `eos_token`), `unk_token` from `tokenizer_config.json`; special ids = the
 * added tokens marked special. Tokenizers without a BOS token (Qwen) get `bosId` = pad id, else
 * eos id, and `hasBos` false; without a pad token (Llama 3), `padId` = eos id.
 *
 * @module
 */
import { CheckpointError } from "./errors.ts";
import type { DecodeOptions, Tokenizer } from "./tokenizer.ts";

/** The subset of tokenizers.js's `Tokenizer` this wrapper uses. */
interface TokenizersJs {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], opts: { skip_special_tokens: boolean }): string;
  get_vocab(with_added_tokens?: boolean): Map<string, number>;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_added_tokens_decoder(): Map<number, { special: boolean }>;
}

/** A token string of tokenizer_config.json (a string or an `AddedToken` object), as transformers.js reads it. */
function configToken(config: Record<string, unknown>, ...keys: string[]): string | undefined {
  for (const key of keys) {
    const v = config[key];
    if (!v) continue;
    if (typeof v === "string") return v;
    if (typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
      return (v as { content: string }).content;
    }
  }
  return undefined;
}

function isId(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0;
}

/**
 * A `tokenizer.json` tokenizer. `encode` adds no special tokens; `decode` keeps them unless
 * `skipSpecial`.
 *
 * @example Usage
 * ```ts ignore
 * import { HfTokenizer } from "./tokenizer_hf.ts";
 * const tok = await HfTokenizer.load("/models/Qwen3-0.6B"); // holds tokenizer.json
 * const ids = tok.encode("Hello world");
 * console.assert(tok.decode(ids) === "Hello world");
 * ```
 */
export class HfTokenizer implements Tokenizer {
  /** Highest token id + 1 (the model's embedding table may be larger). */
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  /** Whether the tokenizer defines a BOS token (Qwen does not). */
  readonly hasBos: boolean;
  /** Raw text of `tokenizer.json` and `tokenizer_config.json` (for saving next to a model). */
  readonly files: Readonly<Record<string, string>>;
  private readonly tok: TokenizersJs;
  private readonly specialIds: ReadonlySet<number>;
  private readonly idToTok: Map<number, string>;

  private constructor(
    tok: TokenizersJs,
    config: Record<string, unknown>,
    files: Record<string, string>,
  ) {
    this.tok = tok;
    this.files = Object.freeze({ ...files });
    this.idToTok = new Map();
    let maxId = -1;
    for (const [t, id] of tok.get_vocab(true)) {
      if (id > maxId) maxId = id;
      this.idToTok.set(id, t);
    }
    this.vocabSize = maxId + 1;
    const id = (...keys: string[]) => {
      const t = configToken(config, ...keys);
      return t === undefined ? undefined : tok.token_to_id(t);
    };
    const eos = id("eos_token");
    if (!isId(eos)) {
      throw new CheckpointError('tokenizer has no eos_token (tokenizer_config.json "eos_token")');
    }
    this.eosId = eos;
    const pad = id("pad_token", "eos_token");
    this.padId = isId(pad) ? pad : this.eosId;
    const bos = id("bos_token");
    this.hasBos = isId(bos);
    this.bosId = isId(bos) ? bos : this.padId;
    this.specialIds = new Set(
      [...tok.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([i]) => i),
    );
  }

  /**
   * Load `tokenizer.json` (and `tokenizer_config.json` if present) from a local folder. Never
   * touches the network.
   *
   * @param folder Folder holding `tokenizer.json`.
   * @returns The tokenizer.
   * @throws {CheckpointError} If `tokenizer.json` is missing or the library cannot parse it.
   */
  static async load(folder: string): Promise<HfTokenizer> {
    const files: Record<string, string> = {};
    for (const name of ["tokenizer.json", "tokenizer_config.json"]) {
      try {
        files[name] = await Deno.readTextFile(`${folder.replace(/[\\/]+$/, "")}/${name}`);
      } catch (err) {
        if (name === "tokenizer.json") {
          throw new CheckpointError(
            `${folder}/tokenizer.json: cannot read: ${(err as Error).message}`,
            {
              cause: err,
            },
          );
        }
      }
    }
    let json: unknown;
    let config: Record<string, unknown> = {};
    try {
      json = JSON.parse(files["tokenizer.json"]);
      if (files["tokenizer_config.json"]) config = JSON.parse(files["tokenizer_config.json"]);
    } catch (err) {
      throw new CheckpointError(
        `${folder}: tokenizer files are not valid JSON: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const { Tokenizer } = await import("@huggingface/tokenizers");
    let tok: TokenizersJs;
    try {
      tok = new Tokenizer(json as object, config) as unknown as TokenizersJs;
    } catch (err) {
      throw new CheckpointError(
        `${folder}/tokenizer.json: @huggingface/tokenizers could not read it: ${
          (err as Error).message
        }`,
        { cause: err },
      );
    }
    return new HfTokenizer(tok, config, files);
  }

  /** Text → ids, without special tokens. */
  encode(text: string): number[] {
    return Array.from(this.tok.encode(text, { add_special_tokens: false }).ids);
  }

  /** Ids → text; `skipSpecial` drops special tokens. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    if (ids.length === 0) return ""; // tokenizers.js refuses an empty list
    return this.tok.decode([...ids], { skip_special_tokens: options.skipSpecial ?? false });
  }

  /** The id of a token string (vocabulary or added token). */
  tokenToId(token: string): number | undefined {
    const id = this.tok.token_to_id(token);
    return isId(id) ? id : undefined;
  }

  /** The token string of an id. */
  idToToken(id: number): string | undefined {
    return this.idToTok.get(id) ?? this.tok.id_to_token(id) ?? undefined;
  }

  /** Whether an id is a special token. */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
}
