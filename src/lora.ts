/**
 * LoRA (Hu et al., 2021) as PEFT implements it, on a linear layer built for the tfjs wasm
 * backend.
 *
 * A {@link LoraLinear} holds a frozen base weight and, optionally, one low-rank adapter:
 *
 *     y = x Wᵀ + b + scaling · B(A(dropout(x)))        scaling = lora_alpha / r
 *
 * PEFT's layout: `lora_A.weight` is [r, in] (Kaiming-uniform, a = √5), `lora_B.weight` is
 * [out, r] (zeros, so a fresh adapter leaves the model unchanged). Here the trainable
 * variables are stored transposed (`aT` [in, r], `bT` [r, out]) and the base weight is kept
 * both as `weight` [out, in] (Hugging Face layout) and `weightT` [in, out], so that the
 * forward pass and the input gradient are plain 2-D, non-transposed matMuls — the only kind
 * that is fast on the wasm backend. The gradient is written by hand (`tf.customGrad`).
 *
 * References: PEFT `src/peft/tuners/lora/layer.py`; LoRA, arXiv:2106.09685.
 *
 * @module
 */
import { customOp, tf } from "./backend.ts";
import { blasStatus } from "./blas.ts";
import { ConfigError, RecalignError } from "./errors.ts";
import { Rng } from "./rng.ts";

/** The seven projections of a Llama block, PEFT's usual `target_modules`. */
export const LLAMA_PROJECTIONS = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;

/** LoRA hyper-parameters, with PEFT's field names. */
export interface LoraConfig {
  /** Rank r of the update B·A. */
  r: number;
  /** Scaling numerator: the update is multiplied by lora_alpha / r. */
  lora_alpha: number;
  /** Dropout on the adapter's input during training (0 = none). */
  lora_dropout: number;
  /** Module names (last part of the weight name) that get an adapter. */
  target_modules: string[];
  /** Seed for the Kaiming-uniform init of A (and the dropout masks). */
  seed: number;
}

/** PEFT-like defaults: r 8, alpha 16, dropout 0.05, all seven projections. */
export const DEFAULT_LORA_CONFIG: LoraConfig = {
  r: 8,
  lora_alpha: 16,
  lora_dropout: 0.05,
  target_modules: [...LLAMA_PROJECTIONS],
  seed: 0,
};

/** Check a LoRA config; throws ConfigError naming the field. */
export function validateLoraConfig(cfg: LoraConfig): void {
  if (!Number.isInteger(cfg.r) || cfg.r <= 0) {
    throw new ConfigError("r", `should be a positive integer, got ${cfg.r}`);
  }
  if (!Number.isFinite(cfg.lora_alpha) || cfg.lora_alpha <= 0) {
    throw new ConfigError("lora_alpha", `should be a positive number, got ${cfg.lora_alpha}`);
  }
  if (!(cfg.lora_dropout >= 0 && cfg.lora_dropout < 1)) {
    throw new ConfigError("lora_dropout", `should be in [0, 1), got ${cfg.lora_dropout}`);
  }
  if (!Array.isArray(cfg.target_modules) || cfg.target_modules.length === 0) {
    throw new ConfigError("target_modules", "should list at least one module name");
  }
}

/** One adapter: trainable aT [in, r] and bT [r, out]. */
export interface LoraAdapter {
  /** Transposed lora_A: [in, r]. */
  aT: tf.Variable;
  /** Transposed lora_B: [r, out]. */
  bT: tf.Variable;
  /** lora_alpha / r. */
  scaling: number;
  /** Dropout rate on the adapter input. */
  dropout: number;
}

/** Per-call options of {@link LoraLinear.apply}. */
export interface LinearCallOptions {
  /** Run the adapter (default true). False = base layer only (the DPO reference). */
  adapters?: boolean;
  /** Training mode: enables LoRA dropout. */
  training?: boolean;
  /** Source of dropout seeds (needed when training with dropout > 0). */
  rng?: Rng;
}

/**
 * A linear layer `y = x Wᵀ (+ b)` with a frozen (or, for full fine-tuning, trainable) base
 * weight and an optional LoRA adapter.
 */
export class LoraLinear {
  /** Hugging Face weight name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Base weight [in, out] (transposed HF layout). A Variable when the base is trainable. */
  weightT: tf.Tensor2D;
  /** Base weight [out, in] (HF layout), cached for the input gradient; undefined if trainable. */
  private weightCache?: tf.Tensor2D;
  /** Optional bias [out] (Qwen2 q/k/v). */
  bias?: tf.Tensor1D;
  /** The adapter, if one is attached. */
  adapter?: LoraAdapter;
  /** Whether the adapter's update is currently merged into the base weight. */
  merged = false;

  /** Prefix of this layer's tf variable names (tfjs variable names are process-global). */
  readonly scope: string;

  constructor(name: string, weight: tf.Tensor2D, bias?: tf.Tensor1D, scope = "") {
    this.name = name;
    this.scope = scope;
    [this.outFeatures, this.inFeatures] = weight.shape;
    this.weightCache = tf.keep(weight);
    this.weightT = tf.keep(tf.transpose(weight));
    this.bias = bias ? tf.keep(bias) : undefined;
  }

  /** True when the base weight is a trainable variable (full fine-tuning). */
  get baseTrainable(): boolean {
    return this.weightT instanceof tf.Variable;
  }

  /** The base weight in HF layout [out, in] (a new tensor the caller owns if trainable). */
  weight(): tf.Tensor2D {
    return this.weightCache ?? tf.transpose(this.weightT);
  }

  /** Make the base weight a trainable variable (full fine-tuning, e.g. pretraining). */
  makeBaseTrainable(): void {
    if (this.baseTrainable) return;
    if (this.adapter) {
      throw new RecalignError(
        `${this.name}: has a LoRA adapter; train either the adapter or the base`,
      );
    }
    const v = tf.variable(this.weightT, true, `${this.scope}${this.name}.T`);
    this.weightT.dispose();
    this.weightT = v as unknown as tf.Tensor2D;
    this.weightCache?.dispose();
    this.weightCache = undefined;
  }

  /** Freeze a trainable base weight again (keeps its current values). */
  freezeBase(): void {
    if (!this.baseTrainable) return;
    const t = tf.keep(tf.clone(this.weightT));
    this.weightT.dispose();
    this.weightT = t;
    this.weightCache = tf.keep(tf.transpose(t));
  }

  /** Replace the base weight (HF layout [out, in]); used by checkpoint loading. */
  setWeight(weight: tf.Tensor2D): void {
    if (weight.shape[0] !== this.outFeatures || weight.shape[1] !== this.inFeatures) {
      throw new RecalignError(
        `${this.name}: expected shape [${this.outFeatures}, ${this.inFeatures}], got [${weight.shape}]`,
      );
    }
    if (this.baseTrainable) {
      (this.weightT as unknown as tf.Variable).assign(tf.tidy(() => tf.transpose(weight)));
    } else {
      this.weightT.dispose();
      this.weightCache?.dispose();
      this.weightCache = tf.keep(tf.clone(weight));
      this.weightT = tf.keep(tf.transpose(weight));
    }
  }

  /**
   * Attach a fresh adapter: A Kaiming-uniform (bound 1/√in, as nn.Linear with a=√5),
   * B zeros — so the layer's output is unchanged until B is trained.
   */
  addAdapter(cfg: LoraConfig, rng: Rng): void {
    validateLoraConfig(cfg);
    if (this.adapter) throw new RecalignError(`${this.name}: already has a LoRA adapter`);
    if (this.baseTrainable) {
      throw new RecalignError(`${this.name}: base weight is trainable; call freezeBase() first`);
    }
    const bound = 1 / Math.sqrt(this.inFeatures);
    const a = new Float32Array(this.inFeatures * cfg.r);
    for (let i = 0; i < a.length; i++) a[i] = (rng.next() * 2 - 1) * bound;
    // tidy frees the initial-value tensors; the variables (which share their data) survive.
    const [aT, bT] = tf.tidy(() => [
      tf.variable(
        tf.tensor2d(a, [this.inFeatures, cfg.r]),
        true,
        `${this.scope}${this.name}.lora_A.T`,
      ),
      tf.variable(tf.zeros([cfg.r, this.outFeatures]), true, `${this.scope}${this.name}.lora_B.T`),
    ]);
    this.adapter = { aT, bT, scaling: cfg.lora_alpha / cfg.r, dropout: cfg.lora_dropout };
    this.merged = false;
  }

  /** ΔW in HF layout [out, in]: scaling · B · A. Caller owns the tensor. */
  deltaWeight(): tf.Tensor2D {
    const ad = this.requireAdapter();
    return tf.tidy(() => tf.transpose(tf.matMul(ad.aT, ad.bT).mul(ad.scaling)) as tf.Tensor2D);
  }

  /** Add the adapter into the base weight (PEFT `merge`, with `safe_merge`'s finiteness check). */
  merge(): void {
    const ad = this.requireAdapter();
    if (this.merged) return;
    const deltaT = tf.tidy(() => tf.matMul(ad.aT, ad.bT).mul(ad.scaling) as tf.Tensor2D);
    const finite = tf.tidy(() => tf.all(tf.isFinite(deltaT)).dataSync()[0]);
    if (!finite) {
      deltaT.dispose();
      throw new RecalignError(`${this.name}: LoRA update has non-finite values; not merged`);
    }
    this.replaceBase(tf.tidy(() => tf.add(this.weightT, deltaT) as tf.Tensor2D));
    deltaT.dispose();
    this.merged = true;
  }

  /** Subtract a merged adapter back out of the base weight (PEFT `unmerge`). */
  unmerge(): void {
    const ad = this.requireAdapter();
    if (!this.merged) return;
    this.replaceBase(
      tf.tidy(() => tf.sub(this.weightT, tf.matMul(ad.aT, ad.bT).mul(ad.scaling)) as tf.Tensor2D),
    );
    this.merged = false;
  }

  /** Merge the adapter and drop it (PEFT `merge_and_unload`). */
  mergeAndUnload(): void {
    this.merge();
    this.removeAdapter();
  }

  /** Drop the adapter (its variables are disposed); a merged update stays in the base. */
  removeAdapter(): void {
    this.dropFolded();
    if (!this.adapter) return;
    this.adapter.aT.dispose();
    this.adapter.bT.dispose();
    this.adapter = undefined;
    this.merged = false;
  }

  private replaceBase(newT: tf.Tensor2D): void {
    if (this.baseTrainable) {
      (this.weightT as unknown as tf.Variable).assign(newT);
      newT.dispose();
      return;
    }
    this.weightT.dispose();
    this.weightCache?.dispose();
    this.weightT = tf.keep(newT);
    this.weightCache = tf.keep(tf.transpose(newT));
  }

  private requireAdapter(): LoraAdapter {
    if (!this.adapter) throw new RecalignError(`${this.name}: no LoRA adapter attached`);
    return this.adapter;
  }

  /** Trainable variables of this layer (adapter, and the base if trainable). */
  trainableVariables(): tf.Variable[] {
    const vs: tf.Variable[] = [];
    if (this.adapter) vs.push(this.adapter.aT, this.adapter.bT);
    if (this.baseTrainable) vs.push(this.weightT as unknown as tf.Variable);
    return vs;
  }

  /** The folded weights of the last call, and the data they were computed from. */
  private foldCache?: { from: unknown[]; wT: tf.Tensor2D; w?: tf.Tensor2D };

  /**
   * Wᵀ + s·AᵀBᵀ [in, out], and W + s·BA [out, in] when the products cannot read a transposed
   * operand at full speed, recomputed only when the base weight or an adapter variable changed
   * (an optimizer step or assign swaps a variable's data), so the micro-batches of a step and
   * repeated scoring share one fold. Cached up to 2²⁰ values. With a native BLAS the input
   * gradient reads wT transposed (`transposeB`, the same packed panels and sums bit for bit),
   * so W + s·BA is never materialised.
   */
  private folded(): { wT: tf.Tensor2D; w?: tf.Tensor2D } {
    const ad = this.requireAdapter();
    const from = [this.weightT.dataId, this.weightCache?.dataId, ad.aT.dataId, ad.bT.dataId];
    const c = this.foldCache;
    if (c && c.from.every((d, i) => d === from[i])) return c;
    this.dropFolded();
    // W + s·BA is the transpose of Wᵀ + s·AᵀBᵀ element by element (the same products over r,
    // the same scaling and sum), so it is taken as one transpose instead of a second fold.
    const withW = !blasStatus().enabled;
    const fold = tf.tidy(() => {
      const wT = tf.add(this.weightT, tf.matMul(ad.aT, ad.bT).mul(ad.scaling)) as tf.Tensor2D;
      return { wT, w: withW ? tf.transpose(wT) : undefined };
    });
    if (this.inFeatures * this.outFeatures <= 1 << 20) {
      this.foldCache = {
        from,
        wT: tf.keep(fold.wT),
        w: fold.w ? tf.keep(fold.w) : undefined,
      };
    }
    return fold;
  }

  private dropFolded(): void {
    this.foldCache?.wT.dispose();
    this.foldCache?.w?.dispose();
    this.foldCache = undefined;
  }

  /**
   * y = x Wᵀ (+ b) (+ scaling·B·A·dropout(x)) for x [N, in] → [N, out].
   * Every matMul in the forward pass and in the gradient wrt x is 2-D and non-transposed
   * on the big operand.
   */
  apply(x: tf.Tensor2D, opts: LinearCallOptions = {}): tf.Tensor2D {
    const useAdapter = this.adapter !== undefined && !this.merged && opts.adapters !== false;
    let y: tf.Tensor2D;
    if (!useAdapter) {
      y = this.baseTrainable
        ? linearTrainable(x, this.weightT)
        : linearFrozen(x, this.weightT, this.weightCache!);
    } else {
      const ad = this.adapter!;
      let mask: tf.Tensor2D | undefined;
      if (opts.training && ad.dropout > 0) {
        const seed = (opts.rng ?? new Rng(0)).nextUint32();
        mask = tf.tidy(() =>
          tf.randomUniform(x.shape, 0, 1, "float32", seed).greaterEqual(ad.dropout).cast("float32")
            .div(1 - ad.dropout) as tf.Tensor2D
        );
      }
      y = mask
        ? linearLora(x, this.weightT, this.weightCache, ad.aT, ad.bT, ad.scaling, mask)
        : linearLoraMerged(x, ad.aT, ad.bT, ad.scaling, () => this.folded());
      mask?.dispose();
    }
    return this.bias ? tf.add(y, this.bias) : y;
  }

  /** Free every tensor this layer holds. */
  dispose(): void {
    this.dropFolded();
    this.removeAdapter();
    this.weightT.dispose();
    this.weightCache?.dispose();
    this.bias?.dispose();
  }
}

/** x [N,in] @ wT [in,out] with a frozen weight; dx = dy @ w. */
function linearFrozen(x: tf.Tensor2D, wT: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const f = customOp(([xi]) => ({
    value: tf.matMul(xi as tf.Tensor2D, wT),
    gradFunc: (dy) => tf.matMul(dy as tf.Tensor2D, w),
  }));
  return f(x) as tf.Tensor2D;
}

/** x @ wT with a trainable wT (full fine-tuning); dwT = xᵀ dy, dx = dy wTᵀ. */
function linearTrainable(x: tf.Tensor2D, wT: tf.Tensor2D): tf.Tensor2D {
  const f = customOp(([xi, wi], save) => {
    save([xi]);
    return {
      value: tf.matMul(xi as tf.Tensor2D, wi as tf.Tensor2D),
      gradFunc: (dy, saved) => [
        tf.matMul(dy as tf.Tensor2D, tf.transpose(wi as tf.Tensor2D)),
        tf.matMul(tf.transpose(saved[0] as tf.Tensor2D), dy as tf.Tensor2D),
      ],
    };
  });
  return f(x, wT) as tf.Tensor2D;
}

/**
 * y = x wT + s · (x⊙m) aT bT. Gradients: dx = dy w + s·((dy bTᵀ) aTᵀ)⊙m,
 * daT = s·(x⊙m)ᵀ (dy bTᵀ), dbT = s·hᵀ dy with h = (x⊙m) aT. The small rank r keeps the
 * transposed products cheap; the big one (dy w) is non-transposed.
 */
function linearLora(
  x: tf.Tensor2D,
  wT: tf.Tensor2D,
  w: tf.Tensor2D | undefined,
  aT: tf.Variable,
  bT: tf.Variable,
  scaling: number,
  mask?: tf.Tensor2D,
): tf.Tensor2D {
  const f = customOp(([xi, ai, bi], save) => {
    const x2 = xi as tf.Tensor2D;
    const xd = mask ? tf.mul(x2, mask) as tf.Tensor2D : x2;
    const h = tf.matMul(xd, ai as tf.Tensor2D); // [N, r]
    const value = tf.add(tf.matMul(x2, wT), tf.matMul(h, bi as tf.Tensor2D).mul(scaling));
    save(mask ? [xd, h, mask] : [xd, h]); // the caller disposes mask after the forward
    return {
      value,
      gradFunc: (dy, saved) => {
        const [xds, hs, m] = saved as tf.Tensor2D[];
        const d = dy as tf.Tensor2D;
        const dh = tf.matMul(d, bi as tf.Tensor2D, false, true).mul(scaling) as tf.Tensor2D; // [N, r]
        let dxLora = tf.matMul(dh, ai as tf.Tensor2D, false, true) as tf.Tensor2D; // [N, in]
        if (m) dxLora = tf.mul(dxLora, m);
        const dxBase = w ? tf.matMul(d, w) : tf.matMul(d, wT, false, true);
        return [
          tf.add(dxBase, dxLora),
          tf.matMul(xds, dh, true, false), // [in, r]
          tf.matMul(hs, d, true, false).mul(scaling), // [r, out]
        ];
      },
    };
  });
  return f(x, aT, bT) as tf.Tensor2D;
}

/**
 * The same layer without dropout, with the update folded into the weight for the two products
 * that touch every row at full width: y = x·fold.wT, dx = dy·fold.w, where fold.wT = wT +
 * s·aT bT and fold.w = w + s·bTᵀ aTᵀ (see {@link LoraLinear}'s fold cache; with a native BLAS
 * dx reads fold.wT transposed instead). The adapter's own gradients use the thin products:
 * daT = s·xᵀ (dy bTᵀ), dbT = s·hᵀ dy with h = x aT, computed in the gradient, so that scoring
 * without a gradient skips it. Per call this is one [N, ·] product forward and four backward
 * instead of three and five, and no [N, out] or [N, in] element-wise sums.
 */
function linearLoraMerged(
  x: tf.Tensor2D,
  aT: tf.Variable,
  bT: tf.Variable,
  scaling: number,
  folded: () => { wT: tf.Tensor2D; w?: tf.Tensor2D },
): tf.Tensor2D {
  const f = customOp(([xi, ai, bi], save) => {
    // Inside the op the tape is off: the fold's products are not recorded for autodiff.
    const fold = folded();
    const value = tf.matMul(xi as tf.Tensor2D, fold.wT);
    // The fold is saved too: an uncached fold belongs to the caller's tidy, gone by the backward.
    save([xi, fold.w ?? fold.wT]);
    return {
      value,
      gradFunc: (dy, saved) => {
        const [xs, w] = saved as tf.Tensor2D[];
        const d = dy as tf.Tensor2D;
        const hs = tf.matMul(xs, ai as tf.Tensor2D); // [N, r]
        const dh = tf.matMul(d, bi as tf.Tensor2D, false, true).mul(scaling) as tf.Tensor2D; // [N, r]
        return [
          fold.w ? tf.matMul(d, w) : tf.matMul(d, w, false, true),
          tf.matMul(xs, dh, true, false), // [in, r]
          tf.matMul(hs, d, true, false).mul(scaling), // [r, out]
        ];
      },
    };
  });
  return f(x, aT, bT) as tf.Tensor2D;
}
