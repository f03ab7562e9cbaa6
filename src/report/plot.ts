/**
 * Plots as vega-lite specs, rendered to SVG offline (vega's headless view, no browser), so the
 * same spec is written next to the results as `.svg` and shown inline in notebooks (the Deno
 * Jupyter kernel renders a vega-lite spec returned by {@link display}).
 *
 * The builders draw as a careful paper would:
 * - {@link lineChart}: one colour per method; with a `seed` field the seeds are averaged into
 *   one mean line with a 95 % band (never joined into one zig-zag line); with `yLow`/`yHigh`
 *   an interval bar on every point; integer ticks (`integerX`) for K or N; reference lines
 *   (SFT, chance, oracle) drawn dashed and labelled.
 * - {@link barChart}: a bar per category with its interval, horizontal when labels are long.
 * - Every axis, legend and header shows its labels in full (no "…" truncation), and every
 *   axis and legend has a human title.
 *
 * {@link lintSpec} checks those rules on a spec; the tests run it on every committed plot.
 *
 * @module
 */
import * as vega from "vega";
import * as vl from "vega-lite";
import { writeFileAtomic } from "../io.ts";

/** A vega-lite specification (top-level object). */
export type VegaLiteSpec = Record<string, unknown>;

const SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";

/** Labels and titles never cut: vega's default limits (160–180 px) end long names with "…". */
export const FULL_LABELS = {
  axis: { labelLimit: 0, titleLimit: 0 },
  legend: { labelLimit: 0, titleLimit: 0 },
  header: { labelLimit: 0, titleLimit: 0 },
  title: { limit: 0, offset: 16 },
  font: "DejaVu Sans, Helvetica, Arial, sans-serif",
} as const;

/** Render a vega-lite spec to an SVG string. */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  // vega tags data rows in place (a Symbol key per row): render a copy, never the caller's rows.
  const copy = structuredClone(spec);
  const compiled = vl.compile({ $schema: SCHEMA, ...copy } as unknown as vl.TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Render a spec and write it to `path` (.svg) atomically; also writes the spec as `.vl.json`. */
export async function writePlot(path: string, spec: VegaLiteSpec): Promise<void> {
  await writeFileAtomic(path, await renderSvg(spec));
  await writeFileAtomic(
    path.replace(/\.svg$/, "") + ".vl.json",
    JSON.stringify({ $schema: SCHEMA, ...spec }, null, 2) + "\n",
  );
}

/** An SVG as an `<img>` with a data URI (survives HTML exporters that strip inline SVG). */
export function svgImgHtml(svg: string, alt = "plot"): string {
  const bytes = new TextEncoder().encode(svg);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  const esc = alt.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
  return `<img src="data:image/svg+xml;base64,${btoa(bin)}" alt="${esc}" style="max-width:100%">`;
}

/** A displayable SVG (e.g. a committed plot): as SVG, and as an `<img>` for HTML exports. */
export function svgDisplay(
  svg: string,
  alt = "plot",
): Record<symbol, () => Record<string, unknown>> {
  return {
    [Symbol.for("Jupyter.display")]: () => ({
      "image/svg+xml": svg,
      "text/html": svgImgHtml(svg, alt),
    }),
  };
}

/**
 * An object the Deno Jupyter kernel displays as an interactive vega-lite chart, with the SVG
 * and an `<img>` of it as fallbacks (viewers without vega; HTML exports, whose sanitiser strips
 * inline SVG).
 */
export async function display(
  spec: VegaLiteSpec,
): Promise<Record<symbol, () => Record<string, unknown>>> {
  const svg = await renderSvg(spec);
  const alt = typeof spec.title === "string" ? spec.title : "plot";
  return {
    [Symbol.for("Jupyter.display")]: () => ({
      "application/vnd.vegalite.v5+json": { $schema: SCHEMA, ...spec },
      "image/svg+xml": svg,
      "text/html": svgImgHtml(svg, alt),
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Colours: one per method, the same in every plot

/** Fixed colours of the methods and reference rows the experiments report. */
const METHOD_COLORS: [RegExp, string][] = [
  [/^(SFT-cont|SFT \(continued\))/, "#a0a0a0"],
  [/^SFT\b(?!\+)/, "#595959"],
  [/^Base LM/, "#8c564b"],
  [/S-DPO/, "#e6550d"],
  [/DMPO-only/, "#d62728"],
  [/DMPO.*released/, "#74c476"],
  [/DMPO/, "#2ca02c"],
  [/^(SASRec\+)?DPO|\bDPO\b/, "#1f77b4"],
  [/oracle|Oracle/, "#9467bd"],
  [/History/, "#17becf"],
  [/Popularity/, "#bcbd22"],
  [/Random|chance/, "#7f7f7f"],
];

/** Colours for other categories (e.g. negative samplers), in order: Tableau 10. */
const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#bcbd22",
  "#7f7f7f",
];

/** Colours for other methods beside the fixed ones: none of the fixed hues (no second DPO blue). */
const METHOD_EXTRA = [
  "#e377c2",
  "#8c6d31",
  "#393b79",
  "#ad494a",
  "#7b4173",
  "#637939",
  "#9edae5",
  "#bd9e39",
  "#6b6ecf",
  "#d6616b",
];

/**
 * A colour scale for these category names: methods get their fixed colour (S-DPO orange, DPO
 * blue, SFT grey, DMPO green, …) so a method looks the same in every plot; other names (e.g.
 * negative samplers) take palette colours in order. `byMethod: false` skips the fixed colours.
 */
export function colorScale(
  names: readonly string[],
  opts: { byMethod?: boolean } = {},
): { domain: string[]; range: string[] } {
  const domain = [...new Set(names)];
  const range: string[] = [];
  const used = new Set<string>();
  const fixed = domain.map((n) =>
    opts.byMethod === false ? undefined : METHOD_COLORS.find(([re]) => re.test(n))?.[1]
  );
  // Two names mapping to one fixed colour (e.g. "DPO (RM pairs)" and "DPO (random pairs)")
  // would be indistinguishable: then the later ones take palette colours.
  fixed.forEach((c, i) => {
    if (c && !used.has(c)) used.add(c);
    else fixed[i] = undefined;
  });
  const palette = opts.byMethod === false ? PALETTE : METHOD_EXTRA;
  let p = 0;
  for (const c of fixed) {
    if (c) {
      range.push(c);
      continue;
    }
    while (p < palette.length - 1 && used.has(palette[p])) p++;
    range.push(palette[p % palette.length]);
    used.add(palette[p % palette.length]);
    p++;
  }
  return { domain, range };
}

// ---------------------------------------------------------------------------------------------
// Intervals

/** Two-sided 97.5 % quantiles of Student's t for 1–30 degrees of freedom. */
const T975 = [
  12.706,
  4.303,
  3.182,
  2.776,
  2.571,
  2.447,
  2.365,
  2.306,
  2.262,
  2.228,
  2.201,
  2.179,
  2.16,
  2.145,
  2.131,
  2.12,
  2.11,
  2.101,
  2.093,
  2.086,
  2.08,
  2.074,
  2.069,
  2.064,
  2.06,
  2.056,
  2.052,
  2.048,
  2.045,
  2.042,
];

/** The t quantile for a 95 % interval with `df` degrees of freedom (normal beyond 30). */
export function t975(df: number): number {
  if (df < 1) return NaN;
  return df <= 30 ? T975[df - 1] : 1.96;
}

/** Mean and 95 % t-interval of values (lo = hi = mean for one value). */
export function meanCI(xs: readonly number[]): { mean: number; lo: number; hi: number; n: number } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, lo: mean, hi: mean, n };
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  const h = t975(n - 1) * sd / Math.sqrt(n);
  return { mean, lo: mean - h, hi: mean + h, n };
}

/**
 * Mean of per-row values and its 95 % interval over clusters (rows of one cluster — e.g. the
 * test prompts of one user — are one sampled unit): the ratio estimator's cluster-robust
 * variance, t quantile with (clusters − 1) degrees of freedom. lo = hi = mean for one cluster.
 */
export function clusterMeanCI(
  values: readonly number[],
  clusters: readonly (string | number)[],
): { mean: number; lo: number; hi: number; clusters: number } {
  if (values.length !== clusters.length) {
    throw new Error(`clusterMeanCI: ${values.length} values but ${clusters.length} cluster ids`);
  }
  const N = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / N;
  const g = new Map<string | number, { sum: number; n: number }>();
  values.forEach((v, i) => {
    const c = g.get(clusters[i]) ?? { sum: 0, n: 0 };
    c.sum += v;
    c.n++;
    g.set(clusters[i], c);
  });
  const G = g.size;
  if (G < 2) return { mean, lo: mean, hi: mean, clusters: G };
  let ss = 0;
  for (const { sum, n } of g.values()) ss += (sum - mean * n) ** 2;
  const se = Math.sqrt(G / (G - 1) * ss) / N;
  const h = t975(G - 1) * se;
  return { mean, lo: mean - h, hi: mean + h, clusters: G };
}

/**
 * Wilson 95 % interval of a proportion `p` measured on `n` independent rows (e.g. HR@1 or
 * paired AUC over test prompts, one row per prompt).
 */
export function wilsonCI(p: number, n: number): { lo: number; hi: number } {
  const z = 1.959964;
  const d = 1 + z * z / n;
  const c = (p + z * z / (2 * n)) / d;
  const h = z * Math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d;
  return { lo: Math.max(0, c - h), hi: Math.min(1, c + h) };
}

/**
 * Rows averaged over seeds: one row per (keys…, x) with the mean of `y` and its 95 %
 * t-interval over the seeds (`y_lo`, `y_hi`) and the number of seeds (`seeds`).
 */
export function aggregateSeeds(
  rows: readonly Record<string, unknown>[],
  o: { x: string; y: string; keys: string[] },
): Record<string, unknown>[] {
  const groups = new Map<string, { head: Record<string, unknown>; ys: number[] }>();
  for (const r of rows) {
    const y = r[o.y];
    if (typeof y !== "number" || !Number.isFinite(y)) continue;
    const head: Record<string, unknown> = { [o.x]: r[o.x] };
    for (const k of o.keys) head[k] = r[k];
    const key = JSON.stringify(head);
    const g = groups.get(key) ?? { head, ys: [] };
    g.ys.push(y);
    groups.set(key, g);
  }
  return [...groups.values()].map(({ head, ys }) => {
    const ci = meanCI(ys);
    return { ...head, [o.y]: ci.mean, [`${o.y}_lo`]: ci.lo, [`${o.y}_hi`]: ci.hi, seeds: ci.n };
  });
}

// ---------------------------------------------------------------------------------------------
// Reference lines

/** A horizontal reference line (SFT, chance, oracle, …) drawn dashed and labelled. */
export interface RefLine {
  /** Label drawn at the line's right end, e.g. "chance 0.50". */
  label: string;
  /** y value. */
  value: number;
}

function refLayers(
  refs: readonly RefLine[] | undefined,
  width: number,
  mode: "outside" | "legend",
): Record<string, unknown>[] {
  if (!refs?.length) return [];
  const values = refs.map((r) => ({ ref_label: r.label, ref_value: r.value }));
  if (mode === "legend") {
    // Side-by-side panels: a label beside the line would sit on the next panel, so the lines
    // are told apart by their dash pattern, named in a legend.
    const dashes = [[6, 3], [2, 2], [10, 3, 2, 3], [1, 4]];
    return [{
      data: { values },
      mark: { type: "rule", color: "#444", strokeWidth: 1.2 },
      encoding: {
        y: { field: "ref_value", type: "quantitative" },
        strokeDash: {
          field: "ref_label",
          type: "nominal",
          title: "reference lines",
          sort: null,
          scale: { domain: values.map((v) => v.ref_label), range: dashes.slice(0, values.length) },
        },
      },
    }];
  }
  return [
    {
      data: { values },
      mark: { type: "rule", strokeDash: [5, 4], color: "#555", strokeWidth: 1 },
      encoding: { y: { field: "ref_value", type: "quantitative" } },
    },
    {
      // Right of the plot area, clear of the data.
      data: { values },
      mark: { type: "text", align: "left", baseline: "middle", dx: 4, fontSize: 10, color: "#333" },
      encoding: {
        x: { value: width },
        y: { field: "ref_value", type: "quantitative" },
        text: { field: "ref_label" },
      },
    },
  ];
}

function refLayersX(refs: readonly RefLine[] | undefined): Record<string, unknown>[] {
  if (!refs?.length) return [];
  const values = refs.map((r) => ({ ref_label: r.label, ref_value: r.value }));
  return [
    {
      data: { values },
      mark: { type: "rule", strokeDash: [5, 4], color: "#555", strokeWidth: 1 },
      encoding: { x: { field: "ref_value", type: "quantitative" } },
    },
    {
      data: { values },
      // Above the plot area, clear of the bars.
      mark: { type: "text", align: "center", baseline: "bottom", fontSize: 10, color: "#333" },
      encoding: {
        x: { field: "ref_value", type: "quantitative" },
        y: { value: -3 },
        text: { field: "ref_label" },
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Line charts

/** Options of {@link lineChart}. */
export interface LineChartOptions {
  /** Chart title. */
  title?: string;
  /** Field on the x axis (quantitative). */
  x: string;
  /** Field on the y axis (quantitative). */
  y: string;
  /** Field that splits the data into coloured lines (the method). */
  color?: string;
  /** Field that splits the chart into side-by-side panels. */
  column?: string;
  /** Axis, legend and panel titles (default: the field name — give human ones). */
  xTitle?: string;
  yTitle?: string;
  colorTitle?: string;
  columnTitle?: string;
  /** Log-scale x axis (e.g. a β sweep). */
  xLog?: boolean;
  /** Draw points on the lines. */
  points?: boolean;
  /**
   * Field holding the seed: rows are averaged over seeds into one mean line per colour with a
   * 95 % band (t-interval over the seeds).
   */
  seed?: string;
  /** Fields of a precomputed interval of y (drawn as bars on the points, or as a band). */
  yLow?: string;
  yHigh?: string;
  /** How to draw the interval: a band (default for seeds) or a bar on each point. */
  interval?: "band" | "bars";
  /** x takes integer values (K, N): ticks at exactly the data's x values, no 1.5. */
  integerX?: boolean;
  /** Horizontal reference lines. */
  refs?: RefLine[];
  /** y-axis range (default: fit the data and the reference lines, zero not forced). */
  yDomain?: [number, number];
  /** Colour methods by their fixed colour (default true); false for e.g. samplers. */
  colorByMethod?: boolean;
  /** Independent y scales per panel (default true when `column` is set). */
  independentY?: boolean;
  width?: number;
  height?: number;
}

/**
 * Lines of y over x, one per `color` value, each with its interval when one is given (or
 * computed over `seed`), reference lines, and integer ticks when asked.
 */
export function lineChart(rows: Record<string, unknown>[], o: LineChartOptions): VegaLiteSpec {
  let data = rows;
  let yLow = o.yLow, yHigh = o.yHigh;
  if (o.seed) {
    data = aggregateSeeds(rows, {
      x: o.x,
      y: o.y,
      keys: [o.color, o.column].filter((k): k is string => !!k),
    });
    const multi = data.some((r) => (r.seeds as number) > 1);
    yLow = multi ? `${o.y}_lo` : undefined;
    yHigh = multi ? `${o.y}_hi` : undefined;
  }
  const width = o.width ?? 360;
  const height = o.height ?? 220;
  const xs = [...new Set(data.map((r) => r[o.x]).filter((v) => typeof v === "number"))]
    .sort((a, b) => (a as number) - (b as number)) as number[];
  const x = {
    field: o.x,
    type: "quantitative",
    title: o.xTitle ?? o.x,
    scale: o.xLog ? { type: "log" } : o.integerX ? { nice: false, zero: false } : undefined,
    // Ticks at the data's x values: always for counts (K, N), and on a log axis with few points
    // (a β sweep); a log axis over many points keeps vega's ticks.
    axis: o.integerX || (o.xLog && xs.length <= 12)
      ? { values: xs, format: o.integerX ? "d" : "~g", grid: true }
      : undefined,
  };
  const yScale: Record<string, unknown> = { zero: false };
  if (o.yDomain) yScale.domain = o.yDomain;
  const y = { field: o.y, type: "quantitative", title: o.yTitle ?? o.y, scale: yScale };
  const colorNames = o.color ? data.map((r) => String(r[o.color!])) : [];
  const color = o.color
    ? {
      color: {
        field: o.color,
        type: "nominal",
        title: o.colorTitle ?? o.color,
        scale: colorScale(colorNames, { byMethod: o.colorByMethod }),
        sort: null,
      },
    }
    : {};
  const layers: Record<string, unknown>[] = [];
  const bars = o.interval === "bars" || (!o.seed && o.interval !== "band");
  if (yLow && yHigh) {
    if (bars) {
      layers.push({
        mark: { type: "rule", strokeWidth: 1.5 },
        encoding: { x, y: { field: yLow, type: "quantitative" }, y2: { field: yHigh }, ...color },
      });
    } else {
      layers.push({
        mark: { type: "area", opacity: 0.18 },
        encoding: { x, y: { field: yLow, type: "quantitative" }, y2: { field: yHigh }, ...color },
      });
    }
  }
  layers.push({
    mark: { type: "line", point: o.points ?? (bars && !!yLow) },
    encoding: { x, y, ...color },
  });
  layers.push(...refLayers(o.refs, width, o.column ? "legend" : "outside"));
  const inner = { width, height, layer: layers };
  // Reference labels sit right of the plot: move the legend past them.
  const labelRoom = o.refs?.length && !o.column
    ? 12 + 6.2 * Math.max(...o.refs.map((r) => r.label.length))
    : undefined;
  const config = labelRoom
    ? { ...FULL_LABELS, legend: { ...FULL_LABELS.legend, offset: Math.round(labelRoom) } }
    : FULL_LABELS;
  const base = { title: o.title, config, data: { values: data } };
  if (o.column) {
    return {
      ...base,
      facet: {
        column: {
          field: o.column,
          type: "nominal",
          title: o.columnTitle ?? o.column,
          sort: [...new Set(data.map((r) => String(r[o.column!])))],
          header: { labelFontSize: 11 },
        },
      },
      spec: inner,
      resolve: o.independentY === false ? undefined : { scale: { y: "independent" } },
    };
  }
  return { ...base, ...inner };
}

// ---------------------------------------------------------------------------------------------
// Bar charts

/** Options of {@link barChart}. */
export interface BarChartOptions {
  title?: string;
  /** Category field (method). */
  x: string;
  /** Value field. */
  y: string;
  /** Lower/upper interval fields (e.g. a 95 % CI): a bar on every bar. */
  yLow?: string;
  yHigh?: string;
  /** Field that colours the bars (default: the category, by method colour). */
  color?: string;
  /** Axis and legend titles. */
  xTitle?: string;
  yTitle?: string;
  colorTitle?: string;
  /** Order of the categories (default: as they appear). */
  sort?: string[];
  /** Bars along x with the category labels on the y axis (long labels read in full). */
  horizontal?: boolean;
  /** Reference lines on the value axis. */
  refs?: RefLine[];
  /** Value-axis range. */
  yDomain?: [number, number];
  /** Colour methods by their fixed colour (default true). */
  colorByMethod?: boolean;
  width?: number;
  height?: number;
}

/** A bar per category with its interval bar, reference lines, labels in full. */
export function barChart(rows: Record<string, unknown>[], o: BarChartOptions): VegaLiteSpec {
  const order = o.sort ?? [...new Set(rows.map((r) => String(r[o.x])))];
  const horizontal = o.horizontal ?? false;
  const width = o.width ?? (horizontal ? 360 : Math.max(200, 40 * order.length));
  const height = o.height ?? (horizontal ? Math.max(80, 22 * order.length) : 220);
  const cat = {
    field: o.x,
    type: "nominal",
    sort: order,
    title: o.xTitle ?? null,
    axis: horizontal ? {} : { labelAngle: -30 },
  };
  const valScale: Record<string, unknown> = {};
  if (o.yDomain) valScale.domain = o.yDomain;
  const val = { field: o.y, type: "quantitative", title: o.yTitle ?? o.y, scale: valScale };
  const colorField = o.color ?? o.x;
  const colorNames = rows.map((r) => String(r[colorField]));
  const color = {
    color: {
      field: colorField,
      type: "nominal",
      title: o.colorTitle ?? (o.color ? o.color : o.xTitle ?? "method"),
      scale: colorScale(colorNames, { byMethod: o.colorByMethod }),
      sort: null,
      legend: o.color ? {} : null,
    },
  };
  const pos = (c: unknown, v: unknown) => horizontal ? { y: c, x: v } : { x: c, y: v };
  const layers: Record<string, unknown>[] = [{
    mark: { type: "bar", opacity: 0.85 },
    encoding: { ...pos(cat, val), ...color },
  }];
  if (o.yLow && o.yHigh) {
    const lo = { field: o.yLow, type: "quantitative" };
    layers.push({
      mark: { type: "rule", strokeWidth: 1.5, color: "#222" },
      encoding: horizontal
        ? { y: cat, x: lo, x2: { field: o.yHigh } }
        : { x: cat, y: lo, y2: { field: o.yHigh } },
    });
  }
  layers.push(...(horizontal ? refLayersX(o.refs) : refLayers(o.refs, width, "outside")));
  return {
    title: o.title,
    config: FULL_LABELS,
    data: { values: rows },
    width,
    height,
    layer: layers,
  };
}

// ---------------------------------------------------------------------------------------------
// The rules, checked

/** Field names that must never reach a reader as an axis or legend title. */
const RAW_TITLES = new Set([
  "label",
  "series",
  "run",
  "kind",
  "arm",
  "value",
  "hr1",
  "auc",
  "n",
  "beta",
  "sampler",
  "metric",
  "gain",
  "pick",
  "seed",
  "x",
  "y",
]);

/** A raw field name: a known one, or snake_case / a/b path without any space. */
function isRaw(t: string): boolean {
  return RAW_TITLES.has(t) || (!t.includes(" ") && /[_/]/.test(t));
}

type Layer = Record<string, unknown>;

function layersOf(spec: VegaLiteSpec): Layer[] {
  const inner = (spec.spec as VegaLiteSpec | undefined) ?? spec;
  return (inner.layer as Layer[] | undefined) ?? [inner];
}

function markType(l: Layer): string {
  const m = l.mark;
  return typeof m === "string" ? m : String((m as { type?: string } | undefined)?.type);
}

function isRefLayer(l: Layer): boolean {
  const v = (l.data as { values?: Record<string, unknown>[] } | undefined)?.values?.[0];
  return !!v && "ref_value" in v;
}

/** Every `legends` entry of the compiled vega spec (top level and inside facet groups). */
function compiledLegends(spec: VegaLiteSpec): Record<string, unknown>[] {
  const compiled = vl.compile(
    { $schema: SCHEMA, ...structuredClone(spec) } as unknown as vl.TopLevelSpec,
    { logger: vega.logger(vega.None) },
  ).spec;
  const found: Record<string, unknown>[] = [];
  const walk = (o: unknown) => {
    if (Array.isArray(o)) o.forEach(walk);
    else if (o && typeof o === "object") {
      for (const [k, v] of Object.entries(o)) {
        if (k === "legends" && Array.isArray(v)) found.push(...v);
        walk(v);
      }
    }
  };
  walk(compiled);
  return found;
}

/**
 * A colour that encodes a field the reader can't read off an axis (e.g. the method) needs a
 * legend: checked on the compiled spec, since one layer's `legend: null` drops the legend
 * vega-lite shares between layers.
 */
function legendProblems(spec: VegaLiteSpec, layers: Layer[]): string[] {
  const fields = new Set<string>();
  for (const l of layers) {
    if (isRefLayer(l)) continue;
    const enc = (l.encoding ?? {}) as Record<string, Record<string, unknown> | undefined>;
    const f = enc.color?.field;
    if (typeof f !== "string") continue;
    // A colour that repeats the category axis (bar per method) says nothing a legend would.
    if (enc.x?.field === f || enc.y?.field === f) continue;
    fields.add(f);
  }
  if (!fields.size) return [];
  const legends = compiledLegends(spec);
  const colorLegend = legends.some((g) =>
    [g.fill, g.stroke].some((s) => typeof s === "string" && s.startsWith("color"))
  );
  return colorLegend ? [] : [
    `colour encodes "${[...fields].join('", "')}" but no legend shows it: the reader can't ` +
    "tell which line is which",
  ];
}

/** An axis title naming a rate or proportion, whose values live in [0, 1]. */
const RATE_TITLE = /HR@|\bAUC\b|ValidRatio|hit rate|accuracy|proportion/i;

/**
 * The band or interval bar of a rate metric (HR@1, AUC, …) must stay inside [0, 1]: an interval
 * reaching below 0 or above 1 is the wrong interval for a proportion (e.g. a t interval over two
 * seeds), and clamping it would hide that.
 */
function rateBandProblems(spec: VegaLiteSpec, layers: Layer[]): string[] {
  const out: string[] = [];
  const titleOf = (ch: "x" | "y") =>
    layers.map((l) => (l.encoding as Record<string, Record<string, unknown>> | undefined)?.[ch])
      .map((e) => (e?.type === "quantitative" ? String(e.title ?? "") : ""))
      .find((t) => t.length > 0) ?? "";
  const inner = (spec.spec as VegaLiteSpec | undefined) ?? spec;
  const rowsOf = (l: Layer) =>
    ((l.data ?? inner.data ?? spec.data) as { values?: Record<string, unknown>[] } | undefined)
      ?.values ?? [];
  for (const l of layers) {
    if (isRefLayer(l)) continue;
    const mt = markType(l);
    if (mt !== "area" && mt !== "rule") continue;
    const enc = (l.encoding ?? {}) as Record<string, Record<string, unknown> | undefined>;
    for (const [ch, ch2] of [["y", "y2"], ["x", "x2"]] as const) {
      const lo = enc[ch], hi = enc[ch2];
      if (!lo?.field || !hi?.field || lo.type !== "quantitative") continue;
      const t = titleOf(ch);
      if (!RATE_TITLE.test(t)) continue;
      const vals = rowsOf(l).flatMap((r) => [r[lo.field as string], r[hi.field as string]])
        .filter((v): v is number => typeof v === "number" && Number.isFinite(v));
      const min = Math.min(...vals), max = Math.max(...vals);
      if (min < 0 || max > 1) {
        out.push(
          `the interval of "${t}" spans ${min.toFixed(3)} … ${max.toFixed(3)}, outside the ` +
            "metric's [0, 1]: the wrong interval for a rate",
        );
      }
    }
  }
  return out;
}

/**
 * What a spec breaks of the plotting rules (empty = none): labels that can be cut, axis /
 * legend / panel titles missing or raw field names, a K or N axis with non-integer ticks, a
 * bar or point without its interval, a line averaged over seeds without its band, a colour
 * encoding without its legend, an interval of a rate metric outside [0, 1].
 */
export function lintSpec(spec: VegaLiteSpec, opts: { seeds?: boolean } = {}): string[] {
  const out: string[] = [];
  const cfg = spec.config as typeof FULL_LABELS | undefined;
  if (cfg?.axis?.labelLimit !== 0 || cfg?.legend?.labelLimit !== 0) {
    out.push("axis/legend labelLimit is not 0: long labels get cut with …");
  }
  const title = typeof spec.title === "string"
    ? spec.title
    : (spec.title as { text?: unknown } | undefined)?.text;
  if (typeof title !== "string" || title.length < 8) out.push("no human title");
  const layers = layersOf(spec);
  const titled = (name: string, enc: Record<string, unknown> | undefined) => {
    if (!enc?.field) return;
    const t = enc.title;
    if (t === null && enc.type === "nominal") return; // categories whose labels say it all
    if (t === undefined || t === null) {
      out.push(`${name} "${enc.field}" has no human title`);
    } else if (isRaw(String(t))) {
      out.push(`${name} title "${t}" is a raw field name`);
    }
  };
  const facet = (spec.facet as Record<string, Record<string, unknown>> | undefined)?.column;
  titled("column", facet);
  let hasBand = false, hasInterval = false, hasMarks = false, hasLine = false;
  for (const l of layers) {
    if (
      (l.data as { values?: unknown[] } | undefined)?.values?.[0] &&
      "ref_value" in ((l.data as { values: Record<string, unknown>[] }).values[0])
    ) continue;
    const enc = (l.encoding ?? {}) as Record<string, Record<string, unknown>>;
    const mt = markType(l);
    if (mt === "area") hasBand = true;
    if (mt === "rule" && (enc.y2 || enc.x2)) hasInterval = true;
    if (mt === "bar" || mt === "point" || (mt === "line" && (l.mark as Layer)?.point)) {
      hasMarks = true;
    }
    if (mt === "line") hasLine = true;
    if (mt === "bar" || mt === "line") {
      titled("x", enc.x);
      titled("y", enc.y);
      if (enc.color && (enc.color as Record<string, unknown>).legend !== null) {
        titled("color", enc.color);
      }
      for (const axis of [enc.x, enc.y]) {
        const t = String(axis?.title ?? "");
        if (/^(K|N)\b|\bK\b|\bN\b/.test(t) && axis?.type === "quantitative") {
          const vals =
            ((axis.axis as Record<string, unknown> | undefined)?.values ?? []) as number[];
          if (
            !vals.length || !vals.every(Number.isInteger) ||
            (axis.axis as Record<string, unknown>).format !== "d"
          ) {
            out.push(`axis "${t}" counts (K or N) but its ticks are not the integer values`);
          }
        }
      }
    }
  }
  if (hasMarks && !hasInterval && !hasBand) out.push("bars/points without interval bars");
  out.push(...legendProblems(spec, layers), ...rateBandProblems(spec, layers));
  if (opts.seeds && hasLine && !hasBand) out.push("a line over seeds without its 95 % band");
  return out;
}
