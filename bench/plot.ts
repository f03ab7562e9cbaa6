/**
 * The plot of `deno task bench`: tokens/s per workload, ours beside PyTorch, one panel per preset
 * (each on its own scale: the presets differ 10× in speed), each bar's colour naming the engine
 * as it ran (e.g. "wasm + OpenBLAS", "PyTorch 1.13.0, 2 threads").
 *
 * @module
 */
import { barChart } from "../src/report/plot.ts";

const PRESET_TITLES: Record<string, string> = {
  shipped: "shipped model (hidden 64, 2 layers)",
  bench: "bench config (hidden 256, 4 layers)",
};

/** Bars of tokens/s per workload, ours beside PyTorch, a panel per preset, named by engine. */
export function throughputPlot(
  rows: { preset: string; workload: string; backend: string; engine: string }[],
  subtitle: string,
) {
  const presets = [...new Set(rows.map((r) => r.preset))];
  let config: unknown;
  const panels = presets.map((preset) => {
    const spec = barChart(
      rows.filter((r) => r.preset === preset).map((r) => ({
        ...r,
        series: `${r.workload} · ${r.backend === "pytorch" ? "PyTorch" : "ours"}`,
      })),
      {
        title: PRESET_TITLES[preset] ?? preset,
        x: "series",
        y: "tokens_per_sec",
        color: "engine",
        yTitle: "tokens / s",
        width: 280,
        height: 240,
      },
    );
    const { config: c, ...panel } = spec as Record<string, unknown>;
    config = c;
    return panel;
  });
  return {
    title: { text: "Training throughput (tokens/s, higher is better)", subtitle },
    hconcat: panels,
    resolve: { scale: { color: "shared" } },
    config: {
      ...(config as Record<string, unknown>),
      legend: { labelLimit: 320, orient: "bottom" },
      axis: { labelLimit: 320 },
    },
  };
}
