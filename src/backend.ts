/**
 * Picks the TensorFlow.js backend: `wasm` (default; its .wasm files load from the npm
 * package, no network), `cpu` (pure JS fallback), or `tensorflow` (native libtensorflow via
 * `@tensorflow/tfjs-node-gpu` / `@tensorflow/tfjs-node`, only when the user has installed it).
 * Chosen by the `--backend` flag or the `RECALIGN_BACKEND` environment variable.
 *
 * @module
 */
// The union package: tfjs-core alone registers no gradients, and its ESM build does not load
// under Deno. deno.json maps "@tensorflow/tfjs-core" to the same package (one engine).
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { ConfigError, RecalignError } from "./errors.ts";
import { computeOnOneThread, enableBlas } from "./blas.ts";
import { enableFusedKernels } from "./fused.ts";
import { enginesWanted, IN_ENGINE_WORKER } from "./engines.ts";

/** Backend names a user can ask for. `auto` = tensorflow if installed, else wasm. */
export const BACKENDS = ["auto", "wasm", "cpu", "tensorflow"] as const;
/** A backend name. */
export type BackendName = typeof BACKENDS[number];

/** What was chosen, recorded in every result. */
export interface BackendInfo {
  /** The tfjs backend in use (`wasm`, `cpu`, `tensorflow`). */
  backend: string;
  /** Whether the wasm backend uses SIMD. */
  simd: boolean;
  /** Threads the backend computes with (wasm under Deno: 1). */
  threads: number;
  /** tfjs version. */
  tfjsVersion: string;
  /** Why this backend was chosen, in words. */
  reason: string;
  /** Native BLAS used for matMul ("off" or why not, when not). */
  blas: string;
  /**
   * Engines computing micro-batches side by side: 2 = this thread and a worker with its own
   * wasm heap (`RECALIGN_ENGINES`; see engines.ts), 1 = this thread only.
   */
  engines: number;
}

let current: BackendInfo | undefined;

// An op run before initBackend() would meet tfjs's "backend 'wasm' has not yet been
// initialized" (wasm loads asynchronously). Every op reaches the engine's backend through one
// getter; before any backend is set, it says in one line what to do instead.
{
  const engine = tf.engine() as unknown as { backendInstance: unknown };
  const proto = Object.getPrototypeOf(engine);
  const getter = Object.getOwnPropertyDescriptor(proto, "backend")?.get;
  if (getter) {
    Object.defineProperty(engine, "backend", {
      configurable: true,
      get() {
        if (!current && engine.backendInstance == null) {
          throw new RecalignError(
            "TensorFlow.js has no backend yet: `await initBackend()` (from recalign's mod.ts) " +
              "first; the async entry points (loadPretrained, train, the experiment runners) do it " +
              "themselves",
          );
        }
        return getter.call(engine);
      },
    });
  }
}

function envBackend(): string | undefined {
  try {
    return Deno.env.get("RECALIGN_BACKEND") || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

async function tryNative(): Promise<string | undefined> {
  for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
    try {
      // Only a package the user installed into node_modules counts: never fetch at run time.
      const dir = `${Deno.cwd()}/node_modules/${pkg}`;
      await Deno.stat(dir);
      await import(`file://${dir}/dist/index.js`);
      if (tf.findBackend("tensorflow")) return pkg;
    } catch {
      // not installed or not loadable: fall through
    }
  }
  return undefined;
}

/**
 * Initialise the backend (once per process; later calls with the same name return the
 * same info). `name` defaults to `RECALIGN_BACKEND`, then `auto`. On wasm, matMul goes
 * through a native BLAS when one is found (`blas: false` to keep the wasm kernel) and the
 * fused kernels of `fused.ts` are registered (`fused: false` to keep tfjs's own ops).
 */
export async function initBackend(
  name?: string,
  opts: { quiet?: boolean; blas?: boolean; fused?: boolean } = {},
): Promise<BackendInfo> {
  const requested = (name ?? envBackend() ?? "auto") as BackendName;
  if (!BACKENDS.includes(requested)) {
    throw new ConfigError(
      "backend",
      `unknown backend "${requested}"; allowed: ${BACKENDS.join(", ")}`,
    );
  }
  if (current && (requested === "auto" || requested === current.backend)) return current;
  let reason = "";
  let chosen: string = requested;
  if (requested === "tensorflow" || requested === "auto") {
    const pkg = await tryNative();
    if (pkg) {
      chosen = "tensorflow";
      reason = `native backend from ${pkg}`;
    } else if (requested === "tensorflow") {
      throw new ConfigError(
        "backend",
        "tensorflow backend requested but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node " +
          "is installed in ./node_modules (see README, 'GPU and native backends')",
      );
    } else {
      chosen = "wasm";
      reason = "default (no native tfjs-node installed)";
    }
  } else {
    reason = name ? "--backend flag" : "RECALIGN_BACKEND";
  }
  const ok = await tf.setBackend(chosen);
  if (!ok) {
    if (chosen !== "wasm") {
      throw new ConfigError("backend", `backend "${chosen}" failed to initialise`);
    }
    await tf.setBackend("cpu");
    chosen = "cpu";
    reason = "wasm failed to initialise; fell back to cpu";
  }
  await tf.ready();
  const simd = chosen === "wasm"
    ? Boolean(await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"))
    : false;
  const mt = chosen === "wasm"
    ? Boolean(await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"))
    : false;
  let blas = "off (not the wasm backend)";
  if (chosen === "wasm") {
    const st = opts.blas === false ? { enabled: false, reason: "disabled" } : enableBlas();
    blas = st.enabled ? `${st.library} (${st.threads} threads)` : `off: ${st.reason}`;
    // The worker engine computes on one library thread, with the floats of the library's
    // threads; so does the main thread while the worker computes (engines.ts).
    if (st.enabled && IN_ENGINE_WORKER) computeOnOneThread();
    if (st.enabled && enginesWanted() > 1) {
      blas = `${st.library} (${st.threads} threads; one per engine while both compute)`;
    }
    if (opts.fused !== false) enableFusedKernels();
  }
  current = {
    backend: tf.getBackend(),
    simd,
    threads: chosen === "wasm" ? (mt ? navigator.hardwareConcurrency : 1) : 1,
    tfjsVersion: tf.version_core,
    reason,
    blas,
    engines: chosen === "wasm" ? enginesWanted() : 1,
  };
  if (!opts.quiet) {
    console.error(
      `[recalign] backend: ${current.backend} (${reason}; simd=${current.simd}, threads=${current.threads}; ` +
        `matMul BLAS: ${blas}; engines: ${current.engines})`,
    );
  }
  return current;
}

/**
 * {@link initBackend} with its defaults unless a backend is already initialised: what the
 * library's async entry points (`loadPretrained`, `train`, the experiment runners) await first.
 */
export async function ensureBackend(): Promise<BackendInfo> {
  return current ?? await initBackend();
}

/** The backend chosen by {@link initBackend}, or undefined before it ran. */
export function backendInfo(): BackendInfo | undefined {
  return current;
}

export { tf };

/** The result of a {@link customOp} body: forward value and its hand-written gradient. */
export interface CustomOpResult {
  value: tf.Tensor;
  gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[];
}

/**
 * Typed wrapper of `tf.customGrad`: `body(inputs, save)` computes the value and returns the
 * gradient function (one gradient per input, in order).
 */
export function customOp(
  body: (inputs: tf.Tensor[], save: tf.GradSaveFunc) => CustomOpResult,
): (...inputs: tf.Tensor[]) => tf.Tensor {
  const f = tf.customGrad(
    ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const save = args.pop() as tf.GradSaveFunc;
      return body(args as tf.Tensor[], save);
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return (...inputs: tf.Tensor[]) => f(...inputs);
}
