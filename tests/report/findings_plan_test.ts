/**
 * The analysis plan in the findings: plan ids and roles, S5, the target MDE and the
 * under-powered label, the checkpoint-rule sensitivity analysis, the plan link and the
 * deviations, and `deno task findings --update-metrics`. Hand-built results whose verdicts
 * are known.
 */
import assert from "node:assert/strict";
import {
  CHECKPOINT_RULES,
  checkpointRuleFindings,
  checkpointStep,
  CLAIMS,
  compareRows,
  dmpoFindings,
  evaluateClaims,
  type Finding,
  legacyClaims,
  markTwins,
  PLAN_CLAIMS,
  planDeviations,
  planLink,
  powerLabel,
  renderFindingsMarkdown,
  ruledOut,
  S7_CLAIM_ID,
  s7Finding,
  SDPO_TARGET_MDE,
  sdpoFindings,
  toFinding,
  verdictText,
  Z_80,
  Z_975,
} from "../../src/report/findings.ts";
import { recompute } from "../../src/cli/findings.ts";
import { Rng } from "../../src/rng.ts";
import { assertFindingSchema } from "./_findings_schema.ts";

const N = 60; // test rows (curve prompts: the first 40)
const NC = 40;

Deno.test("plan ids: S1-S5 each on expected HR@1 (primary, target 0.014) and sampled HR@1 (its twin); S2, S6, S8 as the plan lists them", () => {
  const sdpo = CLAIMS.filter((c) => c.paper === "sdpo");
  for (
    const [id, claim, a, b] of [
      ["S1", "sdpo_gt_dpo", "S-DPO", "DPO"],
      ["S2", "sdpo_gt_sft", "S-DPO", "SFT"],
      ["S3", "dpo_gt_sft", "DPO", "SFT"],
      ["S4", "sdpo_gt_sft_cont", "S-DPO", "SFT-cont"],
      ["S5", "k8_gt_k3", "S-DPO K=8", "S-DPO"],
    ]
  ) {
    const exp = sdpo.find((c) => c.id === `sdpo.${claim}.exp_hr1`)!;
    const hr1 = sdpo.find((c) => c.id === `sdpo.${claim}.hr1`)!;
    for (const c of [exp, hr1]) {
      assert.equal(c.planId, id, c.id);
      assert.deepEqual([c.a, c.b], [a, b], c.id);
      assert.equal(c.targetMde, SDPO_TARGET_MDE);
    }
    assert.equal(exp.metric, "rank_expected");
    assert.equal(exp.role, "primary");
    assert.match(exp.text, /primary/);
    assert.equal(hr1.metric, "rank_hits");
    assert.equal(hr1.role, "sampled twin");
    assert.match(hr1.text, /beside the primary/);
  }
  const byId = Object.fromEntries(sdpo.map((c) => [c.id, c]));
  assert.equal(byId["sdpo.sdpo_gt_sft.gen_hr1"].planId, "S2");
  assert.equal(byId["sdpo.sdpo_keeps_chosen_logp.logp"].planId, "S6");
  assert.equal(byId["sdpo.sdpo_gt_sft.valid_ratio"].planId, "S8");
  assert.equal(byId["sdpo.dpo_lowers_chosen_logp.logp"].planId, undefined);
  assert.equal(byId["sdpo.dpo_lowers_chosen_logp.logp"].role, "exploratory");
  assert.equal(SDPO_TARGET_MDE, 0.014);
});

Deno.test("powerLabel: under-powered only when inconclusive with the MDE above the target", () => {
  assert.equal(powerLabel("inconclusive", 0.02, 0.014), "under-powered (MDE 0.020 > target 0.014)");
  assert.equal(powerLabel("inconclusive", 0.01, 0.014), "MDE 0.010 ≤ target 0.014");
  assert.equal(powerLabel("reproduced", 0.02, 0.014), "MDE 0.020 > target 0.014 (decided anyway)");
  assert.equal(powerLabel("inconclusive", 0.02, null), null);
  assert.equal(powerLabel("not tested", null, 0.014), null);
});

/** Per-row arrays of one method: `p` = hit rate, expected hit = p ± a little. */
function rows(rng: Rng, p: number, n = N) {
  return {
    rank_hits: Array.from({ length: n }, () => (rng.next() < p ? 1 : 0)),
    rank_expected: Array.from({ length: n }, () => p + 0.02 * (rng.next() - 0.5)),
  };
}

/**
 * An S-DPO result of 2 seeds with curve rows at steps 10, 20, 30: at the released kept step
 * (20) S-DPO and DPO have the same expected hits; at step 10 (best validation HR@1 of
 * S-DPO and DPO, tied with 30 for DPO) S-DPO is 0.2 above; at 30 (last) 0.2 below. K=8 is
 * 0.3 above S-DPO at every step; SFT is 0.1 below everything.
 */
function fakeRun() {
  const rng = new Rng(3);
  const users = Array.from({ length: N }, (_, i) => Math.floor(i / 2));
  const level: Record<string, Record<number, number>> = {
    DPO: { 10: 0.4, 20: 0.4, 30: 0.4 },
    "S-DPO": { 10: 0.6, 20: 0.4, 30: 0.2 },
    "S-DPO K=8": { 10: 0.9, 20: 0.7, 30: 0.5 },
    "SFT-cont": { 10: 0.3, 20: 0.3, 30: 0.3 },
  };
  const valHr1: Record<string, Record<number, number>> = {
    DPO: { 10: 0.5, 20: 0.4, 30: 0.5 }, // tie: the earliest (10)
    "S-DPO": { 10: 0.5, 20: 0.45, 30: 0.3 },
    "S-DPO K=8": { 10: 0.6, 20: 0.5, 30: 0.4 },
    "SFT-cont": { 10: 0.2, 20: 0.3, 30: 0.25 },
  };
  const curve_hits: {
    method: string;
    seed: number;
    step: number;
    rank_hits: number[];
    rank_expected: number[];
  }[] = [];
  const hr1_curves: { method: string; seed: number; step: number; split: string; hr1: number }[] =
    [];
  const per_seed = [0, 1].map((seed) => {
    const methods: Record<string, unknown> = { SFT: rows(rng, 0.1) };
    for (const m of Object.keys(level)) {
      // The headline rows: the kept checkpoint (step 20) on all N test prompts.
      methods[m] = { ...rows(rng, level[m][20]), best_step: 20 };
      for (const step of [10, 20, 30]) {
        curve_hits.push({ method: m, seed, step, ...rows(rng, level[m][step], NC) });
        hr1_curves.push({ method: m, seed, step, split: "valid", hr1: valHr1[m][step] });
      }
      if (m === "DPO" || m === "S-DPO") {
        for (const step of [10, 20, 30]) {
          hr1_curves.push({ method: m, seed, step, split: "test", hr1: m === "DPO" ? 0.3 : 0.2 });
        }
      }
      // Step 0 (SFT) has the highest validation HR@1: not an evaluation of the arm.
      hr1_curves.push({ method: m, seed, step: 0, split: "valid", hr1: 0.99 });
    }
    return { seed, methods, stage0_seed: 0 };
  });
  return {
    seeds: [0, 1],
    per_seed,
    row_users: users,
    stage0_methods: ["SFT"],
    curve_hits,
    hr1_curves,
    protocol: { departures: ["batch 8, not 128."] },
  };
}

Deno.test("checkpointStep: released = best_step, best validation HR@1 = earliest of the ties (step 0 excluded), last = last evaluation", () => {
  const r = fakeRun();
  assert.equal(checkpointStep("lowest validation loss (released)", r, "S-DPO", 0), 20);
  assert.equal(checkpointStep("best validation HR@1", r, "S-DPO", 0), 10);
  assert.equal(checkpointStep("best validation HR@1", r, "DPO", 1), 10);
  assert.equal(checkpointStep("best validation HR@1", r, "SFT-cont", 1), 20);
  assert.equal(checkpointStep("last step", r, "DPO", 0), 30);
  assert.match(String(checkpointStep("last step", r, "nope", 0)), /no curve rows/);
});

Deno.test("checkpoint-rule sensitivity: S1-S5 at each rule on the curve rows, known verdicts, rule-sensitive claims flagged", () => {
  const r = fakeRun();
  const fs = checkpointRuleFindings(r);
  for (const f of fs) assertFindingSchema(f);
  const ids = CLAIMS.filter((c) =>
    c.paper === "sdpo" && /^S[1-5]$/.test(c.planId ?? "") &&
    /rank_/.test(c.metric)
  ).map((c) => c.id);
  assert.equal(ids.length, 10);
  assert.equal(fs.length, 3 * ids.length);
  const at = (id: string, rule: string) => fs.find((f) => f.claim_id === id && f.rule === rule)!;
  const S1 = "sdpo.sdpo_gt_dpo.exp_hr1";
  // Equal at the released step, +0.2 at the best validation HR@1, −0.2 at the last step.
  // Equal levels, little noise: the CI straddles 0 and ends below the 0.014 target, so a gain of
  // the target's size is ruled out (the amended rule); −0.2 is a reversal, not a ruled-out gain.
  const rel = at(S1, "lowest validation loss (released)");
  assert.ok(rel.ci95![0] < 0 && rel.ci95![1] > 0 && rel.ci95![1] < 0.014 && rel.se! > 0);
  assert.equal(rel.verdict, "contradicted");
  assert.equal(rel.ruled_out, 0.014);
  assert.equal(rel.verdict_original_rule, "inconclusive");
  assert.equal(at(S1, "best validation HR@1").verdict, "reproduced");
  assert.equal(at(S1, "last step").verdict, "contradicted");
  assert.equal(at(S1, "last step").ruled_out, undefined);
  assert.ok(Math.abs(at(S1, "best validation HR@1").effect! - 0.2) < 0.01);
  for (const rule of CHECKPOINT_RULES) assert.equal(at(S1, rule).rule_sensitive, true);
  assert.deepEqual(at(S1, "last step").checkpoint_steps, { "S-DPO": [30, 30], DPO: [30, 30] });
  // The rows at a rule are exactly the curve rows of that step (and SFT's first rows).
  const cur = (m: string, seed: number, step: number) =>
    r.curve_hits.find((h) => h.method === m && h.seed === seed && h.step === step)!;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const f = at("sdpo.sdpo_gt_sft.exp_hr1", "best validation HR@1");
  assert.deepEqual(f.ours_per_seed, [0, 1].map((s) => mean(cur("S-DPO", s, 10).rank_expected)));
  assert.deepEqual(
    f.baseline_per_seed,
    [0, 1].map((s) =>
      mean((r.per_seed[s].methods.SFT as { rank_expected: number[] }).rank_expected.slice(0, NC))
    ),
  );
  assert.equal(f.rows, 2 * NC);
  // K=8 is 0.3 above S-DPO at every rule: decided the same way everywhere, not flagged.
  for (const rule of CHECKPOINT_RULES) {
    assert.equal(at("sdpo.k8_gt_k3.exp_hr1", rule).verdict, "reproduced");
    assert.equal(at("sdpo.k8_gt_k3.exp_hr1", rule).rule_sensitive, false);
  }
  // sdpoFindings: headline at the released rule, flagged when its claim is rule-sensitive;
  // findings.md carries the sensitivity table.
  const all = sdpoFindings(r, "no ablations");
  const head = all.find((x) => x.claim_id === S1 && x.scope === "headline")!;
  assert.equal(head.rule, "lowest validation loss (released)");
  assert.equal(head.rule_sensitive, true);
  assert.equal(all.filter((x) => x.scope === "sensitivity").length, 30);
  const md = renderFindingsMarkdown("t", all, []);
  const sec = md.split("## Checkpoint-rule sensitivity (pre-registered)")[1];
  assert.ok(sec);
  const row = sec.split("\n").find((l) => l.includes(`\`${S1}\``))!;
  assert.match(
    row,
    /\*\*contradicted\*\* \(gain ≥ 0\.014 ruled out; original rule: inconclusive\).*\*\*reproduced\*\*.*\*\*contradicted\*\* \(steps.*\| \*\*yes\*\* \|/,
  );
  assert.match(row, /steps: S-DPO 10, 10; DPO 10, 10/);
  // Without curve rows: no sensitivity rows in sdpoFindings, "not tested" from the function.
  const bare = { ...r, curve_hits: [] };
  assert.equal(sdpoFindings(bare, "x").filter((x) => x.scope === "sensitivity").length, 0);
  assert.ok(checkpointRuleFindings(bare).every((x) => x.verdict === "not tested"));
  // A run without the protocol: the headline's rows are the last step.
  assert.equal(
    sdpoFindings({ ...bare, protocol: undefined }, "x").find((x) => x.claim_id === S1)!.rule,
    "last step",
  );
});

Deno.test("S5 and the power label in the headline: K=8 > K=3 decided; a noise-level S1 is inconclusive and under-powered", () => {
  const r = fakeRun();
  const fs = sdpoFindings(r, "no ablations");
  const by = (id: string) => fs.find((f) => f.claim_id === id && f.scope === "headline")!;
  const s5 = by("sdpo.k8_gt_k3.exp_hr1");
  assert.equal(s5.plan_id, "S5");
  assert.equal(s5.verdict, "reproduced"); // 0.7 vs 0.4
  // S1's sampled twin: equal rates on 60 rows × 2 seeds, so an MDE far above 0.014.
  const s1 = by("sdpo.sdpo_gt_dpo.hr1");
  assert.equal(s1.verdict, "inconclusive");
  assert.ok(s1.mde! > 0.014);
  assert.equal(s1.power, `under-powered (MDE ${s1.mde!.toFixed(3)} > target 0.014)`);
  const md = renderFindingsMarkdown("t", fs, []);
  const row = md.split("\n").find((l) => l.startsWith(`| ${s1.claim} |`))!;
  assert.ok(row.includes("| S1 |") && row.includes("under-powered"));
  // A run without K=8: S5 is "not tested", naming the arm.
  for (const s of r.per_seed) delete s.methods["S-DPO K=8"];
  const s5b = sdpoFindings(r, "x").find((f) => f.claim_id === "sdpo.k8_gt_k3.exp_hr1")!;
  assert.equal(s5b.verdict, "not tested");
  assert.match(s5b.reason!, /"S-DPO K=8"/);
});

Deno.test("S7 is descriptive: from the seed-mean curves, DPO's best and the step S-DPO reaches it; not tested without curves", () => {
  const r = fakeRun();
  const f = s7Finding(r);
  assertFindingSchema(f);
  assert.equal(f.verdict, "descriptive");
  assert.equal(f.plan_id, "S7");
  // Validation: DPO 0.5 at steps 10 and 30 (the earliest kept), S-DPO 0.5 at step 10; test:
  // DPO 0.3, S-DPO 0.2 throughout.
  assert.equal(
    f.note,
    "validation: DPO's best seed-mean HR@1 0.500 at step 10; S-DPO reaches it at step 10 " +
      "(0.500); test (curve prompts): DPO's best seed-mean HR@1 0.300 at step 10; S-DPO never " +
      "reaches it (best 0.200); no verdict (the plan's rule for S7)",
  );
  const md = renderFindingsMarkdown("t", sdpoFindings(r, "x"), []);
  assert.match(md, /## Descriptive claims \(no verdict, as the plan says\)/);
  assert.equal(md.split("\n").filter((l) => l.includes(`\`${S7_CLAIM_ID}\``)).length, 1);
  const none = s7Finding({ seeds: [0], hr1_curves: [] });
  assert.equal(none.verdict, "not tested");
  assertFindingSchema(none);
});

Deno.test("markTwins: a sampled twin whose effect has the other sign than its primary's is marked and noted", () => {
  const f = (id: string, role: string, effect: number | null, scope = "headline", rule?: string) =>
    ({
      claim_id: id,
      plan_id: "S1",
      role,
      effect,
      scope,
      rule,
      metric_label: "expected ranking HR@1",
      verdict: effect === null ? "not tested" : "inconclusive",
    }) as unknown as Finding;
  const fs = markTwins([
    f("a.exp", "primary", 0.01),
    f("a.hr1", "sampled twin", -0.02),
    f("b.exp", "primary", 0.01, "sensitivity", "last step"),
    f("b.hr1", "sampled twin", 0.03, "sensitivity", "last step"),
    f("c.hr1", "sampled twin", 0, "sensitivity", "best validation HR@1"),
    f("c.exp", "primary", -0.01, "sensitivity", "best validation HR@1"),
    f("d.hr1", "sampled twin", 0.01, "sensitivity", "lowest validation loss (released)"),
    f("d.exp", "primary", null, "sensitivity", "lowest validation loss (released)"),
  ]);
  assert.equal(fs[1].agrees_with_primary, false);
  assert.match(fs[1].note!, /sign differs from the primary \(expected ranking HR@1: \+0\.010\)/);
  assert.equal(fs[3].agrees_with_primary, true);
  assert.equal(fs[3].note, undefined);
  assert.equal(fs[4].agrees_with_primary, true); // zero agrees
  assert.equal(fs[6].agrees_with_primary, undefined); // primary untested
  assert.equal(fs[0].agrees_with_primary, undefined); // only twins are marked
});

Deno.test("DMPO and DPO4Rec claims of the plan: section, role and target MDE; K=3 at equal steps is a claim, not tested without its arm", () => {
  const rng = new Rng(9);
  const pairs = (p: number) => ({
    pair_correct: Array.from({ length: 80 }, () => (rng.next() < p ? 1 : 0)),
  });
  const methods = (equalSteps: boolean): Record<string, unknown> => ({
    SFT: pairs(0.6),
    "SFT-cont": pairs(0.6),
    "SFT+DMPO K=1": pairs(0.6),
    "SFT+DMPO K=3": pairs(0.95),
    "DMPO-only K=3": pairs(0.6),
    "SFT+DMPO-released K=3": pairs(0.6),
    ...(equalSteps ? { "SFT+DMPO K=3 (equal steps)": pairs(0.95) } : {}),
  });
  const run = (equalSteps: boolean) => ({
    seeds: [0, 1],
    per_seed: [0, 1].map((seed) => ({ seed, methods: methods(equalSteps), stage0_seed: 0 })),
    stage0_methods: ["SFT"],
  });
  const fs = dmpoFindings(run(true));
  for (const f of fs) assertFindingSchema(f);
  const by = (id: string) => fs.find((f) => f.claim_id === id)!;
  const eq = by("dmpo.k3_gt_k1_equal_steps.auc");
  assert.deepEqual([eq.plan_id, eq.role, eq.target_mde], ["DMPO", "primary", 0.02]);
  assert.equal(eq.verdict, "reproduced"); // 0.95 vs 0.6 on 160 rows
  assert.equal(eq.power, powerLabel("reproduced", eq.mde, 0.02));
  assert.equal(by("dmpo.sft_dmpo_gt_dmpo_only.auc").target_mde, 0.03);
  // Inconclusive on 80 pairs (SFT-cont ≈ SFT+DMPO-released): under-powered against 0.02.
  const rel = by("dmpo.released_gt_sft.auc");
  if (rel.verdict === "inconclusive") assert.match(rel.power!, /^under-powered/);
  const noEq = dmpoFindings(run(false)).find((f) => f.claim_id === eq.claim_id)!;
  assert.equal(noEq.verdict, "not tested");
  assert.match(noEq.reason!, /"SFT\+DMPO K=3 \(equal steps\)"/);
  assert.doesNotThrow(() => evaluateClaims({ paper: "dmpo", ...run(false) }));
  for (
    const [id, target] of [
      ["dpo4rec.rm_gt_random.genre_precision", 0.03],
      ["dpo4rec.rm_gt_random.hr1", undefined],
      ["dpo4rec.lm_features_improve_sasrec.hr1", 0.03],
    ] as const
  ) {
    assert.equal(PLAN_CLAIMS[id].planId, "DPO4Rec");
    assert.equal(PLAN_CLAIMS[id].targetMde, target);
  }
});

Deno.test("planLink: relative from a folder inside the repository, the path as text outside", () => {
  assert.deepEqual(planLink("/repo/results/sdpo/synthetic", "/repo"), {
    href: "../../../docs/analysis-plan.md",
    text: "docs/analysis-plan.md",
  });
  assert.deepEqual(planLink("/repo/out", "/repo/"), {
    href: "../docs/analysis-plan.md",
    text: "docs/analysis-plan.md",
  });
  assert.deepEqual(planLink("/tmp/x", "/repo"), { text: "docs/analysis-plan.md" });
  assert.deepEqual(planLink("/repository/x", "/repo"), { text: "docs/analysis-plan.md" });
  const md = renderFindingsMarkdown("t", [], [], "", {
    plan: planLink("/repo/results/a/b", "/repo"),
    deviations: ["one"],
  });
  assert.match(
    md,
    /Analysis plan: \[docs\/analysis-plan.md\]\(\.\.\/\.\.\/\.\.\/docs\/analysis-plan.md\)/,
  );
  assert.match(md, /## Deviations from the analysis plan\n\n- one\n/);
});

Deno.test("planDeviations: scale, seeds, test prompts, recorded departures, missing arms, unwritten plan sections", () => {
  const r = fakeRun();
  const m = {
    paper: "sdpo",
    dataset: "synthetic",
    scale: "small",
    seeds: [0, 1],
    result: { ...r, num_test: 800 },
  };
  const plan = "# Plan\n\n## S-DPO\n\nwritten\n\n## DMPO\n\nTo be filled in before the full run.\n";
  const d = planDeviations(m, [], plan);
  assert.ok(d.some((x) => /Scale `small`, not the plan's `full`/.test(x)));
  assert.ok(d.some((x) => /2 seed\(s\), not the plan's 3/.test(x)));
  assert.ok(d.some((x) => /800 test prompts, not the plan's 1600/.test(x)));
  assert.ok(d.some((x) => /released scripts that the run records: batch 8, not 128\./.test(x)));
  assert.ok(!d.some((x) => /no S-DPO section|not in the run/.test(x)), d.join("\n"));
  // The full design with every arm: nothing to list but the departures.
  const full = { ...m, scale: "full", seeds: [0, 1, 2], result: { ...r, num_test: 1600 } };
  assert.deepEqual(planDeviations(full, [], plan), [
    "Departures from the released scripts that the run records: batch 8, not 128.",
  ]);
  // Fresh seeds (a follow-up numbered from --first-seed) are named.
  const fresh = planDeviations({ ...full, seeds: [10, 11, 12] }, [], plan);
  assert.ok(fresh.some((x) => /^Seeds 10, 11, 12, not the plan's 0–2/.test(x)), fresh.join("\n"));
  assert.equal(fresh.length, 2);
  // No K=8 arm, no protocol, no curve rows.
  const old = structuredClone(full);
  for (const s of old.result.per_seed) delete s.methods["S-DPO K=8"];
  delete (old.result as { protocol?: unknown }).protocol;
  const d2 = planDeviations(old, [], plan);
  assert.ok(d2.some((x) => /not in the run: S-DPO K=8/.test(x)));
  assert.ok(d2.some((x) => /predates the released protocol/.test(x)));
  // A paper whose plan section is not written yet.
  const dm = planDeviations({ paper: "dmpo", scale: "full", result: {} }, [], plan);
  assert.deepEqual(dm.length, 1);
  assert.match(dm[0], /no DMPO section yet/);
});

Deno.test("deno task findings --update-metrics: only claims and ablation_claims change, and they agree with findings.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "recalign-update-" });
  try {
    // A committed run, with its claims made stale by hand.
    const src = "results/sdpo/lastfm";
    for (const f of ["metrics.json", "findings.md", "findings.json"]) {
      await Deno.copyFile(`${src}/${f}`, `${dir}/${f}`);
    }
    const before = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
    before.claims[0].verdict = "stale";
    await Deno.writeTextFile(`${dir}/metrics.json`, JSON.stringify(before, null, 2) + "\n");
    const { findings } = await recompute(`${dir}/metrics.json`, undefined, true);
    const after = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
    assert.deepEqual(Object.keys(after), Object.keys(before));
    for (const k of Object.keys(before)) {
      if (k !== "claims" && k !== "ablation_claims") assert.deepEqual(after[k], before[k], k);
    }
    const tested = (scope: string) =>
      findings.filter((f: Finding) => f.scope === scope && f.verdict !== "not tested");
    assert.deepEqual(
      after.claims.map((c: { id: string; verdict: string }) => `${c.id}=${c.verdict}`),
      tested("headline").map((f) => `${f.claim_id}=${f.verdict}`),
    );
    assert.equal(after.ablation_claims.length, tested("ablation").length);
    for (const c of after.claims) {
      const f = findings.find((x) => x.claim_id === c.id && x.scope === "headline")!;
      assert.deepEqual([c.diff.lo, c.diff.hi], f.ci95);
      assert.equal(c.plan_id, f.plan_id);
    }
    // Without the flag metrics.json is left alone.
    const text = await Deno.readTextFile(`${dir}/metrics.json`);
    await recompute(`${dir}/metrics.json`);
    assert.equal(await Deno.readTextFile(`${dir}/metrics.json`), text);
    // findings.md lists the deviations this run records (a released data set at scale tiny).
    const md = await Deno.readTextFile(`${dir}/findings.md`);
    const dev = md.split("## Deviations from the analysis plan")[1];
    assert.ok(dev && /Scale `tiny`/.test(dev) && /Data set `lastfm`/.test(dev), dev);
    assert.match(md, /Analysis plan: `docs\/analysis-plan.md`/); // outside the repository
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("amended rule: ruledOut decides only an inconclusive claim with a target whose CI ends below it", () => {
  assert.equal(ruledOut("inconclusive", { hi: 0.002 }, 0.014, 0.004), 0.014);
  assert.equal(ruledOut("inconclusive", { hi: 0.014 }, 0.014, 0.004), undefined); // not below
  assert.equal(ruledOut("inconclusive", { hi: 0.002 }, null, 0.004), undefined); // no target
  assert.equal(ruledOut("reproduced", { hi: 0.01 }, 0.014, 0.004), undefined); // decided already
  assert.equal(ruledOut("contradicted", { hi: -0.01 }, 0.014, 0.004), undefined); // a reversal
  // A degenerate interval (every resample equal: two arms agreeing on every row) rules out nothing.
  assert.equal(ruledOut("inconclusive", { hi: 0 }, 0.014, 0), undefined);
  assert.equal(ruledOut("inconclusive", { hi: 0 }, 0.014, null), undefined);
  assert.equal(verdictText({ verdict: "inconclusive" }), "**inconclusive**");
  assert.equal(
    verdictText({ verdict: "contradicted", ruled_out: 0.014 }),
    "**contradicted** (gain ≥ 0.014 ruled out; original rule: inconclusive)",
  );
});

Deno.test("amended rule end to end: a level S1 on many rows is 'contradicted, gain ruled out' in findings.json, findings.md and metrics claims; without a target it stays inconclusive", () => {
  // 4 seeds × 400 rows, A = B + noise of mean 0: the CI is about ±0.01 around 0.
  const rng = new Rng(5);
  const b = Array.from({ length: 4 }, () => Array.from({ length: 400 }, () => rng.next()));
  const a = b.map((row) => row.map((x) => x + 0.1 * rng.normal()));
  const spec = CLAIMS.find((c) => c.id === "sdpo.sdpo_gt_dpo.exp_hr1")!;
  assert.equal(spec.targetMde, SDPO_TARGET_MDE);
  const c = compareRows(spec, a, b);
  assert.equal(c.verdict, "inconclusive");
  assert.ok(c.diff.lo < 0 && c.diff.hi > 0 && c.diff.hi < 0.014, `${c.diff.lo} ${c.diff.hi}`);
  const f = toFinding(c, [0, 1, 2, 3]);
  assert.equal(f.verdict, "contradicted");
  assert.equal(f.ruled_out, 0.014);
  assert.equal(f.verdict_original_rule, "inconclusive");
  assert.deepEqual(f.ci95, [c.diff.lo, c.diff.hi]); // the interval itself is unchanged
  assertFindingSchema(f);
  const md = renderFindingsMarkdown("t", [f], []);
  const row = md.split("\n").find((l) => l.startsWith(`| ${f.claim} |`))!;
  assert.ok(row.includes("**contradicted** (gain ≥ 0.014 ruled out; original rule: inconclusive)"));
  assert.match(md, /upper bound is below the claim's target/);
  assert.equal(legacyClaims([f], "headline")[0].ruled_out, 0.014);
  // The same rows without a target (an exploratory claim): the three-way rule.
  const g = toFinding(compareRows({ ...spec, targetMde: undefined, id: "x.y" }, a, b), [
    0,
    1,
    2,
    3,
  ]);
  assert.equal(g.verdict, "inconclusive");
  assert.equal("ruled_out" in g, false);
  // A true gain: reproduced, as before.
  const up = toFinding(compareRows(spec, b.map((r) => r.map((x) => x + 0.05)), b), [0, 1, 2, 3]);
  assert.equal(up.verdict, "reproduced");
  assert.equal("ruled_out" in up, false);
});

Deno.test("amended rule by simulation: with MDE = target, a zero effect is ruled out ~80 % of the time, a true effect of the target's size ~2.5 %", () => {
  const n = 60, sigma = 1, trials = 400;
  const target = ((Z_975 + Z_80) * sigma) / Math.sqrt(n);
  const rng = new Rng(17);
  let outAtZero = 0, outAtTarget = 0;
  const spec = { ...CLAIMS[0], targetMde: target };
  for (let t = 0; t < trials; t++) {
    const b = Array.from({ length: n }, () => rng.normal() * 3);
    const d = Array.from({ length: n }, () => sigma * rng.normal());
    const zero = toFinding(compareRows(spec, [b.map((x, i) => x + d[i])], [b]), [0]);
    if (zero.ruled_out !== undefined) outAtZero++;
    const full = toFinding(compareRows(spec, [b.map((x, i) => x + d[i] + target)], [b]), [0]);
    if (full.ruled_out !== undefined) outAtTarget++;
  }
  // Binomial SE at 400 trials ≈ 0.02; the percentile bootstrap is slightly liberal at n = 60.
  assert.ok(outAtZero / trials > 0.7 && outAtZero / trials < 0.9, `at 0: ${outAtZero / trials}`);
  assert.ok(outAtTarget / trials < 0.06, `at the target: ${outAtTarget / trials}`);
});
