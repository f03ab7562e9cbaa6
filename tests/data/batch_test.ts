import assert from "node:assert/strict";
import { initBackend, tf } from "../../src/backend.ts";
import { LlamaModel, PRESETS } from "../../src/model.ts";
import { disposeBatch, packGroups, padPairs, truncatePair } from "../../src/data/batch.ts";
import { scoreGroups, scorePairs, train } from "../../src/train.ts";
import { InputError } from "../../src/errors.ts";
import { Rng } from "../../src/rng.ts";
import { sequenceLogProbs } from "../../src/losses.ts";

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

Deno.test("train() gives the same first S-DPO steps packed (unpadded and in blocks) and unpacked", async () => {
  // Responses of unequal length: packed rows end to end. Of equal length: rows in blocks.
  for (const second of [[31, 31, 31, 31, 2], [31, 2]]) {
    await samePackedAndUnpacked(
      Array.from({ length: 6 }, (_, a) => ({
        prompt: [1, 3, 4 + a],
        chosen: [20 + a, 2],
        rejected: [[30, 2], second, [32, 2]],
      })),
      second.length === 2,
    );
  }
});

async function samePackedAndUnpacked(
  examples: { prompt: number[]; chosen: number[]; rejected: number[][] }[],
  inBlocks: boolean,
): Promise<void> {
  const groups = examples.slice(0, 3).map((e) => ({
    prompt: e.prompt,
    responses: [e.chosen, ...e.rejected],
  }));
  const layout = packGroups(groups);
  assert.equal(layout.blocks !== undefined, inBlocks, "the layout train() packs");
  disposeBatch(layout);
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
}

Deno.test("packGroups() in blocks: prompts left-padded, responses right-padded, masks cut by block", () => {
  const b = packGroups([
    { prompt: [1, 2], responses: [[5], [6, 7]] },
    { prompt: [3], responses: [[8, 9]] },
  ], { blocks: true, padId: 0 });
  // A prompt block of 2, two response blocks of 2.
  assert.deepEqual([b.blocks!.prompt, b.blocks!.responses, b.blocks!.length], [2, 2, 2]);
  assert.deepEqual(b.ids.arraySync(), [[1, 2, 5, 0, 6, 7], [0, 3, 8, 9, 0, 0]]);
  assert.deepEqual(b.attentionMask.arraySync(), [[1, 1, 1, 0, 1, 1], [0, 1, 1, 1, 0, 0]]);
  assert.deepEqual(b.positions!.arraySync(), [[0, 1, 2, 0, 2, 3], [0, 0, 1, 2, 0, 0]]);
  // Response token q is predicted at the position before it (the last prompt token for q = 0).
  assert.deepEqual(Array.from(b.select.index.dataSync()), [1, 0, 1, 4, 7, 8]);
  assert.deepEqual(b.responseLabels.arraySync(), [[5, -100], [6, 7], [8, 9]]);
  const M = -1e9;
  // Row 1: the padding before the prompt sees itself, the prompt token itself.
  assert.deepEqual(b.blocks!.promptBias.arraySync()[1][0], [[0, M], [M, 0]]);
  // Row 0, response 1: the prompt (2 keys), then itself causally.
  assert.deepEqual(b.blocks!.responseBias.arraySync()[0][0][1], [[0, 0, 0, M], [0, 0, 0, 0]]);
  // Row 1, response 0 sees the prompt's one real token; the missing response 1 only itself.
  assert.deepEqual(b.blocks!.responseBias.arraySync()[1][0][0], [[M, 0, 0, M], [M, 0, 0, 0]]);
  assert.deepEqual(b.blocks!.responseBias.arraySync()[1][0][1], [[M, M, 0, M], [M, M, M, 0]]);
  disposeBatch(b);
  // "auto": the kit's S-DPO rows (long prompt, short titles) stay end to end; a prompt with
  // responses as long as itself goes in blocks (37k scores per head instead of 102k).
  const toks = (n: number, from: number) => Array.from({ length: n }, (_, i) => from + i);
  const kit = packGroups([{
    prompt: toks(125, 1),
    responses: [1, 2, 3, 4].map((j) => toks(4, j)),
  }]);
  assert.equal(kit.blocks, undefined);
  assert.deepEqual(kit.ids.shape, [1, 141]);
  const long = packGroups([{
    prompt: toks(64, 1),
    responses: [1, 2, 3, 4].map((j) => toks(64, j)),
  }]);
  assert.deepEqual([long.blocks?.prompt, long.blocks?.responses, long.blocks?.length], [64, 4, 64]);
  assert.deepEqual(long.ids.shape, [1, 320]);
  disposeBatch(kit);
  disposeBatch(long);
});

/** Groups with prompts and responses of different lengths and counts (padding in every block). */
function raggedGroups(vocab: number, seed: number) {
  const rng = new Rng(seed);
  const toks = (n: number) => Array.from({ length: n }, () => 3 + rng.int(vocab - 3));
  return [
    { prompt: toks(6), responses: [toks(3), toks(1), toks(4)] },
    { prompt: toks(2), responses: [toks(5)] },
    { prompt: toks(9), responses: [toks(2), toks(2)] },
  ];
}

Deno.test("attention in blocks equals the full masked attention: log-probs and gradients", () => {
  const weights = tf.tensor1d([1, -2, 0.5, 3, -1, 0.7]);
  for (const nkv of [2, 4]) { // grouped-query and plain attention
    const cfg = { ...CFG, num_key_value_heads: nkv };
    const model = LlamaModel.random(cfg, 8);
    model.addLora({
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"],
      seed: 9,
    });
    for (const lin of model.linears().values()) {
      if (lin.adapter) {
        lin.adapter.bT.assign(tf.randomNormal(lin.adapter.bT.shape, 0, 0.1, "float32", 10));
      }
    }
    const groups = raggedGroups(cfg.vocab_size, 11);
    const blocked = packGroups(groups, { blocks: true });
    const ends = packGroups(groups, { blocks: false });
    assert.ok(blocked.blocks && !ends.blocks);
    const logps = (b: typeof blocked, useBlocks: boolean) =>
      sequenceLogProbs(
        model.forward(b.ids, {
          select: b.select,
          attentionBias: b.attentionBias,
          positions: b.positions,
          blocks: useBlocks ? b.blocks : undefined,
        }),
        b.responseLabels,
      );
    const vars = model.trainableVariables();
    const run = (b: typeof blocked, useBlocks: boolean) => {
      const lp = tf.tidy(() => Array.from(logps(b, useBlocks).dataSync()));
      const { value, grads } = tf.variableGrads(
        () => tf.sum(tf.mul(logps(b, useBlocks), weights)) as tf.Scalar,
        vars,
      );
      value.dispose();
      return { lp, grads };
    };
    const inBlocks = run(blocked, true);
    for (const other of [run(blocked, false), run(ends, false)]) {
      inBlocks.lp.forEach((x, i) =>
        assert.ok(Math.abs(x - other.lp[i]) < 1e-5, `${x} vs ${other.lp[i]}`)
      );
      for (const v of vars) {
        const g = inBlocks.grads[v.name].dataSync(), h = other.grads[v.name].dataSync();
        const scale = Math.max(1, ...Array.from(h, Math.abs));
        const err = Math.max(...Array.from(g, (x, i) => Math.abs(x - h[i])));
        assert.ok(err < 1e-5 * scale, `${v.name}: gradients differ by ${err}`);
      }
      tf.dispose(other.grads);
    }
    // The gradient in blocks against finite differences of the log-probs.
    const f = () => tf.tidy(() => tf.sum(tf.mul(logps(blocked, true), weights)).dataSync()[0]);
    const rng = new Rng(12);
    const eps = 1e-2;
    for (const v of vars.filter((_, i) => i % 3 === 0)) {
      const vals = v.dataSync().slice();
      const idx = rng.int(v.size);
      const at = (delta: number) => {
        const moved = vals.slice();
        moved[idx] += delta;
        v.assign(tf.tensor(moved, v.shape));
        return f();
      };
      const fd = (at(eps) - at(-eps)) / (2 * eps);
      v.assign(tf.tensor(vals, v.shape));
      const g = inBlocks.grads[v.name].dataSync()[idx];
      assert.ok(
        Math.abs(fd - g) < 2e-2 * Math.max(1, Math.abs(fd)),
        `${v.name}[${idx}]: ${g} vs ${fd}`,
      );
    }
    tf.dispose(inBlocks.grads);
    disposeBatch(blocked);
    disposeBatch(ends);
    model.dispose();
  }
  weights.dispose();
});

Deno.test("forward() rejects blocks that do not match the rows, naming them", () => {
  const model = LlamaModel.random(CFG, 13);
  const b = packGroups(raggedGroups(CFG.vocab_size, 14), { blocks: true });
  const wrong = { ...b.blocks!, length: b.blocks!.length - 1 };
  assert.throws(
    () => model.forward(b.ids, { blocks: wrong }),
    (e: unknown) =>
      e instanceof InputError && /blocks/.test(e.message) && /rows have 24/.test(e.message),
  );
  disposeBatch(b);
  model.dispose();
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
