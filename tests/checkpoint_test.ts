import assert from "node:assert/strict";
import { initBackend, tf } from "../src/backend.ts";
import {
  configFromHf,
  configToHf,
  estimateModelBytes,
  loadPretrained,
  saveModel,
} from "../src/checkpoint.ts";
import { CheckpointError } from "../src/errors.ts";
import { toSdpoMultiNegJsonl, toTrlJsonl } from "../src/export.ts";
import { DEFAULT_LORA_CONFIG } from "../src/lora.ts";
import { type LlamaConfig, LlamaModel } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import {
  decodeBF16,
  encodeBF16,
  readSafetensorsHeader,
  type TensorRecord,
  writeSafetensors,
} from "../src/safetensors.ts";
import { WordTokenizer } from "../src/tokenizer.ts";
import { maxAbsDiff, naiveForward, randomWeights } from "./_reference.ts";

await initBackend("wasm", { quiet: true });

const LLAMA: LlamaConfig = {
  vocab_size: 48,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rope_theta: 10000,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
  max_position_embeddings: 64,
  initializer_range: 0.02,
  model_type: "llama",
};
const QWEN2: LlamaConfig = { ...LLAMA, rope_theta: 1e6, attention_bias: true, model_type: "qwen2" };
const QWEN3: LlamaConfig = {
  ...LLAMA,
  head_dim: 8, // ≠ hidden_size / heads = 4
  qk_norm: true,
  tie_word_embeddings: true,
  rms_norm_eps: 1e-6,
  model_type: "qwen3",
};

/** Write an HF folder: config.json + weights (one file, or sharded over n files with an index). */
async function writeHfFolder(
  dir: string,
  hfConfig: Record<string, unknown>,
  weights: Map<string, Float32Array>,
  shapes: Map<string, number[]>,
  opts: { dtype?: "F32" | "BF16"; shards?: number } = {},
): Promise<void> {
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(hfConfig, null, 2));
  const names = [...weights.keys()];
  const shards = opts.shards ?? 1;
  const rec = (name: string): TensorRecord => ({
    dtype: opts.dtype ?? "F32",
    shape: shapes.get(name)!,
    data: weights.get(name)!,
  });
  if (shards === 1) {
    await writeSafetensors(
      `${dir}/model.safetensors`,
      Object.fromEntries(names.map((n) => [n, rec(n)])),
      { format: "pt" },
    );
    return;
  }
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = `model-0000${s + 1}-of-0000${shards}.safetensors`;
    const part = names.filter((_, i) => i % shards === s);
    for (const n of part) weightMap[n] = file;
    await writeSafetensors(`${dir}/${file}`, Object.fromEntries(part.map((n) => [n, rec(n)])), {
      format: "pt",
    });
  }
  await Deno.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
  );
}

function shapesOf(cfg: LlamaConfig): Map<string, number[]> {
  return new Map(LlamaModel.weightShapes(cfg));
}

/** A folder with a tiny random checkpoint of `cfg`; returns the weights as stored. */
async function tinyCheckpoint(
  cfg: LlamaConfig,
  seed: number,
  opts: { dtype?: "F32" | "BF16"; shards?: number; extra?: Record<string, number[]> } = {},
): Promise<{ dir: string; weights: Map<string, Float32Array> }> {
  const dir = await Deno.makeTempDir({ prefix: "recalign_ckpt_" });
  let weights = randomWeights(cfg, seed);
  if (opts.dtype === "BF16") {
    weights = new Map([...weights].map(([n, w]) => [n, decodeBF16(encodeBF16(w))]));
  }
  const shapes = shapesOf(cfg);
  const all = new Map(weights);
  for (const [name, shape] of Object.entries(opts.extra ?? {})) {
    all.set(name, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5));
    shapes.set(name, shape);
  }
  await writeHfFolder(dir, configToHf(cfg), all, shapes, opts);
  return { dir, weights };
}

function checkLogits(model: LlamaModel, cfg: LlamaConfig, w: Map<string, Float32Array>): number {
  const ids = Array.from({ length: 7 }, (_, i) => new Rng(11 + i).int(cfg.vocab_size));
  const logits = model.logits([ids]);
  const got = logits.dataSync();
  logits.dispose();
  const ref = naiveForward(cfg, w, ids);
  return maxAbsDiff(got, ref);
}

Deno.test("loadPretrained() matches the float64 reference for Llama (F32, one file)", async () => {
  const { dir, weights } = await tinyCheckpoint(LLAMA, 1, {
    extra: { "model.layers.0.self_attn.rotary_emb.inv_freq": [2], "model.mystery.weight": [3] },
  });
  let reported: string[] = [];
  const { model, config, tokenizer, unknownTensors } = await loadPretrained(dir, {
    onUnknownTensors: (n) => reported = n,
  });
  assert.equal(config.model_type, "llama");
  assert.equal(config.attention_bias, undefined);
  assert.equal(tokenizer, undefined);
  assert.deepEqual(unknownTensors, ["model.mystery.weight"]); // inv_freq is a known extra
  assert.deepEqual(reported, ["model.mystery.weight"]);
  const err = checkLogits(model, LLAMA, weights);
  assert.ok(err < 1e-4, `max |logit diff| = ${err}`);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadPretrained() matches the reference for Qwen2 (attention bias, BF16)", async () => {
  const { dir, weights } = await tinyCheckpoint(QWEN2, 2, { dtype: "BF16" });
  const h = await readSafetensorsHeader(`${dir}/model.safetensors`);
  assert.equal(h.tensors["model.layers.0.self_attn.q_proj.bias"].dtype, "BF16");
  const { model, config } = await loadPretrained(dir, { maxPositions: 16 });
  assert.equal(config.max_position_embeddings, 16); // RoPE table capped
  assert.equal(config.attention_bias, true);
  assert.equal(config.model_type, "qwen2");
  const err = checkLogits(model, QWEN2, weights);
  assert.ok(err < 1e-4, `max |logit diff| = ${err}`);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadPretrained() matches the reference for Qwen3 (qk-norm, head_dim, tied, 2 shards)", async () => {
  const { dir, weights } = await tinyCheckpoint(QWEN3, 3, { shards: 2 });
  const index = JSON.parse(await Deno.readTextFile(`${dir}/model.safetensors.index.json`));
  assert.equal(new Set(Object.values(index.weight_map)).size, 2);
  const { model, config } = await loadPretrained(dir);
  assert.equal(config.qk_norm, true);
  assert.equal(config.head_dim, 8);
  assert.equal(config.tie_word_embeddings, true);
  const err = checkLogits(model, QWEN3, weights);
  assert.ok(err < 1e-4, `max |logit diff| = ${err}`);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("configFromHf() maps HF defaults and refuses what is not implemented", () => {
  const base = {
    vocab_size: 10,
    hidden_size: 8,
    intermediate_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
  };
  const llama = configFromHf({ ...base, architectures: ["LlamaForCausalLM"] });
  assert.equal(llama.num_key_value_heads, 2); // defaults to num_attention_heads
  assert.equal(llama.tie_word_embeddings, false);
  const q3 = configFromHf({ ...base, model_type: "qwen3", head_dim: 6, tie_word_embeddings: true });
  assert.equal(q3.qk_norm, true);
  assert.equal(q3.head_dim, 6);
  assert.throws(
    () =>
      configFromHf({
        ...base,
        architectures: ["LlamaForCausalLM"],
        rope_scaling: { rope_type: "llama3" },
      }),
    { name: "CheckpointError", message: /rope_scaling/ },
  );
  assert.throws(
    () => configFromHf({ ...base, architectures: ["LlamaForCausalLM"], attention_bias: true }),
    /attention_bias/,
  );
  assert.throws(() => configFromHf({ ...base, model_type: "gpt2" }), /"gpt2".*LlamaForCausalLM/);
});

Deno.test("loadPretrained() names the problem on bad input", async (t) => {
  await t.step("missing config.json", async () => {
    const dir = await Deno.makeTempDir();
    await assert.rejects(
      () => loadPretrained(dir),
      (e: Error) => e instanceof CheckpointError && e.message.includes(`${dir}/config.json`),
    );
    await Deno.remove(dir, { recursive: true });
  });
  await t.step("unsupported architecture", async () => {
    const { dir } = await tinyCheckpoint(LLAMA, 4);
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ ...cfg, architectures: ["MistralForCausalLM"], model_type: "mistral" }),
    );
    await assert.rejects(
      () => loadPretrained(dir),
      (e: Error) =>
        e instanceof CheckpointError && e.message.includes('"MistralForCausalLM"') &&
        ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"].every((a) =>
          e.message.includes(a)
        ),
    );
    await Deno.remove(dir, { recursive: true });
  });
  await t.step("missing tensor", async () => {
    const dir = await Deno.makeTempDir();
    const w = randomWeights(LLAMA, 5);
    w.delete("model.layers.1.mlp.up_proj.weight");
    await writeHfFolder(dir, configToHf(LLAMA), w, shapesOf(LLAMA));
    await assert.rejects(
      () => loadPretrained(dir),
      (e: Error) =>
        e instanceof CheckpointError &&
        e.message.includes('"model.layers.1.mlp.up_proj.weight"') && e.message.includes("[32,16]"),
    );
    await Deno.remove(dir, { recursive: true });
  });
  await t.step("mis-shaped tensor", async () => {
    const dir = await Deno.makeTempDir();
    const w = randomWeights(LLAMA, 6);
    const shapes = shapesOf(LLAMA);
    shapes.set("model.layers.0.self_attn.k_proj.weight", [16, 8]); // should be [8, 16]
    await writeHfFolder(dir, configToHf(LLAMA), w, shapes);
    await assert.rejects(
      () => loadPretrained(dir),
      (e: Error) =>
        e instanceof CheckpointError &&
        e.message.includes('"model.layers.0.self_attn.k_proj.weight"') &&
        e.message.includes("[16,8]") && e.message.includes("[8,16]"),
    );
    await Deno.remove(dir, { recursive: true });
  });
  await t.step("estimate over maxBytes", async () => {
    const { dir } = await tinyCheckpoint(LLAMA, 7);
    const est = estimateModelBytes(LLAMA);
    await assert.rejects(
      () => loadPretrained(dir, { maxBytes: 1000 }),
      (e: Error) =>
        e instanceof CheckpointError && e.message.includes(`${est} bytes`) &&
        e.message.includes("1000 bytes"),
    );
    await Deno.remove(dir, { recursive: true });
  });
});

Deno.test("saveModel() then loadPretrained() round-trips weights and tokenizer", async () => {
  const before = tf.memory().numTensors;
  const model = LlamaModel.random(QWEN3, 8);
  const tok = WordTokenizer.fromTexts(["a b c, d"]);
  const dir = await Deno.makeTempDir();
  await saveModel(model, dir, tok);
  const hf = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  assert.equal(hf.model_type, "qwen3");
  assert.deepEqual(hf.architectures, ["Qwen3ForCausalLM"]);
  assert.equal(hf.head_dim, 8);
  const loaded = await loadPretrained(dir);
  assert.ok(loaded.tokenizer instanceof WordTokenizer);
  assert.equal(loaded.tokenizer.decode(loaded.tokenizer.encode("a b, c")), "a b, c");
  const a = model.namedWeights(), b = loaded.model.namedWeights();
  for (const [name, t] of a) {
    assert.deepEqual(b.get(name)!.dataSync(), t.dataSync(), name);
  }
  tf.dispose([...a.values(), ...b.values()]);
  loaded.model.dispose();

  // BF16 storage
  const dir16 = await Deno.makeTempDir();
  await saveModel(model, dir16, undefined, { dtype: "BF16" });
  const h = await readSafetensorsHeader(`${dir16}/model.safetensors`);
  assert.equal(h.tensors["model.embed_tokens.weight"].dtype, "BF16");
  assert.equal(JSON.parse(await Deno.readTextFile(`${dir16}/config.json`)).torch_dtype, "bfloat16");
  model.dispose();
  assert.equal(tf.memory().numTensors, before);
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(dir16, { recursive: true });
});

Deno.test("saveModel() saves a merged model (tied head with a LoRA becomes untied)", async () => {
  const model = LlamaModel.random(QWEN3, 9);
  model.addLora({
    ...DEFAULT_LORA_CONFIG,
    r: 2,
    lora_dropout: 0,
    target_modules: ["q_proj", "lm_head"],
  });
  for (const lin of model.linears().values()) {
    if (lin.adapter) {
      const b = lin.adapter.bT;
      b.assign(tf.tidy(() => tf.randomNormal(b.shape, 0, 0.1, "float32", 3)));
    }
  }
  const dir = await Deno.makeTempDir();
  await assert.rejects(() => saveModel(model, dir), {
    name: "CheckpointError",
    message: /unmerged LoRA/,
  });
  const ids = [[1, 5, 9, 2]];
  const want = model.logits(ids);
  model.mergeAndUnloadLora();
  await saveModel(model, dir);
  const hf = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  assert.equal(hf.tie_word_embeddings, false);
  const { model: loaded } = await loadPretrained(dir);
  const got = loaded.logits(ids);
  assert.ok(maxAbsDiff(got.dataSync(), want.dataSync()) < 1e-5);
  tf.dispose([want, got]);
  loaded.dispose();
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("toTrlJsonl() and toSdpoMultiNegJsonl() write TRL / S-DPO JSON lines", () => {
  const trl = toTrlJsonl([
    { prompt: "Watched: A, B. Next? ", chosen: "C", rejected: "D" },
    { prompt: 'quote " and\nnewline', chosen: "é", rejected: "x" },
  ]);
  const lines = trl.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  assert.deepEqual(lines[1], { prompt: 'quote " and\nnewline', chosen: "é", rejected: "x" });
  const sdpo = toSdpoMultiNegJsonl([{ prompt: "p", chosen: "a", rejected: ["b", "c", "d"] }]);
  assert.deepEqual(Object.keys(JSON.parse(sdpo)), [
    "prompt",
    "chosen",
    "rejected1",
    "rejected2",
    "rejected3",
  ]);
  assert.throws(
    () =>
      toSdpoMultiNegJsonl([
        { prompt: "p", chosen: "a", rejected: ["b", "c"] },
        { prompt: "q", chosen: "a", rejected: ["b"] },
      ]),
    { name: "InputError", message: /row 2, field "rejected": expected 2 items/ },
  );
});
