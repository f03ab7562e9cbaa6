/**
 * Optimisation pieces for LoRA training: {@link AdamW} with exportable state, a warmup + cosine
 * learning-rate schedule, global-norm gradient clipping, and gradient accumulation over
 * micro-batches.
 *
 * AdamW follows Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019), in
 * the form of PyTorch's `torch.optim.AdamW` (per step t, parameter p, gradient g):
 *
 * ```
 * p ← p · (1 − lr·wd)                       decoupled weight decay
 * m ← β1·m + (1 − β1)·g                     first moment
 * v ← β2·v + (1 − β2)·g²                    second moment
 * p ← p − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
 * ```
 *
 * tfjs's `tf.train.adam` has no decoupled decay and hides its state, hence this file.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { CheckpointError, ConfigError, InputError } from "./errors.ts";

/** Hyper-parameters of {@link AdamW} (the learning rate is given to each `step`). */
export interface AdamWConfig {
  /** β1, decay of the first-moment average. */
  beta1: number;
  /** β2, decay of the second-moment average. */
  beta2: number;
  /** ε added to the denominator. */
  eps: number;
  /** Decoupled weight decay coefficient (0 = plain Adam). */
  weightDecay: number;
}

/** PyTorch's `AdamW` defaults: betas (0.9, 0.999), eps 1e-8, weight_decay 0.01. */
export const DEFAULT_ADAMW_CONFIG: Readonly<AdamWConfig> = {
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
};

/** Optimizer state as plain arrays, for checkpoints. Keys are variable names. */
export interface AdamWState {
  /** Steps taken so far (t of the last update). */
  step: number;
  /** First moments, row-major, per variable. */
  m: Record<string, Float32Array>;
  /** Second moments, row-major, per variable. */
  v: Record<string, Float32Array>;
}

/** Gradients keyed by variable name (as `tf.variableGrads` returns) or by index in the var list. */
export type GradMap = Record<string | number, tf.Tensor>;

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Variables at or above this many values are updated on their own; smaller ones share one fused
 * update. Measured on the wasm backend: for small tensors the fixed cost of a kernel dominates, so
 * one kernel over all of them wins; above ~2¹⁶ values the copies into and out of the flat buffer
 * cost more than the kernels they save.
 */
const FUSE_BELOW = 1 << 16;

/** Indices of the variables updated together (below {@link FUSE_BELOW}) and on their own. */
function fusedLayout(vars: readonly tf.Variable[]): { small: number[]; large: number[] } {
  return {
    small: vars.flatMap((p, i) => p.size < FUSE_BELOW ? [i] : []),
    large: vars.flatMap((p, i) => p.size < FUSE_BELOW ? [] : [i]),
  };
}

/** Variables updated together: their moments, flat, in the order of `idx`. */
interface Group {
  /** Indices into the optimizer's variable list. */
  idx: number[];
  /** Where each variable starts in the flat buffer; the last entry is its length. */
  offsets: number[];
  m: tf.Variable;
  v: tf.Variable;
}

/**
 * AdamW over a fixed list of `tf.Variable`s (PyTorch semantics; see the module doc).
 *
 * The update is fused: the variables smaller than 2¹⁶ values (LoRA adapters, norms, small
 * models) are laid end to end in one flat buffer with flat moments, so the arithmetic of the
 * module doc runs once for all of them and the new values are split back into the variables;
 * larger variables are updated on their own. Element by element this is the same float32
 * arithmetic as a per-variable update (bit-identical), in 15 kernels per group plus two
 * data-free reshapes per variable instead of ~14 kernels per variable. {@link AdamW.getState}
 * still exports the moments per variable.
 * {@link AdamW.dispose} frees the moments.
 *
 * @example Usage
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { AdamW } from "./optim.ts";
 * const w = tf.variable(tf.tensor1d([1, 2]), true, "w");
 * const opt = new AdamW([w], { weightDecay: 0.1 });
 * const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(w)) as tf.Scalar, [w]);
 * opt.step(grads, 1e-3);
 * tf.dispose([value, grads]);
 * opt.dispose();
 * w.dispose();
 * ```
 */
export class AdamW {
  /** The hyper-parameters in use. */
  readonly config: Readonly<AdamWConfig>;
  private readonly vars: tf.Variable[];
  private readonly groups: Group[] = [];
  private t = 0;
  private disposed = false;

  /**
   * @param vars Variables to optimise; names must be unique (they key grads and state).
   * @param config Overrides of {@link DEFAULT_ADAMW_CONFIG}.
   * @throws {ConfigError} On β outside [0, 1), negative ε or weight decay.
   * @throws {InputError} On duplicate variable names or non-float32 variables.
   */
  constructor(vars: readonly tf.Variable[], config: Partial<AdamWConfig> = {}) {
    const c = { ...DEFAULT_ADAMW_CONFIG, ...config };
    for (const k of ["beta1", "beta2"] as const) {
      if (!(c[k] >= 0 && c[k] < 1)) throw new ConfigError(k, `must be in [0, 1), got ${c[k]}`);
    }
    for (const k of ["eps", "weightDecay"] as const) {
      if (!(c[k] >= 0 && Number.isFinite(c[k]))) {
        throw new ConfigError(k, `must be finite and >= 0, got ${c[k]}`);
      }
    }
    const seen = new Set<string>();
    for (const v of vars) {
      if (seen.has(v.name)) throw new InputError("vars", `duplicate variable name "${v.name}"`);
      if (v.dtype !== "float32") {
        throw new InputError("vars", `variable "${v.name}" is ${v.dtype}, expected float32`);
      }
      seen.add(v.name);
    }
    this.config = Object.freeze(c);
    this.vars = [...vars];
    const { small, large } = fusedLayout(this.vars);
    for (const idx of [...(small.length ? [small] : []), ...large.map((i) => [i])]) {
      const offsets = [0];
      for (const i of idx) offsets.push(offsets.at(-1)! + this.vars[i].size);
      // tidy frees the zeros; the variables (which share their data) survive.
      const zeros = () => tf.tidy(() => tf.variable(tf.zeros([offsets.at(-1)!]), false));
      this.groups.push({ idx, offsets, m: zeros(), v: zeros() });
    }
  }

  /** Number of steps taken (restored by {@link AdamW.setState}). */
  get stepCount(): number {
    return this.t;
  }

  /** The optimised variables, in order. */
  get variables(): readonly tf.Variable[] {
    return this.vars;
  }

  private check(): void {
    if (this.disposed) throw new InputError("this", "AdamW used after dispose()");
  }

  private resolveGrads(grads: GradMap): tf.Tensor[] {
    const used = new Set<string>();
    const out = this.vars.map((p, i) => {
      const key = Object.hasOwn(grads, p.name)
        ? p.name
        : Object.hasOwn(grads, String(i))
        ? String(i)
        : undefined;
      if (key === undefined) {
        throw new InputError("grads", `no gradient for variable "${p.name}" (index ${i})`);
      }
      used.add(key);
      const g = grads[key];
      if (!sameShape(g.shape, p.shape)) {
        throw new InputError(
          `grads["${key}"]`,
          `shape [${g.shape}] does not match variable "${p.name}" [${p.shape}]`,
        );
      }
      return g;
    });
    for (const key of Object.keys(grads)) {
      if (!used.has(key)) {
        throw new InputError("grads", `gradient "${key}" matches no optimised variable`);
      }
    }
    return out;
  }

  /**
   * One AdamW update of every variable. The gradients are not disposed.
   *
   * @param grads One gradient per variable, keyed by variable name (or index), same shapes; or
   *   a {@link GradSum} over this optimizer's variables.
   * @param lr Learning rate for this step (e.g. from {@link cosineSchedule}).
   * @param scale Factor applied to every gradient first (a clip coefficient, see
   *   {@link clipCoefficient}): the same float32 product `g · scale` as `tf.mul(g, scale)`, once
   *   for all fused variables instead of once per variable. Default 1 (no product).
   * @throws {InputError} On a missing, extra or mis-shaped gradient, a bad `lr` or `scale`, or a
   *   GradSum of other variables or holding nothing; nothing is updated then.
   */
  step(grads: GradMap | tf.NamedTensorMap | GradSum, lr: number, scale = 1): void {
    this.check();
    if (!(lr >= 0 && Number.isFinite(lr))) {
      throw new InputError("lr", `must be finite and >= 0, got ${lr}`);
    }
    if (!(scale >= 0 && Number.isFinite(scale))) {
      throw new InputError("scale", `must be finite and >= 0, got ${scale}`);
    }
    const sum = grads instanceof GradSum ? grads : undefined;
    if (sum) sum.checkFor(this.vars);
    const gs = sum ? [] : this.resolveGrads(grads as GradMap);
    const { beta1, beta2, eps, weightDecay } = this.config;
    const t = this.t + 1;
    const stepSize = lr / (1 - beta1 ** t);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** t);
    const decay = 1 - lr * weightDecay;
    for (const { idx, offsets, m: mVar, v: vVar } of this.groups) {
      tf.tidy(() => {
        let g: tf.Tensor1D;
        if (sum && sum.isFused(idx[0])) g = tf.tensor1d(sum.fusedValues(scale), "float32");
        else {
          g = flatten(idx.map((i) => {
            const gi = sum ? sum.tensor(i) : gs[i];
            return gi.dtype === "float32" ? gi : tf.cast(gi, "float32");
          }));
          if (scale !== 1) g = tf.mul(g, scale);
        }
        const p = flatten(idx.map((i) => this.vars[i]));
        const m = tf.add(tf.mul(mVar, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(vVar, beta2), tf.mul(tf.square(g), 1 - beta2));
        const decayed = weightDecay !== 0 ? tf.mul(p, decay) : p;
        const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), eps);
        const next = tf.sub(decayed, tf.mul(tf.div(m, denom), stepSize));
        if (idx.length === 1) this.vars[idx[0]].assign(tf.reshape(next, this.vars[idx[0]].shape));
        else {
          // Split on the host: one read, then one upload per variable, no kernel.
          const flat = next.dataSync() as Float32Array;
          idx.forEach((i, j) => {
            const x = this.vars[i];
            x.assign(tf.tensor(flat.subarray(offsets[j], offsets[j + 1]), x.shape, "float32"));
          });
        }
        mVar.assign(m);
        vVar.assign(v);
      });
    }
    this.t = t;
  }

  /**
   * Export the state (copies) for a checkpoint.
   *
   * @returns Step count and per-variable moments.
   */
  getState(): AdamWState {
    this.check();
    const m: Record<string, Float32Array> = {};
    const v: Record<string, Float32Array> = {};
    for (const { idx, offsets, m: mVar, v: vVar } of this.groups) {
      const flatM = mVar.dataSync() as Float32Array;
      const flatV = vVar.dataSync() as Float32Array;
      idx.forEach((i, j) => {
        m[this.vars[i].name] = flatM.slice(offsets[j], offsets[j + 1]);
        v[this.vars[i].name] = flatV.slice(offsets[j], offsets[j + 1]);
      });
    }
    // Keys in the order of the variables, as before the update was fused.
    const order = (r: Record<string, Float32Array>) =>
      Object.fromEntries(this.vars.map((p) => [p.name, r[p.name]]));
    return { step: this.t, m: order(m), v: order(v) };
  }

  /**
   * Restore a state from {@link AdamW.getState} (variables matched by name).
   *
   * @param state The saved state.
   * @throws {CheckpointError} If a variable's moments are missing or of the wrong length, or the
   *   step is not a non-negative integer; nothing is changed then.
   */
  setState(state: AdamWState): void {
    this.check();
    if (!Number.isSafeInteger(state.step) || state.step < 0) {
      throw new CheckpointError(
        `optimizer state: step must be a non-negative integer, got ${state.step}`,
      );
    }
    for (const p of this.vars) {
      for (const k of ["m", "v"] as const) {
        const a = state[k]?.[p.name];
        if (!(a instanceof Float32Array) || a.length !== p.size) {
          throw new CheckpointError(
            `optimizer state: ${k}["${p.name}"] expected ${p.size} floats (shape [${p.shape}]), got ` +
              (a instanceof Float32Array ? `${a.length}` : String(a)),
          );
        }
      }
    }
    for (const { idx, offsets, m, v } of this.groups) {
      const flatM = new Float32Array(offsets.at(-1)!);
      const flatV = new Float32Array(offsets.at(-1)!);
      idx.forEach((i, j) => {
        flatM.set(state.m[this.vars[i].name], offsets[j]);
        flatV.set(state.v[this.vars[i].name], offsets[j]);
      });
      tf.tidy(() => {
        m.assign(tf.tensor1d(flatM, "float32"));
        v.assign(tf.tensor1d(flatV, "float32"));
      });
    }
    this.t = state.step;
  }

  /** Free the moment variables (not the optimised variables). */
  dispose(): void {
    if (this.disposed) return;
    tf.dispose(this.groups.flatMap((g) => [g.m, g.v]));
    this.disposed = true;
  }
}

/** The tensors laid end to end as one 1-D tensor (row-major each). */
function flatten(ts: readonly tf.Tensor[]): tf.Tensor1D {
  const flat = ts.map((t) => tf.reshape(t, [-1]) as tf.Tensor1D);
  return flat.length === 1 ? flat[0] : tf.concat1d(flat);
}

/** Configuration of {@link cosineSchedule}. */
export interface CosineScheduleConfig {
  /** Learning rate reached at the end of warmup. */
  peakLr: number;
  /** Steps of linear warmup from 0 to `peakLr` (0 = start at the peak). */
  warmupSteps: number;
  /** Step at which the cosine reaches its floor; later steps stay there. */
  totalSteps: number;
  /** Floor as a fraction of `peakLr` (default 0). */
  minLrRatio?: number;
}

/**
 * Linear warmup then cosine decay (as Hugging Face's `cosine_with_min_lr`):
 * `lr(s) = peak · s / W` for s < W; then with `q = (s − W) / (T − W)` clamped to [0, 1],
 * `lr(s) = peak · (r + (1 − r) · ½(1 + cos πq))`, where r is `minLrRatio`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { cosineSchedule } from "./optim.ts";
 * const lr = cosineSchedule({ peakLr: 1e-3, warmupSteps: 10, totalSteps: 110 });
 * assert.equal(lr(0), 0);
 * assert.equal(lr(10), 1e-3);
 * ```
 *
 * @param cfg Peak, warmup, total steps, floor ratio.
 * @returns `step → lr`, step counted from 0 (the number of updates already taken).
 * @throws {ConfigError} On a negative peak, non-integer or negative step counts,
 *   `totalSteps < warmupSteps`, or a ratio outside [0, 1].
 */
export function cosineSchedule(cfg: CosineScheduleConfig): (step: number) => number {
  const { peakLr, warmupSteps, totalSteps } = cfg;
  const r = cfg.minLrRatio ?? 0;
  if (!(peakLr >= 0 && Number.isFinite(peakLr))) {
    throw new ConfigError("peakLr", `must be finite and >= 0, got ${peakLr}`);
  }
  if (!(Number.isSafeInteger(warmupSteps) && warmupSteps >= 0)) {
    throw new ConfigError("warmupSteps", `must be an integer >= 0, got ${warmupSteps}`);
  }
  if (!(Number.isSafeInteger(totalSteps) && totalSteps >= warmupSteps)) {
    throw new ConfigError(
      "totalSteps",
      `must be an integer >= warmupSteps (${warmupSteps}), got ${totalSteps}`,
    );
  }
  if (!(r >= 0 && r <= 1)) throw new ConfigError("minLrRatio", `must be in [0, 1], got ${r}`);
  return (step: number): number => {
    if (!(step >= 0 && Number.isFinite(step))) {
      throw new InputError("step", `must be finite and >= 0, got ${step}`);
    }
    if (step < warmupSteps) return (peakLr * step) / warmupSteps;
    const span = totalSteps - warmupSteps;
    const q = span === 0 ? 1 : Math.min(1, (step - warmupSteps) / span);
    return peakLr * (r + (1 - r) * 0.5 * (1 + Math.cos(Math.PI * q)));
  };
}

/** Tensors below this many values are summed on the host in {@link globalNorm}, larger by kernels. */
const HOST_NORM_BELOW = 4096;

/**
 * Global L2 norm of a set of gradients, `sqrt(Σ ‖g‖²)`, as a number.
 *
 * Each tensor's sum of squares is taken in float32, element by element in row-major order, and
 * the tensors' sums are added in float32 in the order given: the order and precision of wasm's
 * `Square`, `Sum` and `AddN` kernels, so the result equals `sqrt(addN(sum(square(g))…))` on the
 * wasm backend bit for bit. Small tensors are summed on the host from one read each (no kernel:
 * for them a kernel's fixed cost exceeds the loop), larger ones by the `Square` and `Sum` kernels.
 *
 * @example Usage
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { globalNorm } from "./optim.ts";
 * const g = { a: tf.tensor1d([3, 4]) };
 * globalNorm(g); // 5
 * tf.dispose(g);
 * ```
 *
 * @param grads Gradients by name.
 * @returns The norm (0 for no gradients; NaN/inf if any entry is).
 */
export function globalNorm(grads: GradMap | tf.NamedTensorMap): number {
  const f = Math.fround;
  let total = 0;
  for (const g of Object.values(grads)) {
    let s = 0;
    if (g.size >= HOST_NORM_BELOW) {
      const sq = tf.tidy(() =>
        tf.sum(tf.square(g.dtype === "float32" ? g : tf.cast(g, "float32")))
      );
      s = sq.dataSync()[0];
      sq.dispose();
    } else {
      const x = g.dataSync();
      if (x instanceof Float32Array) {
        for (let i = 0; i < x.length; i++) s = f(s + f(x[i] * x[i]));
      } else {
        for (let i = 0; i < x.length; i++) {
          const xi = f(x[i] as number);
          s = f(s + f(xi * xi));
        }
      }
    }
    total = f(total + s);
  }
  return Math.sqrt(total);
}

/**
 * Clip gradients by global norm as PyTorch's `clip_grad_norm_`: with `n` the global norm,
 * every gradient is scaled by `min(1, maxNorm / (n + 1e-6))`.
 *
 * @example Usage
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { clipGradsByGlobalNorm } from "./optim.ts";
 * const g = { a: tf.tensor1d([3, 4]) };
 * const { grads, norm } = clipGradsByGlobalNorm(g, 1); // norm 5, grads.a ≈ [0.6, 0.8]
 * tf.dispose([g, grads]);
 * ```
 *
 * @param grads Gradients by name (not disposed).
 * @param maxNorm Largest allowed global norm (> 0).
 * @returns New gradient tensors (the caller disposes them) and the norm before clipping. A
 *   non-finite norm is returned as is; check it before stepping.
 * @throws {InputError} If `maxNorm` is not a positive finite number.
 */
export function clipGradsByGlobalNorm<G extends GradMap | tf.NamedTensorMap>(
  grads: G,
  maxNorm: number,
): { grads: Record<keyof G, tf.Tensor>; norm: number } {
  if (!(maxNorm > 0 && Number.isFinite(maxNorm))) {
    throw new InputError("maxNorm", `must be a positive finite number, got ${maxNorm}`);
  }
  const norm = globalNorm(grads);
  const coef = clipCoefficient(norm, maxNorm);
  const out = tf.tidy(() => {
    const o: tf.NamedTensorMap = {};
    for (const [k, g] of Object.entries(grads)) o[k] = coef < 1 ? tf.mul(g, coef) : tf.clone(g);
    return o;
  });
  return { grads: out as Record<keyof G, tf.Tensor>, norm };
}

/**
 * The clip coefficient of PyTorch's `clip_grad_norm_` for a global norm: `maxNorm / (norm +
 * 1e-6)` when that is below 1, else 1 (no clipping). {@link clipGradsByGlobalNorm} scales by it;
 * {@link AdamW.step} takes it as its `scale`.
 *
 * @param norm The gradients' global norm.
 * @param maxNorm Largest allowed global norm (> 0).
 * @returns The factor, in (0, 1].
 */
export function clipCoefficient(norm: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (norm + 1e-6));
}

/**
 * The sum of micro-batch gradients of an {@link AdamW}'s variables, laid out as its fused update:
 * the gradients of the variables below 2¹⁶ values are added on the host into one flat float32
 * buffer (the buffer {@link AdamW.step} updates from, with no kernel), larger ones by `tf.add`.
 * Every value is the same float32 sum, in the same order, as adding the gradients variable by
 * variable with `tf.add`, and {@link GradSum.norm} equals {@link globalNorm} of those sums bit
 * for bit.
 *
 * @example Usage
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { AdamW, GradSum, clipCoefficient } from "./optim.ts";
 * const w = tf.variable(tf.tensor1d([1, 2]), true, "w");
 * const opt = new AdamW([w]);
 * const sum = new GradSum(opt.variables);
 * for (let micro = 0; micro < 2; micro++) {
 *   const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(w)) as tf.Scalar, [w]);
 *   sum.add(grads);
 *   tf.dispose([value, grads]);
 * }
 * opt.step(sum, 1e-3, clipCoefficient(sum.norm(), 1));
 * sum.dispose();
 * opt.dispose();
 * w.dispose();
 * ```
 */
export class GradSum {
  /** The variables summed over, in the optimizer's order. */
  readonly variables: readonly tf.Variable[];
  private readonly fusedAt: (number | undefined)[];
  private readonly offsets: number[];
  private readonly flat: Float32Array;
  private readonly large = new Map<number, tf.Tensor>();
  private n = 0;

  /** @param vars The optimizer's variables ({@link AdamW.variables}), in its order. */
  constructor(vars: readonly tf.Variable[]) {
    this.variables = [...vars];
    const { small } = fusedLayout(vars);
    this.fusedAt = vars.map(() => undefined);
    this.offsets = [0];
    small.forEach((i, j) => {
      this.fusedAt[i] = j;
      this.offsets.push(this.offsets[j] + vars[i].size);
    });
    this.flat = new Float32Array(this.offsets.at(-1)!);
  }

  /** Micro-batches added since the last reset. */
  get count(): number {
    return this.n;
  }

  /**
   * Add one micro-batch's gradients (not disposed).
   *
   * @param grads One gradient per variable, keyed by variable name, same shapes.
   * @throws {InputError} On a missing, extra or mis-shaped gradient; nothing is added then.
   */
  add(grads: GradMap | tf.NamedTensorMap): void {
    const gs = this.variables.map((p) => {
      const g = (grads as GradMap)[p.name];
      if (!g) throw new InputError("grads", `no gradient for variable "${p.name}"`);
      if (!sameShape(g.shape, p.shape)) {
        throw new InputError(
          `grads["${p.name}"]`,
          `shape [${g.shape}] does not match variable "${p.name}" [${p.shape}]`,
        );
      }
      return g;
    });
    if (Object.keys(grads).length !== gs.length) {
      const known = new Set(this.variables.map((p) => p.name));
      const extra = Object.keys(grads).find((k) => !known.has(k));
      throw new InputError("grads", `gradient "${extra}" matches no summed variable`);
    }
    const f = Math.fround;
    gs.forEach((g, i) => {
      const j = this.fusedAt[i];
      if (j === undefined) {
        const prev = this.large.get(i);
        const g32 = () => g.dtype === "float32" ? g : tf.cast(g, "float32");
        this.large.set(i, tf.tidy(() => prev ? tf.add(prev, g) : tf.clone(g32())));
        prev?.dispose();
        return;
      }
      const x = g.dataSync();
      const o = this.offsets[j];
      if (this.n === 0) this.flat.set(x, o);
      else for (let e = 0; e < x.length; e++) this.flat[o + e] = f(this.flat[o + e] + x[e]);
    });
    this.n++;
  }

  /** Sum of squares of variable i's summed gradient, in float32, element by element. */
  private squares(i: number): number {
    const j = this.fusedAt[i];
    if (j === undefined) {
      const sq = tf.tidy(() => tf.sum(tf.square(this.tensor(i))));
      const v = sq.dataSync()[0];
      sq.dispose();
      return v;
    }
    const f = Math.fround;
    let s = 0;
    for (let e = this.offsets[j]; e < this.offsets[j + 1]; e++) {
      s = f(s + f(this.flat[e] * this.flat[e]));
    }
    return s;
  }

  /**
   * Each variable's float32 sum of squares of its summed gradient, in the variables' order (as
   * `tf.sum(tf.square(g))` on the wasm backend).
   */
  squareSums(): number[] {
    this.nonEmpty();
    return this.variables.map((_, i) => this.squares(i));
  }

  /** The global L2 norm of the summed gradients: {@link globalNorm} of them, bit for bit. */
  norm(): number {
    const f = Math.fround;
    return Math.sqrt(this.squareSums().reduce((a, s) => f(a + s), 0));
  }

  /** Index of the first variable whose summed gradient has a NaN or infinite value, or −1. */
  firstNonFinite(): number {
    this.nonEmpty();
    return this.variables.findIndex((_, i) => {
      const j = this.fusedAt[i];
      if (j === undefined) {
        return !tf.tidy(() => tf.all(tf.isFinite(this.tensor(i))).dataSync()[0]);
      }
      for (let e = this.offsets[j]; e < this.offsets[j + 1]; e++) {
        if (!Number.isFinite(this.flat[e])) return true;
      }
      return false;
    });
  }

  /** Forget the sums (start the next step). */
  reset(): void {
    tf.dispose([...this.large.values()]);
    this.large.clear();
    this.n = 0;
  }

  /** Free the held tensors (same as {@link GradSum.reset}). */
  dispose(): void {
    this.reset();
  }

  private nonEmpty(): void {
    if (this.n === 0) throw new InputError("GradSum", "nothing was added");
  }

  /** @internal Throws unless these sums are of `vars` (an optimizer's) and hold something. */
  checkFor(vars: readonly tf.Variable[]): void {
    this.nonEmpty();
    if (vars.length !== this.variables.length || vars.some((v, i) => v !== this.variables[i])) {
      throw new InputError("grads", "GradSum of other variables than the optimizer's");
    }
  }

  /** @internal Whether variable i is summed in the flat buffer. */
  isFused(i: number): boolean {
    return this.fusedAt[i] !== undefined;
  }

  /**
   * @internal The flat buffer's values times `scale` (the float32 product of `tf.mul`), in the
   * optimizer's fused order.
   */
  fusedValues(scale: number): Float32Array {
    if (scale === 1) return this.flat;
    const f = Math.fround;
    const s = f(scale);
    return this.flat.map((x) => f(x * s));
  }

  /** @internal The summed gradient of variable i, when it is not fused. */
  tensor(i: number): tf.Tensor {
    const t = this.large.get(i);
    if (!t) throw new InputError("GradSum", `variable ${i} is summed in the flat buffer`);
    return t;
  }
}

/**
 * Sums gradients over micro-batches and returns their mean. Holds one running-sum tensor per
 * key (the previous sum is disposed at each {@link GradAccumulator.add}); inputs are not
 * disposed.
 *
 * @example Usage
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { GradAccumulator } from "./optim.ts";
 * const acc = new GradAccumulator();
 * const g1 = { w: tf.tensor1d([1, 2]) }, g2 = { w: tf.tensor1d([3, 4]) };
 * acc.add(g1);
 * acc.add(g2);
 * const mean = acc.mean(); // { w: [2, 3] }
 * tf.dispose([g1, g2, mean]);
 * acc.dispose();
 * ```
 */
export class GradAccumulator {
  private sums: tf.NamedTensorMap | undefined;
  private n = 0;

  /** Micro-batches added since the last reset. */
  get count(): number {
    return this.n;
  }

  /**
   * Add one micro-batch's gradients.
   *
   * @param grads Gradients by name; the same keys and shapes every time.
   * @throws {InputError} If keys or shapes differ from the first micro-batch.
   */
  add(grads: GradMap | tf.NamedTensorMap): void {
    const sums = this.sums;
    if (!sums) {
      this.sums = tf.tidy(() => {
        const o: tf.NamedTensorMap = {};
        for (const [k, g] of Object.entries(grads)) o[k] = tf.cast(g, "float32").clone();
        return o;
      });
      this.n = 1;
      return;
    }
    const keys = Object.keys(sums);
    const given = Object.keys(grads);
    if (given.length !== keys.length || !keys.every((k) => Object.hasOwn(grads, k))) {
      throw new InputError("grads", `keys [${given}] differ from the accumulated keys [${keys}]`);
    }
    for (const k of keys) {
      const g = (grads as tf.NamedTensorMap)[k];
      if (!sameShape(g.shape, sums[k].shape)) {
        throw new InputError(
          `grads["${k}"]`,
          `shape [${g.shape}] differs from the accumulated [${sums[k].shape}]`,
        );
      }
    }
    this.sums = tf.tidy(() => {
      const o: tf.NamedTensorMap = {};
      for (const k of keys) o[k] = tf.add(sums[k], (grads as tf.NamedTensorMap)[k]);
      return o;
    });
    tf.dispose(sums);
    this.n++;
  }

  /**
   * The mean of the gradients added so far, as new tensors the caller disposes. Does not reset.
   *
   * @returns Mean gradient by name.
   * @throws {InputError} If nothing was added.
   */
  mean(): tf.NamedTensorMap {
    const sums = this.sums;
    if (!sums) throw new InputError("GradAccumulator", "mean() before any add()");
    const n = this.n;
    return tf.tidy(() => {
      const o: tf.NamedTensorMap = {};
      for (const [k, s] of Object.entries(sums)) o[k] = tf.div(s, n);
      return o;
    });
  }

  /** Drop the accumulated sums (dispose them) and start over. */
  reset(): void {
    if (this.sums) tf.dispose(this.sums);
    this.sums = undefined;
    this.n = 0;
  }

  /** Free the held tensors (same as {@link GradAccumulator.reset}). */
  dispose(): void {
    this.reset();
  }
}
