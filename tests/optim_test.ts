import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../src/backend.ts";
import { CheckpointError, ConfigError, InputError } from "../src/errors.ts";
import {
  AdamW,
  clipGradsByGlobalNorm,
  cosineSchedule,
  globalNorm,
  GradAccumulator,
} from "../src/optim.ts";

await initBackend("wasm", { quiet: true });

/** PyTorch's AdamW (torch/optim/adamw.py, single-tensor path), in float64 plain JS. */
function referenceAdamW(
  p0: number[],
  grads: number[][],
  lrs: number[],
  c: { beta1: number; beta2: number; eps: number; weightDecay: number },
): number[] {
  const p = [...p0], m = p0.map(() => 0), v = p0.map(() => 0);
  grads.forEach((g, s) => {
    const t = s + 1, lr = lrs[s];
    const bc1 = 1 - Math.pow(c.beta1, t), bc2 = 1 - Math.pow(c.beta2, t);
    for (let i = 0; i < p.length; i++) {
      p[i] = p[i] * (1 - lr * c.weightDecay); // param.mul_(1 - lr * weight_decay)
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * g[i]; // exp_avg.lerp_(grad, 1 - beta1)
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * g[i] * g[i]; // exp_avg_sq.mul_(beta2).addcmul_(…)
      const denom = Math.sqrt(v[i]) / Math.sqrt(bc2) + c.eps;
      p[i] = p[i] - (lr / bc1) * (m[i] / denom);
    }
  });
  return p;
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol, `${what}[${i}]: got ${got[i]}, want ${want[i]}`);
  }
}

const P0 = [0.5, -1.25, 2, 0];
const GRADS = [[0.1, -0.3, 0.25, 1], [-0.2, 0.05, 0.5, -0.75], [0.4, 0.4, -0.1, 0.3], [
  0,
  -1,
  0.2,
  0.6,
]];
const LRS = [0.1, 0.05, 0.02, 0.01];

Deno.test("AdamW.step() matches PyTorch's AdamW formula over two steps", () => {
  const cfg = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
  for (const weightDecay of [0.1, 0]) {
    const w = tf.variable(tf.tensor1d(P0), true, `adamw_ref_${weightDecay}`);
    const opt = new AdamW([w], { ...cfg, weightDecay });
    for (let s = 0; s < 2; s++) {
      const g = { [w.name]: tf.tensor1d(GRADS[s]) };
      opt.step(g, LRS[s]);
      tf.dispose(g);
      const want = referenceAdamW(P0, GRADS.slice(0, s + 1), LRS, { ...cfg, weightDecay });
      close(w.dataSync(), want, 1e-6, `wd=${weightDecay} step ${s + 1}`);
    }
    assert.equal(opt.stepCount, 2);
    opt.dispose();
    w.dispose();
  }
});

Deno.test("AdamW.step() accepts index keys and rejects missing, extra or mis-shaped grads", () => {
  const a = tf.variable(tf.tensor1d([1, 2]), true, "adamw_keys_a");
  const b = tf.variable(tf.tensor2d([[3]]), true, "adamw_keys_b");
  const opt = new AdamW([a, b]);
  const ga = tf.tensor1d([1, 1]), gb = tf.tensor2d([[1]]), bad = tf.tensor1d([1]);
  opt.step({ 0: ga, 1: gb }, 0.1);
  assert.equal(opt.stepCount, 1);
  const before = [...a.dataSync()];
  assert.throws(
    () => opt.step({ [a.name]: ga }, 0.1),
    (e) => e instanceof InputError && e.message.includes(b.name),
  );
  assert.throws(() => opt.step({ [a.name]: ga, [b.name]: bad }, 0.1), InputError);
  assert.throws(() => opt.step({ [a.name]: ga, [b.name]: gb, other: ga }, 0.1), /"other"/);
  assert.throws(() => opt.step({ [a.name]: ga, [b.name]: gb }, NaN), InputError);
  assert.deepEqual([...a.dataSync()], before);
  assert.equal(opt.stepCount, 1);
  assert.throws(() => new AdamW([a], { beta1: 1 }), ConfigError);
  assert.throws(() => new AdamW([a, a]), InputError);
  tf.dispose([ga, gb, bad, a, b]);
  opt.dispose();
});

Deno.test("AdamW getState() → setState() → continue equals an uninterrupted run", () => {
  const cfg = { weightDecay: 0.05 };
  const run = (w: tf.Variable, opt: AdamW, from: number, to: number) => {
    for (let s = from; s < to; s++) {
      const g = { [w.name]: tf.tensor1d(GRADS[s]) };
      opt.step(g, LRS[s]);
      tf.dispose(g);
    }
  };
  const wA = tf.variable(tf.tensor1d(P0), true, "adamw_resume_a");
  const optA = new AdamW([wA], cfg);
  run(wA, optA, 0, 4);

  let wB = tf.variable(tf.tensor1d(P0), true, "adamw_resume_b");
  let optB = new AdamW([wB], cfg);
  run(wB, optB, 0, 2);
  const state = optB.getState();
  const saved = new Float32Array(wB.dataSync());
  assert.equal(state.step, 2);
  assert.deepEqual(Object.keys(state.m), ["adamw_resume_b"]);
  optB.dispose();
  wB.dispose();
  // A fresh process would rebuild the variable under the same name and load the state.
  wB = tf.variable(tf.tensor1d(saved), true, "adamw_resume_b");
  optB = new AdamW([wB], cfg);
  optB.setState(state);
  assert.equal(optB.stepCount, 2);
  assert.deepEqual(optB.getState(), state);
  run(wB, optB, 2, 4);
  assert.deepEqual(wB.dataSync(), wA.dataSync());
  assert.deepEqual(optB.getState().m.adamw_resume_b, optA.getState().m.adamw_resume_a);
  assert.deepEqual(optB.getState().v.adamw_resume_b, optA.getState().v.adamw_resume_a);
  close(
    wA.dataSync(),
    referenceAdamW(P0, GRADS, LRS, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05 }),
    1e-6,
    "4 steps",
  );

  const short = { step: 1, m: { adamw_resume_b: new Float32Array(3) }, v: state.v };
  assert.throws(
    () => optB.setState(short),
    (e) => e instanceof CheckpointError && e.message.includes("adamw_resume_b"),
  );
  tf.dispose([wA, wB]);
  optA.dispose();
  optB.dispose();
});

Deno.test("AdamW keeps tf.memory().numTensors flat across 5 steps", () => {
  const w = tf.variable(tf.tensor2d([[0.5, -0.5], [1, 2]]), true, "adamw_memory_w");
  const x = tf.tensor2d([[1, 2], [3, 4]]), y = tf.tensor2d([[1, 0], [0, 1]]);
  const opt = new AdamW([w]);
  const acc = new GradAccumulator();
  const baseline = tf.memory().numTensors;
  const losses: number[] = [];
  for (let s = 0; s < 5; s++) {
    for (let micro = 0; micro < 2; micro++) {
      const { value, grads } = tf.variableGrads(
        () => tf.tidy(() => tf.mean(tf.square(tf.sub(tf.matMul(x, w), y))) as tf.Scalar),
        [w],
      );
      losses.push(value.dataSync()[0]);
      acc.add(grads);
      tf.dispose([value, grads]);
    }
    const mean = acc.mean();
    acc.reset();
    const { grads } = clipGradsByGlobalNorm(mean, 1);
    opt.step(grads, 0.05);
    tf.dispose([mean, grads]);
    assert.equal(tf.memory().numTensors, baseline, `after step ${s + 1}`);
  }
  assert.ok(losses[losses.length - 1] < losses[0], `loss went ${losses[0]} → ${losses.at(-1)}`);
  opt.dispose();
  tf.dispose([w, x, y]);
});

Deno.test("cosineSchedule() follows linear warmup then cosine to the floor", () => {
  const peak = 1e-3, r = 0.1;
  const lr = cosineSchedule({ peakLr: peak, warmupSteps: 10, totalSteps: 110, minLrRatio: r });
  const eq = (a: number, b: number, what: string) =>
    assert.ok(Math.abs(a - b) < 1e-15, `${what}: ${a} vs ${b}`);
  eq(lr(0), 0, "warmup start");
  eq(lr(5), 0.5e-3, "warmup middle");
  eq(lr(10), 1e-3, "warmup end = peak");
  eq(lr(35), peak * (r + (1 - r) * 0.5 * (1 + Math.SQRT1_2)), "quarter of the decay"); // cos(π/4)
  eq(lr(60), peak * (r + (1 - r) * 0.5), "middle of the decay");
  eq(lr(110), peak * r, "end");
  eq(lr(1000), peak * r, "past the end");
  const noWarm = cosineSchedule({ peakLr: 2, warmupSteps: 0, totalSteps: 4 });
  assert.deepEqual([0, 1, 2, 3, 4].map(noWarm).map((x) => +x.toFixed(12)), [
    2,
    1.707106781187,
    1,
    0.292893218813,
    0,
  ]);
  assert.throws(() => cosineSchedule({ peakLr: 1, warmupSteps: 5, totalSteps: 3 }), ConfigError);
  assert.throws(
    () => cosineSchedule({ peakLr: 1, warmupSteps: 0, totalSteps: 3, minLrRatio: 2 }),
    ConfigError,
  );
  assert.throws(() => lr(-1), InputError);
});

Deno.test("clipGradsByGlobalNorm() scales by maxNorm / (norm + 1e-6) only above the limit", () => {
  const baseline = tf.memory().numTensors;
  const g = { a: tf.tensor1d([3, 4]), b: tf.tensor2d([[12]]) }; // ‖·‖ = sqrt(9 + 16 + 144) = 13
  assert.ok(Math.abs(globalNorm(g) - 13) < 1e-6);
  const clipped = clipGradsByGlobalNorm(g, 6.5);
  assert.ok(Math.abs(clipped.norm - 13) < 1e-6);
  const coef = 6.5 / (13 + 1e-6);
  close(clipped.grads.a.dataSync(), [3 * coef, 4 * coef], 1e-6, "a");
  close(clipped.grads.b.dataSync(), [12 * coef], 1e-6, "b");
  assert.deepEqual(clipped.grads.b.shape, [1, 1]);
  const kept = clipGradsByGlobalNorm(g, 20);
  assert.deepEqual([...kept.grads.a.dataSync()], [3, 4]);
  assert.notEqual(kept.grads.a, g.a);
  assert.ok(!g.a.isDisposed);
  assert.throws(() => clipGradsByGlobalNorm(g, 0), InputError);
  tf.dispose([g, clipped.grads, kept.grads]);
  assert.equal(tf.memory().numTensors, baseline);
});

Deno.test("GradAccumulator.mean() averages micro-batches and holds one tensor per key", () => {
  const baseline = tf.memory().numTensors;
  const acc = new GradAccumulator();
  const batches = [
    { w: [1, 2], b: [3] },
    { w: [3, 4], b: [5] },
    { w: [5, 9], b: [1] },
  ];
  for (const mb of batches) {
    const g = { w: tf.tensor1d(mb.w), b: tf.tensor1d(mb.b) };
    acc.add(g);
    tf.dispose(g);
    assert.equal(tf.memory().numTensors, baseline + 2);
  }
  assert.equal(acc.count, 3);
  const mean = acc.mean();
  assert.deepEqual([...mean.w.dataSync()], [3, 5]);
  assert.deepEqual([...mean.b.dataSync()], [3]);
  const wrong = { w: tf.tensor1d([1, 2]) };
  assert.throws(() => acc.add(wrong), InputError);
  const misShaped = { w: tf.tensor1d([1, 2, 3]), b: tf.tensor1d([1]) };
  assert.throws(() => acc.add(misShaped), InputError);
  tf.dispose([mean, wrong, misShaped]);
  acc.reset();
  assert.equal(acc.count, 0);
  assert.throws(() => acc.mean(), InputError);
  assert.equal(tf.memory().numTensors, baseline);
});
