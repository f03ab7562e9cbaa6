/**
 * Run folders (src/experiments/runs.ts) through `reproduce --paper sdpo --scale test`: every
 * arm is saved as a PEFT adapter with a done marker; a rerun after an interruption (one arm
 * stopped after step 2 of 3, one arm with a stale config hash, --no-cache for the rest)
 * resumes / retrains / reloads and reaches the same metrics.json numbers as the first run.
 */
import assert from "node:assert/strict";
import { initBackend } from "../../src/backend.ts";
import { main } from "../../src/cli/reproduce.ts";
import {
  disposeSnapshot,
  loraConfig,
  type Snapshot,
  snapshot,
  takeStageTimes,
} from "../../src/experiments/common.ts";
import {
  armSlug,
  fingerprint,
  runFolders,
  runStage,
  setRunFolders,
  setRunInterrupt,
  StageInterrupted,
  type StageSpec,
} from "../../src/experiments/runs.ts";
import { LLAMA_PROJECTIONS } from "../../src/lora.ts";
import { LlamaModel, PRESETS } from "../../src/model.ts";
import { readSafetensorsHeader } from "../../src/safetensors.ts";
import type { TrainExample } from "../../src/train.ts";

await initBackend("wasm", { quiet: true });

/** Fields that hold wall-clock times or dates (they differ between runs by nature). */
const WALL = new Set([
  "started",
  "finished",
  "seconds",
  "stage_seconds",
  "timings",
  "train_seconds",
  "eval_seconds",
  "elapsed_sec",
  "tokens_per_sec",
]);

function withoutWallClock(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(withoutWallClock);
  if (x && typeof x === "object") {
    return Object.fromEntries(
      Object.entries(x).filter(([k]) => !WALL.has(k)).map(([k, v]) => [k, withoutWallClock(v)]),
    );
  }
  return x;
}

async function readJson(path: string) {
  return JSON.parse(await Deno.readTextFile(path));
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("armSlug() gives distinct folder names for the arms", () => {
  assert.equal(armSlug("SFT-cont"), "sft-cont");
  assert.equal(armSlug("S-DPO"), "s-dpo");
  assert.equal(armSlug("S-DPO β=0.5"), "s-dpo-beta0.5");
  assert.equal(armSlug("SFT+DMPO K=3"), "sft-dmpo-k3");
  assert.equal(armSlug("DPO (same-genre)"), "dpo-same-genre");
  assert.equal(armSlug("SASRec+DPO LM (RM pairs, N=4)"), "sasrec-dpo-lm-rm-pairs-n4");
  const names = [
    "SFT-cont",
    "DPO",
    "S-DPO",
    "S-DPO K=2",
    "S-DPO K=8",
    "S-DPO β=0.5",
    "S-DPO β=5",
    "DPO (same-genre)",
    "S-DPO (model-hard)",
    "SFT+DMPO K=1",
    "SFT+DMPO K=3",
    "SFT+DMPO-released K=3",
    "DMPO-only K=3",
  ];
  assert.equal(new Set(names.map(armSlug)).size, names.length);
});

/** Bitwise equality of two snapshots. */
function sameBits(a: Snapshot, b: Snapshot): boolean {
  if (a.size !== b.size) return false;
  for (const [name, t] of a) {
    const u = b.get(name);
    if (!u) return false;
    const x = new Uint32Array((t.dataSync() as Float32Array).slice().buffer);
    const y = new Uint32Array((u.dataSync() as Float32Array).slice().buffer);
    if (x.length !== y.length || x.some((v, i) => v !== y[i])) return false;
  }
  return true;
}

Deno.test("runStage() saves, reloads bit for bit, resumes, and retrains on a changed config (lora-merged, full and lora modes)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "recalign-stage-" });
  const config = { ...PRESETS["llama-nano"], vocab_size: 40 };
  const base = LlamaModel.random(config, 1);
  const from = snapshot(base);
  base.dispose();
  const examples: TrainExample[] = Array.from({ length: 12 }, (_, a) => ({
    prompt: [1, 3, 4 + a],
    chosen: [20 + (a % 6), 2],
    rejected: [[30 + (a % 5), 2], [35, 2]],
  }));
  setRunFolders({ runs: dir, reuse: true });
  try {
    for (const mode of ["lora-merged", "full", "lora"] as const) {
      const spec: StageSpec = {
        name: `stage ${mode}`,
        seed: 0,
        config,
        from,
        mode,
        lora: mode === "full" ? undefined : loraConfig(5),
        examples,
        train: {
          stage: mode === "lora" ? "sdpo" : "sft",
          steps: 4,
          batchSize: 4,
          lr: 1e-2,
          numNegatives: 2,
          beta: 1,
          logEvery: 1,
          seed: 3,
        },
        label: mode,
        progress: false,
      };
      const weights = (r: Awaited<ReturnType<typeof runStage>>): Snapshot => {
        if (r.snap) return r.snap;
        r.model!.mergeAndUnloadLora();
        const s = snapshot(r.model!);
        r.model!.dispose();
        return s;
      };
      const a = await runStage(spec);
      assert.equal(a.source, "trained");
      const folder = `${dir}/seed0/${armSlug(spec.name)}`;
      assert.equal(a.dir, folder);
      assert.ok(await exists(`${folder}/done.json`));
      assert.ok(!(await exists(`${folder}/checkpoints`)));
      const wa = weights(a);
      // Reloaded from the folder: the same bits, loss and history.
      const b = await runStage(spec);
      assert.equal(b.source, "loaded");
      assert.equal(b.finalLoss, a.finalLoss);
      assert.deepEqual(b.history.map((r) => r.loss), a.history.map((r) => r.loss));
      const wb = weights(b);
      assert.ok(sameBits(wa, wb), `${mode}: reloaded weights differ`);
      // The same identity, so the stages built on it are reused too.
      assert.equal(await fingerprint(wb), await fingerprint(wa));
      assert.ok(!sameBits(wa, from), `${mode}: training changed the weights`);
      // Killed after step 3 (newest checkpoint: step 2), then resumed: the same bits.
      await Deno.remove(folder, { recursive: true });
      setRunInterrupt({ name: spec.name, seed: 0, afterStep: 3 });
      await assert.rejects(() => runStage(spec), StageInterrupted);
      setRunInterrupt(undefined);
      const c = await runStage(spec);
      assert.equal(c.source, "resumed");
      assert.equal(c.resumedFrom, 2);
      const wc = weights(c);
      assert.ok(sameBits(wa, wc), `${mode}: resumed weights differ`);
      // Another config (lr): not reused.
      const d = await runStage({ ...spec, train: { ...spec.train, lr: 5e-3 } });
      assert.equal(d.source, "trained");
      const wd = weights(d);
      assert.ok(!sameBits(wa, wd), `${mode}: a changed lr gives other weights`);
      for (const w of [wa, wb, wc, wd]) disposeSnapshot(w);
    }
  } finally {
    setRunFolders({ runs: undefined });
    setRunInterrupt(undefined);
    disposeSnapshot(from);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reproduce keeps every arm in a run folder (PEFT adapter + done marker) and an interrupted, stale or --no-cache rerun reaches the same metrics", async () => {
  const out = await Deno.makeTempDir({ prefix: "recalign-runs-" });
  const args = ["--paper", "sdpo", "--scale", "test", "--no-ablations", "--out", out];
  const runs = `${out}/sdpo/synthetic/runs/seed0`;
  try {
    // 1. A full run.
    await main(args);
    const first = await readJson(`${out}/sdpo/synthetic/metrics.json`);
    assert.equal(first.runs, "runs/");
    assert.equal(first.base_model, null);
    const arms = ["sft-cont", "dpo", "s-dpo", "s-dpo-k8"];
    assert.deepEqual([...Deno.readDirSync(runs)].map((e) => e.name).sort(), [...arms].sort());
    for (const arm of arms) {
      const files = [...Deno.readDirSync(`${runs}/${arm}`)].map((e) => e.name).sort();
      assert.deepEqual(files, [
        "adapter_config.json",
        "adapter_model.safetensors",
        "arm.json",
        "curve_rows.jsonl",
        "done.json",
        "eval_metrics.jsonl",
        "metrics.jsonl",
      ], `${arm}: checkpoints are removed once the adapter is saved`);
      const done = await readJson(`${runs}/${arm}/done.json`);
      const desc = await readJson(`${runs}/${arm}/arm.json`);
      assert.equal(done.config_hash, desc.config_hash);
      assert.match(done.config_hash, /^[0-9a-f]{64}$/);
      assert.equal(done.steps, 4);
      // Validation every 2 steps; the kept step is one of the evaluated ones.
      const evals = (await Deno.readTextFile(`${runs}/${arm}/eval_metrics.jsonl`)).trim()
        .split("\n").map((l) => JSON.parse(l));
      assert.deepEqual(evals.map((e) => e.step), [2, 4]);
      assert.ok([2, 4].includes(done.best_step), `best_step ${done.best_step}`);
    }
    // The adapter is in PEFT's layout: config fields and tensor names / shapes.
    const cfg = await readJson(`${runs}/dpo/adapter_config.json`);
    assert.equal(cfg.peft_type, "LORA");
    assert.equal(cfg.task_type, "CAUSAL_LM");
    assert.equal(cfg.r, 8);
    assert.equal(cfg.lora_alpha, 32); // the released S-DPO LoRA (r 8, α 32, dropout 0.1)
    assert.equal(cfg.lora_dropout, 0.1);
    assert.deepEqual([...cfg.target_modules].sort(), [...LLAMA_PROJECTIONS].sort());
    const header = await readSafetensorsHeader(`${runs}/dpo/adapter_model.safetensors`);
    const cfgModel = first.result.config.model;
    const keys = Object.keys(header.tensors).sort();
    assert.equal(keys.length, cfgModel.num_hidden_layers * 7 * 2);
    const h = cfgModel.hidden_size, ffn = cfgModel.intermediate_size;
    const dims: Record<string, [number, number]> = { // [in, out]
      q_proj: [h, h],
      k_proj: [h, h],
      v_proj: [h, h],
      o_proj: [h, h],
      gate_proj: [h, ffn],
      up_proj: [h, ffn],
      down_proj: [ffn, h],
    };
    for (const key of keys) {
      const m = key.match(
        /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj)\.lora_([AB])\.weight$/,
      );
      assert.ok(m, `PEFT key: ${key}`);
      const [inF, outF] = dims[m[3]];
      const shape = header.tensors[key].shape;
      assert.deepEqual(shape, m[4] === "A" ? [8, inF] : [outF, 8], key);
      assert.equal(header.tensors[key].dtype, "F32");
    }

    // 2. Simulated trouble: DPO's folder lost, S-DPO's done marker from another config, and a
    //    --no-cache rerun killed during DPO's step 3 (after step 2, whose checkpoint was not
    //    written yet: train() checkpoints every step here, and step 1's is the newest).
    await Deno.remove(`${runs}/dpo`, { recursive: true });
    const sdpoDone = await readJson(`${runs}/s-dpo/done.json`);
    await Deno.writeTextFile(
      `${runs}/s-dpo/done.json`,
      JSON.stringify({ ...sdpoDone, config_hash: "0".repeat(64) }),
    );
    const contDone = await readJson(`${runs}/sft-cont/done.json`);
    setRunInterrupt({ name: "DPO", seed: 0, afterStep: 2 });
    try {
      await assert.rejects(() => main([...args, "--no-cache"]), StageInterrupted);
    } finally {
      setRunInterrupt(undefined);
      takeStageTimes(); // the interrupted run's stage times
    }
    const contRedone = await readJson(`${runs}/sft-cont/done.json`);
    assert.notEqual(contRedone.finished, contDone.finished, "--no-cache retrained SFT-cont");
    assert.equal(contRedone.config_hash, contDone.config_hash);
    const ckpts = [...Deno.readDirSync(`${runs}/dpo/checkpoints`)].map((e) => e.name).sort();
    assert.deepEqual(ckpts, ["step-0000001"]);
    assert.ok(!(await exists(`${runs}/dpo/done.json`)));
    assert.ok(!(await exists(`${runs}/dpo/adapter_model.safetensors`)));

    // 3. A plain rerun: SFT-cont loaded, DPO resumed from step 1, S-DPO retrained.
    await main(args);
    const again = await readJson(`${out}/sdpo/synthetic/metrics.json`);
    const stages = again.stage_seconds.map((s: { stage: string }) => s.stage);
    assert.ok(stages.includes("SFT-cont (from run folder)"), stages.join(", "));
    assert.ok(stages.includes("DPO (resumed from step 1)"), stages.join(", "));
    assert.ok(stages.includes("S-DPO"), stages.join(", "));
    assert.equal((await readJson(`${runs}/dpo/done.json`)).resumed_from, 1);
    assert.equal((await readJson(`${runs}/s-dpo/done.json`)).config_hash, sdpoDone.config_hash);
    assert.deepEqual(withoutWallClock(again), withoutWallClock(first));
    // The numbers compared are real: the LM arms have per-prompt log-probs.
    assert.ok(first.result.per_seed[0].methods.DPO.pos_logp.length > 0);
    assert.equal(runFolders().runs, undefined, "reproduce turns run folders off at the end");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
