import assert from "node:assert/strict";
import {
  crossDomainDmpo,
  crossDomainSdpo,
  DEFAULT_WORLD_CONFIG,
  dmpoSamples,
  fewShot,
  historyBayesScores,
  makeWorld,
  oracleScores,
  popularityScores,
  type ReferenceScorer,
  type SdpoSample,
  sdpoSamples,
  trueScores,
  type World,
} from "../../src/data/world.ts";
import { worldDmpoPrompt, worldSdpoPrompt } from "../../src/data/world_text.ts";
import { ConfigError } from "../../src/errors.ts";
import { Rng } from "../../src/rng.ts";

let cached: World | undefined;
/** The default world, built once for the whole file. */
function defaultWorld(): World {
  cached ??= makeWorld();
  return cached;
}

/** Brute-force HR@1: argmax of the scorer over the candidates (first max wins). */
function bruteHr1(world: World, samples: SdpoSample[], scorer: ReferenceScorer): number {
  let hits = 0;
  for (const s of samples) {
    const sc = scorer(world, s, s.candidateIds);
    let best = 0;
    for (let j = 1; j < sc.length; j++) if (sc[j] > sc[best]) best = j;
    if (s.candidateIds[best] === s.positiveId) hits++;
  }
  return hits / samples.length;
}

Deno.test("makeWorld() is deterministic: same seed deep-equal, different seed different", () => {
  const a = defaultWorld();
  const b = makeWorld({ seed: DEFAULT_WORLD_CONFIG.seed });
  assert.deepEqual(a, b);
  const c = makeWorld({ seed: 1 });
  assert.notDeepEqual(a.items.map((i) => i.title), c.items.map((i) => i.title));
  assert.notDeepEqual(a.users[0].histories, c.users[0].histories);
});

Deno.test("makeWorld() default shape: domains, genres, splits, id invariants", () => {
  const w = defaultWorld();
  assert.equal(w.items.length, 800);
  assert.deepEqual(w.domains.map((d) => d.noun), ["movie", "game"]);
  assert.deepEqual(
    [w.splits.train.length, w.splits.valid.length, w.splits.test.length],
    [1400, 200, 400],
  );
  w.items.forEach((it, i) => {
    assert.equal(it.id, i);
    assert.equal(w.titleToId[it.title], i);
    assert.equal(it.words.join(" "), it.title);
    assert.ok(it.words.length >= 2 && it.words.length <= 3, it.title);
    assert.ok(it.popularity > 0);
  });
  for (let d = 0; d < 2; d++) {
    for (let g = 0; g < 8; g++) assert.equal(w.genreItems[d][g].length, 50);
  }
  for (const u of w.users) {
    for (let d = 0; d < 2; d++) {
      const h = u.histories[d];
      assert.ok(h.length >= 5 && h.length <= 10);
      assert.equal(new Set(h).size, h.length);
      assert.ok(h.every((id) => w.items[id].domain === d));
      assert.ok(Math.abs(u.taste[d].reduce((a, b) => a + b, 0) - 1) < 1e-9);
    }
  }
});

Deno.test("makeWorld() titles are unique and none is a contiguous word sub-sequence of another", () => {
  const w = defaultWorld();
  const titles = w.items.map((i) => i.words);
  assert.equal(new Set(w.items.map((i) => i.title)).size, titles.length);
  // Word level, brute force: every contiguous word sub-sequence of every title, counted.
  const key = (ws: string[]) => ws.join("\u0001");
  const containing = new Map<string, number>();
  for (const ws of titles) {
    const subs = new Set<string>();
    for (let i = 0; i < ws.length; i++) {
      for (let j = i + 1; j <= ws.length; j++) subs.add(key(ws.slice(i, j)));
    }
    for (const k of subs) containing.set(k, (containing.get(k) ?? 0) + 1);
  }
  for (const ws of titles) assert.equal(containing.get(key(ws)), 1, ws.join(" "));
  // The stronger character-level guarantee, so substring validity is unambiguous.
  const all = w.items.map((i) => i.title);
  for (const a of all) assert.equal(all.filter((b) => b.includes(a)).length, 1, a);
});

Deno.test("makeWorld() rejects bad knobs with ConfigError naming the field", () => {
  const bad = (field: string) => (e: unknown) =>
    e instanceof ConfigError && e.field === field && e.message.includes(field);
  assert.throws(() => makeWorld({ historyLen: [5, 3] }), bad("historyLen"));
  assert.throws(() => makeWorld({ numDomains: 5 }), bad("numDomains"));
  assert.throws(() => makeWorld({ titleNoise: 2 }), bad("titleNoise"));
  assert.throws(
    () => makeWorld({ numItems: 400, numGenres: 1, wordsPerGenre: 3, numUsers: 1 }),
    bad("numItems"),
  );
});

Deno.test("trueScores() sums to 1 per user and equals taste·pop off the history", () => {
  const w = defaultWorld();
  for (const user of [0, 1, 7, 1999]) {
    for (const domain of [0, 1]) {
      const p = trueScores(w, user, { domain });
      assert.equal(p.length, w.items.length);
      assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-9);
      const hist = new Set(w.users[user].histories[domain]);
      let z = 0;
      for (const it of w.items) {
        if (it.domain === domain && !hist.has(it.id)) {
          z += w.users[user].taste[domain][it.genre] * it.popularity;
        }
      }
      for (const it of w.items) {
        const want = it.domain !== domain || hist.has(it.id)
          ? 0
          : w.users[user].taste[domain][it.genre] * it.popularity / z;
        assert.ok(Math.abs(p[it.id] - want) < 1e-12);
      }
    }
  }
  const plain = trueScores(w, 3, { history: [] });
  assert.ok(Math.abs(plain.reduce((a, b) => a + b, 0) - 1) < 1e-9);
});

Deno.test("trueScores() short-term knob: w raises the last item's genre; histories follow it", () => {
  const w = makeWorld({ shortTermWeight: 0.6, numUsers: 400, numDomains: 1 });
  const w0 = makeWorld({ shortTermWeight: 0, numUsers: 400, numDomains: 1 });
  const u = w.users[0], h = u.histories[0];
  const last = w.items[h[h.length - 1]].genre;
  const p = trueScores(w, 0);
  const raw = w.items.map((it) =>
    h.includes(it.id) ? 0 : (0.4 * u.taste[0][it.genre] + (it.genre === last ? 0.6 : 0)) *
      it.popularity
  );
  const z = raw.reduce((x, y) => x + y, 0);
  raw.forEach((r, i) => assert.ok(Math.abs(p[i] - r / z) < 1e-12));
  const repeatRate = (x: World) => {
    let rep = 0, n = 0;
    for (const user of x.users) {
      const hh = user.histories[0];
      for (let t = 1; t < hh.length; t++, n++) {
        if (x.items[hh[t]].genre === x.items[hh[t - 1]].genre) rep++;
      }
    }
    return rep / n;
  };
  assert.ok(repeatRate(w) > repeatRate(w0) + 0.1, `${repeatRate(w)} vs ${repeatRate(w0)}`);
});

Deno.test("sdpoSamples() targets follow trueScores (genre frequencies, 1 user × 6000 draws)", () => {
  const w = makeWorld({ numUsers: 1, numDomains: 1, splitFractions: [1, 0, 0] });
  const s = sdpoSamples(w, "train", { drawsPerUser: 6000, numCandidates: 2 });
  const p = trueScores(w, 0);
  for (let g = 0; g < 8; g++) {
    const want = w.genreItems[0][g].reduce((a, id) => a + p[id], 0);
    const got = s.filter((x) => w.items[x.positiveId].genre === g).length / s.length;
    assert.ok(Math.abs(got - want) < 0.025, `genre ${g}: ${got} vs ${want}`);
  }
});

Deno.test("sdpoSamples() candidates: positive exactly once, 20 distinct, none in history", () => {
  const w = defaultWorld();
  for (const negativeSampler of ["uniform", "popularity", "same-genre"] as const) {
    for (const split of ["valid", "test"] as const) {
      const samples = sdpoSamples(w, split, { negativeSampler, drawsPerUser: 1 });
      assert.equal(samples.length, w.splits[split].length);
      for (const s of samples) {
        assert.equal(s.candidates.length, 20);
        assert.equal(new Set(s.candidates).size, 20);
        assert.equal(s.candidates.filter((c) => c === s.positive).length, 1);
        assert.equal(s.candidates[s.positiveIndex], s.positive);
        assert.equal(s.candidateIds[s.positiveIndex], s.positiveId);
        assert.deepEqual(s.candidates, s.candidateIds.map((id) => w.items[id].title));
        assert.deepEqual(s.history, s.historyIds.map((id) => w.items[id].title));
        assert.deepEqual(s.historyIds, w.users[s.user].histories[0]);
        assert.ok(s.candidates.every((c) => !s.history.includes(c)));
        assert.deepEqual(s.negatives, s.candidates.filter((c) => c !== s.positive));
        assert.deepEqual(s.negativeIds, s.candidateIds.filter((id) => id !== s.positiveId));
        assert.ok(s.candidateIds.every((id) => w.items[id].domain === 0));
      }
    }
  }
  // same-genre negatives really are same-genre (50 per genre, at most 10 in the history)
  const hard = sdpoSamples(w, "test", { negativeSampler: "same-genre" });
  for (const s of hard) {
    const g = w.items[s.positiveId].genre;
    assert.ok(s.negativeIds.every((id) => w.items[id].genre === g));
  }
  // defaults: 16 draws per train user, 2 otherwise; deterministic
  assert.equal(sdpoSamples(w, "valid").length, 400);
  assert.deepEqual(sdpoSamples(w, "test"), sdpoSamples(w, "test"));
});

Deno.test("reference scorers: oracle HR@1 > history-Bayes > popularity > random (1/20)", () => {
  const w = defaultWorld();
  const test = sdpoSamples(w, "test");
  assert.equal(test.length, 800);
  const oracle = bruteHr1(w, test, oracleScores);
  const hb = bruteHr1(w, test, historyBayesScores);
  const pop = bruteHr1(w, test, popularityScores);
  // random by brute force: a seeded uniform pick per sample
  const rng = new Rng(5);
  const random = test.filter((s) => rng.int(20) === s.positiveIndex).length / test.length;
  assert.ok(oracle > hb && hb > pop && pop > 0.05 + 0.05, `${oracle} ${hb} ${pop}`);
  assert.ok(Math.abs(random - 0.05) < 0.03, `random ${random}`);
  assert.ok(oracle > 0.35 && oracle < 0.55, `oracle ${oracle}`);
});

Deno.test("historyBayesScores() equals the Dirichlet-posterior formula by hand", () => {
  const w = defaultWorld();
  const s = sdpoSamples(w, "test")[0];
  const counts = new Array(8).fill(0);
  for (const id of s.historyIds) counts[w.items[id].genre]++;
  const n = s.historyIds.length;
  const want = s.candidateIds.map((id) =>
    (0.15 + counts[w.items[id].genre]) / (8 * 0.15 + n) * w.items[id].popularity
  );
  const got = historyBayesScores(w, s, s.candidateIds);
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-12));
  assert.ok(historyBayesScores(w, s, s.historyIds).every((x) => x === 0));
});

Deno.test("dmpoSamples() pairs: positive and negatives[0] named, k distinct popular negatives", () => {
  const w = defaultWorld();
  for (const k of [1, 3, 5]) {
    const samples = dmpoSamples(w, "test", { numNegatives: k });
    assert.equal(samples.length, 800);
    let first = 0;
    for (const s of samples) {
      assert.equal(s.negatives.length, k);
      assert.equal(new Set([s.positiveId, ...s.negativeIds]).size, k + 1);
      assert.ok(s.negativeIds.every((id) => !s.historyIds.includes(id)));
      assert.ok(!s.historyIds.includes(s.positiveId));
      const want = s.positiveFirst ? [s.positive, s.negatives[0]] : [s.negatives[0], s.positive];
      assert.deepEqual(s.pair, want);
      assert.deepEqual(s.pair, s.pairIds.map((id) => w.items[id].title));
      assert.equal(s.noun, "movie");
      if (s.positiveFirst) first++;
    }
    assert.ok(Math.abs(first / samples.length - 0.5) < 0.07);
  }
  assert.equal(dmpoSamples(w, "test").length, 800);
  // popularity-drawn negatives are more popular on average than a uniform item
  const meanPop = (ids: number[]) =>
    ids.reduce((a, id) => a + w.items[id].popularity, 0) / ids.length;
  const negs = dmpoSamples(w, "test").flatMap((s) => s.negativeIds);
  assert.ok(meanPop(negs) > 1.3 * meanPop(w.domainItems[0]));
  // k = 1: a negative's genre frequency follows the genre's popularity mass outside the history
  const one = makeWorld({ numUsers: 1, numDomains: 1, splitFractions: [1, 0, 0] });
  const draws = dmpoSamples(one, "train", { drawsPerUser: 6000 });
  const h1 = new Set(one.users[0].histories[0]);
  const pool = one.domainItems[0].filter((id) => !h1.has(id));
  const total = pool.reduce((a, id) => a + one.items[id].popularity, 0);
  for (let g = 0; g < 8; g++) {
    const want = pool.filter((id) => one.items[id].genre === g)
      .reduce((a, id) => a + one.items[id].popularity, 0) / total;
    const got = draws.filter((s) => one.items[s.negativeIds[0]].genre === g).length / draws.length;
    assert.ok(Math.abs(got - want) < 0.03, `genre ${g}: ${got} vs ${want}`);
  }
  // oracle AUC-like check: the true p ranks the positive above the named negative mostly
  const ds = dmpoSamples(w, "test");
  const acc = ds.filter((s) => {
    const [a, b] = oracleScores(w, s, [s.positiveId, s.negativeIds[0]]);
    return a > b;
  }).length / ds.length;
  assert.ok(acc > 0.8, `oracle pairwise accuracy ${acc}`);
});

Deno.test("fewShot() draws n distinct samples in original order, deterministically", () => {
  const xs = Array.from({ length: 100 }, (_, i) => ({ i }));
  const a = fewShot(xs, 10, new Rng(3));
  assert.equal(a.length, 10);
  assert.equal(new Set(a).size, 10);
  assert.ok(a.every((x, j) => j === 0 || a[j - 1].i < x.i));
  assert.deepEqual(a, fewShot(xs, 10, new Rng(3)));
  assert.notDeepEqual(a, fewShot(xs, 10, new Rng(4)));
  assert.throws(() => fewShot(xs, 101, new Rng(0)));
});

Deno.test("crossDomainSdpo()/crossDomainDmpo() train on domain 0, test on domain 1", () => {
  const w = makeWorld({ numUsers: 100 });
  const s = crossDomainSdpo(w, { drawsPerUser: 1 });
  assert.ok(s.train.every((x) => x.domain === 0) && s.valid.every((x) => x.domain === 0));
  assert.ok(s.test.every((x) => x.domain === 1 && x.candidateIds.every((id) => id >= 400)));
  assert.ok(s.testSource.every((x) => x.domain === 0));
  assert.deepEqual(s.test.map((x) => x.user), s.testSource.map((x) => x.user));
  const d = crossDomainDmpo(w, { numNegatives: 2 });
  assert.ok(d.test.every((x) => x.noun === "game" && x.negatives.length === 2));
  assert.throws(() => crossDomainSdpo(w, { source: 1, target: 1 }), ConfigError);
  // tastes are shared by default, so the oracle on domain 1 uses the same taste
  assert.deepEqual(w.users[0].taste[0], w.users[0].taste[1]);
});

Deno.test("worldSdpoPrompt()/worldDmpoPrompt() follow the papers' wording with the domain noun", () => {
  const w = defaultWorld();
  const s = sdpoSamples(w, "test")[0];
  const p = worldSdpoPrompt(s, w.domains[0]);
  assert.ok(p.startsWith(`This person has watched ${s.history.join(", ")} recently. `));
  assert.ok(p.includes("the following 20 movie titles: " + s.candidates.join(", ") + ". Answer:"));
  assert.ok(p.endsWith("Answer:"));
  const d = dmpoSamples(w, "test", { numNegatives: 2, domain: 1 })[0];
  const t = worldDmpoPrompt(d, w.domains[1]);
  assert.equal(
    t.prompt,
    "You are an assistant working on game recommendations. Here is the user's history of " +
      "games they have played: " + d.history.map((h) => " <Title:" + h + "> ").join("") +
      ". Rank the likelihood of the user playing the two games " + " <Title:" + d.pair[0] +
      "> " + " and " + " <Title:" + d.pair[1] + "> " + ".",
  );
  assert.equal(t.chosen, ` <Title:${d.positive}> ,  <Title:${d.negatives[0]}> `);
  assert.deepEqual(
    t.rejected,
    d.negatives.map((n) => ` <Title:${n}> ,  <Title:${d.positive}> `),
  );
});
