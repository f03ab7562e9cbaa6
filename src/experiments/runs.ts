/**
 * Run folders of the reproduce pipeline: every trained stage of an experiment gets a folder
 * where train() checkpoints while it runs and where the finished result is kept, so an
 * interrupted run resumes from the last checkpoint and a rerun reuses what is finished.
 *
 * ```
 * <runs>/seed<s>/<arm-slug>/       e.g. runs/seed0/s-dpo, runs/seed0/sft-dmpo-k3
 *   arm.json                        what the stage is (name, seed, config hash, configs)
 *   metrics.jsonl                   train()'s logged rows
 *   checkpoints/step-NNNNNNN/       train() checkpoints, only while training (removed at the end)
 *   adapter_config.json             LoRA stages: the adapter in PEFT's layout (src/adapter.ts)
 *   adapter_model.safetensors
 *   config.json, model.safetensors  full fine-tuning stages: the weights (src/checkpoint.ts)
 *   done.json                       written last: config hash, final loss, seconds, steps
 * ```
 *
 * A stage is reused only when `done.json` holds the hash of its current config (name, seed,
 * train config, LoRA config, a fingerprint of the weights it starts from and of its training
 * examples) and its weight files are there; a folder whose `arm.json` hash differs is wiped
 * before training, so stale checkpoints are never resumed. {@link setRunFolders} turns folders
 * on (src/cli/reproduce.ts does, per paper); without it every stage trains in memory as before.
 *
 * @module
 */
import { ensureBackend, tf } from "../backend.ts";
import { loadAdapter, saveAdapter } from "../adapter.ts";
import { saveModel } from "../checkpoint.ts";
import { RecalignError } from "../errors.ts";
import { ensureDir, sha256Hex, writeJsonAtomic } from "../io.ts";
import type { LoraConfig } from "../lora.ts";
import type { LlamaConfig, LlamaModel } from "../model.ts";
import { readSafetensors } from "../safetensors.ts";
import {
  type EvalHook,
  type MetricsRow,
  train,
  type TrainConfig,
  type TrainExample,
} from "../train.ts";
import { baseLmFolderFor, fromSnapshot, since, type Snapshot, snapshot } from "./common.ts";

/** Where stages are kept. */
export interface RunFolders {
  /** Root of the stage folders (`<out>/<paper>/<dataset>/runs`); undefined = in memory only. */
  runs?: string;
  /** Cache of stage-0 results shared by the papers (`<out>/.cache`); undefined = none. */
  cache?: string;
  /** Reuse finished stages and resume interrupted ones (false: `--no-cache`, retrain). */
  reuse: boolean;
}

let folders: RunFolders = { reuse: true };

/** Set where stages are kept (fields not given keep their value). */
export function setRunFolders(f: Partial<RunFolders>): void {
  folders = { ...folders, ...f };
}

/** The current run folders. */
export function runFolders(): Readonly<RunFolders> {
  return folders;
}

/** Marker file of a finished stage. */
export const DONE_FILE = "done.json";
/** Description of a stage, written before it trains. */
export const ARM_FILE = "arm.json";
/** Version of the stage folder format (part of every hash). */
export const RUN_FORMAT = 1;

/**
 * Folder name of a stage: lower case, `β` → `beta`, every other run of non-alphanumerics
 * (except `.`) → `-`. `"S-DPO β=0.5"` → `s-dpo-beta0.5`, `"SFT+DMPO K=3"` → `sft-dmpo-k3`.
 */
export function armSlug(name: string): string {
  const s = name.toLowerCase().replaceAll("β", "beta").replace(/[=]/g, "")
    .replace(/[^a-z0-9.]+/g, "-").replace(/^-+|-+$/g, "");
  if (s === "") throw new RecalignError(`stage name ${JSON.stringify(name)} gives an empty slug`);
  return s;
}

/** The folder of a stage under `folders.runs`, or undefined when run folders are off. */
export function armDir(seed: number, name: string): string | undefined {
  return folders.runs ? `${folders.runs}/seed${seed}/${armSlug(name)}` : undefined;
}

// ---------------------------------------------------------------------------------------
// Fingerprints

const fingerprints = new WeakMap<Snapshot, string>();

/**
 * Give a snapshot a known identity (e.g. the cache key it was built from), so
 * {@link fingerprint} need not hash its weights.
 */
export function setFingerprint(snap: Snapshot, id: string): void {
  fingerprints.set(snap, id);
}

/** SHA-256 over a snapshot's names, shapes and float32 bytes (memoised per snapshot). */
export async function fingerprint(snap: Snapshot): Promise<string> {
  const known = fingerprints.get(snap);
  if (known) return known;
  const parts: string[] = [];
  for (const name of [...snap.keys()].sort()) {
    const t = snap.get(name)!;
    const data = t.dataSync() as Float32Array;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    parts.push(`${name}:${t.shape.join("x")}:${await sha256Hex(bytes)}`);
  }
  const id = `w:${await sha256Hex(parts.join("\n"))}`;
  fingerprints.set(snap, id);
  return id;
}

/** SHA-256 of training examples (prompt, chosen and rejected ids). */
export async function examplesHash(examples: readonly TrainExample[]): Promise<string> {
  return await sha256Hex(
    examples.map((e) =>
      `${e.prompt.join(",")}|${e.chosen.join(",")}|${
        (e.rejected ?? []).map((r) => r.join(",")).join(";")
      }`
    ).join("\n"),
  );
}

// ---------------------------------------------------------------------------------------
// Test hook: interrupt a stage

let interrupt: { name: string; seed: number; afterStep: number } | undefined;

/** Thrown when a stage is stopped by {@link setRunInterrupt}. */
export class StageInterrupted extends RecalignError {
  constructor(message: string) {
    super(message);
    this.name = "StageInterrupted";
  }
}

/**
 * For tests: stop the stage `name` of `seed` after `afterStep` steps, as if the process had
 * been killed there (its checkpoints stay, no result is written), by throwing
 * {@link StageInterrupted}. `undefined` clears it.
 */
export function setRunInterrupt(
  i: { name: string; seed: number; afterStep: number } | undefined,
): void {
  interrupt = i;
}

// ---------------------------------------------------------------------------------------
// Stages

/** How a stage's result was obtained. */
export type StageSource = "trained" | "resumed" | "loaded" | "memory";

/** A stage to train or load. */
export interface StageSpec {
  /** Display name (also gives the folder, {@link armSlug}). */
  name: string;
  /** Seed (folder `seed<s>`; part of the hash). */
  seed: number;
  /** The folder; default {@link armDir}(seed, name). `null` = in memory even with folders on. */
  dir?: string | null;
  /** Model config. */
  config: LlamaConfig;
  /** Weights the stage starts from. */
  from: Snapshot;
  /**
   * `lora`: a fresh adapter is trained and the model returned with it attached; `lora-merged`:
   * the adapter is trained, saved, then merged into the weights (merge-and-unload) and the
   * snapshot returned; `full`: every weight trained, the snapshot returned.
   */
  mode: "lora" | "lora-merged" | "full";
  /** LoRA config (lora modes). */
  lora?: LoraConfig;
  /** Training examples. */
  examples: TrainExample[];
  /** train() config (checkpoint knobs are added here). */
  train: Partial<TrainConfig> & Pick<TrainConfig, "stage" | "steps">;
  /** Anything else that defines the result (hashed). */
  extra?: Record<string, unknown>;
  /** Progress label. */
  label: string;
  /** Print progress. */
  progress: boolean;
  /**
   * `base_model_name_or_path` written in adapter_config.json; default the base LM folder set
   * by `setBaseLm` (e.g. `models/base-lm`) when the stage's config starts from it.
   */
  baseModelName?: string;
  /**
   * Evaluation while training and best-checkpoint selection (train()'s `evaluate`); what it
   * measures and selects on belongs in `extra`, which is hashed.
   */
  evaluate?: EvalHook;
}

/** What {@link runStage} returns. */
export interface StageResult {
  /** `lora` mode: the model with its adapter (caller disposes). */
  model?: LlamaModel;
  /** `lora-merged` / `full` modes: the weights (caller disposes with disposeSnapshot). */
  snap?: Snapshot;
  /** Training seconds (of the run that trained it, for a loaded stage). */
  seconds: number;
  /** Seconds this call took (loading, for a loaded stage). */
  wallSeconds: number;
  /** Last logged loss. */
  finalLoss: number | null;
  /** Logged rows (from metrics.jsonl for a loaded stage). */
  history: MetricsRow[];
  /** How it was obtained. */
  source: StageSource;
  /** Step it resumed from (0 when not resumed). */
  resumedFrom: number;
  /** Its folder, if any. */
  dir?: string;
  /** The config hash. */
  hash: string;
  /** Evaluation rows (with `evaluate`; from eval_metrics.jsonl for a loaded stage). */
  evals: MetricsRow[];
  /** With `evaluate.select`: the step whose weights were kept. */
  bestStep?: number;
}

/** A note for stage-time labels: "" (trained), " (from run folder)", " (resumed from step N)". */
export function sourceNote(r: Pick<StageResult, "source" | "resumedFrom">): string {
  return r.source === "loaded"
    ? " (from run folder)"
    : r.source === "resumed"
    ? ` (resumed from step ${r.resumedFrom})`
    : "";
}

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function readHistory(dir: string, file = "metrics.jsonl"): Promise<MetricsRow[]> {
  try {
    return (await Deno.readTextFile(`${dir}/${file}`)).split("\n").filter((l) => l.trim())
      .map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}

/** The weight files a finished stage of `mode` must have. */
function resultFiles(mode: StageSpec["mode"]): string[] {
  return mode === "full"
    ? ["model.safetensors", "config.json"]
    : ["adapter_model.safetensors", "adapter_config.json"];
}

/** Read a full-model stage's weights back into a snapshot. */
async function readWeights(dir: string): Promise<Snapshot> {
  const { tensors } = await readSafetensors(`${dir}/model.safetensors`);
  const snap: Snapshot = new Map();
  for (const [name, t] of Object.entries(tensors)) {
    snap.set(name, tf.tensor(t.data as Float32Array, t.shape, "float32"));
  }
  return snap;
}

/** The config hash of a stage. */
export async function stageHash(spec: StageSpec): Promise<string> {
  return await sha256Hex(JSON.stringify({
    format: RUN_FORMAT,
    name: spec.name,
    seed: spec.seed,
    mode: spec.mode,
    config: spec.config,
    from: await fingerprint(spec.from),
    examples: await examplesHash(spec.examples),
    train: spec.train,
    lora: spec.lora ?? null,
    extra: spec.extra ?? null,
  }));
}

/**
 * Train a stage, or load it when its folder holds a finished result of the same config hash;
 * an interrupted stage resumes from its newest checkpoint (bit-exact: see train()).
 *
 * @param spec The stage.
 * @returns The model (lora) or weights (lora-merged, full) and how they were obtained.
 * @throws {StageInterrupted} When {@link setRunInterrupt} names this stage.
 */
export async function runStage(spec: StageSpec): Promise<StageResult> {
  await ensureBackend();
  const t0 = performance.now();
  const dir = spec.dir === null ? undefined : spec.dir ?? armDir(spec.seed, spec.name);
  if ((spec.mode !== "full") !== (spec.lora !== undefined)) {
    throw new RecalignError(`stage "${spec.name}": mode ${spec.mode} and lora config disagree`);
  }
  const hash = dir ? await stageHash(spec) : "";
  const fresh = (): LlamaModel => {
    const m = fromSnapshot(spec.config, spec.from);
    if (spec.mode === "full") m.makeFullyTrainable();
    else m.addLora(spec.lora!);
    return m;
  };
  const finish = (model: LlamaModel): { model?: LlamaModel; snap?: Snapshot } => {
    if (spec.mode === "lora") return { model };
    if (spec.mode === "lora-merged") model.mergeAndUnloadLora();
    else model.freeze();
    const snap = snapshot(model);
    model.dispose();
    // Its identity for the stages built on it: this stage's config hash (no weight hashing).
    if (hash) setFingerprint(snap, `stage:${hash}`);
    return { snap };
  };

  // A finished result of the same config: load it.
  if (dir && folders.reuse) {
    const done = await readJson(`${dir}/${DONE_FILE}`);
    const files = await Promise.all(resultFiles(spec.mode).map((f) => exists(`${dir}/${f}`)));
    if (done?.config_hash === hash && files.every(Boolean)) {
      let out: { model?: LlamaModel; snap?: Snapshot };
      if (spec.mode === "full") {
        out = { snap: await readWeights(dir) };
        setFingerprint(out.snap!, `stage:${hash}`); // as when trained (finish)
      } else {
        const m = fromSnapshot(spec.config, spec.from);
        try {
          await loadAdapter(m, dir);
        } catch (err) {
          m.dispose();
          throw err;
        }
        out = finish(m);
      }
      if (spec.progress) console.error(`[runs] ${spec.label}: loaded from ${dir}`);
      return {
        ...out,
        seconds: typeof done.train_seconds === "number" ? done.train_seconds : since(t0),
        wallSeconds: since(t0),
        finalLoss: typeof done.final_loss === "number" ? done.final_loss : null,
        history: await readHistory(dir),
        source: "loaded",
        resumedFrom: 0,
        dir,
        hash,
        evals: await readHistory(dir, "eval_metrics.jsonl"),
        bestStep: typeof done.best_step === "number" ? done.best_step : undefined,
      };
    }
  }

  const trainCfg: Partial<TrainConfig> & Pick<TrainConfig, "stage"> = { ...spec.train };
  if (dir) {
    // Another config (or --no-cache): start clean, so no stale checkpoint is resumed.
    const arm = await readJson(`${dir}/${ARM_FILE}`);
    if (!folders.reuse || arm?.config_hash !== hash) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    await ensureDir(dir);
    await writeJsonAtomic(`${dir}/${ARM_FILE}`, {
      format: RUN_FORMAT,
      name: spec.name,
      seed: spec.seed,
      mode: spec.mode,
      config_hash: hash,
      train: spec.train,
      lora: spec.lora ?? null,
      extra: spec.extra ?? null,
      model: spec.config,
    });
    trainCfg.checkpointEvery = spec.train.checkpointEvery ??
      Math.max(1, Math.ceil(spec.train.steps / 10));
    trainCfg.keepCheckpoints = spec.train.keepCheckpoints ?? 2;
  }
  const stop = interrupt && interrupt.name === spec.name && interrupt.seed === spec.seed
    ? interrupt.afterStep
    : undefined;
  const model = fresh();
  let r;
  try {
    r = await train(model, spec.examples, trainCfg, {
      outDir: dir,
      resume: dir !== undefined,
      label: spec.label,
      progress: spec.progress,
      stopAfterStep: stop,
      evaluate: spec.evaluate,
    });
  } catch (err) {
    model.dispose();
    throw err;
  }
  if (stop !== undefined && r.step >= stop) {
    model.dispose();
    throw new StageInterrupted(
      `stage "${spec.name}" (seed ${spec.seed}) stopped after step ${r.step}`,
    );
  }
  const seconds = since(t0);
  const finalLoss = r.history.at(-1)?.loss ?? null;
  if (dir) {
    try {
      if (spec.mode === "full") {
        model.freeze();
        await saveModel(model, dir);
      } else {
        await saveAdapter(model, dir, spec.lora!, {
          baseModelNameOrPath: spec.baseModelName ?? baseLmFolderFor(spec.config),
        });
      }
    } catch (err) {
      model.dispose();
      throw err;
    }
    await writeJsonAtomic(`${dir}/${DONE_FILE}`, {
      format: RUN_FORMAT,
      name: spec.name,
      seed: spec.seed,
      config_hash: hash,
      steps: r.step,
      resumed_from: r.resumedFrom,
      final_loss: finalLoss,
      ...(r.bestStep !== undefined ? { best_step: r.bestStep } : {}),
      train_seconds: seconds,
      finished: new Date().toISOString(),
    });
    await Deno.remove(`${dir}/checkpoints`, { recursive: true }).catch(() => {});
  }
  return {
    ...finish(model),
    seconds,
    wallSeconds: since(t0),
    finalLoss,
    history: r.history,
    source: !dir ? "memory" : r.resumedFrom > 0 ? "resumed" : "trained",
    resumedFrom: r.resumedFrom,
    dir,
    hash,
    evals: r.evals,
    bestStep: r.bestStep,
  };
}
