/**
 * The shipped base LM's word tokenizer as Hugging Face files (models/base-lm/tokenizer.json,
 * a WordLevel model, and tokenizer_config.json): they are what `WordTokenizer.toHuggingFace()`
 * writes, and both tokenizers.js (recalign's HfTokenizer) and transformers.js's `AutoTokenizer`
 * (test-only, through tests/_ecosystem.ts) read them into the same ids and texts as the kit's
 * WordTokenizer, on the world's prompts and on text outside normal form.
 */
import assert from "node:assert/strict";
import { initBackend } from "../src/backend.ts";
import { loadPretrained, RECALIGN_TOKENIZER_FILE, saveModel } from "../src/checkpoint.ts";
import { sdpoSamples } from "../src/data/world.ts";
import { worldCopyPrompt, worldSdpoPrompt } from "../src/data/world_text.ts";
import { baseLmSetting } from "../src/experiments/base_lm.ts";
import { LlamaModel, PRESETS } from "../src/model.ts";
import { WordTokenizer } from "../src/tokenizer.ts";
import { HfTokenizer } from "../src/tokenizer_hf.ts";
import { ecosystem, type TransformersReference } from "./_ecosystem.ts";

await initBackend("wasm", { quiet: true });

const BASE = "models/base-lm";
const word = WordTokenizer.fromJSON(await Deno.readTextFile(`${BASE}/${RECALIGN_TOKENIZER_FILE}`));

/** World prompts (S-DPO and copy exercises), answers, and text outside normal form. */
function texts(): string[] {
  const { world } = baseLmSetting();
  const s = sdpoSamples(world, "test", { drawsPerUser: 1 }).slice(0, 6);
  const out: string[] = [];
  for (const x of s) {
    const d = world.domains[x.domain];
    out.push(
      worldSdpoPrompt(x, d),
      " " + x.candidates[0],
      worldCopyPrompt(x.history, x.candidates.slice(0, 3), d),
    );
  }
  out.push(
    "a  ,b ( c )  Answer :",
    "<bos> Choose: (one)<eos><pad>",
    "zebra unicorn, words outside the vocabulary?",
    ", leading comma; <x> and (nested (parens)) !",
    "tabs\tand\nnew lines",
    "",
  );
  return out;
}

Deno.test("models/base-lm/tokenizer.json and tokenizer_config.json are WordTokenizer.toHuggingFace() of its recalign_tokenizer.json", async () => {
  const files = word.toHuggingFace();
  for (const name of ["tokenizer.json", "tokenizer_config.json"] as const) {
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${BASE}/${name}`)), files[name], name);
  }
  const json = files["tokenizer.json"] as {
    model: { type: string; vocab: Record<string, number> };
  };
  assert.equal(json.model.type, "WordLevel");
  assert.equal(Object.keys(json.model.vocab).length, word.vocabSize);
  for (let id = 0; id < word.vocabSize; id++) {
    assert.equal(json.model.vocab[word.idToToken(id)!], id);
  }
});

Deno.test("tokenizers.js reads the WordLevel tokenizer.json into the WordTokenizer's ids and texts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "recalign_wordlevel_" });
  try {
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${BASE}/${f}`, `${dir}/${f}`);
    }
    const hf = await HfTokenizer.load(dir);
    assert.deepEqual(
      [hf.padId, hf.bosId, hf.eosId, hf.hasBos, hf.vocabSize],
      [word.padId, word.bosId, word.eosId, true, word.vocabSize],
    );
    for (const t of texts()) {
      const ids = word.encode(t);
      assert.deepEqual(hf.encode(t), ids, `ids of ${JSON.stringify(t)}`);
      assert.equal(hf.decode(ids), word.decode(ids), `decode of ${JSON.stringify(t)}`);
      assert.equal(hf.decode(ids, { skipSpecial: true }), word.decode(ids, { skipSpecial: true }));
    }
    assert.ok(word.encode("zebra").includes(word.unkId), "the texts include an unknown word");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("transformers.js's AutoTokenizer loads models/base-lm: the WordTokenizer's ids, <bos> first with special tokens, the same texts", async () => {
  const list = texts().filter((t) => t !== "");
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify(list));
  const got = await ecosystem(["transformers", Deno.realPathSync(BASE), file]);
  await Deno.remove(file);
  if (typeof got === "string") {
    // Only the test-only package can be missing; say so, never pass silently.
    console.warn(`tokenizer_wordlevel_test: ignored: ${got}`);
    return;
  }
  const ref = got as TransformersReference;
  list.forEach((t, i) => {
    const ids = word.encode(t);
    assert.deepEqual(ref.texts[i].ids, ids, `ids of ${JSON.stringify(t)}`);
    assert.deepEqual(ref.texts[i].idsWithSpecial, [word.bosId, ...ids]);
    assert.equal(ref.texts[i].decoded, word.decode(ids), `decode of ${JSON.stringify(t)}`);
    assert.equal(ref.texts[i].decodedSkip, word.decode(ids, { skipSpecial: true }));
  });
  assert.deepEqual(
    [ref.pad_token_id, ref.bos_token_id, ref.eos_token_id, ref.unk_token_id],
    [word.padId, word.bosId, word.eosId, word.unkId],
  );
  assert.deepEqual([...ref.all_special_ids].sort((a, b) => a - b), [0, 1, 2, 3]);
  assert.equal(ref.vocab_size, word.vocabSize);
});

Deno.test("saveModel() with a WordTokenizer writes the Hugging Face files too, and loadPretrained() keeps the WordTokenizer", async () => {
  const dir = await Deno.makeTempDir({ prefix: "recalign_wordsave_" });
  try {
    const model = LlamaModel.random({ ...PRESETS["llama-nano"], vocab_size: word.vocabSize }, 1);
    await saveModel(model, dir, word);
    model.dispose();
    const files = word.toHuggingFace();
    for (const name of ["tokenizer.json", "tokenizer_config.json"] as const) {
      assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/${name}`)), files[name]);
    }
    const loaded = await loadPretrained(dir);
    assert.ok(loaded.tokenizer instanceof WordTokenizer);
    loaded.model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
