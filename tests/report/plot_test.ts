import assert from "node:assert/strict";
import { barChart, display, lineChart, renderSvg, writePlot } from "../../src/report/plot.ts";

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
  await Deno.remove(dir, { recursive: true });
});
