import assert from "node:assert/strict";
import {
  barChart,
  clusterMeanCI,
  display,
  lineChart,
  lintSpec,
  meanCI,
  renderSvg,
  wilsonCI,
  writePlot,
} from "../../src/report/plot.ts";

Deno.test("lineChart() renders to SVG with one path per series and the axis titles", async () => {
  const rows = [0, 1, 2, 3].flatMap((s) => [
    { step: s, value: s * 2, method: "DPO" },
    { step: s, value: s * 3, method: "S-DPO" },
  ]);
  const svg = await renderSvg(
    lineChart(rows, { x: "step", y: "value", color: "method", yTitle: "reward" }),
  );
  assert.match(svg, /^<svg/);
  assert.match(svg, />reward</);
  assert.equal((svg.match(/class="mark-line role-mark/g) ?? []).length, 2, "one line per series");
  assert.match(svg, /S-DPO/);
});

Deno.test("barChart() with error bars renders one rect per category; writePlot() writes svg and spec", async () => {
  const rows = [
    { method: "SFT", hr: 0.3, lo: 0.25, hi: 0.35 },
    { method: "DPO", hr: 0.4, lo: 0.35, hi: 0.45 },
    { method: "S-DPO", hr: 0.45, lo: 0.4, hi: 0.5 },
  ];
  const spec = barChart(rows, { x: "method", y: "hr", yLow: "lo", yHigh: "hi" });
  const svg = await renderSvg(spec);
  assert.equal((svg.match(/aria-roledescription="bar"/g) ?? []).length, 3);
  assert.equal((svg.match(/aria-roledescription="rule mark"/g) ?? []).length, 3);
  const dir = await Deno.makeTempDir();
  await writePlot(`${dir}/hr.svg`, spec);
  assert.match(await Deno.readTextFile(`${dir}/hr.svg`), /^<svg/);
  assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/hr.vl.json`)).data.values, rows);
  const shown = await display(spec);
  const bundle = shown[Symbol.for("Jupyter.display")]();
  assert.ok("application/vnd.vegalite.v5+json" in bundle && "image/svg+xml" in bundle);
  // HTML exports strip inline SVG: the bundle also carries it as an <img> with a data URI.
  const img = String(bundle["text/html"]).match(/^<img src="data:image\/svg\+xml;base64,([^"]+)"/);
  assert.ok(img, "an <img> of the plot");
  const bytes = Uint8Array.from(atob(img[1]), (c) => c.charCodeAt(0));
  assert.equal(new TextDecoder().decode(bytes), bundle["image/svg+xml"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("wilsonCI() and meanCI() match values computed by hand", () => {
  const w = wilsonCI(0.5, 100);
  assert.ok(Math.abs(w.lo - 0.403832) < 1e-5 && Math.abs(w.hi - 0.596168) < 1e-5);
  const w2 = wilsonCI(0.2, 400);
  assert.ok(Math.abs(w2.lo - 0.163737) < 1e-5 && Math.abs(w2.hi - 0.241970) < 1e-5);
  // mean 0.2125, sd 0.085391 (n − 1), t(3) = 3.182: half-width 0.135857.
  const m = meanCI([0.1, 0.3, 0.2, 0.25]);
  assert.ok(Math.abs(m.mean - 0.2125) < 1e-12);
  assert.ok(Math.abs(m.lo - 0.076643) < 1e-5 && Math.abs(m.hi - 0.348357) < 1e-5);
  assert.deepEqual(meanCI([0.4]), { mean: 0.4, lo: 0.4, hi: 0.4, n: 1 });
});

Deno.test("lineChart() with seeds: one mean line per method with a 95 % band, never a line per seed", async () => {
  const rows = [0, 1, 2].flatMap((seed) =>
    [1, 2, 3].flatMap((step) => [
      { step, value: step + seed, method: "DPO", seed },
      { step, value: 2 * step - seed, method: "S-DPO", seed },
    ])
  );
  const spec = lineChart(rows, {
    title: "Training curves",
    x: "step",
    y: "value",
    color: "method",
    seed: "seed",
    xTitle: "training step",
    yTitle: "value (as logged)",
    colorTitle: "method",
  });
  const data = (spec.data as { values: Record<string, number | string>[] }).values;
  assert.equal(data.length, 6, "one row per (method, step)");
  const d1 = data.find((r) => r.method === "DPO" && r.step === 1)!;
  // values 1, 2, 3: mean 2, sd 1, t(2) = 4.303 → ± 2.4843.
  assert.equal(d1.value, 2);
  assert.ok(Math.abs((d1.value_hi as number) - (2 + 4.303 / Math.sqrt(3))) < 1e-9);
  const svg = await renderSvg(spec);
  assert.equal((svg.match(/class="mark-line role-mark/g) ?? []).length, 2, "one line per method");
  assert.equal((svg.match(/class="mark-area role-mark/g) ?? []).length, 2, "one band per method");
  assert.deepEqual(lintSpec(spec, { seeds: true }), []);
  // S-DPO keeps its colour (orange) and DPO its own (blue).
  const scale =
    (spec.layer as { encoding: { color: { scale: { domain: string[]; range: string[] } } } }[])[1]
      .encoding.color.scale;
  assert.deepEqual(scale.domain, ["DPO", "S-DPO"]);
  assert.deepEqual(scale.range, ["#1f77b4", "#e6550d"]);
});

Deno.test("a K axis ticks only at the integer K values; reference lines are drawn and labelled", async () => {
  const rows = [1, 2, 3, 4, 8].map((K) => ({ K, hr1: 0.2 + K / 100, lo: 0.18, hi: 0.3 }));
  const spec = lineChart(rows, {
    title: "HR@1 vs K",
    x: "K",
    y: "hr1",
    yLow: "lo",
    yHigh: "hi",
    integerX: true,
    xTitle: "K (negatives per prompt)",
    yTitle: "HR@1",
    refs: [{ label: "chance 0.05", value: 0.05 }, { label: "SFT 0.237", value: 0.237 }],
  });
  const svg = await renderSvg(spec);
  const ticks = [...svg.matchAll(/role-axis-label[\s\S]*?<\/g><\/g>/g)][0]?.[0] ?? "";
  const xLabels = [...ticks.matchAll(/>([^<>]+)<\/text>/g)].map((m) => m[1])
    .filter((t) => !t.startsWith("K ("));
  assert.deepEqual(xLabels, ["1", "2", "3", "4", "8"], "x ticks at the K values only");
  assert.match(svg, />chance 0\.05</);
  assert.match(svg, />SFT 0\.237</);
  assert.equal((svg.match(/aria-roledescription="rule mark"/g) ?? []).length, 5 + 2);
  assert.deepEqual(lintSpec(spec), []);
});

Deno.test("lintSpec() catches raw field titles, fractional K ticks, cut labels and points without intervals", () => {
  const bad = {
    title: "S-DPO: HR@1 vs K",
    data: { values: [{ K: 1, hr1: 0.2, run: "DPO s0" }] },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "K", type: "quantitative", title: "K" },
      y: { field: "hr1", type: "quantitative", title: "hr1" },
      color: { field: "run", type: "nominal" },
    },
  };
  const problems = lintSpec(bad, { seeds: true });
  const has = (re: RegExp) => problems.some((p) => re.test(p));
  assert.ok(has(/labelLimit/), "labels may be cut");
  assert.ok(has(/y title "hr1" is a raw field name/), "raw y title");
  assert.ok(has(/color "run" has no human title/), "no legend title");
  assert.ok(has(/K.*integer/), "fractional K ticks");
  assert.ok(has(/without interval/), "points without intervals");
  assert.ok(has(/band/), "seeds without a band");
});

Deno.test("barChart() shows long labels in full (no … anywhere)", async () => {
  const rows = [
    { method: "SASRec+DPO LM (RM pairs, N=8)", hr1: 0.38, lo: 0.35, hi: 0.41 },
    {
      method: "SASRec+S-DPO LM (RM chosen, K=3) with a much longer name",
      hr1: 0.37,
      lo: 0.34,
      hi: 0.4,
    },
  ];
  for (const horizontal of [true, false]) {
    const spec = barChart(rows, {
      title: "HR@1 per method",
      x: "method",
      y: "hr1",
      yLow: "lo",
      yHigh: "hi",
      yTitle: "HR@1",
      horizontal,
    });
    const svg = await renderSvg(spec);
    assert.ok(!svg.includes("…"), "a label was cut");
    for (const r of rows) assert.ok(svg.includes(r.method.replace(/&/g, "&amp;")), r.method);
    assert.deepEqual(lintSpec(spec), []);
  }
});

Deno.test("clusterMeanCI(): a 95 % interval over clusters, not rows (hand-computed; equal clusters = t over cluster means)", () => {
  // Users a, b, c with two rows each: user means 0.5, 1, 0 → mean 0.5, sd 0.5, se 0.5/√3,
  // t(0.975, 2 df) = 4.303.
  const ci = clusterMeanCI([1, 0, 1, 1, 0, 0], ["a", "a", "b", "b", "c", "c"]);
  assert.equal(ci.clusters, 3);
  assert.ok(Math.abs(ci.mean - 0.5) < 1e-12);
  assert.ok(Math.abs(ci.hi - (0.5 + 4.303 * 0.5 / Math.sqrt(3))) < 1e-9);
  assert.ok(Math.abs(ci.lo - (0.5 - 4.303 * 0.5 / Math.sqrt(3))) < 1e-9);
  const byMeans = meanCI([0.5, 1, 0]);
  assert.ok(
    Math.abs(ci.hi - byMeans.hi) < 1e-9,
    "equal-size clusters: same as a t interval over their means",
  );
  // Rows as their own clusters: wider than nothing, narrower than the clustered interval here.
  const rows = clusterMeanCI([1, 0, 1, 1, 0, 0], [0, 1, 2, 3, 4, 5]);
  assert.ok(rows.hi - rows.lo < ci.hi - ci.lo);
  assert.throws(() => clusterMeanCI([1, 0], ["a"]), /2 values but 1 cluster ids/);
});

/** The shape of the old hr1_curves plot: colour = method, a t band over 2 seeds. */
function curveSpec(o: { legendNull: boolean; lo: number; hi: number; yTitle: string }) {
  const color = { field: "method", type: "nominal", title: "method" };
  return {
    title: "HR@1 versus step per method",
    config: { axis: { labelLimit: 0 }, legend: { labelLimit: 0 } },
    data: {
      values: [
        { method: "DPO", step: 10, hr1: 0.25, lo: o.lo, hi: o.hi },
        { method: "S-DPO", step: 10, hr1: 0.26, lo: 0.2, hi: 0.3 },
        { method: "DPO", step: 20, hr1: 0.27, lo: 0.2, hi: 0.3 },
        { method: "S-DPO", step: 20, hr1: 0.28, lo: 0.2, hi: 0.3 },
      ],
    },
    layer: [
      {
        mark: { type: "area", opacity: 0.2 },
        encoding: {
          x: { field: "step", type: "quantitative", title: "training step" },
          y: { field: "lo", type: "quantitative", title: o.yTitle },
          y2: { field: "hi" },
          color: o.legendNull ? { ...color, legend: null } : color,
        },
      },
      {
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "step", type: "quantitative", title: "training step" },
          y: { field: "hr1", type: "quantitative", title: o.yTitle },
          color,
        },
      },
    ],
  };
}

Deno.test("lintSpec() fails a colour encoding without a legend (one layer's legend: null drops the shared one)", async () => {
  const bad = curveSpec({ legendNull: true, lo: 0.2, hi: 0.3, yTitle: "HR@1 (ranking)" });
  assert.ok(lintSpec(bad).some((p) => /no legend shows it/.test(p)), lintSpec(bad).join("; "));
  // The rendered SVG indeed has no legend entry for the methods.
  assert.ok(!(await renderSvg(bad)).includes("role-legend-label"));
  const good = curveSpec({ legendNull: false, lo: 0.2, hi: 0.3, yTitle: "HR@1 (ranking)" });
  assert.deepEqual(lintSpec(good), []);
  assert.ok((await renderSvg(good)).includes("role-legend-label"));
});

Deno.test("lintSpec() fails a band of a rate metric outside [0, 1], and only of a rate metric", () => {
  // The old hr1_curves band: a t interval over 2 seeds, −0.2 … 0.7 for an HR@1.
  const bad = curveSpec({ legendNull: false, lo: -0.2, hi: 0.7, yTitle: "HR@1 (ranking)" });
  assert.deepEqual(lintSpec(bad), [
    `the interval of "HR@1 (ranking)" spans -0.200 … 0.700, outside the metric's [0, 1]: ` +
    "the wrong interval for a rate",
  ]);
  const auc = curveSpec({ legendNull: false, lo: 0.4, hi: 1.02, yTitle: "paired AUC" });
  assert.ok(lintSpec(auc).some((p) => /outside the metric's \[0, 1\]/.test(p)));
  // A reward or log-prob may be negative: no rule for it.
  const reward = curveSpec({ legendNull: false, lo: -3, hi: 2, yTitle: "reward margin" });
  assert.deepEqual(lintSpec(reward), []);
  // Interval bars of a horizontal bar chart (x / x2) are checked too.
  const bars = barChart([{ m: "DPO", hr1: 0.1, lo: -0.05, hi: 0.25 }], {
    title: "HR@1 per method",
    x: "m",
    y: "hr1",
    yLow: "lo",
    yHigh: "hi",
    yTitle: "HR@1 (20 candidates)",
    horizontal: true,
  });
  assert.ok(lintSpec(bars).some((p) => /spans -0.050 … 0.250/.test(p)), lintSpec(bars).join("; "));
});
