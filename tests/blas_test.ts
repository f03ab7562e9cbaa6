import assert from "node:assert/strict";
import { initBackend, tf } from "../src/backend.ts";
import {
  BLAS_PARALLEL_MIN,
  BLAS_THREADING_MIN,
  blasHelperReady,
  blasSgemm,
  blasStatus,
  computeOnOneThread,
  kBlockPlan,
  librarySgemm,
  planBatchMatMul,
  planTiles,
  startBlasHelper,
  threadedKBlocks,
} from "../src/blas.ts";
import { Rng } from "../src/rng.ts";

const info = await initBackend("wasm", { quiet: true });
const enabled = blasStatus().enabled;

/** Brute-force batched matmul with broadcasting of a size-1 batch, float64. */
function naive(
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  bShape: number[],
  ta: boolean,
  tb: boolean,
): Float64Array {
  const p = planBatchMatMul(aShape, bShape, ta, tb)!;
  const out = new Float64Array(p.batch * p.m * p.n);
  for (let s = 0; s < p.batch; s++) {
    const ao = (p.aBatch === 1 ? 0 : s) * p.m * p.k, bo = (p.bBatch === 1 ? 0 : s) * p.k * p.n;
    for (let i = 0; i < p.m; i++) {
      for (let j = 0; j < p.n; j++) {
        let acc = 0;
        for (let q = 0; q < p.k; q++) {
          const av = ta ? a[ao + q * p.m + i] : a[ao + i * p.k + q];
          const bv = tb ? b[bo + j * p.k + q] : b[bo + q * p.n + j];
          acc += av * bv;
        }
        out[s * p.m * p.n + i * p.n + j] = acc;
      }
    }
  }
  return out;
}

Deno.test({
  name: `matMul through native BLAS equals a brute-force loop (${
    enabled ? info.blas : "BLAS not available: " + info.blas
  })`,
  ignore: !enabled,
  fn() {
    const rng = new Rng(1);
    const cases: [number[], number[], boolean, boolean][] = [
      [[5, 7], [7, 3], false, false],
      [[7, 5], [7, 3], true, false],
      [[5, 7], [3, 7], false, true],
      [[7, 5], [3, 7], true, true],
      [[2, 3, 5, 7], [2, 3, 7, 4], false, false],
      [[2, 3, 5, 7], [2, 3, 4, 7], false, true],
      [[4, 5, 7], [1, 7, 3], false, false],
      [[1, 5, 7], [4, 7, 3], false, false],
      [[3, 0, 4], [3, 4, 2], false, false],
    ];
    for (const [as, bs, ta, tb] of cases) {
      const av = Float32Array.from({ length: as.reduce((x, y) => x * y, 1) }, () => rng.normal());
      const bv = Float32Array.from({ length: bs.reduce((x, y) => x * y, 1) }, () => rng.normal());
      const got = tf.tidy(() => tf.matMul(tf.tensor(av, as), tf.tensor(bv, bs), ta, tb).dataSync());
      const want = naive(av, as, bv, bs, ta, tb);
      assert.equal(got.length, want.length, `${as} x ${bs}`);
      for (let i = 0; i < want.length; i++) {
        assert.ok(
          Math.abs(got[i] - want[i]) < 1e-4,
          `${as} x ${bs} (${ta},${tb}) [${i}]: ${got[i]} vs ${want[i]}`,
        );
      }
    }
    // Gradients flow through the replaced kernel (autodiff calls BatchMatMul with transposes).
    const x = tf.tensor2d([[1, 2], [3, 4]]), w = tf.tensor2d([[0.5, -1], [2, 1]]);
    const g = tf.grad((v: tf.Tensor) => tf.sum(tf.matMul(v as tf.Tensor2D, w)))(x);
    assert.deepEqual(Array.from(g.dataSync()), [-0.5, 3, -0.5, 3]);
    tf.dispose([x, w, g]);
  },
});

Deno.test("planBatchMatMul() computes shapes and refuses general broadcasts", () => {
  assert.deepEqual(planBatchMatMul([2, 3, 5, 7], [2, 3, 7, 4], false, false)?.outShape, [
    2,
    3,
    5,
    4,
  ]);
  assert.deepEqual(planBatchMatMul([7, 5], [3, 7], true, true)?.outShape, [5, 3]);
  assert.deepEqual(planBatchMatMul([4, 5, 7], [7, 3], false, false)?.outShape, [4, 5, 3]);
  assert.equal(planBatchMatMul([2, 5, 7], [3, 7, 3], false, false), undefined);
  assert.equal(planBatchMatMul([5, 7], [6, 3], false, false), undefined);
});

Deno.test({
  name: "products shared with the helper thread equal one library call bit for bit",
  ignore: !enabled || (blasStatus().threads ?? 1) < 2,
  async fn() {
    assert.ok(startBlasHelper());
    for (let i = 0; i < 100 && !blasHelperReady(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(blasHelperReady(), "the helper thread did not start");
    const rng = new Rng(7);
    // Batched (one tile per item) and single products cut by rows or by columns, every
    // transpose, odd sizes; all between BLAS_PARALLEL_MIN and BLAS_THREADING_MIN per matrix.
    const cases: [number, number, number, number][] = [
      [32, 127, 127, 64],
      [7, 61, 129, 100],
      [1, 1016, 8, 688],
      [1, 8, 688, 1016],
      [1, 333, 517, 40],
      [1, 2051, 37, 120],
      [1, 600, 8, 900],
    ];
    for (const [batch, m, n, k] of cases) {
      assert.ok(batch * m * n * k >= BLAS_PARALLEL_MIN && m * n * k < BLAS_THREADING_MIN);
      // The tiles cover C once, and a single product's blocks stay above the small-matrix size.
      const plan = planBatchMatMul([batch, m, k], [batch, k, n], false, false)!;
      const tiles = planTiles(plan, false, false, 0, 0, 0);
      assert.ok(batch > 1 || tiles.length >= 2, `[${batch}, ${m}, ${n}, ${k}] is split`);
      assert.equal(tiles.reduce((a, t) => a + t.m * t.n, 0), batch * m * n);
      if (batch === 1) { for (const t of tiles) assert.ok(t.m * t.n * t.k >= BLAS_PARALLEL_MIN); }
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
        const as = [batch, ...(ta ? [k, m] : [m, k])], bs = [batch, ...(tb ? [n, k] : [k, n])];
        const av = Float32Array.from({ length: batch * m * k }, () => rng.normal());
        const bv = Float32Array.from({ length: batch * k * n }, () => rng.normal());
        const got = tf.tidy(() =>
          tf.matMul(tf.tensor(av, as), tf.tensor(bv, bs), ta, tb).dataSync() as Float32Array
        );
        const want = new Float32Array(batch * m * n);
        for (let s = 0; s < batch; s++) {
          blasSgemm(
            av.subarray(s * m * k, (s + 1) * m * k),
            bv.subarray(s * k * n, (s + 1) * k * n),
            want.subarray(s * m * n, (s + 1) * m * n),
            m,
            n,
            k,
            ta,
            tb,
          );
        }
        assert.deepEqual(
          new Uint32Array(got.buffer),
          new Uint32Array(want.buffer),
          `[${as}]·[${bs}] (${ta}, ${tb})`,
        );
      }
    }
  },
});

Deno.test("threadedKBlocks: blocks of q, the last 2q or less in two halves (first rounded up)", () => {
  assert.deepEqual(threadedKBlocks(300, 320), [300]);
  assert.deepEqual(threadedKBlocks(640, 320), [320, 320]);
  assert.deepEqual(threadedKBlocks(688, 320), [320, 184, 184]);
  assert.deepEqual(threadedKBlocks(1017, 320), [320, 320, 189, 188]);
  assert.deepEqual(threadedKBlocks(333, 320), [167, 166]);
  for (const k of [1, 321, 999, 5001]) {
    const b = threadedKBlocks(k, 320);
    assert.equal(b.reduce((x, y) => x + y, 0), k);
    assert.ok(b.every((x) => x > 0 && x <= 320));
  }
});

Deno.test({
  name: "one thread per engine gives the library's two-thread floats for products above the limit",
  ignore: !enabled || (blasStatus().threads ?? 1) < 2,
  fn() {
    computeOnOneThread(true); // what an engine does while the other computes
    try {
      const rng = new Rng(11);
      // k = 688 and 1,016 are the bench config's (two-thread sums differ from one-thread ones).
      for (
        const [m, n, k] of [[256, 256, 333], [200, 256, 688], [256, 130, 1016], [129, 160, 2049]]
      ) {
        assert.ok(m * n * k >= BLAS_THREADING_MIN);
        const plan = kBlockPlan(k);
        for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
          const a = Float32Array.from({ length: m * k }, () => rng.normal());
          const b = Float32Array.from({ length: k * n }, () => rng.normal());
          const want = new Float32Array(m * n), one = new Float32Array(m * n);
          const got = new Float32Array(m * n);
          librarySgemm(a, b, want, m, n, k, ta, tb, 2);
          librarySgemm(a, b, one, m, n, k, ta, tb, 1);
          blasSgemm(a, b, got, m, n, k, ta, tb);
          assert.deepEqual(got, want, `[${m}, ${n}, ${k}] ta ${ta} tb ${tb}, plan ${plan}`);
          // The case is one where a single-thread call would not do.
          if (plan !== "same") assert.notDeepEqual(one, want);
        }
      }
    } finally {
      computeOnOneThread(false);
    }
  },
});
