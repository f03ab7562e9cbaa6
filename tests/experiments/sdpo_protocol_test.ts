/**
 * The released S-DPO protocol pieces of src/experiments/sdpo.ts, against values computed by
 * hand: the validation losses, negatives drawn once, the budget, curve bands.
 */
import assert from "node:assert/strict";
import {
  drawNegativesOnce,
  preferenceDiagnostics,
  sdpoArmSteps,
  sdpoLoraConfig,
  sdpoProtocol,
  validationLoss,
  withNegatives,
} from "../../src/experiments/sdpo.ts";
import { SCALE_PRESETS } from "../../src/experiments/common.ts";
import type { TrainExample } from "../../src/train.ts";

const close = (a: number, b: number, tol = 1e-9) =>
  assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

Deno.test("validationLoss: K=1 is the DPO loss, K=3 the S-DPO loss, K=0 the token-mean NLL", () => {
  const policy = [[-1, -2, -3, -4], [-2.5, -0.5, -1.5, -3]];
  const ref = [[-1.5, -1.5, -2, -4.5], [-2, -1, -1, -2]];
  const pos = [0, 1];
  const negs = [[1, 2, 3], [0, 3, 2]];
  const r = (i: number, j: number) => policy[i][j] - ref[i][j];
  const sp = (x: number) => Math.log(1 + Math.exp(x));
  // DPO: -log σ(β(r_w − r_l)) = softplus(β(r_l − r_w)), β = 2.
  const dpo = (sp(2 * (r(0, 1) - r(0, 0))) + sp(2 * (r(1, 0) - r(1, 1)))) / 2;
  close(validationLoss(policy, ref, pos, negs, 1, 2, [2, 2]), dpo);
  // S-DPO: -log σ(-log Σ_j exp(β(r_j − r_w))) = log(1 + Σ_j exp(β(r_j − r_w))), β = 1.
  const sdpo = (i: number) =>
    Math.log(1 + negs[i].reduce((a, j) => a + Math.exp(r(i, j) - r(i, pos[i])), 0));
  close(validationLoss(policy, ref, pos, negs, 3, 1, [2, 2]), (sdpo(0) + sdpo(1)) / 2);
  // SFT: Σ −logp(positive) / Σ tokens.
  close(validationLoss(policy, ref, pos, negs, 0, 1, [2, 3]), (1 + 0.5) / 5);
  // A large margin stays finite (softplus of a large logsumexp).
  const big = validationLoss([[0, 500]], [[0, 0]], [0], [[1]], 1, 1, [1]);
  close(big, 500, 1e-6);
});

Deno.test("preferenceDiagnostics: TRL's reward accuracies and margins, and the loss of misranked prompts, by hand", () => {
  const policy = [[-1, -2, -3, -4], [-2.5, -0.5, -1.5, -3]];
  const ref = [[-1.5, -1.5, -2, -4.5], [-2, -1, -1, -2]];
  // Rewards β(π − ref), β = 2. Prompt 0 (positive 0): r_w = 1, negatives 1, 2 → −1, −2.
  // Prompt 1 (positive 1): r_w = 1, negatives 0, 3 → −1, −2.
  const d = preferenceDiagnostics(policy, ref, [0, 1], [[1, 2, 3], [0, 3, 2]], 2, 2);
  close(d.accuracies, 1);
  close(d.margins, (2 + 3 + 2 + 3) / 4);
  close(d.chosen, 1);
  close(d.rejected, (-1 - 2 - 1 - 2) / 4);
  close(d.logps_chosen, (-1 - 0.5) / 2);
  // The policy scores the positive first among the K = 2 negatives on both prompts.
  close(d.ranked_first, 1);
  close(d.loss_misranked, 0);
  // One prompt, K = 1, whose negative (index 2) the policy scores above the positive:
  // misranked, its reward is higher too; the loss is softplus(β(r_l − r_w)).
  const e = preferenceDiagnostics([[0, -1, 0.5]], [[0, 0, 0]], [0], [[2]], 1, 1);
  close(e.accuracies, 0);
  close(e.ranked_first, 0);
  close(e.loss_misranked, Math.log(1 + Math.exp(0.5)));
  close(e.loss_misranked, validationLoss([[0, -1, 0.5]], [[0, 0, 0]], [0], [[2]], 1, 1, [1]));
});

Deno.test("drawNegativesOnce: seeded, distinct, in range, nested across K; withNegatives uses the first K", () => {
  const ex: TrainExample[] = Array.from({ length: 50 }, (_, i) => ({
    prompt: [1, i],
    chosen: [5],
    rejected: Array.from({ length: 19 }, (_, j) => [100 + j]),
  }));
  const a = drawNegativesOnce(ex, 8, 0);
  assert.deepEqual(a, drawNegativesOnce(ex, 8, 0));
  assert.notDeepEqual(a, drawNegativesOnce(ex, 8, 1));
  for (const d of a) {
    assert.equal(d.length, 8);
    assert.equal(new Set(d).size, 8);
    assert.ok(d.every((j) => Number.isInteger(j) && j >= 0 && j < 19));
  }
  // Across prompts the draws are not all the same.
  assert.ok(new Set(a.map((d) => d.join(","))).size > 40);
  const k1 = withNegatives(ex, a, 1), k3 = withNegatives(ex, a, 3), k0 = withNegatives(ex, a, 0);
  ex.forEach((e, i) => {
    assert.deepEqual(k1[i].rejected, [e.rejected![a[i][0]]]);
    assert.deepEqual(k3[i].rejected, a[i].slice(0, 3).map((j) => e.rejected![j]));
    assert.deepEqual(k3[i].rejected!.slice(0, 1), k1[i].rejected);
    assert.equal(k0[i].rejected, undefined);
    assert.deepEqual(k3[i].prompt, e.prompt);
  });
  assert.throws(() => drawNegativesOnce([{ prompt: [1], chosen: [2], rejected: [[3]] }], 3, 0));
});

Deno.test("sdpoArmSteps: the released 3:5 proportion of stage 0's examples at full; fixed steps below", () => {
  const full = SCALE_PRESETS.full;
  // 0.6 × 450 steps × 64 = 17,280 examples = 2,160 steps of 8.
  assert.equal(sdpoArmSteps(full), 2160);
  assert.equal(sdpoArmSteps(SCALE_PRESETS.small), SCALE_PRESETS.small.sdpoArmSteps);
  const p = sdpoProtocol(
    full,
    1e-3,
    [{ lr: 3e-4, val_hr1: 0.2, best_step: 10 }, {
      lr: 1e-3,
      val_hr1: 0.3,
      best_step: 20,
    }],
    22400,
    400,
  );
  assert.equal(p.examples_per_arm, 17280);
  assert.equal(p.max_grad_norm, 0.3);
  assert.deepEqual([p.lora.r, p.lora.lora_alpha, p.lora.lora_dropout], [8, 32, 0.1]);
  assert.equal(p.lora.target_modules.length, 7);
  assert.equal(p.warmup_steps, 108);
  assert.ok(p.departures.some((d) => d.includes("17280") && d.includes("0.77 epochs")));
  assert.ok(p.departures.some((d) => d.includes("chosen among 0.0003, 0.001")));
  // The small (default) run says it is under the released budget.
  const s = sdpoProtocol(
    SCALE_PRESETS.small,
    1e-3,
    [{ lr: 1e-3, val_hr1: null, best_step: null }],
    22400,
    200,
  );
  assert.ok(s.departures.some((d) => d.includes("far below the released proportion")));
  // A rate fixed by --lr is named as such, not as the scale's default.
  const f = sdpoProtocol(
    full,
    3e-3,
    [{ lr: 3e-3, val_hr1: null, best_step: null }],
    22400,
    400,
    true,
  );
  assert.ok(f.departures.some((d) => d.startsWith("Learning rate 0.003, fixed by --lr")));
  assert.ok(!p.departures.some((d) => d.includes("--lr")));
  assert.deepEqual(sdpoLoraConfig(3).seed, 3);
});
