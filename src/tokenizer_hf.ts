/**
 * A Hugging Face `tokenizer.json` as a recalign {@link Tokenizer}, loaded fully offline through
 * `@huggingface/transformers` (`AutoTokenizer.from_pretrained` on a local folder, remote models
 * off, no file cache). The library is imported on first use, so modules that import this file
 * do not pay for it unless a tokenizer is actually loaded.
 *
 * Special ids come from the tokenizer (`tokenizer_config.json` and `tokenizer.json`'s added
 * tokens). Tokenizers without a BOS token (Qwen) get `bosId` = pad id, else eos id, and
 * `hasBos` false; without a pad token (Llama 3), `padId` = eos id.
 *
 * @module
 */
import { CheckpointError } from "./errors.ts";
import type { DecodeOptions, Tokenizer } from "./tokenizer.ts";

/** The subset of transformers' tokenizer object this wrapper uses. */
interface HfTokenizerObject {
  encode(text: string, opts: { add_special_tokens: boolean }): number[];
  decode(ids: number[], opts: { skip_special_tokens: boolean }): string;
  get_vocab(): Map<string, number> | Record<string, number>;
  bos_token_id?: number | null;
  eos_token_id?: number | null;
  pad_token_id?: number | null;
  unk_token_id?: number | null;
  all_special_ids?: number[];
  _tokenizer?: {
    token_to_id?(token: string): number | undefined;
    id_to_token?(id: number): string | undefined;
  };
}

function splitFolder(folder: string): { parent: string; name: string } {
  const clean = folder.replace(/[\\/]+$/, "");
  const i = Math.max(clean.lastIndexOf("/"), clean.lastIndexOf("\\"));
  if (i < 0) return { parent: "./", name: clean };
  return { parent: clean.slice(0, i + 1) || "/", name: clean.slice(i + 1) };
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
  private readonly tok: HfTokenizerObject;
  private readonly specialIds: ReadonlySet<number>;
  private readonly idToTok: Map<number, string>;

  private constructor(tok: HfTokenizerObject, files: Record<string, string>) {
    this.tok = tok;
    this.files = Object.freeze({ ...files });
    const vocab = tok.get_vocab();
    const entries = vocab instanceof Map ? [...vocab.entries()] : Object.entries(vocab);
    this.idToTok = new Map();
    let maxId = -1;
    for (const [t, id] of entries) {
      if (id > maxId) maxId = id;
      this.idToTok.set(id, t);
    }
    this.vocabSize = maxId + 1;
    if (!isId(tok.eos_token_id)) {
      throw new CheckpointError('tokenizer has no eos_token (tokenizer_config.json "eos_token")');
    }
    this.eosId = tok.eos_token_id;
    this.padId = isId(tok.pad_token_id) ? tok.pad_token_id : this.eosId;
    this.hasBos = isId(tok.bos_token_id);
    this.bosId = isId(tok.bos_token_id) ? tok.bos_token_id : this.padId;
    this.specialIds = new Set(tok.all_special_ids ?? []);
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
    const { AutoTokenizer, env } = await import("@huggingface/transformers");
    const { parent, name } = splitFolder(folder);
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = parent;
    env.useFSCache = false;
    env.useBrowserCache = false;
    let tok: HfTokenizerObject;
    try {
      tok = await AutoTokenizer.from_pretrained(name, {
        local_files_only: true,
      }) as unknown as HfTokenizerObject;
    } catch (err) {
      throw new CheckpointError(
        `${folder}: @huggingface/transformers could not load the tokenizer: ${
          (err as Error).message
        }`,
        { cause: err },
      );
    }
    return new HfTokenizer(tok, files);
  }

  /** Text → ids, without special tokens. */
  encode(text: string): number[] {
    return Array.from(this.tok.encode(text, { add_special_tokens: false }));
  }

  /** Ids → text; `skipSpecial` drops special tokens. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    return this.tok.decode([...ids], { skip_special_tokens: options.skipSpecial ?? false });
  }

  /** The id of a token string (vocabulary or added token). */
  tokenToId(token: string): number | undefined {
    const id = this.tok._tokenizer?.token_to_id?.(token);
    return isId(id) ? id : undefined;
  }

  /** The token string of an id. */
  idToToken(id: number): string | undefined {
    return this.idToTok.get(id) ?? this.tok._tokenizer?.id_to_token?.(id) ?? undefined;
  }

  /** Whether an id is a special token. */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
}
