/**
 * SASRec: Kang & McAuley, "Self-Attentive Sequential Recommendation" (ICDM 2018). Item
 * embeddings plus learned positional embeddings (histories left-padded to `maxLen`, so the
 * last item always sits at position `maxLen − 1`), dropout, then `numBlocks` blocks of
 * pre-norm causal self-attention and a point-wise feed-forward net, each sub-layer
 * `x + Dropout(g(LayerNorm(x)))` as the paper's eq. (4); padded positions are masked as keys
 * and zeroed after every block, and a final layer norm gives F. The user representation is the
 * last position's F; the score of item i is `F · M_i` with the item embedding M shared with
 * the input (the paper's shared-embedding variant).
 *
 * Loss, on purpose: **softmax cross-entropy over all items** on the next item of each example
 * (RecBole's `loss_type = "CE"`), not the paper's binary cross-entropy with one sampled
 * negative per position; full softmax is cheap at ≤ 800 items and trains faster.
 *
 * Extra features: with `extraFeatureDim = F > 0`, each row takes a vector f [F] (e.g.
 * LM-inferred preference features for DPO4Rec); `f · W_extra` (W_extra [F, H], zero-initialised
 * so a fresh projection changes nothing) is added to the user representation before scoring.
 *
 * @module
 */
import { tf } from "../backend.ts";
import { ConfigError, InputError } from "../errors.ts";
import type { Rng } from "../rng.ts";
import {
  checkIds,
  checkInt,
  checkRate,
  dropout,
  embedLookup,
  layerNorm,
  NeuralRecommender,
  type PaddedBatch,
  padHistories,
  type TrainingConfig,
} from "./_common.ts";

/** SASRec hyper-parameters (paper / RecBole defaults scaled down for 2 CPU cores). */
export interface SasrecConfig extends TrainingConfig {
  /** Hidden size d of embeddings and blocks (paper 50, RecBole 64). */
  hiddenSize: number;
  /** Self-attention blocks b (paper 2, RecBole 2). */
  numBlocks: number;
  /** Attention heads; must divide `hiddenSize` (paper 1, RecBole 2; 1 is faster here). */
  numHeads: number;
  /** Inner size of the point-wise FFN (paper d, RecBole 256). */
  innerSize: number;
  /** Dropout on embeddings, attention output and FFN (paper 0.2 on ML-1M, 0.5 on sparse sets). */
  dropout: number;
  /** Dimension of the optional extra per-row feature vector (0 = none). */
  extraFeatureDim: number;
}

/** Defaults: hidden 64, maxLen 10 (histories are ≤ 10), 2 blocks, 1 head, Adam 1e-3. */
export const DEFAULT_SASREC_CONFIG: Readonly<SasrecConfig> = Object.freeze({
  numItems: 800,
  maxLen: 10,
  epochs: 10,
  batchSize: 256,
  lr: 1e-3,
  weightDecay: 0,
  seed: 0,
  hiddenSize: 64,
  numBlocks: 2,
  numHeads: 1,
  innerSize: 128,
  dropout: 0.2,
  extraFeatureDim: 0,
});

interface SasrecBlock {
  ln1g: tf.Variable;
  ln1b: tf.Variable;
  wq: tf.Variable; // [H, H]
  wk: tf.Variable;
  wv: tf.Variable;
  ln2g: tf.Variable;
  ln2b: tf.Variable;
  w1: tf.Variable; // [H, inner]
  b1: tf.Variable;
  w2: tf.Variable; // [inner, H]
  b2: tf.Variable;
}

/** SASRec as a {@link SequentialRecommender}. */
export class Sasrec extends NeuralRecommender {
  readonly name = "sasrec";
  /** The full config in use. */
  readonly config: Readonly<SasrecConfig>;
  private readonly emb: tf.Variable; // [V + 1, H], row V = padding
  private readonly pos: tf.Variable; // [T, H]
  private readonly blocks: SasrecBlock[] = [];
  private readonly lnfG: tf.Variable;
  private readonly lnfB: tf.Variable;
  private readonly wExtra?: tf.Variable; // [F, H]

  /**
   * @param config Overrides of {@link DEFAULT_SASREC_CONFIG}.
   * @throws {ConfigError} On a bad field, naming it.
   */
  constructor(config: Partial<SasrecConfig> = {}) {
    const c = { ...DEFAULT_SASREC_CONFIG, ...config };
    super(c, "sasrec");
    checkInt("hiddenSize", c.hiddenSize);
    checkInt("numBlocks", c.numBlocks, 0);
    checkInt("numHeads", c.numHeads);
    if (c.hiddenSize % c.numHeads !== 0) {
      throw new ConfigError(
        "numHeads",
        `must divide hiddenSize ${c.hiddenSize}, got ${c.numHeads}`,
      );
    }
    checkInt("innerSize", c.innerSize);
    checkRate("dropout", c.dropout);
    checkInt("extraFeatureDim", c.extraFeatureDim, 0);
    this.config = Object.freeze(c);
    const { numItems: v, hiddenSize: h, maxLen: t, innerSize: inner } = c;
    const p = this.params;
    const std = 0.02; // RecBole's initializer_range
    this.emb = p.normal("item_embedding", [v + 1, h], std);
    this.pos = p.normal("position_embedding", [t, h], std);
    for (let i = 0; i < c.numBlocks; i++) {
      const k = `blocks.${i}.`;
      this.blocks.push({
        ln1g: p.fill(k + "attn_norm.weight", [h], 1),
        ln1b: p.fill(k + "attn_norm.bias", [h], 0),
        wq: p.normal(k + "attn.q", [h, h], std),
        wk: p.normal(k + "attn.k", [h, h], std),
        wv: p.normal(k + "attn.v", [h, h], std),
        ln2g: p.fill(k + "ffn_norm.weight", [h], 1),
        ln2b: p.fill(k + "ffn_norm.bias", [h], 0),
        w1: p.normal(k + "ffn.dense_1.weight", [h, inner], std),
        b1: p.fill(k + "ffn.dense_1.bias", [inner], 0),
        w2: p.normal(k + "ffn.dense_2.weight", [inner, h], std),
        b2: p.fill(k + "ffn.dense_2.bias", [h], 0),
      });
    }
    this.lnfG = p.fill("final_norm.weight", [h], 1);
    this.lnfB = p.fill("final_norm.bias", [h], 0);
    if (c.extraFeatureDim > 0) this.wExtra = p.fill("extra_proj.weight", [c.extraFeatureDim, h], 0);
  }

  protected override extraDim(): number {
    return this.config.extraFeatureDim;
  }

  /** Causal self-attention of one block on normalised input q [B·T, H]. */
  private attention(blk: SasrecBlock, x: tf.Tensor2D, b: number, t: number, bias: tf.Tensor) {
    const { hiddenSize: h, numHeads: nh } = this.config;
    const d = h / nh;
    const split = (m: tf.Tensor2D) =>
      tf.transpose(m.reshape([b, t, nh, d]), [0, 2, 1, 3]).reshape([b * nh, t, d]); // [B·nh, T, D]
    const q = split(tf.matMul(x, blk.wq as tf.Tensor2D));
    const k = split(tf.matMul(x, blk.wk as tf.Tensor2D));
    const v = split(tf.matMul(x, blk.wv as tf.Tensor2D));
    const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(d)), bias); // [B·nh, T, T]
    const out = tf.matMul(tf.softmax(scores), v) as tf.Tensor3D; // [B·nh, T, D]
    return tf.transpose(out.reshape([b, nh, t, d]), [0, 2, 1, 3]).reshape([
      b * t,
      h,
    ]) as tf.Tensor2D;
  }

  /** Final hidden state [B, H] at the last position (plus the extra-feature projection). */
  encode(batch: PaddedBatch, rng?: Rng, extra?: tf.Tensor2D): tf.Tensor2D {
    const { b, t } = batch;
    const { hiddenSize: h, numHeads: nh, dropout: p } = this.config;
    const mask = tf.tensor2d(batch.mask, [b * t, 1]); // [B·T, 1]
    // Additive bias [B·nh, T, T]: −1e9 on future positions and on padded keys.
    const biasBuf = new Float32Array(b * t * t);
    for (let r = 0; r < b; r++) {
      for (let i = 0; i < t; i++) {
        for (let j = 0; j < t; j++) {
          if (j > i || batch.mask[r * t + j] === 0) biasBuf[(r * t + i) * t + j] = -1e9;
        }
      }
    }
    let bias: tf.Tensor = tf.tensor3d(biasBuf, [b, t, t]);
    if (nh > 1) bias = tf.tile(bias.reshape([b, 1, t, t]), [1, nh, 1, 1]).reshape([b * nh, t, t]);
    const e = embedLookup(this.emb as tf.Tensor2D, batch.ids); // [B·T, H]
    // Broadcast add (tile's gradient is one slice per row on wasm: slow).
    const ep = tf.add(e.reshape([b, t, h]), this.pos).reshape([b * t, h]); // [B·T, H]
    let x = tf.mul(dropout(ep, p, rng), mask) as tf.Tensor2D;
    for (const blk of this.blocks) {
      const q = layerNorm(x, blk.ln1g as tf.Tensor1D, blk.ln1b as tf.Tensor1D) as tf.Tensor2D;
      x = tf.add(x, dropout(this.attention(blk, q, b, t, bias), p, rng));
      const y = layerNorm(x, blk.ln2g as tf.Tensor1D, blk.ln2b as tf.Tensor1D) as tf.Tensor2D;
      const f1 = dropout(tf.relu(tf.add(tf.matMul(y, blk.w1 as tf.Tensor2D), blk.b1)), p, rng);
      const f2 = tf.add(tf.matMul(f1 as tf.Tensor2D, blk.w2 as tf.Tensor2D), blk.b2);
      x = tf.mul(tf.add(x, dropout(f2, p, rng)), mask) as tf.Tensor2D;
    }
    const last = tf.slice(x.reshape([b, t, h]), [0, t - 1, 0], [b, 1, h]).reshape([b, h]);
    let u = layerNorm(last, this.lnfG as tf.Tensor1D, this.lnfB as tf.Tensor1D) as tf.Tensor2D; // [B, H]
    if (this.wExtra && extra) u = tf.add(u, tf.matMul(extra, this.wExtra as tf.Tensor2D));
    return u;
  }

  logits(batch: PaddedBatch, rng?: Rng, extra?: tf.Tensor2D): tf.Tensor2D {
    const u = this.encode(batch, rng, extra); // [B, H]
    const v = this.config.numItems;
    const items = tf.transpose(tf.slice(this.emb, [0, 0], [v, this.config.hiddenSize])); // [H, V]
    return tf.matMul(u, items as tf.Tensor2D) as tf.Tensor2D; // [B, V]
  }

  /**
   * The user representation of one history (the vector that is dotted with item embeddings).
   *
   * @param historyIds Item ids, oldest first (at least one).
   * @param extraFeatures The extra feature vector, when `extraFeatureDim > 0`.
   * @returns [H] values.
   */
  encodeHistory(historyIds: readonly number[], extraFeatures?: Float32Array): Float32Array {
    checkIds(historyIds, this.config.numItems, "historyIds");
    const batch = padHistories([historyIds], this.config.maxLen, this.padId);
    const u = tf.tidy(() => {
      const extra = this.extraTensor(
        extraFeatures ? [extraFeatures] : undefined,
        1,
        "extraFeatures",
      );
      return this.encode(batch, undefined, extra);
    });
    const out = u.dataSync() as Float32Array;
    u.dispose();
    return Float32Array.from(out);
  }
}

/**
 * The final hidden state of SASRec for one history: the "user representation" DPO4Rec
 * works with.
 *
 * @example Usage
 * ```ts
 * import { initBackend } from "../backend.ts";
 * import { encodeHistory, Sasrec } from "./sasrec.ts";
 * await initBackend("cpu", { quiet: true });
 * const m = new Sasrec({ numItems: 10, hiddenSize: 8, maxLen: 4 });
 * console.assert(encodeHistory(m, [1, 2, 3]).length === 8);
 * m.dispose();
 * ```
 * @param model A SASRec model.
 * @param historyIds Item ids, oldest first.
 * @param extraFeatures Extra features when the model takes them.
 * @returns [hiddenSize] values.
 * @throws {InputError} On an empty history or an unknown item id.
 */
export function encodeHistory(
  model: Sasrec,
  historyIds: readonly number[],
  extraFeatures?: Float32Array,
): Float32Array {
  if (!(model instanceof Sasrec)) throw new InputError("model", "expected a Sasrec model");
  return model.encodeHistory(historyIds, extraFeatures);
}
