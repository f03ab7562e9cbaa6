/**
 * Stage 0 starts from the shipped base LM (`models/base-lm/`) unless a caller chose otherwise
 * with setBaseLm — so notebooks and library users start where `deno task reproduce` starts,
 * whatever their working directory.
 */
import assert from "node:assert/strict";

const COMMON = new URL("../../src/experiments/common.ts", import.meta.url).href;
const BACKEND = new URL("../../src/backend.ts", import.meta.url).href;
const RECIPE = new URL("../../models/base-lm/recipe.json", import.meta.url);
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** Run a script in a fresh Deno process (fresh module state) from `cwd`; its stdout as JSON. */
async function fresh(code: string, cwd: string): Promise<Record<string, unknown>> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", CONFIG, "--ext=ts", code],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  assert.ok(r.success, dec.decode(r.stderr));
  return JSON.parse(dec.decode(r.stdout).trim().split("\n").at(-1)!);
}

Deno.test({
  name:
    "without setBaseLm, stage 0 uses the shipped base LM (from any cwd); setBaseLm(undefined) opts out",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const want = JSON.parse(await Deno.readTextFile(RECIPE)).hash as string;
    const tmp = await Deno.makeTempDir();
    try {
      const byDefault = await fresh(
        `import { baseLmHashInUse, useShippedBaseLm } from "${COMMON}";
         import { initBackend } from "${BACKEND}";
         await initBackend(undefined, { quiet: true });
         const before = baseLmHashInUse();
         const loaded = await useShippedBaseLm();
         console.log(JSON.stringify({ before, loaded, after: baseLmHashInUse() }));`,
        tmp,
      );
      assert.deepEqual(byDefault, { before: null, loaded: want, after: want });
      const optedOut = await fresh(
        `import { baseLmHashInUse, setBaseLm, useShippedBaseLm } from "${COMMON}";
         setBaseLm(undefined);
         const loaded = await useShippedBaseLm();
         console.log(JSON.stringify({ loaded, after: baseLmHashInUse() }));`,
        tmp,
      );
      assert.deepEqual(optedOut, { loaded: null, after: null });
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
