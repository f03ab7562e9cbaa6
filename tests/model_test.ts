import assert from "node:assert/strict";
import { initBackend, tf } from "../src/backend.ts";
import { type LlamaConfig, LlamaModel, PRESETS, variableKey } from "../src/model.ts";
import { DEFAULT_LORA_CONFIG, type LoraConfig } from "../src/lora.ts";
import { ConfigError, InputError } from "../src/errors.ts";
import { Rng } from "../src/rng.ts";
import { naiveForward } from "./_reference.ts";
import { disposeBatch, padPairs } from "../src/data/batch.ts";

await initBackend("wasm", { quiet: true });

const NANO: LlamaConfig = PRESETS["llama-nano"];
const LORA: LoraConfig = { ...DEFAULT_LORA_CONFIG, r: 4, lora_alpha: 8, lora_dropout: 0, seed: 3 };

function randomIds(rng: Rng, b: number, t: number, v: number): number[][] {
  return Array.from({ length: b }, () => Array.from({ length: t }, () => rng.int(v)));
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/** Give every LoRA B a random value so adapters change the output. */
function perturbLora(model: LlamaModel, seed: number, scale = 0.05): void {
  const rng = new Rng(seed);
  for (const lin of model.linears().values()) {
    if (!lin.adapter) continue;
    const b = lin.adapter.bT;
    const vals = Float32Array.from({ length: b.size }, () => rng.normal() * scale);
    b.assign(tf.tensor(vals, b.shape));
  }
}

function weights64(model: LlamaModel): Map<string, Float64Array> {
  const m = new Map<string, Float64Array>();
  for (const [name, t] of model.namedWeights()) {
    m.set(name, Float64Array.from(t.dataSync()));
    t.dispose();
  }
  return m;
}

// ---------------------------------------------------------------- tests

Deno.test("LlamaModel.forward() matches a float64 plain-loop implementation (GQA, untied and tied)", () => {
  for (const cfg of [NANO, { ...NANO, tie_word_embeddings: true, num_key_value_heads: 4 }]) {
    const model = LlamaModel.random(cfg, 1);
    const ids = randomIds(new Rng(2), 1, 7, cfg.vocab_size)[0];
    const ours = model.logits([ids]);
    const ref = naiveForward(cfg, weights64(model), ids);
    const got = ours.dataSync();
    let maxErr = 0;
    for (let i = 0; i < ref.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - ref[i]));
    assert.ok(maxErr < 1e-4, `max |logit diff| = ${maxErr}`);
    ours.dispose();
    model.dispose();
  }
});

Deno.test("LlamaModel.random() is seeded; weightShapes() follows HF names", () => {
  const a = LlamaModel.random(NANO, 5),
    b = LlamaModel.random(NANO, 5),
    c = LlamaModel.random(NANO, 6);
  const ids = [[1, 2, 3]];
  const [la, lb, lc] = [a.logits(ids), b.logits(ids), c.logits(ids)];
  assert.equal(maxAbsDiff(la, lb), 0);
  assert.ok(maxAbsDiff(la, lc) > 0);
  const names = LlamaModel.weightShapes(NANO).map(([n]) => n);
  assert.ok(names.includes("model.layers.1.self_attn.k_proj.weight"));
  assert.deepEqual(
    LlamaModel.weightShapes(NANO).find(([n]) => n.endsWith("0.self_attn.k_proj.weight"))![1],
    [16, 32],
  );
  for (const t of [la, lb, lc]) t.dispose();
  for (const m of [a, b, c]) m.dispose();
});

Deno.test("LoRA with B = 0 gives the base model's logits; disabled adapters give the base", () => {
  const model = LlamaModel.random(NANO, 1);
  const ids = randomIds(new Rng(3), 2, 6, NANO.vocab_size);
  const base = model.logits(ids);
  model.addLora(LORA);
  const fresh = model.logits(ids);
  assert.equal(maxAbsDiff(base, fresh), 0);
  perturbLora(model, 9);
  const adapted = model.logits(ids);
  assert.ok(maxAbsDiff(base, adapted) > 1e-3, "a non-zero B must change the output");
  const disabled = model.logits(ids, { adapters: false });
  assert.equal(maxAbsDiff(base, disabled), 0);
  for (const t of [base, fresh, adapted, disabled]) t.dispose();
  model.dispose();
});

Deno.test("LoraLinear merge() equals unmerged output; unmerge() restores base weights", () => {
  const model = LlamaModel.random(NANO, 1);
  const ids = randomIds(new Rng(4), 2, 5, NANO.vocab_size);
  const w0 = model.layers[0].q.weight().dataSync().slice();
  model.addLora({ ...LORA, target_modules: ["q_proj", "v_proj", "down_proj", "lm_head"] });
  perturbLora(model, 7);
  const unmerged = model.logits(ids);
  model.mergeLora();
  const merged = model.logits(ids);
  assert.ok(
    maxAbsDiff(unmerged, merged) < 1e-5,
    `merged vs unmerged: ${maxAbsDiff(unmerged, merged)}`,
  );
  model.unmergeLora();
  const w1 = model.layers[0].q.weight().dataSync();
  let err = 0;
  for (let i = 0; i < w0.length; i++) err = Math.max(err, Math.abs(w0[i] - w1[i]));
  assert.ok(err < 1e-6, `unmerge error ${err}`);
  model.mergeAndUnloadLora();
  assert.equal(model.hasLora(), false);
  const afterUnload = model.logits(ids);
  assert.ok(maxAbsDiff(unmerged, afterUnload) < 1e-5);
  for (const t of [unmerged, merged, afterUnload]) t.dispose();
  model.dispose();
});

Deno.test("LlamaModel.generate() with a KV cache equals greedy full recompute (left-padded batch)", () => {
  const model = LlamaModel.random(NANO, 11);
  model.addLora(LORA);
  perturbLora(model, 12, 0.2);
  const prompts = [[5, 9, 13, 2, 7], [3, 8], [100, 101, 102]];
  const got = model.generate(prompts, { maxNewTokens: 6 });
  for (let b = 0; b < prompts.length; b++) {
    const seq = [...prompts[b]];
    const expect: number[] = [];
    for (let s = 0; s < 6; s++) {
      const logits = model.logits([seq]);
      const next = tf.tidy(() =>
        tf.argMax(logits.slice([0, seq.length - 1, 0], [1, 1, -1]).reshape([-1])).dataSync()[0]
      );
      logits.dispose();
      expect.push(next);
      seq.push(next);
    }
    assert.deepEqual(got[b], expect, `row ${b}`);
  }
  model.dispose();
});

Deno.test("LlamaModel.generate() stops at EOS and leaks no tensors", () => {
  const model = LlamaModel.random(NANO, 11);
  const first = model.generate([[1, 2, 3]], { maxNewTokens: 4 })[0];
  const before = tf.memory().numTensors;
  const stopped = model.generate([[1, 2, 3]], { maxNewTokens: 4, eosId: first[1] });
  assert.deepEqual(stopped[0], first.slice(0, first.indexOf(first[1])));
  assert.equal(tf.memory().numTensors, before);
  model.dispose();
});

Deno.test("LoRA gradients of a model forward match finite differences", () => {
  const model = LlamaModel.random(NANO, 21);
  model.addLora({
    ...LORA,
    target_modules: [
      "q_proj",
      "k_proj",
      "v_proj",
      "o_proj",
      "gate_proj",
      "up_proj",
      "down_proj",
      "lm_head",
    ],
  });
  perturbLora(model, 22, 0.1);
  const ids = randomIds(new Rng(23), 2, 5, NANO.vocab_size);
  const weights = tf.randomNormal([2, 5, NANO.vocab_size], 0, 1, "float32", 24);
  const f = () => tf.sum(tf.mul(model.logits(ids), weights)) as tf.Scalar;
  const vars = model.trainableVariables();
  const { grads, value } = tf.variableGrads(f, vars);
  value.dispose();
  const rng = new Rng(25);
  const eps = 1e-2;
  let checked = 0;
  for (const v of vars) {
    if (rng.next() > 0.4) continue;
    const g = grads[v.name].dataSync();
    const vals = v.dataSync().slice();
    for (let trial = 0; trial < 2; trial++) {
      const idx = rng.int(v.size);
      const eval1 = (delta: number) => {
        const nv = vals.slice();
        nv[idx] += delta;
        v.assign(tf.tensor(nv, v.shape));
        return tf.tidy(() => f().dataSync()[0]);
      };
      const fd = (eval1(eps) - eval1(-eps)) / (2 * eps);
      v.assign(tf.tensor(vals, v.shape));
      const tol = 2e-2 * Math.max(1, Math.abs(fd));
      assert.ok(
        Math.abs(fd - g[idx]) < tol,
        `${v.name}[${idx}]: analytic ${g[idx]} vs finite diff ${fd}`,
      );
      checked++;
    }
  }
  assert.ok(checked >= 6, `checked ${checked} entries`);
  Object.values(grads).forEach((t) => t.dispose());
  weights.dispose();
  model.dispose();
});

Deno.test("full fine-tuning gradients (embedding, norms, projections) match finite differences", () => {
  const model = LlamaModel.random(NANO, 31);
  model.makeFullyTrainable();
  const ids = [[1, 5, 9, 1, 3]];
  const weights = tf.randomNormal([1, 5, NANO.vocab_size], 0, 1, "float32", 32);
  const f = () => tf.sum(tf.mul(model.logits(ids), weights)) as tf.Scalar;
  const vars = model.trainableVariables();
  const { grads, value } = tf.variableGrads(f, vars);
  value.dispose();
  const byName = new Map(vars.map((v) => [variableKey(v), v]));
  const probes: [string, number][] = [
    ["model.embed_tokens.weight", 1 * 32 + 3], // token 1 appears twice
    ["model.layers.0.input_layernorm.weight", 4],
    ["model.layers.1.self_attn.q_proj.weight.T", 17],
    ["model.layers.0.mlp.down_proj.weight.T", 40],
    ["model.norm.weight", 2],
  ];
  const eps = 1e-2;
  for (const [name, idx] of probes) {
    const v = byName.get(name);
    assert.ok(v, `variable ${name} exists (have ${[...byName.keys()].slice(0, 4)})`);
    const vals = v.dataSync().slice();
    const at = (delta: number) => {
      const nv = vals.slice();
      nv[idx] += delta;
      v.assign(tf.tensor(nv, v.shape));
      return tf.tidy(() => f().dataSync()[0]);
    };
    const fd = (at(eps) - at(-eps)) / (2 * eps);
    v.assign(tf.tensor(vals, v.shape));
    const g = grads[v.name].dataSync()[idx];
    assert.ok(
      Math.abs(fd - g) < 2e-2 * Math.max(1, Math.abs(fd)),
      `${name}[${idx}]: ${g} vs ${fd}`,
    );
  }
  Object.values(grads).forEach((t) => t.dispose());
  weights.dispose();
  model.dispose();
});

Deno.test("LlamaModel rejects bad configs and inputs with named errors", () => {
  assert.throws(
    () => LlamaModel.random({ ...NANO, num_key_value_heads: 3 }),
    (e: unknown) => e instanceof ConfigError && /num_key_value_heads/.test(e.message),
  );
  assert.throws(() => LlamaModel.random({ ...NANO, hidden_size: 0 }), ConfigError);
  const model = LlamaModel.random(NANO, 1);
  assert.throws(
    () => model.addLora({ ...LORA, r: 0 }),
    (e: unknown) => e instanceof ConfigError && /`?r`?/.test(e.message),
  );
  assert.throws(() => model.addLora({ ...LORA, target_modules: ["nope"] }), ConfigError);
  assert.throws(
    () => model.logits([[1, 2], [3]]),
    (e: unknown) => e instanceof InputError && /row 1/.test(e.message),
  );
  assert.throws(() => model.logits([new Array(600).fill(1)]), /max_position_embeddings/);
  model.dispose();
});

Deno.test("forward({ select }) equals the full forward's logits at the selected positions", () => {
  const model = LlamaModel.random(NANO, 41);
  const batch = padPairs([{ prompt: [1, 5, 6], response: [7, 8, 2] }, {
    prompt: [1, 9],
    response: [2],
  }]);
  const full = model.forward(batch.ids);
  const sel = model.forward(batch.ids, { select: batch.select });
  assert.deepEqual(sel.shape, [2, 3, NANO.vocab_size]);
  const f = full.arraySync(), s = sel.arraySync();
  // Row 0 scores positions 2, 3, 4 (predicting 7, 8, 2); row 1 scores position 1 (predicting 2).
  for (const [r, q, t] of [[0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 0, 1]]) {
    const err = Math.max(...s[r][q].map((v, i) => Math.abs(v - f[r][t][i])));
    assert.ok(err < 1e-5, `row ${r} token ${q}: ${err}`);
  }
  assert.deepEqual(Array.from(batch.responseLabels.dataSync()), [7, 8, 2, 2, -100, -100]);
  for (const t of [full, sel]) t.dispose();
  disposeBatch(batch);
  model.dispose();
});
