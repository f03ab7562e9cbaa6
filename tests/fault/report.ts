/**
 * The reliability report (`results/reliability.md`): what each fault-injection and
 * malformed-input test did, how often, what happened and what was lost (must be nothing).
 *
 * The tests under `tests/fault/` feed it their observations with {@link recordFaults}; every
 * call rewrites the whole report with everything recorded so far by this `deno test` process.
 * Deno runs each test file in its own worker (module state is not shared), so the records
 * travel in the report itself, in a trailing HTML comment tagged with an id of the run
 * (`RECALIGN_RELIABILITY_RUN`, set in the process environment, which the workers share); a
 * report left by another run is replaced, not merged. The report goes to
 * `RECALIGN_RELIABILITY_REPORT` when set (`deno task reliability` sets it to
 * `results/reliability.md`), else to a temporary folder named after the process.
 * `RECALIGN_RELIABILITY=full` selects the larger setting (more kills, more generated inputs)
 * that `deno task reliability` uses.
 *
 * @module
 */
import { ensureDir, writeFileAtomic } from "../../src/io.ts";

/** One kind of fault, injected one or more times. */
export interface FaultRecord {
  /** What was under test, e.g. `"training (train_driver.ts)"`. */
  suite: string;
  /** The fault, e.g. `"SIGKILL after a random delay"`. */
  fault: string;
  /** How many times it was injected (killed processes, generated inputs, spawned CLIs). */
  injected: number;
  /** What happened, in one sentence. */
  outcome: string;
  /** What was lost or wrong: `"nothing"` when everything was recovered or cleanly refused. */
  lost: string;
  /** One line per injection (optional). */
  details?: string[];
}

/** The setting of the suite: `test` (default, the normal test run) or `full`. */
export type FaultSetting = "test" | "full";

/** The setting selected by `RECALIGN_RELIABILITY` (`full`, else `test`). */
export function faultSetting(): FaultSetting {
  return Deno.env.get("RECALIGN_RELIABILITY") === "full" ? "full" : "test";
}

/** Pick the value for the current setting. */
export function bySetting<T>(test: T, full: T): T {
  return faultSetting() === "full" ? full : test;
}

/**
 * This `deno test` run: an id kept in the process environment, which (unlike module state)
 * the test files' workers share.
 */
function runId(): string {
  const VAR = "RECALIGN_RELIABILITY_RUN";
  let id = Deno.env.get(VAR);
  if (!id) {
    id = `${Deno.pid}.${crypto.randomUUID()}`;
    Deno.env.set(VAR, id);
  }
  return id;
}

const RUN_ID = runId();
const TAG = "recalign-reliability-records";

/** Where the report is written: `RECALIGN_RELIABILITY_REPORT`, else a temp file. */
export function reportPath(): string {
  const env = Deno.env.get("RECALIGN_RELIABILITY_REPORT");
  if (env) return env;
  const tmp = Deno.env.get("TMPDIR") ?? (Deno.build.os === "windows" ? "." : "/tmp");
  return `${tmp}/recalign-reliability-${RUN_ID}/reliability.md`;
}

/** The records embedded in a report written by this process (none for another's). */
function embeddedRecords(md: string): FaultRecord[] {
  const m = md.match(new RegExp(`<!-- ${TAG} (.*) -->`));
  if (!m) return [];
  try {
    const data = JSON.parse(m[1]);
    return data.run === RUN_ID && Array.isArray(data.records) ? data.records : [];
  } catch {
    return [];
  }
}

/** `"nothing"`, case and trailing dot aside. */
export function isNothing(lost: string): boolean {
  return /^nothing\.?$/i.test(lost.trim());
}

function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/**
 * The report as markdown: a summary table (suite, fault, times injected, what happened, lost),
 * a verdict line, then the details of each fault.
 */
export function formatReport(
  recs: readonly FaultRecord[],
  meta: { setting: FaultSetting; date: string },
): string {
  const lostAny = recs.filter((r) => !isNothing(r.lost));
  const total = recs.reduce((a, r) => a + r.injected, 0);
  const lines = [
    "# Reliability",
    "",
    "Written by the fault-injection suite (`tests/fault/`, `tests/fault/report.ts`); " +
    "regenerate with `deno task reliability`.",
    "",
    `Setting: \`${meta.setting}\`. Date: ${meta.date}. Deno ${Deno.version.deno}, ` +
    `${Deno.build.os}/${Deno.build.arch}.`,
    "",
    "| suite | fault | injected | what happened | lost |",
    "|---|---|---|---|---|",
    ...recs.map((r) =>
      `| ${cell(r.suite)} | ${cell(r.fault)} | ${r.injected} | ${cell(r.outcome)} | ${
        cell(r.lost)
      } |`
    ),
    "",
    lostAny.length === 0
      ? `**Lost: nothing** (${recs.length} kinds of fault, ${total} injections).`
      : `**Lost: something** in ${lostAny.length} of ${recs.length} kinds of fault: ${
        lostAny.map((r) => `${r.suite} / ${r.fault}`).join("; ")
      }.`,
    "",
  ];
  for (const r of recs) {
    if (!r.details?.length) continue;
    lines.push(`## ${r.suite}: ${r.fault}`, "", ...r.details.map((d) => `- ${cell(d)}`), "");
  }
  return lines.join("\n");
}

/** A row of the summary table, read back. */
export interface ReportRow {
  suite: string;
  fault: string;
  injected: number;
  outcome: string;
  lost: string;
}

/**
 * Read a report back: its summary rows and whether its verdict line says nothing was lost.
 * Throws when the text is not a report (no summary table or no verdict line) or a row does
 * not have five cells with a count.
 */
export function parseReport(md: string): { rows: ReportRow[]; nothingLost: boolean } {
  const lines = md.split("\n");
  const head = lines.indexOf("| suite | fault | injected | what happened | lost |");
  if (head < 0) throw new Error("not a reliability report: no summary table");
  const rows: ReportRow[] = [];
  for (let i = head + 2; i < lines.length && lines[i].startsWith("|"); i++) {
    const cells = lines[i].slice(1, -1).split(/(?<!\\)\|/).map((c) =>
      c.trim().replace(/\\\|/g, "|")
    );
    const injected = Number(cells[2]);
    if (cells.length !== 5 || !Number.isInteger(injected)) {
      throw new Error(`reliability report line ${i + 1}: malformed row ${lines[i]}`);
    }
    rows.push({
      suite: cells[0],
      fault: cells[1],
      injected,
      outcome: cells[3],
      lost: cells[4],
    });
  }
  const verdict = lines.find((l) => l.startsWith("**Lost: "));
  if (!verdict) throw new Error("not a reliability report: no verdict line");
  const nothingLost = verdict.startsWith("**Lost: nothing**") &&
    rows.every((r) => isNothing(r.lost));
  return { rows, nothingLost };
}

/**
 * Add observations and rewrite the report (atomically) with everything recorded so far in
 * this process. Returns the report's path.
 */
export async function recordFaults(recs: readonly FaultRecord[]): Promise<string> {
  const path = reportPath();
  const slash = path.lastIndexOf("/");
  if (slash > 0) await ensureDir(path.slice(0, slash));
  let earlier: FaultRecord[] = [];
  try {
    earlier = embeddedRecords(await Deno.readTextFile(path));
  } catch { /* no report yet */ }
  // A fault recorded again (a test rerun in the same process) replaces its earlier row.
  const key = (r: FaultRecord) => `${r.suite}\u0000${r.fault}`;
  const fresh = new Set(recs.map(key));
  const records = [...earlier.filter((r) => !fresh.has(key(r))), ...recs];
  const md = formatReport(records, { setting: faultSetting(), date: new Date().toISOString() });
  // "--" cannot occur inside an HTML comment: escape it in the JSON (\u002d is still JSON).
  const json = JSON.stringify({ run: RUN_ID, records }).replace(/-/g, "\\u002d");
  await writeFileAtomic(path, `${md}\n<!-- ${TAG} ${json} -->\n`);
  return path;
}
