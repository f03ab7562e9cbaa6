import assert from "node:assert/strict";
import { clusteredBootstrapCI, pairedBootstrapCI } from "../../src/eval/metrics.ts";
import {
  BETA_CLAIM_ID,
  betaInteriorOptimum,
  CLAIMS,
  type ClaimSpec,
  compareRows,
  evaluateClaims,
  type Finding,
  findingsMarkdown,
  hasVerdict,
  legacyClaims,
  mdePaired,
  planLink,
  renderFindingsMarkdown,
  S7_CLAIM_ID,
  sdpoFindings,
  specFindings,
  verdictOf,
  writeFindings,
  Z_80,
  Z_975,
} from "../../src/report/findings.ts";
import { dmpoAblationFindings } from "../../src/experiments/dmpo_ablations.ts";
import { validRatioByMethod } from "../../src/cli/reproduce.ts";
import { Rng } from "../../src/rng.ts";
import { assertFindingSchema } from "./_findings_schema.ts";

const plainMean = (xs: number[]) => {
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
};

// A fake S-DPO result: two seeds × 50 rows; S-DPO clearly above SFT, DPO = SFT + noise.
function fakeSdpo(withAblations: boolean) {
  const rng = new Rng(5);
  const row = (p: number) => Array.from({ length: 50 }, () => (rng.next() < p ? 1 : 0));
  const logp = (m: number) => Array.from({ length: 50 }, () => m + rng.normal());
  const method = (p: number, lp: number) => ({
    rank_hits: row(p),
    rank_expected: Array.from({ length: 50 }, () => p * (0.5 + rng.next())),
    gen_hits: row(p / 2),
    gen_valid: row(0.5),
    pos_logp: logp(lp),
  });
  const per_seed = [0, 1].map((seed) => ({
    seed,
    methods: {
      SFT: method(0.2, -7),
      "SFT-cont": method(0.2, -7),
      DPO: method(0.25, -7.5),
      "S-DPO": method(0.6, -6.5),
      "S-DPO K=8": method(0.65, -6.3),
    } as Record<string, unknown>,
  }));
  const abl = withAblations
    ? {
      seed: 0,
      methods: {
        "S-DPO K=1": method(0.2, -7),
        "S-DPO K=max": method(0.7, -6),
        "S-DPO β=0.1": method(0.1, -7),
        "S-DPO β=1": method(0.8, -6),
        "S-DPO β=5": method(0.15, -7),
        "S-DPO (model-hard)": method(0.5, -6),
        "DPO (model-hard)": method(0.4, -6),
        "S-DPO (same-genre)": method(0.5, -6),
        "DPO (same-genre)": method(0.4, -6),
        "S-DPO (uniform)": method(0.3, -6),
      } as Record<string, unknown>,
    }
    : undefined;
  return { seeds: [0, 1], per_seed, ablations: abl };
}

Deno.test("sdpoFindings: schema, ids, means and effects by plain loops, verdict from the CI", () => {
  const r = fakeSdpo(true);
  const fs = sdpoFindings(r);
  assert.deepEqual(
    fs.map((f) => f.claim_id),
    [
      ...CLAIMS.filter((c) => c.paper === "sdpo").map((c) => c.id),
      S7_CLAIM_ID, // descriptive; "not tested" here (no curves)
      ...CLAIMS.filter((c) => c.paper === "sdpo-abl").map((c) => c.id),
    ],
  );
  assert.equal(new Set(fs.map((f) => f.claim_id)).size, fs.length, "ids unique");
  for (const f of fs) assertFindingSchema(f);
  const pooled = (m: string, metric: string) =>
    r.per_seed.flatMap((s) => (s.methods[m] as Record<string, number[]>)[metric]);
  for (const f of fs.filter((x) => x.scope === "headline" && hasVerdict(x))) {
    const a = pooled(f.ours_method!, f.metric), b = pooled(f.baseline_method!, f.metric);
    assert.equal(f.rows, 100);
    assert.deepEqual(f.seeds, [0, 1]);
    assert.ok(Math.abs(f.ours! - plainMean(a)) < 1e-12);
    assert.ok(Math.abs(f.baseline! - plainMean(b)) < 1e-12);
    assert.ok(Math.abs(f.effect! - (plainMean(a) - plainMean(b))) < 1e-12);
    // Per-seed means are the seed's own rows.
    const perSeed = r.per_seed.map((s) =>
      plainMean((s.methods[f.ours_method!] as Record<string, number[]>)[f.metric])
    );
    assert.deepEqual(f.ours_per_seed, perSeed);
    // Two seeds, each training its own models, rows their own clusters: seeds, then rows.
    const d = r.per_seed.map((s) => {
      const m = s.methods as Record<string, Record<string, number[]>>;
      return m[f.ours_method!][f.metric].map((x, i) => x - m[f.baseline_method!][f.metric][i]);
    });
    const ci = clusteredBootstrapCI(d, d[0].map((_, i) => i));
    assert.deepEqual(f.ci95, [ci.lo, ci.hi]);
    assert.equal(f.verdict, verdictOf(ci));
    assert.equal(f.resampling!.levels, "seeds, then test clusters");
    assert.equal(f.resampling!.cluster_by, "prompt");
  }
  const byId = Object.fromEntries(fs.map((f) => [f.claim_id, f]));
  assert.equal(byId["sdpo.sdpo_gt_sft.hr1"].verdict, "reproduced"); // 0.6 vs 0.2 on 100 rows
  assert.equal(byId["sdpo.sdpo_gt_sft.hr1"].scope, "headline");
  assert.equal(byId["sdpo.more_negatives_help.hr1"].scope, "ablation");
  assert.deepEqual(byId["sdpo.more_negatives_help.hr1"].seeds, [0]);
  assert.equal(byId["sdpo.more_negatives_help.hr1"].rows, 50);
  assert.equal(byId[BETA_CLAIM_ID].verdict, "reproduced"); // β = 1 at 0.8 vs 0.1 / 0.15
  assert.equal(byId[BETA_CLAIM_ID].ours_method, "S-DPO β=1");
});

Deno.test("sdpoFindings without ablations: ablation claims are 'not tested' with the reason, listed apart in findings.md", () => {
  const fs = sdpoFindings(fakeSdpo(false), "ablations off in this test");
  const abl = fs.filter((f) => f.scope === "ablation");
  assert.equal(abl.length, CLAIMS.filter((c) => c.paper === "sdpo-abl").length);
  for (const f of abl) {
    assertFindingSchema(f);
    assert.equal(f.verdict, "not tested");
    assert.equal(f.reason, "ablations off in this test");
  }
  const md = renderFindingsMarkdown("t", fs, []);
  const section = md.split("## Not tested in this run")[1];
  assert.ok(section, "a not-tested section");
  for (const f of abl) {
    assert.ok(section.includes(`\`${f.claim_id}\``));
    assert.ok(!md.split("## Not tested in this run")[0].includes(`\`${f.claim_id}\``));
  }
  assert.ok(!md.includes("## Ablation claims"), "no empty ablation table");
  // The legacy metrics.json claims hold the tested ones only.
  assert.equal(legacyClaims(fs, "ablation").length, 0);
  assert.equal(
    legacyClaims(fs, "headline").length,
    fs.filter((f) => f.scope === "headline" && hasVerdict(f)).length,
  );
  assert.equal(fs.filter((f) => f.scope === "headline" && !hasVerdict(f)).length, 1); // S7
});

Deno.test("a claim whose rows are missing is 'not tested', naming the method", () => {
  const spec: ClaimSpec = {
    id: "sdpo.x_gt_y.hr1",
    paper: "sdpo",
    text: "X > Y",
    metric: "rank_hits",
    metricLabel: "HR@1",
    a: "X",
    b: "Y",
  };
  const [f] = specFindings([spec], {
    paper: "sdpo",
    per_seed: [{ seed: 0, methods: { X: { rank_hits: [1, 0] } } }],
  }, [0]);
  assert.equal(f.verdict, "not tested");
  assert.match(f.reason!, /"Y"/);
});

Deno.test("betaInteriorOptimum: interior best beating both ends → reproduced; best at an end → contradicted; flat → inconclusive", () => {
  const spec = CLAIMS.find((c) => c.id === BETA_CLAIM_ID)!;
  const n = 200;
  const ones = (k: number) => Array.from({ length: n }, (_, i) => (i < k ? 1 : 0));
  const sweep = (ks: number[]) =>
    ks.map((k, i) => ({ beta: [0.1, 0.5, 1, 2, 5][i], method: `β=${i}`, rows: [ones(k)] }));
  // Interior optimum at β = 1: 120 hits vs 40 and 60 at the ends (nested 0/1 rows: the diff
  // is 1 on 80 resp. 60 rows and 0 elsewhere).
  const r1 = betaInteriorOptimum(spec, sweep([40, 90, 120, 100, 60]));
  assert.equal(r1.verdict, "reproduced");
  assert.equal(r1.a, "β=2");
  // Binding endpoint: the one with the smaller lower bound, here β = 5 (60 hits).
  assert.equal(r1.b, "β=4");
  assert.ok(Math.abs(r1.diff.mean - 60 / n) < 1e-12);
  assert.match(r1.note!, /best β = 1 \(interior\)/);
  // An interior best that does not beat one end clearly → inconclusive.
  const r2 = betaInteriorOptimum(spec, sweep([40, 90, 120, 100, 118]));
  assert.equal(r2.verdict, "inconclusive");
  assert.equal(r2.b, "β=4");
  // Best at the top end, far above every interior β → contradicted.
  const r3 = betaInteriorOptimum(spec, sweep([40, 50, 60, 70, 150]));
  assert.equal(r3.verdict, "contradicted");
  assert.equal(r3.a, "β=3");
  assert.equal(r3.b, "β=4");
  assert.match(r3.note!, /endpoint/);
  // Unsorted input is sorted by β; fewer than 3 values is refused.
  const r4 = betaInteriorOptimum(spec, sweep([40, 90, 120, 100, 60]).reverse());
  assert.equal(r4.verdict, "reproduced");
  assert.throws(() => betaInteriorOptimum(spec, sweep([1, 2])), /3 β values/);
});

Deno.test("mdePaired: hand computation and the z constants by numerical integration", () => {
  // d = [1, 0, 1, 1, 0, 1, 0, 1]: mean 5/8, Σ(d − m)² = 5·(3/8)² + 3·(5/8)² = 15/8,
  // sd = √(15/56); MDE = (1.959964 + 0.841621) · sd / √8.
  const d = [1, 0, 1, 1, 0, 1, 0, 1];
  const hand = (1.959964 + 0.841621) * Math.sqrt(15 / 56) / Math.sqrt(8);
  assert.ok(Math.abs(mdePaired(d)! - hand) < 1e-6, `${mdePaired(d)} vs ${hand}`);
  assert.equal(mdePaired([1]), null);
  assert.equal(mdePaired([0.5, 0.5, 0.5]), 0);
  // Φ(z) by Simpson's rule on the density from −12: Φ(Z_975) = 0.975, Φ(Z_80) = 0.8.
  const phi = (z: number) => {
    const a = -12, m = 200000, h = (z - a) / m;
    const f = (x: number) => Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI);
    let s = f(a) + f(z);
    for (let i = 1; i < m; i++) s += (i % 2 ? 4 : 2) * f(a + i * h);
    return (s * h) / 3;
  };
  assert.ok(Math.abs(phi(Z_975) - 0.975) < 1e-9);
  assert.ok(Math.abs(phi(Z_80) - 0.8) < 1e-9);
  // compareRows: MDE = (z₀.₉₇₅ + z₀.₈) × the bootstrap SE, which for one seed and one row
  // per cluster is sd·√((n−1)/n)/√n (the plug-in variance), i.e. mdePaired·√((n−1)/n).
  const rng = new Rng(21);
  const a = Array.from({ length: 300 }, () => (rng.next() < 0.4 ? 1 : 0));
  const b = Array.from({ length: 300 }, () => (rng.next() < 0.3 ? 1 : 0));
  const c = compareRows({ ...CLAIMS[0] }, [a], [b], { iters: 20000 });
  const closed = mdePaired(a.map((x, i) => x - b[i]))! * Math.sqrt(299 / 300);
  assert.ok(Math.abs(c.mde! / closed - 1) < 0.03, `${c.mde} vs ${closed}`);
  assert.ok(Math.abs(c.mde! - (Z_975 + Z_80) * c.se!) < 1e-12);
});

Deno.test("MDE by brute-force simulation: at a true effect = MDE the verdict rule reproduces ~80 % of the time, at 0 ~2.5 %", () => {
  const n = 60, sigma = 1, trials = 500;
  const effect = ((Z_975 + Z_80) * sigma) / Math.sqrt(n);
  const rng = new Rng(11);
  let hits = 0, falseHits = 0, mdeSum = 0;
  for (let t = 0; t < trials; t++) {
    // Paired rows: a = b + d with d ~ N(effect, σ²); b is arbitrary per-row noise.
    const b = Array.from({ length: n }, () => rng.normal() * 3);
    const d = Array.from({ length: n }, () => effect + sigma * rng.normal());
    const a = b.map((x, i) => x + d[i]);
    const c = compareRows({ ...CLAIMS[0] }, [a], [b]);
    if (c.verdict === "reproduced") hits++;
    mdeSum += c.mde!;
    const a0 = b.map((x, i) => x + d[i] - effect);
    if (compareRows({ ...CLAIMS[0] }, [a0], [b]).verdict === "reproduced") falseHits++;
  }
  const power = hits / trials, alpha = falseHits / trials;
  // Binomial SE at 500 trials ≈ 0.018; the percentile bootstrap is slightly liberal at n = 60.
  assert.ok(power > 0.72 && power < 0.9, `power ${power}`);
  assert.ok(alpha < 0.06, `false "reproduced" rate ${alpha}`);
  // The MDE estimated from the rows is on average the true one (sd estimate).
  assert.ok(Math.abs(mdeSum / trials - effect) < 0.03 * effect + 0.01, `${mdeSum / trials}`);
});

Deno.test("writeFindings: findings.json holds the list and findings.md is its rendering", async () => {
  const dir = await Deno.makeTempDir({ prefix: "recalign-findings-" });
  try {
    const fs = [
      ...sdpoFindings(fakeSdpo(true)),
      ...dmpoAblationFindings(undefined, "no DMPO ablations here"),
    ];
    const md = await writeFindings(dir, "Test", fs, ["a note"], "ablation rows of seed 0");
    const json = JSON.parse(await Deno.readTextFile(`${dir}/findings.json`)) as Finding[];
    assert.ok(Array.isArray(json));
    assert.equal(json.length, fs.length);
    for (const f of json) assertFindingSchema(f);
    const file = await Deno.readTextFile(`${dir}/findings.md`);
    assert.equal(file, md);
    // Rendering the stored JSON again gives the same file: md is a function of the list.
    assert.equal(
      renderFindingsMarkdown("Test", json, ["a note"], "ablation rows of seed 0", {
        plan: planLink(dir),
      }),
      file,
    );
    // Every tested finding has one row, starting with its claim, holding its numbers.
    const lines = file.split("\n");
    for (const f of json) {
      const rows = lines.filter((l) => l.includes(`\`${f.claim_id}\``));
      assert.equal(rows.length, 1, f.claim_id);
      if (f.verdict === "not tested") {
        assert.ok(rows[0].startsWith(`| ${f.claim} |`) && rows[0].includes(f.reason!));
        continue;
      }
      assert.ok(rows[0].startsWith(`| ${f.claim} |`));
      assert.ok(rows[0].includes(`**${f.verdict}**`));
      const sign = (x: number) => (x >= 0 ? "+" : "") + x.toFixed(3);
      assert.ok(rows[0].includes(`${sign(f.effect!)} [${sign(f.ci95![0])}, ${sign(f.ci95![1])}]`));
      assert.ok(rows[0].includes(`| ${f.mde!.toFixed(3)} | ${f.power ?? "–"} | ${f.rows} |`));
    }
    assert.match(file, /MDE is the minimum detectable effect/);
    assert.match(file, /## Not tested in this run/);
    assert.match(file, /- a note/);
    // The notebooks' entry point renders claims through the same function.
    assert.equal(
      findingsMarkdown("Test", json, ["a note"]),
      renderFindingsMarkdown("Test", json, ["a note"]),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dmpoAblationFindings without ablations: every DMPO ablation claim, not tested, stable ids", () => {
  const fs = dmpoAblationFindings(undefined);
  assert.deepEqual(fs.map((f) => f.claim_id), [
    "dmpo.more_negatives_help.auc",
    "dmpo.more_negatives_help_uniform.auc",
    "dmpo.more_negatives_help_same_genre.auc",
    "dmpo.more_negatives_help_model_hard.auc",
    "dmpo.more_negatives_help_equal_steps.auc",
    "dmpo.model_hard_gt_uniform.auc",
    "dmpo.sft_dmpo_gt_dmpo_only_few_shot.auc",
    "dmpo.sft_gain_largest_at_small_n.auc",
    "dmpo.transfers.auc",
    "dmpo.transfers_gt_sft.auc",
  ]);
  for (const f of fs) {
    assertFindingSchema(f);
    assert.equal(f.verdict, "not tested");
    assert.equal(f.scope, "ablation");
    assert.match(f.reason!, /--no-ablations/);
  }
});

Deno.test("validRatioByMethod: the summary's ValidRatio means, methods without one left out", () => {
  assert.deepEqual(
    validRatioByMethod({
      SFT: { valid_ratio: { mean: 0.5 }, hr1_rank: { mean: 0.3 } },
      "S-DPO": { valid_ratio: { mean: 0.25 } },
      SASRec: { valid_ratio: { mean: null }, hr1_rank: { mean: 0.2 } },
    }),
    { SFT: 0.5, "S-DPO": 0.25 },
  );
});

// Two seeds × 6 rows (3 test users, 2 rows each); SFT is one stage-0 model on both seeds.
function sharedSft() {
  const sft = [1, 0, 0, 1, 0, 0];
  return {
    paper: "sdpo",
    row_users: [7, 7, 8, 8, 9, 9],
    stage0_methods: ["SFT"],
    per_seed: [
      {
        seed: 0,
        stage0_seed: 0,
        methods: { SFT: { rank_hits: sft }, DPO: { rank_hits: [1, 1, 0, 1, 0, 1] } },
      },
      {
        seed: 1,
        stage0_seed: 0,
        methods: { SFT: { rank_hits: sft }, DPO: { rank_hits: [1, 0, 1, 1, 1, 0] } },
      },
    ],
  };
}

const SPEC: ClaimSpec = {
  id: "sdpo.dpo_gt_sft.hr1",
  paper: "sdpo",
  text: "DPO > SFT",
  metric: "rank_hits",
  metricLabel: "HR@1",
  a: "DPO",
  b: "SFT",
};

Deno.test("findings resample seeds then test users, with a shared SFT model counted once: hand case and a plain loop", () => {
  const r = sharedSft();
  const [f] = specFindings([SPEC], r, [0, 1]);
  // Means by hand: DPO 4/6 and 4/6, SFT 2/6 → effect 2/6.
  assert.ok(Math.abs(f.effect! - 2 / 6) < 1e-12);
  assert.ok(Math.abs(f.ours! - 4 / 6) < 1e-12 && Math.abs(f.baseline! - 2 / 6) < 1e-12);
  assert.equal(f.resampling!.levels, "seeds, then test clusters");
  assert.equal(f.resampling!.cluster_by, "user");
  assert.equal(f.resampling!.clusters, 3);
  assert.equal(f.resampling!.seed_units, 2);
  assert.equal(f.rows, 12);
  // The same interval by a plain loop over the same draws: per replicate, 2 seeds then 3 users.
  const d = r.per_seed.map((s) =>
    s.methods.DPO.rank_hits.map((x, i) => x - s.methods.SFT.rank_hits[i])
  );
  const rng = new Rng(0);
  const reps: number[] = [];
  for (let b = 0; b < 2000; b++) {
    const seeds = [rng.int(2), rng.int(2)];
    const users = [rng.int(3), rng.int(3), rng.int(3)];
    let sum = 0, n = 0;
    for (const s of seeds) {
      for (const u of users) {
        sum += d[s][2 * u] + d[s][2 * u + 1];
        n += 2;
      }
    }
    reps.push(sum / n);
  }
  reps.sort((x, y) => x - y);
  const q = (p: number) => {
    const pos = p * 1999, i = Math.floor(pos), fr = pos - i;
    return reps[i] * (1 - fr) + reps[i + 1] * fr;
  };
  assert.ok(Math.abs(f.ci95![0] - q(0.025)) < 1e-12 && Math.abs(f.ci95![1] - q(0.975)) < 1e-12);
  // SFT against itself-like shared arms: both models shared → one unit, users only.
  const both = structuredClone(r);
  both.stage0_methods = ["SFT", "DPO"];
  both.per_seed[1].methods.DPO.rank_hits = both.per_seed[0].methods.DPO.rank_hits;
  const [g] = specFindings([SPEC], both, [0, 1]);
  assert.equal(g.resampling!.levels, "test clusters");
  assert.equal(g.resampling!.seed_units, 1);
  assert.equal(g.resampling!.shared_seeds, 1);
  assert.equal(g.rows, 6);
});

Deno.test("property: copying a seed whose models are shared, or duplicating every seed's rows of the same users, cannot narrow a finding's interval", () => {
  const r = sharedSft();
  const [base] = specFindings([SPEC], r, [0, 1]);
  // Rows of each seed twice, with their users: identical interval.
  const dup = structuredClone(r);
  dup.row_users = [...r.row_users, ...r.row_users];
  for (const s of dup.per_seed) {
    for (const m of Object.values(s.methods)) m.rank_hits = [...m.rank_hits, ...m.rank_hits];
  }
  const [f1] = specFindings([SPEC], dup, [0, 1]);
  assert.deepEqual(f1.ci95, base.ci95);
  // A one-model comparison (SFT vs a shared model) copied onto 5 seeds: same as on 1 seed.
  const one = {
    paper: "sdpo",
    row_users: r.row_users,
    stage0_methods: ["SFT", "DPO"],
    per_seed: [0, 1, 2, 3, 4].map((seed) => ({ ...r.per_seed[0], seed })),
  };
  const [f5] = specFindings([SPEC], one, [0, 1, 2, 3, 4]);
  const [f1s] = specFindings([SPEC], { ...one, per_seed: one.per_seed.slice(0, 1) }, [0]);
  assert.deepEqual(f5.ci95, f1s.ci95);
  assert.equal(f5.rows, 6);
  // The old rule (pooled rows) narrows with every copy: the property can fail.
  const pooled = (k: number) => {
    const a = Array.from({ length: k }, () => r.per_seed[0].methods.DPO.rank_hits).flat();
    const b = Array.from({ length: k }, () => r.per_seed[0].methods.SFT.rank_hits).flat();
    const ci = pairedBootstrapCI(a, b);
    return ci.hi - ci.lo;
  };
  assert.ok(pooled(5) < 0.6 * pooled(1));
});

Deno.test("verdicts: a CI entirely below 0 is contradicted", () => {
  assert.equal(verdictOf({ lo: -0.2, hi: -0.01 }), "contradicted");
  assert.equal(verdictOf({ lo: -0.2, hi: 0 }), "inconclusive");
  assert.equal(verdictOf({ lo: 0.001, hi: 0.2 }), "reproduced");
});

Deno.test("evaluateClaims skips the expected-hit claims on data without the world's law, and still refuses other missing rows", () => {
  const r = fakeSdpo(false);
  for (const s of r.per_seed) {
    for (const m of Object.values(s.methods)) delete (m as Record<string, unknown>).rank_expected;
  }
  const cs = evaluateClaims({ paper: "sdpo", per_seed: r.per_seed });
  const all = CLAIMS.filter((c) => c.paper === "sdpo");
  assert.deepEqual(
    cs.map((c) => c.id),
    all.filter((c) => c.metric !== "rank_expected").map((c) => c.id),
  );
  for (const s of r.per_seed) {
    for (const m of Object.values(s.methods)) delete (m as Record<string, unknown>).pos_logp;
  }
  assert.throws(() => evaluateClaims({ paper: "sdpo", per_seed: r.per_seed }), /pos_logp/);
});
