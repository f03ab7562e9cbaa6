/**
 * Plots as vega-lite specs, rendered to SVG offline (vega's headless view, no browser), so the
 * same spec is written next to the results as `.svg` and shown inline in notebooks (the Deno
 * Jupyter kernel renders a vega-lite spec returned by {@link display}).
 *
 * Builders for the plots the experiments need: {@link lineChart} (training curves, sweeps) and
 * {@link barChart} (metric per method, with optional error bars).
 *
 * @module
 */
import * as vega from "vega";
import * as vl from "vega-lite";
import { writeFileAtomic } from "../io.ts";

/** A vega-lite specification (top-level object). */
export type VegaLiteSpec = Record<string, unknown>;

const SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";

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
    JSON.stringify({ $schema: SCHEMA, ...spec }, null, 2),
  );
}

/**
 * An object the Deno Jupyter kernel displays as an interactive vega-lite chart
 * (with the SVG as a fallback for viewers without vega).
 */
export async function display(
  spec: VegaLiteSpec,
): Promise<Record<symbol, () => Record<string, unknown>>> {
  const svg = await renderSvg(spec);
  return {
    [Symbol.for("Jupyter.display")]: () => ({
      "application/vnd.vegalite.v5+json": { $schema: SCHEMA, ...spec },
      "image/svg+xml": svg,
    }),
  };
}

/** Options of {@link lineChart}. */
export interface LineChartOptions {
  /** Chart title. */
  title?: string;
  /** Field on the x axis (quantitative). */
  x: string;
  /** Field on the y axis (quantitative). */
  y: string;
  /** Field that splits the data into coloured lines. */
  color?: string;
  /** Field that splits the chart into side-by-side panels. */
  column?: string;
  /** Axis titles. */
  xTitle?: string;
  yTitle?: string;
  /** Log-scale x axis (e.g. a β sweep). */
  xLog?: boolean;
  /** Draw points on the lines. */
  points?: boolean;
  width?: number;
  height?: number;
}

/** Lines of y over x, one per `color` value. */
export function lineChart(rows: Record<string, unknown>[], o: LineChartOptions): VegaLiteSpec {
  const spec: VegaLiteSpec = {
    title: o.title,
    data: { values: rows },
    mark: { type: "line", point: o.points ?? false },
    width: o.width ?? 360,
    height: o.height ?? 220,
    encoding: {
      x: {
        field: o.x,
        type: "quantitative",
        title: o.xTitle ?? o.x,
        scale: o.xLog ? { type: "log" } : undefined,
      },
      y: { field: o.y, type: "quantitative", title: o.yTitle ?? o.y, scale: { zero: false } },
      ...(o.color ? { color: { field: o.color, type: "nominal" } } : {}),
      ...(o.column ? { column: { field: o.column, type: "nominal" } } : {}),
    },
  };
  return spec;
}

/** Options of {@link barChart}. */
export interface BarChartOptions {
  title?: string;
  /** Category field (method). */
  x: string;
  /** Value field. */
  y: string;
  /** Optional lower/upper error fields (e.g. mean ± std or a CI). */
  yLow?: string;
  yHigh?: string;
  /** Field that colours the bars. */
  color?: string;
  yTitle?: string;
  /** Order of the categories (default: as they appear). */
  sort?: string[];
  width?: number;
  height?: number;
}

/** A bar per category, with optional error bars. */
export function barChart(rows: Record<string, unknown>[], o: BarChartOptions): VegaLiteSpec {
  const order = o.sort ?? [...new Set(rows.map((r) => String(r[o.x])))];
  const x = { field: o.x, type: "nominal", sort: order, axis: { labelAngle: -30 } };
  const layers: Record<string, unknown>[] = [{
    mark: "bar",
    encoding: {
      x,
      y: { field: o.y, type: "quantitative", title: o.yTitle ?? o.y },
      ...(o.color ? { color: { field: o.color, type: "nominal" } } : {}),
    },
  }];
  if (o.yLow && o.yHigh) {
    layers.push({
      mark: { type: "rule" },
      encoding: { x, y: { field: o.yLow, type: "quantitative" }, y2: { field: o.yHigh } },
    });
  }
  return {
    title: o.title,
    data: { values: rows },
    width: o.width ?? 360,
    height: o.height ?? 220,
    layer: layers,
  };
}
