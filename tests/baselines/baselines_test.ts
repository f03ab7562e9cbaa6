import assert from "node:assert/strict";
import { initBackend, tf } from "../../src/backend.ts";
import { makeWorld, oracleScores, sdpoSamples } from "../../src/data/world.ts";
import { InputError } from "../../src/errors.ts";
import { hitRateAtK } from "../../src/eval/metrics.ts";
import { Rng } from "../../src/rng.ts";
import { embedLookup, type NeuralRecommender } from "../../src/baselines/_common.ts";
import {
  Caser,
  encodeHistory,
  evaluateOnSamples,
  Gru4rec,
  Popularity,
  Sasrec,
  type SequentialRecommender,
  trainBaseline,
  type TrainExample,
  trainingExamples,
} from "../../src/baselines/mod.ts";

await initBackend("wasm", { quiet: true });

// Small world: 2 domains × 200 items, 600 users (420 train / 60 valid / 120 test).
const WORLD = makeWorld({ numItems: 200, numUsers: 600 });
const TEST = sdpoSamples(WORLD, "test");
const EXAMPLES = trainingExamples(WORLD, { sdpoDraws: 4 });
const ORACLE_HR1 = hitRateAtK(
  { scores: TEST.map((s) => oracleScores(WORLD, s, s.candidateIds)) },
  TEST.map((s) => s.positiveIndex),
  1,
);
let popularityHr1 = NaN;

Deno.test("trainingExamples() gives every history prefix plus the S-DPO targets", () => {
  const train = WORLD.splits.train;
  const prefixes = train.reduce((a, u) => a + WORLD.users[u].histories[0].length - 1, 0);
  assert.equal(trainingExamples(WORLD, { sdpoDraws: 0 }).length, prefixes);
  assert.equal(EXAMPLES.length, prefixes + 4 * train.length);
  const u = WORLD.users[train[0]].histories[0];
  assert.deepEqual(EXAMPLES[0], { historyIds: [u[0]], targetId: u[1] });
});

Deno.test("Popularity beats random HR@1 on test samples", async () => {
  const rec = await trainBaseline("popularity", WORLD, { examples: EXAMPLES, quiet: true });
  const m = evaluateOnSamples(rec, TEST);
  popularityHr1 = m.hr1;
  assert.equal(m.n, TEST.length);
  assert.ok(m.hr1 > 0.1, `HR@1 ${m.hr1}`);
  rec.dispose();
});

Deno.test("Gru4rec beats random and popularity HR@1 on test samples", async () => {
  const rec = await trainBaseline("gru4rec", WORLD, {
    examples: EXAMPLES,
    epochs: 6,
    quiet: true,
  });
  const m = evaluateOnSamples(rec, TEST);
  // Observed 0.329 (popularity 0.160, oracle 0.479).
  assert.ok(m.hr1 > 0.2, `HR@1 ${m.hr1}`);
  rec.dispose();
});

Deno.test("Caser beats random and popularity HR@1 on test samples", async () => {
  const rec = await trainBaseline("caser", WORLD, {
    examples: EXAMPLES,
    epochs: 6,
    configs: { caser: { lr: 3e-3 } },
    quiet: true,
  });
  const m = evaluateOnSamples(rec, TEST);
  // Observed 0.254.
  assert.ok(m.hr1 > 0.2, `HR@1 ${m.hr1}`);
  rec.dispose();
});

Deno.test("Sasrec reaches 0.6 × oracle HR@1 and beats popularity", async () => {
  const rec = await trainBaseline("sasrec", WORLD, {
    examples: EXAMPLES,
    epochs: 6,
    configs: { sasrec: { lr: 3e-3 } },
    quiet: true,
  });
  const m = evaluateOnSamples(rec, TEST);
  // Observed 0.358 vs oracle 0.479 (0.6 × = 0.287) and popularity 0.160.
  assert.ok(m.hr1 >= 0.6 * ORACLE_HR1, `HR@1 ${m.hr1} vs oracle ${ORACLE_HR1}`);
  if (!Number.isNaN(popularityHr1)) assert.ok(m.hr1 > popularityHr1 + 0.05);
  rec.dispose();
});

// ---------------------------------------------------------------------------------------
// Tiny models: determinism, gradients, memory, errors

const TINY_ITEMS = 7;
const TINY: TrainExample[] = [
  { historyIds: [1, 2, 3], targetId: 4 },
  { historyIds: [5], targetId: 0 },
  { historyIds: [6, 2, 0, 1, 3], targetId: 2 },
  { historyIds: [3, 3], targetId: 6 },
];

type Builder = (seed: number, dropout?: number) => NeuralRecommender;
const TINY_BUILDERS: Record<string, Builder> = {
  gru4rec: (seed, dropout = 0.3) =>
    new Gru4rec({
      numItems: TINY_ITEMS,
      embeddingSize: 4,
      hiddenSize: 3,
      maxLen: 4,
      dropout,
      batchSize: 2,
      seed,
    }),
  caser: (seed, dropout = 0.5) =>
    new Caser({
      numItems: TINY_ITEMS,
      embeddingSize: 4,
      numHorizontal: 2,
      numVertical: 2,
      maxLen: 3,
      dropout,
      batchSize: 2,
      seed,
    }),
  sasrec: (seed, dropout = 0.2) =>
    new Sasrec({
      numItems: TINY_ITEMS,
      hiddenSize: 4,
      innerSize: 6,
      numHeads: 2,
      maxLen: 4,
      dropout,
      batchSize: 2,
      seed,
    }),
};

Deno.test("baselines are deterministic: same seed → identical scores", async (t) => {
  for (const [name, build] of Object.entries(TINY_BUILDERS)) {
    await t.step(name, async () => {
      const run = async (seed: number) => {
        const m = build(seed);
        await m.fit(TINY, { epochs: 2, quiet: true });
        const s = m.scoreBatch(TINY.map((e) => e.historyIds), TINY.map(() => [0, 1, 2, 3]));
        m.dispose();
        return s;
      };
      const a = await run(3), b = await run(3), c = await run(4);
      assert.deepEqual(a, b);
      assert.notDeepEqual(a, c);
    });
  }
});

Deno.test("embedLookup() gradient scatter-adds rows, repeated ids summed", () => {
  const table = tf.variable(tf.tensor2d([[1, 2], [3, 4], [5, 6]]));
  const w = tf.tensor2d([[1, 10], [2, 20], [3, 30], [4, 40]]);
  const ids = Int32Array.from([2, 0, 2, 1]);
  const { value, grads } = tf.variableGrads(
    () => tf.sum(tf.mul(embedLookup(table as tf.Tensor2D, ids), w)) as tf.Scalar,
    [table],
  );
  assert.equal(value.dataSync()[0], 5 + 60 + 2 + 40 + 15 + 180 + 12 + 160);
  assert.deepEqual(Array.from(grads[table.name].dataSync()), [2, 20, 4, 40, 4, 40]);
  tf.dispose([value, grads, table, w]);
});

Deno.test("baselines' gradients match finite differences on tiny configs", async (t) => {
  for (const [name, build] of Object.entries(TINY_BUILDERS)) {
    await t.step(name, () => {
      const m = build(11, 0);
      const vars = m.variables as tf.Variable[];
      const { value, grads } = tf.variableGrads(() => m.loss(TINY), vars);
      value.dispose();
      const lossAt = () => {
        const l = m.loss(TINY);
        const x = l.dataSync()[0];
        l.dispose();
        return x;
      };
      const rng = new Rng(5);
      const eps = 1e-3; // parameters are O(0.02) in SASRec: keep the step small
      for (const v of vars) {
        const g = grads[v.name].dataSync();
        const base = Float32Array.from(v.dataSync());
        for (let k = 0; k < 3; k++) {
          const i = rng.int(base.length);
          const at = (d: number) => {
            const p = Float32Array.from(base);
            p[i] += d;
            v.assign(tf.tensor(p, v.shape));
            return lossAt();
          };
          const fd = (at(eps) - at(-eps)) / (2 * eps);
          v.assign(tf.tensor(base, v.shape));
          assert.ok(
            Math.abs(fd - g[i]) <= 2e-3 + 0.05 * Math.abs(fd),
            `${v.name}[${i}]: analytic ${g[i]} vs finite difference ${fd}`,
          );
        }
      }
      tf.dispose(grads);
      m.dispose();
    });
  }
});

Deno.test("fit() keeps tf.memory().numTensors flat across epochs; dispose() frees all", async (t) => {
  for (const [name, build] of Object.entries(TINY_BUILDERS)) {
    await t.step(name, async () => {
      const before = tf.memory().numTensors;
      const m = build(1);
      const counts: number[] = [];
      await m.fit(TINY, {
        epochs: 3,
        quiet: true,
        onEpoch: () => counts.push(tf.memory().numTensors),
      });
      m.scoreCandidates([1, 2], [3, 4]);
      assert.deepEqual(counts, [counts[0], counts[0], counts[0]]);
      m.dispose();
      assert.equal(tf.memory().numTensors, before);
    });
  }
});

Deno.test("scoreCandidates() and fit() name the argument and element on bad input", async () => {
  const recs: SequentialRecommender[] = [
    new Popularity({ numItems: TINY_ITEMS }),
    ...Object.values(TINY_BUILDERS).map((b) => b(0)),
  ];
  for (const rec of recs) {
    assert.throws(() => rec.scoreCandidates([], [1, 2]), InputError, `"historyIds": empty history`);
    assert.throws(
      () => rec.scoreCandidates([1, 2], [3, 99]),
      InputError,
      `"candidateIds": element 2: unknown item id 99`,
    );
    assert.throws(() => rec.scoreCandidates([1, -1], [3]), InputError, `"historyIds": element 2`);
    assert.throws(
      () => rec.scoreBatch([[1], [2, 1.5]], [[3], [4]]),
      InputError,
      `"histories[2]": element 2: unknown item id 1.5`,
    );
    await assert.rejects(
      () => rec.fit([TINY[0], { historyIds: [], targetId: 1 }], { quiet: true }),
      InputError,
      `"train[2].historyIds": empty history`,
    );
    await assert.rejects(
      () => rec.fit([{ historyIds: [1], targetId: TINY_ITEMS }], { quiet: true }),
      InputError,
      `"train[1].targetId": element 1: unknown item id ${TINY_ITEMS}`,
    );
    rec.dispose();
  }
  assert.throws(() => evaluateOnSamples(recs[0], []), InputError, `"samples"`);
});

Deno.test("encodeHistory() returns the representation; extra features enter through a learned projection", async () => {
  const m = new Sasrec({
    numItems: TINY_ITEMS,
    hiddenSize: 4,
    innerSize: 6,
    maxLen: 4,
    extraFeatureDim: 2,
  });
  const f = [
    new Float32Array([1, 0]),
    new Float32Array([0, 1]),
    new Float32Array([1, 1]),
    new Float32Array(2),
  ];
  // Fresh projection is zero: features change nothing yet.
  assert.deepEqual(encodeHistory(m, [1, 2], f[0]), encodeHistory(m, [1, 2], f[1]));
  assert.equal(encodeHistory(m, [1, 2], f[0]).length, 4);
  assert.throws(() => encodeHistory(m, [1, 2]), InputError, `"extraFeatures"`);
  await assert.rejects(() => m.fit(TINY, { quiet: true }), InputError, `"extraFeatures"`);
  await m.fit(TINY, { epochs: 3, quiet: true, extraFeatures: f });
  assert.notDeepEqual(encodeHistory(m, [1, 2], f[0]), encodeHistory(m, [1, 2], f[1]));
  const a = m.scoreBatch([[1, 2], [1, 2]], [[3, 4], [3, 4]], [f[0], f[1]]);
  assert.notDeepEqual(a[0], a[1]);
  m.dispose();
  const plain = new Sasrec({ numItems: TINY_ITEMS, hiddenSize: 4, innerSize: 6, maxLen: 4 });
  assert.throws(() => encodeHistory(plain, [1], f[0]), InputError, `"extraFeatures"`);
  plain.dispose();
});
