/**
 * Resume exactness of train() in one process: a preference run stopped after step s (as if
 * killed: its checkpoints stay, nothing else is written) and resumed from its newest checkpoint
 * must end with the weights and logged rows of an uninterrupted run, bit for bit, for each way
 * the reference log-probs are obtained (live / precomputed) and each batch layout (packed
 * prompts or one row per response). The prompts and responses have different lengths, so
 * scoring an example together with other examples changes its padding and the last bits of
 * its log-probs: a precomputed reference scored again after a resume (in other company than
 * the first time) made the weights drift until checkpoints kept the reference cache. Stops
 * that do not fall on a log row check that the logging window open at the checkpoint is
 * carried over.
 */
import assert from "node:assert/strict";
import { initBackend } from "../../src/backend.ts";
import { LlamaModel, PRESETS } from "../../src/model.ts";
import { DEFAULT_LORA_CONFIG } from "../../src/lora.ts";
import { type MetricsRow, train, type TrainExample } from "../../src/train.ts";
import { recordFaults } from "./report.ts";
import { WALL_CLOCK_METRICS } from "./train_driver.ts";

await initBackend("wasm", { quiet: true });

const STEPS = 8, LOG_EVERY = 3;
/** Where runs stop (train()'s stopAfterStep: that step's checkpoint is not written). */
const STOPS = [3, 5, 8];
const SUITE = "training resumed in process (tests/fault/resume_exact_test.ts)";

/** 24 prompts of 3–9 tokens; 7 rejected responses of 2–3 tokens each. */
function examples(): TrainExample[] {
  const out: TrainExample[] = [];
  for (let a = 4; a < 28; a++) {
    const answer = 20 + (a % 8);
    const wrong = [20, 21, 22, 23, 24, 25, 26, 27].filter((x) => x !== answer);
    const filler = Array.from({ length: a % 7 }, (_, i) => 7 + ((a + i) % 10));
    out.push({
      prompt: [1, 3, ...filler, a],
      chosen: [answer, 2],
      rejected: wrong.map((w) => (w % 3 ? [w, w - 1, 2] : [w, 2])),
    });
  }
  return out;
}

interface Outcome {
  weights: Float32Array[];
  history: MetricsRow[];
  resumedFrom: number;
}

async function run(
  dir: string,
  reference: "live" | "precomputed",
  packPrompts: boolean,
  stopAfterStep?: number,
): Promise<Outcome> {
  const model = LlamaModel.random({ ...PRESETS["llama-nano"], vocab_size: 48 }, 100);
  model.addLora({ ...DEFAULT_LORA_CONFIG, r: 4, lora_alpha: 8, lora_dropout: 0.1, seed: 200 });
  try {
    const r = await train(model, examples(), {
      stage: "sdpo",
      steps: STEPS,
      batchSize: 6,
      microBatchSize: 16,
      numNegatives: 3,
      beta: 0.1,
      lr: 5e-3,
      warmupSteps: 2,
      logEvery: LOG_EVERY,
      checkpointEvery: 1,
      seed: 3,
      reference,
      packPrompts,
    }, { outDir: dir, resume: true, progress: false, stopAfterStep });
    return {
      weights: model.trainableVariables().map((v) => (v.dataSync() as Float32Array).slice()),
      history: r.history.map((row) => {
        const o = { ...row };
        for (const k of WALL_CLOCK_METRICS) delete o[k];
        return o;
      }),
      resumedFrom: r.resumedFrom,
    };
  } finally {
    model.dispose();
  }
}

/** Number of float32 values that differ (as bits) between two runs' weights. */
function bitDiffs(a: Float32Array[], b: Float32Array[]): number {
  let n = 0;
  a.forEach((x, i) => {
    const u = new Uint32Array(x.buffer), w = new Uint32Array(b[i].buffer);
    for (let j = 0; j < u.length; j++) if (u[j] !== w[j]) n++;
  });
  return n;
}

Deno.test("train() stopped after step s and resumed equals an uninterrupted run, bit for bit (live / precomputed reference × packed / unpacked)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "recalign-resume-exact-" });
  const problems: string[] = [];
  const details: string[] = [];
  let injected = 0;
  try {
    for (const reference of ["live", "precomputed"] as const) {
      for (const pack of [true, false]) {
        const what = `${reference} reference, ${pack ? "packed" : "unpacked"}`;
        const ref = await run(`${tmp}/${reference}-${pack}-ref`, reference, pack);
        assert.equal(ref.history.length, Math.ceil(STEPS / LOG_EVERY));
        for (const stop of STOPS) {
          const dir = `${tmp}/${reference}-${pack}-${stop}`;
          await run(dir, reference, pack, stop);
          const res = await run(dir, reference, pack);
          injected++;
          assert.equal(res.resumedFrom, stop - 1, `${what}: resumed from ${res.resumedFrom}`);
          const nw = bitDiffs(ref.weights, res.weights);
          const sameRows = JSON.stringify(ref.history) === JSON.stringify(res.history);
          details.push(
            `${what}, stopped after step ${stop}, resumed from ${
              stop - 1
            }: ${nw} weight values differ; logged rows ${sameRows ? "equal" : "DIFFER"}`,
          );
          if (nw > 0) problems.push(`${what}, stop ${stop}: ${nw} weight values differ`);
          if (!sameRows) problems.push(`${what}, stop ${stop}: logged rows differ`);
        }
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  await recordFaults([{
    suite: SUITE,
    fault: `S-DPO run (dropout on, prompts and responses of different lengths) stopped, ` +
      `resumed from the checkpoint of step ${STOPS.map((s) => s - 1).join(", ")} of ${STEPS} ` +
      `(log rows every ${LOG_EVERY}); live and precomputed reference, packed and unpacked batches`,
    injected,
    outcome: `${injected - problems.length} of ${injected} resumed runs ended with the ` +
      `uninterrupted run's weights and logged rows, bit for bit`,
    lost: problems.join("; ") || "nothing",
    details,
  }]);
  assert.deepEqual(problems, [], details.join("\n"));
});
