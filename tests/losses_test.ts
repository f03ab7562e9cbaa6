import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../src/backend.ts";
import { InputError } from "../src/errors.ts";
import {
  dmpoLoss,
  dpoLoss,
  IGNORE_INDEX,
  LOSSES,
  type LossOutput,
  sdpoLoss,
  sdpoNegativeWeights,
  sequenceLogProbs,
  sftLoss,
} from "../src/losses.ts";
import { Rng } from "../src/rng.ts";

await initBackend("wasm", { quiet: true });

// ---------------------------------------------------------------------------------------------
// Independent float64 references (plain JS)
// ---------------------------------------------------------------------------------------------

const softplus = (x: number) => x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
const logSumExp = (xs: number[]) => {
  const m = Math.max(...xs);
  return m + Math.log(xs.reduce((s, x) => s + Math.exp(x - m), 0));
};
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

/** Preference inputs as plain arrays: pc [B], pr [B][K], rc [B], rr [B][K]. */
interface Pref {
  pc: number[];
  pr: number[][];
  rc: number[];
  rr: number[][];
}

function refDpo(x: Pref, beta: number): number {
  return mean(x.pc.map((pc, b) => softplus(-beta * ((pc - x.rc[b]) - (x.pr[b][0] - x.rr[b][0])))));
}
function refSdpo(x: Pref, beta: number): number {
  return mean(
    x.pc.map((pc, b) =>
      softplus(logSumExp(x.pr[b].map((pr, k) => beta * ((pr - x.rr[b][k]) - (pc - x.rc[b])))))
    ),
  );
}
function refDmpoPaper(x: Pref, beta: number): number {
  return mean(
    x.pc.map((pc, b) =>
      softplus(-(beta * (pc - x.rc[b]) - mean(x.pr[b].map((pr, k) => beta * (pr - x.rr[b][k])))))
    ),
  );
}
/** The released DMPO loss, pair by pair: softplus(−β(pc − pr_k)) + γ·nll, over all B·K pairs. */
function refDmpoReleased(x: Pref, nll: number[], beta: number, gamma: number): number {
  let total = 0, pairs = 0;
  for (let b = 0; b < x.pc.length; b++) {
    for (let k = 0; k < x.pr[b].length; k++) {
      // TRL sigmoid loss with the chosen reference in both reference slots.
      const chosenRatio = x.pc[b] - x.rc[b], rejectedRatio = x.pr[b][k] - x.rc[b];
      total += softplus(-beta * (chosenRatio - rejectedRatio)) + gamma * nll[b];
      pairs++;
    }
  }
  return total / pairs;
}

/** Brute-force Σ_t log_softmax(logits[b,t])[label] (or mean) in float64. */
function refSeqLogProbs(
  logits: ArrayLike<number>,
  labels: Int32Array,
  [bs, ts, vs]: number[],
  average: boolean,
): number[] {
  const out: number[] = [];
  for (let b = 0; b < bs; b++) {
    let s = 0, n = 0;
    for (let t = 0; t < ts; t++) {
      const label = labels[b * ts + t];
      if (label === -100) continue;
      const row = Array.from({ length: vs }, (_, v) => logits[(b * ts + t) * vs + v]);
      let m = -Infinity;
      for (const z of row) m = Math.max(m, z);
      let z = 0;
      for (const l of row) z += Math.exp(l - m);
      s += row[label] - m - Math.log(z);
      n++;
    }
    out.push(average ? s / n : s);
  }
  return out;
}

/** Central finite differences of a float64 function at x. */
function numGrad(f: (x: number[]) => number, x: number[], eps = 1e-5): number[] {
  return x.map((_, i) => {
    const up = x.slice(), down = x.slice();
    up[i] += eps;
    down[i] -= eps;
    return (f(up) - f(down)) / (2 * eps);
  });
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    assert.ok(
      err <= tol * Math.max(1, Math.abs(want[i])),
      `${what}[${i}]: got ${got[i]}, want ${want[i]}`,
    );
  }
}

function randomPref(rng: Rng, b: number, k: number, scale = 3): Pref {
  const v = () => -5 + scale * rng.normal();
  return {
    pc: Array.from({ length: b }, v),
    pr: Array.from({ length: b }, () => Array.from({ length: k }, v)),
    rc: Array.from({ length: b }, v),
    rr: Array.from({ length: b }, () => Array.from({ length: k }, v)),
  };
}

/** Tensors for a Pref (caller disposes). */
function toTensors(x: Pref) {
  return {
    pc: tf.tensor1d(x.pc),
    pr: tf.tensor2d(x.pr),
    rc: tf.tensor1d(x.rc),
    rr: tf.tensor2d(x.rr),
  };
}

/** Reads and disposes a loss output: loss value and metric values. */
function read(out: LossOutput): { loss: number; metrics: Record<string, number> } {
  const loss = out.loss.dataSync()[0];
  const metrics: Record<string, number> = {};
  for (const [name, m] of Object.entries(out.metrics)) metrics[name] = m.dataSync()[0];
  tf.dispose(out as unknown as tf.TensorContainer);
  return { loss, metrics };
}

function lossOf(
  fn: "dpo" | "sdpo" | "dmpo-paper",
  x: Pref,
  beta: number,
): number {
  const t = toTensors(x);
  try {
    if (fn === "dpo") {
      return read(dpoLoss(
        t.pc,
        tf.squeeze(t.pr, [1]) as tf.Tensor1D,
        t.rc,
        tf.squeeze(t.rr, [1]) as tf.Tensor1D,
        { beta },
      )).loss;
    }
    if (fn === "sdpo") return read(sdpoLoss(t.pc, t.pr, t.rc, t.rr, { beta })).loss;
    return read(dmpoLoss(t.pc, t.pr, t.rc, t.rr, { beta, variant: "paper" })).loss;
  } finally {
    tf.dispose([t.pc, t.pr, t.rc, t.rr]);
  }
}

function throwsInput(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${e}`);
    assert.match(e.message, message);
    return true;
  });
}

// The worked examples of the task brief, computed by hand:
// (β = 1) r_w = −2 − (−3) = 1, r = [−0.5, 0.5, −1].
const EX1: Pref = { pc: [-2], rc: [-3], pr: [[-4, -3, -5]], rr: [[-3.5, -3.5, -4]] };
// (β = 0.1) r_w = 2, r = [2, −1].
const EX2: Pref = { pc: [-10], rc: [-12], pr: [[-9, -15]], rr: [[-11, -14]] };
const first = (x: Pref): Pref => ({
  ...x,
  pr: x.pr.map((r) => [r[0]]),
  rr: x.rr.map((r) => [r[0]]),
});

// ---------------------------------------------------------------------------------------------
// Preference losses: values
// ---------------------------------------------------------------------------------------------

Deno.test("sdpoLoss(), dmpoLoss() paper and dpoLoss() match hand-computed values", () => {
  // EX1: S-DPO = softplus(ln(e^−1.5 + e^−0.5 + e^−2)); DMPO = softplus(−(1 + 1/3));
  // DPO on the first negative = softplus(−1.5).
  assert.ok(Math.abs(lossOf("sdpo", EX1, 1) - 0.675490262) < 1e-5);
  assert.ok(Math.abs(lossOf("dmpo-paper", EX1, 1) - 0.233962525) < 1e-5);
  assert.ok(Math.abs(lossOf("dpo", first(EX1), 1) - 0.201413278) < 1e-5);
  // EX2: S-DPO = softplus(ln(e^0 + e^−0.3)); DMPO = softplus(−(0.2 − 0.05)); DPO = ln 2.
  assert.ok(Math.abs(lossOf("sdpo", EX2, 0.1) - 1.008256497) < 1e-5);
  assert.ok(Math.abs(lossOf("dmpo-paper", EX2, 0.1) - 0.620957048) < 1e-5);
  assert.ok(Math.abs(lossOf("dpo", first(EX2), 0.1) - 0.693147181) < 1e-5);
});

Deno.test("sdpoLoss() and dmpoLoss() paper equal dpoLoss() when K = 1", () => {
  const rng = new Rng(7);
  for (const beta of [0.1, 1, 5]) {
    const x = randomPref(rng, 6, 1);
    const dpo = lossOf("dpo", x, beta);
    assert.ok(Math.abs(lossOf("sdpo", x, beta) - dpo) < 1e-6, `beta ${beta}`);
    assert.ok(Math.abs(lossOf("dmpo-paper", x, beta) - dpo) < 1e-6, `beta ${beta}`);
    assert.ok(Math.abs(dpo - refDpo(x, beta)) < 1e-5, `beta ${beta} vs float64`);
  }
});

Deno.test("losses agree with float64 references on random inputs", () => {
  const rng = new Rng(11);
  for (const [b, k, beta] of [[1, 1, 1], [4, 3, 0.1], [5, 7, 2]]) {
    const x = randomPref(rng, b, k);
    assert.ok(Math.abs(lossOf("sdpo", x, beta) - refSdpo(x, beta)) < 1e-5);
    assert.ok(Math.abs(lossOf("dmpo-paper", x, beta) - refDmpoPaper(x, beta)) < 1e-5);
  }
});

Deno.test("dpoLoss() is ln 2 and sdpoLoss() is ln(1 + K) when policy equals reference", () => {
  const rng = new Rng(3);
  for (const k of [1, 3, 20]) {
    const x = randomPref(rng, 4, k);
    const same: Pref = { pc: x.pc, pr: x.pr, rc: x.pc, rr: x.pr };
    assert.ok(Math.abs(lossOf("sdpo", same, 0.5) - Math.log(1 + k)) < 1e-6, `K = ${k}`);
    assert.ok(Math.abs(lossOf("dmpo-paper", same, 0.5) - Math.LN2) < 1e-6, `K = ${k}`);
    assert.ok(Math.abs(lossOf("dpo", first(same), 0.5) - Math.LN2) < 1e-6, `K = ${k}`);
  }
});

Deno.test("dmpoLoss() released matches a float64 pair-by-pair loop, with defaults β 0.1, γ 1", () => {
  const rng = new Rng(5);
  const x = randomPref(rng, 3, 4);
  const nll = [0.7, 2.5, 1.2];
  const t = toTensors(x);
  const nllT = tf.tensor1d(nll);
  const dflt = read(dmpoLoss(t.pc, t.pr, t.rc, t.rr, { variant: "released", chosenNllMean: nllT }));
  assert.ok(Math.abs(dflt.loss - refDmpoReleased(x, nll, 0.1, 1)) < 1e-5);
  const custom = read(
    dmpoLoss(t.pc, t.pr, t.rc, t.rr, {
      variant: "released",
      beta: 2,
      gamma: 0.3,
      chosenNllMean: nllT,
    }),
  );
  assert.ok(Math.abs(custom.loss - refDmpoReleased(x, nll, 2, 0.3)) < 1e-5);
  // γ = 0 needs no NLL; the reference rejected log-probs play no part.
  const noSft = read(dmpoLoss(t.pc, t.pr, t.rc, t.pr, { variant: "released", beta: 2, gamma: 0 }));
  assert.ok(Math.abs(noSft.loss - refDmpoReleased(x, nll, 2, 0)) < 1e-5);
  const viaRecord = read(LOSSES["dmpo-released"](
    {
      policyChosen: t.pc,
      policyRejected: t.pr,
      referenceChosen: t.rc,
      referenceRejected: t.rr,
      chosenNllMean: nllT,
    },
    {},
  ));
  assert.ok(Math.abs(viaRecord.loss - dflt.loss) < 1e-7);
  tf.dispose([t.pc, t.pr, t.rc, t.rr, nllT]);
});

Deno.test("LOSSES entries match the direct functions; dpo averages over B·K pairs", () => {
  const rng = new Rng(9);
  const x = randomPref(rng, 3, 2);
  const t = toTensors(x);
  const inputs = {
    policyChosen: t.pc,
    policyRejected: t.pr,
    referenceChosen: t.rc,
    referenceRejected: t.rr,
  };
  assert.ok(Math.abs(read(LOSSES.sdpo(inputs, { beta: 0.7 })).loss - refSdpo(x, 0.7)) < 1e-5);
  assert.ok(
    Math.abs(read(LOSSES["dmpo-paper"](inputs, { beta: 0.7 })).loss - refDmpoPaper(x, 0.7)) < 1e-5,
  );
  // dpo: mean over all (chosen, rejected_k) pairs, each with its own reference.
  const pairs: number[] = [];
  for (let b = 0; b < 3; b++) {
    for (let k = 0; k < 2; k++) {
      pairs.push(
        refDpo({ pc: [x.pc[b]], rc: [x.rc[b]], pr: [[x.pr[b][k]]], rr: [[x.rr[b][k]]] }, 0.7),
      );
    }
  }
  assert.ok(Math.abs(read(LOSSES.dpo(inputs, { beta: 0.7 })).loss - mean(pairs)) < 1e-5);
  assert.deepEqual(Object.keys(LOSSES).sort(), ["dmpo-paper", "dmpo-released", "dpo", "sdpo"]);
  tf.dispose([t.pc, t.pr, t.rc, t.rr]);
});

Deno.test("sdpoNegativeWeights() is the softmax over negatives of β((pr − rr) − (pc − rc))", () => {
  const t = toTensors(EX1);
  const w = sdpoNegativeWeights(t.pc, t.pr, t.rc, t.rr, { beta: 1 });
  assert.deepEqual(w.shape, [1, 3]);
  // logits −1.5, −0.5, −2 → e^z / Σ e^z
  const z = [-1.5, -0.5, -2].map(Math.exp), s = z[0] + z[1] + z[2];
  assertClose(w.dataSync(), z.map((e) => e / s), 1e-6, "weights");
  tf.dispose([t.pc, t.pr, t.rc, t.rr, w]);
});

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

// Two prompts, β = 1, K = 3. Row 0 is EX1: chosen reward 1, rejected rewards [−0.5, 0.5, −1].
// Row 1: chosen reward −3 − (−3) = 0, rejected rewards [1, −1, −1] (max 1 beats the chosen).
const TWO: Pref = {
  pc: [-2, -3],
  rc: [-3, -3],
  pr: [[-4, -3, -5], [-2, -6, -6]],
  rr: [[-3.5, -3.5, -4], [-3, -5, -5]],
};

Deno.test("sdpoLoss() and dmpoLoss() paper metrics match a hand example", () => {
  const t = toTensors(TWO);
  const want = {
    "rewards/chosen": 0.5, // (1 + 0) / 2
    "rewards/rejected": -1 / 3, // (−0.5 + 0.5 − 1 + 1 − 1 − 1) / 6
    "rewards/accuracies": 0.5, // row 0: 1 > 0.5; row 1: 0 < 1
    "rewards/margins": 5 / 6, // ((1 + 1/3) + (0 + 1/3)) / 2
    "logps/chosen": -2.5,
    "logps/rejected": -26 / 6,
  };
  for (
    const out of [
      sdpoLoss(t.pc, t.pr, t.rc, t.rr, { beta: 1 }),
      dmpoLoss(t.pc, t.pr, t.rc, t.rr, { beta: 1, variant: "paper" }),
    ]
  ) {
    const { loss, metrics } = read(out);
    assert.deepEqual(Object.keys(metrics).sort(), ["loss", ...Object.keys(want)].sort());
    for (const [name, v] of Object.entries(want)) assertClose([metrics[name]], [v], 1e-6, name);
    assertClose([metrics.loss], [loss], 0, "loss");
  }
  tf.dispose([t.pc, t.pr, t.rc, t.rr]);
});

Deno.test("dmpoLoss() released metrics use the chosen reference for rejected rewards", () => {
  const t = toTensors(TWO);
  const nll = tf.tensor1d([1, 2]);
  const { metrics } = read(
    dmpoLoss(t.pc, t.pr, t.rc, t.rr, { beta: 1, variant: "released", chosenNllMean: nll }),
  );
  // β(pr − rc): row 0 [−1, 0, −2], row 1 [1, −3, −3]; chosen rewards 1 and 0.
  assertClose([metrics["rewards/chosen"]], [0.5], 1e-6, "rewards/chosen");
  assertClose([metrics["rewards/rejected"]], [-8 / 6], 1e-6, "rewards/rejected");
  assertClose([metrics["rewards/accuracies"]], [5 / 6], 1e-6, "rewards/accuracies"); // pairs
  assertClose([metrics["rewards/margins"]], [(2 + 5 / 3) / 2], 1e-6, "rewards/margins");
  assertClose([metrics["logps/chosen"]], [-2.5], 1e-6, "logps/chosen");
  assertClose([metrics["logps/rejected"]], [-26 / 6], 1e-6, "logps/rejected");
  tf.dispose([t.pc, t.pr, t.rc, t.rr, nll]);
});

Deno.test("dpoLoss() metrics: accuracies count strict wins; ties are not accurate", () => {
  const pc = tf.tensor1d([-1, -2, -3]), rc = tf.tensor1d([-2, -2, -3]);
  const pr = tf.tensor1d([-4, -2, -1]), rr = tf.tensor1d([-4, -2, -2]);
  // chosen rewards [0.5, 0, 0], rejected [0, 0, 0.5] at β = 0.5: one win, one tie, one loss.
  const { metrics } = read(dpoLoss(pc, pr, rc, rr, { beta: 0.5 }));
  assertClose([metrics["rewards/accuracies"]], [1 / 3], 1e-6, "rewards/accuracies");
  assertClose([metrics["rewards/margins"]], [0], 1e-6, "rewards/margins");
  assertClose([metrics["rewards/chosen"]], [1 / 6], 1e-6, "rewards/chosen");
  tf.dispose([pc, rc, pr, rr]);
});

Deno.test("loss metrics are detached: no gradient flows through them", () => {
  const t = toTensors(TWO);
  const g = tf.grad((pc: tf.Tensor) => {
    const out = sdpoLoss(pc as tf.Tensor1D, t.pr, t.rc, t.rr, { beta: 1 });
    return tf.addN(Object.values(out.metrics));
  })(t.pc);
  assert.deepEqual(Array.from(g.dataSync()), [0, 0]);
  tf.dispose([t.pc, t.pr, t.rc, t.rr, g]);
});

// ---------------------------------------------------------------------------------------------
// Gradients against finite differences of the float64 references
// ---------------------------------------------------------------------------------------------

Deno.test("losses' gradients wrt policy inputs match finite differences", () => {
  const rng = new Rng(21);
  const [b, k] = [3, 4];
  const x = randomPref(rng, b, k, 1);
  const nll = [0.4, 1.1, 2.0];
  const rc = tf.tensor1d(x.rc), rr = tf.tensor2d(x.rr);
  const unpack = (v: number[]): Pref => ({
    pc: v.slice(0, b),
    pr: Array.from({ length: b }, (_, i) => v.slice(b + i * k, b + (i + 1) * k)),
    rc: x.rc,
    rr: x.rr,
  });
  const flat = [...x.pc, ...x.pr.flat()];
  const cases: Array<
    [string, (v: number[]) => number, (pc: tf.Tensor1D, pr: tf.Tensor2D) => LossOutput]
  > = [
    ["sdpo", (v) => refSdpo(unpack(v), 0.8), (pc, pr) => sdpoLoss(pc, pr, rc, rr, { beta: 0.8 })],
    [
      "dmpo-paper",
      (v) => refDmpoPaper(unpack(v), 0.8),
      (pc, pr) => dmpoLoss(pc, pr, rc, rr, { beta: 0.8, variant: "paper" }),
    ],
    [
      "dpo (pairs)",
      (v) => {
        const p = unpack(v);
        const all: number[] = [];
        p.pc.forEach((c, i) =>
          p.pr[i].forEach((r, j) =>
            all.push(refDpo({ pc: [c], rc: [p.rc[i]], pr: [[r]], rr: [[p.rr[i][j]]] }, 0.8))
          )
        );
        return mean(all);
      },
      (pc, pr) =>
        LOSSES.dpo({
          policyChosen: pc,
          policyRejected: pr,
          referenceChosen: rc,
          referenceRejected: rr,
        }, { beta: 0.8 }),
    ],
  ];
  for (const [name, ref, fn] of cases) {
    const pcT = tf.tensor1d(x.pc), prT = tf.tensor2d(x.pr);
    const [gpc, gpr] = tf.grads((a: tf.Tensor, c: tf.Tensor) =>
      fn(a as tf.Tensor1D, c as tf.Tensor2D).loss
    )([pcT, prT]);
    const analytic = [...gpc.dataSync(), ...gpr.dataSync()];
    assertClose(analytic, numGrad(ref, flat), 1e-4, name);
    tf.dispose([pcT, prT, gpc, gpr]);
  }
  // dpoLoss() itself, on the first negative of each prompt.
  {
    const pcT = tf.tensor1d(x.pc), prT = tf.tensor1d(x.pr.map((r) => r[0]));
    const rc1 = tf.tensor1d(x.rc), rr1 = tf.tensor1d(x.rr.map((r) => r[0]));
    const g = tf.grads((a: tf.Tensor, c: tf.Tensor) =>
      dpoLoss(a as tf.Tensor1D, c as tf.Tensor1D, rc1, rr1, { beta: 0.8 }).loss
    )([pcT, prT]);
    const ref = (v: number[]) =>
      refDpo({ pc: v.slice(0, b), pr: v.slice(b).map((r) => [r]), rc: x.rc, rr: first(x).rr }, 0.8);
    assertClose(
      g.flatMap((t) => Array.from(t.dataSync())),
      numGrad(ref, [...x.pc, ...x.pr.map((r) => r[0])]),
      1e-4,
      "dpoLoss",
    );
    tf.dispose([pcT, prT, rc1, rr1, ...g]);
  }
  // Released DMPO: also differentiable in the chosen NLL (a policy quantity).
  const pcT = tf.tensor1d(x.pc), prT = tf.tensor2d(x.pr), nllT = tf.tensor1d(nll);
  const grads = tf.grads((a: tf.Tensor, c: tf.Tensor, n: tf.Tensor) =>
    dmpoLoss(a as tf.Tensor1D, c as tf.Tensor2D, rc, rr, {
      variant: "released",
      chosenNllMean: n as tf.Tensor1D,
    }).loss
  )([pcT, prT, nllT]);
  const refReleased = (v: number[]) => refDmpoReleased(unpack(v), v.slice(b + b * k), 0.1, 1);
  assertClose(
    grads.flatMap((g) => Array.from(g.dataSync())),
    numGrad(refReleased, [...flat, ...nll]),
    1e-4,
    "dmpo-released",
  );
  tf.dispose([pcT, prT, nllT, rc, rr, ...grads]);
});

// ---------------------------------------------------------------------------------------------
// sequenceLogProbs and sftLoss
// ---------------------------------------------------------------------------------------------

function randomLm(rng: Rng, shape: [number, number, number]) {
  const [b, t, v] = shape;
  const logits = Float32Array.from({ length: b * t * v }, () => 3 * rng.normal());
  const labels = Int32Array.from(
    { length: b * t },
    () => rng.next() < 0.35 ? IGNORE_INDEX : rng.int(v),
  );
  // Every row keeps at least one response token.
  for (let row = 0; row < b; row++) labels[row * t + t - 1] = rng.int(v);
  return { logits, labels };
}

Deno.test("sequenceLogProbs() matches a brute-force float64 loop, sum and average", () => {
  const rng = new Rng(1);
  const shape: [number, number, number] = [4, 7, 11];
  const { logits, labels } = randomLm(rng, shape);
  const lt = tf.tensor3d(logits, shape), yt = tf.tensor2d(labels, [4, 7], "int32");
  for (const average of [false, true]) {
    const got = sequenceLogProbs(lt, yt, { average });
    assert.deepEqual(got.shape, [4]);
    assertClose(
      got.dataSync(),
      refSeqLogProbs(logits, labels, shape, average),
      1e-5,
      `average=${average}`,
    );
    got.dispose();
  }
  tf.dispose([lt, yt]);
});

Deno.test("sequenceLogProbs() gradient matches finite differences and is zero on masked tokens", () => {
  const rng = new Rng(2);
  const shape: [number, number, number] = [2, 4, 5];
  const { logits, labels } = randomLm(rng, shape);
  labels[0] = IGNORE_INDEX; // a masked position whose logits get no gradient
  const weights = [0.7, -1.3];
  const yt = tf.tensor2d(labels, [2, 4], "int32"), wt = tf.tensor1d(weights);
  for (const average of [false, true]) {
    const lt = tf.tensor3d(logits, shape);
    const g = tf.grad((x: tf.Tensor) =>
      tf.sum(tf.mul(sequenceLogProbs(x as tf.Tensor3D, yt, { average }), wt))
    )(lt);
    const ref = (v: number[]) => {
      const lp = refSeqLogProbs(v, labels, shape, average);
      return lp[0] * weights[0] + lp[1] * weights[1];
    };
    const analytic = g.dataSync();
    assertClose(analytic, numGrad(ref, Array.from(logits)), 1e-4, `average=${average}`);
    for (let v = 0; v < 5; v++) assert.ok(analytic[v] === 0, `masked position: ${analytic[v]}`);
    tf.dispose([lt, g]);
  }
  tf.dispose([yt, wt]);
});

Deno.test("sftLoss() is total NLL over all response tokens / their count", () => {
  const rng = new Rng(4);
  const shape: [number, number, number] = [3, 5, 6];
  const { logits, labels } = randomLm(rng, shape);
  const lt = tf.tensor3d(logits, shape), yt = tf.tensor2d(labels, [3, 5], "int32");
  const sums = refSeqLogProbs(logits, labels, shape, false);
  const count = labels.filter((l) => l !== IGNORE_INDEX).length;
  const want = -sums.reduce((a, c) => a + c, 0) / count;
  const { loss, metrics } = read(sftLoss(lt, yt));
  assertClose([loss], [want], 1e-5, "loss");
  assert.deepEqual(Object.keys(metrics), ["loss"]);
  assertClose([metrics.loss], [loss], 0, "metrics.loss");
  // Uniform logits: the loss is ln V whatever the labels.
  const flat = tf.zeros(shape) as tf.Tensor3D;
  assertClose([read(sftLoss(flat, yt)).loss], [Math.log(6)], 1e-6, "uniform");
  // Gradient wrt logits against finite differences of the float64 reference.
  const g = tf.grad((x: tf.Tensor) => sftLoss(x as tf.Tensor3D, yt).loss)(lt);
  const ref = (v: number[]) => {
    const s = refSeqLogProbs(v, labels, shape, false);
    return -s.reduce((a, c) => a + c, 0) / count;
  };
  assertClose(g.dataSync(), numGrad(ref, Array.from(logits)), 1e-4, "grad");
  tf.dispose([lt, yt, flat, g]);
});

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

Deno.test("preference losses throw InputError naming the bad argument", () => {
  const t = toTensors(TWO);
  const k0 = tf.zeros([2, 0]) as tf.Tensor2D;
  const short = tf.tensor1d([-1]), wide = tf.zeros([2, 4]) as tf.Tensor2D;
  const nan = tf.tensor2d([[-1, NaN, -2], [-1, -1, -1]]), inf = tf.tensor1d([-1, Infinity]);
  const vec = tf.tensor1d([-1, -2]);
  for (const fn of [sdpoLoss, sdpoNegativeWeights]) {
    throwsInput(
      () => fn(t.pc, t.pr, short, t.rr, { beta: 1 }),
      /"referenceChosen".*\[2\].*got \[1\]/,
    );
    throwsInput(
      () => fn(t.pc, t.pr, t.rc, wide, { beta: 1 }),
      /"referenceRejected".*\[2,3\].*got \[2,4\]/,
    );
    throwsInput(
      () => fn(t.pc, vec as unknown as tf.Tensor2D, t.rc, t.rr, { beta: 1 }),
      /"policyRejected".*\[2,K\].*got \[2\]/,
    );
    throwsInput(() => fn(t.pc, k0, t.rc, k0, { beta: 1 }), /"policyRejected": expected K ≥ 1/);
    throwsInput(() => fn(t.pc, nan, t.rc, t.rr, { beta: 1 }), /"policyRejected".*non-finite/);
    throwsInput(() => fn(t.pc, t.pr, inf, t.rr, { beta: 1 }), /"referenceChosen".*non-finite/);
    throwsInput(() => fn(t.pc, t.pr, t.rc, t.rr, { beta: 0 }), /"beta".*got 0/);
    throwsInput(() => fn(t.pc, t.pr, t.rc, t.rr, { beta: NaN }), /"beta".*got NaN/);
    throwsInput(() => fn(t.pc, t.pr, t.rc, t.rr, {} as { beta: number }), /"beta".*required/);
  }
  throwsInput(
    () => dpoLoss(t.pc, short, t.rc, t.rc, { beta: 1 }),
    /"policyRejected".*\[2\].*got \[1\]/,
  );
  throwsInput(() => dpoLoss(t.pc, vec, t.rc, inf, { beta: 1 }), /"referenceRejected".*non-finite/);
  throwsInput(() => dpoLoss(t.pc, vec, t.rc, vec, { beta: -1 }), /"beta"/);
  throwsInput(
    () => dmpoLoss(t.pc, t.pr, t.rc, wide, { variant: "paper", beta: 1 }),
    /"referenceRejected"/,
  );
  throwsInput(() => dmpoLoss(t.pc, t.pr, t.rc, t.rr, { variant: "paper" }), /"beta".*required/);
  throwsInput(
    () => dmpoLoss(t.pc, t.pr, t.rc, t.rr, { variant: "released" }),
    /"chosenNllMean".*required/,
  );
  throwsInput(
    () => dmpoLoss(t.pc, t.pr, t.rc, t.rr, { variant: "released", chosenNllMean: short }),
    /"chosenNllMean".*\[2\].*got \[1\]/,
  );
  throwsInput(
    () => dmpoLoss(t.pc, t.pr, t.rc, t.rr, { variant: "released", chosenNllMean: inf }),
    /"chosenNllMean".*non-finite/,
  );
  throwsInput(
    () => dmpoLoss(t.pc, t.pr, t.rc, t.rr, { variant: "released", gamma: -1, chosenNllMean: vec }),
    /"gamma"/,
  );
  throwsInput(
    () => dmpoLoss(t.pc, t.pr, t.rc, t.rr, { variant: "x" as "paper", beta: 1 }),
    /"variant"/,
  );
  throwsInput(
    () =>
      LOSSES.dpo({
        policyChosen: t.pc,
        policyRejected: t.pr,
        referenceChosen: t.rc,
        referenceRejected: k0,
      }, { beta: 1 }),
    /"referenceRejected"/,
  );
  tf.dispose([t.pc, t.pr, t.rc, t.rr, k0, short, wide, nan, inf, vec]);
});

Deno.test("sequenceLogProbs() and sftLoss() throw InputError on bad logits or labels", () => {
  const logits = tf.zeros([2, 3, 4]) as tf.Tensor3D;
  const ok = tf.tensor2d([[-100, 1, 2], [0, -100, -100]], [2, 3], "int32");
  const short = tf.tensor2d([[1, 2], [0, 1]], [2, 2], "int32");
  const empty = tf.tensor2d([[-100, 1, 2], [-100, -100, -100]], [2, 3], "int32");
  const big = tf.tensor2d([[-100, 4, 2], [0, 1, 1]], [2, 3], "int32");
  const neg = tf.tensor2d([[-1, 1, 2], [0, 1, 1]], [2, 3], "int32");
  const floats = tf.tensor2d([[0, 1, 2], [0, 1, 1]], [2, 3]);
  const rank2 = tf.zeros([2, 3]) as unknown as tf.Tensor3D;
  for (const fn of [sequenceLogProbs, sftLoss]) {
    throwsInput(() => fn(logits, short), /"labels".*\[2,3\].*\[2,3,4\].*got \[2,2\]/);
    throwsInput(() => fn(rank2, ok), /"logits".*\[B,T,V\].*got \[2,3\]/);
    throwsInput(() => fn(logits, empty), /"labels": row 1 .*no response tokens/);
    throwsInput(() => fn(logits, big), /"labels": label id 4 at \[0,1\].*\[0, 4\)/);
    throwsInput(() => fn(logits, neg), /"labels": label id -1 at \[0,0\]/);
    throwsInput(() => fn(logits, floats), /"labels".*int32/);
  }
  tf.dispose([logits, ok, short, empty, big, neg, floats, rank2]);
});

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

Deno.test("every function leaves tf.memory().numTensors unchanged once outputs are disposed", () => {
  const t = toTensors(TWO);
  const nll = tf.tensor1d([1, 2]);
  const pc1 = tf.tensor1d([-1, -2]), pr1 = tf.tensor1d([-3, -1]);
  const nan = tf.tensor2d([[-1, NaN, -2], [-1, -1, -1]]);
  const shape: [number, number, number] = [2, 3, 5];
  const { logits, labels } = randomLm(new Rng(8), shape);
  const lt = tf.tensor3d(logits, shape), yt = tf.tensor2d(labels, [2, 3], "int32");
  const inputs = {
    policyChosen: t.pc,
    policyRejected: t.pr,
    referenceChosen: t.rc,
    referenceRejected: t.rr,
    chosenNllMean: nll,
  };
  const calls: Array<[string, () => tf.TensorContainer]> = [
    ["sequenceLogProbs", () => sequenceLogProbs(lt, yt)],
    ["sequenceLogProbs average", () => sequenceLogProbs(lt, yt, { average: true })],
    ["sftLoss", () => sftLoss(lt, yt) as unknown as tf.TensorContainer],
    ["dpoLoss", () => dpoLoss(pc1, pr1, pc1, pr1, { beta: 1 }) as unknown as tf.TensorContainer],
    [
      "sdpoLoss",
      () => sdpoLoss(t.pc, t.pr, t.rc, t.rr, { beta: 1 }) as unknown as tf.TensorContainer,
    ],
    ["sdpoNegativeWeights", () => sdpoNegativeWeights(t.pc, t.pr, t.rc, t.rr, { beta: 1 })],
    [
      "dmpoLoss paper",
      () =>
        dmpoLoss(t.pc, t.pr, t.rc, t.rr, {
          beta: 1,
          variant: "paper",
        }) as unknown as tf.TensorContainer,
    ],
    [
      "dmpoLoss released",
      () =>
        dmpoLoss(t.pc, t.pr, t.rc, t.rr, {
          variant: "released",
          chosenNllMean: nll,
        }) as unknown as tf.TensorContainer,
    ],
    ...Object.entries(LOSSES).map(([name, fn]): [string, () => tf.TensorContainer] => [
      `LOSSES.${name}`,
      () => fn(inputs, { beta: 1 }) as unknown as tf.TensorContainer,
    ]),
    [
      "grad of sequenceLogProbs",
      () => tf.grad((x: tf.Tensor) => tf.sum(sequenceLogProbs(x as tf.Tensor3D, yt)))(lt),
    ],
    ["grad of sftLoss", () => tf.grad((x: tf.Tensor) => sftLoss(x as tf.Tensor3D, yt).loss)(lt)],
    [
      "grads of sdpoLoss",
      () =>
        tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          sdpoLoss(a as tf.Tensor1D, b as tf.Tensor2D, t.rc, t.rr, { beta: 1 }).loss
        )([t.pc, t.pr]),
    ],
    ["failing call", () => {
      assert.throws(() => sdpoLoss(t.pc, nan, t.rc, t.rr, { beta: 1 }), InputError);
      return [];
    }],
  ];
  for (const [name, call] of calls) {
    const before = tf.memory().numTensors;
    tf.dispose(call());
    assert.equal(tf.memory().numTensors, before, name);
  }
  tf.dispose([t.pc, t.pr, t.rc, t.rr, nll, pc1, pr1, nan, lt, yt]);
});
