/**
 * Schema checks of findings.json entries, shared by tests/report/findings_test.ts and
 * tests/experiments/dmpo_ablations_test.ts.
 */
import assert from "node:assert/strict";
import {
  CHECKPOINT_RULES,
  type Finding,
  powerLabel,
  ruledOut,
  verdictOf,
} from "../../src/report/findings.ts";

const FINDING_KEYS = [
  "baseline",
  "baseline_method",
  "baseline_per_seed",
  "ci95",
  "claim",
  "claim_id",
  "effect",
  "mde",
  "metric",
  "metric_label",
  "ours",
  "ours_method",
  "ours_per_seed",
  "paper",
  "plan_id",
  "power",
  "resampling",
  "role",
  "rows",
  "scope",
  "se",
  "seeds",
  "target_mde",
  "verdict",
];
const VERDICTS = ["reproduced", "contradicted", "inconclusive", "not tested", "descriptive"];

/** Schema of one findings.json entry (also used by the DMPO pipeline test). */
export function assertFindingSchema(f: Finding): void {
  for (const k of FINDING_KEYS) assert.ok(k in f, `${f.claim_id} has ${k}`);
  assert.match(f.claim_id, /^(sdpo|dmpo|dpo4rec)\.[a-z0-9_]+\.[a-z0-9_]+$/, f.claim_id);
  assert.ok(f.claim_id.startsWith(f.paper + "."));
  assert.ok(["headline", "ablation", "sensitivity"].includes(f.scope));
  assert.ok(
    f.plan_id === null || /^(S[0-9]+|DMPO|DPO4Rec)$/.test(f.plan_id),
    `${f.claim_id} plan id`,
  );
  // The power label follows from the verdict, the MDE and the plan's target.
  assert.equal(f.power, powerLabel(f.verdict, f.mde, f.target_mde), `${f.claim_id} power`);
  if (f.scope === "sensitivity") assert.ok(CHECKPOINT_RULES.includes(f.rule!), f.rule);
  assert.ok(VERDICTS.includes(f.verdict), f.verdict);
  if (f.verdict === "descriptive") {
    assert.ok(typeof f.note === "string" && f.note.length > 0, `${f.claim_id} describes`);
    assert.equal(f.effect, null);
    assert.equal(f.ci95, null);
    assert.equal(f.power, null);
  } else if (f.verdict === "not tested") {
    assert.ok(typeof f.reason === "string" && f.reason.length > 0, `${f.claim_id} says why`);
    assert.equal(f.effect, null);
    assert.equal(f.ci95, null);
    assert.equal(f.mde, null);
    assert.equal(f.resampling, null);
  } else {
    assert.equal(f.reason, undefined);
    assert.ok(Number.isFinite(f.effect) && Number.isFinite(f.ours) && Number.isFinite(f.baseline));
    assert.equal(f.ci95!.length, 2);
    assert.ok(f.ci95![0] <= f.effect! + 1e-12 && f.effect! <= f.ci95![1] + 1e-12);
    // The plan's three-way verdict from the CI, amended (docs/analysis-plan.md) where the CI
    // rules out a gain of the claim's target size.
    const three = verdictOf({ lo: f.ci95![0], hi: f.ci95![1] });
    const out = ruledOut(three, { hi: f.ci95![1] }, f.target_mde, f.se);
    assert.equal(f.verdict, out === undefined ? three : "contradicted", `${f.claim_id} verdict`);
    assert.equal(f.ruled_out, out, `${f.claim_id} ruled_out`);
    assert.equal(f.verdict_original_rule, out === undefined ? undefined : three);
    assert.ok(f.mde === null || (Number.isFinite(f.mde) && f.mde >= 0));
    // The MDE is 2.80 × the bootstrap SE of the same resampling.
    assert.ok(Number.isFinite(f.se) && f.se! >= 0);
    assert.ok(Math.abs(f.mde! - 2.8016 * f.se!) < 1e-3 * Math.max(f.se!, 1e-9) + 1e-12);
    const r = f.resampling!;
    assert.ok(["seeds, then test clusters", "test clusters"].includes(r.levels), r.levels);
    assert.ok(["user", "prompt"].includes(r.cluster_by));
    assert.ok(r.clusters >= 1 && r.seed_units >= 1 && r.iters >= 2);
    assert.equal(r.levels === "seeds, then test clusters", r.seed_units > 1);
    assert.ok(typeof r.description === "string" && r.description.length > 0);
    assert.ok(typeof f.ours_method === "string" && typeof f.baseline_method === "string");
    assert.ok(f.rows > 0);
  }
}
