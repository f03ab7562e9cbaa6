import assert from "node:assert/strict";
import {
  hardestNegativeReport,
  informativeReport,
  makeWorld,
  oracleScores,
  type SdpoSample,
  sdpoSamples,
  trueScores,
  type World,
} from "../../src/data/world.ts";
import { negativeDiagnosticsTables } from "../../src/cli/world.ts";
import { hitsAtK } from "../../src/eval/metrics.ts";

/**
 * A 4-item world with values set by hand: genre 0 = items 0, 1; genre 1 = items 2, 3;
 * popularity [1, 2, 3, 0.5]; user 0's taste [0.8, 0.2]; empty histories. So
 * q ∝ [0.8, 1.6, 0.6, 0.1] / 3.1.
 */
function handWorld(): World {
  const w = makeWorld({
    numDomains: 1,
    numItems: 4,
    numGenres: 2,
    wordsPerGenre: 4,
    numSharedWords: 0,
    titleNoise: 0,
    numUsers: 4,
    historyLen: [0, 0],
    splitFractions: [0.5, 0, 0.5],
  });
  [1, 2, 3, 0.5].forEach((p, i) => (w.items[i].popularity = p));
  w.users[0].taste[0] = [0.8, 0.2];
  return w;
}

const sample = (positiveId: number, negativeIds: number[]) =>
  ({ user: 0, domain: 0, historyIds: [], positiveId, negativeIds }) as unknown as SdpoSample;

Deno.test("hand world: the law is taste × popularity as set", () => {
  const q = trueScores(handWorld(), 0);
  [0.8, 1.6, 0.6, 0.1].forEach((x, i) => assert.ok(Math.abs(q[i] - x / 3.1) < 1e-12));
});

Deno.test("hardestNegativeReport equals the hand-computed picks and ratios", () => {
  const w = handWorld();
  // Positive 0 (q 0.8), negatives 1 (1.6), 2 (0.6), 3 (0.1): popularity picks 2 (ratio 0.75,
  // worse), oracle picks 1 (ratio 2, better), same-genre has only 1 (ratio 2, better).
  // Positive 1 (q 1.6), negatives 0, 2, 3: popularity picks 2 (0.375, worse), oracle 0
  // (0.5, worse), same-genre 0 (0.5, worse).
  const rows = hardestNegativeReport(w, [sample(0, [1, 2, 3]), sample(1, [0, 2, 3])]);
  const by = Object.fromEntries(rows.map((r) => [r.criterion, r]));
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  assert.equal(by.popularity.prompts, 2);
  close(by.popularity.truly_worse, 1);
  close(by.popularity.median_ratio, (0.75 + 0.375) / 2);
  close(by.oracle.truly_worse, 0.5);
  close(by.oracle.median_ratio, (2 + 0.5) / 2);
  close(by["same-genre"].truly_worse, 0.5);
  close(by["same-genre"].median_ratio, 1.25);
  // random: one of the prompt's negatives; its ratio is one of the hand values.
  assert.equal(by.random.prompts, 2);
  // A prompt without a same-genre negative is not counted for same-genre.
  const only = hardestNegativeReport(w, [sample(0, [2, 3])]);
  assert.equal(only.find((r) => r.criterion === "same-genre")!.prompts, 0);
  assert.ok(Number.isNaN(only.find((r) => r.criterion === "same-genre")!.truly_worse));
});

Deno.test("informativeReport counts the hand-computed informative and better negatives", () => {
  const w = handWorld();
  const prompts = [sample(0, []), sample(1, [])];
  // Factor 4. Positive 0 (q 0.8, threshold 0.2): 1 and 2 informative, 1 better. Positive 1
  // (q 1.6, threshold 0.4): 0 and 2 informative, none better. K = 3 takes the whole pool.
  const rows = informativeReport(w, prompts, [1, 3], { factor: 4 });
  for (const r of rows.filter((x) => x.k === 3)) {
    assert.equal(r.informative, 2, r.sampler);
    assert.equal(r.truly_better, 0.5, r.sampler);
    assert.equal(r.any_informative, 1, r.sampler);
  }
  // Oracle-hard K = 1 mines the whole pool: item 1 for positive 0 (informative, better),
  // item 0 for positive 1 (informative, not better).
  const oh = rows.find((r) => r.sampler === "oracle-hard" && r.k === 1)!;
  assert.deepEqual([oh.informative, oh.truly_better, oh.any_informative], [1, 0.5, 1]);
  // Same-genre K = 1 draws the only same-genre item: 1 for positive 0 (informative,
  // better), 0 for positive 1 (informative, not better).
  const sg = rows.find((r) => r.sampler === "same-genre" && r.k === 1)!;
  assert.deepEqual([sg.informative, sg.truly_better], [1, 0.5]);
  // Factor 1: informative = at least as likely as the positive.
  const f1 = informativeReport(w, prompts, [3], { factor: 1 });
  for (const r of f1) assert.equal(r.informative, 0.5, r.sampler);
  assert.throws(() => informativeReport(w, prompts, [1], { factor: 0.5 }), /factor/);
});

Deno.test("default world: the oracle's hardest negative is worse exactly on its HR@1 hits", () => {
  // Independent route: the oracle's hardest negative is truly worse than the positive iff the
  // positive is the argmax of the 20 candidates, i.e. iff the oracle's top-1 is a hit.
  const w = makeWorld();
  const test = sdpoSamples(w, "test").slice(0, 300);
  const hits = hitsAtK(
    { scores: test.map((s) => oracleScores(w, s, s.candidateIds)) },
    test.map((s) => s.positiveIndex),
    1,
  );
  const hr = hits.reduce((a, b) => a + b, 0) / hits.length;
  const oracle = hardestNegativeReport(w, test).find((r) => r.criterion === "oracle")!;
  assert.equal(oracle.prompts, 300);
  assert.ok(Math.abs(oracle.truly_worse - hr) < 1e-12, `${oracle.truly_worse} vs ${hr}`);
  const t = negativeDiagnosticsTables(100, {}, [1, 3]);
  assert.match(t, /\| oracle \| 100 \| /);
  assert.match(t, /\| oracle-hard \| /);
});
