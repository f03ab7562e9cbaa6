/**
 * The worker side of `engines.ts`: loads the wasm backend (one BLAS thread), keeps a replica of
 * the main thread's model, and runs the jobs it is sent with the functions the main thread
 * runs (`scoreSlices`, `microBatchGradients` of `train.ts`), replying on shared memory.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";
import { initBackend, tf } from "./backend.ts";
import { enableBlas } from "./blas.ts";
import { type ReplicaAdapter, type ReplicaBuild, reply } from "./engines.ts";
import { LlamaModel, variableKey } from "./model.ts";
import { Rng } from "./rng.ts";
import { type GradientJob, microBatchGradients, type ScoreJob, scoreSlices } from "./train.ts";

const state = new Int32Array(workerData.state as SharedArrayBuffer);
const FAULT_ENV = "RECALIGN_ENGINE_FAULT";
let model: LlamaModel | undefined;
let buildError: string | undefined;

function build(b: ReplicaBuild): void {
  model?.dispose();
  model = undefined;
  const weights = new Map<string, tf.Tensor>();
  for (const [name, shape, data] of b.weights) weights.set(name, tf.tensor(data, shape));
  const head = b.config.tie_word_embeddings ? weights.get("lm_head.weight") : undefined;
  if (head) weights.delete("lm_head.weight");
  const m = LlamaModel.fromWeights(b.config, weights);
  if (head) {
    m.lmHead.setWeight(head as tf.Tensor2D);
    head.dispose();
  }
  const linears = m.linears();
  for (const ad of b.adapters) {
    const lin = linears.get(ad.name);
    if (!lin) throw new Error(`replica has no linear "${ad.name}"`);
    lin.addAdapter({
      r: ad.r,
      lora_alpha: ad.r,
      lora_dropout: ad.dropout,
      target_modules: [ad.name.split(".").at(-1)!],
      seed: 0,
    }, new Rng(0));
    lin.adapter!.scaling = ad.scaling;
    setAdapter(m, ad);
  }
  model = m;
}

function setAdapter(m: LlamaModel, ad: Pick<ReplicaAdapter, "name" | "aT" | "bT">): void {
  const a = m.linears().get(ad.name)?.adapter;
  if (!a) throw new Error(`replica has no adapter on "${ad.name}"`);
  a.aT.assign(tf.tensor(ad.aT, a.aT.shape));
  a.bT.assign(tf.tensor(ad.bT, a.bT.shape));
}

type Message =
  | { type: "build"; build: ReplicaBuild }
  | { type: "adapters"; names: [string, number, number][]; values: SharedArrayBuffer }
  | {
    type: "job";
    job: ScoreJob | GradientJob;
    ctrl: SharedArrayBuffer;
    out: SharedArrayBuffer;
  };

async function onMessage(msg: Message): Promise<void> {
  if (msg.type === "build") {
    try {
      build(msg.build);
      buildError = undefined;
    } catch (e) {
      buildError = `building the replica: ${(e as Error).message}`;
    }
    return;
  }
  if (msg.type === "adapters") {
    try {
      const values = new Float32Array(msg.values);
      let o = 0;
      for (const [name, na, nb] of msg.names) {
        if (model) {
          setAdapter(model, {
            name,
            aT: values.slice(o, o + na),
            bT: values.slice(o + na, o + na + nb),
          });
        }
        o += na + nb;
      }
    } catch (e) {
      buildError = `updating the replica: ${(e as Error).message}`;
    }
    return;
  }
  try {
    if (buildError || !model) throw new Error(buildError ?? "no model was sent");
    // Fault injection (tests/fault/engine_fault_test.ts): the worker fails every job.
    if (Deno.env.get(FAULT_ENV) === "job") throw new Error(`injected fault (${FAULT_ENV})`);
    const job = msg.job;
    if (job.kind === "score") {
      reply(msg.ctrl, msg.out, {}, scoreSlices(model, job));
      return;
    }
    const vars = new Map(model.trainableVariables().map((v) => [variableKey(v), v]));
    const ordered = job.keys.map((k) => {
      const v = vars.get(k);
      if (!v) throw new Error(`replica has no variable "${k}"`);
      return v;
    });
    const results: { loss: number; metrics: Record<string, number>; tokens: number }[] = [];
    const total = ordered.reduce((a, v) => a + v.size, 0);
    const floats = new Float32Array(total * job.micro.length);
    let o = 0;
    for (const mb of job.micro) {
      const r = await microBatchGradients(model, ordered, mb, job.cfg);
      results.push({ loss: r.loss, metrics: r.metrics, tokens: r.tokens });
      for (const v of ordered) {
        floats.set(r.grads[v.name].dataSync(), o);
        o += v.size;
      }
      tf.dispose(r.grads);
    }
    reply(msg.ctrl, msg.out, results, floats);
  } catch (e) {
    reply(msg.ctrl, msg.out, { error: (e as Error).message || String(e) });
  }
}

try {
  // The main thread's BLAS library, through this engine's own copy of it (its own threads).
  const blas = workerData.blas as { library: string; threads: number } | undefined;
  if (blas && !enableBlas(blas).enabled) throw new Error("the BLAS copy did not load");
  await initBackend("wasm", { quiet: true, blas: Boolean(blas) });
  // Messages are handled one at a time, in order (a build before the job that needs it).
  let queue = Promise.resolve();
  parentPort!.on("message", (msg: Message) => {
    queue = queue.then(() => onMessage(msg));
  });
  Atomics.store(state, 0, 1);
} catch {
  Atomics.store(state, 0, 2);
}
Atomics.notify(state, 0);
