/**
 * Private helpers of the sequential-recommender baselines: the common types, input checks,
 * left-padded batches, an embedding lookup with a host scatter-add gradient (wasm has no
 * gradient for `gather`), seeded initialisers, layer norm, seeded dropout, and
 * {@link NeuralRecommender}, the shared fit/score loop of GRU4Rec, Caser and SASRec.
 *
 * Item ids are the world's global ids `0 … numItems − 1`; id `numItems` is the padding id
 * (histories are left-padded to the model's window, and longer histories keep their last
 * items).
 *
 * @module
 */
import { tf } from "../backend.ts";
import { selectRows } from "../model.ts";
import { ConfigError, InputError, NonFiniteError } from "../errors.ts";
import { AdamW } from "../optim.ts";
import { Rng } from "../rng.ts";

// ---------------------------------------------------------------------------------------
// Types

/** One training example: a history (oldest first) and the item that came next. */
export interface TrainExample {
  /** Item ids, oldest first, at least one. */
  historyIds: number[];
  /** The next item's id. */
  targetId: number;
}

/** Options of {@link SequentialRecommender.fit}. */
export interface FitOptions {
  /** Passes over the training examples (default: the model config's `epochs`). */
  epochs?: number;
  /** No per-epoch log line. */
  quiet?: boolean;
  /** Called after every epoch with the epoch (1-based) and its mean loss. */
  onEpoch?: (epoch: number, loss: number) => void;
  /** Extra per-example feature vectors, aligned with the examples (models that take them,
   * e.g. SASRec with `extraFeatureDim > 0`). */
  extraFeatures?: readonly Float32Array[];
}

/** What every baseline offers: fit on (history → next item) examples, score candidates. */
export interface SequentialRecommender {
  /** Short name (`popularity`, `gru4rec`, `caser`, `sasrec`). */
  readonly name: string;
  /** Train on the examples; returns the mean loss of each epoch. */
  fit(train: readonly TrainExample[], opts?: FitOptions): Promise<{ losses: number[] }>;
  /** One score per candidate (higher = more likely next) for one history. */
  scoreCandidates(historyIds: readonly number[], candidateIds: readonly number[]): number[];
  /** {@link scoreCandidates} over many rows at once (faster for neural models). */
  scoreBatch(
    histories: readonly (readonly number[])[],
    candidates: readonly (readonly number[])[],
  ): number[][];
  /** Free tensors and variables. */
  dispose(): void;
}

// ---------------------------------------------------------------------------------------
// Input checks

/**
 * Throws an {@link InputError} naming `arg` and the 1-based element when `ids` is empty (if
 * `nonEmpty`) or holds something other than an item id in [0, numItems).
 */
export function checkIds(
  ids: readonly number[],
  numItems: number,
  arg: string,
  nonEmpty = true,
): void {
  if (!Array.isArray(ids)) throw new InputError(arg, `expected an array of item ids, got ${ids}`);
  if (nonEmpty && ids.length === 0) {
    throw new InputError(arg, "empty history; expected at least one item id");
  }
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= numItems) {
      throw new InputError(
        arg,
        `element ${i + 1}: unknown item id ${id}, expected an integer in [0, ${numItems})`,
      );
    }
  }
}

/** Checks every example (history and target), naming `train[i]` (1-based) on failure. */
export function checkExamples(train: readonly TrainExample[], numItems: number): void {
  if (train.length === 0) throw new InputError("train", "expected at least one example, got 0");
  train.forEach((ex, i) => {
    checkIds(ex.historyIds, numItems, `train[${i + 1}].historyIds`);
    checkIds([ex.targetId], numItems, `train[${i + 1}].targetId`);
  });
}

/** Checks `scoreBatch` arguments. */
export function checkRows(
  histories: readonly (readonly number[])[],
  candidates: readonly (readonly number[])[],
  numItems: number,
): void {
  if (histories.length !== candidates.length) {
    throw new InputError(
      "candidates",
      `expected one row per history (${histories.length}), got ${candidates.length}`,
    );
  }
  histories.forEach((h, i) => checkIds(h, numItems, `histories[${i + 1}]`));
  candidates.forEach((c, i) => checkIds(c, numItems, `candidates[${i + 1}]`, false));
}

/** Throws a {@link ConfigError} unless `v` is an integer >= min. */
export function checkInt(field: string, v: number, min = 1): void {
  if (!Number.isInteger(v) || v < min) {
    throw new ConfigError(field, `expected an integer >= ${min}, got ${v}`);
  }
}

/** Throws a {@link ConfigError} unless `v` is in [0, 1). */
export function checkRate(field: string, v: number): void {
  if (!(v >= 0 && v < 1)) throw new ConfigError(field, `expected a value in [0, 1), got ${v}`);
}

/** Throws a {@link ConfigError} unless `v` is finite and > 0. */
export function checkPositive(field: string, v: number): void {
  if (!(v > 0 && Number.isFinite(v))) {
    throw new ConfigError(field, `expected a finite value > 0, got ${v}`);
  }
}

// ---------------------------------------------------------------------------------------
// Batches

/** Histories left-padded to a window of T items with the padding id. */
export interface PaddedBatch {
  /** Rows B. */
  b: number;
  /** Window T. */
  t: number;
  /** Item ids [B·T], row-major; padding = `numItems`. */
  ids: Int32Array;
  /** 1 on real items, 0 on padding [B·T]. */
  mask: Float32Array;
}

/** Left-pad (or cut to their last `t` items) the histories. */
export function padHistories(
  histories: readonly (readonly number[])[],
  t: number,
  padId: number,
): PaddedBatch {
  const b = histories.length;
  const ids = new Int32Array(b * t).fill(padId);
  const mask = new Float32Array(b * t);
  histories.forEach((h, r) => {
    const n = Math.min(h.length, t);
    for (let j = 0; j < n; j++) {
      ids[r * t + t - n + j] = h[h.length - n + j];
      mask[r * t + t - n + j] = 1;
    }
  });
  return { b, t, ids, mask };
}

// ---------------------------------------------------------------------------------------
// Ops

/**
 * Rows of `table` at `ids` ([N] → [N, H]), with the host scatter-add gradient of the model's
 * {@link selectRows} (the wasm backend has no gradient for `gather`).
 */
export function embedLookup(table: tf.Tensor2D, ids: Int32Array): tf.Tensor2D {
  const idT = tf.tensor1d(ids, "int32");
  const out = selectRows(table, idT);
  idT.dispose(); // tidy-safe: the gradient reads the saved clone
  return out;
}

/** Layer norm over the last axis: (x − mean) / sqrt(var + eps) · gamma + beta. */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-8) {
  const mean = tf.mean(x, -1, true);
  const xc = tf.sub(x, mean);
  const v = tf.mean(tf.square(xc), -1, true);
  return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(v, eps))), gamma), beta);
}

/** Inverted dropout with a mask seeded from `rng` (identity when `rate` is 0 or no rng). */
export function dropout<T extends tf.Tensor>(x: T, rate: number, rng?: Rng): T {
  if (!rng || rate === 0) return x;
  const keep = tf.cast(
    tf.greaterEqual(tf.randomUniform(x.shape, 0, 1, "float32", rng.nextUint32()), rate),
    "float32",
  );
  return tf.mul(x, tf.div(keep, 1 - rate)) as T;
}

/** Softmax cross-entropy: mean over rows of −log softmax(logits)[target]. logits [B, V]. */
export function crossEntropy(logits: tf.Tensor2D, targets: Int32Array): tf.Scalar {
  const v = logits.shape[1];
  const oneHot = tf.oneHot(tf.tensor1d(targets, "int32"), v).asType("float32");
  const lp = tf.logSoftmax(logits);
  return tf.neg(tf.mean(tf.sum(tf.mul(lp, oneHot), 1))) as tf.Scalar;
}

// ---------------------------------------------------------------------------------------
// Parameters

/** Creates named trainable variables with unique engine names (`<scope>/<name>`). */
export class ParamStore {
  private static counter = 0;
  /** Variables in creation order. */
  readonly vars: tf.Variable[] = [];
  private readonly scope: string;

  constructor(prefix: string, private readonly rng: Rng) {
    this.scope = `${prefix}${ParamStore.counter++}/`;
  }

  private add(name: string, values: Float32Array, shape: number[]): tf.Variable {
    const v = tf.tidy(() => tf.variable(tf.tensor(values, shape), true, this.scope + name));
    this.vars.push(v);
    return v;
  }

  /** N(0, std²) entries. */
  normal(name: string, shape: number[], std: number): tf.Variable {
    const n = shape.reduce((a, b) => a * b, 1);
    return this.add(name, Float32Array.from({ length: n }, () => this.rng.normal() * std), shape);
  }

  /** Uniform(−a, a) with a = 1/sqrt(fanIn), like `nn.Linear`'s default. */
  linear(name: string, fanIn: number, fanOut: number): tf.Variable {
    const a = 1 / Math.sqrt(fanIn);
    const n = fanIn * fanOut;
    return this.add(
      name,
      Float32Array.from({ length: n }, () => (2 * this.rng.next() - 1) * a),
      [fanIn, fanOut],
    );
  }

  /** A constant-filled variable. */
  fill(name: string, shape: number[], value: number): tf.Variable {
    const n = shape.reduce((a, b) => a * b, 1);
    return this.add(name, new Float32Array(n).fill(value), shape);
  }

  /** Free all variables. */
  dispose(): void {
    for (const v of this.vars) v.dispose();
    this.vars.length = 0;
  }
}

// ---------------------------------------------------------------------------------------
// The shared training / scoring loop

/** Training knobs every neural baseline has. */
export interface TrainingConfig {
  /** Number of items (ids 0 … numItems − 1; id numItems pads). */
  numItems: number;
  /** History window T: longer histories keep their last T items. */
  maxLen: number;
  /** Passes over the training examples. */
  epochs: number;
  /** Examples per Adam step. */
  batchSize: number;
  /** Adam learning rate (constant). */
  lr: number;
  /** Decoupled weight decay of AdamW (0 = Adam). */
  weightDecay: number;
  /** Seed of init, shuffling and dropout. */
  seed: number;
}

/** Checks the {@link TrainingConfig} fields. */
export function checkTrainingConfig(c: TrainingConfig): void {
  checkInt("numItems", c.numItems);
  checkInt("maxLen", c.maxLen);
  checkInt("epochs", c.epochs, 0);
  checkInt("batchSize", c.batchSize);
  checkPositive("lr", c.lr);
  if (!(c.weightDecay >= 0)) {
    throw new ConfigError("weightDecay", `expected >= 0, got ${c.weightDecay}`);
  }
  if (!Number.isFinite(c.seed)) throw new ConfigError("seed", `expected a number, got ${c.seed}`);
}

/**
 * Base of the neural baselines: subclasses give {@link NeuralRecommender.logits} (a padded
 * batch → item logits [B, numItems]); this class trains it with full-softmax cross-entropy
 * and AdamW, and scores candidates by their logits.
 */
export abstract class NeuralRecommender implements SequentialRecommender {
  abstract readonly name: string;
  /** The parameters. */
  protected readonly params: ParamStore;
  /** Init, shuffle and dropout randomness. */
  protected readonly rng: Rng;

  constructor(protected readonly train: TrainingConfig, prefix: string) {
    checkTrainingConfig(train);
    this.rng = new Rng(train.seed);
    this.params = new ParamStore(prefix, this.rng.fork());
  }

  /** Trainable variables. */
  get variables(): readonly tf.Variable[] {
    return this.params.vars;
  }

  /**
   * Item logits [B, numItems] of a padded batch. `rng` is given in training (dropout on) and
   * absent in evaluation. Runs inside the caller's tidy.
   */
  abstract logits(batch: PaddedBatch, rng?: Rng, extra?: tf.Tensor2D): tf.Tensor2D;

  /** Extra-feature dimension the model takes (0 = none). */
  protected extraDim(): number {
    return 0;
  }

  /** [B, F] tensor of extra features, checked, or undefined. */
  protected extraTensor(
    rows: readonly Float32Array[] | undefined,
    b: number,
    arg: string,
  ): tf.Tensor2D | undefined {
    const f = this.extraDim();
    if (f === 0) {
      if (rows) throw new InputError(arg, `${this.name} takes no extra features (dim 0)`);
      return undefined;
    }
    if (!rows || rows.length !== b) {
      throw new InputError(arg, `expected ${b} vectors of length ${f}, got ${rows?.length ?? 0}`);
    }
    const buf = new Float32Array(b * f);
    rows.forEach((r, i) => {
      if (r.length !== f) {
        throw new InputError(arg, `element ${i + 1}: expected length ${f}, got ${r.length}`);
      }
      buf.set(r, i * f);
    });
    return tf.tensor2d(buf, [b, f]);
  }

  /**
   * Mean cross-entropy of the examples (no dropout unless `rng`), as a scalar the caller
   * disposes. For tests (finite differences) and monitoring.
   */
  loss(
    examples: readonly TrainExample[],
    rng?: Rng,
    extraFeatures?: readonly Float32Array[],
  ): tf.Scalar {
    checkExamples(examples, this.train.numItems);
    const batch = padHistories(examples.map((e) => e.historyIds), this.train.maxLen, this.padId);
    const targets = Int32Array.from(examples.map((e) => e.targetId));
    return tf.tidy(() => {
      const extra = this.extraTensor(extraFeatures, batch.b, "extraFeatures");
      return crossEntropy(this.logits(batch, rng, extra), targets);
    });
  }

  /** The padding id (= numItems). */
  get padId(): number {
    return this.train.numItems;
  }

  async fit(
    train: readonly TrainExample[],
    opts: FitOptions = {},
  ): Promise<{ losses: number[] }> {
    checkExamples(train, this.train.numItems);
    if (opts.extraFeatures || this.extraDim() > 0) {
      this.extraTensor(opts.extraFeatures, train.length, "extraFeatures")?.dispose();
    }
    const epochs = opts.epochs ?? this.train.epochs;
    checkInt("epochs", epochs, 0);
    const { batchSize, lr, weightDecay, maxLen } = this.train;
    const optim = new AdamW(this.params.vars, { weightDecay });
    const losses: number[] = [];
    let step = 0;
    try {
      for (let ep = 1; ep <= epochs; ep++) {
        const t0 = performance.now();
        const order = this.rng.shuffle(train.map((_, i) => i));
        let sum = 0;
        for (let s = 0; s < order.length; s += batchSize) {
          const idx = order.slice(s, s + batchSize);
          const batch = padHistories(idx.map((i) => train[i].historyIds), maxLen, this.padId);
          const targets = Int32Array.from(idx.map((i) => train[i].targetId));
          const extraRows = opts.extraFeatures ? idx.map((i) => opts.extraFeatures![i]) : undefined;
          const { value, grads } = tf.variableGrads(() =>
            tf.tidy(() => {
              const extra = this.extraTensor(extraRows, batch.b, "extraFeatures");
              return crossEntropy(this.logits(batch, this.rng, extra), targets);
            }), this.params.vars);
          const l = value.dataSync()[0];
          step++;
          if (!Number.isFinite(l)) {
            tf.dispose([value, grads]);
            throw new NonFiniteError(step, `${this.name} loss is ${l}`);
          }
          optim.step(grads, lr);
          tf.dispose([value, grads]);
          sum += l * idx.length;
        }
        const loss = sum / order.length;
        losses.push(loss);
        if (!opts.quiet) {
          const sec = ((performance.now() - t0) / 1000).toFixed(1);
          console.error(`[${this.name}] epoch ${ep}/${epochs} loss ${loss.toFixed(4)} (${sec} s)`);
        }
        opts.onEpoch?.(ep, loss);
        await new Promise((r) => setTimeout(r, 0)); // let timers and signals run
      }
    } finally {
      optim.dispose();
    }
    return { losses };
  }

  scoreCandidates(historyIds: readonly number[], candidateIds: readonly number[]): number[] {
    checkIds(historyIds, this.train.numItems, "historyIds");
    checkIds(candidateIds, this.train.numItems, "candidateIds", false);
    return this.scoreBatch([historyIds], [candidateIds])[0];
  }

  scoreBatch(
    histories: readonly (readonly number[])[],
    candidates: readonly (readonly number[])[],
    extraFeatures?: readonly Float32Array[],
  ): number[][] {
    checkRows(histories, candidates, this.train.numItems);
    const v = this.train.numItems;
    const out: number[][] = [];
    const chunk = 256;
    for (let s = 0; s < histories.length; s += chunk) {
      const hs = histories.slice(s, s + chunk);
      const batch = padHistories(hs, this.train.maxLen, this.padId);
      const logits = tf.tidy(() => {
        const extra = this.extraTensor(
          extraFeatures?.slice(s, s + chunk),
          batch.b,
          "extraFeatures",
        );
        return this.logits(batch, undefined, extra);
      });
      const data = logits.dataSync();
      logits.dispose();
      hs.forEach((_, r) => out.push(candidates[s + r].map((id) => data[r * v + id])));
    }
    return out;
  }

  dispose(): void {
    this.params.dispose();
  }
}
