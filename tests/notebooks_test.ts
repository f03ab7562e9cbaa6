/**
 * The notebooks: (1) every notebook's code cells, concatenated into one module, pass
 * `deno check` (the Deno Jupyter kernel does not type-check); (2) when Jupyter and the Deno
 * kernel are installed, every notebook runs top to bottom through the kernel (to a temporary
 * copy) without a cell error, at the `test` scale (`RECALIGN_NOTEBOOK_SCALE=test`). Without
 * Jupyter the execution tests are reported as ignored, with the reason.
 */
import assert from "node:assert/strict";
import {
  executeNotebook,
  jupyterStatus,
  listNotebooks,
  notebookModule,
  NOTEBOOKS_DIR,
  readNotebook,
  REPO_ROOT,
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
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  });
}
