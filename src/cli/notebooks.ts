/**
 * `deno task notebooks`: execute the notebooks through the Jupyter Deno kernel, writing the
 * executed copies in place (so they are committed with their outputs) or to `--out`, and with
 * `--html` also HTML exports for reviewers.
 *
 * ```sh
 * deno run -A src/cli/notebooks.ts                 # every notebooks/*.ipynb, in place
 * deno run -A src/cli/notebooks.ts --html 01 02    # two notebooks (by name or prefix), + HTML
 * deno run -A src/cli/notebooks.ts --out /tmp/nb   # executed copies elsewhere
 * ```
 *
 * Exits 1 when a notebook fails (a cell error), 2 on a bad flag or a missing Jupyter / Deno
 * kernel (with how to install them).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ensureDir } from "../io.ts";
import { executeNotebook, jupyterStatus, listNotebooks } from "../notebook_check.ts";

const USAGE = "usage: notebooks [--html] [--out DIR] [--scale tiny|test] [--timeout SECONDS] " +
  "[names…]\n" +
  "  names: notebook file names or prefixes (e.g. 01 or 01-sdpo); default: every notebook\n" +
  "  --html     also write an HTML export of each executed notebook\n" +
  "  --out      write the executed notebooks (and HTML) to DIR instead of in place\n" +
  "  --scale    RECALIGN_NOTEBOOK_SCALE for the training runs (default tiny)\n" +
  "  --timeout  per-cell timeout in seconds (default 900)";

function fail(msg: string, code = 2): never {
  console.error(`notebooks: ${msg}`);
  Deno.exit(code);
}

/** Parsed options. */
export interface NotebooksOptions {
  html: boolean;
  out?: string;
  scale: string;
  timeout: number;
  names: string[];
}

/** Parse argv; exits 2 with a one-line message on a bad flag or value. */
export function parseOptions(args: string[]): NotebooksOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        html: { type: "boolean", default: false },
        out: { type: "string" },
        scale: { type: "string", default: "tiny" },
        timeout: { type: "string", default: "900" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    // One line naming the flag and the allowed ones (`--help` prints the usage).
    const msg = (e as Error).message;
    const flag = msg.match(/'(-[^' ]*)/)?.[1] ?? "?";
    const allowed = "--html, --out, --scale, --timeout, --help";
    if (/Unknown option/i.test(msg)) fail(`unknown flag ${flag}; allowed: ${allowed}`);
    if (/argument missing/i.test(msg)) fail(`${flag} needs a value`);
    if (/does not take an argument/i.test(msg)) fail(`${flag} takes no value`);
    if (/ambiguous/i.test(msg)) fail(`${flag}: write a value starting with "-" as ${flag}=VALUE`);
    fail(`${msg.split("\n")[0]} (allowed: ${allowed})`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (!["tiny", "test", "small"].includes(values.scale!)) {
    fail(`--scale must be tiny, test or small, got "${values.scale}"`);
  }
  const timeout = Number(values.timeout);
  if (!Number.isInteger(timeout) || timeout < 1) {
    fail(`--timeout must be a positive integer (seconds), got "${values.timeout}"`);
  }
  return {
    html: values.html!,
    out: values.out?.replace(/\/+$/, ""),
    scale: values.scale!,
    timeout,
    names: positionals,
  };
}

/** The notebooks selected by `names` (all when empty); exits 2 on a name that matches none. */
export function selectNotebooks(all: string[], names: string[]): string[] {
  if (names.length === 0) return all;
  const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);
  const picked = new Set<string>();
  for (const n of names) {
    const key = base(n).replace(/\.ipynb$/, "");
    const hits = all.filter((p) => base(p).replace(/\.ipynb$/, "").startsWith(key));
    if (hits.length === 0) {
      fail(`no notebook matches "${n}"; notebooks: ${all.map(base).join(", ")}`);
    }
    hits.forEach((h) => picked.add(h));
  }
  return all.filter((p) => picked.has(p));
}

/** Run; returns the number of failed notebooks. */
export async function main(args: string[]): Promise<number> {
  const opts = parseOptions(args);
  const status = await jupyterStatus();
  if (!status.ok) fail(`cannot execute notebooks: ${status.reason}`);
  const notebooks = selectNotebooks(await listNotebooks(), opts.names);
  if (opts.out) await ensureDir(opts.out);
  let failed = 0;
  for (const path of notebooks) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    const out = opts.out ? `${opts.out}/${name}` : undefined;
    console.error(`[notebooks] ${name}: executing (scale ${opts.scale}) …`);
    const r = await executeNotebook(path, {
      out,
      html: opts.html,
      timeout: opts.timeout,
      env: { RECALIGN_NOTEBOOK_SCALE: opts.scale },
    });
    if (r.ok) {
      console.error(
        `[notebooks] ${name}: ok in ${r.seconds} s → ${r.output}` +
          (r.htmlOutput ? `, ${r.htmlOutput}` : ""),
      );
    } else {
      failed++;
      console.error(`[notebooks] ${name}: FAILED after ${r.seconds} s\n${r.log.slice(-6000)}`);
    }
  }
  console.error(`[notebooks] ${notebooks.length - failed} ok, ${failed} failed`);
  return failed;
}

if (import.meta.main) {
  let failed = 0;
  try {
    failed = await main(Deno.args);
  } catch (err) {
    // One line, never a bare stack trace (RECALIGN_DEBUG=1 shows it).
    if (Deno.env.get("RECALIGN_DEBUG")) console.error(err);
    const e = err as Error;
    fail(`${e?.name ?? "Error"}: ${String(e?.message).replace(/\s*\n\s*/g, " ")}`, 1);
  }
  if (failed > 0) Deno.exit(1);
}
