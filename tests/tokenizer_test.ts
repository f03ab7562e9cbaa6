import assert from "node:assert/strict";
import { dmpoSamples, makeWorld, sdpoSamples } from "../src/data/world.ts";
import { worldDmpoPrompt, worldSdpoPrompt } from "../src/data/world_text.ts";
import { InputError } from "../src/errors.ts";
import { Rng } from "../src/rng.ts";
import { normalizeText, type Tokenizer, WordTokenizer } from "../src/tokenizer.ts";

const world = makeWorld({ numUsers: 60 });
const titles = world.items.map((i) => i.title);
const sdpo = sdpoSamples(world, "test", { drawsPerUser: 1 });
const dmpo = dmpoSamples(world, "test", { numNegatives: 2 });
const sdpoPrompts = sdpo.map((s) => worldSdpoPrompt(s, world.domains[s.domain]));
const dmpoTexts = dmpo.map((s) => worldDmpoPrompt(s, world.domains[s.domain]));
const corpus = [
  ...titles,
  ...sdpoPrompts,
  ...dmpoTexts.flatMap((t) => [t.prompt, t.chosen, ...t.rejected]),
];
const tok = WordTokenizer.fromTexts(corpus);

Deno.test("WordTokenizer round-trips every title and the world prompts", () => {
  for (const t of titles) {
    const ids = tok.encode(t);
    assert.equal(ids.length, t.split(" ").length);
    assert.ok(!ids.includes(tok.unkId));
    assert.equal(tok.decode(ids), t);
  }
  for (const p of sdpoPrompts) {
    assert.equal(normalizeText(p), p, "S-DPO prompts are already in normal form");
    assert.equal(tok.decode(tok.encode(p)), p);
  }
  for (const t of dmpoTexts) {
    const n = normalizeText(t.prompt);
    assert.equal(tok.decode(tok.encode(t.prompt)), n);
    assert.equal(tok.decode(tok.encode(n)), n);
    assert.ok(n.includes("they have watched: <Title: "), n);
    assert.ok(n.endsWith(">."));
    assert.equal(tok.decode(tok.encode(t.chosen)), normalizeText(t.chosen));
  }
});

Deno.test("WordTokenizer splits punctuation into tokens and decode re-attaches it", () => {
  assert.deepEqual(
    tok.tokenize("titles: a b, c d. Answer:"),
    ["titles", ":", "a", "b", ",", "c", "d", ".", "Answer", ":"],
  );
  assert.deepEqual(tok.tokenize(" <Title:x y> ,  <Title:z> "), [
    "<",
    "Title",
    ":",
    "x",
    "y",
    ">",
    ",",
    "<",
    "Title",
    ":",
    "z",
    ">",
  ]);
  assert.equal(normalizeText("a  ,b ( c )  Answer :\n x ; y ! z ?"), "a, b (c) Answer: x; y! z?");
});

Deno.test("normalizeText() is idempotent and decode(encode(t)) equals it on random texts", () => {
  const rng = new Rng(11);
  const pieces = ["ghost3", "night", ",", ";", ":", ".", "?", "!", "<", ">", "(", ")", "the"];
  const seps = [" ", "", "  ", "\n", "\t"];
  for (let r = 0; r < 300; r++) {
    let text = "";
    const n = 1 + rng.int(12);
    for (let i = 0; i < n; i++) text += rng.choice(seps) + rng.choice(pieces);
    const t2 = WordTokenizer.fromTexts([text]);
    const norm = normalizeText(text);
    assert.equal(normalizeText(norm), norm, JSON.stringify(text));
    assert.equal(t2.decode(t2.encode(text)), norm, JSON.stringify(text));
    assert.deepEqual(t2.tokenize(norm), t2.tokenize(text));
  }
});

Deno.test("WordTokenizer maps unknown words to <unk>", () => {
  const ids = tok.encode("zebra ghost3 quux");
  assert.equal(ids[0], tok.unkId);
  assert.equal(ids[2], tok.unkId);
  assert.equal(tok.idToToken(tok.unkId), "<unk>");
  assert.notEqual(ids[1], tok.unkId);
  assert.equal(tok.decode(ids), "<unk> ghost3 <unk>");
  assert.equal(tok.tokenToId("zebra"), undefined);
});

Deno.test("WordTokenizer special tokens: fixed ids, literals in text, skipSpecial", () => {
  const t: Tokenizer = tok;
  assert.deepEqual([t.padId, t.bosId, t.eosId, tok.unkId], [0, 1, 2, 3]);
  assert.deepEqual([0, 1, 2, 3].map((i) => t.idToToken(i)), ["<pad>", "<bos>", "<eos>", "<unk>"]);
  const title = titles[0];
  const ids = t.encode(`<bos>${title}<eos>`);
  assert.deepEqual(ids, [t.bosId, ...t.encode(title), t.eosId]);
  assert.equal(t.decode(ids, { skipSpecial: true }), title);
  assert.equal(t.decode(ids), `<bos> ${title} <eos>`);
  assert.equal(t.decode([t.padId, t.padId, ...t.encode(title)], { skipSpecial: true }), title);
  assert.throws(() => t.decode([t.vocabSize]), InputError);
  const extra = WordTokenizer.fromTexts(["a <sep> b"], { specials: ["<sep>"] });
  assert.deepEqual(extra.encode("a <sep> b"), [5, 4, 6]);
  assert.equal(extra.vocabSize, 7);
});

Deno.test("WordTokenizer vocabulary: specials, then words by count, ties in code-unit order", () => {
  const t = WordTokenizer.fromTexts(["b a b", "c, a b"]);
  assert.deepEqual(
    Array.from({ length: t.vocabSize }, (_, i) => t.idToToken(i)),
    ["<pad>", "<bos>", "<eos>", "<unk>", "b", "a", ",", "c"],
  );
  assert.equal(t.idToToken(99), undefined);
  assert.equal(WordTokenizer.fromTexts(["a a b"], { minCount: 2 }).vocabSize, 5);
});

Deno.test("WordTokenizer toJSON()/fromJSON() round-trips (object and string)", () => {
  const json = tok.toJSON();
  for (const back of [WordTokenizer.fromJSON(json), WordTokenizer.fromJSON(JSON.stringify(json))]) {
    assert.deepEqual(back.toJSON(), json);
    assert.equal(back.vocabSize, tok.vocabSize);
    for (const p of sdpoPrompts.slice(0, 5)) assert.deepEqual(back.encode(p), tok.encode(p));
  }
  const isInput = (e: unknown) => e instanceof InputError && e.argument === "json";
  assert.throws(() => WordTokenizer.fromJSON("{not json"), isInput);
  assert.throws(() => WordTokenizer.fromJSON({ ...json, type: "bpe" as "word" }), isInput);
  assert.throws(
    () => WordTokenizer.fromJSON({ ...json, vocab: ["<bos>", ...json.vocab.slice(1)] }),
    isInput,
  );
  assert.throws(() => WordTokenizer.fromJSON({ ...json, vocab: [...json.vocab, "the"] }), isInput);
});
