/**
 * Adapters name their base: a LoRA stage trained from the shipped base LM writes
 * `base_model_name_or_path: "models/base-lm"`, and following that name the way PEFT's
 * `AutoPeftModelForCausalLM` does (load the base named in adapter_config.json, then attach the
 * adapter) gives back the trained model's logits. A `--model` name wins; no base LM gives null.
 */
import assert from "node:assert/strict";
import { loadAdapter, readAdapterConfig } from "../../src/adapter.ts";
import { initBackend, tf } from "../../src/backend.ts";
import { loadPretrained } from "../../src/checkpoint.ts";
import { disposeSnapshot, loraConfig, setBaseLm, snapshot } from "../../src/experiments/common.ts";
import { runStage, setRunFolders, type StageSpec } from "../../src/experiments/runs.ts";
import type { TrainExample } from "../../src/train.ts";

await initBackend("wasm", { quiet: true });

const BASE = "models/base-lm";

Deno.test("a LoRA stage from the shipped base LM names it in adapter_config.json, and PEFT's path (load that base, attach) rebuilds the model", async () => {
  const dir = await Deno.makeTempDir({ prefix: "recalign-adapter-base-" });
  const base = await loadPretrained(BASE, { onUnknownTensors: () => {} });
  const from = snapshot(base.model);
  base.model.dispose();
  const examples: TrainExample[] = Array.from({ length: 8 }, (_, a) => ({
    prompt: [1, 10 + a, 20],
    chosen: [30 + (a % 4), 2],
    rejected: [[40 + (a % 3), 2]],
  }));
  const spec = (name: string, baseModelName?: string): StageSpec => ({
    name,
    seed: 0,
    config: base.config,
    from,
    mode: "lora",
    lora: loraConfig(1),
    examples,
    train: { stage: "dpo", steps: 2, batchSize: 4, lr: 1e-2, numNegatives: 1, beta: 1, seed: 1 },
    label: name,
    progress: false,
    baseModelName,
  });
  setRunFolders({ runs: dir, reuse: false });
  try {
    setBaseLm({ snap: from, hash: "test", folder: BASE });
    const r = await runStage(spec("dpo"));
    const adapterDir = r.dir!;
    const { baseModelNameOrPath } = await readAdapterConfig(adapterDir);
    assert.equal(baseModelNameOrPath, BASE);
    // AutoPeftModelForCausalLM: base from config.base_model_name_or_path, then the adapter.
    const again = await loadPretrained(baseModelNameOrPath!, { onUnknownTensors: () => {} });
    await loadAdapter(again.model, adapterDir);
    const ids = [[1, 12, 20, 31]];
    const want = tf.tidy(() => r.model!.logits(ids).arraySync());
    const got = tf.tidy(() => again.model.logits(ids).arraySync());
    assert.deepEqual(got, want);
    // Training moved the adapter off zero, so the comparison is not base vs base.
    const plain = await loadPretrained(BASE, { onUnknownTensors: () => {} });
    assert.notDeepEqual(tf.tidy(() => plain.model.logits(ids).arraySync()), want);
    for (const m of [r.model!, again.model, plain.model]) m.dispose();

    // A --model name (hub id or folder) is written as given.
    const q = await runStage(spec("named", "Qwen/Qwen3-0.6B"));
    assert.equal((await readAdapterConfig(q.dir!)).baseModelNameOrPath, "Qwen/Qwen3-0.6B");
    q.model!.dispose();

    // No base on disk (stage 0 from a random init): null, as PEFT writes for an unnamed base.
    setBaseLm(undefined);
    const n = await runStage(spec("none"));
    const cfg = JSON.parse(await Deno.readTextFile(`${n.dir}/adapter_config.json`));
    assert.equal(cfg.base_model_name_or_path, null);
    n.model!.dispose();
  } finally {
    setBaseLm(undefined);
    setRunFolders({ runs: undefined });
    disposeSnapshot(from);
    await Deno.remove(dir, { recursive: true });
  }
});
