/**
 * The training loop: SFT and the preference stages (DPO, S-DPO, DMPO as in the paper and as
 * released) on a {@link LlamaModel}, LoRA-only (or full, after `makeFullyTrainable`).
 *
 * One step = one batch of examples, split into micro-batches whose gradients are accumulated
 * (the wasm heap caps at 4 GiB), clipped by global norm, and applied with AdamW on a cosine
 * schedule with warmup. Preference stages stack `[chosen, rejected_1..K]` per example in one
 * forward pass (TRL's concatenated forward); the reference log-probs come from the same model
 * with its adapters disabled — the merged SFT model — computed live every step or once per
 * example and cached (`reference: "precomputed"`).
 *
 * Everything random in a step (batch order, negative draws, dropout) is derived from
 * `(seed, step)`, so a run resumed from a checkpoint reaches the same weights as an
 * uninterrupted one. Checkpoints hold the trainable weights, the optimizer state, the step,
 * the RNG seed, the precomputed reference log-probs computed so far and the open logging
 * window (docs/resume.md), and are written to a temporary folder then renamed.
 *
 * Logged metrics follow TRL's names: `loss`, `learning_rate`, `grad_norm`, `epoch`, and for
 * preference stages `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`,
 * `rewards/margins`, `logps/chosen`, `logps/rejected`, `logits/chosen`, `logits/rejected`
 * (mean logit over the vocabulary at the response tokens); plus `tokens`, `tokens_per_sec`,
 * `elapsed_sec`, `skipped_steps`.
 *
 * @module
 */
import { backendInfo, ensureBackend, tf } from "./backend.ts";
import { secondEngine, type Ticket } from "./engines.ts";
import {
  CheckpointError,
  ConfigError,
  InputError,
  NonFiniteError,
  RecalignError,
} from "./errors.ts";
import {
  IGNORE_INDEX,
  LOSSES,
  type LossOutput,
  type PreferenceInputs,
  sequenceLogProbs,
  sftLoss,
} from "./losses.ts";
import { type LlamaModel, variableKey } from "./model.ts";
import { AdamW, clipCoefficient, cosineSchedule, GradSum } from "./optim.ts";
import { Rng } from "./rng.ts";
import {
  disposeBatch,
  packGroups,
  type PaddedBatch,
  padPairs,
  type ResponseGroup,
  type SequencePair,
} from "./data/batch.ts";
import {
  acquireLock,
  appendJsonLine,
  assertWritableDir,
  ensureDir,
  removeStaleTempFiles,
  type RunLock,
  sha256Hex,
  writeFileAtomic,
  writeJsonAtomic,
} from "./io.ts";
import { readSafetensors, type TensorRecord, writeSafetensors } from "./safetensors.ts";

/** Training stages. `sft` trains on the chosen response; the others are preference losses. */
export const STAGES = ["sft", "dpo", "sdpo", "dmpo-paper", "dmpo-released"] as const;
/** A training stage. */
export type Stage = typeof STAGES[number];

/** One training example (token ids). Responses should end with EOS. */
export interface TrainExample {
  /** Prompt ids (BOS first, if the tokenizer uses one). */
  prompt: number[];
  /** The chosen (target) response. */
  chosen: number[];
  /**
   * Rejected responses to draw negatives from (preference stages). Each time the example is
   * used, `numNegatives` of them are drawn without replacement (all of them, in order, when
   * the pool has exactly `numNegatives`).
   */
  rejected?: number[][];
}

/** Training hyper-parameters. */
export interface TrainConfig {
  /** Which loss. */
  stage: Stage;
  /** Optimizer steps. */
  steps: number;
  /** Examples per step. */
  batchSize: number;
  /** Max sequences per forward pass (gradients are accumulated over micro-batches). */
  microBatchSize: number;
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup steps. */
  warmupSteps: number;
  /** Final lr as a fraction of the peak (cosine decay). */
  minLrRatio: number;
  /** AdamW decoupled weight decay. */
  weightDecay: number;
  /** AdamW β1. */
  beta1: number;
  /** AdamW β2. */
  beta2: number;
  /** Clip the global gradient norm to this (0 = no clipping). */
  maxGradNorm: number;
  /** β of the preference losses (DMPO released: 0.1 unless set). */
  beta?: number;
  /** γ of DMPO-released's SFT term (default 1.0). */
  gamma?: number;
  /** Negatives per example K (preference stages). */
  numNegatives: number;
  /** Reference log-probs: recomputed every step, or once per example and cached. */
  reference: "live" | "precomputed";
  /**
   * Preference stages: pack each prompt once with all its responses (each response attends to
   * the prompt and itself; identical log-probs, fewer tokens). false = one sequence per response.
   */
  packPrompts: boolean;
  /** Truncate prompt + response to this many tokens (0 = no limit). */
  maxLength: number;
  /** Pad id. */
  padId: number;
  /** Seed of batch order, negative draws and dropout. */
  seed: number;
  /** Log (and append to metrics.jsonl) every N steps. */
  logEvery: number;
  /** Checkpoint every N steps (0 = only at the end); needs outDir. */
  checkpointEvery: number;
  /** Checkpoints to keep. */
  keepCheckpoints: number;
  /**
   * On a non-finite loss or gradient: `"stop"` (default) raises NonFiniteError naming the step
   * (and the parameter) and the last good checkpoint; `"skip"` drops that step's update,
   * counts it in the `skipped_steps` metric and goes on.
   */
  onNonFinite: "stop" | "skip";
}

/** Defaults: a small LoRA run. */
export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  stage: "sft",
  steps: 100,
  batchSize: 16,
  microBatchSize: 16,
  lr: 1e-3,
  warmupSteps: 10,
  minLrRatio: 0.1,
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.999,
  maxGradNorm: 1.0,
  numNegatives: 1,
  reference: "precomputed",
  packPrompts: true,
  maxLength: 0,
  padId: 0,
  seed: 0,
  logEvery: 10,
  checkpointEvery: 0,
  keepCheckpoints: 2,
  onNonFinite: "stop",
};

/** Options of {@link train} beyond the hyper-parameters. */
export interface TrainOptions {
  /** Folder for metrics.jsonl and checkpoints (none written if absent). */
  outDir?: string;
  /** Continue from the newest valid checkpoint in outDir, if there is one. */
  resume?: boolean;
  /** Called with each logged metrics row. */
  onLog?: (row: MetricsRow) => void;
  /** Print progress to stderr (default true). */
  progress?: boolean;
  /** Label shown in progress lines. */
  label?: string;
  /** Stop (as if killed) after this step, without a final checkpoint — for tests. */
  stopAfterStep?: number;
  /** Evaluate on held-out data while training, and keep the best checkpoint ({@link EvalHook}). */
  evaluate?: EvalHook;
}

/**
 * Evaluation during training (TRL / Hugging Face `evaluation_strategy="steps"`): `fn` runs
 * every `every` steps and at the last step on the current weights (no gradient). With
 * `select`, the weights of the evaluation with the lowest `fn(...)[select]` are kept and
 * restored at the end, as `load_best_model_at_end=True` with the default
 * `metric_for_best_model="loss"` does (lower is better). Rows go to
 * {@link TrainResult.evals} and `outDir/eval_metrics.jsonl` with an `eval_` prefix; the best
 * weights so far are part of every checkpoint, so a resumed run selects as an uninterrupted one.
 */
export interface EvalHook {
  /** Evaluate every this many steps (and at the last step). */
  every: number;
  /** Metrics of the current weights. */
  fn: (
    step: number,
    model: LlamaModel,
  ) => Record<string, number> | Promise<Record<string, number>>;
  /** Key of `fn`'s metrics to select on (lower is better); absent = keep the last weights. */
  select?: string;
}

/** One logged row: step plus metric values. */
export type MetricsRow = { step: number } & Record<string, number>;

/** What {@link train} returns. */
export interface TrainResult {
  /** Every logged row. */
  history: MetricsRow[];
  /** Step reached. */
  step: number;
  /** Step the run resumed from (0 when it started fresh). */
  resumedFrom: number;
  /** Wall-clock seconds of this call. */
  seconds: number;
  /** Evaluation rows (`step` + `eval_<metric>`), with {@link TrainOptions.evaluate}. */
  evals: MetricsRow[];
  /** With `evaluate.select`: the step whose weights were kept (and are the model's now). */
  bestStep?: number;
}

const CHECKPOINT_FORMAT = 1;
/**
 * A checkpoint's state file (step, seed, optimizer step, checksums, config). recalign's own
 * schema, so not Hugging Face's name `trainer_state.json`, which checkpoints written before this
 * name still carry and which is still read from them (they stay resumable).
 */
export const CHECKPOINT_STATE_FILE = "recalign_checkpoint.json";
const LEGACY_STATE_FILE = "trainer_state.json";

/** Check a config; throws ConfigError naming the field and the allowed values. */
export function validateTrainConfig(cfg: TrainConfig): void {
  if (!STAGES.includes(cfg.stage)) {
    throw new ConfigError("stage", `unknown stage "${cfg.stage}"; allowed: ${STAGES.join(", ")}`);
  }
  const posInt: (keyof TrainConfig)[] = [
    "steps",
    "batchSize",
    "microBatchSize",
    "numNegatives",
    "logEvery",
  ];
  for (const f of posInt) {
    const v = cfg[f] as number;
    if (!Number.isInteger(v) || v <= 0) {
      throw new ConfigError(f, `should be a positive integer, got ${v}`);
    }
  }
  const nonNeg: (keyof TrainConfig)[] = [
    "lr",
    "warmupSteps",
    "minLrRatio",
    "weightDecay",
    "maxGradNorm",
    "maxLength",
    "checkpointEvery",
  ];
  for (const f of nonNeg) {
    const v = cfg[f] as number;
    if (!(Number.isFinite(v) && v >= 0)) {
      throw new ConfigError(f, `should be a finite number >= 0, got ${v}`);
    }
  }
  if (!(cfg.lr > 0)) throw new ConfigError("lr", `should be > 0, got ${cfg.lr}`);
  if (
    cfg.stage !== "sft" && cfg.stage !== "dmpo-released" &&
    !(cfg.beta !== undefined && cfg.beta > 0 && Number.isFinite(cfg.beta))
  ) {
    throw new ConfigError("beta", `stage "${cfg.stage}" needs a finite beta > 0, got ${cfg.beta}`);
  }
  if (cfg.beta !== undefined && !(cfg.beta > 0 && Number.isFinite(cfg.beta))) {
    throw new ConfigError("beta", `should be a finite number > 0, got ${cfg.beta}`);
  }
  if (cfg.gamma !== undefined && !(cfg.gamma >= 0 && Number.isFinite(cfg.gamma))) {
    throw new ConfigError("gamma", `should be a finite number >= 0, got ${cfg.gamma}`);
  }
  for (const f of ["beta1", "beta2"] as const) {
    if (!(typeof cfg[f] === "number" && cfg[f] >= 0 && cfg[f] < 1)) {
      throw new ConfigError(f, `should be in [0, 1), got ${cfg[f]}`);
    }
  }
  if (!Number.isInteger(cfg.keepCheckpoints) || cfg.keepCheckpoints < 1) {
    throw new ConfigError(
      "keepCheckpoints",
      `should be a positive integer (the newest checkpoint is always kept), got ${cfg.keepCheckpoints}`,
    );
  }
  if (!Number.isInteger(cfg.padId) || cfg.padId < 0) {
    throw new ConfigError("padId", `should be a token id (integer >= 0), got ${cfg.padId}`);
  }
  if (typeof cfg.seed !== "number" || !Number.isFinite(cfg.seed)) {
    throw new ConfigError("seed", `should be a finite number, got ${cfg.seed}`);
  }
  if (!["stop", "skip"].includes(cfg.onNonFinite)) {
    throw new ConfigError("onNonFinite", `should be "stop" or "skip", got "${cfg.onNonFinite}"`);
  }
  if (!["live", "precomputed"].includes(cfg.reference)) {
    throw new ConfigError("reference", `should be "live" or "precomputed", got "${cfg.reference}"`);
  }
}

/** A 32-bit mix of two integers, for per-step seeds. */
function mix(a: number, b: number): number {
  let h = (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35)) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}

/** Example indices of a step: a fresh seeded permutation per epoch. */
export function batchIndices(n: number, batchSize: number, step: number, seed: number): number[] {
  const out: number[] = [];
  let cachedEpoch = -1;
  let perm: number[] = [];
  for (let j = 0; j < batchSize; j++) {
    const g = step * batchSize + j;
    const epoch = Math.floor(g / n);
    if (epoch !== cachedEpoch) {
      perm = new Rng(mix(seed, 1_000_003 + epoch)).shuffle(Array.from({ length: n }, (_, i) => i));
      cachedEpoch = epoch;
    }
    out.push(perm[g % n]);
  }
  return out;
}

function validateExamples(examples: TrainExample[], cfg: TrainConfig): void {
  if (examples.length === 0) {
    throw new InputError("examples", "expected at least one training example");
  }
  examples.forEach((ex, i) => {
    if (ex.prompt.length === 0) throw new InputError("examples", `example ${i}: empty prompt`);
    if (ex.chosen.length === 0) {
      throw new InputError("examples", `example ${i}: empty chosen response`);
    }
    if (cfg.stage !== "sft") {
      const pool = ex.rejected ?? [];
      if (pool.length < cfg.numNegatives) {
        throw new InputError(
          "examples",
          `example ${i}: has ${pool.length} rejected responses, stage "${cfg.stage}" needs numNegatives=${cfg.numNegatives}`,
        );
      }
      pool.forEach((r, j) => {
        if (r.length === 0) {
          throw new InputError("examples", `example ${i}: rejected response ${j} is empty`);
        }
      });
    }
  });
}

/** Every token id must index the vocabulary (an out-of-range id silently reads garbage). */
function validateTokenIds(examples: TrainExample[], cfg: TrainConfig, vocabSize: number): void {
  if (cfg.padId >= vocabSize) {
    throw new ConfigError(
      "padId",
      `should be below the vocabulary size ${vocabSize}, got ${cfg.padId}`,
    );
  }
  const check = (ids: number[], i: number, what: string) => {
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t];
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new InputError(
          "examples",
          `example ${i}: ${what} token ${t} is ${id}, expected an integer in [0, ${vocabSize})`,
        );
      }
    }
  };
  examples.forEach((ex, i) => {
    check(ex.prompt, i, "prompt");
    check(ex.chosen, i, "chosen");
    if (cfg.stage !== "sft") ex.rejected?.forEach((r, j) => check(r, i, `rejected ${j}`));
  });
}

/** Options of the scoring functions. */
export interface ScoreOptions {
  /** Run the adapters (default true); false = the base model (the DPO reference). */
  adapters?: boolean;
  /** Max responses per forward pass. */
  microBatchSize?: number;
  padId?: number;
  maxLength?: number;
  /** Mean instead of sum over each response's tokens. */
  average?: boolean;
}

/** Summed log-probs of each pair's response under the model; no gradient. */
export function scorePairs(
  model: LlamaModel,
  pairs: SequencePair[],
  opts: ScoreOptions = {},
): Float32Array {
  const mb = opts.microBatchSize ?? 16;
  const slices: SequencePair[][] = [];
  for (let s = 0; s < pairs.length; s += mb) slices.push(pairs.slice(s, s + mb));
  return scoreInSlices(model, { kind: "score", mode: "pairs", slices, opts: scoreOpts(opts) });
}

/**
 * Summed log-probs of every response of every group (flattened in group order), each group
 * packed into one row (see {@link packGroups}); no gradient. `microBatchSize` counts responses.
 */
export function scoreGroups(
  model: LlamaModel,
  groups: ResponseGroup[],
  opts: ScoreOptions = {},
): Float32Array {
  const mb = opts.microBatchSize ?? 16;
  const slices: ResponseGroup[][] = [];
  for (let s = 0; s < groups.length;) {
    // Take groups until the micro-batch holds about mb responses (at least one group).
    let e = s + 1, n = groups[s].responses.length;
    while (e < groups.length && n + groups[e].responses.length <= mb) {
      n += groups[e++].responses.length;
    }
    slices.push(groups.slice(s, e));
    s = e;
  }
  return scoreInSlices(model, { kind: "score", mode: "groups", slices, opts: scoreOpts(opts) });
}

/** Micro-batches to score, each one forward pass (pairs padded, or groups packed). */
export interface ScoreJob {
  kind: "score";
  mode: "pairs" | "groups";
  slices: SequencePair[][] | ResponseGroup[][];
  opts: Omit<ScoreOptions, "microBatchSize">;
}

function scoreOpts(o: ScoreOptions): ScoreJob["opts"] {
  return { adapters: o.adapters, padId: o.padId, maxLength: o.maxLength, average: o.average };
}

function sliceSize(job: ScoreJob, i: number): number {
  return job.mode === "pairs"
    ? job.slices[i].length
    : (job.slices[i] as ResponseGroup[]).reduce((a, g) => a + g.responses.length, 0);
}

/** The log-probs of a job's micro-batches, in order, computed on this engine. */
export function scoreSlices(model: LlamaModel, job: ScoreJob): Float32Array {
  const sizes = job.slices.map((_, i) => sliceSize(job, i));
  const out = new Float32Array(sizes.reduce((a, b) => a + b, 0));
  let o = 0;
  const padOpts = { padId: job.opts.padId, maxLength: job.opts.maxLength || undefined };
  job.slices.forEach((slice, i) => {
    const batch = job.mode === "pairs"
      ? padPairs(slice as SequencePair[], padOpts)
      : packGroups(slice as ResponseGroup[], padOpts);
    out.set(scoreBatch(model, batch, job.opts), o);
    o += sizes[i];
  });
  return out;
}

/**
 * A job's micro-batches on both engines when there are two (the first half here, the rest on
 * the worker); each micro-batch is the same forward pass on either, so the values are too.
 */
function scoreInSlices(model: LlamaModel, job: ScoreJob): Float32Array {
  const n = job.slices.length;
  const engine = n >= 2 ? secondEngine(model, backendInfo()?.backend) : undefined;
  if (!engine) return scoreSlices(model, job);
  const mine = Math.ceil(n / 2);
  const theirs = { ...job, slices: job.slices.slice(mine) } as ScoreJob;
  let theirSize = 0;
  for (let i = mine; i < n; i++) theirSize += sliceSize(job, i);
  const ticket = engine.post(theirs, theirSize);
  let first: Float32Array | undefined;
  try {
    first = scoreSlices(model, { ...job, slices: job.slices.slice(0, mine) } as ScoreJob);
  } finally {
    if (!first) awaitQuietly(ticket);
  }
  const out = new Float32Array(first.length + theirSize);
  out.set(first);
  out.set(ticketFloats(ticket, () => scoreSlices(model, theirs)), first.length);
  return out;
}

/** One line on stderr: the worker failed, and its share is computed on this thread. */
function reportFallback(e: unknown): void {
  console.error(`[recalign] ${(e as Error).message}; computing its share on this thread`);
}

/** Collects a ticket whose reply is no longer needed (the local part failed). */
function awaitQuietly(ticket: Ticket): void {
  try {
    ticket.wait();
  } catch {
    // the local error is the one reported
  }
}

/** A ticket's floats (copied); if the worker failed, the same work computed here instead. */
function ticketFloats(ticket: Ticket, here: () => Float32Array): Float32Array {
  try {
    return ticket.wait().floats.slice();
  } catch (e) {
    reportFallback(e);
    return here();
  }
}

/** Summed (or averaged) response log-probs of one batch, without gradient; disposes the batch. */
function scoreBatch(
  model: LlamaModel,
  batch: PaddedBatch,
  opts: { adapters?: boolean; average?: boolean },
): Float32Array {
  const lp = tf.tidy(() =>
    sequenceLogProbs(
      forwardBatch(model, batch, { adapters: opts.adapters }),
      batch.responseLabels,
      {
        average: opts.average,
      },
    )
  );
  const values = lp.dataSync() as Float32Array;
  lp.dispose();
  disposeBatch(batch);
  return values;
}

/** Logits [R, Tr, V] at a batch's scored positions (packed or not). */
export function forwardBatch(
  model: LlamaModel,
  batch: PaddedBatch,
  opts: { adapters?: boolean; training?: boolean; rng?: Rng } = {},
): tf.Tensor3D {
  return model.forward(batch.ids, {
    ...opts,
    select: batch.select,
    attentionBias: batch.attentionBias,
    positions: batch.positions,
    blocks: batch.blocks,
  });
}

interface CheckpointState {
  format_version: number;
  step: number;
  seed: number;
  stage: Stage;
  optimizer_step: number;
  variables: string[];
  checksums: Record<string, string>;
  config: TrainConfig;
  /** Best evaluation so far (EvalHook.select): its step and value; weights in best.safetensors. */
  best?: { step: number; value: number };
  /**
   * The logging window open at the checkpoint (metric sums and steps since the last logged
   * row) and the skipped-step count, so the rows logged after a resume equal an uninterrupted
   * run's even when checkpoints and log rows do not line up. Absent in older checkpoints.
   */
  log_window?: { sums: Record<string, number>; steps: number; skipped_steps: number };
}

/** The best evaluated weights so far (EvalHook.select), by variable key. */
interface BestWeights {
  step: number;
  value: number;
  weights: Map<string, Float32Array>;
}

/** What a checkpoint keeps of the loop's logging state. */
type LogWindow = NonNullable<CheckpointState["log_window"]>;

function ckptName(step: number): string {
  return `step-${String(step).padStart(7, "0")}`;
}

async function saveCheckpoint(
  dir: string,
  step: number,
  cfg: TrainConfig,
  vars: tf.Variable[],
  opt: AdamW,
  logWindow: LogWindow,
  refCache: ReadonlyMap<number, Float32Array>,
  best?: BestWeights,
): Promise<string> {
  const root = `${dir}/checkpoints`;
  await ensureDir(root);
  const final = `${root}/${ckptName(step)}`;
  const tmp = `${final}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await ensureDir(tmp);
  const weights: Record<string, TensorRecord> = {};
  for (const v of vars) {
    weights[variableKey(v)] = {
      dtype: "F32",
      shape: [...v.shape],
      data: v.dataSync() as Float32Array,
    };
  }
  const st = opt.getState();
  const optimizer: Record<string, TensorRecord> = {};
  for (const v of vars) {
    optimizer[`m/${variableKey(v)}`] = { dtype: "F32", shape: [...v.shape], data: st.m[v.name] };
    optimizer[`v/${variableKey(v)}`] = { dtype: "F32", shape: [...v.shape], data: st.v[v.name] };
  }
  await writeSafetensors(`${tmp}/weights.safetensors`, weights);
  await writeSafetensors(`${tmp}/optimizer.safetensors`, optimizer);
  const files = ["weights.safetensors", "optimizer.safetensors"];
  if (best) {
    const rec: Record<string, TensorRecord> = {};
    for (const v of vars) {
      rec[variableKey(v)] = {
        dtype: "F32",
        shape: [...v.shape],
        data: best.weights.get(variableKey(v))!,
      };
    }
    await writeSafetensors(`${tmp}/best.safetensors`, rec);
    files.push("best.safetensors");
  }
  if (refCache.size > 0) {
    await writeSafetensors(`${tmp}/${REFERENCE_FILE}`, referenceRecords(refCache));
    files.push(REFERENCE_FILE);
  }
  const checksums: Record<string, string> = {};
  for (const f of files) {
    checksums[f] = await sha256Hex(await Deno.readFile(`${tmp}/${f}`));
  }
  const state: CheckpointState = {
    format_version: CHECKPOINT_FORMAT,
    step,
    seed: cfg.seed,
    stage: cfg.stage,
    optimizer_step: st.step,
    variables: vars.map(variableKey),
    checksums,
    config: cfg,
    log_window: logWindow,
    ...(best ? { best: { step: best.step, value: best.value } } : {}),
  };
  await writeJsonAtomic(`${tmp}/${CHECKPOINT_STATE_FILE}`, state);
  await Deno.remove(final, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, final);
  // Keep the newest keepCheckpoints.
  const all = await listCheckpoints(dir);
  for (const old of all.slice(0, Math.max(all.length - cfg.keepCheckpoints, 0))) {
    await Deno.remove(`${root}/${old}`, { recursive: true }).catch(() => {});
  }
  return final;
}

async function listCheckpoints(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(`${dir}/checkpoints`)) {
      if (e.isDirectory && /^step-\d{7}$/.test(e.name)) names.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names.sort();
}

/**
 * A checkpoint's file of precomputed reference log-probs: the cached examples' indices,
 * offsets into `logps` (one run of 1 + pool values per example) and the float32 values, as
 * computed — restored bit for bit on resume.
 */
const REFERENCE_FILE = "reference.safetensors";

function referenceRecords(cache: ReadonlyMap<number, Float32Array>): Record<string, TensorRecord> {
  const keys = [...cache.keys()].sort((a, b) => a - b);
  const offsets = new Int32Array(keys.length + 1);
  keys.forEach((k, j) => (offsets[j + 1] = offsets[j] + cache.get(k)!.length));
  const logps = new Float32Array(offsets[keys.length]);
  keys.forEach((k, j) => logps.set(cache.get(k)!, offsets[j]));
  return {
    example_index: { dtype: "I32", shape: [keys.length], data: Int32Array.from(keys) },
    offsets: { dtype: "I32", shape: [keys.length + 1], data: offsets },
    logps: { dtype: "F32", shape: [logps.length], data: logps },
  };
}

/** The reference cache of a checkpoint, checked against the examples it must belong to. */
function referenceCacheOf(
  file: Awaited<ReturnType<typeof readSafetensors>>,
  examples: TrainExample[],
  where: string,
): Map<number, Float32Array> {
  const { example_index: ix, offsets: off, logps } = file.tensors;
  if (ix?.dtype !== "I32" || off?.dtype !== "I32" || logps?.dtype !== "F32") {
    throw new CheckpointError(`${where}: expected I32 example_index and offsets, F32 logps`);
  }
  const cache = new Map<number, Float32Array>();
  ix.data.forEach((i, j) => {
    const n = 1 + (examples[i]?.rejected?.length ?? NaN);
    if (off.data[j + 1] - off.data[j] !== n || off.data[j + 1] > logps.data.length) {
      throw new CheckpointError(`${where}: entry ${j} (example ${i}) does not fit the examples`);
    }
    cache.set(i, logps.data.slice(off.data[j], off.data[j + 1]));
  });
  return cache;
}

/** Load a checkpoint folder's state after verifying its checksums. */
async function readCheckpoint(path: string): Promise<{
  state: CheckpointState;
  weights: Awaited<ReturnType<typeof readSafetensors>>;
  optimizer: Awaited<ReturnType<typeof readSafetensors>>;
  best?: Awaited<ReturnType<typeof readSafetensors>>;
  reference?: Awaited<ReturnType<typeof readSafetensors>>;
}> {
  let state: CheckpointState;
  let file = `${path}/${CHECKPOINT_STATE_FILE}`;
  try {
    const legacy = `${path}/${LEGACY_STATE_FILE}`;
    const isFile = (f: string) => Deno.stat(f).then((st) => st.isFile, () => false);
    if (!(await isFile(file)) && await isFile(legacy)) file = legacy;
    state = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    throw new CheckpointError(`${file}: unreadable (${(e as Error).message})`, { cause: e });
  }
  if (state.format_version !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(
      `${path}: checkpoint format ${state.format_version}, this version reads ${CHECKPOINT_FORMAT}`,
    );
  }
  for (const [f, sum] of Object.entries(state.checksums)) {
    const got = await sha256Hex(await Deno.readFile(`${path}/${f}`));
    if (got !== sum) {
      throw new CheckpointError(`${path}/${f}: checksum mismatch (file corrupt or truncated)`);
    }
  }
  return {
    state,
    weights: await readSafetensors(`${path}/weights.safetensors`),
    optimizer: await readSafetensors(`${path}/optimizer.safetensors`),
    best: state.best ? await readSafetensors(`${path}/best.safetensors`) : undefined,
    reference: REFERENCE_FILE in state.checksums
      ? await readSafetensors(`${path}/${REFERENCE_FILE}`)
      : undefined,
  };
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m > 0 ? `${m}m${String(s).padStart(2, "0")}s` : `${s}s`;
}

/**
 * Train the model's trainable variables on `examples` with the given stage.
 * Returns the logged metrics. With `outDir`, appends them to `outDir/metrics.jsonl` and
 * writes checkpoints; with `resume`, continues from the newest valid one.
 */
export async function train(
  model: LlamaModel,
  examples: TrainExample[],
  config: Partial<TrainConfig> & Pick<TrainConfig, "stage">,
  opts: TrainOptions = {},
): Promise<TrainResult> {
  await ensureBackend();
  const cfg: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...config };
  validateTrainConfig(cfg);
  validateExamples(examples, cfg);
  validateTokenIds(examples, cfg, model.config.vocab_size);
  const vars = model.trainableVariables();
  if (vars.length === 0) {
    throw new InputError(
      "model",
      "has no trainable variables: call addLora() or makeFullyTrainable() first",
    );
  }
  if (cfg.stage !== "sft" && !model.hasLora()) {
    throw new InputError(
      "model",
      `stage "${cfg.stage}" needs LoRA adapters (the reference is the model with adapters disabled)`,
    );
  }
  checkMemory(model, examples, cfg);
  const started = performance.now();
  const opt = new AdamW(vars, { beta1: cfg.beta1, beta2: cfg.beta2, weightDecay: cfg.weightDecay });
  const gradSum = new GradSum(vars);
  const schedule = cosineSchedule({
    peakLr: cfg.lr,
    warmupSteps: Math.min(cfg.warmupSteps, cfg.steps),
    totalSteps: cfg.steps,
    minLrRatio: cfg.minLrRatio,
  });
  const history: MetricsRow[] = [];
  const metricsPath = opts.outDir ? `${opts.outDir}/metrics.jsonl` : undefined;
  const evalHook = opts.evaluate;
  if (evalHook && !(Number.isInteger(evalHook.every) && evalHook.every > 0)) {
    opt.dispose();
    throw new ConfigError("evaluate.every", `should be a positive integer, got ${evalHook.every}`);
  }
  const evalPath = opts.outDir && evalHook ? `${opts.outDir}/eval_metrics.jsonl` : undefined;
  const evals: MetricsRow[] = [];
  let best: BestWeights | undefined;
  let step = 0;
  let resumedFrom = 0;
  /** What train() returns, at a pause (`stopAfterStep`) or at the end. */
  const result = (): TrainResult => ({
    history,
    step,
    resumedFrom,
    seconds: (performance.now() - started) / 1000,
    evals,
    bestStep: best?.step,
  });
  const log = (msg: string) => {
    if (opts.progress !== false) console.error(msg);
  };

  let lock: RunLock | undefined;
  if (opts.outDir) {
    try {
      await assertWritableDir(opts.outDir);
      lock = await acquireLock(opts.outDir, `training run (${cfg.stage})`);
      // Half-written checkpoints / files of a killed run (ignored by resume, but not kept).
      await removeStaleTempFiles(opts.outDir, { recursive: true }).catch(() => []);
    } catch (e) {
      opt.dispose();
      throw new RecalignError((e as Error).message, { cause: e });
    }
  }
  let restoredWindow: LogWindow | undefined;
  // Precomputed reference log-probs per example (restored with a checkpoint).
  const refCache = new Map<number, Float32Array>();
  if (opts.outDir && opts.resume) {
    const names = await listCheckpoints(opts.outDir);
    for (const name of names.reverse()) {
      const path = `${opts.outDir}/checkpoints/${name}`;
      try {
        const ck = await readCheckpoint(path);
        const byName = new Map(vars.map((v) => [variableKey(v), v]));
        for (const name of ck.state.variables) {
          const v = byName.get(name);
          const t = ck.weights.tensors[name];
          if (!v || !t) {
            throw new CheckpointError(`${path}: variable "${name}" does not match the model`);
          }
          v.assign(tf.tensor(t.data as Float32Array, t.shape));
        }
        const m: Record<string, Float32Array> = {};
        const vv: Record<string, Float32Array> = {};
        for (const v of vars) {
          const mt = ck.optimizer.tensors[`m/${variableKey(v)}`];
          const vt = ck.optimizer.tensors[`v/${variableKey(v)}`];
          if (!mt || !vt) {
            throw new CheckpointError(`${path}: no optimizer state for "${variableKey(v)}"`);
          }
          m[v.name] = mt.data as Float32Array;
          vv[v.name] = vt.data as Float32Array;
        }
        const cache = ck.reference
          ? referenceCacheOf(ck.reference, examples, `${path}/${REFERENCE_FILE}`)
          : undefined;
        opt.setState({ step: ck.state.optimizer_step, m, v: vv });
        if (ck.state.best && ck.best) {
          best = {
            ...ck.state.best,
            weights: new Map(
              Object.entries(ck.best.tensors).map(([k, t]) => [k, t.data as Float32Array]),
            ),
          };
        }
        step = resumedFrom = ck.state.step;
        restoredWindow = ck.state.log_window;
        refCache.clear();
        for (const [i, values] of cache ?? []) refCache.set(i, values);
        log(`[train] resumed from ${path} (step ${step})`);
        break;
      } catch (e) {
        log(`[train] checkpoint ${path} unusable, trying an older one: ${(e as Error).message}`);
      }
    }
    // Drop metrics logged after the checkpoint, so the file matches an uninterrupted run.
    if (metricsPath) {
      try {
        const lines = (await Deno.readTextFile(metricsPath)).split("\n").filter((l) => l.trim());
        // A line cut off by the kill (or a crash) does not parse: dropped, and said so.
        const parsed: [string, MetricsRow][] = [];
        for (const l of lines) {
          try {
            parsed.push([l, JSON.parse(l)]);
          } catch {
            log(`[train] ${metricsPath}: dropped a torn line (${l.length} chars)`);
          }
        }
        const kept = parsed.filter(([, row]) => row.step <= step);
        await writeFileAtomic(metricsPath, kept.map(([l]) => l + "\n").join(""));
        history.push(...kept.map(([, row]) => row));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  } else if (metricsPath) {
    await writeFileAtomic(metricsPath, "");
  }
  if (evalPath) {
    // Evaluation rows up to the step resumed from (none for a fresh run).
    let kept: string[] = [];
    try {
      kept = (await Deno.readTextFile(evalPath)).split("\n").filter((l) => {
        try {
          return l.trim() !== "" && JSON.parse(l).step <= step;
        } catch {
          return false; // a line torn by the kill
        }
      });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await writeFileAtomic(evalPath, kept.map((l) => l + "\n").join(""));
    evals.push(...kept.map((l) => JSON.parse(l) as MetricsRow));
  }

  const k = cfg.stage === "sft" ? 0 : cfg.numNegatives;
  const rowsPerExample = 1 + k;
  const examplesPerMicro = Math.max(1, Math.floor(cfg.microBatchSize / rowsPerExample));
  const isTty = opts.progress !== false && Deno.stderr.isTerminal();
  const label = opts.label ?? cfg.stage;
  let windowTokens = 0;
  let windowStart = performance.now();
  const acc: Record<string, number> = { ...restoredWindow?.sums };
  let accSteps = restoredWindow?.steps ?? 0;
  let skippedSteps = restoredWindow?.skipped_steps ?? 0;
  const logWindow = (): LogWindow => ({
    sums: { ...acc },
    steps: accSteps,
    skipped_steps: skippedSteps,
  });

  try {
    while (step < cfg.steps) {
      const stepRng = new Rng(mix(cfg.seed, step));
      const idx = batchIndices(examples.length, cfg.batchSize, step, cfg.seed);
      // Choose responses: [chosen, rejected draws] per example.
      const chosenNeg: number[][] = idx.map((i) => {
        if (k === 0) return [];
        const pool = examples[i].rejected!;
        return pool.length === k ? pool.map((_, j) => j) : stepRng.sample(pool.map((_, j) => j), k);
      });
      const lr = schedule(step);
      const stepMetrics: Record<string, number> = {};
      gradSum.reset();
      let tokens = 0;
      let skipped = false;
      const micros: (MicroBatch & { idx: number[]; neg: number[][] })[] = [];
      for (let s = 0; s < idx.length; s += examplesPerMicro) {
        const mIdx = idx.slice(s, s + examplesPerMicro);
        const mNeg = chosenNeg.slice(s, s + examplesPerMicro);
        micros.push({
          idx: mIdx,
          neg: mNeg,
          weight: mIdx.length / idx.length,
          groups: mIdx.map((i, j) => ({
            prompt: examples[i].prompt,
            responses: [examples[i].chosen, ...mNeg[j].map((r) => examples[i].rejected![r])],
          })),
          dropoutSeed: mix(cfg.seed ^ 0x51ed, step * 1000 + s),
        });
      }
      // Cached reference log-probs, in micro-batch order (the first use of an example fills
      // the cache); live ones are computed with each micro-batch, on its engine.
      if (k > 0 && cfg.reference === "precomputed") {
        for (const m of micros) {
          m.ref = referenceLogps(model, examples, m.idx, m.neg, cfg, refCache);
        }
      }
      // With a second engine, the last half of the micro-batches run on it meanwhile; every
      // result is then taken in micro-batch order, as on one engine.
      const engine = micros.length >= 2 ? secondEngine(model, backendInfo()?.backend) : undefined;
      const mine = engine ? Math.ceil(micros.length / 2) : micros.length;
      const theirs: GradientJob = {
        kind: "grads",
        cfg,
        keys: vars.map(variableKey),
        micro: micros.slice(mine).map(({ groups, weight, dropoutSeed, ref }) => ({
          groups,
          weight,
          dropoutSeed,
          ref,
        })),
      };
      const varsSize = vars.reduce((a, v) => a + v.size, 0);
      const ticket = engine?.post(theirs, varsSize * theirs.micro.length);
      let collected = false;
      const collect = async (): Promise<MicroBatchOutput[]> => {
        collected = true;
        try {
          const { json, floats } = ticket!.wait();
          const heads = json as { loss: number; metrics: Record<string, number>; tokens: number }[];
          let o = 0;
          return heads.map((h) => {
            const grads: tf.NamedTensorMap = {};
            for (const v of vars) {
              grads[v.name] = tf.tensor(floats.slice(o, o + v.size), v.shape, "float32");
              o += v.size;
            }
            return { ...h, grads };
          });
        } catch (e) {
          reportFallback(e);
          const out: MicroBatchOutput[] = [];
          for (const m of theirs.micro) out.push(await microBatchGradients(model, vars, m, cfg));
          return out;
        }
      };
      const take = async (m: MicroBatch, r: MicroBatchOutput): Promise<void> => {
        tokens += r.tokens;
        for (const [name, v] of Object.entries(r.metrics)) {
          stepMetrics[name] = (stepMetrics[name] ?? 0) + v * m.weight;
        }
        if (!Number.isFinite(r.loss)) {
          tf.dispose(r.grads);
          gradSum.reset();
          if (cfg.onNonFinite === "skip") {
            skipped = true;
            return;
          }
          throw new NonFiniteError(
            step + 1,
            `loss is ${r.loss}; stopped. Last good checkpoint: ${await lastCheckpoint(
              opts.outDir,
            )}`,
          );
        }
        stepMetrics._loss = (stepMetrics._loss ?? 0) + r.loss * m.weight;
        // Summed in the optimizer's flat layout: the same float32 sums as tf.add per variable.
        gradSum.add(r.grads);
        tf.dispose(r.grads);
      };
      try {
        for (let j = 0; j < mine && !skipped; j++) {
          await take(micros[j], await microBatchGradients(model, vars, micros[j], cfg));
        }
        if (ticket && !skipped) {
          const outs = await collect();
          try {
            for (let q = 0; q < outs.length && !skipped; q++) {
              await take(micros[mine + q], outs[q]);
              outs[q].grads = {};
            }
          } finally {
            for (const o of outs) tf.dispose(o.grads);
          }
        }
      } finally {
        if (ticket && !collected) awaitQuietly(ticket);
      }
      let gradNorm = NaN;
      let clip = 1;
      if (skipped) {
        // The step's update is dropped; its metrics are not logged.
      } else if (cfg.maxGradNorm > 0) {
        // Clipping is one factor passed to the update (PyTorch's clip_grad_norm_).
        gradNorm = gradSum.norm();
        clip = clipCoefficient(gradNorm, cfg.maxGradNorm);
      } else gradNorm = Math.sqrt(gradSum.squareSums().reduce((a, s) => a + s, 0));
      if (!skipped && !Number.isFinite(gradNorm)) {
        const at = gradSum.firstNonFinite();
        const bad = at >= 0 ? variableKey(vars[at]) : "?";
        gradSum.reset();
        if (cfg.onNonFinite === "skip") skipped = true;
        else {
          throw new NonFiniteError(
            step + 1,
            `gradient of "${bad}" is not finite (norm ${gradNorm}); stopped before updating weights. ` +
              `Last good checkpoint: ${await lastCheckpoint(opts.outDir)}`,
          );
        }
      }
      if (skipped) {
        skippedSteps++;
        step++;
        log(
          `[${label}] step ${step}: non-finite loss or gradient, update skipped (${skippedSteps} so far)`,
        );
        if (
          opts.outDir &&
          (step === cfg.steps || (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0))
        ) {
          await faultPause(
            await saveCheckpoint(opts.outDir, step, cfg, vars, opt, logWindow(), refCache, best),
          );
        }
        continue;
      }
      opt.step(gradSum, lr, clip);
      gradSum.reset();
      step++;

      stepMetrics.loss = stepMetrics._loss;
      delete stepMetrics._loss;
      stepMetrics.learning_rate = lr;
      stepMetrics.grad_norm = gradNorm;
      stepMetrics.tokens = tokens;
      stepMetrics.skipped_steps = skippedSteps;
      for (const [key, v] of Object.entries(stepMetrics)) acc[key] = (acc[key] ?? 0) + v;
      accSteps++;
      windowTokens += tokens;

      if (step % cfg.logEvery === 0 || step === cfg.steps) {
        const now = performance.now();
        const row: MetricsRow = { step };
        for (const [key, v] of Object.entries(acc)) row[key] = key === "tokens" ? v : v / accSteps;
        row.epoch = (step * cfg.batchSize) / examples.length; // TRL: fractional epochs
        row.tokens_per_sec = windowTokens / ((now - windowStart) / 1000);
        row.elapsed_sec = (now - started) / 1000;
        for (const key of Object.keys(acc)) delete acc[key];
        accSteps = 0;
        windowTokens = 0;
        windowStart = now;
        history.push(row);
        if (metricsPath) await appendJsonLine(metricsPath, row);
        opts.onLog?.(row);
        const eta = (row.elapsed_sec / Math.max(step - resumedFrom, 1)) * (cfg.steps - step);
        const acc1 = row["rewards/accuracies"];
        const line = `[${label}] step ${step}/${cfg.steps} loss ${row.loss.toFixed(4)}` +
          (acc1 !== undefined ? ` acc ${acc1.toFixed(2)}` : "") +
          ` ${Math.round(row.tokens_per_sec)} tok/s ETA ${formatEta(eta)}`;
        if (isTty) {
          const width = 24;
          const filled = Math.round((step / cfg.steps) * width);
          const bar = "█".repeat(filled) + "░".repeat(width - filled);
          Deno.stderr.writeSync(
            new TextEncoder().encode(`\r${bar} ${line}   ${step === cfg.steps ? "\n" : ""}`),
          );
        } else log(line);
      }
      if (evalHook && (step % evalHook.every === 0 || step === cfg.steps)) {
        const got = await evalHook.fn(step, model);
        const row: MetricsRow = { step };
        for (const [key, v] of Object.entries(got)) row[`eval_${key}`] = v;
        evals.push(row);
        if (evalPath) await appendJsonLine(evalPath, row);
        const value = evalHook.select !== undefined ? got[evalHook.select] : undefined;
        if (evalHook.select !== undefined && !Number.isFinite(value)) {
          throw new InputError(
            "evaluate.select",
            `evaluation at step ${step} gave ${evalHook.select} = ${value}; expected a finite number`,
          );
        }
        if (value !== undefined && (!best || value < best.value)) {
          best = {
            step,
            value,
            weights: new Map(
              vars.map((v) => [variableKey(v), (v.dataSync() as Float32Array).slice()]),
            ),
          };
        }
        log(
          `[${label}] eval step ${step}: ` +
            Object.entries(got).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" ") +
            (best ? ` (best: step ${best.step})` : ""),
        );
      }
      if (opts.stopAfterStep !== undefined && step >= opts.stopAfterStep) {
        return result();
      }
      if (
        opts.outDir &&
        (step === cfg.steps || (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0))
      ) {
        await faultPause(
          await saveCheckpoint(opts.outDir, step, cfg, vars, opt, logWindow(), refCache, best),
        );
      }
    }
    // load_best_model_at_end: the selected weights become the model's.
    if (best) {
      const b = best;
      tf.tidy(() => {
        for (const v of vars) {
          v.assign(tf.tensor(b.weights.get(variableKey(v))!, v.shape, "float32"));
        }
      });
    }
  } finally {
    opt.dispose();
    gradSum.dispose();
    await lock?.release();
  }
  return result();
}

/** Environment variables of {@link faultPause}. */
export const FAULT_PAUSE_ENV = {
  /** The end of a checkpoint path, e.g. `seed0/s-dpo/checkpoints/step-0000001`. */
  at: "RECALIGN_PAUSE_AFTER_CHECKPOINT",
  /** File written (with the checkpoint's path) once the process has paused there. */
  marker: "RECALIGN_PAUSE_MARKER",
};

/**
 * Fault-injection point of the kill -9 suite (tests/fault/): when the checkpoint just written
 * ends with `$RECALIGN_PAUSE_AFTER_CHECKPOINT`, write `$RECALIGN_PAUSE_MARKER` and wait
 * forever, so the suite can SIGKILL the process at exactly that point. Inert unless both are
 * set (and without --allow-env).
 */
async function faultPause(checkpoint: string): Promise<void> {
  let at: string | undefined, marker: string | undefined;
  try {
    at = Deno.env.get(FAULT_PAUSE_ENV.at);
    marker = Deno.env.get(FAULT_PAUSE_ENV.marker);
  } catch {
    return;
  }
  if (!at || !marker || !checkpoint.endsWith(at)) return;
  await writeFileAtomic(marker, checkpoint + "\n");
  await new Promise<never>(() => setInterval(() => {}, 60_000));
}

async function lastCheckpoint(outDir?: string): Promise<string> {
  const ckpts = outDir ? await listCheckpoints(outDir) : [];
  return ckpts.length ? `${outDir}/checkpoints/${ckpts.at(-1)}` : "none";
}

/**
 * TRL's `logits/chosen` and `logits/rejected`: the mean logit over the vocabulary and the
 * response tokens of the chosen rows and of the rejected rows (rows grouped `[chosen,
 * rejected…]` per example).
 */
function meanLogits(
  logits: tf.Tensor3D,
  labels: tf.Tensor2D,
  b: number,
  rowsPerExample: number,
): Record<string, tf.Scalar> {
  return tf.tidy(() => {
    const mask = tf.cast(tf.notEqual(labels, IGNORE_INDEX), "float32");
    const sums = tf.sum(tf.mul(tf.mean(logits, -1), mask), -1).reshape([b, rowsPerExample]);
    const counts = tf.sum(mask, -1).reshape([b, rowsPerExample]);
    const part = (t: tf.Tensor, from: number, n: number) => tf.sum(t.slice([0, from], [b, n]));
    const k = rowsPerExample - 1;
    return {
      "logits/chosen": tf.div(part(sums, 0, 1), part(counts, 0, 1)) as tf.Scalar,
      "logits/rejected": tf.div(part(sums, 1, k), part(counts, 1, k)) as tf.Scalar,
    };
  });
}

/** Largest heap the wasm backend can address. */
const WASM_HEAP_BYTES = 4 * 1024 ** 3;

/**
 * Rough peak bytes of one micro-batch's forward + backward: saved activations per token and
 * layer (residual, norms, q/k/v, attention scores and probabilities, MLP), twice for the
 * backward's temporaries, plus the response logits with their softmax and gradient.
 */
export function estimateMicroBatchBytes(
  model: LlamaModel,
  rows: number,
  seqLen: number,
  respLen: number,
): number {
  const c = model.config;
  const h = c.hidden_size, f = c.intermediate_size, nh = c.num_attention_heads;
  const perTokenLayer = 8 * h + 3 * f + 2 * nh * seqLen;
  const activations = rows * seqLen * c.num_hidden_layers * perTokenLayer * 4 * 2;
  const logits = rows * respLen * c.vocab_size * 4 * 3;
  return activations + logits;
}

/** Refuse, before the first step, a micro-batch that cannot fit the wasm heap. */
function checkMemory(model: LlamaModel, examples: TrainExample[], cfg: TrainConfig): void {
  if (tf.getBackend() !== "wasm") return;
  const k = cfg.stage === "sft" ? 0 : cfg.numNegatives;
  let seq = 0, resp = 0;
  for (const ex of examples) {
    const responses = [ex.chosen, ...(k ? ex.rejected ?? [] : [])];
    for (const r of responses) {
      seq = Math.max(seq, ex.prompt.length + r.length);
      resp = Math.max(resp, r.length);
    }
  }
  if (cfg.maxLength) seq = Math.min(seq, cfg.maxLength);
  const rows = Math.max(1, Math.floor(cfg.microBatchSize / (1 + k))) * (1 + k);
  const need = estimateMicroBatchBytes(model, rows, seq, resp);
  if (need > WASM_HEAP_BYTES * 0.85) {
    const gib = (x: number) => (x / 1024 ** 3).toFixed(1);
    throw new ConfigError(
      "microBatchSize",
      `a micro-batch of ${rows} sequences × ${seq} tokens needs about ${gib(need)} GiB, ` +
        `more than the wasm heap's ${
          gib(WASM_HEAP_BYTES)
        } GiB; lower microBatchSize (gradients are accumulated)`,
    );
  }
}

/** One micro-batch of a step: its groups (prompt; chosen, then the drawn negatives). */
export interface MicroBatch {
  groups: ResponseGroup[];
  /** Its share of the step's examples (the loss is multiplied by it). */
  weight: number;
  /** Seed of its dropout masks. */
  dropoutSeed: number;
  /** Cached reference log-probs [b·(1+K)] (preference stages); live ones are computed. */
  ref?: Float32Array;
}

/** The micro-batches a worker engine computes for a step. */
export interface GradientJob {
  kind: "grads";
  cfg: TrainConfig;
  /** Variable keys, in the order the gradients are returned. */
  keys: string[];
  micro: MicroBatch[];
}

/** One micro-batch's loss (before its weight), metrics, tokens and gradients (caller disposes). */
export interface MicroBatchOutput {
  loss: number;
  metrics: Record<string, number>;
  tokens: number;
  grads: tf.NamedTensorMap;
}

/**
 * Loss, metrics and gradients of one micro-batch: the forward and backward pass of a step,
 * the same on the main thread and on the worker engine.
 */
export async function microBatchGradients(
  model: LlamaModel,
  vars: tf.Variable[],
  mb: MicroBatch,
  cfg: TrainConfig,
): Promise<MicroBatchOutput> {
  const k = cfg.stage === "sft" ? 0 : cfg.numNegatives;
  const rowsPerExample = 1 + k;
  const groups = mb.groups;
  const padOpts = { padId: cfg.padId, maxLength: cfg.maxLength || undefined };
  const refValues = k > 0 ? (mb.ref ?? liveReference(model, groups, cfg)) : undefined;
  const batch = k > 0 && cfg.packPrompts ? packGroups(groups, padOpts) : padPairs(
    groups.flatMap((g) => g.responses.map((response) => ({ prompt: g.prompt, response }))),
    padOpts,
  );
  const tokens = batch.numTokens;
  const ref = refValues ? tf.tensor2d(refValues, [groups.length, rowsPerExample]) : undefined;
  const kept: Record<string, tf.Scalar> = {};
  const dropoutRng = new Rng(mb.dropoutSeed);
  const weight = mb.weight;
  const { value, grads } = tf.variableGrads(() => {
    // Logits at the response positions only: [R, Tr, V].
    const logits = forwardBatch(model, batch, { training: true, rng: dropoutRng });
    const labels = batch.responseLabels;
    let out: LossOutput;
    if (k === 0) out = sftLoss(logits, labels);
    else {
      const b = groups.length;
      const lp = sequenceLogProbs(logits, labels).reshape([b, rowsPerExample]) as tf.Tensor2D;
      const inputs: PreferenceInputs = {
        policyChosen: lp.slice([0, 0], [b, 1]).reshape([b]) as tf.Tensor1D,
        policyRejected: lp.slice([0, 1], [b, k]) as tf.Tensor2D,
        referenceChosen: ref!.slice([0, 0], [b, 1]).reshape([b]) as tf.Tensor1D,
        referenceRejected: ref!.slice([0, 1], [b, k]) as tf.Tensor2D,
      };
      if (cfg.stage === "dmpo-released") {
        const avg = sequenceLogProbs(logits, labels, { average: true }).reshape([
          b,
          rowsPerExample,
        ]);
        inputs.chosenNllMean = tf.neg(avg.slice([0, 0], [b, 1]).reshape([b])) as tf.Tensor1D;
      }
      out = LOSSES[cfg.stage as Exclude<Stage, "sft">](inputs, {
        beta: cfg.beta,
        gamma: cfg.gamma,
      });
      out.metrics = { ...out.metrics, ...meanLogits(logits, labels, b, rowsPerExample) };
    }
    for (const [name, t] of Object.entries(out.metrics)) kept[name] = tf.keep(t);
    return tf.mul(out.loss, weight) as tf.Scalar;
  }, vars);
  const loss = (await value.data())[0] / weight;
  value.dispose();
  ref?.dispose();
  disposeBatch(batch);
  const metrics: Record<string, number> = {};
  for (const [name, t] of Object.entries(kept)) {
    metrics[name] = (await t.data())[0];
    t.dispose();
  }
  return { loss, metrics, tokens, grads };
}

/** Live reference log-probs of a micro-batch's groups: the model with its adapters off. */
function liveReference(model: LlamaModel, groups: ResponseGroup[], cfg: TrainConfig): Float32Array {
  const scoreOpts = {
    adapters: false,
    microBatchSize: cfg.microBatchSize,
    padId: cfg.padId,
    maxLength: cfg.maxLength,
  };
  return cfg.packPrompts ? scoreGroups(model, groups, scoreOpts) : scorePairs(
    model,
    groups.flatMap((g) => g.responses.map((response) => ({ prompt: g.prompt, response }))),
    scoreOpts,
  );
}

/** Cached reference log-probs [b·(1+K)] of a micro-batch (scored on first use of an example). */
function referenceLogps(
  model: LlamaModel,
  examples: TrainExample[],
  idx: number[],
  neg: number[][],
  cfg: TrainConfig,
  cache: Map<number, Float32Array>,
): Float32Array {
  const k = neg[0].length;
  const out = new Float32Array(idx.length * (1 + k));
  const missing = [...new Set(idx.filter((i) => !cache.has(i)))];
  if (missing.length) {
    // Score chosen + the whole pool of each new example once. The values depend (in the
    // last bits) on which examples are scored together (padding, packing), so the cache is
    // part of a checkpoint: a resumed run continues with the uninterrupted run's values.
    const scores = liveReference(
      model,
      missing.map((i) => ({
        prompt: examples[i].prompt,
        responses: [examples[i].chosen, ...examples[i].rejected!],
      })),
      cfg,
    );
    let o = 0;
    for (const i of missing) {
      const n = 1 + examples[i].rejected!.length;
      cache.set(i, scores.slice(o, o + n));
      o += n;
    }
  }
  idx.forEach((i, j) => {
    const c = cache.get(i)!;
    out[j * (1 + k)] = c[0];
    neg[j].forEach((r, q) => (out[j * (1 + k) + 1 + q] = c[1 + r]));
  });
  return out;
}
