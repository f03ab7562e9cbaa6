/**
 * Notebook support, shared by `deno task notebooks` (`src/cli/notebooks.ts`), the notebook
 * test (`tests/notebooks_test.ts`) and the notebooks themselves:
 *
 * - {@link notebookModule}: a notebook's code cells as one TypeScript module, for `deno check`
 *   (the Deno Jupyter kernel does not type-check);
 * - {@link jupyterStatus} / {@link executeNotebook}: find Jupyter with the Deno kernel and run
 *   a notebook top to bottom through `jupyter nbconvert --execute` (a cell error fails it);
 * - {@link functionSource} / {@link sourceMarkdown}: the lines of `src/` that define a function,
 *   read at run time, so a notebook shows the code next to the formula without copying it;
 * - {@link REPO_ROOT} / {@link dataRoot}: paths that do not depend on the kernel's cwd.
 *
 * @module
 */

/** One notebook cell (nbformat 4). */
export interface NotebookCell {
  /** Cell kind. */
  cell_type: "code" | "markdown" | "raw";
  /** Source text, as one string or as lines (each keeping its `\n`). */
  source: string | string[];
  /** Cell metadata. */
  metadata?: Record<string, unknown>;
  /** Outputs of a code cell. */
  outputs?: Record<string, unknown>[];
  /** Execution count of a code cell. */
  execution_count?: number | null;
}

/** A notebook (nbformat 4). */
export interface Notebook {
  /** Cells, top to bottom. */
  cells: NotebookCell[];
  /** Notebook metadata (kernelspec, language_info). */
  metadata: Record<string, unknown>;
  /** Major format version (4). */
  nbformat: number;
  /** Minor format version. */
  nbformat_minor: number;
}

// ---------------------------------------------------------------------------------------------
// Output that lands in its cell

/** Something the Deno kernel displays: an object with a `Symbol.for("Jupyter.display")` method. */
export type Displayable = object;

/** The mime bundle of a displayable. */
function bundleOf(x: Displayable): Record<string, unknown> {
  const f = (x as Record<symbol, unknown>)[Symbol.for("Jupyter.display")];
  return typeof f === "function" ? (f.call(x) as Record<string, unknown>) : {
    "text/plain": String(x),
  };
}

/** What {@link notebookOutput} returns. */
export interface NotebookOutput {
  /**
   * This cell's output: the lines printed since the last call, followed by `extras` (plots,
   * markdown), as one value. End every cell with `flush(…);` — its value is what the cell shows.
   */
  flush: (...extras: (Displayable | undefined)[]) => Displayable | undefined;
  /** True inside the Jupyter kernel (outside it console is left as it is). */
  inKernel: boolean;
}

let installed: NotebookOutput | undefined;

/** Text of console arguments as Deno prints them (strings as they are, the rest inspected). */
export function formatArgs(args: unknown[]): string {
  return args.map((a) => typeof a === "string" ? a : Deno.inspect(a, { colors: false, depth: 6 }))
    .join(" ");
}

/** A plain-text table of rows (what console.table shows, without colours). */
export function formatTable(rows: readonly Record<string, unknown>[]): string {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => typeof v === "string" ? v : v === undefined ? "" : String(v);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(width[i])).join("  ").trimEnd();
  return [
    line(cols),
    line(width.map((w) => "-".repeat(w))),
    ...rows.map((r) => line(cols.map((c) => cell(r[c])))),
  ].join("\n");
}

const escapeHtml = (t: string) =>
  t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** An SVG as an `<img>` with a data URI (HTML exporters strip inline SVG). */
function svgImg(svg: string): string {
  const bytes = new TextEncoder().encode(svg);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return `<img src="data:image/svg+xml;base64,${btoa(bin)}" style="max-width:100%">`;
}

/**
 * Printed lines and displays as one displayable value (see {@link notebookOutput}): nothing →
 * undefined; one display and no lines → that display; lines and markdown → markdown; otherwise
 * HTML (the lines in a `<pre>`, plots as images).
 */
export function cellOutput(
  lines: readonly string[],
  extras: readonly (Displayable | undefined)[],
): Displayable | undefined {
  const shown = extras.filter((x): x is Displayable => x !== undefined);
  const text = lines.join("\n");
  if (shown.length === 0) {
    return text ? { [Symbol.for("Jupyter.display")]: () => ({ "text/plain": text }) } : undefined;
  }
  if (shown.length === 1 && !text) return shown[0];
  const bundles = shown.map(bundleOf);
  const plain = [text, ...bundles.map((b) => String(b["text/plain"] ?? ""))].filter(Boolean)
    .join("\n");
  if (bundles.every((b) => "text/markdown" in b && !("text/html" in b || "image/svg+xml" in b))) {
    const md = [text ? "```text\n" + text + "\n```" : "", ...bundles.map((b) => b["text/markdown"])]
      .filter(Boolean).join("\n\n");
    return {
      [Symbol.for("Jupyter.display")]: () => ({ "text/markdown": md, "text/plain": plain }),
    };
  }
  const html = [
    text ? `<pre>${escapeHtml(text)}</pre>` : "",
    ...bundles.map((b) =>
      typeof b["text/html"] === "string"
        ? b["text/html"]
        : typeof b["image/svg+xml"] === "string"
        ? svgImg(b["image/svg+xml"])
        : `<pre>${escapeHtml(String(b["text/markdown"] ?? b["text/plain"] ?? ""))}</pre>`
    ),
  ].join("\n");
  return { [Symbol.for("Jupyter.display")]: () => ({ "text/html": html, "text/plain": plain }) };
}

/**
 * Make console output land in the cell that printed it. The Deno kernel (2.x) sends console
 * output, and `Deno.jupyter.display`/`broadcast` messages, from a queue that it drains after the
 * cell's code has returned, and it reports the cell finished without waiting for that queue: on a
 * busy machine the last lines then arrive after Jupyter has closed the cell, and are dropped or
 * filed under the next cell. The one output the kernel sends before it reports a cell done is
 * the cell's own value. So: inside the kernel, `console.log / info / debug / warn / error /
 * table` collect the cell's lines, and the cell ends with `flush(…)`, whose value — the lines,
 * then any plot or markdown passed to it — is the cell's output. Outside the kernel it changes
 * nothing. Idempotent (re-running the setup cell keeps one collector).
 */
export function notebookOutput(): NotebookOutput {
  if (installed) return installed;
  type Jupyter = { broadcast?: unknown };
  let jupyter: Jupyter | undefined;
  try {
    jupyter = (Deno as unknown as { jupyter?: Jupyter }).jupyter; // throws outside the kernel
  } catch {
    jupyter = undefined;
  }
  if (typeof jupyter?.broadcast !== "function") {
    installed = { flush: () => undefined, inKernel: false };
    return installed;
  }
  let lines: string[] = [];
  const c = console as unknown as Record<string, (...a: unknown[]) => void>;
  for (const m of ["log", "info", "debug", "warn", "error"]) {
    c[m] = (...a: unknown[]) => lines.push(formatArgs(a));
  }
  c.table = (rows: unknown) =>
    lines.push(
      Array.isArray(rows) ? formatTable(rows as Record<string, unknown>[]) : formatArgs([rows]),
    );
  installed = {
    inKernel: true,
    flush: (...extras) => {
      const out = cellOutput(lines, extras);
      lines = [];
      return out;
    },
  };
  return installed;
}

/** The repository root (absolute path, trailing slash). */
export const REPO_ROOT: string = decodeURIComponent(new URL("../", import.meta.url).pathname);

/** The notebooks folder. */
export const NOTEBOOKS_DIR: string = `${REPO_ROOT}notebooks`;

/**
 * Folder of the released datasets (the S-DPO LastFM and DMPO files, which the kit does not
 * redistribute), as `deno task reproduce --dataset` finds it: `RECALIGN_DATA` when set, else
 * `data/raw/` of the repository (what `deno task data fetch` fills; not committed). Set to the
 * empty string (as `deno task notebooks` does without `--data`): none. No trailing slash.
 */
export function dataRoot(): string | undefined {
  let env: string | undefined;
  try {
    env = Deno.env.get("RECALIGN_DATA");
  } catch {
    env = undefined; // no --allow-env
  }
  if (env !== undefined) return env ? env.replace(/\/+$/, "") : undefined;
  return `${REPO_ROOT}data/raw`;
}

/** Where a notebook says how to show the released data. */
export const DATA_HINT = "the released files are not part of the kit (their licences forbid " +
  "redistribution): `deno task data fetch` downloads them from the papers' repositories into " +
  "data/raw/ (not committed), or start Jupyter with RECALIGN_DATA=<folder>";

/**
 * A released data file, `rel` under {@link dataRoot}: its path, or why it is not readable
 * (one line naming the file and what to do).
 */
export async function releasedFile(
  rel: string,
): Promise<{ path: string } | { missing: string }> {
  const root = dataRoot();
  if (!root) return { missing: `${rel}: no data folder given; ${DATA_HINT}` };
  try {
    await Deno.stat(`${root}/${rel}`);
    return { path: `${root}/${rel}` };
  } catch {
    const where = root === `${REPO_ROOT}data/raw` ? "data/raw/" : "RECALIGN_DATA";
    return { missing: `${rel} is not in ${where}; ${DATA_HINT}` };
  }
}

/** Read and parse a notebook file. */
export async function readNotebook(path: string): Promise<Notebook> {
  return JSON.parse(await Deno.readTextFile(path)) as Notebook;
}

/** A cell's source as one string. */
export function cellSource(cell: NotebookCell): string {
  return Array.isArray(cell.source) ? cell.source.join("") : cell.source;
}

/**
 * The code cells of a notebook as one TypeScript module, in order, each preceded by a
 * `// --- cell N ---` comment and followed by `;` (so a cell ending in a bare expression stays
 * an expression statement and never runs into the next cell). Top-level await is kept.
 * Cells must not redeclare a name an earlier cell declared (the module would not check).
 */
export function notebookModule(nb: Notebook): string {
  const parts: string[] = [];
  nb.cells.forEach((cell, i) => {
    if (cell.cell_type !== "code") return;
    parts.push(`// --- cell ${i + 1} ---`, cellSource(cell).replace(/\s+$/, ""), ";");
  });
  parts.push("export {};", "");
  return parts.join("\n");
}

/** The notebooks of the repository (`notebooks/*.ipynb`), sorted by name. */
export async function listNotebooks(dir = NOTEBOOKS_DIR): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".ipynb") && !e.name.startsWith(".")) {
      out.push(`${dir}/${e.name}`);
    }
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// Jupyter

/** How to install what {@link executeNotebook} needs. */
export const JUPYTER_INSTALL_HINT = "install Jupyter (Debian/Ubuntu: `apt-get install -y " +
  "jupyter-nbconvert jupyter-client python3-nbclient jupyter-core`; elsewhere `pip install " +
  "nbconvert nbclient`), then register the Deno kernel with `deno jupyter --install` " +
  "(`.ci/setup-extra` does both)";

/** Whether notebooks can be executed here. */
export interface JupyterStatus {
  /** True when `jupyter nbconvert` runs and a kernel named `deno` is registered. */
  ok: boolean;
  /** Why not, with how to fix it. */
  reason?: string;
  /** Why not, in a few words (for test names). */
  short?: string;
}

async function runQuiet(
  cmd: string,
  args: string[],
): Promise<{ ok: boolean; stdout: string; out: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    const stdout = dec.decode(r.stdout);
    return { ok: r.success, stdout, out: stdout + dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, stdout: "", out: (e as Error).message };
  }
}

/** Check for `jupyter nbconvert` and the `deno` kernel (never throws). */
export async function jupyterStatus(): Promise<JupyterStatus> {
  const nb = await runQuiet("jupyter", ["nbconvert", "--version"]);
  if (!nb.ok) {
    return {
      ok: false,
      short: "jupyter nbconvert not found",
      reason: `\`jupyter nbconvert\` is not available (${
        nb.out.trim().split("\n").at(-1) ?? "not found"
      }); ${JUPYTER_INSTALL_HINT}`,
    };
  }
  const ks = await runQuiet("jupyter", ["kernelspec", "list", "--json"]);
  let names: string[] = [];
  try {
    names = Object.keys(JSON.parse(ks.stdout).kernelspecs ?? {});
  } catch {
    names = [];
  }
  if (!names.includes("deno")) {
    return {
      ok: false,
      short: "no Jupyter kernel named deno",
      reason: `Jupyter has no kernel named "deno" (kernels: ${
        names.join(", ") || "none"
      }); run \`deno jupyter --install\``,
    };
  }
  return { ok: true };
}

/** Options of {@link executeNotebook}. */
export interface ExecuteOptions {
  /** Write the executed notebook here (default: in place). */
  out?: string;
  /** Also write an HTML export next to the executed notebook. */
  html?: boolean;
  /** Per-cell timeout in seconds (default 900). */
  timeout?: number;
  /** Extra environment variables for the kernel (e.g. `RECALIGN_NOTEBOOK_SCALE`). */
  env?: Record<string, string>;
  /** Stream nbconvert's output to this process's stderr (default false: captured). */
  stream?: boolean;
}

/** What {@link executeNotebook} returns. */
export interface ExecuteResult {
  /** nbconvert exited 0 (every cell ran without error). */
  ok: boolean;
  /** Wall-clock seconds. */
  seconds: number;
  /** The executed notebook's path. */
  output: string;
  /** The HTML export's path, when asked for and written. */
  htmlOutput?: string;
  /** nbconvert's captured output (the failing cell's traceback on error). */
  log: string;
}

function splitPath(path: string): { dir: string; base: string } {
  const i = path.lastIndexOf("/");
  return i < 0
    ? { dir: ".", base: path }
    : { dir: path.slice(0, i) || "/", base: path.slice(i + 1) };
}

/** Run `program args` with the options' environment; its output streamed or returned as `log`. */
async function runTool(
  program: string,
  args: string[],
  opts: ExecuteOptions,
): Promise<{ ok: boolean; log: string }> {
  const cmd = new Deno.Command(program, {
    args,
    env: opts.env,
    stdout: opts.stream ? "inherit" : "piped",
    stderr: opts.stream ? "inherit" : "piped",
  });
  const r = await cmd.output();
  const dec = new TextDecoder();
  const log = opts.stream ? "" : dec.decode(r.stdout) + dec.decode(r.stderr);
  return { ok: r.success, log };
}

function nbconvert(args: string[], opts: ExecuteOptions): Promise<{ ok: boolean; log: string }> {
  return runTool("jupyter", ["nbconvert", ...args], opts);
}

/**
 * nbclient with a grace period after each cell: the Deno kernel (2.x) can report a cell idle
 * before its last iopub messages (printed lines, displays, even the cell's value) are out, and
 * a stock client stops listening at idle, so those outputs were dropped. This one keeps
 * collecting the cell's own messages (same parent id) for `grace` seconds.
 */
const RUNNER = `
import os, sys, time, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete
from nbclient.util import ensure_async
src, dst, timeout, kernel, grace = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
class GraceClient(NotebookClient):
    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        await super()._async_poll_output_msg(parent_msg_id, cell, cell_index)
        end = time.monotonic() + grace
        while time.monotonic() < end:
            try:
                msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=max(0.01, end - time.monotonic())))
            except Exception:
                return
            if msg['parent_header'].get('msg_id') == parent_msg_id:
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    pass
nb = nbformat.read(src, as_version=4)
GraceClient(nb, timeout=timeout, kernel_name=kernel,
            resources={'metadata': {'path': os.path.dirname(os.path.abspath(src))}}).execute()
nbformat.write(nb, dst)
`;

/** The Python that runs `jupyter` (its shebang), where nbclient is installed. */
async function jupyterPython(): Promise<string> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const head = (await Deno.readTextFile(`${dir}/jupyter`)).split("\n")[0];
      if (head.startsWith("#!")) return head.slice(2).trim().split(/\s+/)[0];
    } catch {
      // not here
    }
  }
  return "python3";
}

/**
 * Execute a notebook top to bottom with the Deno kernel (nbclient, as `jupyter nbconvert
 * --execute` does, plus a grace period per cell for the kernel's late messages), in place or
 * to `opts.out`; the kernel's working directory is the notebook's folder. With `html`, also
 * export the executed notebook to HTML beside it. A cell error makes `ok` false.
 */
export async function executeNotebook(
  path: string,
  opts: ExecuteOptions = {},
): Promise<ExecuteResult> {
  const t0 = performance.now();
  const target = opts.out ?? path;
  const { dir } = splitPath(target);
  if (opts.out) await Deno.mkdir(dir, { recursive: true });
  const py = await jupyterPython();
  const r = await runTool(
    py,
    ["-c", RUNNER, path, target, String(opts.timeout ?? 900), "deno", "0.5"],
    opts,
  );
  let log = r.log;
  let htmlOutput: string | undefined;
  if (r.ok && opts.html) {
    const h = await nbconvert(["--to", "html", "--output-dir", dir, target], opts);
    log += h.log;
    if (h.ok) htmlOutput = target.replace(/\.ipynb$/, "") + ".html";
  }
  return {
    ok: r.ok,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
    output: target,
    htmlOutput,
    log,
  };
}

// ---------------------------------------------------------------------------------------------
// Source excerpts for the notebooks

/** Lines of a source file that define one function. */
export interface FunctionSource {
  /** File, relative to the repository root. */
  file: string;
  /** First line (1-based), its doc comment included when asked for. */
  start: number;
  /** Last line (1-based, the closing brace). */
  end: number;
  /** The lines. */
  text: string;
}

/**
 * The lines that define `name` in `file` (relative to the repository root): from
 * `function name` / `const name =` to the line where its braces balance again, optionally
 * with the doc comment above. Read from disk at call time, so it always shows the current
 * code. Throws when the definition is not found.
 */
export async function functionSource(
  file: string,
  name: string,
  opts: { docs?: boolean } = {},
): Promise<FunctionSource> {
  const lines = (await Deno.readTextFile(`${REPO_ROOT}${file}`)).split("\n");
  const head = new RegExp(
    `^\\s*(export\\s+)?((async\\s+)?function\\*?\\s+${name}\\b|(const|let)\\s+${name}\\b)`,
  );
  const i0 = lines.findIndex((l) => head.test(l));
  if (i0 < 0) throw new Error(`${file}: no definition of ${name}`);
  let depth = 0, opened = false, i = i0;
  for (; i < lines.length; i++) {
    // Strip strings and line comments before counting braces (good enough for src/).
    const code = lines[i].replace(/\/\/.*$/, "").replace(/"(?:[^"\\]|\\.)*"/g, '""')
      .replace(/'(?:[^'\\]|\\.)*'/g, "''");
    for (const ch of code) {
      if (ch === "{") {
        depth++;
        opened = true;
      } else if (ch === "}") depth--;
    }
    if (opened && depth <= 0) break;
  }
  let start = i0;
  if (opts.docs && start > 0 && lines[start - 1].trim() === "*/") {
    while (start > 0 && !lines[start].trim().startsWith("/**")) start--;
  }
  return { file, start: start + 1, end: i + 1, text: lines.slice(start, i + 1).join("\n") };
}

/** {@link functionSource} of several names as one markdown block, headed by file and lines. */
export async function sourceMarkdown(
  file: string,
  names: string[],
  opts: { docs?: boolean } = {},
): Promise<string> {
  const parts: string[] = [];
  for (const n of names) {
    const s = await functionSource(file, n, opts);
    parts.push(`\`${s.file}\`, lines ${s.start}–${s.end}:\n\n\`\`\`ts\n${s.text}\n\`\`\``);
  }
  return parts.join("\n\n");
}

// ---------------------------------------------------------------------------------------------
// What an executed notebook must show, cell by cell

/**
 * The lines a cell must show, kept in the cell's metadata (`metadata.recalign.expect`): each
 * a regular expression that some line of the cell's printed output must match.
 */
export function cellExpectations(cell: NotebookCell): RegExp[] {
  const r = (cell.metadata?.recalign as { expect?: string[] } | undefined)?.expect ?? [];
  return r.map((x) => new RegExp(x));
}

/** A code cell's printed text: its streams and the text of its value / displays, in order. */
export function cellText(cell: NotebookCell): string {
  return (cell.outputs ?? []).map((o) => {
    if (o.output_type === "stream") {
      return Array.isArray(o.text) ? (o.text as string[]).join("") : String(o.text ?? "");
    }
    const v = ((o.data ?? {}) as Record<string, unknown>)["text/plain"];
    const t = Array.isArray(v) ? v.join("") : typeof v === "string" ? v : "";
    return t && !t.endsWith("\n") ? t + "\n" : t;
  }).join("");
}

/** Everything a reader sees of a cell: source, printed text, displayed text / markdown. */
function cellVisible(cell: NotebookCell): string {
  const shown = (cell.outputs ?? []).flatMap((o) => {
    const data = (o.data ?? {}) as Record<string, unknown>;
    return ["text/plain", "text/markdown", "text/html"].map((k) => {
      const v = data[k];
      return Array.isArray(v) ? v.join("") : typeof v === "string" ? v : "";
    });
  });
  // Images are data URIs: their base64 is not text a reader sees.
  return [cellSource(cell), cellText(cell), ...shown].join("\n").replace(/data:[^"')\s]+/g, "");
}

/** Text that must never reach a committed notebook, with why. */
export const FORBIDDEN_TEXT: [RegExp, string][] = [
  [/(^|[\s"'`(=])\/(work|home|tmp|root|Users|usr|mnt|opt)\//m, "a machine path"],
  [/\.\.\/shared\b/, "a path outside the repository (../shared)"],
  [/\bETA \d+s\b|\d tok\/s\b/, "a progress line"],
  [/NOT FOUND in any readable|arXiv HTML is stored|TODO|FIXME|XXX/, "text meant for maintainers"],
];

/** Longest printed text a cell may show (longer = noise, e.g. progress bars). */
export const MAX_CELL_TEXT = 3000;

/**
 * What an executed notebook gets wrong, cell by cell (empty = nothing): a cell missing a line
 * it must show, a cell printing another cell's line, forbidden text, a cell too noisy, an error.
 */
export function checkExecutedNotebook(nb: Notebook): string[] {
  const out: string[] = [];
  const expectations = nb.cells.map(cellExpectations);
  nb.cells.forEach((cell, i) => {
    const where = `cell ${i}`;
    for (const [re, why] of FORBIDDEN_TEXT) {
      const m = cellVisible(cell).match(re);
      if (m) out.push(`${where}: ${why}: "${m[0].trim()}"`);
    }
    if (cell.cell_type !== "code") return;
    for (const o of cell.outputs ?? []) {
      if (o.output_type === "error") {
        out.push(`${where}: error ${String(o.ename)}: ${String(o.evalue)}`);
      }
    }
    const text = cellText(cell);
    if (text.length > MAX_CELL_TEXT) {
      out.push(`${where}: prints ${text.length} characters (at most ${MAX_CELL_TEXT})`);
    }
    const lines = text.split("\n");
    for (const re of expectations[i]) {
      if (!lines.some((l) => re.test(l))) out.push(`${where}: no line matches /${re.source}/`);
    }
    // A line another cell must show, printed here: output landed in the wrong cell.
    expectations.forEach((res, j) => {
      if (j === i) return;
      for (const re of res) {
        if (lines.some((l) => re.test(l)) && !expectations[i].some((r) => r.source === re.source)) {
          out.push(`${where}: shows cell ${j}'s line /${re.source}/`);
        }
      }
    });
  });
  return out;
}

/**
 * Code cells that do not end with a `flush(…)` statement, or that display with
 * `Deno.jupyter.display` (both can lose output or put it in another cell, see
 * {@link notebookOutput}).
 */
export function unflushedCells(nb: Notebook): number[] {
  return nb.cells.flatMap((cell, i) => {
    if (cell.cell_type !== "code") return [];
    const src = cellSource(cell).trimEnd();
    const last = src.slice(src.lastIndexOf("\n") + 1);
    const endsWithFlush = /(^|\n)flush\([\s\S]*\);?$/.test(src) && !/^\s/.test(last);
    return endsWithFlush && !/Deno\.jupyter\.display\(/.test(src) ? [] : [i];
  });
}
