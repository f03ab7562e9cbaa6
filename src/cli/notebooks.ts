/**
 * `deno task notebooks`: execute the notebooks through the Jupyter Deno kernel, writing the
 * executed copies in place (so they are committed with their outputs) or to `--out`, and with
 * `--html` also HTML exports for reviewers.
 *
 * ```sh
 * deno run -A src/cli/notebooks.ts                 # every notebooks/*.ipynb, in place
 * deno run -A src/cli/notebooks.ts --html 01 02    # two notebooks (by name or prefix), + HTML
 * deno run -A src/cli/notebooks.ts --out runs/nb    # executed copies elsewhere
 * deno run -A src/cli/notebooks.ts --data DIR 01   # with the released data (RECALIGN_DATA)
 * ```
 *
 * The committed notebooks are executed without the released data: those files may not be
 * redistributed, so their cells say how to show them instead of printing rows.
 *
 * `--help` lists the flags. Exits 1 when a notebook fails (a cell error), 2 on a bad flag or
 * a missing Jupyter / Deno kernel (with how to install them).
 *
 * @module
 */
import { ensureDir } from "../io.ts";
import { executeNotebook, jupyterStatus, listNotebooks } from "../notebook_check.ts";
import {
  choiceFlag,
  type FlagTable,
  helpText,
  numberFlag,
  parseFlags,
  runMain,
  UsageError,
} from "./_args.ts";

/** The flags of `deno task notebooks`. */
export const NOTEBOOKS_FLAGS = {
  html: { type: "boolean", help: "also write an HTML export of each executed notebook" },
  out: {
    type: "string",
    value: "DIR",
    defaultText: "in place (notebooks/)",
    help: "write the executed notebooks (and HTML) to DIR",
  },
  data: {
    type: "string",
    value: "DIR",
    defaultText: "none: cells that read the released data say how to get it",
    help: "folder of the released datasets, passed to the kernel as RECALIGN_DATA",
  },
  scale: {
    type: "string",
    value: "tiny|test|small",
    default: "tiny",
    help: "scale of the notebooks' training runs (RECALIGN_NOTEBOOK_SCALE)",
  },
  timeout: {
    type: "string",
    value: "SECONDS",
    default: "900",
    help: "per-cell timeout",
  },
} as const satisfies FlagTable;

const HELP = helpText(NOTEBOOKS_FLAGS, {
  usage: "deno task notebooks [flags] [names…]",
  about: "Execute the notebooks through Jupyter's Deno kernel, writing the executed copies " +
    "(with their outputs) in place or to --out. names: notebook file names or prefixes (e.g. " +
    "01 or 01-sdpo); default: every notebook. Needs jupyter and the Deno kernel " +
    "(`deno jupyter --install`).",
});

function fail(msg: string): never {
  throw new UsageError(`notebooks: ${msg}`);
}

/** Parsed options. */
export interface NotebooksOptions {
  html: boolean;
  out?: string;
  data?: string;
  scale: string;
  timeout: number;
  names: string[];
}

/**
 * Parse argv; undefined for `--help`.
 *
 * @throws {UsageError} one line naming a bad flag or value (exit status 2).
 */
export function parseOptions(args: string[]): NotebooksOptions | undefined {
  const { values, positionals, help } = parseFlags("notebooks", NOTEBOOKS_FLAGS, args, true);
  if (help) return undefined;
  return {
    html: values.html ?? false,
    out: values.out?.replace(/\/+$/, ""),
    data: values.data?.replace(/\/+$/, ""),
    scale: choiceFlag("notebooks", "scale", values.scale!, ["tiny", "test", "small"]),
    timeout: numberFlag("notebooks", "timeout", values.timeout, { integer: true, min: 1 })!,
    names: positionals,
  };
}

/** The notebooks selected by `names` (all when empty); a name that matches none: UsageError. */
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
  if (!opts) {
    console.log(HELP);
    return 0;
  }
  const status = await jupyterStatus();
  if (!status.ok) fail(`cannot execute notebooks: ${status.reason}`);
  const notebooks = selectNotebooks(await listNotebooks(), opts.names);
  if (opts.out) await ensureDir(opts.out);
  if (opts.data !== undefined) {
    const st = await Deno.stat(opts.data).catch(() => undefined);
    if (!st?.isDirectory) fail(`--data ${opts.data}: no such folder`);
  }
  let failed = 0;
  for (const path of notebooks) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    const out = opts.out ? `${opts.out}/${name}` : undefined;
    console.error(`[notebooks] ${name}: executing (scale ${opts.scale}) …`);
    const r = await executeNotebook(path, {
      out,
      html: opts.html,
      timeout: opts.timeout,
      // Without --data the kernel gets no data root (an inherited RECALIGN_DATA is cleared).
      env: { RECALIGN_NOTEBOOK_SCALE: opts.scale, RECALIGN_DATA: opts.data ?? "" },
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
  // Exit 1 when a notebook failed, 2 on a bad flag or a missing Jupyter / Deno kernel.
  await runMain("notebooks", async (args) => (await main(args)) > 0 ? 1 : 0);
}
