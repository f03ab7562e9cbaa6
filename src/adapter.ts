/**
 * Save and load LoRA adapters in PEFT's layout, so an adapter trained here loads in
 * `peft.PeftModel.from_pretrained` and the other way round.
 *
 * Files: `adapter_config.json` (`peft_type` "LORA", `r`, `lora_alpha`, `lora_dropout`,
 * `target_modules`, `bias` "none", `task_type` "CAUSAL_LM", …) and `adapter_model.safetensors`
 * with keys `base_model.model.<module>.lora_A.weight` [r, in] and `….lora_B.weight` [out, r],
 * e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` and
 * `base_model.model.lm_head.lora_B.weight`. recalign keeps the adapter transposed (aT [in, r],
 * bT [r, out]); the transposes here are exact, so a save → load round trip is bit for bit.
 *
 * References: PEFT `src/peft/utils/save_and_load.py`, `src/peft/tuners/lora/config.py`.
 *
 * @module
 */
import { ensureBackend, tf } from "./backend.ts";
import { CheckpointError } from "./errors.ts";
import { ensureDir, writeJsonAtomic } from "./io.ts";
import type { LoraConfig, LoraLinear } from "./lora.ts";
import type { LlamaModel } from "./model.ts";
import { readSafetensors, type TensorRecord, writeSafetensors } from "./safetensors.ts";

/** PEFT's adapter weights file. */
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";
/** PEFT's adapter config file. */
export const ADAPTER_CONFIG_FILE = "adapter_config.json";
/** Prefix PEFT puts before a module name (`PeftModel` → `LoraModel` → the HF model). */
export const PEFT_PREFIX = "base_model.model.";

/** Options of {@link saveAdapter}. */
export interface SaveAdapterOptions {
  /**
   * Written as `base_model_name_or_path`, which PEFT's `AutoPeftModelForCausalLM` loads the base
   * from: a hub id or a model folder (default null: no base on disk, e.g. a random init). An
   * adapter trained after a full or merged stage 0 (SFT) sits on that stage's weights, which
   * are not a model folder: the name is then the model stage 0 started from.
   */
  baseModelNameOrPath?: string;
  /** Storage dtype (default F32, which round-trips exactly). */
  dtype?: "F32" | "BF16";
}

/** PEFT key of a module's lora_A / lora_B weight. */
export function peftKey(module: string, part: "A" | "B"): string {
  return `${PEFT_PREFIX}${module}.lora_${part}.weight`;
}

/** [rows, cols] row-major → [cols, rows] row-major; exact. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j];
  }
  return out;
}

function adapted(model: LlamaModel): [string, LoraLinear][] {
  return [...model.linears()].filter(([, l]) => l.adapter !== undefined);
}

/**
 * Write the model's LoRA adapters to `folder` in PEFT's layout.
 *
 * @example Usage
 * ```ts ignore
 * import { saveAdapter } from "./adapter.ts";
 * await saveAdapter(model, "runs/adapter", loraConfig, { baseModelNameOrPath: "Qwen/Qwen3-0.6B" });
 * ```
 *
 * @param model A model with adapters attached (not merged).
 * @param folder Target folder (created if needed).
 * @param loraConfig The config the adapters were made with (`r`, `lora_alpha`, …).
 * @param opts Base model name, storage dtype.
 * @throws {CheckpointError} If the model has no adapter, an adapter is merged, or an adapter's
 *   rank or scaling disagrees with `loraConfig`.
 */
export async function saveAdapter(
  model: LlamaModel,
  folder: string,
  loraConfig: LoraConfig,
  opts: SaveAdapterOptions = {},
): Promise<void> {
  const layers = adapted(model);
  if (layers.length === 0) {
    throw new CheckpointError("saveAdapter(): the model has no LoRA adapter");
  }
  const records: Record<string, TensorRecord> = {};
  const dtype = opts.dtype ?? "F32";
  for (const [name, lin] of layers) {
    const ad = lin.adapter!;
    if (lin.merged) {
      throw new CheckpointError(
        `saveAdapter(): adapter of "${name}" is merged; call model.unmergeLora() first`,
      );
    }
    const r = ad.aT.shape[1];
    if (r !== loraConfig.r || Math.abs(ad.scaling - loraConfig.lora_alpha / loraConfig.r) > 1e-12) {
      throw new CheckpointError(
        `saveAdapter(): adapter of "${name}" has r=${r}, scaling ${ad.scaling}; loraConfig says r=${loraConfig.r}, lora_alpha/r=${
          loraConfig.lora_alpha / loraConfig.r
        }`,
      );
    }
    const a = new Float32Array(await ad.aT.data() as Float32Array); // [in, r]
    const b = new Float32Array(await ad.bT.data() as Float32Array); // [r, out]
    records[peftKey(name, "A")] = {
      dtype,
      shape: [r, lin.inFeatures],
      data: transpose(a, lin.inFeatures, r),
    };
    records[peftKey(name, "B")] = {
      dtype,
      shape: [lin.outFeatures, r],
      data: transpose(b, r, lin.outFeatures),
    };
  }
  const dir = folder.replace(/[\\/]+$/, "");
  await ensureDir(dir);
  await writeSafetensors(`${dir}/${ADAPTER_WEIGHTS_FILE}`, records, { format: "pt" });
  await writeJsonAtomic(`${dir}/${ADAPTER_CONFIG_FILE}`, {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: opts.baseModelNameOrPath ?? null,
    r: loraConfig.r,
    lora_alpha: loraConfig.lora_alpha,
    lora_dropout: loraConfig.lora_dropout,
    target_modules: [...loraConfig.target_modules],
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    use_rslora: false,
    use_dora: false,
    revision: null,
  });
}

/**
 * Read `adapter_config.json` into a {@link LoraConfig} (seed 0: it only matters for a fresh
 * init). Refuses PEFT options recalign does not implement.
 *
 * @param folder The adapter folder.
 * @returns The config and whether it uses rsLoRA (scaling lora_alpha / √r).
 * @throws {CheckpointError} Naming the file and field.
 */
export async function readAdapterConfig(
  folder: string,
): Promise<{ config: LoraConfig; useRslora: boolean; baseModelNameOrPath?: string }> {
  const path = `${folder.replace(/[\\/]+$/, "")}/${ADAPTER_CONFIG_FILE}`;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    throw new CheckpointError(`${path}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  const bad = (field: string, why: string): never => {
    throw new CheckpointError(
      `${path}: field "${field}" = ${JSON.stringify(json[field])}: ${why}`,
    );
  };
  if (json.peft_type !== "LORA") bad("peft_type", `expected "LORA"`);
  if ((json.bias ?? "none") !== "none") bad("bias", `only "none" is supported`);
  if (json.use_dora === true) bad("use_dora", "DoRA is not supported");
  if (json.fan_in_fan_out === true) bad("fan_in_fan_out", "not supported");
  for (const f of ["rank_pattern", "alpha_pattern"]) {
    if (json[f] && Object.keys(json[f] as object).length > 0) {
      bad(f, "per-module ranks are not supported");
    }
  }
  if (json.layers_to_transform !== undefined && json.layers_to_transform !== null) {
    bad("layers_to_transform", "not supported");
  }
  if (json.modules_to_save !== undefined && json.modules_to_save !== null) {
    bad("modules_to_save", "fully trained extra modules are not supported");
  }
  const targets = json.target_modules;
  if (!Array.isArray(targets) || !targets.every((t) => typeof t === "string")) {
    bad("target_modules", "expected a list of module names (a regex string is not supported)");
  }
  if (typeof json.r !== "number") bad("r", "expected a number");
  if (typeof json.lora_alpha !== "number") bad("lora_alpha", "expected a number");
  return {
    config: {
      r: json.r as number,
      lora_alpha: json.lora_alpha as number,
      lora_dropout: typeof json.lora_dropout === "number" ? json.lora_dropout : 0,
      target_modules: targets as string[],
      seed: 0,
    },
    useRslora: json.use_rslora === true,
    baseModelNameOrPath: typeof json.base_model_name_or_path === "string"
      ? json.base_model_name_or_path
      : undefined,
  };
}

/**
 * Attach the PEFT adapter in `folder` to `model` (which must have none): `model.addLora` with
 * the saved config, then every lora_A / lora_B value is assigned. Every adapted module must
 * have both tensors in the file with PEFT's shapes, and the file no other tensor.
 *
 * @example Usage
 * ```ts ignore
 * import { loadAdapter } from "./adapter.ts";
 * const cfg = await loadAdapter(model, "runs/adapter");
 * ```
 *
 * @param model The base model.
 * @param folder The adapter folder.
 * @returns The adapter's LoRA config.
 * @throws {CheckpointError} Naming the key (and both shapes) on a missing, unexpected or
 *   mis-shaped tensor; on an unsupported config; if the model already has adapters. The model
 *   is left without adapters on error.
 */
export async function loadAdapter(model: LlamaModel, folder: string): Promise<LoraConfig> {
  await ensureBackend();
  const dir = folder.replace(/[\\/]+$/, "");
  if (model.hasLora()) {
    throw new CheckpointError(`loadAdapter(${dir}): the model already has LoRA adapters`);
  }
  const { config, useRslora } = await readAdapterConfig(dir);
  const file = `${dir}/${ADAPTER_WEIGHTS_FILE}`;
  const { tensors } = await readSafetensors(file);
  try {
    model.addLora(config);
  } catch (err) {
    throw new CheckpointError(`${dir}/${ADAPTER_CONFIG_FILE}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    const used = new Set<string>();
    const layers = adapted(model);
    // Check everything first, then assign.
    const values: [LoraLinear, Float32Array, Float32Array][] = [];
    for (const [name, lin] of layers) {
      const r = config.r;
      const get = (part: "A" | "B", shape: number[]): Float32Array => {
        const key = peftKey(name, part);
        const t = tensors[key];
        if (!t) {
          throw new CheckpointError(
            `${file}: tensor "${key}" (expected shape [${shape}]) is missing`,
          );
        }
        if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
          throw new CheckpointError(
            `${file}: tensor "${key}" has shape [${t.shape}], expected [${shape}]`,
          );
        }
        if (!(t.data instanceof Float32Array)) {
          throw new CheckpointError(`${file}: tensor "${key}" has integer dtype ${t.dtype}`);
        }
        used.add(key);
        return t.data;
      };
      const a = get("A", [r, lin.inFeatures]);
      const b = get("B", [lin.outFeatures, r]);
      values.push([lin, transpose(a, r, lin.inFeatures), transpose(b, lin.outFeatures, r)]);
    }
    const extra = Object.keys(tensors).filter((k) => !used.has(k)).sort();
    if (extra.length > 0) {
      throw new CheckpointError(
        `${file}: tensor "${extra[0]}" matches no adapted module of the model${
          extra.length > 1 ? ` (and ${extra.length - 1} more)` : ""
        }; adapted modules come from target_modules [${config.target_modules}]`,
      );
    }
    for (const [lin, aT, bT] of values) {
      const ad = lin.adapter!;
      tf.tidy(() => {
        ad.aT.assign(tf.tensor2d(aT, [lin.inFeatures, config.r]));
        ad.bT.assign(tf.tensor2d(bT, [config.r, lin.outFeatures]));
      });
      if (useRslora) ad.scaling = config.lora_alpha / Math.sqrt(config.r);
    }
  } catch (err) {
    model.removeLora();
    throw err;
  }
  return config;
}
