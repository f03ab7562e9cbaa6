/**
 * table.md writers: mean ± std over seeds per method, beside the papers' published numbers
 * (from `../shared/paper-numbers.json` when present, else "not available"), plus the
 * reference rows.
 *
 * @module
 */
import { meanStd } from "../eval/metrics.ts";

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

/** Read paper-numbers.json, or undefined when it is absent or unreadable. */
export async function readPaperNumbers(
  path = "../shared/paper-numbers.json",
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
    const cells = columns.map((c) => row[c.field] !== undefined ? row[c.field].toFixed(3) : "–");
    lines.push(`| *${name}* (reference) | ${cells.join(" | ")} | – |`);
  }
  lines.push("", ...opts.notes.map((n) => `- ${n}`), "");
  return lines.join("\n");
}
