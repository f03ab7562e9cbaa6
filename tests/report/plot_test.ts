import assert from "node:assert/strict";
import {
  barChart,
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
