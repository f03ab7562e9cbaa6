/**
 * `deno run … bench/profile.ts`: where the time of a training step goes, kernel by kernel.
 *
 * Runs the bench workloads (see `bench.ts`) on a preset under `tf.profile` and prints, per
 * workload, each kernel's count and summed time per step, sorted by time, plus the time spent
 * outside kernels (JavaScript: autodiff tape, dispatch, host loops). The wasm kernels are
 * synchronous, so a kernel's time is its wall time. It profiles one engine (`RECALIGN_ENGINES=1`
 * unless set): the worker engine's kernels would not be seen.
 *
 * Flags: --preset shipped|bench (default shipped), --workloads, --steps (profiled steps, 3),
 * --warmup (2), --top (rows shown, 25), --shapes (one row per kernel and input shapes), --json
 * (one JSON line per workload instead of tables).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { initBackend, tf } from "../src/backend.ts";
import type { LlamaModel } from "../src/model.ts";
import { scorePairs, train, type TrainExample } from "../src/train.ts";
import { benchExamples, benchModel, benchTrainConfig, presetOrExit } from "./presets.ts";

if (Deno.env.get("RECALIGN_ENGINES") === undefined) Deno.env.set("RECALIGN_ENGINES", "1");

const flags = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string", default: "shipped" },
    workloads: { type: "string", default: "fwd_logp,sft_step,sdpo_step" },
    steps: { type: "string", default: "3" },
    warmup: { type: "string", default: "2" },
    top: { type: "string", default: "25" },
    json: { type: "boolean", default: false },
    shapes: { type: "boolean", default: false },
  },
  strict: true,
}).values;

const cfg = presetOrExit("profile", flags.preset!);
const steps = Number(flags.steps), warmup = Number(flags.warmup), top = Number(flags.top);
await initBackend("wasm");

const ex: TrainExample[] = benchExamples(cfg);

async function run(workload: string, model: LlamaModel, n: number): Promise<void> {
  if (workload === "fwd_logp") {
    const pairs = ex.map((e) => ({ prompt: e.prompt, response: e.chosen }));
    for (let i = 0; i < n; i++) scorePairs(model, pairs, { microBatchSize: cfg.micro });
    return;
  }
  await train(model, ex, benchTrainConfig(cfg, workload, n), { progress: false });
}

for (const workload of flags.workloads!.split(",")) {
  const model = benchModel(cfg);
  await run(workload, model, warmup);
  const t0 = performance.now();
  await run(workload, model, steps);
  const plain = (performance.now() - t0) / steps;
  const t1 = performance.now();
  const info = await tf.profile(() => run(workload, model, steps));
  const profiled = (performance.now() - t1) / steps;
  model.dispose();
  const byName = new Map<string, { count: number; ms: number }>();
  let kernelMs = 0;
  let scopes = 0;
  for (const k of info.kernels) {
    const ms = Number(k.kernelTimeMs) || 0;
    // A custom-gradient op is recorded as "unnamed scope" around the kernels it runs, which
    // are recorded too: its time is already counted, only its count is kept.
    if (k.name === "unnamed scope") {
      scopes++;
      continue;
    }
    const key = flags.shapes ? `${k.name} ${k.inputShapes.map((s) => `[${s}]`).join(" ")}` : k.name;
    const e = byName.get(key) ?? { count: 0, ms: 0 };
    e.count++;
    e.ms += ms;
    byName.set(key, e);
    kernelMs += ms;
  }
  const rows = [...byName.entries()].map(([name, e]) => ({
    name,
    count: e.count / steps,
    ms: e.ms / steps,
  })).sort((a, b) => b.ms - a.ms);
  const perStep = {
    workload,
    preset: flags.preset,
    step_ms_plain: plain,
    step_ms_profiled: profiled,
    kernel_ms: kernelMs / steps,
    kernels: (info.kernels.length - scopes) / steps,
    custom_ops: scopes / steps,
    outside_kernels_ms: profiled - kernelMs / steps,
    rows,
  };
  if (flags.json) {
    console.log(JSON.stringify(perStep));
    continue;
  }
  console.log(
    `\n## ${workload} (${flags.preset}): ${plain.toFixed(1)} ms/step unprofiled, ` +
      `${profiled.toFixed(1)} ms profiled; ${perStep.kernels.toFixed(0)} kernels ` +
      `(${perStep.custom_ops.toFixed(0)} custom-gradient ops), ` +
      `${perStep.kernel_ms.toFixed(1)} ms in kernels, ${
        perStep.outside_kernels_ms.toFixed(1)
      } ms outside`,
  );
  console.log("| kernel | calls/step | ms/step | share of kernel time |");
  console.log("|---|---:|---:|---:|");
  for (const r of rows.slice(0, top)) {
    console.log(
      `| ${r.name} | ${r.count.toFixed(0)} | ${r.ms.toFixed(2)} | ${
        (100 * r.ms / perStep.kernel_ms).toFixed(1)
      }% |`,
    );
  }
}
