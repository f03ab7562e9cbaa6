import assert from "node:assert/strict";
import fc from "fast-check";
import { customOp, initBackend, tf } from "../src/backend.ts";
import { enableFusedKernels, rotateHalf, rotateHalfAvailable } from "../src/fused.ts";
import { applyRope, LlamaModel, PRESETS, rmsNorm, swiGlu } from "../src/model.ts";
import { DEFAULT_LORA_CONFIG } from "../src/lora.ts";
import { Rng } from "../src/rng.ts";

await initBackend("wasm", { quiet: true });

Deno.test("the wasm kernel replacements are registered", () => {
  assert.deepEqual(enableFusedKernels(), { identity: true, gather: true, slice: true });
});

/** Rows of x (shape [n, ...rest], flat data) picked by idx, computed with plain arrays. */
function gatherByHand(data: ArrayLike<number>, rowLen: number, idx: number[]): number[] {
  return idx.flatMap((i) => Array.from(data).slice(i * rowLen, (i + 1) * rowLen));
}

Deno.test("GatherV2 on axis 0 equals a gather by hand (float32 and int32, any rank)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 9 }),
      fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 2 }),
      fc.array(fc.nat(), { minLength: 0, maxLength: 12 }),
      fc.constantFrom<"float32" | "int32">("float32", "int32"),
      fc.boolean(),
      (rows, rest, rawIdx, dtype, idx2d) => {
        const rowLen = rest.reduce((a, b) => a * b, 1);
        const data = Array.from(
          { length: rows * rowLen },
          (_, i) => dtype === "int32" ? i * 7 - 20 : Math.sin(i) * 1e3,
        );
        const idx = rawIdx.map((i) => i % rows);
        const x = tf.tensor(data, [rows, ...rest], dtype);
        const shape = idx2d && idx.length % 2 === 0 ? [2, idx.length / 2] : [idx.length];
        const ind = tf.tensor(idx, shape, "int32");
        const out = tf.gather(x, ind);
        assert.deepEqual(out.shape, [...shape, ...rest]);
        assert.equal(out.dtype, dtype);
        const want = gatherByHand(Float32Array.from(data), rowLen, idx);
        assert.deepEqual(Array.from(out.dataSync()), want);
        tf.dispose([x, ind, out]);
      },
    ),
    { numRuns: 60, seed: 20 },
  );
});

/** x[begin : begin + size] of a row-major array of `shape`, element by element. */
function sliceByHand(
  data: number[],
  shape: number[],
  begin: number[],
  size: number[],
): number[] {
  const out: number[] = [];
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const walk = (dim: number, offset: number) => {
    if (dim === shape.length) return void out.push(data[offset]);
    for (let i = 0; i < size[dim]; i++) walk(dim + 1, offset + (begin[dim] + i) * strides[dim]);
  };
  walk(0, 0);
  return out;
}

Deno.test("Slice and SplitV equal a slice by hand (float32, int32, bool; rank 1 to 6)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 12, maxLength: 12 }),
      fc.constantFrom<"float32" | "int32" | "bool">("float32", "int32", "bool"),
      (shape, u, dtype) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const data = Array.from(
          { length: n },
          (_, i) =>
            dtype === "bool"
              ? (i * 5) % 3 === 0 ? 1 : 0
              : dtype === "int32"
              ? i * 3 - 7
              : Math.cos(i),
        );
        const x = tf.tensor(data, shape, dtype);
        const begin = shape.map((d, i) => Math.min(d - 1, Math.floor(u[i] * d)));
        const size = shape.map((d, i) =>
          Math.min(d - begin[i], Math.floor(u[i + 6] * (d - begin[i])) + 1)
        );
        const got = tf.slice(x, begin, size);
        assert.deepEqual(got.shape, size);
        assert.equal(got.dtype, dtype);
        const want = Float32Array.from(sliceByHand(data, shape, begin, size));
        assert.deepEqual(Float32Array.from(got.dataSync()), want);
        {
          const axis = Math.min(shape.length - 1, Math.floor(u[11] * shape.length));
          const first = Math.min(shape[axis] - 1, Math.floor(u[5] * shape[axis]));
          const sizes = first > 0 && first < shape[axis]
            ? [first, shape[axis] - first]
            : [shape[axis]];
          const parts = tf.split(x, sizes, axis);
          let at = 0;
          parts.forEach((p, i) => {
            const b = shape.map((_, j) => j === axis ? at : 0);
            const sz = shape.map((d, j) => j === axis ? sizes[i] : d);
            assert.deepEqual(
              Float32Array.from(p.dataSync()),
              Float32Array.from(sliceByHand(data, shape, b, sz)),
            );
            at += sizes[i];
          });
          tf.dispose(parts);
        }
        tf.dispose([x, got]);
      },
    ),
    { numRuns: 200, seed: 21 },
  );
});

Deno.test("GatherV2 rejects an index outside the rows, naming it", () => {
  const x = tf.tensor2d([[1, 2], [3, 4]]);
  const ind = tf.tensor1d([0, 2], "int32");
  assert.throws(() => tf.gather(x, ind), /index value 2 is not in \[0, 1\]/);
  tf.dispose([x, ind]);
});

Deno.test("GatherV2 on another axis still uses tfjs's kernel", () => {
  const x = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
  const ind = tf.tensor1d([2, 0], "int32");
  const out = tf.gather(x, ind, 1);
  assert.deepEqual(Array.from(out.dataSync()), [3, 1, 6, 4]);
  tf.dispose([x, ind, out]);
});

Deno.test("Identity shares the bytes and keeps tensor accounting exact", () => {
  const before = tf.memory().numTensors;
  const x = tf.tensor1d([1, 2, 3]);
  const y = tf.clone(x);
  x.dispose();
  assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3]);
  y.dispose();
  assert.equal(tf.memory().numTensors, before);
  // A variable's later assign does not change a clone taken before it.
  const v = tf.variable(tf.tensor1d([5, 6]));
  const c = tf.clone(v);
  v.assign(tf.tensor1d([7, 8]));
  assert.deepEqual(Array.from(c.dataSync()), [5, 6]);
  assert.deepEqual(Array.from(v.dataSync()), [7, 8]);
  tf.dispose([v, c]);
});

Deno.test("rmsNorm's hand-written gradient equals autodiff of the formula and finite differences", () => {
  const eps = 1e-5;
  const plain = (x: tf.Tensor, w: tf.Tensor) =>
    tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), w);
  const x = tf.randomNormal([2, 3, 8], 0, 1, "float32", 5);
  const wv = tf.variable(tf.randomNormal([8], 1, 0.3, "float32", 6));
  const weights = tf.randomNormal([2, 3, 8], 0, 1, "float32", 7);
  for (const trainable of [true, false]) {
    const w = (trainable ? wv : tf.clone(wv)) as tf.Tensor1D;
    const ours = trainable
      ? tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(rmsNorm(a, b as tf.Tensor1D, eps), weights))
      )([x, wv])
      : [tf.grad((a: tf.Tensor) => tf.sum(tf.mul(rmsNorm(a, w, eps), weights)))(x)];
    const ref = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(plain(a, b), weights)))([
      x,
      wv,
    ]);
    const diff = (p: tf.Tensor, q: tf.Tensor) =>
      tf.tidy(() => tf.max(tf.abs(tf.sub(p, q))).dataSync()[0]);
    assert.ok(diff(ours[0], ref[0]) < 1e-5, `dx differs by ${diff(ours[0], ref[0])}`);
    if (trainable) {
      assert.ok(diff(ours[1], ref[1]) < 1e-5, `dw differs by ${diff(ours[1], ref[1])}`);
    }
    // Finite differences on x.
    const xv = x.dataSync().slice();
    const g = ours[0].dataSync();
    for (const idx of [0, 7, 13, 30, 47]) {
      const at = (d: number) => {
        const moved = xv.slice();
        moved[idx] += d;
        return tf.tidy(() =>
          tf.sum(tf.mul(rmsNorm(tf.tensor(moved, x.shape), w, eps), weights)).dataSync()[0]
        );
      };
      const fd = (at(1e-2) - at(-1e-2)) / 2e-2;
      assert.ok(
        Math.abs(fd - g[idx]) < 1e-2 * Math.max(1, Math.abs(fd)),
        `x[${idx}]: ${g[idx]} vs ${fd}`,
      );
    }
    tf.dispose([...ours, ...ref]);
    if (!trainable) w.dispose();
  }
  tf.dispose([x, wv, weights]);
});

Deno.test("LoRA's folded weights follow every change of the adapter and leak no tensor", () => {
  const baseline = tf.memory().numTensors;
  const model = LlamaModel.random(PRESETS["llama-nano"], 41);
  model.addLora({ ...DEFAULT_LORA_CONFIG, r: 4, lora_alpha: 8, lora_dropout: 0, seed: 42 });
  const ids = [[3, 9, 27, 81, 243 % 256, 5]];
  const run = () => {
    const t = model.logits(ids);
    const v = t.dataSync().slice();
    t.dispose();
    return v;
  };
  const rng = new Rng(43);
  for (let round = 0; round < 3; round++) {
    for (const lin of model.linears().values()) {
      if (!lin.adapter) continue;
      const b = lin.adapter.bT;
      const t = tf.tensor(Float32Array.from({ length: b.size }, () => rng.normal() * 0.1), b.shape);
      b.assign(t);
      t.dispose();
    }
    const unmerged = run();
    const again = run(); // from the cache
    assert.deepEqual(again, unmerged);
    const tensors = tf.memory().numTensors;
    model.mergeLora(); // the merged base weights, no adapter path: an independent route
    const merged = run();
    model.unmergeLora();
    const err = Math.max(...unmerged.map((x, i) => Math.abs(x - merged[i])));
    assert.ok(err < 1e-5, `round ${round}: folded and merged outputs differ by ${err}`);
    run();
    assert.equal(tf.memory().numTensors, tensors, "no tensor accumulates across calls");
  }
  model.dispose();
  assert.equal(tf.memory().numTensors, baseline);
});

/** Bit patterns of a tensor's values (deepEqual on these is equality bit for bit, −0 and NaN included). */
function bits(t: tf.Tensor): Uint32Array {
  return new Uint32Array((t.dataSync() as Float32Array).slice().buffer);
}

/** Central finite differences of f at a few entries of x against the gradient g. */
function checkFiniteDifferences(f: (x: tf.Tensor) => tf.Scalar, x: tf.Tensor, g: tf.Tensor): void {
  const xv = x.dataSync().slice();
  const gv = g.dataSync();
  for (const idx of [0, 5, 17, Math.floor(xv.length / 2), xv.length - 1]) {
    const at = (d: number) => {
      const moved = xv.slice();
      moved[idx] += d;
      return tf.tidy(() => f(tf.tensor(moved, x.shape)).dataSync()[0]);
    };
    const fd = (at(1e-2) - at(-1e-2)) / 2e-2;
    assert.ok(
      Math.abs(fd - gv[idx]) < 1e-2 * Math.max(1, Math.abs(fd)),
      `x[${idx}]: ${gv[idx]} vs ${fd}`,
    );
  }
}

Deno.test("applyRope's hand-written gradient equals autodiff of the formula bit for bit, and finite differences", () => {
  // Head size 16 takes the product with the ±1 matrix, 64 the permutation in the heap.
  for (const d of [16, 64]) ropeCheck(d);
});

function ropeCheck(d: number): void {
  const r = new Float32Array(d * d);
  for (let i = 0; i < d / 2; i++) {
    r[(i + d / 2) * d + i] = -1;
    r[i * d + i + d / 2] = 1;
  }
  const rT = tf.tensor2d(r, [d, d]);
  const rot = { r: rT, rT: tf.transpose(rT) as tf.Tensor2D };
  const plain = (x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor) =>
    tf.add(
      tf.mul(x, cos),
      tf.mul(
        customOp(([xi]) => ({
          value: tf.matMul(xi.reshape([-1, d]) as tf.Tensor2D, rot.r).reshape(xi.shape),
          gradFunc: (dy) => tf.matMul(dy.reshape([-1, d]) as tf.Tensor2D, rot.rT).reshape(dy.shape),
        }))(x),
        sin,
      ),
    );
  const x = tf.randomNormal([3, 7, 4, d], 0, 1, "float32", 11) as tf.Tensor4D;
  const weights = tf.randomNormal([3, 7, 4, d], 0, 1, "float32", 14);
  // Tables with the kernel's broadcast shape [B, T, 1, D], scaled by 1/√D as the queries' are.
  const cos = tf.mul(tf.randomUniform([3, 7, 1, d], -1, 1, "float32", 12), 0.25);
  const sin = tf.mul(tf.randomUniform([3, 7, 1, d], -1, 1, "float32", 13), 0.25);
  const ours = (a: tf.Tensor) =>
    tf.sum(tf.mul(applyRope(a as tf.Tensor4D, cos, sin, rot), weights)) as tf.Scalar;
  const ref = (a: tf.Tensor) => tf.sum(tf.mul(plain(a, cos, sin), weights)) as tf.Scalar;
  const yOurs = applyRope(x, cos, sin, rot), yRef = plain(x, cos, sin);
  assert.deepEqual(bits(yOurs), bits(yRef));
  const gOurs = tf.grad(ours)(x), gRef = tf.grad(ref)(x);
  assert.deepEqual(bits(gOurs), bits(gRef));
  checkFiniteDifferences(ours, x, gOurs);
  tf.dispose([rT, rot.rT, x, weights, cos, sin, yOurs, yRef, gOurs, gRef]);
}

Deno.test("rotateHalf equals the product with the ±1 permutation matrix bit for bit, zeros included", () => {
  assert.ok(rotateHalfAvailable());
  for (const d of [2, 16, 64]) {
    const r = new Float32Array(d * d);
    for (let i = 0; i < d / 2; i++) {
      r[(i + d / 2) * d + i] = -1;
      r[i * d + i + d / 2] = 1;
    }
    const rm = tf.tensor2d(r, [d, d]);
    // Random values with exact zeros of both signs, as gradients of padded positions have.
    const rng = new Rng(60 + d);
    const data = Float32Array.from(
      { length: 5 * 3 * d },
      (_, i) => i % 7 === 0 ? 0 : i % 11 === 0 ? -0 : rng.normal(),
    );
    const x = tf.tensor3d(data, [5, 3, d]);
    for (const transpose of [false, true]) {
      const ours = rotateHalf(x, transpose);
      const ref = tf.matMul(x.reshape([-1, d]) as tf.Tensor2D, rm, false, transpose);
      assert.deepEqual(ours.shape, x.shape);
      assert.deepEqual(bits(ours), bits(ref), `D ${d}, transpose ${transpose}`);
      // And by hand: cat(−x₂, x₁), or its transpose cat(x₂, −x₁), with −0 written as +0.
      const v = ours.dataSync();
      for (let row = 0; row < data.length; row += d) {
        for (let j = 0; j < d / 2; j++) {
          const a = data[row + j], b = data[row + d / 2 + j];
          assert.equal(v[row + j], (transpose ? b : -b) || 0);
          assert.equal(v[row + d / 2 + j], (transpose ? -a : a) || 0);
        }
      }
      tf.dispose([ours, ref]);
    }
    tf.dispose([rm, x]);
  }
});

Deno.test("swiGlu's hand-written gradient equals autodiff of the formula bit for bit, and finite differences", () => {
  const g = tf.randomNormal([37, 24], 0, 2, "float32", 21) as tf.Tensor2D;
  const u = tf.randomNormal([37, 24], 0, 1, "float32", 22) as tf.Tensor2D;
  const weights = tf.randomNormal([37, 24], 0, 1, "float32", 23);
  const plain = (a: tf.Tensor, b: tf.Tensor) => tf.mul(tf.mul(a, tf.sigmoid(a)), b);
  const lossOurs = (a: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(swiGlu(a as tf.Tensor2D, b as tf.Tensor2D), weights)) as tf.Scalar;
  const lossRef = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(plain(a, b), weights)) as tf.Scalar;
  const yOurs = swiGlu(g, u), yRef = plain(g, u);
  assert.deepEqual(bits(yOurs), bits(yRef));
  const gOurs = tf.grads(lossOurs)([g, u]), gRef = tf.grads(lossRef)([g, u]);
  assert.deepEqual(bits(gOurs[0]), bits(gRef[0]), "d gate");
  assert.deepEqual(bits(gOurs[1]), bits(gRef[1]), "d up");
  checkFiniteDifferences((a) => lossOurs(a, u), g, gOurs[0]);
  checkFiniteDifferences((b) => lossOurs(g, b), u, gOurs[1]);
  tf.dispose([g, u, weights, yOurs, yRef, ...gOurs, ...gRef]);
});

Deno.test("LoRA's folded weight W + s·BA (taken as the transpose of Wᵀ + s·AᵀBᵀ) equals the fold by its own product bit for bit", () => {
  const model = LlamaModel.random(PRESETS["llama-tiny"], 51);
  model.addLora({ ...DEFAULT_LORA_CONFIG, r: 8, lora_alpha: 16, lora_dropout: 0, seed: 52 });
  const rng = new Rng(53);
  for (const [name, lin] of model.linears()) {
    if (!lin.adapter) continue;
    const { aT, bT, scaling } = lin.adapter;
    const t = tf.tensor(Float32Array.from({ length: bT.size }, () => rng.normal() * 0.1), bT.shape);
    bT.assign(t);
    t.dispose();
    // dx of the layer is dy·w: with dy the identity, dx is the folded w itself.
    const eye = tf.eye(lin.outFeatures) as tf.Tensor2D;
    const x = tf.zeros([lin.outFeatures, lin.inFeatures]) as tf.Tensor2D;
    const w = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(lin.apply(a as tf.Tensor2D), eye)))(x);
    const own = tf.tidy(() => tf.add(lin.weight(), tf.matMul(bT, aT, true, true).mul(scaling)));
    assert.deepEqual(bits(w), bits(own), name);
    tf.dispose([eye, x, w, own]);
  }
  model.dispose();
});
