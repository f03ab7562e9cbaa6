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
import { LlamaModel } from "../src/model.ts";
import type { TrainConfig, TrainExample } from "../src/train.ts";
import { Rng } from "../src/rng.ts";

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
  /**
   * Sequences per micro-batch (`--micro-batch`; in sdpo_step it counts responses). A step is
   * cut into micro-batches so that the two engines of `src/engines.ts` can compute them side by
   * side: the presets cut fwd_logp and sft_step in two. PyTorch computes the whole batch at once.
   */
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
    micro: 8,
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
    micro: 4,
  },
};

/** The preset `name` of a bench script's `--preset`; an unknown name exits 2 with one line. */
export function presetOrExit(tool: string, name: string): BenchConfig {
  const cfg = BENCH_PRESETS[name];
  if (!cfg) {
    console.error(
      `${tool}: unknown --preset "${name}"; allowed: ${Object.keys(BENCH_PRESETS).join(", ")}`,
    );
    Deno.exit(2);
  }
  return cfg;
}

/** The bench's model: a random Llama of `cfg`'s size with LoRA on the seven projections. */
export function benchModel(cfg: BenchConfig): LlamaModel {
  const model = LlamaModel.random({
    vocab_size: cfg.vocab,
    hidden_size: cfg.dim,
    intermediate_size: cfg.ffn,
    num_hidden_layers: cfg.layers,
    num_attention_heads: cfg.heads,
    num_key_value_heads: cfg.heads,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    max_position_embeddings: Math.max(cfg.seq, 128),
  }, 0);
  model.addLora({
    r: cfg.rank,
    lora_alpha: cfg.alpha,
    lora_dropout: 0,
    target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    seed: 0,
  });
  return model;
}

/** The bench's examples: `cfg.batch` seeded random prompts, each with a chosen and K rejected. */
export function benchExamples(cfg: BenchConfig): TrainExample[] {
  const rng = new Rng(0);
  const promptLen = Math.floor(cfg.seq / 2);
  const toks = (n: number) => Array.from({ length: n }, () => rng.int(cfg.vocab));
  return Array.from({ length: cfg.batch }, () => ({
    prompt: toks(promptLen),
    chosen: toks(cfg.seq - promptLen),
    rejected: Array.from({ length: cfg.k }, () => toks(cfg.seq - promptLen)),
  }));
}

/** The train() config of a timed workload (`sft_step` or `sdpo_step`) for `steps` steps. */
export function benchTrainConfig(
  cfg: BenchConfig,
  workload: string,
  steps: number,
): Partial<TrainConfig> & Pick<TrainConfig, "stage"> {
  return {
    stage: workload === "sft_step" ? "sft" : "sdpo",
    steps,
    batchSize: cfg.batch,
    microBatchSize: cfg.micro,
    numNegatives: cfg.k,
    beta: 1,
    lr: 1e-3,
    warmupSteps: 0,
    logEvery: 1,
    reference: "live",
  };
}
