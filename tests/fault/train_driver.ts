/**
 * A tiny, complete training job for the kill -9 suite (`kill_test.ts`, `deno task reliability`):
 * a random nano Llama with a LoRA adapter (dropout on, so the per-step RNG matters) is trained
 * with S-DPO by {@link train} with a checkpoint folder and `resume: true`, then the adapter is
 * saved in PEFT's layout and the logged metrics (without the wall-clock fields) as JSON.
 * Running the same command again after a kill continues from the newest good checkpoint; the
 * outputs must equal those of an uninterrupted run, bit for bit.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-env --allow-ffi tests/fault/train_driver.ts \
 *   --out /tmp/job [--seed 0] [--steps 24] [--every 3]
 * ```
 *
 * Writes `<out>/run/` (metrics.jsonl, checkpoints/), `<out>/adapter/`
 * (adapter_model.safetensors, adapter_config.json) and `<out>/final_metrics.json`, and prints
 * `done <steps> resumed-from <step>` on stdout.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { initBackend } from "../../src/backend.ts";
import { LlamaModel, PRESETS } from "../../src/model.ts";
import { DEFAULT_LORA_CONFIG, type LoraConfig } from "../../src/lora.ts";
import { train, type TrainExample } from "../../src/train.ts";
import { saveAdapter } from "../../src/adapter.ts";
import { removeStaleTempFiles, writeJsonAtomic } from "../../src/io.ts";

/** Metrics fields that measure wall-clock time (never equal across runs). */
export const WALL_CLOCK_METRICS = ["tokens_per_sec", "elapsed_sec"];

/** Toy task: prompt [BOS, 3, a] → [20 + a % 8, EOS]; the 7 wrong answers are the rejected pool. */
export function toyExamples(): TrainExample[] {
  const out: TrainExample[] = [];
  for (let a = 4; a < 28; a++) {
    const answer = 20 + (a % 8);
    const wrong = [20, 21, 22, 23, 24, 25, 26, 27].filter((x) => x !== answer);
    out.push({ prompt: [1, 3, a, 5, 6], chosen: [answer, 2], rejected: wrong.map((w) => [w, 2]) });
  }
  return out;
}

async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      out: { type: "string" },
      seed: { type: "string", default: "0" },
      steps: { type: "string", default: "24" },
      every: { type: "string", default: "3" },
    },
    strict: true,
  });
  if (!values.out) throw new Error("--out is required");
  const seed = Number(values.seed), steps = Number(values.steps), every = Number(values.every);
  // A run killed while saving the adapter or the metrics leaves their temp files: sweep them
  // (train() sweeps its own folder).
  await removeStaleTempFiles(values.out, { recursive: true });
  await initBackend("wasm", { quiet: true });
  const model = LlamaModel.random({ ...PRESETS["llama-nano"], vocab_size: 48 }, 100 + seed);
  const lora: LoraConfig = {
    ...DEFAULT_LORA_CONFIG,
    r: 4,
    lora_alpha: 8,
    lora_dropout: 0.1,
    seed: 200 + seed,
  };
  model.addLora(lora);
  const res = await train(model, toyExamples(), {
    stage: "sdpo",
    steps,
    batchSize: 6,
    microBatchSize: 9, // 3 examples × (1 + K) rows: two micro-batches per step
    numNegatives: 2,
    beta: 1,
    lr: 5e-3,
    warmupSteps: 2,
    logEvery: 1,
    checkpointEvery: every,
    keepCheckpoints: 2,
    seed,
  }, { outDir: `${values.out}/run`, resume: true, progress: false });
  await saveAdapter(model, `${values.out}/adapter`, lora);
  const history = res.history.map((row) => {
    const r: Record<string, number> = { ...row };
    for (const k of WALL_CLOCK_METRICS) delete r[k];
    return r;
  });
  await writeJsonAtomic(`${values.out}/final_metrics.json`, { seed, steps, history });
  model.dispose();
  console.log(`done ${res.step} resumed-from ${res.resumedFrom}`);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (e) {
    console.error(`train_driver: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
