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
 * The library is found at run time: `RECALIGN_BLAS` (a path, or `off`), else the usual
 * OpenBLAS / Accelerate locations. Needs `--allow-ffi`; without it, or without a library, the
 * wasm kernels are used and {@link enableBlas} says why.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** What {@link enableBlas} found. */
export interface BlasStatus {
  /** True when matMuls go through the native library. */
  enabled: boolean;
  /** The library path in use, when enabled. */
  library?: string;
  /** Threads the library computes with. */
  threads?: number;
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

function openLibrary(path: string, threads: number): Sgemm {
  const lib = Deno.dlopen(path, {
    cblas_sgemm: {
      parameters: [
        "i32",
        "i32",
        "i32",
        "i32",
        "i32",
        "i32",
        "f32",
        "buffer",
        "i32",
        "buffer",
        "i32",
        "f32",
        "buffer",
        "i32",
      ],
      result: "void",
    },
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
    const want = m * n * k < BLAS_THREADING_MIN ? 1 : maxThreads;
    if (want !== currentThreads) setThreads(currentThreads = want);
  }
  sgemm(
    ROW_MAJOR,
    transA ? TRANS : NO_TRANS,
    transB ? TRANS : NO_TRANS,
    m,
    n,
    k,
    1,
    a,
    transA ? m : k,
    b,
    transB ? k : n,
    0,
    c,
    n,
  );
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
  return status;
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
