/**
 * A user's first lines without `initBackend()` (run by tests/backend_init_test.ts in a fresh
 * process): a sync call fails with one line; an async entry point initialises the backend.
 * Prints one JSON object.
 */
import { backendInfo, LlamaModel, loadPretrained, PRESETS, sftLoss, tf } from "../mod.ts";

const out: Record<string, unknown> = {};
const attempt = (name: string, f: () => unknown) => {
  try {
    f();
    out[name] = "no error";
  } catch (e) {
    out[name] = `${(e as Error).name}: ${(e as Error).message}`;
  }
};
attempt("model", () => LlamaModel.random(PRESETS["llama-nano"], 1));
attempt(
  "loss",
  () => sftLoss(tf.zeros([1, 2, 4]) as tf.Tensor3D, tf.tensor2d([[1, 2]], [1, 2], "int32")),
);
const { model } = await loadPretrained(Deno.args[0]);
out.backend = backendInfo()?.backend ?? null;
const logits = model.logits([[1, 5, 6]]);
out.logitsShape = logits.shape;
logits.dispose();
model.dispose();
console.log(JSON.stringify(out));
