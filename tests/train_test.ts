import assert from "node:assert/strict";
import { initBackend, tf } from "../src/backend.ts";
import { LlamaModel, PRESETS } from "../src/model.ts";
import { DEFAULT_LORA_CONFIG } from "../src/lora.ts";
import { batchIndices, CHECKPOINT_STATE_FILE, type MetricsRow, train } from "../src/train.ts";
import { ConfigError, NonFiniteError } from "../src/errors.ts";
import { EOS, snapshot, toyExamples } from "./_toy.ts";

await initBackend("wasm", { quiet: true });

const CFG = { ...PRESETS["llama-nano"], vocab_size: 48 };
const LORA = { ...DEFAULT_LORA_CONFIG, r: 4, lora_alpha: 8, lora_dropout: 0, seed: 1 };

Deno.test("train() SFT lowers the loss, then S-DPO raises rewards/accuracies to ~1", async () => {
  // A random frozen LM head cannot express confident answers, so the base is trained fully
  // first (as the kit's base-model stage does), then LoRA-SFT, then S-DPO on a fresh LoRA.
  const model = LlamaModel.random(CFG, 0);
  const ex = toyExamples();
  model.makeFullyTrainable();
  const base = await train(model, ex, {
    stage: "sft",
    steps: 40,
    batchSize: 8,
    lr: 1e-2,
    warmupSteps: 5,
    logEvery: 10,
  }, {
    progress: false,
  });
  model.freeze();
  const first = base.history[0].loss, last = base.history.at(-1)!.loss;
  assert.ok(last < first * 0.5, `full SFT loss ${first} → ${last}`);
  model.addLora(LORA);
  const sft = await train(model, ex, {
    stage: "sft",
    steps: 20,
    batchSize: 8,
    lr: 1e-2,
    warmupSteps: 2,
    logEvery: 10,
  }, {
    progress: false,
  });
  assert.ok(sft.history.at(-1)!.loss <= last * 1.1, `LoRA SFT loss ${sft.history.at(-1)!.loss}`);
  model.mergeAndUnloadLora();
  model.addLora({ ...LORA, seed: 2 });
  const pref = await train(model, ex, {
    stage: "sdpo",
    steps: 80,
    batchSize: 8,
    numNegatives: 3,
    beta: 1,
    lr: 1e-2,
    warmupSteps: 2,
    logEvery: 10,
  }, { progress: false });
  const acc = pref.history.at(-1)!["rewards/accuracies"];
  assert.ok(pref.history[0]["rewards/accuracies"] < acc, "accuracies rise");
  assert.ok(acc >= 0.9, `final rewards/accuracies ${acc}`);
  assert.ok(pref.history.at(-1)!["rewards/margins"] > 0);
  model.dispose();
});

Deno.test("train() first preference step has loss ln 2 (DPO) and ln(1+K) (S-DPO) when policy = reference", async () => {
  for (
    const [stage, k, expected] of [["dpo", 1, Math.log(2)], ["sdpo", 3, Math.log(4)], [
      "dmpo-paper",
      4,
      Math.log(2),
    ]] as const
  ) {
    const model = LlamaModel.random(CFG, 3);
    model.addLora(LORA);
    const res = await train(model, toyExamples(), {
      stage,
      steps: 1,
      batchSize: 4,
      numNegatives: k,
      beta: 0.5,
      logEvery: 1,
    }, { progress: false });
    assert.ok(
      Math.abs(res.history[0].loss - expected) < 1e-5,
      `${stage}: ${res.history[0].loss} vs ${expected}`,
    );
    // Policy and reference run the same weights through different batch shapes: equal up to rounding.
    assert.ok(Math.abs(res.history[0]["rewards/chosen"]) < 1e-5);
    model.dispose();
  }
});

Deno.test("train() keeps tf.memory().numTensors flat across steps", async () => {
  const model = LlamaModel.random(CFG, 4);
  model.addLora({ ...LORA, lora_dropout: 0.1 });
  const before = tf.memory().numTensors;
  const counts: number[] = [];
  for (const stage of ["sft", "sdpo", "dmpo-released"] as const) {
    counts.length = 0;
    await train(model, toyExamples(), {
      stage,
      steps: 5,
      batchSize: 4,
      microBatchSize: 8,
      numNegatives: 2,
      beta: 1,
      logEvery: 1,
      reference: "live",
    }, { progress: false, onLog: () => counts.push(tf.memory().numTensors) });
    assert.equal(new Set(counts).size, 1, `${stage}: tensors per step ${counts}`);
    assert.equal(tf.memory().numTensors, before, `${stage}: tensors after train()`);
  }
  model.dispose();
});

Deno.test("train() with the same seed gives the same loss trajectory; another seed does not", async () => {
  const run = async (seed: number) => {
    const model = LlamaModel.random(CFG, 5);
    model.addLora({ ...LORA, lora_dropout: 0.1 });
    const r = await train(model, toyExamples(), {
      stage: "sft",
      steps: 6,
      batchSize: 4,
      logEvery: 1,
      seed,
    }, {
      progress: false,
    });
    model.dispose();
    return r.history.map((h: MetricsRow) => h.loss);
  };
  const a = await run(7), b = await run(7), c = await run(8);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("train() resumed after an interrupted run reaches the same final weights", async () => {
  const dir = await Deno.makeTempDir();
  const cfg = {
    stage: "sdpo" as const,
    steps: 6,
    batchSize: 4,
    microBatchSize: 4,
    numNegatives: 2,
    beta: 1,
    logEvery: 1,
    checkpointEvery: 2,
  };
  const fresh = () => {
    const m = LlamaModel.random(CFG, 6);
    m.addLora({ ...LORA, lora_dropout: 0.1 });
    return m;
  };
  const a = fresh();
  const full = await train(a, toyExamples(), cfg, { outDir: `${dir}/a`, progress: false });
  const b = fresh();
  await train(b, toyExamples(), cfg, { outDir: `${dir}/b`, progress: false, stopAfterStep: 3 });
  b.dispose();
  const c = fresh(); // a new process: fresh weights, then resume
  const resumed = await train(c, toyExamples(), cfg, {
    outDir: `${dir}/b`,
    resume: true,
    progress: false,
  });
  assert.equal(resumed.resumedFrom, 2);
  assert.deepEqual(snapshot(c), snapshot(a));
  assert.deepEqual(resumed.history.map((h) => h.loss), full.history.map((h) => h.loss));
  const lines = (await Deno.readTextFile(`${dir}/b/metrics.jsonl`)).trim().split("\n");
  assert.equal(lines.length, 6);
  // A corrupt newest checkpoint is detected and an older one is used instead.
  const ck = `${dir}/a/checkpoints`;
  const names = [...Deno.readDirSync(ck)].map((e) => e.name).sort();
  assert.deepEqual(names, ["step-0000004", "step-0000006"]);
  await Deno.writeFile(`${ck}/step-0000006/weights.safetensors`, new Uint8Array([1, 2, 3]));
  const d = fresh();
  const again = await train(d, toyExamples(), cfg, {
    outDir: `${dir}/a`,
    resume: true,
    progress: false,
  });
  assert.equal(again.resumedFrom, 4);
  assert.deepEqual(snapshot(d), snapshot(a));
  for (const m of [a, c, d]) m.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train() stops with NonFiniteError naming the step on a NaN loss", async () => {
  const model = LlamaModel.random(CFG, 8);
  model.addLora(LORA);
  const v = model.trainableVariables()[1];
  v.assign(tf.fill(v.shape, NaN));
  await assert.rejects(
    () =>
      train(model, toyExamples(), { stage: "sft", steps: 3, batchSize: 4 }, { progress: false }),
    (e: unknown) =>
      e instanceof NonFiniteError && /step 1/.test(e.message) && /checkpoint/.test(e.message),
  );
  model.dispose();
});

Deno.test("train() rejects bad configs naming the field", async () => {
  const model = LlamaModel.random(CFG, 9);
  model.addLora(LORA);
  const ex = toyExamples();
  await assert.rejects(
    () => train(model, ex, { stage: "nope" as "sft" }),
    (e: unknown) => e instanceof ConfigError && /stage/.test(e.message) && /sdpo/.test(e.message),
  );
  await assert.rejects(() => train(model, ex, { stage: "sdpo", numNegatives: 3 }), /beta/);
  await assert.rejects(() => train(model, ex, { stage: "sft", lr: -1 }), /lr/);
  await assert.rejects(
    () => train(model, ex, { stage: "sdpo", beta: 1, numNegatives: 9 }),
    /needs numNegatives=9/,
  );
  model.dispose();
});

Deno.test("batchIndices() visits every example once per epoch, in a seeded order", () => {
  const seen = [0, 1, 2].flatMap((s) => batchIndices(12, 4, s, 3));
  assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: 12 }, (_, i) => i));
  assert.deepEqual(batchIndices(12, 4, 1, 3), batchIndices(12, 4, 1, 3));
  assert.notDeepEqual(batchIndices(12, 12, 0, 3), batchIndices(12, 12, 0, 4));
});

Deno.test("train() with onNonFinite 'skip' drops bad updates and counts them", async () => {
  const model = LlamaModel.random(CFG, 8);
  model.addLora(LORA);
  const v = model.trainableVariables()[1];
  v.assign(tf.fill(v.shape, NaN));
  const res = await train(model, toyExamples(), {
    stage: "sft",
    steps: 3,
    batchSize: 4,
    logEvery: 1,
    onNonFinite: "skip",
  }, { progress: false });
  assert.equal(res.step, 3);
  assert.equal(res.history.length, 0, "skipped steps log no metrics");
  model.dispose();
});

Deno.test("train() refuses a folder locked by a live run, takes over a stale lock, and checks writability", async () => {
  const dir = await Deno.makeTempDir();
  const model = LlamaModel.random(CFG, 9);
  model.addLora(LORA);
  const cfg = { stage: "sft" as const, steps: 1, batchSize: 2 };
  // A live process holds the lock.
  const sleeper = new Deno.Command("sleep", { args: ["30"] }).spawn();
  await Deno.writeTextFile(
    `${dir}/.lock`,
    JSON.stringify({ pid: sleeper.pid, started: "earlier", label: "other run" }),
  );
  await assert.rejects(
    () => train(model, toyExamples(), cfg, { outDir: dir, progress: false }),
    (e: unknown) =>
      e instanceof Error && new RegExp(`pid ${sleeper.pid}`).test(e.message) &&
      /in use/.test(e.message),
  );
  sleeper.kill();
  await sleeper.status;
  // Now the holder is dead: its lock is stale and is taken over; the lock is released at the end.
  const res = await train(model, toyExamples(), cfg, { outDir: dir, progress: false });
  assert.equal(res.step, 1);
  await assert.rejects(() => Deno.stat(`${dir}/.lock`), Deno.errors.NotFound);
  // A results folder that cannot be created is reported before the first step.
  await Deno.writeTextFile(`${dir}/file`, "x");
  await assert.rejects(
    () => train(model, toyExamples(), cfg, { outDir: `${dir}/file/sub`, progress: false }),
    /cannot write to .*file\/sub/,
  );
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("train() refuses a micro-batch that cannot fit the wasm heap, with the estimate", async () => {
  const model = LlamaModel.random({ ...CFG, max_position_embeddings: 1024 }, 10);
  model.addLora(LORA);
  const long = [{ prompt: new Array(400).fill(5), chosen: [20, EOS] }];
  await assert.rejects(
    () =>
      train(model, long, { stage: "sft", steps: 1, batchSize: 4096, microBatchSize: 4096 }, {
        progress: false,
      }),
    (e: unknown) =>
      e instanceof ConfigError && /microBatchSize/.test(e.message) && /GiB/.test(e.message),
  );
  model.dispose();
});

Deno.test("train() logs TRL's names: learning_rate, epoch, logits/chosen and logits/rejected (checked against the model's own logits)", async () => {
  // Two rejected per example, K = 2: every response of a drawn example is used.
  const examples = toyExamples().slice(0, 8).map((e) => ({
    ...e,
    rejected: e.rejected!.slice(0, 2),
  }));
  const model = LlamaModel.random(CFG, 9);
  model.addLora(LORA);
  // Before the first update, by another route (full-sequence logits): per example and
  // response, the sum over response tokens of the vocabulary-mean logit, and the token count.
  const stats = examples.map((e) =>
    [e.chosen, ...e.rejected!].map((r) => {
      const logits = model.logits([[...e.prompt, ...r]]);
      const perPos = tf.tidy(() => tf.mean(logits, -1).arraySync() as number[][])[0];
      logits.dispose();
      let sum = 0;
      for (let j = 0; j < r.length; j++) sum += perPos[e.prompt.length - 1 + j];
      return { sum, n: r.length };
    })
  );
  const seed = 5;
  const res = await train(model, examples, {
    stage: "sdpo",
    steps: 3,
    batchSize: 4,
    microBatchSize: 64, // one micro-batch per step
    numNegatives: 2,
    beta: 1,
    logEvery: 1,
    lr: 1e-2,
    warmupSteps: 0,
    seed,
  }, { progress: false });
  model.dispose();
  const [r1, r2, r3] = res.history;
  for (const row of res.history) {
    assert.ok(!("lr" in row), "`lr` is logged as `learning_rate`");
    assert.ok(row.learning_rate > 0 && row.learning_rate <= 1e-2);
  }
  assert.deepEqual([r1.epoch, r2.epoch, r3.epoch], [0.5, 1, 1.5]); // 4 of 8 examples per step
  // Step 1 drew these four examples.
  const drawn = batchIndices(examples.length, 4, 0, seed).map((i) => stats[i]);
  const tokenMean = (xs: { sum: number; n: number }[]) =>
    xs.reduce((a, x) => a + x.sum, 0) / xs.reduce((a, x) => a + x.n, 0);
  const close = (a: number, b: number) => Math.abs(a - b) < 1e-4 * Math.max(1, Math.abs(b));
  const chosen = tokenMean(drawn.map((s) => s[0]));
  const rejected = tokenMean(drawn.flatMap((s) => s.slice(1)));
  assert.ok(close(r1["logits/chosen"], chosen), `${r1["logits/chosen"]} vs ${chosen}`);
  assert.ok(close(r1["logits/rejected"], rejected), `${r1["logits/rejected"]} vs ${rejected}`);
  assert.notEqual(chosen, rejected);
});

Deno.test("train() checkpoints keep their state in recalign_checkpoint.json; a folder from before (trainer_state.json) still resumes", async () => {
  const dir = await Deno.makeTempDir();
  const cfg = {
    stage: "sft" as const,
    steps: 4,
    batchSize: 4,
    logEvery: 1,
    checkpointEvery: 2,
  };
  const fresh = () => {
    const m = LlamaModel.random(CFG, 4);
    m.addLora(LORA);
    return m;
  };
  const a = fresh();
  await train(a, toyExamples(), cfg, { outDir: `${dir}/a`, progress: false });
  const b = fresh();
  await train(b, toyExamples(), cfg, { outDir: `${dir}/b`, progress: false, stopAfterStep: 3 });
  b.dispose();
  const ck = `${dir}/b/checkpoints/step-0000002`;
  const files = [...Deno.readDirSync(ck)].map((e) => e.name).sort();
  assert.ok(files.includes(CHECKPOINT_STATE_FILE) && !files.includes("trainer_state.json"));
  // The layout written before the rename: the same state under HF's name.
  await Deno.rename(`${ck}/${CHECKPOINT_STATE_FILE}`, `${ck}/trainer_state.json`);
  const c = fresh();
  const resumed = await train(c, toyExamples(), cfg, {
    outDir: `${dir}/b`,
    resume: true,
    progress: false,
  });
  assert.equal(resumed.resumedFrom, 2);
  assert.deepEqual(snapshot(c), snapshot(a));
  for (const m of [a, c]) m.dispose();
  await Deno.remove(dir, { recursive: true });
});
