import assert from "node:assert/strict";
import { initBackend } from "../src/backend.ts";
import { LlamaModel, PRESETS } from "../src/model.ts";
import { DEFAULT_LORA_CONFIG } from "../src/lora.ts";
import { type EvalHook, train } from "../src/train.ts";
import { ConfigError } from "../src/errors.ts";
import { snapshot, toyExamples } from "./_toy.ts";

await initBackend("wasm", { quiet: true });

const CFG = { ...PRESETS["llama-nano"], vocab_size: 48 };
const LORA = { ...DEFAULT_LORA_CONFIG, r: 4, lora_alpha: 8, lora_dropout: 0.1, seed: 1 };

const CONFIG = {
  stage: "sdpo" as const,
  steps: 6,
  batchSize: 4,
  microBatchSize: 4,
  numNegatives: 2,
  beta: 1,
  lr: 1e-2,
  logEvery: 1,
  checkpointEvery: 2,
};

/** A scripted validation metric (lowest at step 4) that also records the weights it saw. */
function scripted(seen: Map<number, Float32Array[]>, select?: string): EvalHook {
  const value: Record<number, number> = { 2: 0.5, 4: 0.2, 6: 0.9 };
  return {
    every: 2,
    select,
    fn: (step, model) => {
      seen.set(step, snapshot(model));
      return { loss: value[step], other: step * 10 };
    },
  };
}

function fresh(): LlamaModel {
  const m = LlamaModel.random(CFG, 6);
  m.addLora(LORA);
  return m;
}

Deno.test("train() evaluate: rows every N steps, the lowest selected value's weights are kept", async () => {
  const seen = new Map<number, Float32Array[]>();
  const m = fresh();
  const r = await train(m, toyExamples(), CONFIG, {
    progress: false,
    evaluate: scripted(seen, "loss"),
  });
  assert.deepEqual(r.evals.map((e) => e.step), [2, 4, 6]);
  assert.deepEqual(r.evals.map((e) => e.eval_loss), [0.5, 0.2, 0.9]);
  assert.deepEqual(r.evals.map((e) => e.eval_other), [20, 40, 60]);
  assert.equal(r.bestStep, 4);
  // The model now holds the step-4 weights, which differ from the last step's.
  assert.deepEqual(snapshot(m), seen.get(4));
  assert.notDeepEqual(seen.get(4), seen.get(6));
  // The training log is untouched by evaluation rows.
  assert.equal(r.history.length, 6);
  assert.ok(r.history.every((h) => typeof h.loss === "number"));
  m.dispose();
});

Deno.test("train() evaluate without select keeps the last weights", async () => {
  const seen = new Map<number, Float32Array[]>();
  const m = fresh();
  const r = await train(m, toyExamples(), CONFIG, { progress: false, evaluate: scripted(seen) });
  assert.equal(r.bestStep, undefined);
  assert.deepEqual(snapshot(m), seen.get(6));
  m.dispose();
});

Deno.test("train() evaluate: a resumed run keeps the best weights of before the interruption", async () => {
  const dir = await Deno.makeTempDir();
  const a = fresh();
  const full = await train(a, toyExamples(), CONFIG, {
    outDir: `${dir}/a`,
    progress: false,
    evaluate: scripted(new Map(), "loss"),
  });
  const b = fresh();
  await train(b, toyExamples(), CONFIG, {
    outDir: `${dir}/b`,
    progress: false,
    stopAfterStep: 5,
    evaluate: scripted(new Map(), "loss"),
  });
  b.dispose();
  const c = fresh(); // a new process: resumes from the step-4 checkpoint
  const resumed = await train(c, toyExamples(), CONFIG, {
    outDir: `${dir}/b`,
    resume: true,
    progress: false,
    evaluate: scripted(new Map(), "loss"),
  });
  assert.equal(resumed.resumedFrom, 4);
  assert.equal(resumed.bestStep, 4);
  assert.deepEqual(snapshot(c), snapshot(a));
  assert.deepEqual(resumed.evals, full.evals);
  const lines = (await Deno.readTextFile(`${dir}/b/eval_metrics.jsonl`)).trim().split("\n");
  assert.deepEqual(lines.map((l) => JSON.parse(l).step), [2, 4, 6]);
  a.dispose();
  c.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train() evaluate: a bad interval or a non-finite selected value is refused", async () => {
  const m = fresh();
  await assert.rejects(
    () =>
      train(m, toyExamples(), CONFIG, { progress: false, evaluate: { every: 0, fn: () => ({}) } }),
    ConfigError,
  );
  await assert.rejects(
    () =>
      train(m, toyExamples(), CONFIG, {
        progress: false,
        evaluate: { every: 2, select: "loss", fn: () => ({ loss: NaN }) },
      }),
    /evaluate.select/,
  );
  m.dispose();
});
