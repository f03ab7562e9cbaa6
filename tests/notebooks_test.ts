/**
 * The notebooks: (1) every notebook's code cells, concatenated into one module, pass
 * `deno check` (the Deno Jupyter kernel does not type-check); (2) the committed notebooks show,
 * cell by cell, the lines each cell must show (`metadata.recalign.expect`), no machine path,
 * no path outside the repository, no progress bar, no maintainer text, and every code cell
 * ends with `flush(…)` (its value is the cell's output); (3) when Jupyter and the Deno kernel are installed, every
 * notebook runs top to bottom through the kernel (to a temporary copy) at the `test` scale
 * (`RECALIGN_NOTEBOOK_SCALE=test`) and its output passes the same cell-by-cell check. Without
 * Jupyter the execution tests are reported as ignored, with the reason.
 */
import assert from "node:assert/strict";
import {
  cellOutput,
  checkExecutedNotebook,
  executeNotebook,
  formatTable,
  jupyterStatus,
  listNotebooks,
  notebookModule,
  NOTEBOOKS_DIR,
  readNotebook,
  REPO_ROOT,
  unflushedCells,
} from "../src/notebook_check.ts";

const notebooks = await listNotebooks();
const name = (p: string) => p.slice(p.lastIndexOf("/") + 1);

Deno.test("notebooks/ holds the five notebooks, each with the Deno kernelspec", async () => {
  assert.deepEqual(notebooks.map(name), [
    "00-tour.ipynb",
    "01-sdpo.ipynb",
    "02-dmpo.ipynb",
    "03-dpo4rec.ipynb",
    "04-dmpo-vs-sdpo.ipynb",
  ]);
  for (const path of notebooks) {
    const nb = await readNotebook(path);
    assert.equal(nb.nbformat, 4, name(path));
    assert.equal((nb.metadata.kernelspec as { name?: string })?.name, "deno", name(path));
  }
});

Deno.test("notebookModule() of every notebook passes deno check", async () => {
  // Hidden files inside notebooks/, so the cells' relative imports resolve as in the kernel;
  // one `deno check` call for all of them (one type graph).
  const tag = crypto.randomUUID().slice(0, 8);
  const tmp = new Map<string, string>();
  for (const path of notebooks) {
    const file = `${NOTEBOOKS_DIR}/.check-${tag}-${name(path).replace(/\.ipynb$/, "")}.ts`;
    await Deno.writeTextFile(file, notebookModule(await readNotebook(path)));
    tmp.set(file, name(path));
  }
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--quiet", ...tmp.keys()],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const dec = new TextDecoder();
    let out = dec.decode(r.stdout) + dec.decode(r.stderr);
    for (const [file, nb] of tmp) out = out.replaceAll(file, `${nb} (code cells)`);
    assert.ok(r.success, `deno check of the notebooks' code cells failed:\n${out}`);
  } finally {
    for (const file of tmp.keys()) await Deno.remove(file).catch(() => {});
  }
});

Deno.test("the committed notebooks show each cell's lines, in their cells, with nothing that must not be there", async () => {
  for (const path of notebooks) {
    const nb = await readNotebook(path);
    assert.deepEqual(checkExecutedNotebook(nb), [], name(path));
    assert.deepEqual(unflushedCells(nb), [], `${name(path)}: cells not ending with flush(…)`);
    const expecting = nb.cells.filter((c) =>
      (c.metadata?.recalign as { expect?: string[] })?.expect
    );
    assert.ok(expecting.length >= 3, `${name(path)}: cells with expected lines`);
  }
});

Deno.test("checkExecutedNotebook() catches a lost line, a misplaced line, a machine path and a progress bar", () => {
  const code = (src: string, text: string, expect?: string[]) => ({
    cell_type: "code" as const,
    source: src,
    metadata: expect ? { recalign: { expect } } : {},
    outputs: text ? [{ output_type: "stream", name: "stdout", text }] : [],
    execution_count: 1,
  });
  const nb = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {},
    cells: [
      code("console.log(a); console.log(b);\nflush();", "first line\n", ["^first", "^max \\|base"]),
      code(
        "console.log(c);",
        "max |base − adapters disabled| = 0\n[SFT] step 10/120 loss 5.37 268 tok/s ETA 23s\n",
      ),
      code("console.log(`${d}`);\n  flush();", "read /work/main/../shared/data/x.json\n"),
      code("await Deno.jupyter.display(x);\nflush();", ""),
      code("const x = 1;\nflush(await display(spec));", ""),
    ],
  };
  const problems = checkExecutedNotebook(nb);
  const has = (re: RegExp) => problems.some((p) => re.test(p));
  assert.ok(has(/cell 0: no line matches \/\^max/), "lost line");
  assert.ok(has(/cell 1: shows cell 0's line/), "misplaced line");
  assert.ok(has(/cell 1: a progress line/), "progress bar");
  assert.ok(has(/cell 2: a machine path/), "machine path");
  assert.ok(has(/cell 2: a path outside the repository/), "../shared");
  // Cells must end with a top-level flush(…) and never broadcast with Deno.jupyter.display.
  assert.deepEqual(unflushedCells(nb), [1, 2, 3]);
  assert.equal(formatTable([{ a: 1, b: "x" }, { a: 22 }]), "a   b\n--  -\n1   x\n22");
});

Deno.test("cellOutput(): a cell's lines and displays as one value (text, markdown or HTML)", () => {
  const show = (x: unknown) =>
    (x as Record<symbol, () => Record<string, unknown>>)[Symbol.for("Jupyter.display")]();
  assert.equal(cellOutput([], []), undefined);
  assert.deepEqual(show(cellOutput(["a", "b"], [])), { "text/plain": "a\nb" });
  const md = { [Symbol.for("Jupyter.display")]: () => ({ "text/markdown": "# T" }) };
  assert.equal(cellOutput([], [md, undefined]), md, "one display alone is passed through");
  assert.deepEqual(show(cellOutput(["x < 1"], [md])), {
    "text/markdown": "```text\nx < 1\n```\n\n# T",
    "text/plain": "x < 1",
  });
  const svg = { [Symbol.for("Jupyter.display")]: () => ({ "image/svg+xml": "<svg/>" }) };
  const both = show(cellOutput(["x < 1"], [svg, md]));
  assert.match(
    String(both["text/html"]),
    /^<pre>x &lt; 1<\/pre>\n<img src="data:image\/svg\+xml;base64,PHN2Zy8\+"/,
  );
  assert.match(String(both["text/html"]), /<pre># T<\/pre>$/);
});

const status = await jupyterStatus();
if (!status.ok) {
  console.error(`[notebooks_test] notebook execution ignored: ${status.reason}`);
}

Deno.test({
  name: "executeNotebook() fails on a cell error" +
    (status.ok ? "" : ` (ignored: ${status.short})`),
  ignore: !status.ok,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "recalign-nb-" });
    try {
      const nb = {
        cells: [
          {
            cell_type: "code",
            source: "const x = 1;",
            metadata: {},
            outputs: [],
            execution_count: null,
          },
          {
            cell_type: "code",
            source: 'throw new Error("boom " + x);',
            metadata: {},
            outputs: [],
            execution_count: null,
          },
        ],
        metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
        nbformat: 4,
        nbformat_minor: 5,
      };
      await Deno.writeTextFile(`${dir}/bad.ipynb`, JSON.stringify(nb));
      const r = await executeNotebook(`${dir}/bad.ipynb`, {
        out: `${dir}/out/bad.ipynb`,
        timeout: 120,
      });
      assert.equal(r.ok, false);
      assert.match(r.log, /boom 1/);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

for (const path of notebooks) {
  Deno.test({
    name: `${name(path)} runs top to bottom in the Deno Jupyter kernel` +
      (status.ok ? "" : ` (ignored: ${status.short})`),
    ignore: !status.ok,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "recalign-nb-" });
      try {
        const r = await executeNotebook(path, {
          out: `${dir}/${name(path)}`,
          timeout: 600,
          env: { RECALIGN_NOTEBOOK_SCALE: "test", NO_COLOR: "1" },
        });
        assert.ok(
          r.ok,
          `${name(path)}: a cell failed (nbconvert exited non-zero):\n${r.log.slice(-4000)}`,
        );
        const out = await readNotebook(r.output);
        const errors = out.cells.flatMap((c) => c.outputs ?? []).filter((o) =>
          o.output_type === "error"
        );
        assert.equal(
          errors.length,
          0,
          `${name(path)}: error outputs ${JSON.stringify(errors).slice(0, 2000)}`,
        );
        const code = out.cells.filter((c) => c.cell_type === "code");
        assert.ok(
          code.every((c) => typeof c.execution_count === "number"),
          `${name(path)}: every code cell ran`,
        );
        // Cell by cell: the lines each cell must show, nothing lost or misplaced, no noise.
        assert.deepEqual(checkExecutedNotebook(out), [], `${name(path)} (test scale)`);
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  });
}
