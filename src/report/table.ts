/**
 * table.md writers: mean ± std over seeds per method, beside the papers' published numbers
 * (from `data/paper-numbers.json`, else "not available"), plus the
 * reference rows.
 *
 * @module
 */
import { meanStd } from "../eval/metrics.ts";
import { type SdpoFigureInput, sdpoFigures, writeFigures } from "./figures.ts";

/** One published number as paper-numbers.json stores it. */
interface PaperEntry {
  method?: string;
  metric?: string;
  value?: number;
  dataset?: string;
  source?: string;
}

/** The parts of paper-numbers.json used here. */
export type PaperNumbers = Record<string, { main?: PaperEntry[]; secondary?: PaperEntry[] }>;

/** The project's paper-numbers.json (with its sources), found from this module, not the cwd. */
export const PAPER_NUMBERS: string = decodeURIComponent(
  new URL("../../data/paper-numbers.json", import.meta.url).pathname,
);

/**
 * Read paper-numbers.json (`path`, default the project's copy in `data/`), or undefined when
 * it is not readable — tables then say "not available".
 */
export async function readPaperNumbers(
  path: string = PAPER_NUMBERS,
): Promise<PaperNumbers | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

/** The paper's value for a method and metric: main table first, then secondary quotes. */
export function paperValue(
  numbers: PaperNumbers | undefined,
  paper: string,
  method: string,
  metric: string,
): string {
  const p = numbers?.[paper];
  if (!p) return "not available";
  const main = (p.main ?? []).find((e) => e.method === method && e.metric === metric);
  if (main?.value !== undefined) return `${main.value} (${main.dataset ?? "paper"})`;
  const sec = (p.secondary ?? []).find((e) =>
    (e.method === method || e.method?.startsWith(method + ",")) && e.metric?.startsWith(metric)
  );
  if (sec?.value !== undefined) return `${sec.value} (secondary quote)`;
  return "not available";
}

/** "0.123 ± 0.004" (std omitted with one seed); "–" for no values. */
export function fmtMeanStd(values: (number | null)[]): string {
  const xs = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (xs.length === 0) return "–";
  const { mean, std } = meanStd(xs);
  return Number.isFinite(std) ? `${mean.toFixed(3)} ± ${std.toFixed(3)}` : mean.toFixed(3);
}

/** Mean ± std of every numeric field per method, for metrics.json. */
export function summarize(
  perSeed: { methods: Record<string, Record<string, unknown>> }[],
  fields: string[],
): Record<string, Record<string, { mean: number | null; std: number | null; n: number }>> {
  const out: Record<
    string,
    Record<string, { mean: number | null; std: number | null; n: number }>
  > = {};
  for (const method of Object.keys(perSeed[0]?.methods ?? {})) {
    out[method] = {};
    for (const f of fields) {
      const xs = perSeed.map((s) => s.methods[method]?.[f]).filter((v): v is number =>
        typeof v === "number" && Number.isFinite(v)
      );
      if (xs.length === 0) {
        out[method][f] = { mean: null, std: null, n: 0 };
        continue;
      }
      const ms = meanStd(xs);
      out[method][f] = {
        mean: ms.mean,
        std: Number.isFinite(ms.std) ? ms.std : null,
        n: ms.n,
      };
    }
  }
  return out;
}

/** A column of a table: header, the field in the per-method results, paper metric name. */
export interface Column {
  header: string;
  field: string;
}

/** A markdown table of methods × columns, a paper column, and reference rows. */
export function tableMarkdown(opts: {
  title: string;
  paper: string;
  methods: string[];
  columns: Column[];
  perSeed: { methods: Record<string, Record<string, unknown>> }[];
  paperMetric: string;
  paperMethodNames: Record<string, string>;
  numbers: PaperNumbers | undefined;
  references: Record<string, Record<string, number>>;
  notes: string[];
}): string {
  const { columns } = opts;
  const lines = [
    `# ${opts.title}`,
    "",
    `| method | ${columns.map((c) => c.header).join(" | ")} | paper ${opts.paperMetric} |`,
    `|---|${columns.map(() => "---|").join("")}---|`,
  ];
  for (const m of opts.methods) {
    const cells = columns.map((c) =>
      fmtMeanStd(opts.perSeed.map((s) => (s.methods[m]?.[c.field] as number | null) ?? null))
    );
    const pname = opts.paperMethodNames[m];
    const paper = pname
      ? paperValue(opts.numbers, opts.paper, pname, opts.paperMetric)
      : "not available";
    lines.push(`| ${m} | ${cells.join(" | ")} | ${paper} |`);
  }
  for (const [name, row] of Object.entries(opts.references)) {
    // A reference row with no numbers (e.g. the oracle on real data) is "not available".
    const none = Object.keys(row).length === 0;
    const cells = columns.map((c) =>
      row[c.field] !== undefined ? row[c.field].toFixed(3) : none ? "not available" : "–"
    );
    lines.push(`| *${name}* (reference) | ${cells.join(" | ")} | – |`);
  }
  lines.push("", ...opts.notes.map((n) => `- ${n}`), "");
  return lines.join("\n");
}

/** What {@link writeSdpoPlots} needs of an S-DPO result (its metrics.json `result`). */
export type SdpoPlotInput = SdpoFigureInput;

/**
 * Write the S-DPO plots (`<dir>/*.svg` + `.vl.json`) and return the markdown section of
 * table.md that shows them, with the ablation numbers as small tables.
 */
export async function writeSdpoPlots(dir: string, r: SdpoPlotInput): Promise<string> {
  const out: string[] = ["", "## Plots and ablations", ""];
  await writeFigures(dir, sdpoFigures(r));
  if (r.curves.length) {
    // Final logps/chosen per method and seed.
    const finals = new Map<string, number>();
    for (const c of r.curves) {
      if (c.metric === "logps/chosen") finals.set(`${c.method} s${c.seed}`, c.value);
    }
    out.push(
      "Training curves of the preference arms (`rewards/*`, `logps/*` as TRL logs them, per " +
        "step of training batches):",
      "",
      "![training curves](curves.svg)",
      "",
      `Final logps/chosen: ${[...finals].map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ")}.`,
      "",
    );
  }
  const a = r.ablations;
  if (a) {
    const kRows = a.k_sweep.map((x) => ({ K: x.k, hr1: x.row.hr1_rank }));
    const skRows = (a.sampler_k_sweep ?? []).map((x) => ({
      K: x.k,
      hr1: x.row.hr1_rank,
      sampler: x.sampler,
    }));
    const bRows = a.beta_sweep.map((x) => ({ beta: x.beta, hr1: x.row.hr1_rank }));
    const sRows = a.samplers.map((x) => ({
      arm: `${x.method} (${x.sampler})`,
      sampler: x.sampler,
      hr1: x.row.hr1_rank,
    }));
    const f = (x: number) => x.toFixed(3);
    out.push(
      `Ablations (seed ${a.seed}, ranking HR@1 on the same test prompts):`,
      "",
      "| K | " + kRows.map((x) => x.K).join(" | ") + " |",
      "|---|" + kRows.map(() => "---|").join(""),
      "| HR@1 | " + kRows.map((x) => f(x.hr1)).join(" | ") + " |",
      "",
      "![K sweep](k_sweep.svg)",
      "",
      "| β | " + bRows.map((x) => x.beta).join(" | ") + " |",
      "|---|" + bRows.map(() => "---|").join(""),
      "| HR@1 | " + bRows.map((x) => f(x.hr1)).join(" | ") + " |",
      "",
      "![β sweep](beta_sweep.svg)",
      "",
      "| arm | HR@1 |",
      "|---|---|",
      ...sRows.map((x) => `| ${x.arm} | ${f(x.hr1)} |`),
      "",
      "Negatives: uniform = a fixed seeded pool of the prompt's other candidates (K drawn per " +
        "step); popularity = K drawn with probability ∝ item popularity; same-genre = the K " +
        "negatives sharing the positive's genre first; model-hard = " +
        "the K negatives the SFT model scores highest.",
      "",
      "![negative samplers](samplers.svg)",
      "",
      ...(skRows.length > 0
        ? [
          "The K sweep on each sampler (K = 1 is DPO on that sampler's hardest/first negative):",
          "",
          "| sampler | " + kRows.map((x) => `K=${x.K}`).join(" | ") + " |",
          "|---|" + kRows.map(() => "---|").join(""),
          ...[...new Set(skRows.map((x) => x.sampler))].map((sm) =>
            `| ${sm} | ` +
            kRows.map((k) => {
              const r = skRows.find((x) => x.sampler === sm && x.K === k.K);
              return r ? f(r.hr1) : "–";
            }).join(" | ") + " |"
          ),
          "",
          "![K sweep per sampler](sampler_k_sweep.svg)",
          "",
        ]
        : []),
      "Mean softmax weight S-DPO (trained, β = 1) puts on each of the 19 negatives of a test " +
        "prompt, by the negative's rank under the reference (SFT) model — hard-negative mining " +
        "shows as weight concentrated on the top ranks:",
      "",
      "![negative weights](negative_weights.svg)",
      "",
    );
  }
  return out.length > 3 ? out.join("\n") : "";
}

/** Per-seed and per-method training / evaluation seconds, as metrics.json records them. */
export function seedTimings(
  perSeed: readonly {
    seed: number;
    seconds: number;
    methods: Record<string, { train_seconds: number; eval_seconds: number }>;
  }[],
): {
  seed: number;
  seconds: number;
  methods: Record<string, { train_seconds: number; eval_seconds: number }>;
}[] {
  return perSeed.map((s) => ({
    seed: s.seed,
    seconds: s.seconds,
    methods: Object.fromEntries(
      Object.entries(s.methods).map((
        [m, v],
      ) => [m, { train_seconds: v.train_seconds, eval_seconds: v.eval_seconds }]),
    ),
  }));
}
