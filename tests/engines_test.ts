/**
 * Two engines (this thread and the worker of `src/engines.ts`) must give the floats of one:
 * the same scores, the same weights after training, the same logged rows. Each test computes
 * the same thing with `RECALIGN_ENGINES=1` and `=2` in this process and compares bit for bit,
 * and checks that the worker did take jobs (so that the comparison is not of one engine with
 * itself).
 */
import assert from "node:assert/strict";
import { initBackend, tf } from "../src/backend.ts";
import { LlamaModel, PRESETS } from "../src/model.ts";
import { DEFAULT_LORA_CONFIG } from "../src/lora.ts";
import { engineJobs, readReply, replicaUnsupported, reply } from "../src/engines.ts";
import { scoreGroups, scorePairs, train, type TrainConfig } from "../src/train.ts";
import { snapshot, toyExamples } from "./_toy.ts";

await initBackend("wasm", { quiet: true });

const CFG = { ...PRESETS["llama-nano"], vocab_size: 48 };
const LORA = { ...DEFAULT_LORA_CONFIG, r: 4, lora_alpha: 8, lora_dropout: 0, seed: 1 };

/** Runs `f` with `RECALIGN_ENGINES` set to `n`, restoring the variable after. */
async function withEngines<T>(n: 1 | 2, f: () => T | Promise<T>): Promise<T> {
  const was = Deno.env.get("RECALIGN_ENGINES");
  Deno.env.set("RECALIGN_ENGINES", String(n));
  try {
    return await f();
  } finally {
    if (was === undefined) Deno.env.delete("RECALIGN_ENGINES");
    else Deno.env.set("RECALIGN_ENGINES", was);
  }
}

/** A model whose adapters are not zero (B random), so adapters on and off differ. */
function modelWithAdapters(seed: number): LlamaModel {
  const model = LlamaModel.random(CFG, seed);
  model.addLora({ ...LORA, seed });
  let s = seed;
  for (const v of model.trainableVariables()) {
    const x = Float32Array.from({ length: v.size }, () => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return (s / 2147483648 - 0.5) * 0.2;
    });
    v.assign(tf.tensor(x, v.shape));
  }
  return model;
}

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "engines: scorePairs and scoreGroups give the one-engine floats, adapters on and off",
  opts,
  async () => {
    const model = modelWithAdapters(7);
    const ex = toyExamples();
    const pairs = ex.flatMap((e) =>
      [e.chosen, ...e.rejected!.slice(0, 2)].map((response) => ({
        prompt: e.prompt,
        response,
      }))
    );
    const groups = ex.map((e) => ({ prompt: e.prompt, responses: [e.chosen, ...e.rejected!] }));
    for (const adapters of [true, false]) {
      for (const average of [false, true]) {
        const o = { adapters, average, microBatchSize: 5 };
        const one = await withEngines(
          1,
          () => [scorePairs(model, pairs, o), scoreGroups(model, groups, o)],
        );
        const before = engineJobs();
        const two = await withEngines(
          2,
          () => [scorePairs(model, pairs, o), scoreGroups(model, groups, o)],
        );
        assert.ok(engineJobs() >= before + 2, "the worker engine took the second halves");
        assert.deepEqual(two, one, `adapters ${adapters}, average ${average}`);
      }
    }
    model.dispose();
  },
);

Deno.test("engines: a single micro-batch stays on this thread", opts, async () => {
  const model = modelWithAdapters(8);
  const pairs = toyExamples().map((e) => ({ prompt: e.prompt, response: e.chosen }));
  const before = engineJobs();
  await withEngines(2, () => scorePairs(model, pairs, { microBatchSize: 16 }));
  assert.equal(engineJobs(), before);
  model.dispose();
});

async function trainRun(
  n: 1 | 2,
  config: Partial<TrainConfig> & Pick<TrainConfig, "stage">,
  lora = LORA,
): Promise<{ weights: Float32Array[]; rows: unknown[] }> {
  return await withEngines(n, async () => {
    const model = LlamaModel.random(CFG, 3);
    model.addLora(lora);
    const { history } = await train(model, toyExamples(), {
      steps: 4,
      batchSize: 8,
      lr: 1e-2,
      warmupSteps: 1,
      logEvery: 1,
      maxGradNorm: 0.5,
      ...config,
    }, { progress: false });
    const weights = snapshot(model);
    model.dispose();
    // Everything logged but the timings.
    const rows = history.map(({ tokens_per_sec: _t, elapsed_sec: _e, ...rest }) => rest);
    return { weights, rows };
  });
}

for (
  const [name, config, lora] of [
    ["SFT in 4 micro-batches", { stage: "sft", microBatchSize: 2 }, LORA],
    ["SFT with LoRA dropout", { stage: "sft", microBatchSize: 3 }, { ...LORA, lora_dropout: 0.1 }],
    ["S-DPO, live reference", {
      stage: "sdpo",
      numNegatives: 3,
      beta: 1,
      microBatchSize: 8,
      reference: "live",
    }, LORA],
    ["S-DPO, cached reference, unpacked", {
      stage: "sdpo",
      numNegatives: 3,
      beta: 1,
      microBatchSize: 8,
      reference: "precomputed",
      packPrompts: false,
    }, LORA],
    ["DMPO as released", {
      stage: "dmpo-released",
      numNegatives: 2,
      microBatchSize: 6,
      reference: "precomputed",
    }, LORA],
  ] as const
) {
  Deno.test(`engines: train() ${name} gives the one-engine weights and logs`, opts, async () => {
    const one = await trainRun(1, config, lora);
    const before = engineJobs();
    const two = await trainRun(2, config, lora);
    assert.ok(engineJobs() > before, "the worker engine took micro-batches");
    assert.deepEqual(two.rows, one.rows);
    assert.deepEqual(two.weights, one.weights);
  });
}

Deno.test(
  "engines: the replica follows a merged adapter and a new one (a new base)",
  opts,
  async () => {
    const run = (n: 1 | 2) =>
      withEngines(n, async () => {
        const model = LlamaModel.random(CFG, 4);
        model.addLora(LORA);
        const cfg = { steps: 3, batchSize: 8, microBatchSize: 4, lr: 1e-2, logEvery: 1 };
        await train(model, toyExamples(), { stage: "sft", ...cfg }, { progress: false });
        model.mergeAndUnloadLora();
        model.addLora({ ...LORA, seed: 9 });
        await train(model, toyExamples(), {
          stage: "sdpo",
          numNegatives: 3,
          beta: 1,
          reference: "live",
          ...cfg,
          microBatchSize: 8,
        }, { progress: false });
        const pairs = toyExamples().map((e) => ({ prompt: e.prompt, response: e.chosen }));
        const out = [
          snapshot(model),
          scorePairs(model, pairs, { microBatchSize: 4 }),
          scorePairs(model, pairs, { microBatchSize: 4, adapters: false }),
        ];
        model.dispose();
        return out;
      });
    const one = await run(1);
    const two = await run(2);
    assert.deepEqual(two, one);
  },
);

Deno.test("engines: full fine-tuning stays on one engine, with the same result", opts, async () => {
  const run = (n: 1 | 2) =>
    withEngines(n, async () => {
      const model = LlamaModel.random(CFG, 5);
      model.makeFullyTrainable();
      assert.equal(replicaUnsupported(model), "full fine-tuning");
      await train(model, toyExamples(), {
        stage: "sft",
        steps: 2,
        batchSize: 8,
        microBatchSize: 4,
        lr: 1e-2,
      }, { progress: false });
      const w = snapshot(model);
      model.dispose();
      return w;
    });
  const one = await run(1);
  const before = engineJobs();
  const two = await run(2);
  assert.equal(engineJobs(), before);
  assert.deepEqual(two, one);
});

Deno.test("engines: a reply keeps NaN, ±Infinity and exact doubles; an oversized one is an error", () => {
  const ctrl = new SharedArrayBuffer(8);
  const out = new SharedArrayBuffer(3 * 4 + (1 << 16));
  const body = [{ loss: NaN, metrics: { a: Infinity, b: -Infinity, c: 0.1 + 0.2 }, tokens: 7 }];
  reply(ctrl, out, body, Float32Array.of(1.5, -2, 3));
  const got = readReply(ctrl, out);
  assert.deepEqual(got.json, body);
  assert.deepEqual(Array.from(got.floats), [1.5, -2, 3]);
  const ctrl2 = new SharedArrayBuffer(8);
  reply(ctrl2, out, {}, new Float32Array(4));
  assert.match(String((readReply(ctrl2, out).json as { error: string }).error), /exceeds/);
});
