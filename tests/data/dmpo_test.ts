import assert from "node:assert/strict";
import { DataFormatError } from "../../src/errors.ts";
import { parseJsonStream, readJsonRows } from "../../src/data/json_stream.ts";
import {
  DMPO_FILES,
  type DmpoSample,
  formatDmpoFile,
  formatDmpoRow,
  groupDmpoByUser,
  loadDmpoFile,
  ml1mShortTitle,
  parseDmpoText,
  readDmpoFile,
  splitDmpoGenres,
} from "../../src/data/dmpo.ts";
import {
  dmpoChosen,
  dmpoInstruction,
  dmpoRejected,
  MOVIE_WORDING,
} from "../../src/data/prompts.ts";
import type { LoadSummary } from "../../src/data/json_stream.ts";

/** The released data (never copied into the project); tests needing it are ignored without it. */
const DATA = new URL("../../../shared/data/dmpo/", import.meta.url);
const HAVE_DATA = (() => {
  try {
    return Deno.statSync(DATA).isDirectory;
  } catch {
    return false;
  }
})();
const path = (dataset: string, name: string) => new URL(`${dataset}/${name}`, DATA).pathname;

/** Every released DMPO file: rows, `output` kind, rows per user. */
const FILES: Array<
  { dataset: string; name: string; rows: number; kind: "string" | "pair"; perUser: number }
> = [
  {
    dataset: "ml-1m",
    name: "rec_data_ml_1m_sft_ranking.json",
    rows: 100,
    kind: "string",
    perUser: 1,
  },
  ...[1, 2, 3, 4, 5].map((k) => ({
    dataset: "ml-1m",
    name: `rec_data_ml_1m_dpo_ranking_${k}.json`,
    rows: 100 * k,
    kind: "pair" as const,
    perUser: k,
  })),
  {
    dataset: "ml-1m",
    name: "rec_data_ml_1m_eval_ranking.json",
    rows: 1000,
    kind: "string",
    perUser: 1,
  },
  {
    dataset: "ml-1m",
    name: "rec_data_ml_1m_eval_ranking_old.json",
    rows: 1000,
    kind: "string",
    perUser: 1,
  },
  {
    dataset: "amazon-movie",
    name: "rec_Amazon_Movie_sft_ranking.json",
    rows: 100,
    kind: "string",
    perUser: 1,
  },
  {
    dataset: "amazon-movie",
    name: "rec_Amazon_Movie_dpo_ranking_1.json",
    rows: 200,
    kind: "pair",
    perUser: 1,
  },
  {
    dataset: "amazon-movie",
    name: "rec_Amazon_Movie_dpo_ranking_1_old.json",
    rows: 100,
    kind: "pair",
    perUser: 1,
  },
  ...[2, 3, 4, 5].map((k) => ({
    dataset: "amazon-movie",
    name: `rec_Amazon_Movie_dpo_ranking_${k}.json`,
    rows: 100 * k,
    kind: "pair" as const,
    perUser: k,
  })),
  {
    dataset: "amazon-movie",
    name: "rec_Amazon_Movie_eval_ranking.json",
    rows: 1000,
    kind: "pair",
    perUser: 1,
  },
];

for (const f of FILES) {
  Deno.test({
    name: `formatDmpoRow() gives back every row of ${f.name} byte for byte (${f.rows} rows)`,
    ignore: !HAVE_DATA,
    fn: async () => {
      const p = path(f.dataset, f.name);
      const { samples, summary } = await loadDmpoFile(p);
      const stored = await readJsonRows(p);
      const text = await Deno.readTextFile(p);
      assert.equal(samples.length, f.rows);
      assert.deepEqual([summary.rowsRead, summary.kept, summary.dropped], [f.rows, f.rows, {}]);
      for (let i = 0; i < f.rows; i++) {
        const rowText = text.slice(stored.rows[i].start, stored.rows[i].end);
        assert.equal(formatDmpoRow(samples[i]), rowText, `${f.name} row ${i + 1}`);
      }
      assert.equal(formatDmpoFile(samples), text, `${f.name} whole file`);
      // _old is concatenated JSON, which JSON.parse rejects; the others are one array.
      if (f.name.endsWith("eval_ranking_old.json")) {
        assert.throws(() => JSON.parse(text), SyntaxError);
      }
    },
  });

  Deno.test({
    name: `dmpoInstruction()/dmpoChosen()/dmpoRejected() rebuild the stored strings of ${f.name}`,
    ignore: !HAVE_DATA,
    fn: async () => {
      const p = path(f.dataset, f.name);
      const samples = await readDmpoFile(p);
      const text = await Deno.readTextFile(p);
      // Independent parse: JSON.parse (per object for the concatenated file).
      const raw = (f.name.endsWith("_old.json") && f.dataset === "ml-1m"
        ? parseJsonStream(text, f.name)
        : JSON.parse(text)) as Array<
          { instruction: string; input: string; output: string | string[] }
        >;
      assert.equal(raw.length, f.rows);
      samples.forEach((s, i) => {
        const r = raw[i];
        assert.deepEqual(Object.keys(r), ["instruction", "input", "output"]);
        assert.equal(s.outputKind, f.kind);
        assert.deepEqual(s.wording, MOVIE_WORDING);
        assert.equal(
          dmpoInstruction(s.history, s.candidates[0], s.candidates[1], s.wording),
          r.instruction,
        );
        assert.equal(s.input, r.input);
        assert.equal(r.input, "");
        assert.ok(s.candidates.includes(s.positive) && s.candidates.includes(s.negative));
        assert.notEqual(s.positive, s.negative);
        if (typeof r.output === "string") {
          assert.equal(dmpoChosen(s.positive, s.negative), r.output);
        } else {
          assert.equal(r.output.length, 2);
          assert.equal(dmpoChosen(s.positive, s.negative), r.output[0]);
          assert.equal(dmpoRejected(s.positive, s.negative), r.output[1]);
        }
      });
      // k negatives per user, contiguous, sharing history and positive.
      const groups = groupDmpoByUser(samples);
      assert.equal(groups.length, f.rows / f.perUser);
      for (const g of groups) {
        assert.equal(g.negatives.length, f.perUser);
        assert.equal(new Set(g.negatives).size, f.perUser);
      }
    },
  });
}

const key = (s: DmpoSample) => JSON.stringify([s.history, s.positive, s.negative]);

Deno.test({
  name: "readDmpoFile() handles the README defects: ML-1M eval, _old genres, Amazon dpo_ranking_1",
  ignore: !HAVE_DATA,
  fn: async () => {
    // ML-1M eval: output is a string; the rejected text is derived as ranking(N, P).
    let summary: LoadSummary | undefined;
    const ev = await readDmpoFile(path("ml-1m", DMPO_FILES["ml-1m"].eval), {
      onSummary: (s) => summary = s,
    });
    assert.equal(
      summary
        ?.warnings["output is a string (correct ranking only): rejected derived as ranking(N, P)"],
      1000,
    );
    assert.equal(ev[0].candidates[1], "Bug's Life, A (1998)");
    assert.equal(
      dmpoRejected(ev[0].positive, ev[0].negative),
      " <Title:Bringing Up Baby (1938)> ,  <Title:Bug's Life, A (1998)> ",
    );
    assert.equal(ev.filter((s) => s.positive === s.candidates[0]).length, 484);
    // _old = eval with ", Genre:…" after every title.
    const old = await readDmpoFile(path("ml-1m", "rec_data_ml_1m_eval_ranking_old.json"));
    assert.deepEqual(splitDmpoGenres(old[0].history[0]), {
      title: "Flubber (1997)",
      genres: ["Children's", "Comedy", "Fantasy"],
    });
    const strip = (t: string) => splitDmpoGenres(t).title;
    assert.deepEqual(
      old.map((s) => ({
        ...s,
        history: s.history.map(strip),
        candidates: s.candidates.map(strip),
        positive: strip(s.positive),
        negative: strip(s.negative),
        source: undefined,
      })),
      ev.map((s) => ({ ...s, source: undefined })),
    );
    // Training titles are the shortened eval form (cut at "(", then at ",").
    assert.equal(ml1mShortTitle("Sound of Music, The (1965)"), "Sound of Music");
    assert.equal(ml1mShortTitle("Tarzan (1999)"), "Tarzan ");
    const train = new Set(
      (await readDmpoFile(path("ml-1m", DMPO_FILES["ml-1m"].sft))).flatMap((
        s,
      ) => [...s.history, ...s.candidates]),
    );
    const reached = new Set(ev.flatMap((s) => [...s.history, ...s.candidates]).map(ml1mShortTitle));
    assert.ok([...train].filter((t) => reached.has(t)).length > 0.85 * train.size);
    // Nested k-series: ML-1M dpo_1 is the SFT set; Amazon uses dpo_ranking_1_old for k = 1.
    for (const ds of ["ml-1m", "amazon-movie"] as const) {
      const files = DMPO_FILES[ds];
      const sft = await readDmpoFile(path(ds, files.sft));
      let prev = new Set(sft.map(key));
      for (const [i, name] of files.dpo.entries()) {
        const cur = new Set((await readDmpoFile(path(ds, name))).map(key));
        for (const k of prev) assert.ok(cur.has(k), `${name} lacks a pair of the previous file`);
        assert.equal(cur.size, 100 * (i + 1));
        prev = cur;
      }
    }
    const reg1 = await readDmpoFile(path("amazon-movie", "rec_Amazon_Movie_dpo_ranking_1.json"));
    const sftUsers = new Set(
      (await readDmpoFile(path("amazon-movie", DMPO_FILES["amazon-movie"].sft))).map((s) =>
        JSON.stringify(s.history)
      ),
    );
    assert.equal(reg1.filter((s) => sftUsers.has(JSON.stringify(s.history))).length, 0);
  },
});

Deno.test("parseDmpoText() reads another domain's wording and writes it back", () => {
  // A made-up Video Games row in the DMPO layout (the wording the DMPO repository uses for games).
  const instruction =
    "You are an assistant working on Video Games recommendations. Here is the user's " +
    "history of Video Games they have shopped:  <Title:Halo 3 - Xbox 360>  <Title: Myst &amp; Riven> . " +
    "Rank the likelihood of the user shopping the two Video Games  <Title:Doom>  and  <Title:Zork I> .";
  const row = {
    instruction,
    input: "",
    output: [" <Title:Zork I> ,  <Title:Doom> ", " <Title:Doom> ,  <Title:Zork I> "],
  };
  const text = JSON.stringify([row, { ...row, output: row.output[0] }]).replaceAll('","', '", "')
    .replaceAll('":', '": ')
    .replaceAll("],", "], ");
  const { samples } = parseDmpoText(text, "games.json");
  assert.deepEqual(samples[0].wording, {
    domain: "Video Games",
    historyNoun: "Video Games",
    consumed: "shopped",
    consuming: "shopping",
    candidateNoun: "Video Games",
  });
  assert.deepEqual(samples[0].history, ["Halo 3 - Xbox 360", " Myst &amp; Riven"]);
  assert.deepEqual([samples[0].positive, samples[0].negative, samples[0].candidates], [
    "Zork I",
    "Doom",
    ["Doom", "Zork I"],
  ]);
  assert.deepEqual([samples[0].outputKind, samples[1].outputKind], ["pair", "string"]);
  assert.equal(formatDmpoFile(samples), text);
  // Built in code: written like the released files.
  const built: DmpoSample = { ...samples[0], source: undefined };
  assert.equal(formatDmpoRow(built), text.slice(1, text.indexOf("]}") + 2));
});

/** A small valid DMPO file (titles made up). */
function goodRows(): Array<Record<string, unknown>> {
  const row = (h: string[], a: string, b: string, pos: string) => {
    const neg = pos === a ? b : a;
    return {
      instruction: dmpoInstruction(h, a, b),
      input: "",
      output: [dmpoChosen(pos, neg), dmpoRejected(pos, neg)],
    };
  };
  return [
    row(["Film One ", "Film Two"], "Film Three", "Film Four", "Film Four"),
    row(["Film Two", "Film Five"], "Film Six", "Film Seven", "Film Six"),
    row(["Film Eight"], "Film Nine", "Film Ten", "Film Ten"),
  ];
}

Deno.test("readDmpoFile() names file, row and field for malformed input", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = async (name: string, data: string | Uint8Array) => {
      const p = `${dir}/${name}`;
      if (typeof data === "string") await Deno.writeTextFile(p, data);
      else await Deno.writeFile(p, data);
      return p;
    };
    const dump = (rows: unknown) => JSON.stringify(rows);
    const expectError = async (p: string, re: RegExp, row: number, field: string | undefined) => {
      await assert.rejects(readDmpoFile(p), (e: unknown) => {
        assert.ok(e instanceof DataFormatError, `expected DataFormatError, got ${e}`);
        assert.match(e.message, re);
        assert.equal(e.row, row);
        assert.equal(e.field, field);
        return true;
      });
    };
    const full = dump(goodRows());
    assert.equal((await readDmpoFile(await write("ok.json", full))).length, 3);

    // Truncated JSON: in row 2's output array, and in the second object of a concatenated file.
    await expectError(
      await write(
        "truncated.json",
        full.slice(0, full.indexOf('"output"', full.indexOf("Film Six")) + 13),
      ),
      /truncated\.json, row 2, field "output\[0\]": unterminated string \(truncated file\?\) at line 1, column \d+/,
      2,
      "output[0]",
    );
    const rows = goodRows();
    const concat = rows.map((r) => JSON.stringify(r)).join("");
    await expectError(
      await write("concat.json", concat.slice(0, concat.length - 30)),
      /concat\.json, row 3, field "output\[1\]": unterminated string/,
      3,
      "output[1]",
    );
    await expectError(
      await write("cut.json", full.slice(0, full.indexOf('"input"', full.indexOf("Film Nine")))),
      /cut\.json, row 3: unexpected end of input \(truncated file\?\) inside an object/,
      3,
      undefined,
    );
    // Missing field and wrong types.
    const missing = goodRows();
    delete missing[1].output;
    await expectError(
      await write("missing.json", dump(missing)),
      /missing\.json, row 2, field "output": missing/,
      2,
      "output",
    );
    const noInput = goodRows();
    delete noInput[0].input;
    await expectError(
      await write("noinput.json", dump(noInput)),
      /noinput\.json, row 1, field "input": missing/,
      1,
      "input",
    );
    const wrong = goodRows();
    wrong[2].output = 3;
    await expectError(
      await write("wrong.json", dump(wrong)),
      /wrong\.json, row 3, field "output": expected a string or an array \[chosen, rejected\], got number 3/,
      3,
      "output",
    );
    const wrong2 = goodRows();
    wrong2[0].instruction = ["x"];
    await expectError(
      await write("wrong2.json", dump(wrong2)),
      /wrong2\.json, row 1, field "instruction": expected a string, got array/,
      1,
      "instruction",
    );
    // The ranking does not name the question's candidates (the "answer" is not a candidate).
    const notCand = goodRows();
    notCand[1].output = [
      dmpoChosen("Film Zero", "Film Six"),
      dmpoRejected("Film Zero", "Film Six"),
    ];
    await expectError(
      await write("notcand.json", dump(notCand)),
      /notcand\.json, row 2, field "output\[0\]": expected a ranking of the two candidates "Film Six" and "Film Seven"/,
      2,
      "output[0]",
    );
    // Rejected is not the reversed ranking.
    const notRev = goodRows();
    (notRev[2].output as string[])[1] = (notRev[2].output as string[])[0];
    await expectError(
      await write("notrev.json", dump(notRev)),
      /notrev\.json, row 3, field "output\[1\]": expected the reversed ranking/,
      3,
      "output[1]",
    );
    // Instruction off the template.
    const offTemplate = goodRows();
    offTemplate[1].instruction = (offTemplate[1].instruction as string).replace(
      ". Rank the",
      ". Order the",
    );
    await expectError(
      await write("template.json", dump(offTemplate)),
      /template\.json, row 2, field "instruction": does not follow the DMPO template/,
      2,
      "instruction",
    );
    const tooMany = goodRows();
    (tooMany[0].output as string[]).push("x");
    await expectError(
      await write("toomany.json", dump(tooMany)),
      /toomany\.json, row 1, field "output": expected \[chosen, rejected\] \(2 strings\), got 3 strings/,
      1,
      "output",
    );
    // Invalid UTF-8 inside row 3's instruction.
    const bytes = new TextEncoder().encode(full);
    const at = full.indexOf("Film Eight");
    bytes[at] = 0xc3; // a lead byte followed by ASCII
    await expectError(
      await write("badutf8.json", bytes),
      new RegExp(
        `badutf8\\.json, row 3, field "instruction": invalid UTF-8 at byte offset ${at} \\(line 1`,
      ),
      3,
      "instruction",
    );
    // Rows the original pairwise loader drops are dropped here too, counted and reported.
    const short = goodRows();
    short[1].output = [(short[1].output as string[])[0]];
    let summary: LoadSummary | undefined;
    const kept = await readDmpoFile(await write("short.json", dump(short)), {
      onSummary: (s) => summary = s,
    });
    assert.equal(kept.length, 2);
    assert.deepEqual(
      [summary?.rowsRead, summary?.kept, summary?.dropped],
      [3, 2, { "output array has 1 entry (pairwise loading needs 2)": 1 }],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
