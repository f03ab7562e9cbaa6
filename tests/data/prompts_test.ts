import assert from "node:assert/strict";
import { InputError } from "../../src/errors.ts";
import { Rng } from "../../src/rng.ts";
import { readSdpoFile } from "../../src/data/sdpo.ts";
import {
  dmpoChosen,
  dmpoInstruction,
  dmpoRanking,
  dmpoRejected,
  dmpoUserMessage,
  LLAMA2_DEFAULT_SYSTEM_PROMPT,
  llama2ChatPrompt,
  SDPO_TEMPLATES,
  sdpoPrompt,
} from "../../src/data/prompts.ts";

const DATA = new URL("../../../shared/data/", import.meta.url);
const HAVE_DATA = (() => {
  try {
    return Deno.statSync(new URL("sdpo-lastfm/lastfm-test.json", DATA)).isFile;
  } catch {
    return false;
  }
})();

/** FORMATS.md §1.2 worked example: lastfm-test.json row 0 with template 1. */
const WORKED_EXAMPLE =
  "This person has listened some musics from these bands Kylie Minogue, Avril Lavigne, " +
  "Ke$ha recently. Please predict the next band or artist this person will listen to. Choose the answer " +
  "from the following 20 band names: James Blunt, Tinariwen, Blake Shelton, King Crimson, K's Choice, " +
  "Alestorm, Capsule, Porcupine Tree, Glee Cast, Mad Season, Millionaires, Bif Naked, Robert Johnson, " +
  "Júpiter Maçã, Hothouse Flowers, Shakin' Stevens, Mission of Burma, Markus Schulz, The Almost, " +
  "Fuck Buttons. Answer: ";

Deno.test({
  name: "sdpoPrompt() reproduces the FORMATS.md worked example (lastfm-test row 0, template 1)",
  ignore: !HAVE_DATA,
  fn: async () => {
    const samples = await readSdpoFile(new URL("sdpo-lastfm/lastfm-test.json", DATA).pathname);
    const train = sdpoPrompt(samples[0], new Rng(0), { mode: "train", templateIndex: 0 });
    assert.deepEqual(train, { prompt: WORKED_EXAMPLE, templateIndex: 0 });
    const ev = sdpoPrompt(samples[0], new Rng(0), { mode: "eval", templateIndex: 0 });
    assert.equal(ev.prompt, WORKED_EXAMPLE.slice(0, -1));
    assert.ok(ev.prompt.endsWith("Answer:"));
    assert.equal(samples[0].positive, "Glee Cast");
  },
});

Deno.test("SDPO_TEMPLATES.music holds the 10 trimmed templates, each with both slots", () => {
  assert.equal(SDPO_TEMPLATES.music.length, 10);
  for (const t of SDPO_TEMPLATES.music) {
    assert.equal(t, t.trim());
    assert.ok(t.endsWith("Answer:"));
    assert.equal(t.split("[HistoryHere]").length, 2);
    assert.equal(t.split("[CansHere]").length, 2);
  }
});

Deno.test("sdpoPrompt() draws templates with the seeded RNG and inserts names literally", () => {
  const s = { history: ["A$&B", "C"], candidates: ["$1", "D, E"] };
  const a = new Rng(7), b = new Rng(7);
  const used = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const p = sdpoPrompt(s, a, { mode: "train" });
    assert.deepEqual(sdpoPrompt(s, b, { mode: "train" }), p);
    used.add(p.templateIndex);
    const t = SDPO_TEMPLATES.music[p.templateIndex];
    assert.equal(
      p.prompt,
      t.split("[HistoryHere]").join("A$&B, C").split("[CansHere]").join("$1, D, E") + " ",
    );
    assert.ok(p.prompt.endsWith("Answer: "));
  }
  assert.equal(used.size, 10);
  // A fixed template does not advance the RNG.
  const r = new Rng(3), before = r.state();
  sdpoPrompt(s, r, { mode: "eval", templateIndex: 9 });
  assert.deepEqual(r.state(), before);
  // Custom templates are trimmed like Python's strip().
  assert.equal(
    sdpoPrompt(s, r, {
      mode: "eval",
      templates: ["  Seen [HistoryHere]; pick [CansHere]. Answer:\n"],
    }).prompt,
    "Seen A$&B, C; pick $1, D, E. Answer:",
  );
  assert.throws(() => sdpoPrompt(s, r, { mode: "train", templateIndex: 10 }), InputError);
  assert.throws(() => sdpoPrompt(s, r, { mode: "train", templates: [] }), InputError);
});

Deno.test("dmpoInstruction() and dmpoRanking() follow FORMATS.md §2.1 character for character", () => {
  const expected =
    "You are an assistant working on movie recommendations. Here is the user's history of movies " +
    "they have watched:  <Title:Miracle on 34th Street >  <Title:Big > . Rank the likelihood of the user " +
    "watching the two movies  <Title:Tarzan >  and  <Title:Gigi > .";
  assert.equal(dmpoInstruction(["Miracle on 34th Street ", "Big "], "Tarzan ", "Gigi "), expected);
  assert.equal(dmpoRanking("Gigi ", "Tarzan "), " <Title:Gigi > ,  <Title:Tarzan > ");
  assert.equal(dmpoChosen("Gigi ", "Tarzan "), " <Title:Gigi > ,  <Title:Tarzan > ");
  assert.equal(dmpoRejected("Gigi ", "Tarzan "), " <Title:Tarzan > ,  <Title:Gigi > ");
  assert.equal(
    dmpoInstruction([], "X", "Y", {
      domain: "book",
      historyNoun: "books",
      consumed: "read",
      consuming: "reading",
      candidateNoun: "books",
    }),
    "You are an assistant working on book recommendations. Here is the user's history of books they have " +
      "read: . Rank the likelihood of the user reading the two books  <Title:X>  and  <Title:Y> .",
  );
  assert.equal(dmpoUserMessage("Q", ""), "Q");
  assert.equal(dmpoUserMessage("Q", "extra"), "Q\nextra");
});

Deno.test("llama2ChatPrompt() builds the llama2 template with the default system prompt", () => {
  assert.ok(LLAMA2_DEFAULT_SYSTEM_PROMPT.startsWith(
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. ",
  ));
  assert.ok(LLAMA2_DEFAULT_SYSTEM_PROMPT.endsWith("please don't share false information."));
  assert.equal(LLAMA2_DEFAULT_SYSTEM_PROMPT.split("\n\n").length, 2);
  assert.equal(
    llama2ChatPrompt("Rank."),
    "[INST] <<SYS>>\n" + LLAMA2_DEFAULT_SYSTEM_PROMPT + "\n<</SYS>>\n\nRank. [/INST]",
  );
  assert.equal(llama2ChatPrompt("Rank.", ""), llama2ChatPrompt("Rank."));
  assert.equal(llama2ChatPrompt("Rank.", "S"), "[INST] <<SYS>>\nS\n<</SYS>>\n\nRank. [/INST]");
});
