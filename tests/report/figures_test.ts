/**
 * The figures: every committed plot under results/ follows the plotting rules (lintSpec), shows
 * no cut label, and is what `deno task plots` draws from the committed metrics.json; the
 * builders average seeds, attach intervals and name the backend as it ran.
 */
import assert from "node:assert/strict";
import { lintSpec, meanCI, renderSvg, wilsonCI } from "../../src/report/plot.ts";
import {
  dpo4recFigures,
  sdpoFigures,
  sdpoHr1CurveFigures,
  sdpoHr1CurveRows,
  sdpoLossPartsFigures,
} from "../../src/report/figures.ts";
import { figuresOf } from "../../src/cli/plots.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

async function committedPlots(dir = `${ROOT}results`): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory && !e.name.startsWith(".") && e.name !== "runs") {
      out.push(...await committedPlots(p));
    } else if (e.name.endsWith(".vl.json") && !p.includes("/results/bench/")) out.push(p);
  }
  return out.sort();
}

Deno.test("every committed plot follows the rules and shows its labels in full", async () => {
  const plots = await committedPlots();
  assert.ok(plots.length >= 10, `plots found: ${plots.length}`);
  for (const p of plots) {
    const spec = JSON.parse(await Deno.readTextFile(p));
    const rel = p.slice(ROOT.length);
    const seeds = new Set(
      (spec.data?.values ?? []).map((r: Record<string, unknown>) => r.seeds).filter(Boolean),
    );
    assert.deepEqual(lintSpec(spec, { seeds: [...seeds].some((s) => Number(s) > 1) }), [], rel);
    const svg = await Deno.readTextFile(p.replace(/\.vl\.json$/, ".svg"));
    assert.ok(!svg.includes("…"), `${rel}: a label is cut`);
  }
});

Deno.test("the committed plots are what `deno task plots` draws from the committed metrics.json", async () => {
  for (
    const dir of [
      "sdpo/synthetic",
      "ablations/sdpo/synthetic",
      "dmpo/synthetic",
      "dpo4rec/synthetic",
    ]
  ) {
    const metrics = JSON.parse(await Deno.readTextFile(`${ROOT}results/${dir}/metrics.json`));
    const figs = figuresOf(metrics);
    assert.ok(Object.keys(figs).length > 0, dir);
    for (const [name, spec] of Object.entries(figs)) {
      const committed = await Deno.readTextFile(`${ROOT}results/${dir}/${name}.svg`);
      assert.equal(await renderSvg(spec), committed, `results/${dir}/${name}.svg is stale`);
    }
  }
});

Deno.test("S-DPO curves: colour = method, seeds averaged with a band; ablation points carry a Wilson interval", () => {
  const curves = [0, 1, 2].flatMap((seed) =>
    ["DPO", "S-DPO"].flatMap((method) =>
      [6, 12].map((step) => ({
        method,
        seed,
        step,
        metric: "logps/chosen",
        value: method === "DPO" ? -step - seed : -3 + seed,
      }))
    )
  );
  const hits = (p: number) => Array.from({ length: 100 }, (_, i) => (i < p * 100 ? 1 : 0));
  const figs = sdpoFigures({
    curves,
    num_test: 100,
    references: { Random: { hr1_rank: 0.05 }, Oracle: { hr1_rank: 0.4 } },
    per_seed: [{ seed: 0, methods: { SFT: { hr1_rank: 0.2 } } }],
    ablations: {
      seed: 0,
      k_sweep: [1, 3].map((k) => ({ k, row: { hr1_rank: 0.25, rank_hits: hits(0.25) } })),
      beta_sweep: [{ beta: 1, row: { hr1_rank: 0.25, rank_hits: hits(0.25) } }],
      samplers: [{ sampler: "uniform", method: "DPO", row: { hr1_rank: 0.25 } }],
      neg_weights: [{ ref_rank: 1, weight: 0.2, uniform: 1 / 19 }],
    },
  });
  const c = figs.curves as { data: { values: Record<string, unknown>[] } };
  assert.equal(c.data.values.length, 4, "2 methods × 2 steps, seeds averaged");
  assert.deepEqual([...new Set(c.data.values.map((r) => r.method))], ["DPO", "S-DPO"]);
  const dpo12 = c.data.values.find((r) => r.method === "DPO" && r.step === 12)!;
  assert.equal(dpo12.value, -13);
  assert.deepEqual(lintSpec(figs.curves, { seeds: true }), []);
  const k = figs.k_sweep as { data: { values: { K: number; lo: number; hi: number }[] } };
  // Wilson 95 % interval of 0.25 on 100 rows: [0.1754, 0.3430].
  assert.ok(Math.abs(k.data.values[0].lo - 0.17545) < 1e-4, String(k.data.values[0].lo));
  assert.ok(Math.abs(k.data.values[0].hi - 0.34303) < 1e-4, String(k.data.values[0].hi));
  const refs = JSON.stringify(figs.k_sweep);
  for (const label of ["SFT 0.200", "chance 0.05", "oracle 0.400"]) assert.ok(refs.includes(label));
  for (const [name, spec] of Object.entries(figs)) assert.deepEqual(lintSpec(spec), [], name);
});

Deno.test("DPO4Rec reward vs N: one line per pick over integer N, seeds averaged, never joined", () => {
  const sampling = (off: number) =>
    [2, 4, 8].map((n) => ({
      n,
      best_reward: -5 + off + 0.01 * n,
      worst_reward: -5 + off - 0.01 * n,
      single_reward: -5 + off,
    }));
  // 40 test rows: a normal interval over 4 rows of 0/1 would reach past [0, 1] (lintSpec says so).
  const method = { hr1: 0.5, rank_hits: Array.from({ length: 40 }, (_, i) => i % 2) };
  const figs = dpo4recFigures({
    seeds: [0, 1],
    methods: ["SASRec"],
    references: { Random: { hr1: 0.05 } },
    per_seed: [
      { seed: 0, methods: { SASRec: method }, sampling: sampling(0) },
      { seed: 1, methods: { SASRec: method }, sampling: sampling(0.3) },
    ],
  });
  const v = (figs.reward_vs_n as { data: { values: Record<string, number | string>[] } }).data
    .values;
  assert.equal(v.length, 6, "2 picks × 3 N");
  const best8 = v.find((r) => r.pick === "best of N" && r.N === 8)!;
  assert.ok(Math.abs((best8.gain as number) - 0.08) < 1e-12, "the seed offset cancels");
  for (const [name, spec] of Object.entries(figs)) assert.deepEqual(lintSpec(spec), [], name);
});

Deno.test("S-DPO HR@1 vs step: test = expected HR@1 averaged over seeds, interval over users; validation = sampled with Wilson; legend and SFT line", async () => {
  // 4 test rows of 2 users; 2 seeds. DPO seed 0 / seed 1 rows, averaged per row over seeds.
  const exp = {
    DPO: [[0.2, 0.4, 0.1, 0.3], [0.4, 0.2, 0.3, 0.1]],
    "S-DPO": [[0.5, 0.5, 0.1, 0.1], [0.3, 0.3, 0.3, 0.3]],
  };
  const curve_hits = Object.entries(exp).flatMap(([method, seeds]) =>
    seeds.map((rank_expected, seed) => ({
      method,
      seed,
      step: 10,
      rank_hits: [0, 0, 0, 0],
      rank_expected,
    }))
  );
  const hr1_curves = [0, 1].flatMap((seed) =>
    ["DPO", "S-DPO"].flatMap((method) => [
      { method, seed, step: 0, split: "valid", hr1: 0.15 + 0.1 * seed },
      { method, seed, step: 10, split: "valid", hr1: method === "DPO" ? 0.2 + 0.1 * seed : 0.3 },
      { method, seed, step: 0, split: "test", hr1: 0.9 },
      { method, seed, step: 10, split: "test", hr1: 0.9 },
    ])
  );
  const input = {
    scale: { sdpoKs: [3, 8] },
    num_valid: 100,
    row_users: [7, 7, 9, 9, 11, 11],
    per_seed: [0, 1].map((seed) => ({
      seed,
      methods: { SFT: { rank_expected: [0.1, 0.1, 0.3, 0.3, 0.9, 0.9] } },
    })),
    hr1_curves,
    curve_hits,
  };
  const { rows, seeds, panels } = sdpoHr1CurveRows(input);
  assert.equal(seeds, 2);
  assert.deepEqual(panels, [
    "Validation prompts: sampled HR@1 (100 prompts)",
    "Test prompts: expected HR@1 (first 4 test prompts)",
  ]);
  const row = (panel: number, method: string) =>
    rows.find((r) => r.panel === panels[panel] && r.method === method)!;
  // DPO test rows over seeds: 0.3, 0.3, 0.2, 0.2 → users 0.3, 0.2: mean 0.25, t over 2 users.
  const dpo = row(1, "DPO");
  const byUsers = meanCI([0.3, 0.2]);
  assert.ok(Math.abs(dpo.hr1 - 0.25) < 1e-12);
  assert.ok(Math.abs(dpo.lo - byUsers.lo) < 1e-9 && Math.abs(dpo.hi - byUsers.hi) < 1e-9);
  // S-DPO is named with its K; its rows average to 0.4, 0.4, 0.2, 0.2.
  const sdpo = row(1, "S-DPO (K=3)");
  assert.ok(Math.abs(sdpo.hr1 - 0.3) < 1e-12);
  // Test SFT line: the first 4 rows of SFT's expected hits (the curve prompts), not all 6.
  assert.ok(Math.abs(row(1, "SFT").hr1 - 0.2) < 1e-12);
  assert.equal(row(1, "SFT").kind, "ref");
  // Validation: sampled HR@1 averaged over seeds (0.2, 0.3 → 0.25), Wilson over 100 prompts;
  // SFT = step 0 (0.15, 0.25 → 0.2); the test split of hr1_curves is replaced by curve_hits.
  const v = row(0, "DPO");
  const w = wilsonCI(0.25, 100);
  assert.ok(Math.abs(v.hr1 - 0.25) < 1e-12 && Math.abs(v.lo - w.lo) < 1e-12);
  assert.ok(Math.abs(row(0, "SFT").hr1 - 0.2) < 1e-12);
  assert.ok(!rows.some((r) => r.hr1 === 0.9), "sampled test HR@1 not plotted beside the expected");

  const spec = sdpoHr1CurveFigures(input).hr1_curves;
  // Two users: the t interval (1 df) reaches outside [0, 1], and the rules say so (nothing is
  // clamped); the committed plot, over 100 users, passes them (test above).
  assert.deepEqual(lintSpec(spec).map((p) => p.replace(/spans \S+ … \S+,/, "spans …,")), [
    `the interval of "HR@1 (ranking, 20 candidates)" spans …, outside the metric's [0, 1]: ` +
    "the wrong interval for a rate",
  ]);
  const svg = await renderSvg(spec);
  for (const label of ["DPO", "S-DPO (K=3)", "SFT 0.200", panels[0], panels[1]]) {
    assert.ok(svg.includes(label), label);
  }
  assert.ok(svg.includes("role-legend-label"), "a legend");
  assert.ok(!svg.includes("…"));
  assert.ok(
    JSON.stringify(spec).includes(
      "mean over 2 seeds; band: validation: Wilson 95 % interval " +
        "over 100 prompts; test: 95 % interval over 2 test users",
    ),
  );
  assert.deepEqual(sdpoHr1CurveFigures({}), {});
});

Deno.test("val_loss_parts: each part's mean and t band over the seeds that recorded it, per arm and step", async () => {
  const diag = (train_loss: number, loss_misranked: number) => ({
    train_loss,
    loss_misranked,
    accuracies: 0.7,
    chosen: -0.2,
  });
  const hr1_curves = [
    { method: "DPO", seed: 0, step: 0, split: "valid", hr1: 0.2, loss: null },
    { method: "DPO", seed: 0, step: 10, split: "valid", hr1: 0.25, loss: 0.5 },
    {
      method: "DPO",
      seed: 1,
      step: 10,
      split: "valid",
      hr1: 0.3,
      loss: 0.6,
      diagnostics: diag(0.4, 0.2),
    },
    {
      method: "DPO",
      seed: 2,
      step: 10,
      split: "valid",
      hr1: 0.2,
      loss: 0.8,
      diagnostics: diag(0.5, 0.3),
    },
    { method: "DPO", seed: 1, step: 10, split: "test", hr1: 0.9, loss: null },
    {
      method: "S-DPO",
      seed: 1,
      step: 10,
      split: "valid",
      hr1: 0.1,
      loss: 1.0,
      diagnostics: diag(0.9, 0.6),
    },
  ];
  const spec = sdpoLossPartsFigures({ hr1_curves }).val_loss_parts;
  // deno-lint-ignore no-explicit-any
  const rows = (spec.data as any).values as {
    panel: string;
    method: string;
    y: number;
    lo: number;
    hi: number;
  }[];
  const at = (method: string, panel: string) =>
    rows.find((r) => r.method === method && r.panel.startsWith(panel))!;
  // Seed 0 recorded no parts: DPO's loss is the mean of seeds 1 and 2 only (0.6, 0.8 → 0.7).
  const loss = at("DPO", "validation loss");
  const ci = meanCI([0.6, 0.8]);
  assert.ok(Math.abs(loss.y - 0.7) < 1e-12 && Math.abs(loss.lo - ci.lo) < 1e-12);
  assert.ok(Math.abs(at("DPO", "the same loss on the arm's train").y - 0.45) < 1e-12);
  assert.ok(Math.abs(at("DPO", "its part from misranked").y - 0.25) < 1e-12);
  assert.ok(Math.abs(at("DPO", "validation HR@1").y - 0.25) < 1e-12);
  // One seed: no band (lo = hi = mean), not a t interval of one value.
  const one = at("S-DPO", "validation loss");
  assert.ok(one.lo === 1.0 && one.hi === 1.0);
  assert.equal(rows.length, 2 * 6);
  assert.deepEqual(lintSpec(spec, { seeds: true }), []);
  const svg = await renderSvg(spec);
  for (const label of ["DPO", "S-DPO", "its part from misranked validation prompts"]) {
    assert.ok(svg.includes(label), label);
  }
  assert.deepEqual(sdpoLossPartsFigures({ hr1_curves: hr1_curves.slice(0, 2) }), {});
  // The learning-rate selection: one line per lr with parts; no figure from a single lr.
  const lr_selection = [0.001, 0.003].map((lr, i) => ({
    lr,
    curve: [{ step: 10, hr1: 0.2 + i / 10, loss: 0.5 + i, diagnostics: diag(0.4, 0.1 * (i + 1)) }],
  }));
  const sel = sdpoLossPartsFigures({ lr_selection }).lr_selection_parts;
  // deno-lint-ignore no-explicit-any
  const selRows = (sel.data as any).values as { panel: string; method: string; y: number }[];
  assert.deepEqual([...new Set(selRows.map((r) => r.method))], ["lr 0.001", "lr 0.003"]);
  const selLoss = selRows.find((r) =>
    r.method === "lr 0.003" && r.panel.startsWith("validation loss")
  );
  assert.equal(selLoss?.y, 1.5);
  assert.deepEqual(lintSpec(sel), []);
  assert.deepEqual(sdpoLossPartsFigures({ lr_selection: lr_selection.slice(1) }), {});
});
