import assert from "node:assert/strict";
import fc from "fast-check";
import { initBackend, tf } from "../src/backend.ts";
import { enableFusedKernels } from "../src/fused.ts";

await initBackend("wasm", { quiet: true });

Deno.test("the wasm kernel replacements are registered", () => {
  assert.deepEqual(enableFusedKernels(), { identity: true, gather: true });
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
