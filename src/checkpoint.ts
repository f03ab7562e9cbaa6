/**
 * Real checkpoints: load a Hugging Face model folder (Llama, Qwen2, Qwen3) into a
 * {@link LlamaModel}, and save a model (e.g. after merging LoRA) back in the same layout.
 *
 * A folder holds `config.json`, `model.safetensors` or `model.safetensors.index.json` with its
 * shards (F32, F16 or BF16; everything becomes float32), and optionally `tokenizer.json` (read
 * offline by {@link HfTokenizer}). Before any tensor data is read, the headers are checked:
 * every tensor the config implies must be there with its exact shape; known extras (rotary
 * `inv_freq` buffers, a tied `lm_head.weight`) are skipped; unknown extras are reported. The
 * float32 memory the model will take is estimated first and the load refused when it exceeds a
 * budget.
 *
 * Config mapping (HF → {@link LlamaConfig}): Qwen2 has q/k/v biases (`attention_bias` true);
 * Qwen3 has per-head q/k RMSNorm (`qk_norm` true) and an explicit `head_dim`. RoPE scaling,
 * sliding windows, MLP biases and o_proj biases are not implemented and are refused.
 *
 * References: HF `transformers/models/{llama,qwen2,qwen3}/configuration_*.py`.
 *
 * @module
 */
import { ensureBackend, tf } from "./backend.ts";
import { CheckpointError, ConfigError } from "./errors.ts";
import { ensureDir, writeJsonAtomic } from "./io.ts";
import { headDim, type LlamaConfig, LlamaModel, validateConfig } from "./model.ts";
import {
  type HeaderEntry,
  loadSafetensors,
  readSafetensorsHeader,
  readShardIndex,
  SHARD_INDEX_FILE,
  type TensorRecord,
  writeSafetensors,
} from "./safetensors.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { WordTokenizer } from "./tokenizer.ts";
import { HfTokenizer } from "./tokenizer_hf.ts";

/** HF architectures recalign loads, with their `model_type`. */
export const SUPPORTED_ARCHITECTURES: Readonly<Record<string, string>> = {
  LlamaForCausalLM: "llama",
  Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3",
};

/** Bytes per parameter assumed by {@link estimateModelBytes}: float32 × ~2.2 (W and Wᵀ kept). */
export const BYTES_PER_PARAM = 4 * 2.2;

/** File recalign writes for a non-HF ({@link WordTokenizer}) tokenizer. */
export const RECALIGN_TOKENIZER_FILE = "recalign_tokenizer.json";

/** Options of {@link loadPretrained}. */
export interface LoadPretrainedOptions {
  /**
   * Refuse to load when the estimated float32 memory exceeds this many bytes. Default: 75% of
   * the machine's memory when `Deno.systemMemoryInfo()` is allowed, else no limit.
   */
  maxBytes?: number;
  /** Load the tokenizer if the folder has one (default true). */
  tokenizer?: boolean;
  /**
   * Cap `max_position_embeddings` (the RoPE table length) — real configs say 32k–128k
   * positions, far more than recalign's prompts need.
   */
  maxPositions?: number;
  /** Called once with the names of unknown extra tensors (default: `console.warn`). */
  onUnknownTensors?: (names: string[]) => void;
}

/** What {@link loadPretrained} returns. */
export interface Pretrained {
  model: LlamaModel;
  /** The tokenizer, when the folder has `tokenizer.json` (or a recalign tokenizer file). */
  tokenizer?: Tokenizer;
  config: LlamaConfig;
  /** Tensors in the checkpoint that the model does not use and recalign does not know. */
  unknownTensors: string[];
}

/** Options of {@link saveModel}. */
export interface SaveModelOptions {
  /** Storage dtype of the weights (default F32; BF16 halves the file). */
  dtype?: "F32" | "BF16";
}

type Json = Record<string, unknown>;

function isObject(x: unknown): x is Json {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function supportedList(): string {
  return Object.entries(SUPPORTED_ARCHITECTURES).map(([a, t]) => `${a} (model_type "${t}")`)
    .join(", ");
}

/**
 * Map a Hugging Face `config.json` object to a {@link LlamaConfig}.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { configFromHf } from "./checkpoint.ts";
 * const cfg = configFromHf({
 *   architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", vocab_size: 64, hidden_size: 16,
 *   intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1,
 * });
 * assert.equal(cfg.attention_bias, true);
 * ```
 *
 * @param hf The parsed `config.json`.
 * @param source Name for error messages (the file).
 * @returns The config.
 * @throws {CheckpointError} On an unsupported architecture (naming it and the supported ones),
 *   a missing or non-numeric field, or a feature recalign does not implement.
 */
export function configFromHf(hf: Json, source = "config.json"): LlamaConfig {
  const archs = Array.isArray(hf.architectures) ? hf.architectures.map(String) : [];
  const modelType = typeof hf.model_type === "string" ? hf.model_type : undefined;
  let type: string | undefined;
  if (archs.length > 0) {
    const known = archs.find((a) => a in SUPPORTED_ARCHITECTURES);
    if (!known) {
      throw new CheckpointError(
        `${source}: unsupported architecture ${archs.map((a) => `"${a}"`).join(", ")}${
          modelType ? ` (model_type "${modelType}")` : ""
        }; supported: ${supportedList()}`,
      );
    }
    type = SUPPORTED_ARCHITECTURES[known];
  } else if (modelType && Object.values(SUPPORTED_ARCHITECTURES).includes(modelType)) {
    type = modelType;
  } else {
    throw new CheckpointError(
      `${source}: unsupported model_type ${
        modelType ? `"${modelType}"` : "(none) and no architectures"
      }; supported: ${supportedList()}`,
    );
  }
  const num = (field: string, fallback?: number): number => {
    const v = hf[field] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new CheckpointError(
        `${source}: field "${field}" should be a number, got ${JSON.stringify(hf[field])}`,
      );
    }
    return v;
  };
  const refuse = (field: string, why: string): never => {
    throw new CheckpointError(
      `${source}: field "${field}" = ${JSON.stringify(hf[field])}: ${why} is not supported`,
    );
  };
  const act = hf.hidden_act ?? hf.hidden_activation ?? "silu";
  if (act !== "silu") refuse("hidden_act", `activation ${JSON.stringify(act)} (only "silu")`);
  if (hf.mlp_bias === true) refuse("mlp_bias", "a bias on the MLP projections");
  const ropeParams = isObject(hf.rope_parameters) ? hf.rope_parameters : undefined;
  const scaling = hf.rope_scaling ?? undefined;
  if (isObject(scaling) && (scaling.rope_type ?? scaling.type ?? "default") !== "default") {
    refuse("rope_scaling", "RoPE scaling");
  }
  if (ropeParams && (ropeParams.rope_type ?? "default") !== "default") {
    refuse("rope_parameters", "RoPE scaling");
  }
  if (hf.use_sliding_window === true) refuse("use_sliding_window", "sliding-window attention");
  // Llama and Qwen3 put attention_bias on o_proj too; only Qwen2's q/k/v biases are implemented.
  if (type !== "qwen2" && hf.attention_bias === true) {
    refuse("attention_bias", `a bias on every attention projection (incl. o_proj) for ${type}`);
  }
  const heads = num("num_attention_heads");
  const cfg: LlamaConfig = {
    vocab_size: num("vocab_size"),
    hidden_size: num("hidden_size"),
    intermediate_size: num("intermediate_size"),
    num_hidden_layers: num("num_hidden_layers"),
    num_attention_heads: heads,
    num_key_value_heads: num("num_key_value_heads", heads),
    rope_theta: num(
      "rope_theta",
      typeof ropeParams?.rope_theta === "number" ? ropeParams.rope_theta : 10000,
    ),
    rms_norm_eps: num("rms_norm_eps", 1e-6),
    tie_word_embeddings: hf.tie_word_embeddings === true,
    max_position_embeddings: num("max_position_embeddings", type === "llama" ? 2048 : 32768),
    initializer_range: num("initializer_range", 0.02),
    model_type: type,
  };
  if (hf.head_dim !== undefined && hf.head_dim !== null) cfg.head_dim = num("head_dim");
  if (type === "qwen2") cfg.attention_bias = true;
  if (type === "qwen3") cfg.qk_norm = true;
  try {
    validateConfig(cfg); // negative, zero or fractional sizes, heads that do not divide, …
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new CheckpointError(
      `${source}: field "${err.field}" = ${JSON.stringify(hf[err.field] ?? null)}: ${
        err.message.replace(/^config "[^"]*": /, "")
      }`,
      { cause: err },
    );
  }
  return cfg;
}

/** The HF model_type a config is saved as (from its features). */
function hfTypeOf(cfg: LlamaConfig): string {
  if (cfg.qk_norm) {
    if (cfg.attention_bias) {
      throw new CheckpointError(
        "config: qk_norm together with attention_bias has no Hugging Face architecture",
      );
    }
    return "qwen3";
  }
  return cfg.attention_bias ? "qwen2" : "llama";
}

/**
 * A {@link LlamaConfig} as a Hugging Face `config.json` object (model_type and architectures
 * from its features: qk_norm → Qwen3, attention_bias → Qwen2, else Llama).
 *
 * @param cfg The config.
 * @param extra Fields to add (e.g. `torch_dtype`, token ids).
 * @returns The JSON object.
 */
export function configToHf(cfg: LlamaConfig, extra: Json = {}): Json {
  const type = hfTypeOf(cfg);
  const arch = Object.keys(SUPPORTED_ARCHITECTURES).find((a) =>
    SUPPORTED_ARCHITECTURES[a] === type
  )!;
  const out: Json = {
    architectures: [arch],
    model_type: type,
    vocab_size: cfg.vocab_size,
    hidden_size: cfg.hidden_size,
    intermediate_size: cfg.intermediate_size,
    num_hidden_layers: cfg.num_hidden_layers,
    num_attention_heads: cfg.num_attention_heads,
    num_key_value_heads: cfg.num_key_value_heads,
    head_dim: headDim(cfg),
    hidden_act: "silu",
    rope_theta: cfg.rope_theta,
    rope_scaling: null,
    rms_norm_eps: cfg.rms_norm_eps,
    tie_word_embeddings: cfg.tie_word_embeddings,
    max_position_embeddings: cfg.max_position_embeddings,
    initializer_range: cfg.initializer_range ?? 0.02,
    attention_dropout: 0,
    use_cache: true,
  };
  if (type === "llama") Object.assign(out, { attention_bias: false, mlp_bias: false });
  if (type === "qwen3") out.attention_bias = false;
  if (type !== "llama") {
    Object.assign(out, { use_sliding_window: false, sliding_window: null });
  }
  return { ...out, ...extra };
}

/** Number of parameters a config implies (a tied head counted once). */
export function parameterCountOf(cfg: LlamaConfig): number {
  return LlamaModel.weightShapes(cfg).reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
}

/**
 * Estimated bytes a model takes once loaded: params × 4 (float32) × ~2.2, since every linear
 * keeps W and Wᵀ and a tied head its own copy.
 *
 * @param cfg The config.
 * @returns Bytes.
 */
export function estimateModelBytes(cfg: LlamaConfig): number {
  return Math.ceil(parameterCountOf(cfg) * BYTES_PER_PARAM);
}

function defaultMaxBytes(): number {
  try {
    const total = Deno.systemMemoryInfo().total;
    return total > 0 ? total * 0.75 : Infinity;
  } catch {
    return Infinity; // no --allow-sys: no limit
  }
}

function gib(n: number): string {
  return `${(n / 2 ** 30).toFixed(n < 2 ** 30 ? 4 : 2)} GiB (${Math.round(n)} bytes)`;
}

/** Tensors some checkpoints carry that a model never needs. */
function isKnownExtra(name: string, cfg: LlamaConfig): boolean {
  if (name.endsWith("rotary_emb.inv_freq")) return true;
  if (name.endsWith(".masked_bias") || name.endsWith("attn.bias")) return true;
  return cfg.tie_word_embeddings && name === "lm_head.weight";
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then((s) => s.isFile, () => false);
}

/** Every tensor header of the folder's checkpoint, with the file it lives in. */
async function readHeaders(
  folder: string,
): Promise<Map<string, { entry: HeaderEntry; file: string }>> {
  const out = new Map<string, { entry: HeaderEntry; file: string }>();
  const index = `${folder}/${SHARD_INDEX_FILE}`;
  const single = `${folder}/model.safetensors`;
  if (await exists(index)) {
    const { weightMap } = await readShardIndex(index);
    const shards = [...new Set(Object.values(weightMap))];
    for (const shard of shards) {
      const file = `${folder}/${shard}`;
      const h = await readSafetensorsHeader(file);
      for (const [name, entry] of Object.entries(h.tensors)) {
        if (weightMap[name] === shard) out.set(name, { entry, file });
      }
    }
    for (const [name, shard] of Object.entries(weightMap)) {
      if (!out.has(name)) {
        throw new CheckpointError(
          `${index}: tensor "${name}" is mapped to shard "${shard}" but that file does not hold it`,
        );
      }
    }
  } else if (await exists(single)) {
    const h = await readSafetensorsHeader(single);
    for (const [name, entry] of Object.entries(h.tensors)) out.set(name, { entry, file: single });
  } else {
    throw new CheckpointError(
      `${folder}: has neither model.safetensors nor ${SHARD_INDEX_FILE}`,
    );
  }
  return out;
}

/**
 * Load a Hugging Face model folder (Llama, Qwen2 or Qwen3): config, weights (float32) and,
 * when present, the tokenizer. Nothing touches the network.
 *
 * @example Usage
 * ```ts ignore
 * import { loadPretrained } from "./checkpoint.ts";
 * const { model, tokenizer } = await loadPretrained("/models/Qwen3-0.6B", { maxPositions: 2048 });
 * const logits = model.logits([tokenizer!.encode("Hello")]);
 * ```
 *
 * @param folder The model folder.
 * @param opts Memory budget, tokenizer, RoPE table cap, unknown-tensor callback.
 * @returns Model, tokenizer, config and the unknown extra tensors.
 * @throws {CheckpointError} On a missing `config.json` (naming the path), an unsupported
 *   architecture (naming it and listing the supported ones), a missing or mis-shaped tensor
 *   (naming it and both shapes), an unsupported dtype, or an estimate over `maxBytes` (stating
 *   the estimate).
 */
export async function loadPretrained(
  folder: string,
  opts: LoadPretrainedOptions = {},
): Promise<Pretrained> {
  await ensureBackend();
  const dir = folder.replace(/[\\/]+$/, "");
  const configPath = `${dir}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(configPath);
  } catch (err) {
    throw new CheckpointError(`${configPath}: cannot read config.json: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let hf: unknown;
  try {
    hf = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(`${configPath}: not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!isObject(hf)) throw new CheckpointError(`${configPath}: expected a JSON object`);
  const config = configFromHf(hf, configPath);
  if (opts.maxPositions !== undefined) {
    config.max_position_embeddings = Math.min(config.max_position_embeddings, opts.maxPositions);
  }

  const estimate = estimateModelBytes(config);
  const maxBytes = opts.maxBytes ?? defaultMaxBytes();
  if (estimate > maxBytes) {
    throw new CheckpointError(
      `${dir}: model of ${parameterCountOf(config)} parameters needs an estimated ${
        gib(estimate)
      } as float32 (params × 4 bytes × 2.2), over the limit of ${gib(maxBytes)}`,
    );
  }

  const headers = await readHeaders(dir);
  const expected = LlamaModel.weightShapes(config);
  for (const [name, shape] of expected) {
    const h = headers.get(name);
    if (!h) {
      throw new CheckpointError(
        `${dir}: tensor "${name}" (expected shape [${shape}]) is missing from the checkpoint`,
      );
    }
    const got = h.entry.shape;
    if (got.length !== shape.length || got.some((s, i) => s !== shape[i])) {
      throw new CheckpointError(
        `${h.file}: tensor "${name}" has shape [${got}], expected [${shape}]`,
      );
    }
    if (!["F32", "F16", "BF16"].includes(h.entry.dtype)) {
      throw new CheckpointError(
        `${h.file}: tensor "${name}" has dtype ${h.entry.dtype}; expected F32, F16 or BF16`,
      );
    }
  }
  const wanted = new Set(expected.map(([n]) => n));
  const unknownTensors = [...headers.keys()].filter((n) =>
    !wanted.has(n) && !isKnownExtra(n, config)
  ).sort();
  if (unknownTensors.length > 0) {
    (opts.onUnknownTensors ??
      ((names) =>
        console.warn(
          `${dir}: ${names.length} tensor(s) not used by the model: ${names.join(", ")}`,
        )))(unknownTensors);
  }

  const { tensors } = await loadSafetensors(dir, { names: [...wanted] });
  const weights = new Map<string, tf.Tensor>();
  let model: LlamaModel;
  try {
    for (const [name, shape] of expected) {
      const rec = tensors[name];
      weights.set(name, tf.tensor(rec.data as Float32Array, shape, "float32"));
      delete tensors[name]; // let the host copy go
    }
    model = LlamaModel.fromWeights(config, weights);
  } catch (err) {
    for (const t of weights.values()) if (!t.isDisposed) t.dispose();
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(`${dir}: ${(err as Error).message}`, { cause: err });
  }

  let tokenizer: Tokenizer | undefined;
  if (opts.tokenizer !== false) {
    try {
      // A model saved by recalign with a word tokenizer has both files; the word tokenizer is
      // the original (its tokenizer.json is the same tokenizer for other libraries).
      if (await exists(`${dir}/${RECALIGN_TOKENIZER_FILE}`)) {
        tokenizer = WordTokenizer.fromJSON(
          await Deno.readTextFile(`${dir}/${RECALIGN_TOKENIZER_FILE}`),
        );
      } else if (await exists(`${dir}/tokenizer.json`)) tokenizer = await HfTokenizer.load(dir);
    } catch (err) {
      model.dispose();
      throw err;
    }
  }
  return { model, tokenizer, config: { ...config }, unknownTensors };
}

/** Whether two tensors hold the same values, bit for bit. */
function sameValues(a: tf.Tensor, b: tf.Tensor): boolean {
  const x = new Uint32Array((a.dataSync() as Float32Array).slice().buffer);
  const y = new Uint32Array((b.dataSync() as Float32Array).slice().buffer);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * Save a model in Hugging Face layout: `config.json` (with model_type and architectures) and
 * `model.safetensors`, plus the tokenizer when given (`tokenizer.json` and
 * `tokenizer_config.json` of an {@link HfTokenizer}; a {@link WordTokenizer} as
 * `recalign_tokenizer.json`, which recalign loads, and as the same tokenizer in Hugging Face's
 * `tokenizer.json` / `tokenizer_config.json`, which other libraries load). Adapters must be merged first (`model.mergeAndUnloadLora()`), or
 * saved apart with `saveAdapter`. A tied LM head that no longer equals the embedding (a LoRA
 * merged into it) is saved untied.
 *
 * @example Usage
 * ```ts ignore
 * import { saveModel } from "./checkpoint.ts";
 * model.mergeAndUnloadLora();
 * await saveModel(model, "runs/merged", tokenizer, { dtype: "BF16" });
 * ```
 *
 * @param model The model.
 * @param folder Target folder (created if needed).
 * @param tokenizer Optional tokenizer to save alongside.
 * @param opts Storage dtype.
 * @throws {CheckpointError} If the model has unmerged adapters.
 */
export async function saveModel(
  model: LlamaModel,
  folder: string,
  tokenizer?: Tokenizer,
  opts: SaveModelOptions = {},
): Promise<void> {
  const unmerged = [...model.linears()].filter(([, l]) => l.adapter && !l.merged).map(([n]) => n);
  if (unmerged.length > 0) {
    throw new CheckpointError(
      `saveModel(): ${unmerged.length} layer(s) have unmerged LoRA adapters (first: "${
        unmerged[0]
      }"); call model.mergeAndUnloadLora() first, or save them with saveAdapter()`,
    );
  }
  if (tokenizer && !(tokenizer instanceof HfTokenizer) && !(tokenizer instanceof WordTokenizer)) {
    throw new CheckpointError(
      "saveModel(): can save an HfTokenizer or a WordTokenizer, got another Tokenizer",
    );
  }
  const dir = folder.replace(/[\\/]+$/, "");
  await ensureDir(dir);
  const dtype = opts.dtype ?? "F32";
  const cfg: LlamaConfig = { ...model.config };
  const weights = model.namedWeights();
  try {
    if (cfg.tie_word_embeddings) {
      const head = model.lmHead.weight();
      if (!sameValues(head, weights.get("model.embed_tokens.weight")!)) {
        cfg.tie_word_embeddings = false;
        weights.set("lm_head.weight", tf.clone(head));
      }
      if (model.lmHead.baseTrainable) head.dispose();
    }
    const records: Record<string, TensorRecord> = {};
    for (const [name, t] of weights) {
      records[name] = {
        dtype,
        shape: [...t.shape],
        data: new Float32Array(await t.data() as Float32Array),
      };
    }
    const extra: Json = { torch_dtype: dtype === "BF16" ? "bfloat16" : "float32" };
    if (tokenizer) {
      extra.eos_token_id = tokenizer.eosId;
      extra.pad_token_id = tokenizer.padId;
      if (!(tokenizer instanceof HfTokenizer) || tokenizer.hasBos) {
        extra.bos_token_id = tokenizer.bosId;
      }
    }
    await writeSafetensors(`${dir}/model.safetensors`, records, { format: "pt" });
    await writeJsonAtomic(`${dir}/config.json`, configToHf(cfg, extra));
  } finally {
    for (const t of weights.values()) t.dispose();
  }
  if (tokenizer instanceof HfTokenizer) {
    for (const [name, text] of Object.entries(tokenizer.files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
  } else if (tokenizer instanceof WordTokenizer) {
    await writeJsonAtomic(`${dir}/${RECALIGN_TOKENIZER_FILE}`, tokenizer.toJSON());
    for (const [name, json] of Object.entries(tokenizer.toHuggingFace())) {
      await writeJsonAtomic(`${dir}/${name}`, json);
    }
  }
}
