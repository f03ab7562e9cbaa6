/**
 * Shared pieces of the `deno task reproduce` experiments: scale presets, the synthetic world,
 * the word tokenizer, the stage-0 base LM, weight snapshots, and fast scoring (one prompt
 * forward with a KV cache, then every response on top of the tiled cache).
 *
 * @module
 */
import { tf } from "../backend.ts";
import { disposeCache, type KVCache, type LlamaConfig, LlamaModel } from "../model.ts";
import { LLAMA_PROJECTIONS, type LoraConfig } from "../lora.ts";
import { train, type TrainExample } from "../train.ts";
import { WordTokenizer } from "../tokenizer.ts";
import { dmpoSamples, makeWorld, type SdpoSample, type World } from "../data/world.ts";
import { worldDmpoPrompt, worldSdpoPrompt } from "../data/world_text.ts";
import { Rng } from "../rng.ts";

/** Scale names. `test` is for the test suite only. */
export const SCALES = ["test", "tiny", "small"] as const;
/** A scale name. */
export type ScaleName = typeof SCALES[number];

/** Every size knob of a run. */
export interface Scale {
  /** Name. */
  name: ScaleName;
  /** Draws per train user for the S-DPO samples (train set of stage 0 / SFT). */
  sdpoDrawsPerUser: number;
  /** Stage-0 / S-DPO SFT: full fine-tuning steps. */
  baseSteps: number;
  /** Stage-0 learning rate. */
  baseLr: number;
  /** Preference prompts (a fixed subset of the train prompts) for the S-DPO arms. */
  prefPrompts: number;
  /** Steps of every preference arm (and of SFT-cont). */
  prefSteps: number;
  /** Learning rate of every LoRA arm. */
  prefLr: number;
  /** Batch size (examples per step) of stage 0 and the DMPO SFT. */
  batchSize: number;
  /** Batch size of every LoRA arm (preference stages and SFT-cont). */
  prefBatch: number;
  /** S-DPO test prompts evaluated. */
  sdpoTest: number;
  /** Generation-evaluated test prompts (a prefix of the ranking ones). */
  sdpoGenTest: number;
  /** DMPO train prompts (one per train user, a prefix). */
  dmpoTrain: number;
  /** DMPO LoRA SFT steps. */
  dmpoSftSteps: number;
  /** DMPO preference steps. */
  dmpoPrefSteps: number;
  /** DMPO test pairs. */
  dmpoTest: number;
}

/** The presets. */
export const SCALE_PRESETS: Record<ScaleName, Scale> = {
  test: {
    name: "test",
    sdpoDrawsPerUser: 1,
    baseSteps: 16,
    baseLr: 3e-3,
    prefPrompts: 16,
    prefSteps: 3,
    prefLr: 1e-3,
    batchSize: 8,
    prefBatch: 4,
    sdpoTest: 12,
    sdpoGenTest: 8,
    dmpoTrain: 64,
    dmpoSftSteps: 3,
    dmpoPrefSteps: 3,
    dmpoTest: 24,
  },
  tiny: {
    name: "tiny",
    sdpoDrawsPerUser: 2,
    baseSteps: 100,
    baseLr: 3e-3,
    prefPrompts: 64,
    prefSteps: 16,
    prefLr: 1e-3,
    batchSize: 16,
    prefBatch: 4,
    sdpoTest: 100,
    sdpoGenTest: 50,
    dmpoTrain: 700,
    dmpoSftSteps: 30,
    dmpoPrefSteps: 12,
    dmpoTest: 150,
  },
  small: {
    name: "small",
    sdpoDrawsPerUser: 4,
    baseSteps: 250,
    baseLr: 3e-3,
    prefPrompts: 160,
    prefSteps: 50,
    prefLr: 5e-4,
    batchSize: 16,
    prefBatch: 8,
    sdpoTest: 200,
    sdpoGenTest: 100,
    dmpoTrain: 1400,
    dmpoSftSteps: 80,
    dmpoPrefSteps: 30,
    dmpoTest: 300,
  },
};

/** LoRA of every arm (r 8, α 16, no dropout, all seven projections). */
export function loraConfig(seed: number): LoraConfig {
  return { r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: [...LLAMA_PROJECTIONS], seed };
}

/** The world every experiment uses: the default config (domain 0 is the feasibility world). */
export function buildWorld(): World {
  return makeWorld();
}

/**
 * The word tokenizer: every item title plus one S-DPO and one DMPO text (the templates), so
 * it is the same for both papers and independent of the scale.
 */
export function buildTokenizer(world: World, sdpoExample: SdpoSample): WordTokenizer {
  const dm = dmpoSamples(world, "train", { numNegatives: 1 })[0];
  const dt = worldDmpoPrompt(dm, world.domains[0]);
  return WordTokenizer.fromTexts([
    ...world.items.map((i) => i.title),
    worldSdpoPrompt(sdpoExample, world.domains[0]),
    dt.prompt,
    dt.chosen,
  ]);
}

/** The small Llama config of the feasibility study (dim 64, 2 layers, 4 heads, ffn 192). */
export function modelConfig(vocabSize: number): LlamaConfig {
  return {
    vocab_size: vocabSize,
    hidden_size: 64,
    intermediate_size: 192,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    max_position_embeddings: 256,
    initializer_range: 0.02,
    model_type: "llama",
  };
}

/** Prompt ids: BOS + words. */
export function encodePrompt(tok: WordTokenizer, text: string): number[] {
  return [tok.bosId, ...tok.encode(text)];
}

/** Response ids: words + EOS. */
export function encodeResponse(tok: WordTokenizer, text: string): number[] {
  return [...tok.encode(text), tok.eosId];
}

/** S-DPO training example: prompt → positive title; pool = the other 19 candidates. */
export function sdpoExample(tok: WordTokenizer, s: SdpoSample, world: World): TrainExample {
  return {
    prompt: encodePrompt(tok, worldSdpoPrompt(s, world.domains[s.domain])),
    chosen: encodeResponse(tok, s.positive),
    rejected: s.negatives.map((n) => encodeResponse(tok, n)),
  };
}

/** A frozen copy of a model's weights. */
export type Snapshot = Map<string, tf.Tensor>;

/** Snapshot the current (merged) weights; dispose with {@link disposeSnapshot}. */
export function snapshot(model: LlamaModel): Snapshot {
  return model.namedWeights();
}

/** A fresh model from a snapshot (the snapshot stays valid). */
export function fromSnapshot(config: LlamaConfig, snap: Snapshot): LlamaModel {
  return LlamaModel.fromWeights(
    config,
    new Map([...snap].map(([k, t]) => [k, tf.clone(t)])),
  );
}

/** Free a snapshot. */
export function disposeSnapshot(snap: Snapshot): void {
  for (const t of snap.values()) t.dispose();
}

/** Seconds since `t0` (performance.now() ms). */
export function since(t0: number): number {
  return Math.round((performance.now() - t0) / 100) / 10;
}

/** Shared train() options of the experiments. */
export interface StageOptions {
  /** Label of progress lines. */
  label: string;
  /** Print progress. */
  progress: boolean;
}

/**
 * Stage 0: a random LM, fully fine-tuned with the SFT loss on `examples`, then frozen.
 * Returns the model and the seconds it took.
 */
export async function trainBase(
  config: LlamaConfig,
  examples: TrainExample[],
  scale: Scale,
  seed: number,
  opts: StageOptions,
): Promise<{ model: LlamaModel; seconds: number; finalLoss: number }> {
  const t0 = performance.now();
  const model = LlamaModel.random(config, 1000 + seed);
  model.makeFullyTrainable();
  const r = await train(model, examples, {
    stage: "sft",
    steps: scale.baseSteps,
    batchSize: scale.batchSize,
    microBatchSize: scale.batchSize,
    lr: scale.baseLr,
    warmupSteps: Math.min(20, Math.floor(scale.baseSteps / 5)),
    beta2: 0.95,
    seed,
    logEvery: Math.max(1, Math.floor(scale.baseSteps / 5)),
  }, { label: opts.label, progress: opts.progress });
  model.freeze();
  return { model, seconds: since(t0), finalLoss: r.history.at(-1)?.loss ?? NaN };
}

/** A stage-0 model's weights with what it cost. */
export interface BaseSnapshot {
  /** The weights. */
  snap: Snapshot;
  /** Training seconds (of the run that trained it). */
  seconds: number;
  /** Last logged loss. */
  finalLoss: number;
  /** True when an earlier experiment of this process trained it. */
  reused: boolean;
}

const baseCache = new Map<string, BaseSnapshot>();

/**
 * The stage-0 model of (scale, seed), trained once per process and shared by the
 * experiments (`--paper all` trains it once per seed). The snapshot belongs to the cache.
 */
export async function baseSnapshot(
  config: LlamaConfig,
  examples: TrainExample[],
  scale: Scale,
  seed: number,
  opts: StageOptions,
): Promise<BaseSnapshot> {
  const key = `${scale.name}/${seed}/${config.vocab_size}/${examples.length}`;
  const hit = baseCache.get(key);
  if (hit) return { ...hit, reused: true };
  const { model, seconds, finalLoss } = await trainBase(config, examples, scale, seed, opts);
  const out = { snap: snapshot(model), seconds, finalLoss, reused: false };
  model.dispose();
  baseCache.set(key, out);
  return out;
}

/** Free every cached stage-0 snapshot. */
export function clearBaseCache(): void {
  for (const b of baseCache.values()) disposeSnapshot(b.snap);
  baseCache.clear();
}

/**
 * Summed log-probs of each response after one prompt, for many prompts. One forward of the
 * prompt fills a KV cache, which is tiled over the responses; the first response token is
 * scored from the prompt's last logits, the rest from one batched forward on the cache.
 * Equal to {@link scorePairs} on (prompt, response) pairs up to float error.
 */
export function scoreResponses(
  model: LlamaModel,
  items: { prompt: number[]; responses: number[][] }[],
): number[][] {
  return items.map(({ prompt, responses }) => {
    const c = responses.length;
    const cache: KVCache = { k: [], v: [], length: 0 };
    try {
      const firstLp = tf.tidy(() => {
        const x = tf.tensor2d([prompt], [1, prompt.length], "int32");
        const logits = model.forward(x, { cache });
        const last = logits.slice([0, prompt.length - 1, 0], [1, 1, -1]).reshape([-1]);
        return tf.logSoftmax(last);
      });
      const first = firstLp.dataSync() as Float32Array;
      firstLp.dispose();
      const out = responses.map((r) => first[r[0]]);
      const maxLen = Math.max(...responses.map((r) => r.length));
      if (maxLen > 1) {
        // Tile the cache over the responses.
        const tile = (ts: (tf.Tensor4D | undefined)[]) =>
          ts.map((t) => {
            const tiled = tf.tile(t!, [c, 1, 1, 1]) as tf.Tensor4D;
            t!.dispose();
            return tiled;
          });
        cache.k = tile(cache.k);
        cache.v = tile(cache.v);
        const inputs = responses.map((r) => {
          const row = r.slice(0, maxLen - 1);
          while (row.length < maxLen - 1) row.push(0);
          return row;
        });
        const lp = tf.tidy(() => {
          const x = tf.tensor2d(inputs, [c, maxLen - 1], "int32");
          return tf.logSoftmax(model.forward(x, { cache }), -1);
        });
        const data = lp.dataSync() as Float32Array;
        const v = model.config.vocab_size;
        lp.dispose();
        responses.forEach((r, i) => {
          for (let j = 1; j < r.length; j++) {
            out[i] += data[(i * (maxLen - 1) + (j - 1)) * v + r[j]];
          }
        });
      }
      return out;
    } finally {
      disposeCache(cache);
    }
  });
}

/** A seeded subset of `n` elements (order kept), or all when n ≥ length. */
export function subset<T>(xs: readonly T[], n: number, seed: number): T[] {
  if (n >= xs.length) return xs.slice();
  const idx = new Rng(seed).sample(xs.map((_, i) => i), n).sort((a, b) => a - b);
  return idx.map((i) => xs[i]);
}

/** The commit checked out (read from `.git/HEAD`, without running git), if any. */
export async function gitHead(root = "."): Promise<string | undefined> {
  try {
    const head = (await Deno.readTextFile(`${root}/.git/HEAD`)).trim();
    if (!head.startsWith("ref: ")) return head;
    const ref = head.slice(5);
    try {
      return (await Deno.readTextFile(`${root}/.git/${ref}`)).trim();
    } catch {
      const packed = await Deno.readTextFile(`${root}/.git/packed-refs`);
      const line = packed.split("\n").find((l) => l.endsWith(` ${ref}`));
      return line?.split(" ")[0];
    }
  } catch {
    return undefined;
  }
}
