import assert from "node:assert/strict";
import * as recalign from "../mod.ts";

await recalign.initBackend("wasm", { quiet: true });

Deno.test("mod.ts exposes the two-stage flow of the README (SFT LoRA → merge → S-DPO LoRA)", async () => {
  const { LlamaModel, PRESETS, train, sdpoLoss, tf } = recalign;
  const cfg = { ...PRESETS["llama-nano"], vocab_size: 40 };
  const model = LlamaModel.random(cfg, 0);
  const lora = {
    r: 4,
    lora_alpha: 8,
    lora_dropout: 0,
    target_modules: ["q_proj", "v_proj", "lm_head"],
    seed: 0,
  };
  const examples = [5, 6, 7, 8].map((a) => ({
    prompt: [1, a],
    chosen: [20 + a, 2],
    rejected: [[30, 2], [31, 2], [32, 2]],
  }));
  model.addLora(lora);
  const sft = await train(model, examples, { stage: "sft", steps: 2, batchSize: 2, logEvery: 1 }, {
    progress: false,
  });
  assert.equal(sft.history.length, 2);
  model.mergeAndUnloadLora();
  assert.equal(model.hasLora(), false);
  model.addLora({ ...lora, seed: 1 });
  const pref = await train(model, examples, {
    stage: "sdpo",
    numNegatives: 3,
    beta: 1,
    steps: 1,
    batchSize: 2,
    logEvery: 1,
  }, {
    progress: false,
  });
  // Fresh adapter: policy == reference, so the first S-DPO loss is ln(1 + K).
  assert.ok(Math.abs(pref.history[0].loss - Math.log(4)) < 1e-5);
  const z = tf.zeros([1]) as recalign.tf.Tensor1D, z2 = tf.zeros([1, 3]) as recalign.tf.Tensor2D;
  const out = sdpoLoss(z, z2, z, z2, { beta: 1 });
  assert.ok(Math.abs(out.loss.dataSync()[0] - Math.log(4)) < 1e-6);
  tf.dispose([z, z2, out.loss, ...Object.values(out.metrics)]);
  model.dispose();
});
