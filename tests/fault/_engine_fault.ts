/**
 * A worker engine that fails its jobs (`RECALIGN_ENGINE_FAULT=job`) costs time, not results:
 * its share is computed on the main thread, the failure is reported in one line, and the numbers
 * equal one engine's. The first failure retires the engine for the test module, so each case
 * (`engine_fault_test.ts`: a training step; `engine_fault_score_test.ts`: scoring) is a module.
 */
import assert from "node:assert/strict";
import { initBackend } from "../../src/backend.ts";
import { LlamaModel, PRESETS } from "../../src/model.ts";
import { DEFAULT_LORA_CONFIG } from "../../src/lora.ts";
import { engineJobs } from "../../src/engines.ts";

const CFG = { ...PRESETS["llama-nano"], vocab_size: 48 };
const LORA = { ...DEFAULT_LORA_CONFIG, r: 4, lora_alpha: 8, lora_dropout: 0, seed: 1 };

/**
 * Registers a test that runs `work` on a fresh LoRA model with one engine, then with two and a
 * failing worker, and compares what it returns.
 */
export function engineFaultTest(name: string, work: (model: LlamaModel) => Promise<unknown>) {
  async function run(engines: "1" | "2") {
    Deno.env.set("RECALIGN_ENGINES", engines);
    const model = LlamaModel.random(CFG, 3);
    model.addLora(LORA);
    const out = await work(model);
    model.dispose();
    return out;
  }
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await initBackend("wasm", { quiet: true });
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
}
