/**
 * Test helpers: an independent float64 plain-loop Llama / Qwen2 / Qwen3 forward pass, and
 * writers of tiny random Hugging Face checkpoints.
 *
 * `naiveForward` follows HF `modeling_llama.py` / `modeling_qwen2.py` / `modeling_qwen3.py`
 * directly: q/k/v bias (attention_bias), per-head q/k RMSNorm before RoPE (qk_norm), explicit
 * head_dim, grouped-query attention, SwiGLU, tied or untied head.
 *
 * @module
 */
import { type LlamaConfig, LlamaModel } from "../src/model.ts";
import { Rng } from "../src/rng.ts";

type Mat = Float64Array; // row-major

/** Plain-loop float64 forward of one sequence from HF-named weights; logits [T·V] row-major. */
export function naiveForward(
  cfg: LlamaConfig,
  w: Map<string, ArrayLike<number>>,
  ids: number[],
): Float64Array {
  const h = cfg.hidden_size,
    t = ids.length,
    nh = cfg.num_attention_heads,
    nkv = cfg.num_key_value_heads;
  const d = cfg.head_dim ?? h / nh, ff = cfg.intermediate_size, v = cfg.vocab_size;
  const get = (name: string): Mat => {
    const x = w.get(name);
    if (!x) throw new Error(`naiveForward: missing weight ${name}`);
    return Float64Array.from(x);
  };
  const lin = (x: Mat, rows: number, inF: number, W: Mat, outF: number, b?: Mat): Mat => {
    const y = new Float64Array(rows * outF);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < outF; o++) {
        let s = b ? b[o] : 0;
        for (let i = 0; i < inF; i++) s += x[r * inF + i] * W[o * inF + i];
        y[r * outF + o] = s;
      }
    }
    return y;
  };
  /** RMSNorm over consecutive groups of `width` values. */
  const norm = (x: Mat, width: number, g: Mat): Mat => {
    const y = new Float64Array(x.length);
    for (let r = 0; r < x.length / width; r++) {
      let ms = 0;
      for (let i = 0; i < width; i++) ms += x[r * width + i] ** 2;
      const inv = 1 / Math.sqrt(ms / width + cfg.rms_norm_eps);
      for (let i = 0; i < width; i++) y[r * width + i] = x[r * width + i] * inv * g[i];
    }
    return y;
  };
  const rope = (x: Mat, heads: number) => {
    for (let p = 0; p < t; p++) {
      for (let hh = 0; hh < heads; hh++) {
        const base = p * heads * d + hh * d;
        const old = x.slice(base, base + d);
        for (let i = 0; i < d / 2; i++) {
          const a = p / Math.pow(cfg.rope_theta, (2 * i) / d);
          x[base + i] = old[i] * Math.cos(a) - old[i + d / 2] * Math.sin(a);
          x[base + i + d / 2] = old[i + d / 2] * Math.cos(a) + old[i] * Math.sin(a);
        }
      }
    }
  };
  let x = new Float64Array(t * h);
  const emb = get("model.embed_tokens.weight");
  ids.forEach((id, p) => x.set(emb.subarray(id * h, id * h + h), p * h));
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (m: string) => cfg.attention_bias ? get(`${p}self_attn.${m}.bias`) : undefined;
    const hn = norm(x, h, get(`${p}input_layernorm.weight`));
    let q = lin(hn, t, h, get(`${p}self_attn.q_proj.weight`), nh * d, bias("q_proj"));
    let k = lin(hn, t, h, get(`${p}self_attn.k_proj.weight`), nkv * d, bias("k_proj"));
    const vv = lin(hn, t, h, get(`${p}self_attn.v_proj.weight`), nkv * d, bias("v_proj"));
    if (cfg.qk_norm) {
      q = norm(q, d, get(`${p}self_attn.q_norm.weight`));
      k = norm(k, d, get(`${p}self_attn.k_norm.weight`));
    }
    rope(q, nh);
    rope(k, nkv);
    const ctx = new Float64Array(t * nh * d);
    for (let hh = 0; hh < nh; hh++) {
      const kh = Math.floor(hh / (nh / nkv));
      for (let i = 0; i < t; i++) {
        const sc = new Float64Array(i + 1);
        let mx = -Infinity;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < d; e++) s += q[i * nh * d + hh * d + e] * k[j * nkv * d + kh * d + e];
          sc[j] = s / Math.sqrt(d);
          mx = Math.max(mx, sc[j]);
        }
        let z = 0;
        for (let j = 0; j <= i; j++) z += sc[j] = Math.exp(sc[j] - mx);
        for (let j = 0; j <= i; j++) {
          for (let e = 0; e < d; e++) {
            ctx[i * nh * d + hh * d + e] += (sc[j] / z) * vv[j * nkv * d + kh * d + e];
          }
        }
      }
    }
    const o = lin(ctx, t, nh * d, get(`${p}self_attn.o_proj.weight`), h);
    x = x.map((xv, i) => xv + o[i]);
    const h2 = norm(x, h, get(`${p}post_attention_layernorm.weight`));
    const g = lin(h2, t, h, get(`${p}mlp.gate_proj.weight`), ff);
    const u = lin(h2, t, h, get(`${p}mlp.up_proj.weight`), ff);
    const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
    const dn = lin(act, t, ff, get(`${p}mlp.down_proj.weight`), h);
    x = x.map((xv, i) => xv + dn[i]);
  }
  const hf = norm(x, h, get("model.norm.weight"));
  return lin(
    hf,
    t,
    h,
    get(cfg.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight"),
    v,
  );
}

/**
 * Seeded random weights for every tensor a config implies (HF names and shapes). Matrices
 * ~ N(0, std); norms 1 + N(0, 0.1); biases N(0, 0.1) — so that norms and biases matter.
 */
export function randomWeights(
  cfg: LlamaConfig,
  seed: number,
  std = 0.2,
): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of LlamaModel.weightShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      data[i] = name.endsWith("norm.weight")
        ? 1 + 0.1 * rng.normal()
        : name.endsWith(".bias")
        ? 0.1 * rng.normal()
        : std * rng.normal();
    }
    out.set(name, data);
  }
  return out;
}

/** Largest |a − b| over two equal-length arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} ≠ ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
