/**
 * `deno task pretrain`: pretrain the base LM on the synthetic world's selection and copy exercises
 * (src/experiments/base_lm.ts) and save it in `models/base-lm/` (Hugging Face layout plus
 * `recipe.json`). Resumable: run the same command again after an interruption.
 *
 * ```sh
 * deno task pretrain [--out models/base-lm] [--steps N]
 * ```
 *
 * `--steps` overrides the recipe's step count (for studies); reproduce only uses a base LM
 * whose recipe hash matches the code's recipe, so an overridden one is used only by name.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { initBackend } from "../backend.ts";
import { BASE_LM_DIR, BASE_LM_RECIPE, pretrainBaseLm } from "../experiments/base_lm.ts";

const USAGE = "usage: pretrain [--out models/base-lm] [--steps N] [--backend wasm|cpu|tensorflow]";

function fail(msg: string): never {
  console.error(`pretrain: ${msg}`);
  Deno.exit(2);
}

if (import.meta.main) {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        out: { type: "string", default: BASE_LM_DIR },
        steps: { type: "string" },
        backend: { type: "string" },
        help: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    fail(
      `${(e as Error).message.split("\n")[0]}; allowed flags: --out, --steps, --backend, --help`,
    );
  }
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const steps = values.steps === undefined ? BASE_LM_RECIPE.steps : Number(values.steps);
  if (!Number.isInteger(steps) || steps < 1) {
    fail(`--steps must be a positive integer, got "${values.steps}"`);
  }
  const backend = await initBackend(values.backend, { quiet: true });
  console.error(`[pretrain] backend ${backend.backend}, ${steps} steps → ${values.out}/`);
  const info = await pretrainBaseLm(values.out!, { ...BASE_LM_RECIPE, steps });
  console.error(
    `[pretrain] done in ${info.seconds} s: loss ${info.final_loss.toFixed(3)}, ` +
      `validity probe ${info.probe_valid_ratio}`,
  );
}
