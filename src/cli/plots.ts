/**
 * `deno task plots`: redraw every plot under `results/` from the committed `metrics.json`
 * files (the benchmark's plot is `deno task bench`'s), with the same figure code the experiments use — so a
 * change to how plots are drawn never needs the experiments re-run.
 *
 * ```sh
 * deno task plots                 # every results/**\/metrics.json
 * deno task plots results/dmpo    # only under this folder
 * ```
 *
 * @module
 */
import {
  dmpoAblationFigures,
  dpo4recFigures,
  type Figures,
  sdpoFigures,
  sdpoHr1CurveFigures,
  sdpoLossPartsFigures,
  writeFigures,
} from "../report/figures.ts";

/** `metrics.json` files under `root`, sorted. */
async function findMetrics(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(".") || e.name === "runs") continue;
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.name === "metrics.json") out.push(p);
    }
  };
  await walk(root);
  return out.sort();
}

/** The figures one metrics.json makes (none for a paper without plots, e.g. DMPO on real data). */
// deno-lint-ignore no-explicit-any
export function figuresOf(metrics: any): Figures {
  const r = metrics.result;
  if (!r) return {};
  if (metrics.paper === "sdpo") {
    return {
      ...sdpoFigures(r),
      ...(r.protocol ? { ...sdpoHr1CurveFigures(r), ...sdpoLossPartsFigures(r) } : {}),
    };
  }
  if (metrics.paper === "dmpo") {
    return r.ablations ? dmpoAblationFigures(r.ablations, r.references) : {};
  }
  if (metrics.paper === "dpo4rec") return dpo4recFigures(r);
  return {};
}

/** Redraw; returns the files written. */
export async function main(args: string[]): Promise<string[]> {
  const root = (args[0] ?? "results").replace(/\/+$/, "");
  const written: string[] = [];
  for (const path of await findMetrics(root)) {
    let metrics;
    try {
      metrics = JSON.parse(await Deno.readTextFile(path));
    } catch (e) {
      throw new Error(`${path}: not readable JSON (${(e as Error).message})`);
    }
    const dir = path.slice(0, path.lastIndexOf("/"));
    written.push(...await writeFigures(dir, figuresOf(metrics)));
  }
  return written;
}

if (import.meta.main) {
  try {
    const written = await main(Deno.args);
    for (const w of written) console.log(w);
    console.error(`[plots] ${written.length} plots redrawn`);
  } catch (err) {
    console.error(`plots: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
