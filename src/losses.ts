/**
 * Training losses for LLM recommenders, as pure functions on tensors: the sequence log-prob
 * of a response ({@link sequenceLogProbs}), supervised fine-tuning ({@link sftLoss}), and the
 * preference losses:
 *
 * - DPO: Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a
 *   Reward Model", NeurIPS 2023 (arXiv:2305.18290); the sigmoid loss of TRL's `DPOTrainer`
 *   (`trl/trainer/dpo_trainer.py`, `-F.logsigmoid(beta * delta)`), also the loss of DPO4Rec,
 *   "Direct Preference Optimization for LLM-Enhanced Recommendation Systems"
 *   (arXiv:2410.05939).
 * - S-DPO: "On Softmax Direct Preference Optimization for Recommendation", NeurIPS 2024
 *   (arXiv:2406.09215; code github.com/chenyuxin1999/S-DPO, `trainer/softmax_dpo_trainer.py`):
 *   K negatives inside one softmax.
 * - DMPO: "Aligning Large Language Model with Direct Multi-Preference Optimization for
 *   Recommendation", CIKM 2024 (arXiv:2405.16127; code github.com/BZX667/DMPO), in two forms:
 *   the paper's formula (chosen reward vs the mean of the negatives' rewards) and the loss the
 *   released code computes (independent pairs, the chosen response's reference log-prob in
 *   both reference slots, plus an SFT term); see the data-format notes (FORMATS.md) §2.4.
 *
 * Shapes: B batch, T tokens, V vocabulary, K negatives per prompt. Log-probs are sums over
 * the response tokens (EOS included, prompt and padding masked with {@link IGNORE_INDEX}).
 * Rewards are `β·(log π(y|x) − log π_ref(y|x))`. Every loss returns the scalar loss plus
 * detached metrics named as in TRL (`rewards/chosen`, `rewards/rejected`,
 * `rewards/accuracies`, `rewards/margins`, `logps/chosen`, `logps/rejected`, and `loss`).
 *
 * Every function validates its arguments and throws {@link InputError} naming the argument,
 * the expected shape and the shape it got. Returned tensors belong to the caller.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { InputError } from "./errors.ts";

/** Label id that marks a position without a loss (prompt or padding), as in PyTorch/TRL. */
export const IGNORE_INDEX = -100;

/** What every loss returns: the scalar to minimise and detached scalars to log. */
export interface LossOutput {
  /** The loss, a scalar; gradients flow from it. */
  loss: tf.Scalar;
  /** Detached scalars keyed by TRL metric names (`rewards/chosen`, …, and `loss`). */
  metrics: Record<string, tf.Scalar>;
}

/** Options of {@link sequenceLogProbs}. */
export interface SequenceLogProbsOptions {
  /** true: per-token mean over the response tokens of each row; false (default): sum. */
  average?: boolean;
}

/** Options of {@link dpoLoss} and {@link sdpoLoss}. */
export interface DpoOptions {
  /** β, the inverse temperature of the implicit reward; finite and > 0. Required. */
  beta: number;
}

/** Options of {@link dmpoLoss}. */
export interface DmpoOptions {
  /**
   * `"paper"`: the formula of the DMPO paper. `"released"`: what the authors' released code
   * computes (see {@link dmpoLoss}).
   */
  variant: "paper" | "released";
  /** β; required for `"paper"`, default 0.1 for `"released"` (the library default there). */
  beta?: number;
  /** γ, weight of the chosen response's SFT term (`dpo_ftx`); `"released"` only, default 1.0. */
  gamma?: number;
  /**
   * Policy's mean per-token NLL of each chosen response, [B]
   * (`sequenceLogProbs(logits, labels, { average: true })` negated). Required by
   * `"released"` when γ ≠ 0; ignored by `"paper"`.
   */
  chosenNllMean?: tf.Tensor1D;
}

/** The inputs of every preference loss in {@link LOSSES}: summed response log-probs. */
export interface PreferenceInputs {
  /** Policy log-prob of each chosen response, [B]. */
  policyChosen: tf.Tensor1D;
  /** Policy log-prob of each rejected response, [B, K]. */
  policyRejected: tf.Tensor2D;
  /** Reference log-prob of each chosen response, [B]. */
  referenceChosen: tf.Tensor1D;
  /** Reference log-prob of each rejected response, [B, K]. */
  referenceRejected: tf.Tensor2D;
  /** Policy mean per-token NLL of each chosen response, [B]; only `dmpo-released` uses it. */
  chosenNllMean?: tf.Tensor1D;
}

/** Options shared by the entries of {@link LOSSES}. */
export interface PreferenceLossOptions {
  /** β; required except for `dmpo-released` (default 0.1). */
  beta?: number;
  /** γ of `dmpo-released` (default 1.0); ignored by the others. */
  gamma?: number;
}

/** A preference loss with the common signature of {@link LOSSES}. */
export type PreferenceLoss = (inputs: PreferenceInputs, opts: PreferenceLossOptions) => LossOutput;

// ---------------------------------------------------------------------------------------------
// Validation helpers
// ---------------------------------------------------------------------------------------------

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

function checkRank(x: tf.Tensor, name: string, rank: number, expected: string): void {
  if (x.rank !== rank) {
    throw new InputError(
      name,
      `expected shape ${expected} (rank ${rank}), got ${fmtShape(x.shape)}`,
    );
  }
}

function checkSameShape(x: tf.Tensor, name: string, like: tf.Tensor, likeName: string): void {
  if (x.rank !== like.rank || x.shape.some((d, i) => d !== like.shape[i])) {
    throw new InputError(
      name,
      `expected shape ${fmtShape(like.shape)} (matching ${likeName}), got ${fmtShape(x.shape)}`,
    );
  }
}

function checkBeta(beta: number | undefined, name = "beta"): number {
  if (beta === undefined) throw new InputError(name, "is required (a finite number > 0)");
  if (typeof beta !== "number" || !Number.isFinite(beta) || beta <= 0) {
    throw new InputError(name, `expected a finite number > 0, got ${beta}`);
  }
  return beta;
}

/** Throws InputError naming the first argument holding a NaN or ±Infinity (one sync). */
function checkFinite(named: Array<[string, tf.Tensor]>): void {
  const flags = tf.tidy(() =>
    tf.stack(named.map(([, x]) => tf.cast(tf.all(tf.isFinite(x)), "int32"))).dataSync()
  );
  named.forEach(([name], i) => {
    if (flags[i] !== 1) {
      throw new InputError(name, "contains a non-finite value (NaN or ±Infinity)");
    }
  });
}

/**
 * Validates (policyChosen [B], policyRejected [B,K], referenceChosen [B], referenceRejected
 * [B,K]) and returns [B, K].
 */
function checkPreference(
  pc: tf.Tensor,
  pr: tf.Tensor,
  rc: tf.Tensor,
  rr: tf.Tensor,
): [number, number] {
  checkRank(pc, "policyChosen", 1, "[B]");
  const b = pc.shape[0] ?? 0;
  if (b < 1) {
    throw new InputError("policyChosen", `expected B ≥ 1, got shape ${fmtShape(pc.shape)}`);
  }
  checkSameShape(rc, "referenceChosen", pc, "policyChosen");
  checkRank(pr, "policyRejected", 2, `[${b},K]`);
  if (pr.shape[0] !== b) {
    throw new InputError(
      "policyRejected",
      `expected shape [${b},K] (B = ${b} from policyChosen), got ${fmtShape(pr.shape)}`,
    );
  }
  const k = pr.shape[1] ?? 0;
  if (k < 1) {
    throw new InputError("policyRejected", `expected K ≥ 1, got shape ${fmtShape(pr.shape)}`);
  }
  checkSameShape(rr, "referenceRejected", pr, "policyRejected");
  return [b, k];
}

// ---------------------------------------------------------------------------------------------
// Detaching and metrics
// ---------------------------------------------------------------------------------------------

/**
 * `compute(inputs)` as one op whose gradient wrt every input is zero (tfjs has no
 * `stopGradient`). The ops inside `compute` run as the forward pass of a custom gradient, so
 * they are not recorded on the gradient tape (no "gradient function not found" for
 * comparisons if someone differentiates through a metric).
 */
function detached(inputs: tf.Tensor[], compute: (xs: tf.Tensor[]) => tf.Tensor): tf.Tensor {
  const shapes = inputs.map((x) => [x.shape, x.dtype] as const);
  const op = tf.customGrad((...args) => ({
    value: compute(args.slice(0, inputs.length) as tf.Tensor[]),
    gradFunc: () => shapes.map(([shape, dtype]) => tf.zeros(shape, dtype)),
  }));
  return op(...inputs);
}

/** Metric names, in the order {@link preferenceMetrics} computes them. */
const PREFERENCE_METRICS = [
  "loss",
  "rewards/chosen",
  "rewards/rejected",
  "rewards/accuracies",
  "rewards/margins",
  "logps/chosen",
  "logps/rejected",
] as const;

/**
 * TRL-named, detached metrics. Chosen rewards β·(pc − rc) [B], rejected rewards
 * β·(pr − rrForRewards) [B,K]. `accuracy`: `"max"` counts a prompt as right when its chosen
 * reward is strictly greater than its largest rejected reward (mean over B); `"pairs"` counts
 * each (chosen, rejected_k) pair separately (mean over B·K). Identical when K = 1.
 * `rewards/margins` = mean_b (chosen − mean_k rejected), the same under both.
 */
function preferenceMetrics(
  pc: tf.Tensor1D, // [B]
  pr: tf.Tensor2D, // [B,K]
  rc: tf.Tensor1D, // [B]
  rrForRewards: tf.Tensor2D, // [B,K] or [B,1]
  beta: number,
  loss: tf.Scalar,
  accuracy: "max" | "pairs",
): Record<string, tf.Scalar> {
  const values = detached([pc, pr, rc, rrForRewards, loss], ([dpc, dpr, drc, drr, dloss]) => {
    const chosen = tf.mul(beta, tf.sub(dpc, drc)); // [B]
    const rejected = tf.mul(beta, tf.sub(dpr, drr)); // [B,K]
    const right = accuracy === "max"
      ? tf.greater(chosen, tf.max(rejected, 1)) // [B]
      : tf.greater(tf.expandDims(chosen, 1), rejected); // [B,K]
    return tf.stack([
      dloss,
      tf.mean(chosen),
      tf.mean(rejected),
      tf.mean(tf.cast(right, "float32")),
      tf.mean(tf.sub(chosen, tf.mean(rejected, 1))),
      tf.mean(dpc),
      tf.mean(dpr),
    ]); // [7]
  });
  const scalars = tf.unstack(values) as tf.Scalar[];
  return Object.fromEntries(PREFERENCE_METRICS.map((name, i) => [name, scalars[i]]));
}

// ---------------------------------------------------------------------------------------------
// Sequence log-probs and SFT
// ---------------------------------------------------------------------------------------------

/** Checked labels, as plain arrays, for the custom-gradient kernel. */
interface PreparedLabels {
  b: number;
  t: number;
  v: number;
  /** [B*T] flat index `n*V + max(label, 0)` into logits reshaped to [B*T*V]. */
  flatIndex: Int32Array;
  /** [B*T] label clipped to ≥ 0 (masked positions point at id 0 with weight 0). */
  clipped: Int32Array;
  /** [B*T] number of response tokens per row, repeated; used for averaging. */
  counts: Int32Array;
  /** [B*T] 1 on response tokens, 0 on masked ones. */
  mask: Float32Array;
  /** Total number of response tokens in the batch. */
  total: number;
}

function prepareLabels(logits: tf.Tensor, labels: tf.Tensor): PreparedLabels {
  if (logits.rank !== 3) {
    throw new InputError(
      "logits",
      `expected shape [B,T,V] (rank 3), got ${fmtShape(logits.shape)} (labels ${
        fmtShape(labels.shape)
      })`,
    );
  }
  if (
    labels.rank !== 2 || labels.shape[0] !== logits.shape[0] || labels.shape[1] !== logits.shape[1]
  ) {
    throw new InputError(
      "labels",
      `expected shape [B,T] = ${fmtShape(logits.shape.slice(0, 2))} to match logits ${
        fmtShape(logits.shape)
      }, got ${fmtShape(labels.shape)}`,
    );
  }
  if (labels.dtype !== "int32") {
    throw new InputError("labels", `expected dtype int32, got ${labels.dtype}`);
  }
  if (logits.dtype !== "float32") {
    throw new InputError("logits", `expected dtype float32, got ${logits.dtype}`);
  }
  const [b, t, v] = logits.shape;
  if (b < 1) throw new InputError("logits", `expected B ≥ 1, got shape ${fmtShape(logits.shape)}`);
  if (v < 2) throw new InputError("logits", `expected V ≥ 2, got shape ${fmtShape(logits.shape)}`);
  if (b * t * v > 0x7fffffff) {
    throw new InputError(
      "logits",
      `B·T·V = ${b * t * v} exceeds the int32 index range; split the batch (shape ${
        fmtShape(logits.shape)
      })`,
    );
  }
  const ids = labels.dataSync() as Int32Array;
  const n = b * t;
  const flatIndex = new Int32Array(n), clipped = new Int32Array(n), counts = new Int32Array(n);
  const mask = new Float32Array(n);
  let total = 0;
  for (let row = 0; row < b; row++) {
    let count = 0;
    for (let pos = 0; pos < t; pos++) {
      const i = row * t + pos, id = ids[i];
      if (id === IGNORE_INDEX) continue;
      if (id < 0 || id >= v) {
        throw new InputError(
          "labels",
          `label id ${id} at [${row},${pos}] is outside the vocabulary [0, ${v}) of logits ` +
            `${fmtShape(logits.shape)} (use ${IGNORE_INDEX} to mask a position)`,
        );
      }
      clipped[i] = id;
      mask[i] = 1;
      count++;
    }
    if (count === 0) {
      throw new InputError(
        "labels",
        `row ${row} (0-based) has no response tokens: every label is ${IGNORE_INDEX}`,
      );
    }
    for (let pos = 0; pos < t; pos++) counts[row * t + pos] = count;
    total += count;
  }
  for (let i = 0; i < n; i++) flatIndex[i] = i * v + clipped[i];
  return { b, t, v, flatIndex, clipped, counts, mask, total };
}

/**
 * Σ_t weight[b,t] · log_softmax(logits[b,t])[label[b,t]] → [B], with a hand-written gradient
 * `dy[b] · weight[b,t] · (onehot(label) − softmax(logits[b,t]))` (gather has no gradient on
 * wasm, and autodiff through logSumExp is slow there). Labels are closed over as plain arrays,
 * so logits is the only differentiable input.
 */
function weightedLabelLogProbs(
  logits: tf.Tensor3D,
  p: PreparedLabels,
  weight: Float32Array, // [B*T]
): tf.Tensor1D {
  const { b, t, v } = p;
  const n = b * t;
  const op = tf.customGrad((x, save) => {
    const flat = tf.reshape(x as tf.Tensor, [n, v]); // [N,V]
    const lse = tf.logSumExp(flat, 1); // [N]
    const picked = tf.gather(tf.reshape(flat, [n * v]), tf.tensor1d(p.flatIndex, "int32")); // [N]
    const tokens = tf.mul(tf.sub(picked, lse), tf.tensor1d(weight)); // [N]
    const value = tf.sum(tf.reshape(tokens, [b, t]), 1); // [B]
    (save as tf.GradSaveFunc)([flat, lse]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedFlat, savedLse] = saved; // [N,V], [N]
        const probs = tf.exp(tf.sub(savedFlat, tf.expandDims(savedLse, 1))); // [N,V]
        // oneHot(..., "float32") writes int bits on the wasm backend in tfjs 4.22: cast instead.
        const onehot = tf.cast(tf.oneHot(tf.tensor1d(p.clipped, "int32"), v), "float32"); // [N,V]
        const coef = tf.reshape(
          tf.mul(tf.expandDims(dy, 1), tf.tensor2d(weight, [b, t])), // [B,T]
          [n, 1],
        );
        return tf.reshape(tf.mul(coef, tf.sub(onehot, probs)), [b, t, v]);
      },
    };
  });
  return op(logits) as tf.Tensor1D;
}

/**
 * Log-probability of each row's response under `logits`: Σ_t log_softmax(logits[b,t])
 * [labels[b,t]] over positions whose label is not {@link IGNORE_INDEX} (−100). Labels must be
 * already aligned: the label at t is the token the logits at t predict (the caller shifts by
 * one, like TRL's `logits[..., :-1, :]` / `input_ids[..., 1:]`). Differentiable in `logits`
 * (custom gradient, works on the wasm backend).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import * as tf from "@tensorflow/tfjs-core";
 * import { initBackend } from "./backend.ts";
 * import { sequenceLogProbs } from "./losses.ts";
 * await initBackend("cpu", { quiet: true });
 * const logits = tf.zeros([1, 2, 4]) as tf.Tensor3D; // uniform over 4 tokens
 * const labels = tf.tensor2d([[-100, 3]], [1, 2], "int32"); // position 0 is prompt
 * const lp = sequenceLogProbs(logits, labels); // [B] = [log(1/4)]
 * assert.ok(Math.abs(lp.dataSync()[0] - Math.log(1 / 4)) < 1e-6);
 * ```
 *
 * @param logits Float32 logits, [B, T, V].
 * @param labels Int32 target ids aligned with `logits`, −100 where masked, [B, T].
 * @param opts `average: true` → mean over each row's response tokens instead of the sum.
 * @returns Summed (or averaged) response log-probs, [B].
 * @throws {InputError} on a rank/shape mismatch (both shapes named), a label id outside
 *   [0, V) other than −100, or a row with no response tokens (row index named).
 */
export function sequenceLogProbs(
  logits: tf.Tensor3D,
  labels: tf.Tensor2D,
  opts: SequenceLogProbsOptions = {},
): tf.Tensor1D {
  const p = prepareLabels(logits, labels);
  const weight = opts.average ? p.mask.map((m, i) => m / p.counts[i]) : p.mask;
  return tf.tidy(() => weightedLabelLogProbs(logits, p, weight));
}

/**
 * Supervised fine-tuning loss: mean token cross-entropy over all response tokens of the
 * batch, i.e. total NLL / number of labels ≠ −100 (so long responses weigh more, as in a
 * Hugging Face causal-LM loss). Labels are aligned with `logits` as in
 * {@link sequenceLogProbs}.
 *
 * @param logits Float32 logits, [B, T, V].
 * @param labels Int32 target ids aligned with `logits`, −100 where masked, [B, T].
 * @returns `{ loss, metrics: { loss } }` (the metric is a detached copy).
 * @throws {InputError} as {@link sequenceLogProbs}.
 */
export function sftLoss(logits: tf.Tensor3D, labels: tf.Tensor2D): LossOutput {
  const p = prepareLabels(logits, labels);
  const weight = p.mask.map((m) => m / p.total);
  return tf.tidy(() => {
    const loss = tf.neg(tf.sum(weightedLabelLogProbs(logits, p, weight))) as tf.Scalar;
    return { loss, metrics: { loss: detached([loss], ([l]) => tf.clone(l)) as tf.Scalar } };
  });
}

// ---------------------------------------------------------------------------------------------
// Preference losses
// ---------------------------------------------------------------------------------------------

/** mean_{b,k} softplus(−β((pc_b − rc_b) − (pr_bk − rr_bk))) on checked [B], [B,K] inputs. */
function pairwiseDpo(
  pc: tf.Tensor1D,
  pr: tf.Tensor2D,
  rc: tf.Tensor1D,
  rr: tf.Tensor2D,
  beta: number,
): tf.Scalar {
  const chosen = tf.expandDims(tf.sub(pc, rc), 1); // [B,1]
  const logits = tf.mul(beta, tf.sub(chosen, tf.sub(pr, rr))); // [B,K]
  return tf.mean(tf.softplus(tf.neg(logits)));
}

/**
 * DPO (sigmoid loss, Rafailov et al. 2023; TRL `loss_type="sigmoid"`):
 * `mean_b softplus(−β((pc − rc) − (pr − rr)))` = `mean_b −log σ(β·Δ)`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import * as tf from "@tensorflow/tfjs-core";
 * import { initBackend } from "./backend.ts";
 * import { dpoLoss } from "./losses.ts";
 * await initBackend("cpu", { quiet: true });
 * const v = tf.tensor1d([-5]);
 * const { loss } = dpoLoss(v, v, v, v, { beta: 0.1 }); // policy = reference
 * assert.ok(Math.abs(loss.dataSync()[0] - Math.LN2) < 1e-6);
 * ```
 *
 * @param policyChosen pc, policy log-prob of the chosen response, [B].
 * @param policyRejected pr, policy log-prob of the rejected response, [B].
 * @param referenceChosen rc, reference log-prob of the chosen response, [B].
 * @param referenceRejected rr, reference log-prob of the rejected response, [B].
 * @param opts `beta` (required, > 0).
 * @returns Loss and TRL metrics (rewards β·(policy − reference), batch means).
 * @throws {InputError} on mismatched shapes, B = 0, bad β, or non-finite inputs.
 */
export function dpoLoss(
  policyChosen: tf.Tensor1D,
  policyRejected: tf.Tensor1D,
  referenceChosen: tf.Tensor1D,
  referenceRejected: tf.Tensor1D,
  opts: DpoOptions,
): LossOutput {
  checkRank(policyChosen, "policyChosen", 1, "[B]");
  for (
    const [x, name] of [
      [referenceChosen, "referenceChosen"],
      [policyRejected, "policyRejected"],
      [referenceRejected, "referenceRejected"],
    ] as const
  ) checkSameShape(x, name, policyChosen, "policyChosen");
  if (policyChosen.shape[0] < 1) {
    throw new InputError(
      "policyChosen",
      `expected B ≥ 1, got shape ${fmtShape(policyChosen.shape)}`,
    );
  }
  const beta = checkBeta(opts?.beta);
  checkFinite([
    ["policyChosen", policyChosen],
    ["policyRejected", policyRejected],
    ["referenceChosen", referenceChosen],
    ["referenceRejected", referenceRejected],
  ]);
  return tf.tidy(() => {
    const pr = tf.expandDims(policyRejected, 1) as tf.Tensor2D; // [B,1]
    const rr = tf.expandDims(referenceRejected, 1) as tf.Tensor2D; // [B,1]
    const loss = pairwiseDpo(policyChosen, pr, referenceChosen, rr, beta);
    const metrics = preferenceMetrics(policyChosen, pr, referenceChosen, rr, beta, loss, "max");
    return { loss, metrics };
  });
}

function checkedPreference(
  pc: tf.Tensor1D,
  pr: tf.Tensor2D,
  rc: tf.Tensor1D,
  rr: tf.Tensor2D,
  beta: number | undefined,
): number {
  checkPreference(pc, pr, rc, rr);
  const b = checkBeta(beta);
  checkFinite([
    ["policyChosen", pc],
    ["policyRejected", pr],
    ["referenceChosen", rc],
    ["referenceRejected", rr],
  ]);
  return b;
}

/** β((pr_k − rr_k) − (pc − rc)) on checked inputs, [B,K]. */
function sdpoLogits(
  pc: tf.Tensor1D,
  pr: tf.Tensor2D,
  rc: tf.Tensor1D,
  rr: tf.Tensor2D,
  beta: number,
): tf.Tensor2D {
  return tf.mul(beta, tf.sub(tf.sub(pr, rr), tf.expandDims(tf.sub(pc, rc), 1)));
}

/**
 * S-DPO (NeurIPS 2024, softmax DPO with K negatives):
 * `mean_b softplus(logsumexp_k β((pr_bk − rr_bk) − (pc_b − rc_b)))`
 * = `mean_b −log σ(−log Σ_k exp(β(r_k − r_w)))`. With K = 1 this is {@link dpoLoss}.
 *
 * Metrics: `rewards/rejected` and `logps/rejected` are means over B and K;
 * `rewards/accuracies` is the fraction of prompts whose chosen reward is greater than the
 * largest of its K rejected rewards; `rewards/margins` is the batch mean of chosen reward
 * minus the mean rejected reward.
 *
 * @param policyChosen pc, [B].
 * @param policyRejected pr, policy log-probs of the K negatives, [B, K].
 * @param referenceChosen rc, [B].
 * @param referenceRejected rr, [B, K].
 * @param opts `beta` (required, > 0; the S-DPO scripts use 1).
 * @returns Loss and TRL metrics.
 * @throws {InputError} on mismatched shapes, K = 0, bad β, or non-finite inputs.
 */
export function sdpoLoss(
  policyChosen: tf.Tensor1D,
  policyRejected: tf.Tensor2D,
  referenceChosen: tf.Tensor1D,
  referenceRejected: tf.Tensor2D,
  opts: DpoOptions,
): LossOutput {
  const pc = policyChosen, pr = policyRejected, rc = referenceChosen, rr = referenceRejected;
  const beta = checkedPreference(pc, pr, rc, rr, opts?.beta);
  return tf.tidy(() => {
    const z = sdpoLogits(pc, pr, rc, rr, beta); // [B,K]
    const loss = tf.mean(tf.softplus(tf.logSumExp(z, 1))) as tf.Scalar;
    return { loss, metrics: preferenceMetrics(pc, pr, rc, rr, beta, loss, "max") };
  });
}

/**
 * How much each negative weighs in the S-DPO gradient: softmax over k of
 * β((pr_k − rr_k) − (pc − rc)), [B, K] (rows sum to 1). Negatives the policy rates high
 * relative to the chosen item get most of the weight ("hard-negative mining" in the S-DPO
 * paper). Not differentiable by intent: the result is detached.
 *
 * @param policyChosen pc, [B].
 * @param policyRejected pr, [B, K].
 * @param referenceChosen rc, [B].
 * @param referenceRejected rr, [B, K].
 * @param opts `beta` (required, > 0).
 * @returns Softmax weights, [B, K].
 * @throws {InputError} as {@link sdpoLoss}.
 */
export function sdpoNegativeWeights(
  policyChosen: tf.Tensor1D,
  policyRejected: tf.Tensor2D,
  referenceChosen: tf.Tensor1D,
  referenceRejected: tf.Tensor2D,
  opts: DpoOptions,
): tf.Tensor2D {
  const pc = policyChosen, pr = policyRejected, rc = referenceChosen, rr = referenceRejected;
  const beta = checkedPreference(pc, pr, rc, rr, opts?.beta);
  return tf.tidy(() =>
    detached(
      [pc, pr, rc, rr],
      ([a, b, c, d]) =>
        tf.softmax(
          sdpoLogits(a as tf.Tensor1D, b as tf.Tensor2D, c as tf.Tensor1D, d as tf.Tensor2D, beta),
        ),
    ) as tf.Tensor2D
  );
}

/**
 * DMPO (CIKM 2024), in two variants.
 *
 * - `"paper"` (the paper's formula): the chosen reward against the mean of the K rejected
 *   rewards inside one sigmoid,
 *   `mean_b softplus(−(β(pc_b − rc_b) − mean_k β(pr_bk − rr_bk)))`. β is required.
 *   Metrics as in {@link sdpoLoss}.
 * - `"released"` (as released: what the authors' code computes, FORMATS.md §2.4): each
 *   negative is an independent pair scored by TRL's sigmoid loss with the chosen response's
 *   reference log-prob passed into both reference slots, so the reference terms cancel, plus
 *   the SFT term `dpo_ftx`:
 *   per pair `softplus(−β(pc_b − pr_bk)) + γ·chosenNllMean_b`, averaged over all B·K pairs.
 *   Defaults β = 0.1, γ = 1.0. `referenceRejected` is validated but unused. Metrics mirror
 *   the released code: `rewards/chosen` = β(pc − rc), `rewards/rejected` = β(pr_k − rc)
 *   (sic, the chosen reference), `rewards/accuracies` over the B·K pairs.
 *
 * @param policyChosen pc, [B].
 * @param policyRejected pr, [B, K].
 * @param referenceChosen rc, [B].
 * @param referenceRejected rr, [B, K].
 * @param opts `variant`, `beta`, `gamma`, `chosenNllMean` ([B], released only).
 * @returns Loss and TRL metrics.
 * @throws {InputError} on mismatched shapes, K = 0, bad β or γ, a missing `chosenNllMean`,
 *   or non-finite inputs.
 */
export function dmpoLoss(
  policyChosen: tf.Tensor1D,
  policyRejected: tf.Tensor2D,
  referenceChosen: tf.Tensor1D,
  referenceRejected: tf.Tensor2D,
  opts: DmpoOptions,
): LossOutput {
  const pc = policyChosen, pr = policyRejected, rc = referenceChosen, rr = referenceRejected;
  const variant = opts?.variant;
  if (variant === "paper") {
    const beta = checkedPreference(pc, pr, rc, rr, opts.beta);
    return tf.tidy(() => {
      const chosen = tf.mul(beta, tf.sub(pc, rc)); // [B]
      const rejected = tf.mean(tf.mul(beta, tf.sub(pr, rr)), 1); // [B]
      const loss = tf.mean(tf.softplus(tf.neg(tf.sub(chosen, rejected)))) as tf.Scalar;
      return { loss, metrics: preferenceMetrics(pc, pr, rc, rr, beta, loss, "max") };
    });
  }
  if (variant !== "released") {
    throw new InputError(
      "variant",
      `expected "paper" or "released", got ${JSON.stringify(variant)}`,
    );
  }
  const beta = checkedPreference(pc, pr, rc, rr, opts.beta ?? 0.1);
  const gamma = opts.gamma ?? 1.0;
  if (typeof gamma !== "number" || !Number.isFinite(gamma) || gamma < 0) {
    throw new InputError("gamma", `expected a finite number ≥ 0, got ${gamma}`);
  }
  const nll = opts.chosenNllMean;
  if (nll === undefined) {
    if (gamma !== 0) {
      throw new InputError(
        "chosenNllMean",
        `is required by variant "released" when gamma ≠ 0 (got gamma = ${gamma}); expected shape ` +
          `${fmtShape(pc.shape)}`,
      );
    }
  } else {
    checkSameShape(nll, "chosenNllMean", pc, "policyChosen");
    checkFinite([["chosenNllMean", nll]]);
  }
  return tf.tidy(() => {
    const rcPair = tf.expandDims(rc, 1) as tf.Tensor2D; // [B,1]: chosen reference in both slots
    const dpo = pairwiseDpo(pc, pr, rc, rcPair, beta);
    // Every prompt has K pairs, so the pair mean of γ·nll_b is γ·mean_b nll_b.
    const loss = (nll === undefined || gamma === 0
      ? dpo
      : tf.add(dpo, tf.mul(gamma, tf.mean(nll)))) as tf.Scalar;
    return { loss, metrics: preferenceMetrics(pc, pr, rc, rcPair, beta, loss, "pairs") };
  });
}

/** Preference losses by name, all with the signature `(inputs, opts) => LossOutput`. */
export const LOSSES: Readonly<
  Record<"dpo" | "sdpo" | "dmpo-paper" | "dmpo-released", PreferenceLoss>
> = {
  /**
   * DPO on every (chosen, rejected_k) pair, each with its own reference, averaged over the
   * B·K pairs (TRL's `dpo.py` style: k negatives = k rows). K = 1 is {@link dpoLoss}.
   * `rewards/accuracies` counts pairs.
   */
  "dpo": (x, opts) => {
    const pc = x.policyChosen, pr = x.policyRejected, rc = x.referenceChosen;
    const rr = x.referenceRejected;
    const beta = checkedPreference(pc, pr, rc, rr, opts?.beta);
    return tf.tidy(() => {
      const loss = pairwiseDpo(pc, pr, rc, rr, beta);
      return { loss, metrics: preferenceMetrics(pc, pr, rc, rr, beta, loss, "pairs") };
    });
  },
  /** {@link sdpoLoss}. */
  "sdpo": (x, opts) =>
    sdpoLoss(x.policyChosen, x.policyRejected, x.referenceChosen, x.referenceRejected, {
      beta: opts?.beta as number,
    }),
  /** {@link dmpoLoss} with `variant: "paper"`. */
  "dmpo-paper": (x, opts) =>
    dmpoLoss(x.policyChosen, x.policyRejected, x.referenceChosen, x.referenceRejected, {
      variant: "paper",
      beta: opts?.beta,
    }),
  /** {@link dmpoLoss} with `variant: "released"` (as released). */
  "dmpo-released": (x, opts) =>
    dmpoLoss(x.policyChosen, x.policyRejected, x.referenceChosen, x.referenceRejected, {
      variant: "released",
      beta: opts?.beta,
      gamma: opts?.gamma,
      chosenNllMean: x.chosenNllMean,
    }),
};

/** Names of the preference losses in {@link LOSSES}. */
export type LossName = keyof typeof LOSSES;
