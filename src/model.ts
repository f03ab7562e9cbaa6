/**
 * A Llama-style decoder-only language model in one readable file (in the spirit of nanoGPT's
 * `model.py`), written for TensorFlow.js.
 *
 * Bottom-up: RMSNorm, rotary position embeddings, causal grouped-query attention (q/k/v/o
 * projections, optional q/k bias and Qwen3's per-head q/k RMSNorm), SwiGLU MLP
 * (gate/up/down), decoder block, {@link LlamaConfig}, {@link LlamaModel}. Every linear layer
 * is a {@link LoraLinear}, so LoRA adapters attach by module name.
 *
 * Config fields and weight names follow Hugging Face's Llama (`model.layers.0.self_attn.
 * q_proj.weight`, …), so a real checkpoint loads key by key without renaming.
 *
 * Shape letters: B batch, T new tokens, S keys (past + new), H hidden size, V vocab,
 * nh query heads, nkv key/value heads, D head size, N = B·T.
 *
 * References: Llama (arXiv:2302.13971), RoPE (arXiv:2104.09864), GQA (arXiv:2305.13245),
 * HF `transformers/models/llama/modeling_llama.py`.
 *
 * @module
 */
import { customOp, tf } from "./backend.ts";
import { ConfigError, InputError, RecalignError } from "./errors.ts";
import { rotateHalf, rotateHalfAvailable } from "./fused.ts";
import { type LinearCallOptions, type LoraConfig, LoraLinear, validateLoraConfig } from "./lora.ts";
import { Rng } from "./rng.ts";

// ---------------------------------------------------------------- config

/** Model configuration, with Hugging Face's field names. */
export interface LlamaConfig {
  /** Number of token ids. */
  vocab_size: number;
  /** Width of the residual stream (H). */
  hidden_size: number;
  /** Width of the SwiGLU MLP. */
  intermediate_size: number;
  /** Number of decoder blocks. */
  num_hidden_layers: number;
  /** Query heads (nh); hidden_size / nh is the head size unless head_dim is set. */
  num_attention_heads: number;
  /** Key/value heads (nkv); nh must be a multiple. nkv < nh is grouped-query attention. */
  num_key_value_heads: number;
  /** Per-head size D; defaults to hidden_size / num_attention_heads (Qwen3 sets it). */
  head_dim?: number;
  /** RoPE base θ. */
  rope_theta: number;
  /** RMSNorm epsilon. */
  rms_norm_eps: number;
  /** LM head shares the token-embedding matrix. */
  tie_word_embeddings: boolean;
  /** Longest position the rotary table covers. */
  max_position_embeddings: number;
  /** Bias on q/k/v projections (Qwen2: true). */
  attention_bias?: boolean;
  /** Per-head RMSNorm on q and k before RoPE (Qwen3: true). */
  qk_norm?: boolean;
  /** Std of the normal init of a model built from scratch (HF `initializer_range`). */
  initializer_range?: number;
  /** Architecture tag, e.g. "llama", "qwen2", "qwen3". */
  model_type?: string;
}

/** Small presets (minGPT style). `bench` is the issue-8 benchmark config. */
export const PRESETS: Record<string, LlamaConfig> = {
  "llama-nano": {
    vocab_size: 256,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    max_position_embeddings: 512,
    initializer_range: 0.02,
    model_type: "llama",
  },
  "llama-tiny": {
    vocab_size: 1024,
    hidden_size: 64,
    intermediate_size: 192,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    max_position_embeddings: 1024,
    initializer_range: 0.02,
    model_type: "llama",
  },
  "llama-small": {
    vocab_size: 2048,
    hidden_size: 128,
    intermediate_size: 384,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    max_position_embeddings: 1024,
    initializer_range: 0.02,
    model_type: "llama",
  },
  bench: {
    vocab_size: 4096,
    hidden_size: 256,
    intermediate_size: 688,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    max_position_embeddings: 1024,
    initializer_range: 0.02,
    model_type: "llama",
  },
};

/** Head size D of a config. */
export function headDim(cfg: LlamaConfig): number {
  return cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
}

/** Check a config; throws ConfigError naming the field and value. */
export function validateConfig(cfg: LlamaConfig): void {
  const positiveInts: (keyof LlamaConfig)[] = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
  ];
  for (const f of positiveInts) {
    const v = cfg[f];
    if (!Number.isInteger(v) || (v as number) <= 0) {
      throw new ConfigError(f, `should be a positive integer, got ${v}`);
    }
  }
  if (cfg.num_attention_heads % cfg.num_key_value_heads !== 0) {
    throw new ConfigError(
      "num_key_value_heads",
      `num_attention_heads (${cfg.num_attention_heads}) must be a multiple of it, got ${cfg.num_key_value_heads}`,
    );
  }
  const d = headDim(cfg);
  if (!Number.isInteger(d) || d % 2 !== 0) {
    throw new ConfigError("head_dim", `head size must be an even integer, got ${d}`);
  }
  if (!(cfg.rope_theta > 0)) {
    throw new ConfigError("rope_theta", `should be > 0, got ${cfg.rope_theta}`);
  }
  if (!(cfg.rms_norm_eps > 0)) {
    throw new ConfigError("rms_norm_eps", `should be > 0, got ${cfg.rms_norm_eps}`);
  }
}

// ---------------------------------------------------------------- building blocks

/**
 * RMSNorm: x / sqrt(mean(x²) + eps) · w, over the last axis. Hand-written gradient (6 kernels
 * instead of autodiff's ~15): with r = (mean(x²) + eps)^(-1/2), x̂ = x·r and g = dy·w,
 * dx = r·(g − x̂·mean(g·x̂)) and dw = Σ dy·x̂ (only when w is trainable).
 */
export function rmsNorm(x: tf.Tensor, w: tf.Tensor1D, eps: number): tf.Tensor {
  const trainable = w instanceof tf.Variable;
  const f = customOp((inputs, save) => {
    const xi = inputs[0];
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(xi), -1, true), eps));
    const xHat = tf.mul(xi, r);
    save([xHat, r]); // x̂ is kept from the forward, not recomputed
    return {
      value: tf.mul(xHat, w),
      gradFunc: (dy, [xh, rs]) => {
        const g = tf.mul(dy, w);
        const dx = tf.mul(rs, tf.sub(g, tf.mul(xh, tf.mean(tf.mul(g, xh), -1, true))));
        if (!trainable) return [dx];
        return [dx, tf.sum(tf.reshape(tf.mul(dy, xh), [-1, w.shape[0]]), 0)];
      },
    };
  });
  return trainable ? f(x, w) : f(x);
}

/** cos/sin tables [P, D] for RoPE, with HF's layout cat(freqs, freqs). */
function ropeTables(cfg: LlamaConfig): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const d = headDim(cfg);
  const p = cfg.max_position_embeddings;
  const cos = new Float32Array(p * d);
  const sin = new Float32Array(p * d);
  for (let pos = 0; pos < p; pos++) {
    for (let i = 0; i < d / 2; i++) {
      const invFreq = 1 / Math.pow(cfg.rope_theta, (2 * i) / d);
      const a = pos * invFreq;
      cos[pos * d + i] = cos[pos * d + i + d / 2] = Math.cos(a);
      sin[pos * d + i] = sin[pos * d + i + d / 2] = Math.sin(a);
    }
  }
  return { cos: tf.tensor2d(cos, [p, d]), sin: tf.tensor2d(sin, [p, d]) };
}

/**
 * rotate_half as a matrix: x·R = cat(−x[D/2:], x[:D/2]). A 2-D product is faster on wasm than
 * slicing and concatenating, and its gradient dy·Rᵀ stays 2-D and non-transposed.
 */
function rotateHalfMatrices(d: number): { r: tf.Tensor2D; rT: tf.Tensor2D } {
  const r = new Float32Array(d * d);
  for (let i = 0; i < d / 2; i++) {
    r[(i + d / 2) * d + i] = -1; // out[i] = −x[i + D/2]
    r[i * d + i + d / 2] = 1; // out[i + D/2] = x[i]
  }
  const rTensor = tf.tensor2d(r, [d, d]);
  return { r: rTensor, rT: tf.transpose(rTensor) };
}

/**
 * x·cos + rotate_half(x)·sin for x [B, T, h, D]; cos/sin [B, T, 1, D]. Hand-written gradient
 * dx = rotate_halfᵀ(dy·sin) + dy·cos: the same kernels and sums as autodiff's, without its
 * casts and reshapes. On wasm, for heads of 64 or more, rotate_half is a permutation in the heap
 * ({@link rotateHalf}), bit for bit the product with the ±1 matrix `rot` used otherwise.
 */
export function applyRope(
  x: tf.Tensor4D,
  cos: tf.Tensor,
  sin: tf.Tensor,
  rot: { r: tf.Tensor2D; rT: tf.Tensor2D },
): tf.Tensor4D {
  const d = x.shape[3];
  // The permutation pays from a head size of 64 (0.21 against 0.36 ms on [4,064, 64]); at 16,
  // the shipped LM's, the 16 × 16 product is faster (0.07 against 0.14 ms on [8,128, 16]).
  const inHeap = d >= 64 && rotateHalfAvailable();
  const rotate = (t: tf.Tensor, transpose: boolean) =>
    inHeap
      ? rotateHalf(t, transpose)
      : tf.matMul(t.reshape([-1, d]) as tf.Tensor2D, transpose ? rot.rT : rot.r).reshape(t.shape);
  // The tables are saved: they belong to the forward's tidy, gone by the backward.
  const f = customOp(([xi], save) => {
    save([cos, sin]);
    return {
      value: tf.add(tf.mul(xi, cos), tf.mul(rotate(xi, false), sin)),
      gradFunc: (dy, [c, s]) => tf.add(rotate(tf.mul(dy, s), true), tf.mul(dy, c)),
    };
  });
  return f(x) as tf.Tensor4D;
}

/**
 * SwiGLU: gate·σ(gate)·up for gate, up [N, F]. Hand-written gradient with autodiff's kernels
 * and sums (with s = σ(gate), p = gate·s, dp = dy·up): dup = dy·p, dgate = dp·s +
 * (dp·gate)·(s·(1 − s)); bit for bit autodiff's, without its casts.
 */
export function swiGlu(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  const f = customOp(([g, u], save) => {
    const s = tf.sigmoid(g);
    const p = tf.mul(g, s);
    save([g, u, s, p]);
    return {
      value: tf.mul(p, u),
      gradFunc: (dy, [gs, us, ss, ps]) => {
        const dp = tf.mul(dy, us);
        const du = tf.mul(dy, ps);
        const dgS = tf.mul(dp, ss);
        const ds = tf.mul(dp, gs);
        return [tf.add(dgS, tf.mul(ds, tf.mul(ss, tf.sub(1, ss)))), du];
      },
    };
  });
  return f(gate, up) as tf.Tensor2D;
}

/** Token embedding lookup; trainable tables get the host scatter-add gradient of {@link selectRows}. */
function embedLookup(ids: tf.Tensor1D, table: tf.Tensor2D, trainable: boolean): tf.Tensor2D {
  return trainable ? selectRows(table, ids) : tf.gather(table, ids);
}

/** Per-layer key/value cache: k, v are [B, nkv, S, D]. */
export interface KVCache {
  k: (tf.Tensor4D | undefined)[];
  v: (tf.Tensor4D | undefined)[];
  /** Number of cached positions S. */
  length: number;
}

/**
 * Packed rows laid out in blocks (built by `packGroups` in `data/batch.ts`): positions [0, P) are
 * a prompt, then R blocks of L positions are responses that each see the prompt and themselves
 * only. The masks are the row's full attention mask cut into those blocks (0 allowed, −1e9
 * masked), so padding inside a block is handled as in the full mask.
 */
export interface AttentionBlocks {
  /** Prompt block length P. */
  prompt: number;
  /** Number of response blocks R. */
  responses: number;
  /** Response block length L (rows are P + R·L long). */
  length: number;
  /** Additive mask of prompt queries over prompt keys, [B, 1, P, P]. */
  promptBias: tf.Tensor4D;
  /** Additive mask of each response's queries over (prompt keys, its own keys), [B, 1, R, L, P + L]. */
  responseBias: tf.Tensor5D;
}

/** Options of {@link LlamaModel.forward}. */
export interface ForwardOptions extends LinearCallOptions {
  /**
   * 1 for real tokens, 0 for padding, [B, S] over past + new positions. Default: all ones.
   * Positions are counted from the first real token of each row (left padding works).
   */
  attentionMask?: tf.Tensor2D;
  /** Extra additive attention bias [B, 1, T, S] (e.g. for packed sequences); replaces the causal mask. */
  attentionBias?: tf.Tensor4D;
  /** Explicit positions [B, T] (int32); overrides the ones derived from attentionMask. */
  positions?: tf.Tensor2D;
  /**
   * Packed rows in blocks: attention computes only the blocks' scores (prompt × prompt, each
   * response × (prompt, itself)) instead of every row position against every other. Replaces
   * `attentionBias`; not used with `cache`.
   */
  blocks?: AttentionBlocks;
  /** KV cache to read and extend (generation). Caller disposes with {@link disposeCache}. */
  cache?: KVCache;
  /**
   * Compute logits only at these flattened positions (indices into B·T, int32), returned as
   * [R, Tr, V] with `selectShape` = [R, Tr]. Skips the LM head at every other position — the
   * prompt and padding, which no loss reads.
   */
  select?: { index: tf.Tensor1D; shape: [number, number] };
}

/**
 * Logits above this many values (B·T·V) are computed only where they are read (generation and
 * scoring take the last position of a prompt); below it the whole [B, T, V] is computed, as
 * always, so small models keep their exact numbers.
 */
export const FULL_LOGITS_LIMIT = 1 << 24;

/** `select` of {@link LlamaModel.forward} for the last position of each of `bsz` rows of `t`. */
export function lastPositions(bsz: number, t: number): ForwardOptions["select"] {
  const index = tf.tensor1d(Array.from({ length: bsz }, (_, b) => b * t + t - 1), "int32");
  return { index, shape: [bsz, 1] };
}

/** Rows `index` of x [N, H] → [M, H]; gradient by a scatter-add on the host (wasm has none for gather). */
export function selectRows(x: tf.Tensor2D, index: tf.Tensor1D): tf.Tensor2D {
  const f = customOp(([xi], save) => {
    save([index]);
    return {
      value: tf.gather(xi, index),
      gradFunc: (dy, saved) => {
        const [n, h] = x.shape;
        const g = new Float32Array(n * h);
        const dyv = dy.dataSync() as Float32Array;
        const idv = saved[0].dataSync();
        for (let m = 0; m < idv.length; m++) {
          const row = idv[m] * h;
          for (let j = 0; j < h; j++) g[row + j] += dyv[m * h + j];
        }
        return tf.tensor2d(g, [n, h]);
      },
    };
  });
  return f(x) as tf.Tensor2D;
}

/** Throws InputError unless `blocks` describes rows of `t` positions in a batch of `bsz`. */
function checkBlocks(blocks: AttentionBlocks, bsz: number, t: number): void {
  const { prompt: p, responses: r, length: l } = blocks;
  const want = (name: string, got: readonly number[], shape: number[]) => {
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new InputError(`blocks.${name}`, `expected shape [${shape}], got [${got}]`);
    }
  };
  if (p + r * l !== t) {
    throw new InputError(
      "blocks",
      `prompt ${p} + ${r} responses × ${l} = ${p + r * l} positions, but rows have ${t}`,
    );
  }
  want("promptBias", blocks.promptBias.shape, [bsz, 1, p, p]);
  want("responseBias", blocks.responseBias.shape, [bsz, 1, r, l, p + l]);
}

/**
 * Attention over packed rows laid out in blocks (see {@link AttentionBlocks}), with tfjs's own
 * kernels: the prompt's queries against the prompt's keys ([P, P] per head), and each
 * response's queries against the prompt's keys and its own ([L, P + L] per head and response),
 * one batched product each. The same values as the full masked attention over the row
 * (masked scores get exactly zero weight either way) with P² + R·L·(P + L) scores instead of
 * (P + R·L)². q [B, nh, T, D] (already scaled by 1/√D), k/v [B, nkv, T, D] → [B, nh, T, D].
 */
export function blockAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  blocks: AttentionBlocks,
): tf.Tensor4D {
  const [bsz, nh, t, d] = q.shape;
  const nkv = k.shape[1];
  const rep = nh / nkv;
  const { prompt: p, responses: r, length: l } = blocks;
  // Per head a row is P prompt positions, then R runs of L: split along the flattened time axis.
  const [qp, qr] = tf.split(q.reshape([bsz * nh, t * d]), [p * d, r * l * d], 1);
  // Keys and values: the prompt's in front of each response's own, [B, nkv, R, P + L, D], by
  // one split and one concatenation (the prompt's gradient is summed over the R copies).
  const withPrompt = (x: tf.Tensor4D) => {
    const parts = tf.split(x.reshape([bsz * nkv, t * d]), [p * d, ...new Array(r).fill(l * d)], 1);
    const cat = tf.concat(parts.slice(1).flatMap((own) => [parts[0], own]), 1);
    return {
      prompt: parts[0].reshape([bsz, nkv, p, d]),
      all: cat.reshape([bsz, nkv, r, p + l, d]),
    };
  };
  const kb = withPrompt(k), vb = withPrompt(v);
  // Query heads sharing a kv head are stacked along the time axis (heads are kv-major).
  let sp = tf.matMul(qp.reshape([bsz, nkv, rep * p, d]), kb.prompt, false, true); // [B, nkv, rep·P, P]
  sp = rep === 1
    ? tf.add(sp, blocks.promptBias)
    : tf.add(sp.reshape([bsz, nkv, rep, p, p]), blocks.promptBias.reshape([bsz, 1, 1, p, p]));
  const ctxP = tf.matMul(tf.softmax(sp).reshape([bsz, nkv, rep * p, p]), vb.prompt); // [B, nkv, rep·P, D]
  const qr5 = rep === 1
    ? qr.reshape([bsz, nkv, r, l, d])
    : qr.reshape([bsz, nkv, rep, r, l, d]).transpose([0, 1, 3, 2, 4, 5]).reshape([
      bsz,
      nkv,
      r,
      rep * l,
      d,
    ]); // [B, nkv, R, rep·L, D]
  let sr = tf.matMul(qr5, kb.all, false, true); // [B, nkv, R, rep·L, P+L]
  sr = rep === 1 ? tf.add(sr, blocks.responseBias) : tf.add(
    sr.reshape([bsz, nkv, r, rep, l, p + l]),
    blocks.responseBias.reshape([bsz, 1, r, 1, l, p + l]),
  );
  let ctxR = tf.matMul(tf.softmax(sr).reshape([bsz, nkv, r, rep * l, p + l]), vb.all); // [B, nkv, R, rep·L, D]
  if (rep > 1) ctxR = ctxR.reshape([bsz, nkv, r, rep, l, d]).transpose([0, 1, 3, 2, 4, 5]);
  return tf.concat([ctxP.reshape([bsz * nh, p * d]), ctxR.reshape([bsz * nh, r * l * d])], 1)
    .reshape([bsz, nh, t, d]) as tf.Tensor4D;
}

/** One decoder block's parameters. */
export interface Block {
  inputNorm: tf.Tensor1D;
  q: LoraLinear;
  k: LoraLinear;
  v: LoraLinear;
  o: LoraLinear;
  qNorm?: tf.Tensor1D;
  kNorm?: tf.Tensor1D;
  postNorm: tf.Tensor1D;
  gate: LoraLinear;
  up: LoraLinear;
  down: LoraLinear;
}

/** Free a KV cache. */
export function disposeCache(cache: KVCache): void {
  for (const t of [...cache.k, ...cache.v]) t?.dispose();
}

// ---------------------------------------------------------------- model

let nextModelId = 0;

/**
 * The name of a model variable without its per-instance scope (`m3/`): stable across
 * processes, used for checkpoints.
 */
export function variableKey(v: tf.Variable): string {
  return v.name.replace(/^m\d+\//, "");
}

/** A Llama-style causal LM. Weights are owned by the instance; call {@link dispose}. */
export class LlamaModel {
  readonly config: LlamaConfig;
  embed: tf.Tensor2D;
  layers: Block[];
  norm: tf.Tensor1D;
  /** LM head; for tied embeddings it holds a frozen copy of the embedding matrix. */
  lmHead: LoraLinear;
  private rope: { cos: tf.Tensor2D; sin: tf.Tensor2D };
  private rot: { r: tf.Tensor2D; rT: tf.Tensor2D };
  private fullTrainable = false;
  /** Prefix of this instance's tf variable names (see {@link variableKey}). */
  readonly scope = `m${nextModelId++}/`;

  private constructor(config: LlamaConfig, weights: Map<string, tf.Tensor>) {
    validateConfig(config);
    this.config = { ...config };
    const used = new Set<string>();
    const take = (name: string, shape: number[]): tf.Tensor => {
      const t = weights.get(name);
      used.add(name);
      if (!t) throw new RecalignError(`missing weight "${name}" (expected shape [${shape}])`);
      if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
        throw new RecalignError(`weight "${name}": expected shape [${shape}], got [${t.shape}]`);
      }
      return t;
    };
    const c = config;
    const d = headDim(c);
    const h = c.hidden_size;
    this.embed = tf.keep(take("model.embed_tokens.weight", [c.vocab_size, h]) as tf.Tensor2D);
    this.layers = [];
    for (let i = 0; i < c.num_hidden_layers; i++) {
      const p = `model.layers.${i}.`;
      const lin = (mod: string, outF: number, inF: number, bias = false) =>
        new LoraLinear(
          `${p}${mod}.weight`,
          take(`${p}${mod}.weight`, [outF, inF]) as tf.Tensor2D,
          bias ? take(`${p}${mod}.bias`, [outF]) as tf.Tensor1D : undefined,
          this.scope,
        );
      const qkvBias = Boolean(c.attention_bias);
      this.layers.push({
        inputNorm: tf.keep(take(`${p}input_layernorm.weight`, [h]) as tf.Tensor1D),
        q: lin("self_attn.q_proj", c.num_attention_heads * d, h, qkvBias),
        k: lin("self_attn.k_proj", c.num_key_value_heads * d, h, qkvBias),
        v: lin("self_attn.v_proj", c.num_key_value_heads * d, h, qkvBias),
        o: lin("self_attn.o_proj", h, c.num_attention_heads * d),
        qNorm: c.qk_norm
          ? tf.keep(take(`${p}self_attn.q_norm.weight`, [d]) as tf.Tensor1D)
          : undefined,
        kNorm: c.qk_norm
          ? tf.keep(take(`${p}self_attn.k_norm.weight`, [d]) as tf.Tensor1D)
          : undefined,
        postNorm: tf.keep(take(`${p}post_attention_layernorm.weight`, [h]) as tf.Tensor1D),
        gate: lin("mlp.gate_proj", c.intermediate_size, h),
        up: lin("mlp.up_proj", c.intermediate_size, h),
        down: lin("mlp.down_proj", h, c.intermediate_size),
      });
    }
    this.norm = tf.keep(take("model.norm.weight", [h]) as tf.Tensor1D);
    // A tied head holds its own copy, so merging a LoRA into it never touches the embedding.
    const head = c.tie_word_embeddings
      ? tf.clone(this.embed)
      : take("lm_head.weight", [c.vocab_size, h]) as tf.Tensor2D;
    this.lmHead = new LoraLinear("lm_head.weight", head, undefined, this.scope);
    this.rope = ropeTables(c);
    this.rot = rotateHalfMatrices(d);
    // Tensors the config does not use (e.g. rotary buffers in old checkpoints) are freed.
    for (const [name, t] of weights) if (!used.has(name)) t.dispose();
  }

  /** A model with random weights (normal(0, initializer_range), norms = 1), seeded. */
  static random(config: LlamaConfig, seed = 0): LlamaModel {
    validateConfig(config);
    const rng = new Rng(seed);
    const std = config.initializer_range ?? 0.02;
    const weights = new Map<string, tf.Tensor>();
    for (const [name, shape] of LlamaModel.weightShapes(config)) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (name.endsWith("norm.weight")) data.fill(1);
      else if (!name.endsWith(".bias")) {
        for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
      }
      weights.set(name, tf.tensor(data, shape));
    }
    return new LlamaModel(config, weights);
  }

  /**
   * A model from HF-named weights (HF layouts; float32). Takes ownership of the tensors.
   * Throws naming the first missing or mis-shaped tensor.
   */
  static fromWeights(config: LlamaConfig, weights: Map<string, tf.Tensor>): LlamaModel {
    return new LlamaModel(config, weights);
  }

  /** Every weight name and shape the config implies, in HF layout and order. */
  static weightShapes(c: LlamaConfig): [string, number[]][] {
    const d = headDim(c);
    const h = c.hidden_size;
    const out: [string, number[]][] = [["model.embed_tokens.weight", [c.vocab_size, h]]];
    for (let i = 0; i < c.num_hidden_layers; i++) {
      const p = `model.layers.${i}.`;
      out.push([`${p}input_layernorm.weight`, [h]]);
      out.push([`${p}self_attn.q_proj.weight`, [c.num_attention_heads * d, h]]);
      out.push([`${p}self_attn.k_proj.weight`, [c.num_key_value_heads * d, h]]);
      out.push([`${p}self_attn.v_proj.weight`, [c.num_key_value_heads * d, h]]);
      if (c.attention_bias) {
        out.push([`${p}self_attn.q_proj.bias`, [c.num_attention_heads * d]]);
        out.push([`${p}self_attn.k_proj.bias`, [c.num_key_value_heads * d]]);
        out.push([`${p}self_attn.v_proj.bias`, [c.num_key_value_heads * d]]);
      }
      out.push([`${p}self_attn.o_proj.weight`, [h, c.num_attention_heads * d]]);
      if (c.qk_norm) {
        out.push([`${p}self_attn.q_norm.weight`, [d]]);
        out.push([`${p}self_attn.k_norm.weight`, [d]]);
      }
      out.push([`${p}post_attention_layernorm.weight`, [h]]);
      out.push([`${p}mlp.gate_proj.weight`, [c.intermediate_size, h]]);
      out.push([`${p}mlp.up_proj.weight`, [c.intermediate_size, h]]);
      out.push([`${p}mlp.down_proj.weight`, [h, c.intermediate_size]]);
    }
    out.push(["model.norm.weight", [h]]);
    if (!c.tie_word_embeddings) out.push(["lm_head.weight", [c.vocab_size, h]]);
    return out;
  }

  /** All linear layers, keyed by HF weight name (without `.weight`). */
  linears(): Map<string, LoraLinear> {
    const m = new Map<string, LoraLinear>();
    this.layers.forEach((b, i) => {
      const p = `model.layers.${i}.`;
      m.set(`${p}self_attn.q_proj`, b.q);
      m.set(`${p}self_attn.k_proj`, b.k);
      m.set(`${p}self_attn.v_proj`, b.v);
      m.set(`${p}self_attn.o_proj`, b.o);
      m.set(`${p}mlp.gate_proj`, b.gate);
      m.set(`${p}mlp.up_proj`, b.up);
      m.set(`${p}mlp.down_proj`, b.down);
    });
    m.set("lm_head", this.lmHead);
    return m;
  }

  /**
   * Current weights by HF name, HF layout. Returns new tensors (with adapters merged only if
   * they are merged); the caller disposes them.
   */
  namedWeights(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    const linears = this.linears();
    for (const [name] of LlamaModel.weightShapes(this.config)) {
      if (name === "model.embed_tokens.weight") out.set(name, tf.clone(this.embed));
      else if (name === "model.norm.weight") out.set(name, tf.clone(this.norm));
      else if (name.endsWith(".bias")) {
        out.set(name, tf.clone(linears.get(name.slice(0, -".bias".length))!.bias!));
      } else if (name.endsWith("layernorm.weight") || name.endsWith("_norm.weight")) {
        const i = Number(name.split(".")[2]);
        const b = this.layers[i];
        const t = name.endsWith("input_layernorm.weight")
          ? b.inputNorm
          : name.endsWith("post_attention_layernorm.weight")
          ? b.postNorm
          : name.endsWith("q_norm.weight")
          ? b.qNorm!
          : b.kNorm!;
        out.set(name, tf.clone(t));
      } else {
        const lin = linears.get(name.slice(0, -".weight".length))!;
        const w = lin.weight();
        out.set(name, lin.baseTrainable ? w : tf.clone(w));
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- LoRA and training mode

  /** Attach a fresh LoRA adapter to every linear whose module name is in target_modules. */
  addLora(cfg: LoraConfig): void {
    validateLoraConfig(cfg);
    const rng = new Rng(cfg.seed);
    let n = 0;
    for (const [name, lin] of this.linears()) {
      const mod = name.split(".").at(-1)!;
      if (cfg.target_modules.includes(mod)) {
        lin.addAdapter(cfg, rng);
        n++;
      }
    }
    if (n === 0) {
      throw new ConfigError(
        "target_modules",
        `matched no module; got [${cfg.target_modules}], available: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj lm_head`,
      );
    }
  }

  /** True when at least one layer has an adapter. */
  hasLora(): boolean {
    return [...this.linears().values()].some((l) => l.adapter !== undefined);
  }

  /** Merge every adapter into its base weight and drop it (the merged model becomes the base). */
  mergeAndUnloadLora(): void {
    for (const lin of this.linears().values()) if (lin.adapter) lin.mergeAndUnload();
  }

  /** Merge (reversibly) every adapter. */
  mergeLora(): void {
    for (const lin of this.linears().values()) if (lin.adapter) lin.merge();
  }

  /** Undo {@link mergeLora}. */
  unmergeLora(): void {
    for (const lin of this.linears().values()) if (lin.adapter) lin.unmerge();
  }

  /** Drop every adapter without merging. */
  removeLora(): void {
    for (const lin of this.linears().values()) lin.removeAdapter();
  }

  /**
   * Make every weight trainable (full fine-tuning, used to pretrain a small base LM from
   * scratch). Not allowed with tied embeddings or while adapters are attached.
   */
  makeFullyTrainable(): void {
    if (this.fullTrainable) return;
    if (this.config.tie_word_embeddings) {
      throw new ConfigError("tie_word_embeddings", "full fine-tuning needs an untied LM head here");
    }
    if (this.hasLora()) {
      throw new RecalignError("remove or merge LoRA adapters before full fine-tuning");
    }
    for (const lin of this.linears().values()) lin.makeBaseTrainable();
    const toVar = (t: tf.Tensor1D | tf.Tensor2D, name: string) => {
      const v = tf.variable(t, true, this.scope + name);
      t.dispose();
      return v as unknown as typeof t;
    };
    this.embed = toVar(this.embed, "model.embed_tokens.weight") as tf.Tensor2D;
    this.norm = toVar(this.norm, "model.norm.weight") as tf.Tensor1D;
    this.layers.forEach((b, i) => {
      b.inputNorm = toVar(b.inputNorm, `model.layers.${i}.input_layernorm.weight`) as tf.Tensor1D;
      b.postNorm = toVar(
        b.postNorm,
        `model.layers.${i}.post_attention_layernorm.weight`,
      ) as tf.Tensor1D;
      if (b.qNorm) {
        b.qNorm = toVar(b.qNorm, `model.layers.${i}.self_attn.q_norm.weight`) as tf.Tensor1D;
      }
      if (b.kNorm) {
        b.kNorm = toVar(b.kNorm, `model.layers.${i}.self_attn.k_norm.weight`) as tf.Tensor1D;
      }
    });
    this.fullTrainable = true;
  }

  /** Freeze all weights again after {@link makeFullyTrainable}. */
  freeze(): void {
    if (!this.fullTrainable) return;
    for (const lin of this.linears().values()) lin.freezeBase();
    const toConst = <T extends tf.Tensor>(t: T): T => {
      const c = tf.keep(tf.clone(t));
      t.dispose();
      return c;
    };
    this.embed = toConst(this.embed);
    this.norm = toConst(this.norm);
    for (const b of this.layers) {
      b.inputNorm = toConst(b.inputNorm);
      b.postNorm = toConst(b.postNorm);
      if (b.qNorm) b.qNorm = toConst(b.qNorm);
      if (b.kNorm) b.kNorm = toConst(b.kNorm);
    }
    this.fullTrainable = false;
  }

  /** Variables the optimizer updates: LoRA A/B, or every weight after makeFullyTrainable. */
  trainableVariables(): tf.Variable[] {
    const vs: tf.Variable[] = [];
    if (this.fullTrainable) {
      vs.push(this.embed as unknown as tf.Variable);
      for (const b of this.layers) {
        for (const t of [b.inputNorm, b.postNorm, b.qNorm, b.kNorm]) {
          if (t) vs.push(t as unknown as tf.Variable);
        }
      }
      vs.push(this.norm as unknown as tf.Variable);
    }
    for (const lin of this.linears().values()) vs.push(...lin.trainableVariables());
    return vs;
  }

  /** Number of parameters: total and trainable. */
  parameterCount(): { total: number; trainable: number } {
    const total = LlamaModel.weightShapes(this.config).reduce(
      (a, [, s]) => a + s.reduce((x, y) => x * y, 1),
      0,
    );
    let lora = 0;
    for (const lin of this.linears().values()) {
      if (lin.adapter) lora += lin.adapter.aT.size + lin.adapter.bT.size;
    }
    const trainable = this.fullTrainable ? total : lora;
    return { total: total + (this.fullTrainable ? 0 : lora), trainable };
  }

  // ---------------------------------------------------------------- forward

  /**
   * Logits [B, T, V] for token ids [B, T] (int32). With `cache`, the ids are the new tokens
   * after `cache.length` cached positions and the cache is extended in place.
   */
  forward(ids: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor3D {
    const [bsz, t] = ids.shape;
    const c = this.config;
    const past = opts.cache?.length ?? 0;
    // Packed rows can be longer than any position they use: check the positions themselves.
    const span = opts.positions
      ? (opts.positions.dataSync() as Int32Array).reduce((a, b) => Math.max(a, b), 0) + 1
      : past + t;
    if (span > c.max_position_embeddings) {
      throw new InputError(
        "ids",
        `sequence of ${span} positions exceeds max_position_embeddings=${c.max_position_embeddings}`,
      );
    }
    const linOpts: LinearCallOptions = {
      adapters: opts.adapters,
      training: opts.training,
      rng: opts.rng,
    };
    const newCacheK: tf.Tensor4D[] = [];
    const newCacheV: tf.Tensor4D[] = [];
    const blocks = opts.cache ? undefined : opts.blocks;
    if (blocks) checkBlocks(blocks, bsz, t);
    const logits = tf.tidy(() => {
      const { bias, positions } = this.masksAndPositions(bsz, t, past, opts, !blocks);
      const pos = opts.positions ?? positions;
      // Rotary tables [B, T, heads, D], one row per head, so that RoPE's four products per
      // layer (and their gradients) multiply equal shapes, which wasm does several times faster
      // than a broadcast over heads; the same products. Above 2²⁰ values they stay [B, T, 1, D].
      // The row index (each position repeated per head) is built on the host: wasm's Tile is slow.
      const tables = (heads: number) => {
        if (bsz * t * heads * headDim(c) > 1 << 20) heads = 1;
        let index = pos.expandDims(2);
        if (heads > 1) {
          const at = pos.dataSync() as Int32Array;
          const rows = new Int32Array(at.length * heads);
          for (let i = 0; i < rows.length; i++) rows[i] = at[Math.floor(i / heads)];
          index = tf.tensor3d(rows, [bsz, t, heads], "int32");
        }
        return { cos: tf.gather(this.rope.cos, index), sin: tf.gather(this.rope.sin, index) };
      };
      const kTables = tables(c.num_key_value_heads);
      const qTables = c.num_attention_heads === c.num_key_value_heads
        ? kTables
        : tables(c.num_attention_heads);
      // The queries' tables carry the 1/√D of the scores (a [B, T, heads, D] product instead of
      // a [B, heads, T, S] one per layer; exact when D is a power of 4, as in the shipped LM).
      const scale = 1 / Math.sqrt(headDim(c));
      const rope = {
        cos: kTables.cos,
        sin: kTables.sin,
        cosQ: tf.mul(qTables.cos, scale),
        sinQ: tf.mul(qTables.sin, scale),
      };
      let x = embedLookup(ids.reshape([-1]) as tf.Tensor1D, this.embed, this.fullTrainable); // [N, H]
      this.layers.forEach((b, i) => {
        const h = rmsNorm(x, b.inputNorm, c.rms_norm_eps) as tf.Tensor2D;
        const { out, k, v } = this.attention(
          b,
          h,
          bsz,
          t,
          rope,
          bias,
          blocks,
          opts.cache,
          i,
          linOpts,
        );
        if (opts.cache) {
          newCacheK[i] = tf.keep(k!);
          newCacheV[i] = tf.keep(v!);
        }
        x = tf.add(x, out);
        const h2 = rmsNorm(x, b.postNorm, c.rms_norm_eps) as tf.Tensor2D;
        const gate = b.gate.apply(h2, linOpts);
        const up = b.up.apply(h2, linOpts);
        const act = swiGlu(gate, up);
        x = tf.add(x, b.down.apply(act, linOpts));
      });
      let hf = rmsNorm(x, this.norm, c.rms_norm_eps) as tf.Tensor2D; // [N, H]
      if (opts.select) {
        hf = selectRows(hf, opts.select.index);
        return this.lmHead.apply(hf, linOpts).reshape([
          ...opts.select.shape,
          c.vocab_size,
        ]) as tf.Tensor3D;
      }
      return this.lmHead.apply(hf, linOpts).reshape([bsz, t, c.vocab_size]) as tf.Tensor3D;
    });
    if (opts.cache) {
      disposeCache(opts.cache);
      opts.cache.k = newCacheK;
      opts.cache.v = newCacheV;
      opts.cache.length = past + t;
    }
    return logits;
  }

  /** Convenience: logits [B, T, V] for plain id arrays (rows must have equal length). */
  logits(ids: number[][], opts: Omit<ForwardOptions, "cache"> = {}): tf.Tensor3D {
    const len = ids[0]?.length ?? 0;
    ids.forEach((row, i) => {
      if (row.length !== len) {
        throw new InputError("ids", `row ${i} has length ${row.length}, expected ${len}`);
      }
    });
    const x = tf.tensor2d(ids, [ids.length, len], "int32");
    try {
      return this.forward(x, opts);
    } finally {
      x.dispose();
    }
  }

  /** Additive attention bias [B, 1, T, S] (when `withBias`) and positions [B, T] (int32). */
  private masksAndPositions(
    bsz: number,
    t: number,
    past: number,
    opts: ForwardOptions,
    withBias: boolean,
  ): { bias?: tf.Tensor4D; positions: tf.Tensor2D } {
    const s = past + t;
    let keyMask: Int32Array | Float32Array | Uint8Array;
    if (opts.attentionMask) {
      if (opts.attentionMask.shape[0] !== bsz || opts.attentionMask.shape[1] !== s) {
        throw new InputError(
          "attentionMask",
          `expected shape [${bsz}, ${s}] (batch, past + new positions), got [${opts.attentionMask.shape}]`,
        );
      }
      keyMask = opts.attentionMask.dataSync() as Int32Array;
    } else keyMask = new Uint8Array(bsz * s).fill(1);
    const positions = new Int32Array(bsz * t);
    for (let b = 0; b < bsz; b++) {
      let count = 0;
      for (let j = 0; j < s; j++) {
        if (keyMask[b * s + j]) count++;
        if (j >= past) positions[b * t + (j - past)] = Math.max(count - 1, 0);
      }
    }
    let bias: tf.Tensor4D | undefined;
    if (opts.attentionBias) bias = opts.attentionBias;
    else if (withBias) {
      const data = new Float32Array(bsz * t * s);
      for (let b = 0; b < bsz; b++) {
        for (let i = 0; i < t; i++) {
          for (let j = 0; j < s; j++) {
            if (j > past + i || !keyMask[b * s + j]) data[(b * t + i) * s + j] = -1e9;
          }
        }
      }
      bias = tf.tensor4d(data, [bsz, 1, t, s]);
    }
    return { bias, positions: tf.tensor2d(positions, [bsz, t], "int32") };
  }

  /** Causal grouped-query attention of block b on h [N, H] → out [N, H], new k/v [B, nkv, S, D]. */
  private attention(
    b: Block,
    h: tf.Tensor2D,
    bsz: number,
    t: number,
    rope: { cos: tf.Tensor; sin: tf.Tensor; cosQ: tf.Tensor; sinQ: tf.Tensor },
    bias: tf.Tensor4D | undefined,
    blocks: AttentionBlocks | undefined,
    cache: KVCache | undefined,
    layer: number,
    linOpts: LinearCallOptions,
  ): { out: tf.Tensor2D; k?: tf.Tensor4D; v?: tf.Tensor4D } {
    const c = this.config;
    const d = headDim(c);
    const nh = c.num_attention_heads;
    const nkv = c.num_key_value_heads;
    let q = b.q.apply(h, linOpts).reshape([bsz, t, nh, d]) as tf.Tensor4D;
    let k = b.k.apply(h, linOpts).reshape([bsz, t, nkv, d]) as tf.Tensor4D;
    let v = b.v.apply(h, linOpts).reshape([bsz, t, nkv, d]) as tf.Tensor4D;
    if (b.qNorm && b.kNorm) {
      q = rmsNorm(q, b.qNorm, c.rms_norm_eps) as tf.Tensor4D;
      k = rmsNorm(k, b.kNorm, c.rms_norm_eps) as tf.Tensor4D;
    }
    q = applyRope(q, rope.cosQ, rope.sinQ, this.rot).transpose([0, 2, 1, 3]); // [B, nh, T, D], ×1/√D
    k = applyRope(k, rope.cos, rope.sin, this.rot).transpose([0, 2, 1, 3]); // [B, nkv, T, D]
    v = v.transpose([0, 2, 1, 3]);
    if (blocks) {
      const ctx = blockAttention(q, k, v, blocks).transpose([0, 2, 1, 3])
        .reshape([bsz * t, nh * d]) as tf.Tensor2D;
      return { out: b.o.apply(ctx, linOpts) };
    }
    const pastK = cache?.k[layer];
    const pastV = cache?.v[layer];
    if (pastK && pastV) {
      k = tf.concat([pastK, k], 2);
      v = tf.concat([pastV, v], 2);
    }
    // Grouped-query attention without copying k/v: query heads sharing a kv head are stacked
    // along the time axis, [B, nh, T, D] → [B, nkv, rep·T, D] (heads are ordered kv-major).
    const rep = nh / nkv;
    const qg = rep === 1 ? q : q.reshape([bsz, nkv, rep * t, d]);
    const biasG = rep === 1 ? bias! : tf.tile(bias!, [1, 1, rep, 1]);
    const scores = tf.add(tf.matMul(qg, k, false, true), biasG); // [B, nkv, rep·T, S]
    const probs = tf.softmax(scores);
    const ctx = tf.matMul(probs, v).reshape([bsz, nh, t, d]).transpose([0, 2, 1, 3])
      .reshape([bsz * t, nh * d]) as tf.Tensor2D;
    return { out: b.o.apply(ctx, linOpts), k, v };
  }

  // ---------------------------------------------------------------- generation

  /**
   * Greedy decoding with a KV cache. Prompts of different lengths are left-padded.
   * Returns the new tokens of each row, stopping at (and excluding) `eosId`.
   */
  generate(
    prompts: number[][],
    opts: { maxNewTokens: number; eosId?: number; padId?: number; adapters?: boolean },
  ): number[][] {
    if (prompts.length === 0) return [];
    if (prompts.some((p) => p.length === 0)) {
      throw new InputError("prompts", "every prompt needs at least one token");
    }
    const bsz = prompts.length;
    const maxLen = Math.max(...prompts.map((p) => p.length));
    const pad = opts.padId ?? 0;
    const ids: number[][] = prompts.map((p) => [...new Array(maxLen - p.length).fill(pad), ...p]);
    const mask: number[][] = prompts.map((
      p,
    ) => [...new Array(maxLen - p.length).fill(0), ...p.map(() => 1)]);
    const cache: KVCache = { k: [], v: [], length: 0 };
    const out: number[][] = prompts.map(() => []);
    const done = new Array(bsz).fill(false);
    let next = ids;
    try {
      for (let step = 0; step < opts.maxNewTokens; step++) {
        const tokens = tf.tidy(() => {
          const x = tf.tensor2d(next, [bsz, next[0].length], "int32");
          const m = tf.tensor2d(mask, [bsz, mask[0].length], "int32");
          const t = next[0].length;
          // A large vocabulary (151k for Qwen): the LM head only at each row's last position.
          const select = bsz * t * this.config.vocab_size > FULL_LOGITS_LIMIT
            ? lastPositions(bsz, t)
            : undefined;
          const logits = this.forward(x, {
            cache,
            attentionMask: m,
            adapters: opts.adapters,
            select,
          });
          const last = logits.slice([0, logits.shape[1] - 1, 0], [-1, 1, -1]).reshape([bsz, -1]);
          return tf.argMax(last, 1);
        });
        const chosen = Array.from(tokens.dataSync());
        tokens.dispose();
        chosen.forEach((tok, b) => {
          if (done[b]) return;
          if (opts.eosId !== undefined && tok === opts.eosId) done[b] = true;
          else out[b].push(tok);
        });
        if (done.every(Boolean)) break;
        next = chosen.map((tok) => [tok]);
        mask.forEach((row) => row.push(1));
      }
    } finally {
      disposeCache(cache);
    }
    return out;
  }

  /** Free every tensor the model holds. */
  dispose(): void {
    for (const lin of this.linears().values()) lin.dispose();
    this.embed.dispose();
    this.norm.dispose();
    for (const b of this.layers) {
      for (const t of [b.inputNorm, b.postNorm, b.qNorm, b.kNorm]) t?.dispose();
    }
    this.rope.cos.dispose();
    this.rope.sin.dispose();
    this.rot.r.dispose();
    this.rot.rT.dispose();
  }
}
