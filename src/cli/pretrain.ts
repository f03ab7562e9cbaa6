/**
 * `deno task pretrain`: pretrain the base LM on the synthetic world's selection and copy exercises
 * (src/experiments/base_lm.ts) and save it in `models/base-lm/` (Hugging Face layout plus
 * `recipe.json`). Resumable: run the same command again after an interruption.
 *
 * ```sh
 * deno task pretrain [--out models/base-lm] [--steps N] [--backend auto|wasm|cpu|tensorflow]
 * ```
 *
 * `--steps` overrides the recipe's step count (for studies); reproduce only uses a base LM
 * whose recipe hash matches the code's recipe, so an overridden one is used only by name.
 *
 * @module
 */
import { initBackend } from "../backend.ts";
import { ConfigError } from "../errors.ts";
import { BASE_LM_DIR, BASE_LM_RECIPE, pretrainBaseLm } from "../experiments/base_lm.ts";
import { type FlagTable, helpText, numberFlag, parseFlags, runMain } from "./_args.ts";

/** The flags of `deno task pretrain`. */
export const PRETRAIN_FLAGS = {
  out: {
    type: "string",
    value: "DIR",
    default: BASE_LM_DIR,
    help: "where to save the base LM (config.json, model.safetensors, the tokenizer, " +
      "recipe.json) and its checkpoints while it trains",
  },
  steps: {
    type: "string",
    value: "N",
    default: String(BASE_LM_RECIPE.steps),
    help: "pretraining steps; another count than the recipe's makes a base LM that " +
      "`deno task reproduce` uses only when named with --base-lm",
  },
  backend: {
    type: "string",
    value: "auto|wasm|cpu|tensorflow",
    defaultText: "$RECALIGN_BACKEND, else auto",
    help: "TensorFlow.js backend",
  },
} as const satisfies FlagTable;

const HELP = helpText(PRETRAIN_FLAGS, {
  usage: "deno task pretrain [flags]",
  about: "Pretrain the small base LM (a Llama-style LM, dim 64, 2 layers) on the synthetic " +
    "world's selection and copy exercises, the model every stage 0 of `deno task reproduce` " +
    "starts from. Resumable: run the same command again after an interruption.",
});

/** Run the CLI; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const { values, help } = parseFlags("pretrain", PRETRAIN_FLAGS, args);
  if (help) {
    console.log(HELP);
    return 0;
  }
  const steps = numberFlag("pretrain", "steps", values.steps, { integer: true, min: 1 })!;
  const backend = await initBackend(values.backend, { quiet: true });
  console.error(`[pretrain] backend ${backend.backend}, ${steps} steps → ${values.out}/`);
  const info = await pretrainBaseLm(values.out!, { ...BASE_LM_RECIPE, steps });
  console.error(
    `[pretrain] done in ${info.seconds} s: loss ${info.final_loss.toFixed(3)}, ` +
      `validity probe ${info.probe_valid_ratio}`,
  );
  return 0;
}

if (import.meta.main) await runMain("pretrain", main, [ConfigError]);
