import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../src/backend.ts";
import { CheckpointError, ConfigError, InputError } from "../src/errors.ts";
import {
  AdamW,
  clipCoefficient,
  clipGradsByGlobalNorm,
  cosineSchedule,
  globalNorm,
  GradAccumulator,
  GradSum,
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

/**
 * The per-variable AdamW update this module used before the update was fused (~14 kernels per
 * variable): the reference the fused update must reproduce bit for bit.
 */
class PerVariableAdamW {
  t = 0;
  m: tf.Variable[];
  v: tf.Variable[];
  constructor(
    readonly vars: tf.Variable[],
    readonly c: { beta1: number; beta2: number; eps: number; weightDecay: number },
  ) {
    this.m = vars.map((p) => tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
    this.v = vars.map((p) => tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
  }
  step(grads: tf.Tensor[], lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.c;
    const t = ++this.t;
    const stepSize = lr / (1 - beta1 ** t), bc2Sqrt = Math.sqrt(1 - beta2 ** t);
    tf.tidy(() => {
      this.vars.forEach((p, i) => {
        const g = grads[i];
        const m = tf.add(tf.mul(this.m[i], beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(this.v[i], beta2), tf.mul(tf.square(g), 1 - beta2));
        const decayed = weightDecay !== 0 ? tf.mul(p, 1 - lr * weightDecay) : p;
        const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), eps);
        p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), stepSize)));
        this.m[i].assign(m);
        this.v[i].assign(v);
      });
    });
  }
  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

/** Deterministic values of mixed magnitudes (1e-4 … 10), no two runs alike. */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (u - 0.5) * 10 ** (4 * (s / 2 ** 32) - 3);
  });
}

// LoRA-like shapes of the shipped model, a vector, and one tensor of 2^16 values (updated alone).
const MIXED_SHAPES = [[64, 8], [8, 64], [192, 8], [8, 192], [5], [256, 256], [1, 3]];

Deno.test("fused AdamW and clipping equal the per-variable update bit for bit", () => {
  const cfg = { beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 0.05 };
  const fused = MIXED_SHAPES.map((s, i) =>
    tf.variable(tf.tensor(values(s.reduce((a, b) => a * b), 100 + i), s), true, `fused_${i}`)
  );
  const ref = fused.map((p, i) => tf.variable(p.clone(), true, `pervar_${i}`));
  const beforeOptimizer = tf.memory().numTensors;
  const opt = new AdamW(fused, cfg);
  const refOpt = new PerVariableAdamW(ref, cfg);
  const baseline = tf.memory().numTensors;
  for (let s = 0; s < 4; s++) {
    const raw = MIXED_SHAPES.map((sh, i) =>
      tf.tensor(values(sh.reduce((a, b) => a * b), 1000 * s + i), sh)
    );
    // The per-variable global norm: one Sum per tensor, then AddN (float32 throughout).
    const refNormSq = tf.tidy(() => tf.addN(raw.map((g) => tf.sum(tf.square(g)))));
    const refNorm = Math.sqrt(refNormSq.dataSync()[0]);
    refNormSq.dispose();
    const named = Object.fromEntries(raw.map((g, i) => [fused[i].name, g]));
    const { grads, norm } = clipGradsByGlobalNorm(named, 1);
    assert.equal(norm, refNorm, `step ${s + 1}: global norm`);
    assert.ok(norm > 1, "the clipping is exercised");
    const coef = Math.min(1, 1 / (refNorm + 1e-6));
    const refGrads = raw.map((g) => tf.mul(g, coef));
    opt.step(grads, 0.01 / (s + 1));
    refOpt.step(refGrads, 0.01 / (s + 1));
    tf.dispose([raw, grads, refGrads]);
    assert.equal(tf.memory().numTensors, baseline, `tensors after step ${s + 1}`);
    fused.forEach((p, i) => {
      assert.deepEqual(p.shape, ref[i].shape);
      assert.deepEqual(p.dataSync(), ref[i].dataSync(), `step ${s + 1}: ${MIXED_SHAPES[i]}`);
    });
  }
  const state = opt.getState();
  assert.deepEqual(Object.keys(state.m), fused.map((p) => p.name), "moments in variable order");
  fused.forEach((p, i) => {
    assert.deepEqual(state.m[p.name], refOpt.m[i].dataSync(), `m of ${p.name}`);
    assert.deepEqual(state.v[p.name], refOpt.v[i].dataSync(), `v of ${p.name}`);
  });
  opt.dispose();
  refOpt.dispose();
  assert.equal(tf.memory().numTensors, beforeOptimizer, "tensors after dispose()");
  tf.dispose([fused, ref]);
});

Deno.test("GradSum and the clip factor in the update equal per-variable sums, clipping and update bit for bit", () => {
  const cfg = { beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 0.05 };
  // The mixed shapes, plus one fused tensor above globalNorm's host limit (4,900 values).
  const shapes = [...MIXED_SHAPES, [70, 70]];
  const size = (sh: number[]) => sh.reduce((a, b) => a * b);
  const ours = shapes.map((sh, i) =>
    tf.variable(tf.tensor(values(size(sh), 200 + i), sh), true, `gradsum_${i}`)
  );
  const ref = ours.map((p, i) => tf.variable(p.clone(), true, `gradsum_ref_${i}`));
  const opt = new AdamW(ours, cfg);
  const refOpt = new PerVariableAdamW(ref, cfg);
  const sum = new GradSum(opt.variables);
  const baseline = tf.memory().numTensors;
  for (let s = 0; s < 4; s++) {
    let refSums: tf.Tensor[] | undefined;
    for (let micro = 0; micro < 3; micro++) {
      const raw = shapes.map((sh, i) =>
        tf.tensor(values(size(sh), 5000 * s + 100 * micro + i), sh)
      );
      sum.add(Object.fromEntries(raw.map((g, i) => [ours[i].name, g])));
      // The reference: one tf.add per variable and micro-batch.
      const prev = refSums;
      refSums = prev ? raw.map((g, i) => tf.add(prev[i], g)) : raw.map((g) => tf.clone(g));
      tf.dispose([raw, prev ?? []]);
    }
    assert.equal(sum.count, 3);
    const named = Object.fromEntries(refSums!.map((g, i) => [ours[i].name, g]));
    assert.equal(sum.norm(), globalNorm(named), `step ${s + 1}: global norm`);
    const perVar = refSums!.map((g) => tf.tidy(() => tf.sum(tf.square(g)).dataSync()[0]));
    assert.deepEqual(sum.squareSums(), perVar, `step ${s + 1}: sums of squares`);
    // Clipped on steps 1-3, not on step 4 (a limit above the norm).
    const maxNorm = s < 3 ? 1 : 1e9;
    const { grads, norm } = clipGradsByGlobalNorm(named, maxNorm);
    const coef = clipCoefficient(norm, maxNorm);
    assert.equal(coef < 1, s < 3);
    opt.step(sum, 0.01 / (s + 1), coef);
    refOpt.step(shapes.map((_, i) => grads[ours[i].name]), 0.01 / (s + 1));
    tf.dispose([refSums!, grads]);
    sum.reset();
    assert.equal(tf.memory().numTensors, baseline, `tensors after step ${s + 1}`);
    ours.forEach((p, i) => {
      assert.deepEqual(p.dataSync(), ref[i].dataSync(), `step ${s + 1}: ${shapes[i]}`);
    });
  }
  // A non-finite value is found in the fused buffer and in a variable updated alone.
  for (const bad of [2, 5]) {
    const raw = shapes.map((sh, i) => {
      const x = values(size(sh), 7 + i);
      if (i === bad) x[3] = i === 2 ? NaN : Infinity;
      return tf.tensor(x, sh);
    });
    sum.add(Object.fromEntries(raw.map((g, i) => [ours[i].name, g])));
    assert.equal(sum.firstNonFinite(), bad);
    assert.ok(!Number.isFinite(sum.norm()));
    tf.dispose(raw);
    sum.reset();
  }
  assert.throws(() => opt.step(sum, 0.01), /nothing was added/);
  const misShaped = tf.zeros([1]);
  assert.throws(() => sum.add({ [ours[0].name]: misShaped }), InputError);
  misShaped.dispose();
  const other = new AdamW([ref[0]]);
  assert.throws(() => other.step(sum, 0.01), InputError);
  other.dispose();
  sum.dispose();
  opt.dispose();
  refOpt.dispose();
  tf.dispose([ours, ref]);
});

Deno.test("fused AdamW over several variables matches AdamW by hand in float64", () => {
  // Three variables fused into one buffer; each must follow PyTorch's formula on its own slice.
  const shapes = [[2, 2], [3], [1]];
  const p0 = [[0.5, -1.25, 2, 0], [1, -0.5, 0.25], [-3]];
  const grads = [0, 1, 2].map((s) => p0.map((p, i) => p.map((_, j) => GRADS[s][(i + j) % 4])));
  const cfg = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
  const vars = shapes.map((s, i) => tf.variable(tf.tensor(p0[i], s), true, `byhand_${i}`));
  const opt = new AdamW(vars, cfg);
  for (let s = 0; s < 3; s++) {
    const g = Object.fromEntries(vars.map((v, i) => [v.name, tf.tensor(grads[s][i], shapes[i])]));
    opt.step(g, LRS[s]);
    tf.dispose(g);
  }
  vars.forEach((v, i) => {
    const want = referenceAdamW(p0[i], grads.map((g) => g[i]), LRS, cfg);
    close(v.dataSync(), want, 1e-6, `variable ${i}`);
  });
  opt.dispose();
  tf.dispose(vars);
});

Deno.test("a per-variable optimizer state loads into the fused AdamW and continues exactly", () => {
  // The checkpoint layout is per variable (m/<name>, v/<name>): a state written by the
  // per-variable update must resume the fused one exactly where the per-variable one goes on.
  const cfg = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  const shapes = [[64, 8], [8, 64], [300, 256], [7]];
  const init = shapes.map((s, i) => values(s.reduce((a, b) => a * b), 7 + i));
  const gradsAt = (s: number) =>
    shapes.map((sh, i) => tf.tensor(values(sh.reduce((a, b) => a * b), 50 * s + i), sh));
  const ref = shapes.map((s, i) => tf.variable(tf.tensor(init[i], s), true, `old_layout_${i}`));
  const refOpt = new PerVariableAdamW(ref, cfg);
  for (let s = 0; s < 2; s++) {
    const g = gradsAt(s);
    refOpt.step(g, 1e-3);
    tf.dispose(g);
  }
  const saved = {
    step: refOpt.t,
    m: Object.fromEntries(ref.map((p, i) => [p.name, refOpt.m[i].dataSync() as Float32Array])),
    v: Object.fromEntries(ref.map((p, i) => [p.name, refOpt.v[i].dataSync() as Float32Array])),
  };
  const resumed = ref.map((p) => tf.variable(p.clone(), true, `${p.name}_resumed`));
  const opt = new AdamW(resumed, cfg);
  opt.setState({
    step: saved.step,
    m: Object.fromEntries(resumed.map((p, i) => [p.name, saved.m[ref[i].name]])),
    v: Object.fromEntries(resumed.map((p, i) => [p.name, saved.v[ref[i].name]])),
  });
  assert.equal(opt.stepCount, 2);
  for (let s = 2; s < 4; s++) {
    const g = gradsAt(s);
    refOpt.step(g, 1e-3);
    opt.step(Object.fromEntries(resumed.map((p, i) => [p.name, g[i]])), 1e-3);
    tf.dispose(g);
  }
  resumed.forEach((p, i) => assert.deepEqual(p.dataSync(), ref[i].dataSync(), `variable ${i}`));
  const st = opt.getState();
  resumed.forEach((p, i) => assert.deepEqual(st.v[p.name], refOpt.v[i].dataSync()));
  opt.dispose();
  refOpt.dispose();
  tf.dispose([ref, resumed]);
});
