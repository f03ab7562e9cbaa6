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

/** The repository root (absolute path, trailing slash). */
export const REPO_ROOT: string = decodeURIComponent(new URL("../", import.meta.url).pathname);

/** The notebooks folder. */
export const NOTEBOOKS_DIR: string = `${REPO_ROOT}notebooks`;

/**
 * Folder of the released datasets: `RECALIGN_DATA` if set, else `../shared/data` next to
 * the repository (absolute path, no trailing slash).
 */
export function dataRoot(): string {
  let env: string | undefined;
  try {
    env = Deno.env.get("RECALIGN_DATA");
  } catch {
    env = undefined; // no --allow-env
  }
  return (env || `${REPO_ROOT}../shared/data`).replace(/\/+$/, "");
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

async function nbconvert(
  args: string[],
  opts: ExecuteOptions,
): Promise<{ ok: boolean; log: string }> {
  const cmd = new Deno.Command("jupyter", {
    args: ["nbconvert", ...args],
    env: opts.env,
    stdout: opts.stream ? "inherit" : "piped",
    stderr: opts.stream ? "inherit" : "piped",
  });
  const r = await cmd.output();
  const dec = new TextDecoder();
  const log = opts.stream ? "" : dec.decode(r.stdout) + dec.decode(r.stderr);
  return { ok: r.success, log };
}

/**
 * Execute a notebook top to bottom with the Deno kernel (`jupyter nbconvert --to notebook
 * --execute --ExecutePreprocessor.kernel_name=deno`), in place or to `opts.out`; the kernel's
 * working directory is the notebook's folder. With `html`, also export the executed notebook
 * to HTML beside it. A cell error makes `ok` false (nbconvert exits 1).
 */
export async function executeNotebook(
  path: string,
  opts: ExecuteOptions = {},
): Promise<ExecuteResult> {
  const t0 = performance.now();
  const target = opts.out ?? path;
  const { dir, base } = splitPath(target);
  const args = [
    "--to",
    "notebook",
    "--execute",
    "--ExecutePreprocessor.kernel_name=deno",
    `--ExecutePreprocessor.timeout=${opts.timeout ?? 900}`,
    ...(opts.out === undefined ? ["--inplace"] : ["--output-dir", dir, "--output", base]),
    path,
  ];
  const r = await nbconvert(args, opts);
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
