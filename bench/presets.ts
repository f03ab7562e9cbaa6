/**
 * Named configurations of `deno task bench` (and `bench/profile.ts`).
 *
 * - `shipped`: the kit's own base LM (`models/base-lm`: vocab 274, hidden 64, 2 layers, 4 heads,
 *   ffn 192), the model every experiment trains, at 128 tokens × 16 sequences.
 * - `bench`: the larger issue-8 config (vocab 4096, hidden 256, 4 layers, ffn 688), 128 × 8.
 *
 * Both use LoRA r 8, α 16 on the seven projections, and S-DPO with 3 rejected responses.
 *
 * @module
 */

/** One bench configuration (the flags of `bench.ts`, PyTorch's names). */
export interface BenchConfig {
  vocab: number;
  dim: number;
  layers: number;
  heads: number;
  ffn: number;
  seq: number;
  batch: number;
  rank: number;
  alpha: number;
  /** Rejected responses per prompt (`--n-rejected`). */
  k: number;
  /** Sequences per micro-batch (`--micro-batch`). */
  micro: number;
}

/** The presets by name. */
export const BENCH_PRESETS: Record<string, BenchConfig> = {
  shipped: {
    vocab: 274,
    dim: 64,
    layers: 2,
    heads: 4,
    ffn: 192,
    seq: 128,
    batch: 16,
    rank: 8,
    alpha: 16,
    k: 3,
    micro: 16,
  },
  bench: {
    vocab: 4096,
    dim: 256,
    layers: 4,
    heads: 4,
    ffn: 688,
    seq: 128,
    batch: 8,
    rank: 8,
    alpha: 16,
    k: 3,
    micro: 16,
  },
};
