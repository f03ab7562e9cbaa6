import assert from "node:assert/strict";
import {
  dmpoHistoryPairPosterior,
  dmpoPairPosterior,
  expectedHitsAtOne,
  historyGenreWeights,
  sdpoCandidatePosterior,
  sdpoExpectedHits,
} from "../../src/eval/truth.ts";
import { dmpoSamples, makeWorld, oracleScores, sdpoSamples } from "../../src/data/world.ts";
import { Rng } from "../../src/rng.ts";

Deno.test("expectedHitsAtOne: hand cases, ties averaged like hitsAtK", () => {
  // Row 1: top-1 is candidate 1 → its probability 0.5. Row 2: candidates 0 and 1 tie at the
  // top → (0.2 + 0.4) / 2. Row 3: all tied → 1/3 whatever the posterior.
  const e = expectedHitsAtOne(
    [[0.1, 0.9, 0.5], [1, 1, 0], [2, 2, 2]],
    [[0.2, 0.5, 0.3], [0.2, 0.4, 0.4], [0.7, 0.2, 0.1]],
  );
  [0.5, 0.3, 1 / 3].forEach((x, i) => assert.ok(Math.abs(e[i] - x) < 1e-12, `${e[i]} vs ${x}`));
  assert.throws(() => expectedHitsAtOne([[1, 2]], [[1]]), /row 1/);
  assert.throws(() => expectedHitsAtOne([[1, 2]], []), /posterior/);
});

// A small world where exact conditioning on a candidate set is possible by counting.
const tiny = () =>
  makeWorld({ numDomains: 1, numItems: 8, numGenres: 2, numUsers: 20, historyLen: [2, 2] });

Deno.test("sdpoCandidatePosterior = the frequency of each candidate being the target, by Monte Carlo from the world's own sampler", () => {
  const w = tiny();
  const samples = sdpoSamples(w, "test", {
    numCandidates: 3,
    drawsPerUser: 40000,
    rng: new Rng(5),
  });
  // Group by (user, unordered candidate set): counts of each candidate being the target.
  const groups = new Map<
    string,
    { s: (typeof samples)[0]; n: number; hits: Map<number, number> }
  >();
  for (const s of samples) {
    const key = `${s.user}:${[...s.candidateIds].sort((a, b) => a - b).join(",")}`;
    const g = groups.get(key) ?? { s, n: 0, hits: new Map() };
    g.n++;
    g.hits.set(s.positiveId, (g.hits.get(s.positiveId) ?? 0) + 1);
    groups.set(key, g);
  }
  const big = [...groups.values()].filter((g) => g.n >= 800);
  assert.ok(big.length >= 20, `${big.length} well-populated candidate sets`);
  let worst = 0, worstPop = 0;
  for (const g of big) {
    const post = sdpoCandidatePosterior(w, g.s);
    // A wrong law for comparison: ∝ popularity only (ignores the taste).
    const pops = g.s.candidateIds.map((id) => w.items[id].popularity);
    const sp = pops.reduce((a, b) => a + b, 0);
    g.s.candidateIds.forEach((id, j) => {
      const f = (g.hits.get(id) ?? 0) / g.n;
      const se = Math.sqrt(Math.max(post[j] * (1 - post[j]), 1e-4) / g.n);
      worst = Math.max(worst, Math.abs(f - post[j]) / se);
      worstPop = Math.max(worstPop, Math.abs(f - pops[j] / sp) / se);
    });
  }
  assert.ok(worst < 4.5, `largest deviation ${worst.toFixed(2)} SE`);
  assert.ok(worstPop > 10, `a popularity-only law is caught (${worstPop.toFixed(1)} SE)`);
});

Deno.test("sdpoExpectedHits: its mean equals the mean sampled hit (Monte Carlo), on 20 candidates of the default world", () => {
  const w = makeWorld({ numUsers: 400 });
  const rows = sdpoSamples(w, "test", { drawsPerUser: 50, rng: new Rng(2) });
  // Scorer: popularity (any fixed scorer works; its top-1 is not the oracle's).
  const scores = rows.map((s) => s.candidateIds.map((id) => w.items[id].popularity));
  const exp = sdpoExpectedHits(w, rows, scores);
  const hit: number[] = rows.map((s, i) =>
    scores[i].indexOf(Math.max(...scores[i])) === s.positiveIndex ? 1 : 0
  );
  const d = hit.map((h, i) => h - exp[i]);
  const md = d.reduce((a, b) => a + b, 0) / d.length;
  const sd = Math.sqrt(d.reduce((a, b) => a + (b - md) ** 2, 0) / (d.length - 1));
  assert.ok(Math.abs(md) < 4 * sd / Math.sqrt(d.length), `${md} vs SE ${sd / Math.sqrt(d.length)}`);
  // Far less variance than the sampled hit.
  const mh = hit.reduce((a, b) => a + b, 0) / hit.length;
  const varHit = hit.reduce((a, b) => a + (b - mh) ** 2, 0) / hit.length;
  const me = exp.reduce((a, b) => a + b, 0) / exp.length;
  const varExp = exp.reduce((a, b) => a + (b - me) ** 2, 0) / exp.length;
  assert.ok(varExp < varHit / 2, `var expected ${varExp} vs sampled ${varHit}`);
  // The oracle's own expected hit is the mean of its top candidate's posterior.
  const oracle = rows.map((s) => oracleScores(w, s, s.candidateIds));
  const eo = sdpoExpectedHits(w, rows.slice(0, 5), oracle.slice(0, 5));
  eo.forEach((x, i) => {
    const p = sdpoCandidatePosterior(w, rows[i]);
    assert.ok(Math.abs(x - Math.max(...p)) < 1e-12);
  });
});

/** Empirical P(x is the liked item | user, unordered named pair), from the world's sampler. */
function pairFrequencies(
  samples: ReturnType<typeof dmpoSamples>,
  keyOf: (s: ReturnType<typeof dmpoSamples>[0]) => string,
) {
  const groups = new Map<string, { s: (typeof samples)[0]; n: number; xPos: number; x: number }>();
  for (const s of samples) {
    const [lo, hi] = [s.positiveId, s.negativeIds[0]].sort((a, b) => a - b);
    const key = `${keyOf(s)}|${lo},${hi}`;
    const g = groups.get(key) ?? { s, n: 0, xPos: 0, x: lo };
    g.n++;
    if (s.positiveId === lo) g.xPos++;
    groups.set(key, g);
  }
  return [...groups.values()];
}

Deno.test("dmpoPairPosterior = the Monte Carlo frequency of the pair-generating process (popularity negatives, K = 3); the old τ·pop ratio is not", () => {
  const w = tiny();
  const samples = dmpoSamples(w, "test", { numNegatives: 3, drawsPerUser: 60000, rng: new Rng(9) });
  const groups = pairFrequencies(samples, (s) => `${s.user}`).filter((g) => g.n >= 1500);
  assert.ok(groups.length >= 30, `${groups.length} groups`);
  let worst = 0, worstOld = 0;
  for (const g of groups) {
    const y = g.s.positiveId === g.x ? g.s.negativeIds[0] : g.s.positiveId;
    const p = dmpoPairPosterior(w, g.s, g.x, y);
    const f = g.xPos / g.n;
    const se = Math.sqrt(Math.max(p * (1 - p), 1e-4) / g.n);
    worst = Math.max(worst, Math.abs(f - p) / se);
    const [ox, oy] = oracleScores(w, g.s, [g.x, y]);
    worstOld = Math.max(worstOld, Math.abs(f - ox / (ox + oy)) / se);
  }
  assert.ok(worst < 4.5, `largest deviation ${worst.toFixed(2)} SE`);
  assert.ok(worstOld > 10, `τ·pop is caught (${worstOld.toFixed(1)} SE)`);
  // Symmetric: P(x | {x, y}) + P(y | {x, y}) = 1.
  const s = samples[0];
  const a = dmpoPairPosterior(w, s, s.positiveId, s.negativeIds[0]);
  const b = dmpoPairPosterior(w, s, s.negativeIds[0], s.positiveId);
  assert.ok(Math.abs(a + b - 1) < 1e-12);
});

Deno.test("dmpoHistoryPairPosterior = the Monte Carlo frequency over users drawn from the prior, conditioning on the exact history and pair", () => {
  // 8 items in 2 genres, one-item histories: (history, pair) groups are well populated.
  const w = makeWorld({
    numDomains: 1,
    numItems: 8,
    numGenres: 2,
    numUsers: 200000,
    historyLen: [1, 1],
  });
  const samples = dmpoSamples(w, "train", { numNegatives: 1, drawsPerUser: 1, rng: new Rng(4) });
  const groups = pairFrequencies(samples, (s) => s.historyIds.join(",")).filter((g) => g.n >= 800);
  assert.ok(groups.length >= 15, `${groups.length} groups`);
  let worst = 0, worstPlugIn = 0;
  const cache = new Map<string, number[]>();
  for (const g of groups) {
    const y = g.s.positiveId === g.x ? g.s.negativeIds[0] : g.s.positiveId;
    const key = g.s.historyIds.join(",");
    if (!cache.has(key)) cache.set(key, historyGenreWeights(w, g.s, { draws: 20000 }));
    const p = dmpoHistoryPairPosterior(w, g.s, g.x, y, "popularity", cache.get(key));
    const f = g.xPos / g.n;
    const se = Math.sqrt(Math.max(p * (1 - p), 1e-4) / g.n);
    worst = Math.max(worst, Math.abs(f - p) / se);
    // The conjugate plug-in (posterior-mean genre share, ignoring Z(τ)) for comparison.
    const G = 2, a = w.config.tasteConcentration;
    const c = [0, 0];
    for (const id of g.s.historyIds) c[w.items[id].genre]++;
    const share = c.map((k) => (a + k) / (G * a + g.s.historyIds.length));
    const pp = (i: number) => share[w.items[i].genre] * w.items[i].popularity;
    worstPlugIn = Math.max(worstPlugIn, Math.abs(f - pp(g.x) / (pp(g.x) + pp(y))) / se);
  }
  assert.ok(worst < 4.5, `largest deviation ${worst.toFixed(2)} SE`);
  assert.ok(worstPlugIn > 8, `the τ·pop plug-in is caught (${worstPlugIn.toFixed(1)} SE)`);
});

Deno.test("historyGenreWeights: deterministic, positive, and with an empty history the prior's E[τ_g / Z]", () => {
  const w = tiny();
  const ctx = { user: 0, domain: 0, historyIds: w.users[0].histories[0] };
  const a = historyGenreWeights(w, ctx, { draws: 500 });
  assert.deepEqual(historyGenreWeights(w, ctx, { draws: 500 }), a);
  assert.ok(a.every((x) => x > 0));
  // Empty history: genres are exchangeable a priori up to their popularity mass; the
  // proposal is the prior itself (weights 1), so a plain Monte Carlo of τ_g / Z with the same
  // draws is an independent check of the estimator's normalisation.
  const e = historyGenreWeights(w, { user: 0, domain: 0, historyIds: [] }, { draws: 20000 });
  const G = w.config.numGenres;
  const mass = w.genreItems[0].map((ids) => ids.reduce((s, id) => s + w.items[id].popularity, 0));
  // Σ_g E[τ_g / Z] · mass_g = E[Z / Z] = 1 exactly for every draw.
  const total = e.reduce((s, x, g) => s + x * mass[g], 0);
  assert.ok(Math.abs(total - 1) < 1e-9, `${total}`);
  assert.equal(e.length, G);
});
