/**
 * The plot of `deno task bench`: tokens/s per preset and workload, ours beside PyTorch, each
 * bar's colour naming the engine as it ran (e.g. "wasm + OpenBLAS", "PyTorch 1.13.0, 2 threads").
 *
 * @module
 */
import { barChart } from "../src/report/plot.ts";

/** Bars of tokens/s per preset and workload, ours beside PyTorch, named by engine as run. */
export function throughputPlot(
  rows: { preset: string; workload: string; backend: string; engine: string }[],
  subtitle: string,
) {
  const spec = barChart(
    rows.map((r) => ({
      ...r,
      series: `${r.preset} ${r.workload} · ${r.backend === "pytorch" ? "PyTorch" : "ours"}`,
    })),
    {
      title: "Training throughput (tokens/s, higher is better)",
      x: "series",
      y: "tokens_per_sec",
      color: "engine",
      yTitle: "tokens / s",
      width: 560,
      height: 260,
    },
  );
  return {
    ...spec,
    title: { text: spec.title as string, subtitle },
    config: { legend: { labelLimit: 320, orient: "bottom" }, axis: { labelLimit: 320 } },
  };
}
