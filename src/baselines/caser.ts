/**
 * Caser: Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional
 * Sequence Embedding" (WSDM 2018). The last L items form an image E [L, d]; horizontal
 * filters of heights 1 … L (n_h each, ReLU, max-pooled over positions) catch union-level
 * patterns, n_v vertical filters [L, 1] weight the L rows; both are concatenated, dropped out,
 * and a fully connected layer (ReLU) gives z [d]; the score of item i is `z · W_i + b_i`.
 *
 * Differences from the paper, on purpose:
 * - **No user embedding P_u**: the paper concatenates z with a per-user embedding, but test
 *   users here are unseen in training (the world splits users), so P_u would be an untrained
 *   vector at test time. Scores use z alone.
 * - **Softmax cross-entropy on the next item** instead of the paper's sigmoid loss over T = 3
 *   next items with sampled negatives (full softmax is cheap at ≤ 800 items).
 * - Convolutions are matMuls over unfolded windows (2-D), shorter histories are left-padded
 *   with a learned padding embedding (as the released code's item 0).
 *
 * @module
 */
import { tf } from "../backend.ts";
import type { Rng } from "../rng.ts";
import {
  checkInt,
  checkRate,
  dropout,
  embedLookup,
  NeuralRecommender,
  type PaddedBatch,
  type TrainingConfig,
} from "./_common.ts";

/** Caser hyper-parameters (the paper's defaults, d raised from 50 to 64). `maxLen` is L. */
export interface CaserConfig extends TrainingConfig {
  /** Embedding size d (paper 50). */
  embeddingSize: number;
  /** Horizontal filters per height h = 1 … L (paper n_h = 16). */
  numHorizontal: number;
  /** Vertical filters (paper n_v = 4). */
  numVertical: number;
  /** Dropout on the concatenated convolution output (paper 0.5). */
  dropout: number;
}

/** Defaults: L = 5 (paper), d = 64, n_h = 16, n_v = 4, dropout 0.5, Adam 1e-3. */
export const DEFAULT_CASER_CONFIG: Readonly<CaserConfig> = Object.freeze({
  numItems: 800,
  maxLen: 5,
  epochs: 10,
  batchSize: 256,
  lr: 1e-3,
  weightDecay: 0,
  seed: 0,
  embeddingSize: 64,
  numHorizontal: 16,
  numVertical: 4,
  dropout: 0.5,
});

/** Caser as a {@link SequentialRecommender}. */
export class Caser extends NeuralRecommender {
  readonly name = "caser";
  /** The full config in use. */
  readonly config: Readonly<CaserConfig>;
  private readonly emb: tf.Variable; // [V + 1, d]
  private readonly convH: tf.Variable[]; // height h: [h·d, n_h]
  private readonly convHBias: tf.Variable[]; // [n_h]
  private readonly convV: tf.Variable; // [L, n_v]
  private readonly convVBias: tf.Variable; // [n_v]
  private readonly fc: tf.Variable; // [d·n_v + L·n_h, d]
  private readonly fcBias: tf.Variable; // [d]
  private readonly wOut: tf.Variable; // [d, V]
  private readonly bOut: tf.Variable; // [V]

  /**
   * @param config Overrides of {@link DEFAULT_CASER_CONFIG}.
   * @throws {ConfigError} On a bad field, naming it.
   */
  constructor(config: Partial<CaserConfig> = {}) {
    const c = { ...DEFAULT_CASER_CONFIG, ...config };
    super(c, "caser");
    checkInt("embeddingSize", c.embeddingSize);
    checkInt("numHorizontal", c.numHorizontal);
    checkInt("numVertical", c.numVertical);
    checkRate("dropout", c.dropout);
    this.config = Object.freeze(c);
    const { numItems: v, embeddingSize: d, maxLen: l, numHorizontal: nh, numVertical: nv } = c;
    const p = this.params;
    this.emb = p.normal("item_embedding", [v + 1, d], 1 / Math.sqrt(d));
    this.convH = [];
    this.convHBias = [];
    for (let h = 1; h <= l; h++) {
      this.convH.push(p.linear(`conv_h.${h - 1}.weight`, h * d, nh));
      this.convHBias.push(p.fill(`conv_h.${h - 1}.bias`, [nh], 0));
    }
    this.convV = p.linear("conv_v.weight", l, nv);
    this.convVBias = p.fill("conv_v.bias", [nv], 0);
    this.fc = p.linear("fc1.weight", d * nv + l * nh, d);
    this.fcBias = p.fill("fc1.bias", [d], 0);
    this.wOut = p.linear("W2.weight", d, v);
    this.bOut = p.fill("b2.bias", [v], 0);
  }

  /** The sequence representation z [B, d] of a padded batch. */
  represent(batch: PaddedBatch, rng?: Rng): tf.Tensor2D {
    const { b, t: l } = batch;
    const { embeddingSize: d, numVertical: nv, numHorizontal: nh } = this.config;
    const e = embedLookup(this.emb as tf.Tensor2D, batch.ids).reshape([b, l, d]); // [B, L, d]
    // Vertical: out_v[b, k·d + j] = Σ_l E[b, l, j] · F[l, k]
    const et = tf.transpose(e, [0, 2, 1]).reshape([b * d, l]); // [B·d, L]
    const ov = tf.add(tf.matMul(et, this.convV as tf.Tensor2D), this.convVBias); // [B·d, n_v]
    const outV = tf.transpose(ov.reshape([b, d, nv]), [0, 2, 1]).reshape([b, nv * d]); // [B, n_v·d]
    // Horizontal: windows of h rows, unfolded to [B·(L−h+1), h·d], ReLU, max over positions.
    const outH: tf.Tensor[] = [];
    for (let h = 1; h <= l; h++) {
      const w = l - h + 1;
      const wins: tf.Tensor[] = [];
      for (let i = 0; i < w; i++) {
        wins.push(tf.slice(e, [0, i, 0], [b, h, d]).reshape([b, 1, h * d]));
      }
      const unfolded = (w === 1 ? wins[0] : tf.concat(wins, 1)).reshape([b * w, h * d]); // [B·w, h·d]
      const conv = tf.relu(
        tf.add(tf.matMul(unfolded, this.convH[h - 1] as tf.Tensor2D), this.convHBias[h - 1]),
      );
      outH.push(tf.max(conv.reshape([b, w, nh]), 1)); // [B, n_h]
    }
    const cat = dropout(tf.concat([outV, ...outH], 1) as tf.Tensor2D, this.config.dropout, rng); // [B, n_v·d + L·n_h]
    return tf.relu(tf.add(tf.matMul(cat, this.fc as tf.Tensor2D), this.fcBias)) as tf.Tensor2D; // [B, d]
  }

  logits(batch: PaddedBatch, rng?: Rng): tf.Tensor2D {
    const z = this.represent(batch, rng);
    return tf.add(tf.matMul(z, this.wOut as tf.Tensor2D), this.bOut) as tf.Tensor2D; // [B, V]
  }
}
