import assert from "node:assert/strict";
import { initBackend, tf } from "../../src/backend.ts";
import { buildTokenizer, buildWorld } from "../../src/experiments/common.ts";
import {
  DMPO_PROTOCOL,
  dmpoExample,
  dmpoPairRows,
  dmpoTrainSamples,
  epochSteps,
} from "../../src/experiments/dmpo.ts";
import {
  checkHeadroom,
  genreFeatures,
  genreNames,
  rewardDiagnostics,
  summaryText,
  trueTopGenres,
} from "../../src/experiments/dpo4rec.ts";
import { dmpoSamples, sdpoSamples, trueScores } from "../../src/data/world.ts";
import { worldDmpoPrompt } from "../../src/data/world_text.ts";
import { Sasrec } from "../../src/baselines/sasrec.ts";
import { ConfigError } from "../../src/errors.ts";

await initBackend("wasm", { quiet: true });

Deno.test("dmpoPairRows: one pair prompt per negative, each naming the positive and that negative", () => {
  const world = buildWorld();
  const samples = dmpoSamples(world, "train", { numNegatives: 5 }).slice(0, 200);
  const rows3 = dmpoPairRows(samples, 3, 17);
  assert.equal(rows3.length, 600);
  let positiveFirst = 0;
  samples.forEach((s, i) => {
    for (let j = 0; j < 3; j++) {
      const r = rows3[3 * i + j];
      assert.deepEqual(r.negativeIds, [s.negativeIds[j]]);
      assert.deepEqual(r.negatives, [s.negatives[j]]);
      assert.equal(r.positiveId, s.positiveId);
      assert.deepEqual(new Set(r.pairIds), new Set([s.positiveId, s.negativeIds[j]]));
      assert.deepEqual(r.pair, r.pairIds.map((id) => world.items[id].title));
      assert.equal(r.positiveFirst, r.pairIds[0] === s.positiveId);
      if (j === 0) assert.deepEqual(r.pair, s.pair, "row 0 is the sample's own (SFT) pair");
      else positiveFirst += r.positiveFirst ? 1 : 0;
      // The prompt names both items of the row.
      const p = worldDmpoPrompt(r, world.domains[0]).prompt;
      assert.ok(p.includes(`<Title:${s.positive}>`) && p.includes(`<Title:${s.negatives[j]}>`));
    }
  });
  // The order coin of rows ≥ 1 is fair (400 coins: within 4.5 sd of 200).
  assert.ok(Math.abs(positiveFirst - 200) < 45, `${positiveFirst}`);
  // Nested: the rows of K = 2 are the first 2 rows of K = 3 (and of K = 5).
  const rows2 = dmpoPairRows(samples, 2, 17), rows5 = dmpoPairRows(samples, 5, 17);
  samples.forEach((_, i) => {
    assert.deepEqual(rows2.slice(2 * i, 2 * i + 2), rows3.slice(3 * i, 3 * i + 2));
    assert.deepEqual(rows3.slice(3 * i, 3 * i + 3), rows5.slice(5 * i, 5 * i + 3));
  });
  assert.throws(() => dmpoPairRows(samples, 6), ConfigError);
  assert.throws(() => dmpoPairRows(samples, 0), ConfigError);
});

Deno.test("DMPO train rows: every rejected title is named in its own prompt (the K = 3 pathology)", () => {
  const world = buildWorld();
  const tok = buildTokenizer(world, sdpoSamples(world, "train")[0]);
  const users = dmpoTrainSamples(world, DMPO_PROTOCOL.small.users, 3);
  assert.equal(users.length, 100);
  assert.equal(new Set(users.map((s) => s.user)).size, 100, "one row per user");
  const rows = dmpoPairRows(users, 3, 17);
  for (const r of rows) {
    const e = dmpoExample(tok, r, world, 1);
    assert.equal(e.rejected.length, 1);
    const prompt = tok.decode(e.prompt, { skipSpecial: true });
    const rejected = tok.decode(e.rejected[0], { skipSpecial: true });
    const chosen = tok.decode(e.chosen, { skipSpecial: true });
    const title = rejected.replace(/^<Title: /, "").replace(/>$/, "");
    const pos = chosen.replace(/^<Title: /, "").replace(/>$/, "");
    assert.ok(prompt.includes(title), `rejected ${title} named in the prompt`);
    assert.ok(prompt.includes(pos), `chosen ${pos} named in the prompt`);
  }
  // The released budget: 3 epochs of the rows at batch 8 (K=1: 100 rows, K=3: 300).
  assert.equal(epochSteps(100, 3, 8), 38);
  assert.equal(epochSteps(300, 3, 8), 113);
  assert.equal(epochSteps(100, 5, 16), 32);
  assert.equal(epochSteps(1, 1, 8), 1);
});

Deno.test("checkHeadroom: refuses (ConfigError naming the knob) or flags a channel without headroom", () => {
  const ok = checkHeadroom(0.30, 0.36, 0.03, "refuse", 2);
  assert.ok(ok.ok);
  assert.ok(Math.abs(ok.gap - 0.06) < 1e-12);
  const flag = checkHeadroom(0.381, 0.385, 0.03, "flag", 10);
  assert.equal(flag.ok, false);
  assert.throws(
    () => checkHeadroom(0.381, 0.385, 0.03, "refuse", 10),
    (e: unknown) =>
      e instanceof ConfigError && /sasrecWindow/.test(e.message) && /0\.004/.test(e.message),
  );
});

Deno.test("rewardDiagnostics equals the rewards computed by hand from SASRec's scores", () => {
  const world = buildWorld();
  const G = world.config.numGenres;
  const names = genreNames(world);
  const rec = new Sasrec({ numItems: world.items.length, extraFeatureDim: G, seed: 3 });
  // A random SASRec whose extra projection is not zero, so features change the scores.
  try {
    const w = (rec as unknown as { wExtra: tf.Variable }).wExtra;
    w.assign(tf.randomNormal(w.shape, 0, 0.5, "float32", 7));
    const users = world.splits.train.slice(0, 6).map((u) => ({
      user: u,
      historyIds: world.users[u].histories[0],
    }));
    const texts = users.map((_, i) => [
      summaryText(names, [i % G, (i + 1) % G]),
      summaryText(names, [(i + 3) % G]),
      summaryText(names, [i % G, (i + 1) % G]),
    ]);
    const rows = rewardDiagnostics(rec, world, users, [{ temperature: 1, texts }], [1, 3], 5);
    assert.deepEqual(rows.map((r) => r.items), [1, 3, "exact"]);
    // By hand: log-softmax over the domain's items, exact = Σ q log p.
    const ids = world.domainItems[0];
    let gap = 0, agree = 0, total = 0;
    users.forEach((u, i) => {
      const gs = [[i % G, (i + 1) % G], [(i + 3) % G]];
      const r = gs.map((g) => {
        const sc = rec.scoreBatch([u.historyIds], [ids], [genreFeatures(g, G)])[0];
        const m = Math.max(...sc);
        const lse = m + Math.log(sc.reduce((a, x) => a + Math.exp(x - m), 0));
        const q = trueScores(world, u.user);
        return ids.reduce((a, id, j) => a + q[id] * (sc[j] - lse), 0);
      });
      total += 2 * r[0] + r[1];
      const [hi, lo] = r[0] >= r[1] ? [0, 1] : [1, 0];
      gap += r[hi] - r[lo];
      const truth = trueTopGenres(world, u.user);
      const prec = (g: number[]) => g.filter((x) => truth.includes(x)).length / g.length;
      const a = prec(gs[hi]), b = prec(gs[lo]);
      agree += a > b ? 1 : a === b ? 0.5 : 0;
    });
    const exact = rows[2];
    assert.equal(exact.prompts_with_choice, 6);
    assert.ok(Math.abs(exact.best_minus_worst - gap / 6) < 1e-4, `${exact.best_minus_worst}`);
    assert.ok(Math.abs(exact.mean_reward - total / 18) < 1e-4);
    assert.equal(exact.agree, agree / 6);
    assert.equal(exact.distinct, 2);
    // M items: the mean log-prob of the first M held-out items; M = 1 and 3 both computed.
    for (const r of rows.slice(0, 2)) assert.ok(Number.isFinite(r.best_minus_worst));
  } finally {
    rec.dispose();
  }
});
