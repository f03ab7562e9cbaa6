/**
 * Your own base LM for the experiments: a Hugging Face Llama / Qwen2 / Qwen3 folder
 * (`config.json`, safetensors, `tokenizer.json`) loaded with `loadPretrained` instead of the
 * small random LM of the synthetic world.
 *
 * ```ts ignore
 * import { useBaseModel } from "../src/experiments/pretrained.ts";
 * await useBaseModel(Deno.env.get("RECALIGN_MODEL")); // undefined or "": the synthetic LM
 * const r = await sdpo.run({ scale: "tiny", seeds: [0] });
 * ```
 *
 * With a base model set, the experiments encode prompts and responses with the model's own
 * tokenizer (no BOS when it has none; a response is encoded as `" " + text` followed by EOS),
 * stage 0 is a LoRA SFT (r 8, α 16, all seven projections) on the stage-0 prompts merged into
 * the pretrained weights (merge-and-unload), and every preference arm trains a fresh LoRA
 * adapter on top — the papers' recipe. `deno task reproduce --model <folder>` sets it (or
 * `RECALIGN_MODEL=<folder>`). Nothing is downloaded: the folder must hold the files.
 *
 * @module
 */
import { loadPretrained, RECALIGN_TOKENIZER_FILE } from "../checkpoint.ts";
import { CheckpointError } from "../errors.ts";
import { sha256Hex } from "../io.ts";
import type { LlamaConfig } from "../model.ts";
import type { Tokenizer } from "../tokenizer.ts";
import { HfTokenizer } from "../tokenizer_hf.ts";
import type { TrainExample } from "../train.ts";
import {
  type BaseSnapshot,
  baseSnapshot,
  disposeSnapshot,
  loraConfig,
  type Scale,
  type Snapshot,
  snapshot,
  type StageOptions,
} from "./common.ts";
import { examplesHash, fingerprint, runFolders, runStage, setFingerprint } from "./runs.ts";

/** Environment variable naming a base model folder (read by reproduce and the notebooks). */
export const MODEL_ENV = "RECALIGN_MODEL";

/** Positions kept in the RoPE table of a loaded model (prompts here are far shorter). */
export const MAX_POSITIONS = 4096;

/** A loaded base model. */
export interface BaseModel {
  /** The folder, as given. */
  folder: string;
  /** Its `config.json`, parsed. */
  hfConfig: Record<string, unknown>;
  /** The model config (RoPE table capped at {@link MAX_POSITIONS}). */
  config: LlamaConfig;
  /** Its tokenizer. */
  tokenizer: Tokenizer;
  /** The pretrained weights (owned here). */
  weights: Snapshot;
  /** SHA-256 of the weights (names, shapes, float32 bytes). */
  fingerprint: string;
  /** SHA-256 of each tokenizer file. */
  tokenizerFiles: Record<string, string>;
}

let current: BaseModel | undefined;

/**
 * Load a Hugging Face model folder as the base LM of every experiment of this process
 * (`undefined` or `""`: back to the synthetic world's small random LM). Loading the folder
 * that is already loaded does nothing.
 *
 * @param folder The model folder (`config.json`, `model.safetensors` or a sharded index,
 *   `tokenizer.json`, or the `recalign_tokenizer.json` of a model saved by recalign).
 * @returns The base model, or undefined.
 * @throws {CheckpointError} Naming the file and field: no `config.json`, an unsupported
 *   architecture, a missing tensor, no `tokenizer.json`, a `vocab_size` smaller than the
 *   tokenizer's ids.
 */
export async function useBaseModel(folder?: string): Promise<BaseModel | undefined> {
  const dir = folder?.replace(/[\\/]+$/, "");
  if (!dir) {
    clearBaseModel();
    return undefined;
  }
  if (current?.folder === dir) return current;
  const lm = await loadBaseModel(dir);
  clearBaseModel();
  current = lm;
  return lm;
}

/** The base model set by {@link useBaseModel}, if any. */
export function currentBaseModel(): BaseModel | undefined {
  return current;
}

/** Forget the base model (frees its weights). */
export function clearBaseModel(): void {
  if (current) disposeSnapshot(current.weights);
  current = undefined;
}

/**
 * Load a base model folder without making it current.
 *
 * @param folder The folder.
 * @returns The loaded model.
 * @throws {CheckpointError} See {@link useBaseModel}.
 */
export async function loadBaseModel(folder: string): Promise<BaseModel> {
  const dir = folder.replace(/[\\/]+$/, "");
  const stat = await Deno.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory) {
    throw new CheckpointError(`${dir}: not a folder (--model needs a Hugging Face model folder)`);
  }
  const isFile = (name: string) => Deno.stat(`${dir}/${name}`).then((s) => s.isFile, () => false);
  const wordFile = await isFile(RECALIGN_TOKENIZER_FILE);
  if (!(await isFile("tokenizer.json")) && !wordFile) {
    throw new CheckpointError(
      `${dir}/tokenizer.json: missing; --model needs the model's Hugging Face tokenizer file ` +
        `(or a ${RECALIGN_TOKENIZER_FILE} saved by recalign)`,
    );
  }
  const { model, tokenizer, config } = await loadPretrained(dir, { maxPositions: MAX_POSITIONS });
  try {
    if (!tokenizer) {
      throw new CheckpointError(`${dir}/tokenizer.json: could not be loaded as a tokenizer`);
    }
    if (tokenizer.vocabSize > config.vocab_size) {
      throw new CheckpointError(
        `${dir}/config.json: field "vocab_size" = ${config.vocab_size} is smaller than the ` +
          `tokenizer's ${tokenizer.vocabSize} token ids (tokenizer.json)`,
      );
    }
    const hfConfig = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    const weights = snapshot(model);
    const tokenizerFiles: Record<string, string> = {};
    const files = tokenizer instanceof HfTokenizer
      ? Object.entries(tokenizer.files)
      : [[RECALIGN_TOKENIZER_FILE, await Deno.readTextFile(`${dir}/${RECALIGN_TOKENIZER_FILE}`)]];
    for (const [name, text] of files) tokenizerFiles[name] = await sha256Hex(text);
    return {
      folder: dir,
      hfConfig,
      config,
      tokenizer,
      weights,
      fingerprint: await fingerprint(weights),
      tokenizerFiles,
    };
  } finally {
    model.dispose();
  }
}

/** What metrics.json records of the base model (null: the synthetic world's random LM). */
export function baseModelRecord(lm = current): Record<string, unknown> | null {
  if (!lm) return null;
  const t = lm.tokenizer;
  return {
    folder: lm.folder,
    config_json: lm.hfConfig,
    config: lm.config,
    weights_sha256: lm.fingerprint,
    tokenizer: {
      kind: t instanceof HfTokenizer ? "huggingface tokenizer.json" : RECALIGN_TOKENIZER_FILE,
      vocab_size: t.vocabSize,
      bos_id: t instanceof HfTokenizer && !t.hasBos ? null : t.bosId,
      eos_id: t.eosId,
      pad_id: t.padId,
      files_sha256: lm.tokenizerFiles,
    },
    encoding: "prompt = tokenizer(prompt) (BOS first when the tokenizer has one); response = " +
      'tokenizer(" " + text) + EOS',
    stage0: "LoRA SFT (r 8, α 16, all seven projections) of the pretrained model on the " +
      "stage-0 prompts, merged into its weights (merge-and-unload); the preference arms train " +
      "fresh LoRA adapters on the merged model",
  };
}

/** Micro-batch of LoRA SFT stages on a pretrained model. */
const PRETRAINED_MICRO_BATCH = 8;

/**
 * Stage 0 on a pretrained model: LoRA SFT on `examples` (`scale.baseSteps` steps, batch
 * `scale.sftBatch`, lr `scale.prefLr`, warmup `scale.baseWarmup`), merged into the weights.
 * Kept once per process and, with a cache folder ({@link setRunFolders} `cache`), as a PEFT
 * adapter in `<cache>/stage0-lora-<scale>-s<seed>-<key>/` that a rerun merges again.
 */
export async function pretrainedStage0(
  lm: BaseModel,
  examples: TrainExample[],
  scale: Scale,
  seed: number,
  opts: StageOptions,
): Promise<BaseSnapshot> {
  const lora = loraConfig(1000 + seed);
  const trainCfg = {
    stage: "sft" as const,
    steps: scale.baseSteps,
    batchSize: scale.sftBatch,
    microBatchSize: Math.min(scale.sftBatch, PRETRAINED_MICRO_BATCH),
    lr: scale.prefLr,
    warmupSteps: Math.min(scale.baseWarmup, Math.floor(scale.baseSteps / 5)),
    beta2: 0.95,
    seed,
    logEvery: Math.max(1, Math.floor(scale.baseSteps / 5)),
  };
  const key = (await sha256Hex(JSON.stringify({
    v: 1,
    model: lm.fingerprint,
    lora,
    train: trainCfg,
    examples: await examplesHash(examples),
  }))).slice(0, 24);
  const hit = stage0Cache.get(key);
  if (hit) return { ...hit, reused: true };
  const cache = runFolders().cache;
  const r = await runStage({
    name: "stage 0 (LoRA SFT)",
    seed,
    dir: cache ? `${cache}/stage0-lora-${scale.name}-s${seed}-${key}` : null,
    config: lm.config,
    from: lm.weights,
    mode: "lora-merged",
    lora,
    examples,
    train: trainCfg,
    label: opts.label,
    progress: opts.progress,
    baseModelName: lm.folder,
  });
  const snap = r.snap!;
  setFingerprint(snap, `stage0:${key}`);
  const out: BaseSnapshot = {
    snap,
    seconds: r.seconds,
    finalLoss: r.finalLoss ?? NaN,
    reused: false,
    fromDisk: r.source === "loaded",
  };
  stage0Cache.set(key, out);
  return out;
}

const stage0Cache = new Map<string, BaseSnapshot>();

/** Free the stage-0 snapshots of pretrained models. */
export function clearPretrainedCache(): void {
  for (const b of stage0Cache.values()) disposeSnapshot(b.snap);
  stage0Cache.clear();
}

/**
 * The stage-0 model of (scale, seed): {@link pretrainedStage0} when a base model is set
 * ({@link useBaseModel}), else the synthetic world's (common.ts `baseSnapshot`).
 */
export async function stage0Snapshot(
  config: LlamaConfig,
  examples: TrainExample[],
  scale: Scale,
  seed: number,
  opts: StageOptions,
): Promise<BaseSnapshot> {
  if (!current) return await baseSnapshot(config, examples, scale, seed, opts);
  if (JSON.stringify(config) !== JSON.stringify(current.config)) {
    throw new CheckpointError(
      `${current.folder}: the experiment built its own model config (vocab ${config.vocab_size}); ` +
        "a base model (--model) is used on the synthetic world only",
    );
  }
  return await pretrainedStage0(current, examples, scale, seed, opts);
}
