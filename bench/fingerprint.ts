/**
 * `deno run -A bench/fingerprint.ts [--preset shipped|bench] [--steps 4]`: a fingerprint of what
 * a training run computes, for checking that a speed change moves no number.
 *
 * Trains the bench model (`presets.ts`) for a few SFT steps and, from a fresh model, a few S-DPO
 * steps (lr 1e-2, so the adapters move from the first step), then prints per stage a SHA-256 of
 * the trainable weights' bytes, of the chosen responses' log-probs under the trained model, and
 * of the logged losses and grad norms. Run it at two commits: the lines are equal exactly when
 * the two trees compute the same floats.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { initBackend } from "../src/backend.ts";
import { scorePairs, train } from "../src/train.ts";
import { benchExamples, benchModel, benchTrainConfig, presetOrExit } from "./presets.ts";

const flags = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string", default: "shipped" },
    steps: { type: "string", default: "4" },
  },
  strict: true,
}).values;
const cfg = presetOrExit("fingerprint", flags.preset!);
await initBackend("wasm", { quiet: true });
const ex = benchExamples(cfg);

async function sha(bytes: ArrayBuffer): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("").slice(0, 16);
}

for (const workload of ["sft_step", "sdpo_step"]) {
  const model = benchModel(cfg);
  // S-DPO in micro-batches of 4 prompts, so the gradient sums across micro-batches are covered.
  const config = {
    ...benchTrainConfig(cfg, workload, Number(flags.steps)),
    lr: 1e-2,
    ...(workload === "sdpo_step" ? { microBatchSize: 4 } : {}),
  };
  const { history } = await train(model, ex, config, { progress: false });
  const weights = model.trainableVariables().flatMap((v) => Array.from(v.dataSync()));
  const logps = scorePairs(model, ex.map((e) => ({ prompt: e.prompt, response: e.chosen })));
  const logged = history.flatMap((row) => [row.loss, row.grad_norm ?? NaN]);
  console.log(
    `${workload}: weights ${await sha(Float32Array.from(weights).buffer)}` +
      ` logps ${await sha(logps.slice().buffer)}` +
      ` log ${await sha(Float64Array.from(logged).buffer)}`,
  );
  model.dispose();
}
