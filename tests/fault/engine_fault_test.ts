/**
 * A worker engine that fails its jobs (`RECALIGN_ENGINE_FAULT=job`) costs time, not results:
 * its share of a training step (here) or of scoring (`engine_fault_score_test.ts`) is computed on
 * the main thread, the failure is reported in one line, and the numbers equal one engine's. The
 * first failure retires the engine for the module, hence one module per case.
 */
import assert from "node:assert/strict";
import { initBackend } from "../../src/backend.ts";
import { LlamaModel, PRESETS } from "../../src/model.ts";
import { DEFAULT_LORA_CONFIG } from "../../src/lora.ts";
import { engineJobs } from "../../src/engines.ts";
import { scorePairs, train } from "../../src/train.ts";
import { snapshot, toyExamples } from "../_toy.ts";

await initBackend("wasm", { quiet: true });

const CFG = { ...PRESETS["llama-nano"], vocab_size: 48 };
const LORA = { ...DEFAULT_LORA_CONFIG, r: 4, lora_alpha: 8, lora_dropout: 0, seed: 1 };

async function run(engines: "1" | "2") {
  Deno.env.set("RECALIGN_ENGINES", engines);
  const model = LlamaModel.random(CFG, 3);
  model.addLora(LORA);
  // Training first: the first failed job marks the engine failed, and later work stays here.
  await train(model, toyExamples(), {
    stage: "sdpo",
    numNegatives: 3,
    beta: 1,
    // Live: a cached reference would be scored first, and that job would be the one to fail.
    reference: "live",
    steps: 3,
    batchSize: 8,
    microBatchSize: 8,
    lr: 1e-2,
    logEvery: 1,
  }, { progress: false });
  const pairs = toyExamples().map((e) => ({ prompt: e.prompt, response: e.chosen }));
  const out = { weights: snapshot(model), after: scorePairs(model, pairs, { microBatchSize: 4 }) };
  model.dispose();
  return out;
}

Deno.test({
  name: "a worker engine failing a training step: its share is computed here, same numbers",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const was = Deno.env.get("RECALIGN_ENGINES");
    const errors: string[] = [];
    const error = console.error;
    console.error = (...a: unknown[]) => errors.push(a.join(" "));
    try {
      const one = await run("1");
      Deno.env.set("RECALIGN_ENGINE_FAULT", "job");
      const jobs = engineJobs();
      const two = await run("2");
      assert.ok(engineJobs() > jobs, "a job was posted to the worker");
      assert.ok(
        errors.some((l) =>
          /injected fault/.test(l) && /computing its share on this thread/.test(l)
        ),
        errors.join("\n"),
      );
      assert.deepEqual(two, one);
    } finally {
      console.error = error;
      Deno.env.delete("RECALIGN_ENGINE_FAULT");
      if (was === undefined) Deno.env.delete("RECALIGN_ENGINES");
      else Deno.env.set("RECALIGN_ENGINES", was);
    }
  },
});
