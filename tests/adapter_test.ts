import assert from "node:assert/strict";
import { initBackend, tf } from "../src/backend.ts";
import { loadAdapter, peftKey, saveAdapter } from "../src/adapter.ts";
import { CheckpointError } from "../src/errors.ts";
import { DEFAULT_LORA_CONFIG, type LoraConfig } from "../src/lora.ts";
import { type LlamaConfig, LlamaModel, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from "../src/safetensors.ts";

await initBackend("wasm", { quiet: true });

const CFG: LlamaConfig = { ...PRESETS["llama-nano"], attention_bias: true, model_type: "qwen2" };
const LORA: LoraConfig = {
  ...DEFAULT_LORA_CONFIG,
  r: 4,
  lora_alpha: 8,
  lora_dropout: 0,
  target_modules: ["q_proj", "v_proj", "down_proj", "lm_head"],
  seed: 5,
};

/** Random B values (B starts at zero), so the round trip is not trivially zeros. */
function perturb(model: LlamaModel, seed: number): void {
  const rng = new Rng(seed);
  for (const lin of model.linears().values()) {
    if (!lin.adapter) continue;
    const b = lin.adapter.bT;
    b.assign(
      tf.tidy(() => tf.tensor(Float32Array.from({ length: b.size }, () => rng.normal()), b.shape)),
    );
  }
}

/** Every adapter value as raw bits, by layer. */
function adapterBits(model: LlamaModel): Map<string, Uint32Array> {
  const out = new Map<string, Uint32Array>();
  for (const [name, lin] of model.linears()) {
    if (!lin.adapter) continue;
    for (const [part, v] of [["A", lin.adapter.aT], ["B", lin.adapter.bT]] as const) {
      out.set(`${name}.${part}`, new Uint32Array((v.dataSync() as Float32Array).slice().buffer));
    }
  }
  return out;
}

Deno.test("saveAdapter() then loadAdapter() round-trips bit for bit in PEFT's layout", async () => {
  const src = LlamaModel.random(CFG, 1);
  src.addLora(LORA);
  perturb(src, 2);
  const dir = await Deno.makeTempDir();
  await saveAdapter(src, dir, LORA, { baseModelNameOrPath: "tiny/base" });

  const conf = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
  assert.equal(conf.peft_type, "LORA");
  assert.equal(conf.task_type, "CAUSAL_LM");
  assert.equal(conf.bias, "none");
  assert.equal(conf.r, 4);
  assert.equal(conf.lora_alpha, 8);
  assert.equal(conf.base_model_name_or_path, "tiny/base");
  assert.deepEqual(conf.target_modules, ["q_proj", "v_proj", "down_proj", "lm_head"]);

  const h = await readSafetensorsHeader(`${dir}/adapter_model.safetensors`);
  const h2 = CFG.hidden_size, ff = CFG.intermediate_size;
  assert.deepEqual(
    h.tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape,
    [4, h2],
  );
  assert.deepEqual(
    h.tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].shape,
    [h2, 4],
  );
  assert.deepEqual(h.tensors["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"].shape, [
    4,
    ff,
  ]);
  assert.deepEqual(h.tensors["base_model.model.lm_head.lora_B.weight"].shape, [CFG.vocab_size, 4]);
  assert.equal(
    h.tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"],
    undefined,
  );
  // 2 layers × 3 modules + lm_head, A and B each
  assert.equal(Object.keys(h.tensors).length, 2 * (2 * 3 + 1));
  assert.equal(peftKey("lm_head", "A"), "base_model.model.lm_head.lora_A.weight");

  // The stored lora_B is the transpose of bT.
  const { tensors } = await readSafetensors(`${dir}/adapter_model.safetensors`);
  const bT = src.linears().get("model.layers.0.self_attn.v_proj")!.adapter!.bT; // [r, out]
  const stored = tensors["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"]; // [out, r]
  const out = bT.shape[1]!;
  assert.equal(stored.data[2 * 4 + 1], bT.dataSync()[1 * out + 2]);

  const dst = LlamaModel.random(CFG, 1);
  const cfg = await loadAdapter(dst, dir);
  assert.equal(cfg.r, 4);
  assert.deepEqual(adapterBits(dst), adapterBits(src));
  const ids = [[3, 1, 4, 1, 5, 9]];
  const a = src.logits(ids), b = dst.logits(ids);
  assert.deepEqual(b.dataSync(), a.dataSync());
  tf.dispose([a, b]);
  src.dispose();
  dst.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadAdapter() names the key on a wrong-shaped, missing or unexpected tensor", async (t) => {
  const src = LlamaModel.random(CFG, 1);
  src.addLora(LORA);
  const dir = await Deno.makeTempDir();
  await saveAdapter(src, dir, LORA);
  const file = `${dir}/adapter_model.safetensors`;
  const { tensors } = await readSafetensors(file);
  const key = "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight";
  const rewrite = async (edit: (ts: typeof tensors) => void) => {
    const copy = { ...tensors };
    edit(copy);
    await writeSafetensors(
      file,
      Object.fromEntries(Object.entries(copy).map(([k, v]) => [k, { ...v, dtype: "F32" }])),
    );
  };
  const dst = LlamaModel.random(CFG, 1);
  await t.step("wrong shape", async () => {
    await rewrite((ts) =>
      ts[key] = { dtype: "F32", shape: [CFG.hidden_size, 4], data: ts[key].data as Float32Array }
    );
    await assert.rejects(
      () => loadAdapter(dst, dir),
      (e: Error) =>
        e instanceof CheckpointError && e.message.includes(`"${key}"`) &&
        e.message.includes(`[${CFG.hidden_size},4]`) &&
        e.message.includes(`[4,${CFG.hidden_size}]`),
    );
    assert.equal(dst.hasLora(), false); // left clean
  });
  await t.step("missing", async () => {
    await rewrite((ts) => delete ts[key]);
    await assert.rejects(
      () => loadAdapter(dst, dir),
      (e: Error) =>
        e instanceof CheckpointError && e.message.includes(`"${key}"`) && /missing/.test(e.message),
    );
  });
  await t.step("unexpected", async () => {
    const extra = "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight";
    await rewrite((ts) =>
      ts[extra] = {
        dtype: "F32",
        shape: [4, CFG.hidden_size],
        data: new Float32Array(4 * CFG.hidden_size),
      }
    );
    await assert.rejects(
      () => loadAdapter(dst, dir),
      (e: Error) => e instanceof CheckpointError && e.message.includes(`"${extra}"`),
    );
  });
  await t.step("unsupported config", async () => {
    await rewrite(() => {});
    const conf = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
    await Deno.writeTextFile(
      `${dir}/adapter_config.json`,
      JSON.stringify({ ...conf, use_dora: true }),
    );
    await assert.rejects(
      () => loadAdapter(dst, dir),
      (e: Error) => e instanceof CheckpointError && e.message.includes("use_dora"),
    );
  });
  src.dispose();
  dst.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadAdapter() applies rsLoRA scaling lora_alpha / sqrt(r)", async () => {
  const src = LlamaModel.random(CFG, 1);
  src.addLora(LORA);
  const dir = await Deno.makeTempDir();
  await saveAdapter(src, dir, LORA);
  const conf = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
  await Deno.writeTextFile(
    `${dir}/adapter_config.json`,
    JSON.stringify({ ...conf, use_rslora: true }),
  );
  const dst = LlamaModel.random(CFG, 1);
  await loadAdapter(dst, dir);
  assert.equal(dst.linears().get("lm_head")!.adapter!.scaling, 8 / 2);
  src.dispose();
  dst.dispose();
  await Deno.remove(dir, { recursive: true });
});
