/**
 * The helper thread of `blas.ts`: a worker that computes its share of a matrix product's tiles
 * with the same BLAS library, on the main thread's wasm memory (by address), so that products
 * that one library thread computes run on two cores.
 *
 * It waits on a shared control block for a new product, claims tiles one at a time (a
 * compare-and-swap on a word that holds the product's generation and the next tile), runs each
 * tile's `cblas_sgemm`, and counts it done. The protocol is described in `blas.ts`.
 *
 * @module
 */
import { workerData } from "node:worker_threads";

/** Indices into the control block (Int32Array), shared with `blas.ts`. */
export const CTRL = {
  /** Generation of the product being published (the helper waits on it). */
  GEN: 0,
  /** (generation << 16) | next unclaimed tile. */
  WORD: 1,
  /** Tiles of the product, per slot (generation & 1). */
  COUNT: 2,
  /** Tiles not yet finished, per slot. */
  REMAINING: 4,
  /** 1 once the helper waits for work. */
  READY: 6,
  /** Length of the block. */
  LENGTH: 8,
} as const;

/** Doubles per tile in the table: transA, transB, m, n, k, lda, ldb, ldc, a, b, c addresses. */
export const TILE_FIELDS = 11;

/** Claims the next tile of generation `gen` (its index), or returns −1 when none is left. */
export function claimTile(ctrl: Int32Array, gen: number): number {
  for (;;) {
    const word = Atomics.load(ctrl, CTRL.WORD);
    if (word >>> 16 !== gen) return -1;
    const next = word & 0xffff;
    if (next >= Atomics.load(ctrl, CTRL.COUNT + (gen & 1))) return -1;
    if (Atomics.compareExchange(ctrl, CTRL.WORD, word, word + 1) === word) return next;
  }
}

/**
 * The `cblas_sgemm` signature (row-major order, transposes, m, n, k, alpha, A, lda, B, ldb,
 * beta, C, ldc), its matrices passed as `arg`: "buffer" (typed arrays, the main thread) or
 * "pointer" (addresses into the shared heap, the helper thread).
 */
export function sgemmSymbol<A extends "buffer" | "pointer">(arg: A) {
  return {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      arg,
      "i32",
      arg,
      "i32",
      "f32",
      arg,
      "i32",
    ],
    result: "void",
  } as const;
}

/** The `cblas_sgemm` of `path` with pointer arguments. */
export function openSgemm(path: string) {
  return Deno.dlopen(path, { cblas_sgemm: sgemmSymbol("pointer") }).symbols.cblas_sgemm;
}

/** Runs tile `i` of slot `slot` of the table with `sgemm` (row-major, C = op(A)·op(B)). */
export function runTile(
  sgemm: ReturnType<typeof openSgemm>,
  table: Float64Array,
  capacity: number,
  slot: number,
  i: number,
): void {
  const o = (slot * capacity + i) * TILE_FIELDS;
  const ptr = (addr: number) => Deno.UnsafePointer.create(BigInt(addr));
  sgemm(
    101,
    table[o] ? 112 : 111,
    table[o + 1] ? 112 : 111,
    table[o + 2],
    table[o + 3],
    table[o + 4],
    1,
    ptr(table[o + 8]),
    table[o + 5],
    ptr(table[o + 9]),
    table[o + 6],
    0,
    ptr(table[o + 10]),
    table[o + 7],
  );
}

/** Counts tile done in `slot`; wakes the main thread when it was the last. */
export function finishTile(ctrl: Int32Array, slot: number): void {
  if (Atomics.sub(ctrl, CTRL.REMAINING + slot, 1) === 1) {
    Atomics.notify(ctrl, CTRL.REMAINING + slot);
  }
}

if (workerData?.recalignBlasHelper) {
  const { path, ctrl: ctrlBuf, table: tableBuf, capacity } = workerData as {
    path: string;
    ctrl: SharedArrayBuffer;
    table: SharedArrayBuffer;
    capacity: number;
  };
  const ctrl = new Int32Array(ctrlBuf);
  const table = new Float64Array(tableBuf);
  const sgemm = openSgemm(path);
  let seen = Atomics.load(ctrl, CTRL.GEN);
  Atomics.store(ctrl, CTRL.READY, 1);
  for (;;) {
    Atomics.wait(ctrl, CTRL.GEN, seen);
    seen = Atomics.load(ctrl, CTRL.GEN);
    for (let i = claimTile(ctrl, seen); i >= 0; i = claimTile(ctrl, seen)) {
      runTile(sgemm, table, capacity, seen & 1, i);
      finishTile(ctrl, seen & 1);
    }
  }
}
