/**
 * Two engines on a two-core machine: the main thread and one worker thread, each with its own
 * TensorFlow.js wasm heap, run the micro-batches of a training step (and of scoring) two at a
 * time. The worker holds a replica of the model: the same weights, the same adapters, the same
 * code (`engine_worker.ts` calls the functions the main thread calls), so a micro-batch gives
 * the same floats on either engine; the step adds the gradients in micro-batch order, as one
 * engine does. Only whole micro-batches move: how a step is cut is the user's `microBatchSize`,
 * never the engine count.
 *
 * Each engine calls its own copy of the BLAS library (the worker loads a temporary copy of the
 * main thread's library file, removed once loaded), so that neither changes the other's thread
 * setting. While both compute, each runs on one library thread: a product that one engine gives
 * to the library's threads is summed over k in the threaded driver's blocks instead (`blas.ts`,
 * checked once per k against a threaded call), so its floats are those of one engine too; the
 * main thread alone keeps the library's threads. `RECALIGN_ENGINES=1`
 * keeps one engine (docs/speed.md).
 *
 * The main thread waits for the worker's results on shared memory (`Atomics.wait`), so that the
 * synchronous scoring functions stay synchronous.
 *
 * @module
 */
import { isMainThread, Worker } from "node:worker_threads";
import type * as tf from "@tensorflow/tfjs";
import { ConfigError, RecalignError } from "./errors.ts";
import type { LlamaModel } from "./model.ts";
import { blasStatus, computeOnOneThread } from "./blas.ts";

function envGet(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

/** True inside the worker engine (its own scoring never dispatches further). */
export const IN_ENGINE_WORKER = !isMainThread;

/**
 * Engines this process computes with: `RECALIGN_ENGINES` (1 or 2), else 2 on a machine with at
 * least two cores, else 1. Always 1 inside a worker.
 */
export function enginesWanted(): number {
  if (!isMainThread) return 1;
  const raw = envGet("RECALIGN_ENGINES");
  if (raw !== undefined) {
    if (raw !== "1" && raw !== "2") {
      throw new ConfigError("RECALIGN_ENGINES", `should be 1 or 2, got "${raw}"`);
    }
    return Number(raw);
  }
  return (navigator.hardwareConcurrency ?? 1) >= 2 ? 2 : 1;
}

/** Bytes a job's reply may use for its JSON part. */
const JSON_BYTES = 1 << 16;

/** A job posted to the worker; `wait()` blocks until its reply. */
export interface Ticket {
  /** The reply: the JSON part and the float part (a view of shared memory; copy to keep). */
  wait(): { json: unknown; floats: Float32Array };
}

/** What the replica is built from (main → worker). */
export interface ReplicaBuild {
  config: LlamaModel["config"];
  /** HF name, shape, values (HF layout), including `lm_head.weight` even when tied. */
  weights: [string, number[], Float32Array][];
  adapters: ReplicaAdapter[];
}

/** One adapter of the replica: the linear's HF module name, rank, scaling, dropout, values. */
export interface ReplicaAdapter {
  name: string;
  r: number;
  scaling: number;
  dropout: number;
  aT: Float32Array;
  bT: Float32Array;
}

const ids = new WeakMap<object, number>();
let nextId = 1;
/** A number for a tensor's current data (an optimizer step or `assign` gives a new one). */
function dataNumber(t: tf.Tensor | undefined): number {
  if (!t) return 0;
  const d = t.dataId as object;
  let n = ids.get(d);
  if (n === undefined) ids.set(d, n = nextId++);
  return n;
}

/** Models with more weights in their linear layers than this stay on one engine. */
export const REPLICA_MAX_WEIGHTS = 1 << 26;

/**
 * Why a model cannot run on the worker (undefined when it can): full fine-tuning (every weight
 * changes each step), merged adapters and models above {@link REPLICA_MAX_WEIGHTS} stay on one
 * engine.
 */
export function replicaUnsupported(model: LlamaModel): string | undefined {
  const params = model.linears().values().reduce(
    (a, lin) => a + lin.inFeatures * lin.outFeatures,
    0,
  );
  if (params > REPLICA_MAX_WEIGHTS) {
    return `a model of ${Math.round(params / 1e6)}M weights (its replica would double the memory)`;
  }
  for (const lin of model.linears().values()) {
    if (lin.baseTrainable) return "full fine-tuning";
    if (lin.merged) return "a merged adapter";
  }
  return undefined;
}

/** The frozen part's identity: config, scope, every base tensor's data, the adapters' shape. */
function baseSignature(model: LlamaModel): string {
  const parts: (string | number)[] = [model.scope];
  parts.push(dataNumber(model.embed), dataNumber(model.norm));
  for (const b of model.layers) {
    parts.push(
      dataNumber(b.inputNorm),
      dataNumber(b.postNorm),
      dataNumber(b.qNorm),
      dataNumber(b.kNorm),
    );
  }
  for (const [name, lin] of model.linears()) {
    const ad = lin.adapter;
    parts.push(
      name,
      dataNumber(lin.weightT),
      dataNumber(lin.bias),
      ad ? `${ad.aT.shape[1]}:${ad.scaling}:${ad.dropout}` : "-",
    );
  }
  return parts.join(",");
}

/** The worker engine. One per process, started on first use. */
export class Engine {
  private readonly worker: Worker;
  private readonly state: Int32Array;
  private base?: string;
  private adapterData = new Map<string, [number, number]>();
  private inFlight = 0;
  /** Set when the worker failed; the engine is then not used again. */
  failed?: string;

  /** The worker's copy of the BLAS library, removed once the worker has loaded it. */
  private blasCopy?: string;

  /** `blas`: the main thread's library and threads (the worker loads a copy), or none. */
  constructor(blas?: { library: string; threads: number }) {
    this.state = new Int32Array(new SharedArrayBuffer(8));
    if (blas) {
      this.blasCopy = Deno.makeTempFileSync({ prefix: "recalign-blas-", suffix: ".so" });
      Deno.copyFileSync(blas.library, this.blasCopy);
    }
    this.worker = new Worker(new URL("./engine_worker.ts", import.meta.url), {
      workerData: {
        recalignEngine: true,
        state: this.state.buffer,
        blas: blas ? { library: this.blasCopy, threads: blas.threads } : undefined,
      },
    });
    // The worker never keeps the process alive.
    this.worker.unref();
    this.worker.on("error", (e: Error) => this.failed = e.message);
  }

  /** Blocks until the worker has loaded its backend (true) or failed (false). */
  ready(): boolean {
    const deadline = performance.now() + 120_000;
    while (Atomics.load(this.state, 0) === 0 && performance.now() < deadline) {
      Atomics.wait(this.state, 0, 0, 1000);
    }
    const s = Atomics.load(this.state, 0);
    if (this.blasCopy) {
      try {
        Deno.removeSync(this.blasCopy);
      } catch {
        // already gone
      }
      this.blasCopy = undefined;
    }
    if (s !== 1 && !this.failed) {
      this.failed = s === 0
        ? "the worker did not start within 120 s"
        : "the worker failed to start";
    }
    return s === 1;
  }

  /** True while a job is posted and not yet collected (nested work then stays local). */
  get busy(): boolean {
    return this.inFlight > 0;
  }

  /** Bring the replica up to `model`'s current weights (sends only what changed). */
  sync(model: LlamaModel): void {
    const base = baseSignature(model);
    if (base !== this.base) {
      const weights: ReplicaBuild["weights"] = [];
      const named = model.namedWeights();
      for (const [name, t] of named) {
        weights.push([name, t.shape, t.dataSync() as Float32Array]);
        t.dispose();
      }
      if (model.config.tie_word_embeddings) {
        weights.push([
          "lm_head.weight",
          [model.lmHead.outFeatures, model.lmHead.inFeatures],
          model.lmHead.weight().dataSync() as Float32Array,
        ]);
      }
      const adapters: ReplicaAdapter[] = [];
      this.adapterData.clear();
      for (const [name, lin] of model.linears()) {
        const ad = lin.adapter;
        if (!ad) continue;
        adapters.push({
          name,
          r: ad.aT.shape[1]!,
          scaling: ad.scaling,
          dropout: ad.dropout,
          aT: ad.aT.dataSync() as Float32Array,
          bT: ad.bT.dataSync() as Float32Array,
        });
        this.adapterData.set(name, [dataNumber(ad.aT), dataNumber(ad.bT)]);
      }
      const build: ReplicaBuild = { config: model.config, weights, adapters };
      this.worker.postMessage({ type: "build", build });
      this.base = base;
      return;
    }
    const changed: [string, Float32Array, Float32Array][] = [];
    for (const [name, lin] of model.linears()) {
      const ad = lin.adapter;
      if (!ad) continue;
      const now: [number, number] = [dataNumber(ad.aT), dataNumber(ad.bT)];
      const was = this.adapterData.get(name);
      if (was && was[0] === now[0] && was[1] === now[1]) continue;
      changed.push([name, ad.aT.dataSync() as Float32Array, ad.bT.dataSync() as Float32Array]);
      this.adapterData.set(name, now);
    }
    if (!changed.length) return;
    // The values go through shared memory: copying them into a message costs milliseconds.
    const total = changed.reduce((a, [, x, y]) => a + x.length + y.length, 0);
    const values = new Float32Array(new SharedArrayBuffer(total * 4));
    const names: [string, number, number][] = [];
    let o = 0;
    for (const [name, aT, bT] of changed) {
      values.set(aT, o);
      values.set(bT, o + aT.length);
      names.push([name, aT.length, bT.length]);
      o += aT.length + bT.length;
    }
    this.worker.postMessage({ type: "adapters", names, values: values.buffer });
  }

  /** Post a job whose reply holds at most `floats` numbers. */
  post(job: unknown, floats: number): Ticket {
    jobsPosted++;
    const ctrl = new Int32Array(new SharedArrayBuffer(8));
    const out = new SharedArrayBuffer(floats * 4 + JSON_BYTES);
    this.worker.postMessage({ type: "job", job, ctrl: ctrl.buffer, out });
    // Meanwhile this thread's products run on one library thread (the same floats).
    if (this.inFlight++ === 0) computeOnOneThread(true);
    let done = false;
    return {
      wait: () => {
        while (Atomics.load(ctrl, 0) === 0) Atomics.wait(ctrl, 0, 0, 1000);
        if (!done) {
          done = true;
          if (--this.inFlight === 0) computeOnOneThread(false);
        }
        const got = readReply(ctrl.buffer as SharedArrayBuffer, out);
        const json = got.json as { error?: string };
        if (json && typeof json === "object" && "error" in json && json.error) {
          this.failed = json.error;
          throw new RecalignError(`the second engine failed: ${json.error}`);
        }
        return got;
      },
    };
  }
}

/** JSON keeps NaN and ±Infinity (a loss or metric may be one) as `{"$number": "NaN"}`. */
function toJson(_key: string, v: unknown): unknown {
  return typeof v === "number" && !Number.isFinite(v) ? { $number: String(v) } : v;
}

function fromJson(_key: string, v: unknown): unknown {
  return v !== null && typeof v === "object" && "$number" in v
    ? Number((v as { $number: string }).$number)
    : v;
}

/** The main thread's side of {@link reply}: the JSON part and a view of the float part. */
export function readReply(
  ctrlBuf: SharedArrayBuffer,
  out: SharedArrayBuffer,
): { json: unknown; floats: Float32Array } {
  const ctrl = new Int32Array(ctrlBuf);
  const cap = (out.byteLength - JSON_BYTES) / 4;
  const text = new TextDecoder().decode(new Uint8Array(out, cap * 4, ctrl[0] - 1).slice());
  return { json: JSON.parse(text, fromJson), floats: new Float32Array(out, 0, ctrl[1]) };
}

/**
 * The worker side of a reply: floats first, then the JSON text; the control word becomes the
 * JSON length + 1 (never 0), then the waiting main thread is woken.
 */
export function reply(
  ctrlBuf: SharedArrayBuffer,
  out: SharedArrayBuffer,
  json: unknown,
  floats?: Float32Array,
): void {
  const ctrl = new Int32Array(ctrlBuf);
  const cap = (out.byteLength - JSON_BYTES) / 4;
  let body = json;
  if (floats && floats.length > cap) {
    body = { error: `reply of ${floats.length} numbers exceeds the ${cap} reserved` };
  } else if (floats) new Float32Array(out, 0, floats.length).set(floats);
  let bytes = new TextEncoder().encode(JSON.stringify(body ?? null, toJson));
  if (bytes.length > JSON_BYTES) {
    bytes = new TextEncoder().encode(
      JSON.stringify({ error: `reply of ${bytes.length} JSON bytes exceeds ${JSON_BYTES}` }),
    );
  }
  new Uint8Array(out, cap * 4, bytes.length).set(bytes);
  ctrl[1] = floats && floats.length <= cap ? floats.length : 0;
  Atomics.store(ctrl, 0, bytes.length + 1);
  Atomics.notify(ctrl, 0);
}

let engine: Engine | undefined;
let engineTried = false;
let jobsPosted = 0;

/** Jobs posted to the worker engine so far in this process (0 when none was used). */
export function engineJobs(): number {
  return jobsPosted;
}
let announced = false;

/**
 * The worker engine for `model`, synced to its current weights, or undefined when work should
 * stay on this thread: one engine wanted, not the wasm backend, inside the worker, the engine
 * busy or failed, or a model the replica does not support.
 */
export function secondEngine(
  model: LlamaModel,
  backend: string | undefined,
): Engine | undefined {
  if (backend !== "wasm" || enginesWanted() < 2) return undefined; // 1 inside the worker
  if (replicaUnsupported(model)) return undefined;
  if (!engineTried) {
    engineTried = true;
    try {
      const blas = blasStatus();
      const e = new Engine(
        blas.enabled && blas.library
          ? { library: blas.library, threads: blas.threads ?? 1 }
          : undefined,
      );
      if (e.ready()) engine = e;
      else warnOnce(`second engine unavailable (${e.failed}); computing on one`);
    } catch (e) {
      warnOnce(`second engine unavailable (${(e as Error).message}); computing on one`);
    }
  }
  if (!engine || engine.failed || engine.busy) {
    if (engine?.failed) warnOnce(`second engine stopped (${engine.failed}); computing on one`);
    return undefined;
  }
  engine.sync(model);
  return engine;
}

function warnOnce(msg: string): void {
  if (announced) return;
  announced = true;
  console.error(`[recalign] ${msg}`);
}
