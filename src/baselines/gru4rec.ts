/**
 * GRU4Rec: Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based Recommendations with
 * Recurrent Neural Networks" (ICLR 2016), in the cross-entropy form of Hidasi & Karatzoglou,
 * "Recurrent Neural Networks with Top-k Gains for Session-based Recommendations" (CIKM 2018),
 * as RecBole's `GRU4Rec` runs it: item embedding → dropout → one GRU layer → last hidden state
 * → logits `h · W_out + b` over all items → softmax cross-entropy on the next item.
 *
 * Differences from the 2016 paper, on purpose: a learned item embedding instead of one-hot
 * input (the paper's best runs used one-hot; its own follow-up and RecBole use embeddings),
 * full softmax instead of BPR/TOP1 over session-parallel mini-batches (≤ 800 items), Adam
 * instead of Adagrad (same 0.01 rate), and each example is one (history → next item) pair with left padding
 * (padded steps leave the hidden state at 0 through a mask).
 *
 * The GRU cell (PyTorch's layout, gates r, z, n):
 * ```
 * r = σ(x W_r + h U_r + b_r)      z = σ(x W_z + h U_z + b_z)
 * n = tanh(x W_n + b_n + r ⊙ (h U_n + c_n))      h' = (1 − z) ⊙ n + z ⊙ h
 * ```
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

/** GRU4Rec hyper-parameters (RecBole's defaults scaled down for 2 CPU cores). */
export interface Gru4recConfig extends TrainingConfig {
  /** Item embedding size E (RecBole 64). */
  embeddingSize: number;
  /** GRU hidden size H (paper 100, RecBole 128). */
  hiddenSize: number;
  /** Dropout on the item embeddings (RecBole `dropout_prob` 0.3). */
  dropout: number;
}

/** Defaults; `numItems` is set from the data by {@link trainBaseline}. */
export const DEFAULT_GRU4REC_CONFIG: Readonly<Gru4recConfig> = Object.freeze({
  numItems: 800,
  maxLen: 10,
  epochs: 10,
  batchSize: 256,
  lr: 1e-2, // the paper's Adagrad 0.01; Adam at 1e-3 stayed at popularity level for 6 epochs
  weightDecay: 0,
  seed: 0,
  embeddingSize: 64,
  hiddenSize: 64,
  dropout: 0.3,
});

/** GRU4Rec as a {@link SequentialRecommender}. */
export class Gru4rec extends NeuralRecommender {
  readonly name = "gru4rec";
  /** The full config in use. */
  readonly config: Readonly<Gru4recConfig>;
  private readonly emb: tf.Variable; // [V + 1, E], row V = padding
  private readonly wx: tf.Variable; // [E, 3H], gates r | z | n
  private readonly bx: tf.Variable; // [3H]
  private readonly wh: tf.Variable; // [H, 3H]
  private readonly bh: tf.Variable; // [3H]
  private readonly wOut: tf.Variable; // [H, V]
  private readonly bOut: tf.Variable; // [V]

  /**
   * @param config Overrides of {@link DEFAULT_GRU4REC_CONFIG}.
   * @throws {ConfigError} On a bad field, naming it.
   */
  constructor(config: Partial<Gru4recConfig> = {}) {
    const c = { ...DEFAULT_GRU4REC_CONFIG, ...config };
    super(c, "gru4rec");
    checkInt("embeddingSize", c.embeddingSize);
    checkInt("hiddenSize", c.hiddenSize);
    checkRate("dropout", c.dropout);
    this.config = Object.freeze(c);
    const { numItems: v, embeddingSize: e, hiddenSize: h } = c;
    const p = this.params;
    this.emb = p.normal("item_embedding", [v + 1, e], 1 / Math.sqrt(e));
    this.wx = p.linear("gru.weight_ih", e, 3 * h);
    this.bx = p.fill("gru.bias_ih", [3 * h], 0);
    this.wh = p.linear("gru.weight_hh", h, 3 * h);
    this.bh = p.fill("gru.bias_hh", [3 * h], 0);
    this.wOut = p.linear("dense.weight", h, v);
    this.bOut = p.fill("dense.bias", [v], 0);
  }

  /** Last hidden state [B, H] of a padded batch. */
  hidden(batch: PaddedBatch, rng?: Rng): tf.Tensor2D {
    const { b, t } = batch;
    const hs = this.config.hiddenSize;
    const x = dropout(embedLookup(this.emb as tf.Tensor2D, batch.ids), this.config.dropout, rng); // [B·T, E]
    const gx = tf.add(tf.matMul(x, this.wx as tf.Tensor2D), this.bx).reshape([b, t, 3 * hs]); // [B, T, 3H]
    const mask = tf.tensor3d(batch.mask, [b, t, 1]);
    let h = tf.zeros([b, hs]) as tf.Tensor2D;
    for (let s = 0; s < t; s++) {
      const g = tf.slice(gx, [0, s, 0], [b, 1, 3 * hs]).reshape([b, 3 * hs]); // [B, 3H]
      const gh = tf.add(tf.matMul(h, this.wh as tf.Tensor2D), this.bh); // [B, 3H]
      const [xr, xz, xn] = tf.split(g, 3, 1);
      const [hr, hz, hn] = tf.split(gh, 3, 1);
      const r = tf.sigmoid(tf.add(xr, hr));
      const z = tf.sigmoid(tf.add(xz, hz));
      const n = tf.tanh(tf.add(xn, tf.mul(r, hn)));
      const hNew = tf.add(tf.mul(tf.sub(1, z), n), tf.mul(z, h));
      const m = tf.slice(mask, [0, s, 0], [b, 1, 1]).reshape([b, 1]); // [B, 1]
      h = tf.add(tf.mul(m, hNew), tf.mul(tf.sub(1, m), h)) as tf.Tensor2D; // padding keeps h
    }
    return h;
  }

  logits(batch: PaddedBatch, rng?: Rng): tf.Tensor2D {
    const h = this.hidden(batch, rng);
    return tf.add(tf.matMul(h, this.wOut as tf.Tensor2D), this.bOut) as tf.Tensor2D; // [B, V]
  }
}
