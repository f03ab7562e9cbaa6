import assert from "node:assert/strict";
import { initBackend, tf } from "../../src/backend.ts";
import { LlamaModel } from "../../src/model.ts";
import { makeWorld } from "../../src/data/world.ts";
import { findingsOfMetrics } from "../../src/cli/findings.ts";
import { Rng } from "../../src/rng.ts";
import { modelConfig } from "../../src/experiments/common.ts";
import {
  DPO4REC_PRESETS,
  dpo4recClaimSpecs,
  genreFeatures,
  genreNames,
  historyTopGenres,
  methodNames,
  parseSummary,
  run,
  sampleResponses,
  selectPair,
  summaryText,
  writeDpo4recResults,
} from "../../src/experiments/dpo4rec.ts";

await initBackend("wasm", { quiet: true });

Deno.test("selectPair() picks the argmax / argmin reward of the first N samples", () => {
  const rng = new Rng(0);
  const keys = ["a", "b", "c", "d", "e", "f"];
  // A fake reward: any numbers; the pair must be exactly (argmax, argmin) of the first n.
  const rewards = [0.3, -1.2, 2.5, 0.0, 9.0, -7.0];
  assert.deepEqual(selectPair(rewards, keys, 4, "reward", rng), { chosen: 2, rejected: 1 });
  assert.deepEqual(selectPair(rewards, keys, 6, "reward", rng), { chosen: 4, rejected: 5 });
  assert.deepEqual(selectPair(rewards, keys, 2, "reward", rng), { chosen: 0, rejected: 1 });
  // Randomised check against a brute-force argmax / argmin.
  const r = new Rng(7);
  for (let t = 0; t < 200; t++) {
    const n = 2 + r.int(7);
    const xs = Array.from({ length: 8 }, () => Math.round(r.normal() * 4) / 2);
    const pair = selectPair(xs, keys, n, "reward", rng);
    const head = xs.slice(0, n);
    const max = Math.max(...head), min = Math.min(...head);
    if (max === min) assert.equal(pair, null);
    else {
      assert.equal(xs[pair!.chosen], max);
      assert.equal(xs[pair!.rejected], min);
      assert.ok(pair!.chosen < n && pair!.rejected < n);
    }
  }
  // All equal (or within eps) → no preference.
  assert.equal(selectPair([1, 1, 1], keys, 3, "reward", rng), null);
  assert.equal(selectPair([1, 1 + 1e-9], keys, 2, "reward", rng), null);
});

Deno.test("selectPair() random mode: two distinct texts among the first N, seeded", () => {
  const keys = ["x", "x", "y", "z", "w"];
  const rewards = [0, 0, 0, 0, 0];
  for (let s = 0; s < 50; s++) {
    const p = selectPair(rewards, keys, 4, "random", new Rng(s))!;
    assert.ok(p.chosen < 4 && p.rejected < 4);
    assert.notEqual(keys[p.chosen], keys[p.rejected]);
    assert.deepEqual(selectPair(rewards, keys, 4, "random", new Rng(s)), p);
  }
  assert.equal(selectPair(rewards, ["x", "x", "x"], 3, "random", new Rng(0)), null);
});

Deno.test("summaries: history-count target, parsing, multi-hot features", () => {
  const world = makeWorld({ numUsers: 20 });
  const names = genreNames(world);
  assert.deepEqual(names.slice(0, 3), ["ghost", "laser", "cowboy"]);
  const g = (genre: number, k: number) => world.genreItems[0][genre][k];
  // Counts: genre 2 ×2, genre 5 ×1, genre 1 ×1 (more recent than 5) → [2, 1].
  assert.deepEqual(historyTopGenres(world, [g(2, 0), g(5, 0), g(2, 1), g(1, 0)]), [2, 1]);
  assert.deepEqual(historyTopGenres(world, [g(3, 0), g(3, 1)]), [3]);
  assert.equal(summaryText(names, [2, 1]), "likes cowboy and laser");
  assert.deepEqual(parseSummary("likes cowboy and laser", names), { genres: [2, 1], valid: true });
  assert.deepEqual(parseSummary("likes ghost", names), { genres: [0], valid: true });
  assert.deepEqual(parseSummary("likes ghost and ghost", names), { genres: [0], valid: false });
  assert.deepEqual(parseSummary("ghost likes the", names), { genres: [0], valid: false });
  assert.deepEqual(parseSummary("", names), { genres: [], valid: false });
  assert.deepEqual([...genreFeatures([2, 1], 8)], [0, 1, 1, 0, 0, 0, 0, 0]);
});

Deno.test("sampleResponses() is deterministic per seed, differs across seeds, prefix-stable in n", () => {
  const model = LlamaModel.random(modelConfig(24), 5);
  const n0 = tf.memory().numTensors;
  const prompts = [[1, 5, 6, 7], [1, 9], [1, 10, 11, 12, 13, 14]];
  const opts = { temperature: 1, maxNewTokens: 6, eosId: 2, padId: 0 };
  const a = sampleResponses(model, prompts, { ...opts, n: 4, seed: 1 });
  const b = sampleResponses(model, prompts, { ...opts, n: 4, seed: 1, maxRows: 5 });
  const c = sampleResponses(model, prompts, { ...opts, n: 4, seed: 2 });
  const d = sampleResponses(model, prompts, { ...opts, n: 2, seed: 1 });
  assert.deepEqual(a, b, "same seed, other batching → same samples");
  assert.notDeepEqual(a, c, "another seed → other samples");
  assert.deepEqual(d, a.map((x) => x.slice(0, 2)), "the N=2 draw is the first 2 of the N=4 draw");
  for (const per of a) {
    assert.equal(per.length, 4);
    for (const ids of per) {
      assert.ok(ids.length <= 6 && !ids.includes(2));
      assert.ok(ids.every((t) => Number.isInteger(t) && t >= 0 && t < 24));
    }
  }
  // τ = 0 is greedy decoding.
  const greedy = sampleResponses(model, prompts, { ...opts, temperature: 0, n: 1, seed: 3 });
  assert.deepEqual(
    greedy.map((x) => x[0]),
    model.generate(prompts, { maxNewTokens: 6, eosId: 2, padId: 0 }),
  );
  assert.equal(tf.memory().numTensors, n0);
  model.dispose();
});

Deno.test("run({scale: 'test'}) writes parseable artefacts, sane metrics, derivable verdicts, no leaked tensors", async () => {
  const n0 = tf.memory().numTensors;
  const result = await run({ scale: "test", seeds: [0], progress: false });
  assert.equal(tf.memory().numTensors, n0, "tensors return to their start count");
  const out = await Deno.makeTempDir({ prefix: "recalign-dpo4rec-" });
  try {
    await writeDpo4recResults(result, out, { backend: "wasm" });
    const m = JSON.parse(await Deno.readTextFile(`${out}/metrics.json`));
    const table = await Deno.readTextFile(`${out}/table.md`);
    const findings = await Deno.readTextFile(`${out}/findings.md`);
    for (const f of ["hr1.svg", "reward_vs_n.svg"]) {
      const svg = await Deno.readTextFile(`${out}/${f}`);
      assert.ok(svg.includes("<svg"), `${f} is an SVG`);
    }
    assert.equal(m.paper, "dpo4rec");
    assert.equal(m.backend, "wasm");
    assert.deepEqual(m.seeds, [0]);
    const scale = DPO4REC_PRESETS.test;
    assert.deepEqual(m.result.methods, methodNames(scale));
    const unit = ["hr1", "ndcg5", "summary_valid", "genre_precision", "top1_acc", "target_match"];
    for (const s of m.result.per_seed) {
      for (const method of m.result.methods as string[]) {
        const v = s.methods[method];
        assert.ok(v, `seed ${s.seed} has ${method}`);
        for (const f of unit) {
          if (v[f] === null) continue;
          assert.ok(Number.isFinite(v[f]) && v[f] >= 0 && v[f] <= 1, `${method} ${f} = ${v[f]}`);
        }
        assert.equal(v.rank_hits.length, result.num_test);
        assert.ok(Number.isFinite(v.train_seconds) && Number.isFinite(v.eval_seconds));
        if (v.pref_reward !== null) assert.ok(Number.isFinite(v.pref_reward) && v.pref_reward < 0);
        assert.ok(table.includes(`| ${method} |`), `table lists ${method}`);
      }
      for (const x of s.sampling) {
        assert.ok(x.best_reward >= x.single_reward && x.single_reward >= x.worst_reward);
      }
      // Best-of-N is monotone in N (the N samples are nested).
      for (let i = 1; i < s.sampling.length; i++) {
        assert.ok(s.sampling[i].best_reward >= s.sampling[i - 1].best_reward);
      }
    }
    // The headroom check ran before the LM arms and is in the table.
    const s0 = m.result.per_seed[0];
    assert.equal(s0.headroom.window, scale.sasrecWindow);
    assert.ok(Math.abs(s0.headroom.sasrec - s0.methods["SASRec"].hr1) < 1e-12);
    assert.ok(
      Math.abs(s0.headroom.gap - (s0.methods["SASRec+oracle taste"].hr1 - s0.headroom.sasrec)) <
        1e-12,
    );
    assert.equal(s0.headroom.ok, s0.headroom.gap >= scale.minHeadroom);
    assert.ok(table.includes("## Headroom of the channel"));
    // Reward diagnostics: every (τ, M) row; at the run's τ and M the best − worst gap, summed
    // over the prompts with a choice, equals the best-of-N spread of the run's own sampling.
    const diag = s0.reward_diagnostics as {
      temperature: number;
      items: number | "exact";
      prompts_with_choice: number;
      best_minus_worst: number;
    }[];
    assert.equal(diag.length, scale.temperatureSweep.length * (scale.rewardItemsSweep.length + 1));
    const own = diag.find((r) =>
      r.temperature === scale.temperature && r.items === scale.rewardItems
    )!;
    const nMax = s0.sampling.at(-1);
    const spread = (nMax.best_reward - nMax.worst_reward) * scale.prefPrompts;
    assert.ok(
      Math.abs(own.best_minus_worst * own.prompts_with_choice - spread) < 1e-3,
      `${own.best_minus_worst} × ${own.prompts_with_choice} vs ${spread}`,
    );
    assert.ok(table.includes("## Reward model: does it tell samples apart?"));
    // LM rows report summary quality; SASRec alone does not.
    assert.equal(m.result.per_seed[0].methods["SASRec"].genre_precision, null);
    assert.equal(m.result.per_seed[0].methods["SASRec+oracle taste"].genre_precision, 1);
    // Every claim is in findings.md with the verdict metrics.json holds, and the verdict
    // follows from the per-row numbers in metrics.json.
    const specs = dpo4recClaimSpecs(result);
    assert.equal(m.claims.length, specs.length);
    for (const c of m.claims) {
      const row = findings.split("\n").find((l) => l.startsWith(`| ${c.text} |`));
      assert.ok(row, `findings.md lists "${c.text}"`);
      assert.ok(row!.includes(`**${c.verdict}**`));
      const a = m.result.per_seed.flatMap((s: { methods: Record<string, never> }) =>
        s.methods[c.a][c.metric]
      );
      const b = m.result.per_seed.flatMap((s: { methods: Record<string, never> }) =>
        s.methods[c.b][c.metric]
      );
      const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
      assert.ok(Math.abs(mean(a) - mean(b) - c.diff.mean) < 1e-12);
      // The verdict again from metrics.json alone (`deno task findings`).
      const again = findingsOfMetrics(m).find((f) => f.claim_id === c.id)!;
      assert.equal(again.verdict, c.verdict);
      assert.deepEqual(again.ci95, [c.diff.lo, c.diff.hi]);
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
