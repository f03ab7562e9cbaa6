import assert from "node:assert/strict";
import { initBackend, tf } from "../../src/backend.ts";
import { LlamaModel, PRESETS } from "../../src/model.ts";
import { disposeBatch, packGroups, padPairs, truncatePair } from "../../src/data/batch.ts";
import { scoreGroups, scorePairs, train } from "../../src/train.ts";
import { InputError } from "../../src/errors.ts";
import { Rng } from "../../src/rng.ts";

await initBackend("wasm", { quiet: true });
const CFG = { ...PRESETS["llama-nano"], num_key_value_heads: 2 };

Deno.test("padPairs() masks the prompt and padding with -100 and right-pads", () => {
  const b = padPairs([{ prompt: [1, 5], response: [7, 2] }, { prompt: [1], response: [9, 9, 2] }], {
    padId: 0,
  });
  assert.deepEqual(b.ids.arraySync(), [[1, 5, 7], [1, 9, 9]]);
  assert.deepEqual(b.labels.arraySync(), [[-100, 7, 2], [9, 9, 2]]);
  assert.deepEqual(b.attentionMask.arraySync(), [[1, 1, 1], [1, 1, 1]]);
  assert.equal(b.numTokens, 5);
  disposeBatch(b);
  assert.deepEqual(truncatePair({ prompt: [1, 2, 3, 4], response: [5, 6] }, 4), {
    prompt: [3, 4],
    response: [5, 6],
  });
  assert.throws(
    () => padPairs([{ prompt: [1], response: [] }]),
    (e: unknown) => e instanceof InputError && /pair 0/.test(e.message),
  );
});

Deno.test("packGroups() gives every response the log-probs it gets as its own sequence", () => {
  const model = LlamaModel.random(CFG, 3);
  const rng = new Rng(4);
  const toks = (n: number) => Array.from({ length: n }, () => 3 + rng.int(CFG.vocab_size - 3));
  const groups = [
    { prompt: toks(6), responses: [toks(3), toks(1), toks(4)] },
    { prompt: toks(2), responses: [toks(5)] },
    { prompt: toks(9), responses: [toks(2), toks(2)] },
  ];
  const packed = scoreGroups(model, groups, { microBatchSize: 4 });
  const separate = scorePairs(
    model,
    groups.flatMap((g) => g.responses.map((response) => ({ prompt: g.prompt, response }))),
  );
  assert.equal(packed.length, 6);
  for (let i = 0; i < 6; i++) {
    assert.ok(
      Math.abs(packed[i] - separate[i]) < 1e-4,
      `response ${i}: ${packed[i]} vs ${separate[i]}`,
    );
  }
  // With LoRA adapters and averages too.
  const avgP = scoreGroups(model, groups, { average: true });
  const avgS = scorePairs(
    model,
    groups.flatMap((g) => g.responses.map((response) => ({ prompt: g.prompt, response }))),
    { average: true },
  );
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(avgP[i] - avgS[i]) < 1e-5);
  const b = packGroups(groups);
  assert.equal(b.numTokens, 17);
  assert.deepEqual(b.select.shape, [6, 5]);
  assert.throws(() => packGroups([{ prompt: [1], responses: [] }]), /no responses/);
  disposeBatch(b);
  model.dispose();
});

Deno.test("train() gives the same first S-DPO step packed and unpacked", async () => {
  const examples = Array.from({ length: 6 }, (_, a) => ({
    prompt: [1, 3, 4 + a],
    chosen: [20 + a, 2],
    rejected: [[30, 2], [31, 31, 2], [32, 2], [33, 2]],
  }));
  const run = async (packPrompts: boolean) => {
    const model = LlamaModel.random(CFG, 5);
    model.addLora({
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: ["q_proj", "v_proj", "down_proj"],
      seed: 1,
    });
    const r = await train(model, examples, {
      stage: "sdpo",
      steps: 2,
      batchSize: 3,
      numNegatives: 3,
      beta: 1,
      logEvery: 1,
      lr: 1e-2,
      packPrompts,
      reference: "live",
    }, { progress: false });
    const w = model.trainableVariables().map((v) => Array.from(v.dataSync()));
    model.dispose();
    return { losses: r.history.map((h) => h.loss), w };
  };
  const before = tf.memory().numTensors;
  const a = await run(true), b = await run(false);
  assert.equal(tf.memory().numTensors, before, "no tensors left behind");
  assert.ok(Math.abs(a.losses[1] - b.losses[1]) < 1e-4, `${a.losses} vs ${b.losses}`);
  let err = 0;
  a.w.forEach((xs, i) => xs.forEach((x, j) => (err = Math.max(err, Math.abs(x - b.w[i][j])))));
  assert.ok(err < 1e-4, `weights differ by ${err}`);
});

Deno.test("packGroups() rows may be longer than max_position_embeddings when their positions fit", () => {
  const model = LlamaModel.random({ ...CFG, max_position_embeddings: 8 }, 6);
  const groups = [{ prompt: [1, 5, 6, 7], responses: [[8, 9, 2], [10, 11, 2], [12, 13, 2]] }]; // row of 13 tokens
  const packed = scoreGroups(model, groups);
  const separate = scorePairs(
    model,
    groups[0].responses.map((response) => ({ prompt: groups[0].prompt, response })),
  );
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(packed[i] - separate[i]) < 1e-4);
  assert.throws(
    () => scoreGroups(model, [{ prompt: [1, 2, 3, 4, 5, 6, 7], responses: [[8, 9]] }]),
    /max_position_embeddings=8/,
  );
  model.dispose();
});
