import assert from "node:assert/strict";
import { DataFormatError } from "../../src/errors.ts";
import { readJsonRows } from "../../src/data/json_stream.ts";
import {
  formatSdpoFile,
  formatSdpoRow,
  loadSdpoFile,
  parseSdpoText,
  readSdpoFile,
  type SdpoSample,
} from "../../src/data/sdpo.ts";

/** The released data (never copied into the project); tests needing it are ignored without it. */
const DATA = new URL("../../../shared/data/", import.meta.url);
const HAVE_DATA = (() => {
  try {
    return Deno.statSync(new URL("sdpo-lastfm/", DATA)).isDirectory;
  } catch {
    return false;
  }
})();
const FILES = [
  { name: "lastfm-test.json", rows: 2495 },
  { name: "lastfm-val.json", rows: 2767 },
];
const path = (name: string) => new URL(`sdpo-lastfm/${name}`, DATA).pathname;

for (const { name, rows } of FILES) {
  Deno.test({
    name: `formatSdpoRow() gives back every row of ${name} byte for byte (${rows} rows)`,
    ignore: !HAVE_DATA,
    fn: async () => {
      const { samples, summary, layout } = await loadSdpoFile(path(name));
      const stored = await readJsonRows(path(name));
      const text = await Deno.readTextFile(path(name));
      const independent = JSON.parse(text) as Array<Record<string, unknown>>;
      assert.equal(samples.length, rows);
      assert.equal(independent.length, rows);
      assert.deepEqual({ read: summary.rowsRead, kept: summary.kept, dropped: summary.dropped }, {
        read: rows,
        kept: rows,
        dropped: {},
      });
      assert.equal(layout.indent, "    ");
      assert.equal(layout.ensureAscii, true);
      for (let i = 0; i < rows; i++) {
        const s = samples[i];
        const rowText = text.slice(stored.rows[i].start, stored.rows[i].end);
        assert.equal(formatSdpoRow(s), rowText, `${name} row ${i + 1}`);
        // Parsed parts against an independent parse (JSON.parse).
        const raw = independent[i];
        assert.deepEqual(Object.keys(raw), ["historyList", "itemList", "trueSelection"]);
        assert.deepEqual(s.history, (raw.historyList as string).split("::"));
        assert.deepEqual(s.candidates, raw.itemList);
        assert.equal(s.positive, raw.trueSelection);
        assert.deepEqual(
          s.negatives,
          (raw.itemList as string[]).filter((c) => c !== raw.trueSelection),
        );
        assert.equal(s.negatives.length, 19);
        assert.equal(s.source?.row, i + 1);
      }
      // Whole file, and the known defects are counted, not hidden.
      assert.equal(formatSdpoFile(samples), text);
      assert.equal(summary.warnings["duplicate of an earlier row"], 1);
      assert.equal(
        summary.warnings['a candidate name contains ", " (ambiguous in the prompt)'],
        name === "lastfm-test.json" ? 150 : 154,
      );
      assert.equal(
        summary.warnings["the answer contains another candidate's name (never a valid hit)"],
        name === "lastfm-test.json" ? 3 : 1,
      );
    },
  });
}

Deno.test({
  name: "readSdpoFile() rows follow the README: test row 0 and the duplicate rows 744/1186",
  ignore: !HAVE_DATA,
  fn: async () => {
    const s = await readSdpoFile(path("lastfm-test.json"));
    assert.deepEqual(s[0].history, ["Kylie Minogue", "Avril Lavigne", "Ke$ha"]);
    assert.equal(s[0].positive, "Glee Cast");
    assert.equal(s[0].candidates[13], "Júpiter Maçã");
    assert.equal(formatSdpoRow(s[744]), formatSdpoRow(s[1186]));
  },
});

Deno.test("formatSdpoRow() keeps extra fields, key order and a list-form historyList", () => {
  const text =
    '[{"itemList": ["C", "Ä"], "id": 7.50, "trueSelection": "Ä", "historyList": ["A", "B"]}]';
  const { samples } = parseSdpoText(text, "mem.json");
  assert.deepEqual(samples[0].history, ["A", "B"]);
  assert.equal(samples[0].source?.historyForm, "array");
  assert.equal(formatSdpoFile(samples), text);
  // JSON Lines, other domain, ensure_ascii=False.
  const jsonl =
    '{"historyList": "Heat::Alien", "itemList": ["Léon", "Heat 2"], "trueSelection": "Léon"}\n' +
    '{"historyList": "Alien::Léon", "itemList": ["Heat 2", "Up"], "trueSelection": "Up"}\n';
  const r = parseSdpoText(jsonl, "movies.jsonl");
  assert.equal(r.layout.container, "stream");
  assert.equal(r.layout.ensureAscii, false);
  assert.equal(formatSdpoFile(r.samples), jsonl);
  // Built in code: written like the LastFM files.
  const built: SdpoSample = {
    history: ["A"],
    candidates: ["B", "C"],
    positive: "C",
    negatives: ["B"],
  };
  assert.equal(
    formatSdpoRow(built),
    '{\n        "historyList": "A",\n        "itemList": [\n            "B",\n            "C"\n        ],\n' +
      '        "trueSelection": "C"\n    }',
  );
});

/** A small valid file in the LastFM layout (names made up). */
function goodRows(): Array<Record<string, unknown>> {
  return [
    { historyList: "Alpha::Beta", itemList: ["Gamma", "Delta", "Eps"], trueSelection: "Delta" },
    { historyList: "Beta::Delta", itemList: ["Zeta", "Eta", "Theta"], trueSelection: "Theta" },
    { historyList: "Delta::Theta", itemList: ["Iota", "Kappa", "Lambda"], trueSelection: "Iota" },
  ];
}

Deno.test("readSdpoFile() names file, row and field for malformed input", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = async (name: string, data: string | Uint8Array) => {
      const p = `${dir}/${name}`;
      if (typeof data === "string") await Deno.writeTextFile(p, data);
      else await Deno.writeFile(p, data);
      return p;
    };
    const dump = (rows: unknown) => JSON.stringify(rows, null, 4);
    const expectError = async (p: string, re: RegExp, row: number, field: string) => {
      await assert.rejects(readSdpoFile(p), (e: unknown) => {
        assert.ok(e instanceof DataFormatError, `expected DataFormatError, got ${e}`);
        assert.match(e.message, re);
        assert.equal(e.row, row);
        assert.equal(e.field, field);
        return true;
      });
    };
    const full = dump(goodRows());
    assert.equal((await readSdpoFile(await write("ok.json", full))).length, 3);

    // Truncated inside row 2's itemList.
    const cut = full.slice(0, full.indexOf('"Eta"') + 3);
    await expectError(
      await write("truncated.json", cut),
      /truncated\.json, row 2, field "itemList\[1\]": unterminated string \(truncated file\?\) at line \d+, column \d+/,
      2,
      "itemList[1]",
    );
    // Missing field.
    const rows = goodRows();
    delete rows[1].trueSelection;
    await expectError(
      await write("missing.json", dump(rows)),
      /missing\.json, row 2, field "trueSelection": missing/,
      2,
      "trueSelection",
    );
    // Wrong types.
    const wrong = goodRows();
    wrong[0].itemList = "Gamma, Delta";
    await expectError(
      await write("wrongtype.json", dump(wrong)),
      /wrongtype\.json, row 1, field "itemList": expected an array of strings, got string/,
      1,
      "itemList",
    );
    const wrong2 = goodRows();
    wrong2[2].itemList = ["Iota", 5, "Lambda"];
    await expectError(
      await write("wrongitem.json", dump(wrong2)),
      /wrongitem\.json, row 3, field "itemList": item 1: expected a string, got number 5/,
      3,
      "itemList",
    );
    const wrong3 = goodRows();
    wrong3[1].historyList = 42;
    await expectError(
      await write("wronghist.json", dump(wrong3)),
      /wronghist\.json, row 2, field "historyList": expected a "::"-joined string or an array of strings, got number/,
      2,
      "historyList",
    );
    // Candidates without the answer.
    const noAnswer = goodRows();
    noAnswer[2].trueSelection = "Omega";
    await expectError(
      await write("noanswer.json", dump(noAnswer)),
      /noanswer\.json, row 3, field "itemList": does not contain the answer \(trueSelection\) "Omega"/,
      3,
      "itemList",
    );
    // Duplicate candidate, empty name, repeated key.
    const dup = goodRows();
    dup[1].itemList = ["Zeta", "Theta", "Zeta"];
    await expectError(
      await write("dup.json", dump(dup)),
      /dup\.json, row 2, field "itemList": candidate "Zeta" occurs twice \(items 0 and 2\)/,
      2,
      "itemList",
    );
    const empty = goodRows();
    empty[0].historyList = "Alpha::::Beta";
    await expectError(
      await write("empty.json", dump(empty)),
      /empty\.json, row 1, field "historyList": item 1 is an empty name/,
      1,
      "historyList",
    );
    await expectError(
      await write(
        "twice.json",
        '[{"historyList": "A", "itemList": ["B"], "trueSelection": "B", "itemList": []}]',
      ),
      /twice\.json, row 1, field "itemList": key occurs twice/,
      1,
      "itemList",
    );
    // Invalid UTF-8 bytes inside row 2's trueSelection.
    const enc = new TextEncoder().encode(full);
    const at = full.indexOf('"Theta"', full.indexOf('"trueSelection": "Theta"'));
    const bad = enc.slice();
    bad[at + 2] = 0xff; // full is ASCII, so char offset = byte offset
    await expectError(
      await write("badutf8.json", bad),
      new RegExp(
        `badutf8\\.json, row 2, field "trueSelection": invalid UTF-8 at byte offset ${
          at + 2
        } \\(line \\d+`,
      ),
      2,
      "trueSelection",
    );
    // A row that is not an object.
    await assert.rejects(
      readSdpoFile(await write("notobj.json", '[["A"]]')),
      /notobj\.json, row 1: expected an object, got array/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
