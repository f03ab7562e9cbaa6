/**
 * Matrix products through a native BLAS (OpenBLAS, Apple Accelerate, …) called with Deno's FFI
 * on the wasm backend's own memory.
 *
 * Under Deno the wasm backend computes on one thread, and only its 2-D non-transposed matMul is
 * fast (~40 GFLOP/s); transposed or batched products run at ~3 GFLOP/s. OpenBLAS's
 * `cblas_sgemm` with 2 threads reaches ~200 GFLOP/s on the same shapes, transposed or not.
 * {@link enableBlas} replaces the wasm backend's `BatchMatMul` kernel with one that calls
 * `cblas_sgemm` on the tensors' bytes in the wasm heap (no copies), batch by batch, and falls
 * back to the original kernel for anything it does not handle (non-float32, odd broadcasts).
 *
 * Products below {@link BLAS_THREADING_MIN} multiply-adds per matrix, which the library runs on
 * one thread, are shared between two cores when they are large enough (batched attention
 * products, LoRA's thin ones): a helper thread (`blas_helper.ts`, a worker calling the same
 * library on this memory by address) and the main thread split the batch items, or the rows or
 * columns of a single product, and compute their tiles with one library thread each. Every
 * element of the result is the same sum in the same order as in one call (a tile is a block of
 * rows or columns of C; the sums over k are not split), so the floats do not depend on the
 * split. Larger products keep the library's own threads: OpenBLAS blocks the sum over k
 * differently with two threads than with one (k = 688 or 1,016, say), so moving them would
 * change results. The helper is off unless `RECALIGN_BLAS_HELPER=1` (or {@link startBlasHelper}).
 *
 * The library is found at run time: `RECALIGN_BLAS` (a path, or `off`), else the usual
 * OpenBLAS / Accelerate locations. `RECALIGN_BLAS_THREADS=1` keeps everything on one thread. Needs `--allow-ffi`; without it, or without a library, the
 * wasm kernels are used and {@link enableBlas} says why.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { Worker } from "node:worker_threads";
import {
  claimTile,
  CTRL,
  finishTile,
  openSgemm,
  runTile,
  sgemmSymbol,
  TILE_FIELDS,
} from "./blas_helper.ts";

/** What {@link enableBlas} found. */
export interface BlasStatus {
  /** True when matMuls go through the native library. */
  enabled: boolean;
  /** The library path in use, when enabled. */
  library?: string;
  /** Threads the library computes with. */
  threads?: number;
  /** Whether a helper thread shares the products (see {@link BLAS_PARALLEL_MIN}). */
  helper?: boolean;
  /** Why it is not enabled, or how it was found. */
  reason: string;
}

/** Library paths tried in order when `RECALIGN_BLAS` is not set. */
export const BLAS_CANDIDATES: readonly string[] = [
  // Debian/Ubuntu: libopenblas0-pthread (the OpenMP build crashed at exit under Deno).
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0",
  "/usr/lib/libopenblas.so.0",
  // macOS: Homebrew OpenBLAS, then Accelerate.
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  "/System/Library/Frameworks/Accelerate.framework/Accelerate",
];

const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

type Sgemm = (
  order: number,
  transA: number,
  transB: number,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

let status: BlasStatus = { enabled: false, reason: "not requested" };
let sgemm: Sgemm | undefined;

function envGet(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** Sets the library's thread count (OpenBLAS only). */
let setThreads: ((n: number) => void) | undefined;
/** Threads the library was last set to, and the most it may use. */
let currentThreads = 1;
let maxThreads = 1;

/**
 * Products below this many multiply-adds (m·n·k) run on one thread: at the shipped model's
 * sizes the threads' hand-off cost more than the second core gave (measured on the 2-core
 * machine: fwd_logp 1.6–2×, sdpo_step 1.2–1.5× faster on one thread; see docs/speed.md).
 */
export const BLAS_THREADING_MIN = 1 << 24;

/**
 * With the helper thread, products of at least this many multiply-adds (all batch items
 * together) are shared between the two threads; smaller ones cost less than waking the helper.
 */
export const BLAS_PARALLEL_MIN = 1 << 21;

/**
 * Experimental (`RECALIGN_BLAS_SHARE_LARGE=1`): products above {@link BLAS_THREADING_MIN} with
 * k ≤ 256 are also shared with the helper instead of the library's threads. Below OpenBLAS's
 * k-block (384 on this machine's kernels) its one- and two-thread drivers sum alike, so the
 * floats are the same.
 */
const SHARE_LARGE_MAX_K = 256;
const shareLarge = envGet("RECALIGN_BLAS_SHARE_LARGE") === "1";

/** Tiles per product the helper's table holds (per slot); a larger batch runs on one thread. */
const TILE_CAPACITY = 4096;

/** The helper thread's shared state, once it is started. */
let helper:
  | {
    ctrl: Int32Array;
    table: Float64Array;
    sgemm: ReturnType<typeof openSgemm>;
    gen: number;
  }
  | undefined;

/** Starts the helper thread (it reports ready through the control block, asynchronously). */
function startHelper(path: string): boolean {
  try {
    const ctrl = new Int32Array(new SharedArrayBuffer(CTRL.LENGTH * 4));
    const table = new Float64Array(
      new SharedArrayBuffer(2 * TILE_CAPACITY * TILE_FIELDS * 8),
    );
    const worker = new Worker(new URL("./blas_helper.ts", import.meta.url), {
      workerData: {
        recalignBlasHelper: true,
        path,
        ctrl: ctrl.buffer,
        table: table.buffer,
        capacity: TILE_CAPACITY,
      },
    });
    // The helper never keeps the process alive; it blocks in Atomics.wait between products.
    worker.unref();
    worker.on("error", () => helper = undefined);
    helper = { ctrl, table, sgemm: openSgemm(path), gen: 0 };
    return true;
  } catch {
    return false;
  }
}

/** One tile: C[m, n] = op(A)·op(B) at byte offsets of the wasm heap, with leading dims. */
export interface Tile {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  lda: number;
  ldb: number;
  ldc: number;
  a: number;
  b: number;
  c: number;
}

/**
 * Runs the tiles on the main thread and the helper: the tiles go into the shared table, the
 * helper is woken, both claim tiles until none is left, and the main thread waits until the
 * helper's last tile is done. `base` is the heap's address.
 */
function runShared(tiles: Tile[], base: number): void {
  const h = helper!;
  if (setThreads && currentThreads !== 1) setThreads(currentThreads = 1);
  const gen = h.gen = (h.gen + 1) & 0x7fff;
  const slot = gen & 1;
  tiles.forEach((t, i) => {
    const o = (slot * TILE_CAPACITY + i) * TILE_FIELDS;
    const row = h.table;
    row[o] = t.transA ? 1 : 0;
    row[o + 1] = t.transB ? 1 : 0;
    row[o + 2] = t.m;
    row[o + 3] = t.n;
    row[o + 4] = t.k;
    row[o + 5] = t.lda;
    row[o + 6] = t.ldb;
    row[o + 7] = t.ldc;
    row[o + 8] = base + t.a;
    row[o + 9] = base + t.b;
    row[o + 10] = base + t.c;
  });
  Atomics.store(h.ctrl, CTRL.COUNT + slot, tiles.length);
  Atomics.store(h.ctrl, CTRL.REMAINING + slot, tiles.length);
  Atomics.store(h.ctrl, CTRL.WORD, gen << 16);
  Atomics.store(h.ctrl, CTRL.GEN, gen);
  Atomics.notify(h.ctrl, CTRL.GEN);
  for (let i = claimTile(h.ctrl, gen); i >= 0; i = claimTile(h.ctrl, gen)) {
    runTile(h.sgemm, h.table, TILE_CAPACITY, slot, i);
    finishTile(h.ctrl, slot);
  }
  // The helper's last tile: spin a few microseconds (a futex wake-up costs more), then sleep.
  const spinUntil = performance.now() + 0.03;
  for (let spins = 0;; spins++) {
    const left = Atomics.load(h.ctrl, CTRL.REMAINING + slot);
    if (left === 0) break;
    if ((spins & 63) === 63 && performance.now() > spinUntil) {
      Atomics.wait(h.ctrl, CTRL.REMAINING + slot, left);
    }
  }
}

/**
 * The tiles of a batched product (byte offsets of A, B, C in the heap): one per batch item, or
 * for a single product up to four blocks of C's rows (or columns, when it has more of them),
 * cut at multiples of 16, the width of the library's kernels, each of at least
 * {@link BLAS_PARALLEL_MIN} multiply-adds.
 */
export function planTiles(
  plan: NonNullable<ReturnType<typeof planBatchMatMul>>,
  transA: boolean,
  transB: boolean,
  aOff: number,
  bOff: number,
  cOff: number,
): Tile[] {
  const { m, n, k, batch } = plan;
  const lda = transA ? m : k, ldb = transB ? k : n;
  const whole = (i: number): Tile => ({
    transA,
    transB,
    m,
    n,
    k,
    lda,
    ldb,
    ldc: n,
    a: aOff + (plan.aBatch === 1 ? 0 : i) * m * k * 4,
    b: bOff + (plan.bBatch === 1 ? 0 : i) * k * n * 4,
    c: cOff + i * m * n * 4,
  });
  if (batch > 1) return Array.from({ length: batch }, (_, i) => whole(i));
  // A single product in up to 4 blocks of rows (or columns), so that the main thread can take
  // the helper's share when the helper wakes late, and waits for at most one block. Every block
  // keeps at least BLAS_PARALLEL_MIN multiply-adds: OpenBLAS computes products below 100³ with
  // its small-matrix kernels, whose sums differ from the general kernel's.
  const t = whole(0);
  const byRows = m >= n, len = byRows ? m : n;
  const parts = Math.min(4, Math.floor(len / 16), Math.floor((m * n * k) / BLAS_PARALLEL_MIN));
  if (parts < 2) return [t];
  const tiles: Tile[] = [];
  for (let i = 0, from = 0; i < parts; i++) {
    const to = i === parts - 1 ? len : Math.round((len * (i + 1)) / parts / 16) * 16;
    if (byRows) {
      tiles.push({
        ...t,
        m: to - from,
        a: t.a + (transA ? from : from * lda) * 4,
        c: t.c + from * n * 4,
      });
    } else {
      tiles.push({
        ...t,
        n: to - from,
        b: t.b + (transB ? from * ldb : from) * 4,
        c: t.c + from * 4,
      });
    }
    from = to;
  }
  return tiles;
}

function openLibrary(path: string, threads: number): Sgemm {
  const lib = Deno.dlopen(path, {
    cblas_sgemm: sgemmSymbol("buffer"),
    openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  });
  const set = lib.symbols.openblas_set_num_threads;
  if (set) {
    setThreads = (n: number) => set(n);
    setThreads(threads);
  }
  currentThreads = maxThreads = threads;
  return lib.symbols.cblas_sgemm as unknown as Sgemm;
}

/** The current BLAS status (see {@link enableBlas}). */
export function blasStatus(): BlasStatus {
  return status;
}

/** C[m,n] = op(A)·op(B) with row-major float32 arrays, through the native library. */
export function blasSgemm(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  n: number,
  k: number,
  transA = false,
  transB = false,
): void {
  if (!sgemm) throw new Error("BLAS is not enabled");
  if (setThreads) {
    let want = m * n * k < BLAS_THREADING_MIN ? 1 : maxThreads;
    if (want > 1 && oneThread) {
      // The floats of `maxThreads` library threads, computed on this thread (see kPlan).
      const plan = kPlan(k);
      if (plan !== "threads") {
        if (currentThreads !== 1) setThreads(currentThreads = 1);
        sgemmInChunks(a, b, c, m, n, k, transA, transB, plan === "same" ? [k] : plan);
        return;
      }
      want = maxThreads;
    }
    if (want !== currentThreads) setThreads(currentThreads = want);
  }
  callSgemm(a, b, c, m, n, k, transA, transB, 0);
}

/**
 * Two engines (`engines.ts`) compute on one library thread each, yet a product above
 * {@link BLAS_THREADING_MIN} must give the floats one engine gets from the library's threads.
 * OpenBLAS's threaded driver cuts the sum over k into blocks of Q, the last 2Q or less into two
 * halves (the first rounded up); its one-thread driver rounds that half up to a multiple of 16
 * instead, so the two differ for most k above Q (measured: every k from 321 on that is not a
 * multiple of 32). Summing the threaded driver's blocks in one-thread calls (C = A₁B₁, then
 * C += A₂B₂, …; each block at most Q, so no call cuts it further) gives its floats bit for bit.
 * Q depends on the library and the CPU (320 for OpenBLAS 0.3.21's Cooperlake kernels), so the
 * plan for each k is found and checked once against a threaded product: "same" when one thread
 * already agrees, the blocks when a candidate Q reproduces it, else "threads" (the library's
 * threads, exact but sharing the cores with the other engine).
 */
let oneThread = false;
const kPlans = new Map<number, "same" | number[] | "threads">();
const Q_CANDIDATES = [320, 384, 256, 512, 448, 352, 288, 240, 192, 640, 768, 128];

/** The threaded driver's blocks of the sum over k, for a block size q. */
export function threadedKBlocks(k: number, q: number): number[] {
  const out: number[] = [];
  for (let rest = k; rest > 0;) {
    const c = rest >= 2 * q ? q : rest > q ? Math.ceil(rest / 2) : rest;
    out.push(c);
    rest -= c;
  }
  return out;
}

function kPlan(k: number): "same" | number[] | "threads" {
  const known = kPlans.get(k);
  if (known) return known;
  // Above OpenBLAS's own one-thread limit (m·n·k ≥ 2¹⁸), so that the threaded call is threaded.
  const m = 256, n = 128;
  let seed = 12345 + k;
  const random = (len: number) =>
    Float32Array.from({ length: len }, () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648 - 0.5;
    });
  const a = random(m * k), b = random(k * n);
  const threaded = new Float32Array(m * n), here = new Float32Array(m * n);
  setThreads!(currentThreads = maxThreads);
  callSgemm(a, b, threaded, m, n, k, false, false, 0);
  setThreads!(currentThreads = 1);
  const same = (blocks: number[]) => {
    sgemmInChunks(a, b, here, m, n, k, false, false, blocks);
    return here.every((x, i) => x === threaded[i]);
  };
  let plan: "same" | number[] | "threads" = "threads";
  if (same([k])) plan = "same";
  else {
    for (const q of Q_CANDIDATES) {
      const blocks = threadedKBlocks(k, q);
      if (blocks.length > 1 && same(blocks)) {
        plan = blocks;
        break;
      }
    }
  }
  kPlans.set(k, plan);
  return plan;
}

/**
 * C = op(A)·op(B) + beta·C, row-major; `ldK` is the stored k of A and B (the full k when this
 * call sums over a block of it).
 */
function callSgemm(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  beta: number,
  ldK = k,
): void {
  sgemm!(
    ROW_MAJOR,
    transA ? TRANS : NO_TRANS,
    transB ? TRANS : NO_TRANS,
    m,
    n,
    k,
    1,
    a,
    transA ? m : ldK,
    b,
    transB ? ldK : n,
    beta,
    c,
    n,
  );
}

/** C = Σ over the blocks of k of op(A)[:, block]·op(B)[block, :], in order, one call each. */
function sgemmInChunks(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  blocks: number[],
): void {
  let o = 0;
  blocks.forEach((len, i) => {
    // op(A)[:, o:o+len]: columns of row-major A [m, k], or rows of Aᵀ stored [k, m].
    const ai = transA ? a.subarray(o * m) : a.subarray(o);
    // op(B)[o:o+len, :]: rows of B [k, n], or columns of Bᵀ stored [n, k].
    const bi = transB ? b.subarray(o) : b.subarray(o * n);
    callSgemm(ai, bi, c, m, n, len, transA, transB, i === 0 ? 0 : 1, k);
    o += len;
  });
}

/** The plan {@link blasSgemm} follows for a product above the threading limit with this k. */
export function kBlockPlan(k: number): "same" | number[] | "threads" | undefined {
  return setThreads ? kPlan(k) : undefined;
}

/** The library's own product on `threads` threads (tests and benchmarks compare with it). */
export function librarySgemm(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  threads: number,
): void {
  if (!sgemm) throw new Error("BLAS is not enabled");
  if (setThreads && threads !== currentThreads) setThreads(currentThreads = threads);
  callSgemm(a, b, c, m, n, k, transA, transB, 0);
}

/**
 * For two engines: while `on`, compute every product on one library thread, with the floats of
 * the library's threads (see {@link threadedKBlocks}); the worker engine keeps it on, the main
 * thread while the worker computes. Returns false (and changes nothing) without an
 * OpenBLAS-style thread setting.
 */
export function computeOnOneThread(on = true): boolean {
  if (!setThreads) return false;
  oneThread = on;
  return true;
}

/**
 * Route the wasm backend's BatchMatMul through a native BLAS. Idempotent. Returns the status;
 * never throws for a missing library or permission (the wasm kernel stays in place).
 */
export function enableBlas(opts: { library?: string; threads?: number } = {}): BlasStatus {
  if (status.enabled) return status;
  const requested = opts.library ?? envGet("RECALIGN_BLAS");
  if (requested === "off" || requested === "0") {
    status = { enabled: false, reason: "disabled by RECALIGN_BLAS=off" };
    return status;
  }
  const threads = opts.threads ??
    Math.max(1, Number(envGet("RECALIGN_BLAS_THREADS")) || navigator.hardwareConcurrency || 1);
  const candidates = requested ? [requested] : BLAS_CANDIDATES;
  let lastError = "";
  for (const path of candidates) {
    try {
      Deno.statSync(path);
    } catch (e) {
      if (e instanceof Deno.errors.PermissionDenied || (e as Error).name === "NotCapable") {
        status = {
          enabled: false,
          reason: `no read permission to look for a BLAS library (${path})`,
        };
        return status;
      }
      lastError = `${path} not found`;
      continue;
    }
    try {
      sgemm = openLibrary(path, threads);
      status = {
        enabled: true,
        library: path,
        threads,
        reason: requested ? "RECALIGN_BLAS" : "found",
      };
      break;
    } catch (e) {
      lastError = `${path}: ${(e as Error).message}`;
      if (e instanceof Deno.errors.PermissionDenied || (e as Error).name === "NotCapable") {
        status = { enabled: false, reason: "needs --allow-ffi to call a native BLAS" };
        return status;
      }
    }
  }
  if (!sgemm) {
    status = {
      enabled: false,
      reason: requested
        ? `RECALIGN_BLAS=${requested} could not be loaded (${lastError})`
        : "no BLAS library found (Debian: apt-get install libopenblas0-pthread)",
    };
    return status;
  }
  registerWasmKernel();
  if (envGet("RECALIGN_BLAS_HELPER") === "1") startBlasHelper();
  return status;
}

/**
 * Start the helper thread that shares one-thread products (off by default: on the idle 2-core
 * machine it changed step times by −7 % to +5 %, within the benchmark's noise; see
 * docs/speed.md). `RECALIGN_BLAS_HELPER=1` starts it with the library. Idempotent; false when
 * BLAS is off or has one thread.
 */
export function startBlasHelper(): boolean {
  if (helper) return true;
  if (!status.enabled || maxThreads < 2 || !startHelper(status.library!)) return false;
  status = { ...status, helper: true };
  return true;
}

/**
 * How much faster the library computes a 768³ product on all its threads than on one (median of
 * 5 each; undefined without the library or with one thread). For benchmarks: on a 2-core
 * virtual machine this drops from ~2.0 to ~1.5 when the host gives the second core to others,
 * which steady two-thread PyTorch steps do not survive (docs/speed.md).
 */
export function blasScaling(): number | undefined {
  if (!sgemm || !setThreads || maxThreads < 2) return undefined;
  const n = 768;
  const a = new Float32Array(n * n).fill(0.5), c = new Float32Array(n * n);
  const time = (threads: number) => {
    setThreads!(currentThreads = threads);
    const ts: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      sgemm!(ROW_MAJOR, NO_TRANS, NO_TRANS, n, n, n, 1, a, n, a, n, 0, c, n);
      ts.push(performance.now() - t0);
    }
    return ts.sort((x, y) => x - y)[2];
  };
  time(maxThreads); // warm-up
  return Math.round((100 * time(1)) / time(maxThreads)) / 100;
}

/** True when the helper thread is up and waiting for products. */
export function blasHelperReady(): boolean {
  return helper !== undefined && Atomics.load(helper.ctrl, CTRL.READY) === 1;
}

// ---------------------------------------------------------------- the kernel

interface WasmTensorData {
  memoryOffset: number;
}
interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(id: unknown): WasmTensorData };
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
}

function registerWasmKernel(): void {
  const original = tf.getKernel("BatchMatMul", "wasm");
  if (!original) return;
  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel({
    kernelName: "BatchMatMul",
    backendName: "wasm",
    setupFunc: original.setupFunc,
    kernelFunc: (args) => {
      const { inputs, attrs } = args;
      const backend = args.backend as unknown as WasmBackendLike;
      const a = inputs.a as tf.TensorInfo;
      const b = inputs.b as tf.TensorInfo;
      const { transposeA, transposeB } = attrs as unknown as {
        transposeA: boolean;
        transposeB: boolean;
      };
      const plan = planBatchMatMul(a.shape, b.shape, transposeA, transposeB);
      if (!plan || a.dtype !== "float32" || b.dtype !== "float32") {
        return original.kernelFunc(args);
      }
      const out = backend.makeOutput(plan.outShape, "float32");
      if (plan.m * plan.n === 0) return out;
      // Views are made after makeOutput: allocating can grow (and detach) the wasm memory.
      const buf = backend.wasm.HEAPU8.buffer;
      const aOff = backend.dataIdMap.get(a.dataId).memoryOffset;
      const bOff = backend.dataIdMap.get(b.dataId).memoryOffset;
      const cOff = backend.dataIdMap.get(out.dataId).memoryOffset;
      const aSize = plan.m * plan.k, bSize = plan.k * plan.n, cSize = plan.m * plan.n;
      const perItem = plan.m * plan.n * plan.k;
      if (
        (perItem < BLAS_THREADING_MIN || (shareLarge && plan.k <= SHARE_LARGE_MAX_K)) &&
        plan.batch * perItem >= BLAS_PARALLEL_MIN &&
        plan.k > 0 && plan.batch <= TILE_CAPACITY && blasHelperReady()
      ) {
        const tiles = planTiles(plan, transposeA, transposeB, aOff, bOff, cOff);
        if (tiles.length > 1) {
          const heap = Deno.UnsafePointer.of(backend.wasm.HEAPU8);
          runShared(tiles, Number(Deno.UnsafePointer.value(heap)));
          return out;
        }
      }
      for (let i = 0; i < plan.batch; i++) {
        const ai = plan.aBatch === 1 ? 0 : i, bi = plan.bBatch === 1 ? 0 : i;
        blasSgemm(
          new Float32Array(buf, aOff + ai * aSize * 4, aSize),
          new Float32Array(buf, bOff + bi * bSize * 4, bSize),
          new Float32Array(buf, cOff + i * cSize * 4, cSize),
          plan.m,
          plan.n,
          plan.k,
          transposeA,
          transposeB,
        );
      }
      return out;
    },
  });
}

/** Shapes of a batched product, or undefined when the batch dims need a general broadcast. */
export function planBatchMatMul(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): {
  m: number;
  n: number;
  k: number;
  batch: number;
  aBatch: number;
  bBatch: number;
  outShape: number[];
} | undefined {
  if (aShape.length < 2 || bShape.length < 2) return undefined;
  const ra = aShape.length, rb = bShape.length;
  const m = transposeA ? aShape[ra - 1] : aShape[ra - 2];
  const k = transposeA ? aShape[ra - 2] : aShape[ra - 1];
  const k2 = transposeB ? bShape[rb - 1] : bShape[rb - 2];
  const n = transposeB ? bShape[rb - 2] : bShape[rb - 1];
  if (k !== k2) return undefined; // let the original kernel report the error
  const aBatchShape = aShape.slice(0, -2), bBatchShape = bShape.slice(0, -2);
  const aBatch = aBatchShape.reduce((x, y) => x * y, 1);
  const bBatch = bBatchShape.reduce((x, y) => x * y, 1);
  let outBatchShape: number[];
  if (aBatch === bBatch && (aBatchShape.length === bBatchShape.length || aBatch === 1)) {
    if (
      aBatchShape.some((d, i) => bBatchShape.length === aBatchShape.length && d !== bBatchShape[i])
    ) return undefined;
    outBatchShape = aBatchShape.length >= bBatchShape.length ? aBatchShape : bBatchShape;
  } else if (bBatch === 1) outBatchShape = aBatchShape;
  else if (aBatch === 1) outBatchShape = bBatchShape;
  else return undefined;
  const batch = Math.max(aBatch, bBatch);
  return { m, n, k, batch, aBatch, bBatch, outShape: [...outBatchShape, m, n] };
}
