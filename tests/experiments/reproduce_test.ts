import assert from "node:assert/strict";
import { initBackend } from "../../src/backend.ts";
import { LlamaModel } from "../../src/model.ts";
import { scorePairs } from "../../src/train.ts";
import { aucPaired } from "../../src/eval/metrics.ts";
import { findingsOfMetrics } from "../../src/cli/findings.ts";
import {
  modelConfig,
  SCALE_PRESETS,
  scoreResponses,
  scoreResponsesKv,
} from "../../src/experiments/common.ts";
import { CLAIMS, verdictOf } from "../../src/report/findings.ts";
import { main } from "../../src/cli/reproduce.ts";
import { planReproduce } from "../../src/cli/_progress.ts";
import { BASELINE_ROWS } from "../../src/experiments/baselines.ts";

await initBackend("wasm", { quiet: true });

const CLI = new URL("../../src/cli/reproduce.ts", import.meta.url).pathname;

Deno.test("scoreResponses (packed) and scoreResponsesKv (shared-prefix KV cache) equal scorePairs", () => {
  const model = LlamaModel.random(modelConfig(40), 3);
  const items = [
    { prompt: [1, 5, 6, 7, 8], responses: [[9, 2], [10, 11, 2], [12, 13, 14, 2]] },
    { prompt: [1, 20], responses: [[21, 22, 2], [2]] },
  ];
  const fast = scoreResponses(model, items).flat();
  const kv = scoreResponsesKv(model, items).flat();
  const slow = scorePairs(
    model,
    items.flatMap((it) => it.responses.map((r) => ({ prompt: it.prompt, response: r }))),
  );
  assert.equal(fast.length, slow.length);
  fast.forEach((v, i) => assert.ok(Math.abs(v - slow[i]) < 1e-4, `${i}: ${v} vs ${slow[i]}`));
  kv.forEach((v, i) => assert.ok(Math.abs(v - slow[i]) < 1e-4, `kv ${i}: ${v} vs ${slow[i]}`));
  model.dispose();
});

Deno.test("reproduce --scale test writes parseable artefacts with sane metrics and verdicts", async () => {
  const out = await Deno.makeTempDir({ prefix: "recalign-reproduce-" });
  try {
    const dirs = await main(["--paper", "all", "--scale", "test", "--out", out]);
    assert.equal(dirs.length, 3);
    assert.ok(dirs.some((d) => d.endsWith("dpo4rec/synthetic")));
    const readme = await Deno.readTextFile(`${out}/README.md`);
    for (const paper of ["sdpo", "dmpo"]) {
      const dir = `${out}/${paper}/synthetic`;
      assert.match(readme, new RegExp(`${paper}/synthetic/metrics.json`));
      const m = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
      const table = await Deno.readTextFile(`${dir}/table.md`);
      const findings = await Deno.readTextFile(`${dir}/findings.md`);
      assert.equal(m.paper, paper);
      assert.ok(typeof m.backend.backend === "string");
      assert.deepEqual(m.seeds, [0]);
      // The overall progress line planned exactly the stages this run recorded.
      const planned = planReproduce({
        papers: ["sdpo", "dmpo", "dpo4rec"],
        scale: SCALE_PRESETS.test,
        seeds: { sdpo: 1, dmpo: 1, dpo4rec: 1 },
        sdpoAblations: true,
        dmpoAblations: true,
        synthetic: true,
      }).filter((s) =>
        s.experiment.startsWith(paper) || (paper === "sdpo" && s.experiment === "baselines")
      );
      assert.equal(m.stage_seconds.length, planned.length, `${paper}: stages recorded vs planned`);
      const unit = paper === "sdpo"
        ? ["hr1_rank", "ndcg5_rank", "hr1_gen_all", "valid_ratio"]
        : ["auc_released", "auc_paired"];
      for (const s of m.result.per_seed) {
        for (
          const [method, v] of Object.entries(s.methods) as [string, Record<string, unknown>][]
        ) {
          const isBaseline = Object.values(BASELINE_ROWS).includes(method);
          for (const f of isBaseline ? unit.filter((u) => !/gen|valid/.test(u)) : unit) {
            const x = v[f] as number;
            assert.ok(Number.isFinite(x) && x >= 0 && x <= 1, `${paper} ${method} ${f} = ${x}`);
          }
          assert.ok(Number.isFinite(v.train_seconds as number));
          assert.ok(table.includes(`| ${method} |`), `table lists ${method}`);
        }
      }
      for (const ref of ["Oracle", "History-Bayes", "Popularity", "Random"]) {
        assert.ok(table.includes(`*${ref}* (reference)`));
      }
      // Every claim is listed with the verdict metrics.json holds, and that verdict follows
      // from the per-row numbers.
      const claims = CLAIMS.filter((c) => c.paper === paper);
      assert.equal(m.claims.length, claims.length);
      for (const c of m.claims) {
        const row = findings.split("\n").find((l) => l.startsWith(`| ${c.text} |`));
        assert.ok(row, `findings.md lists "${c.text}"`);
        assert.ok(row!.includes(`**${c.verdict}**`));
        const a = m.result.per_seed.flatMap((
          s: { methods: Record<string, Record<string, number[]>> },
        ) => s.methods[c.a][c.metric]);
        const b = m.result.per_seed.flatMap((
          s: { methods: Record<string, Record<string, number[]>> },
        ) => s.methods[c.b][c.metric]);
        const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
        assert.ok(Math.abs(mean(a) - mean(b) - c.diff.mean) < 1e-12);
        // The verdict again from metrics.json alone (`deno task findings`).
        const again = findingsOfMetrics(m).find((f) => f.claim_id === c.id)!;
        assert.equal(again.verdict, c.verdict);
        assert.deepEqual(again.ci95, [c.diff.lo, c.diff.hi]);
      }
      if (paper === "sdpo") {
        // Ablations ran (test scale default), with their claims, plots and stage times.
        assert.ok(m.result.ablations, "ablations present");
        assert.equal(
          m.ablation_claims.length,
          CLAIMS.filter((c) => c.paper === "sdpo-abl").length,
        );
        for (const c of m.ablation_claims) {
          const row = findings.split("\n").find((l) => l.startsWith(`| ${c.text} |`));
          assert.ok(row?.includes(`**${c.verdict}**`), `findings.md lists "${c.text}"`);
        }
        for (const f of ["curves", "k_sweep", "beta_sweep", "samplers", "negative_weights"]) {
          const svg = await Deno.readTextFile(`${dir}/${f}.svg`);
          assert.match(svg, /^<svg/);
          assert.ok(table.includes(`(${f}.svg)`), `table.md shows ${f}.svg`);
        }
        const w = m.result.ablations.neg_weights.reduce(
          (a: number, x: { weight: number }) => a + x.weight,
          0,
        );
        assert.ok(Math.abs(w - 1) < 1e-3, `negative weights sum to 1 (${w})`);
        assert.ok(m.result.curves.some((c: { metric: string }) => c.metric === "logps/chosen"));
      }
      assert.ok(m.stage_seconds.length > 0, "per-stage times");
      if (paper === "dmpo") {
        // aucPaired re-derived from the stored log-probs.
        const sft = m.result.per_seed[0].methods.SFT;
        assert.ok(Math.abs(aucPaired(sft.chosen_logp, sft.rejected_logp) - sft.auc_paired) < 0.02);
      }
    }
    // The stage-0 snapshot was cached on disk and a rerun reuses it.
    const cached = [...Deno.readDirSync(`${out}/.cache`)].map((e) => e.name);
    assert.ok(cached.some((n) => /^base-test-s0-[0-9a-f]+\.safetensors$/.test(n)), cached.join());
    await main(["--paper", "dmpo", "--scale", "test", "--out", out, "--no-ablations"]);
    const m2 = JSON.parse(await Deno.readTextFile(`${out}/dmpo/synthetic/metrics.json`));
    assert.ok(
      m2.stage_seconds.some((t: { stage: string }) => /from disk cache/.test(t.stage)),
      JSON.stringify(m2.stage_seconds),
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("reproduce: an unknown flag exits 2 with a one-line message naming it", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "--frobnicate", "3"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(r.stderr).trim();
  assert.equal(r.code, 2);
  assert.match(err, /--frobnicate/);
  assert.match(err, /--paper/);
  assert.equal(err.split("\n").length, 1, err);
  assert.ok(!/at .*\.ts:\d+/.test(err), "no stack trace");
});

Deno.test("reproduce: a bad --scale value exits 2", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "--scale", "huge"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 2);
  assert.match(new TextDecoder().decode(r.stderr), /--scale/);
});

Deno.test("verdictOf follows the CI", () => {
  assert.equal(verdictOf({ lo: 0.01, hi: 0.2 }), "reproduced");
  assert.equal(verdictOf({ lo: -0.2, hi: -0.01 }), "contradicted");
  assert.equal(verdictOf({ lo: -0.1, hi: 0.1 }), "inconclusive");
  assert.equal(verdictOf({ lo: 0, hi: 0 }), "inconclusive");
});

Deno.test("seeds sharing stage 0 reuse its evaluation: the rows equal a fresh evaluation", async () => {
  const { run: runSdpo } = await import("../../src/experiments/sdpo.ts");
  const { run: runDmpo } = await import("../../src/experiments/dmpo.ts");
  const { clearBaseCache, takeStageTimes } = await import("../../src/experiments/common.ts");
  const common = { scale: "test" as const, progress: false, baselines: false };
  const drop = (row: Record<string, unknown>) => {
    const { eval_seconds: _e, train_seconds: _t, ...rest } = row;
    return rest;
  };
  try {
    clearBaseCache();
    takeStageTimes();
    const two = await runSdpo({ ...common, seeds: [0, 1] });
    // Which evaluations ran is read from the recorded stages, not from their (rounded) seconds,
    // which a fast machine can take to 0.
    const evals = takeStageTimes().filter((s) => s.stage.startsWith("eval/"))
      .map((s) => `${s.seed} ${s.stage}`);
    const dmpoTwo = await runDmpo({ ...common, seeds: [0, 1] });
    // Seed 1 alone, nothing cached: its SFT / Base LM rows are evaluated afresh.
    clearBaseCache();
    const one = await runSdpo({ ...common, seeds: [1] });
    const dmpoOne = await runDmpo({ ...common, seeds: [1] });
    const reused = two.per_seed[1].methods.SFT;
    assert.equal(reused.eval_seconds, 0);
    assert.ok(evals.includes("0 eval/SFT"), evals.join(", "));
    assert.ok(evals.includes("1 eval/SFT (reused)"), evals.join(", "));
    assert.ok(!evals.includes("1 eval/SFT"), evals.join(", "));
    assert.deepEqual(drop({ ...reused }), drop({ ...one.per_seed[0].methods.SFT }));
    for (const m of ["Base LM", "SFT"]) {
      const r = dmpoTwo.per_seed[1].methods[m];
      assert.equal(r.eval_seconds, 0, m);
      assert.deepEqual(drop({ ...r }), drop({ ...dmpoOne.per_seed[0].methods[m] }), m);
    }
    // The arms trained per seed are still evaluated per seed.
    assert.ok(evals.includes("1 eval/S-DPO"), evals.join(", "));
  } finally {
    clearBaseCache();
  }
});

Deno.test("S-DPO --arms: only the named main arms train; claims on the others are not tested; unknown names fail in one line", async () => {
  const { run: runSdpo } = await import("../../src/experiments/sdpo.ts");
  const { sdpoFindings } = await import("../../src/report/findings.ts");
  const common = { scale: "test" as const, progress: false, baselines: false, seeds: [0] };
  await assert.rejects(
    () => runSdpo({ ...common, arms: ["DPO", "S-DPO K=3"] }),
    /arms.*unknown arm\(s\) "S-DPO K=3"; the main arms are SFT-cont, DPO, S-DPO, S-DPO K=8/,
  );
  const r = await runSdpo({ ...common, arms: ["DPO", "S-DPO"] });
  assert.deepEqual(Object.keys(r.per_seed[0].methods).sort(), ["DPO", "S-DPO", "SFT"]);
  assert.deepEqual([...new Set(r.hr1_curves.map((c) => c.method))].sort(), ["DPO", "S-DPO"]);
  const f = sdpoFindings(r);
  const byId = (id: string) => f.find((x) => x.claim_id === id)!;
  assert.notEqual(byId("sdpo.sdpo_gt_dpo.exp_hr1").verdict, "not tested");
  assert.equal(byId("sdpo.sdpo_gt_sft_cont.exp_hr1").verdict, "not tested");
  assert.equal(byId("sdpo.k8_gt_k3.exp_hr1").verdict, "not tested");
  // A fixed rate (--lr): no selection, every arm at that rate, the protocol says so.
  const fixed = await runSdpo({ ...common, seeds: [7], arms: ["DPO"], lr: 5e-4 });
  assert.deepEqual(fixed.lr_selection.map((x) => x.lr), [5e-4]);
  assert.equal(fixed.per_seed[0].seed, 7);
  assert.equal(fixed.per_seed[0].methods.DPO.lr, 5e-4);
  assert.ok(fixed.protocol!.departures.some((d) => d.includes("fixed by --lr")));
});
