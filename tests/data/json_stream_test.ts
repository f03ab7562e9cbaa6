import assert from "node:assert/strict";
import { DataFormatError } from "../../src/errors.ts";
import {
  decodeUtf8Strict,
  detectJsonLayout,
  formatJsonFile,
  invalidUtf8Offset,
  parseJsonRows,
  parseJsonStream,
  PY_COMPACT_LAYOUT,
  PY_INDENT4_LAYOUT,
  pyJsonDumps,
  pyJsonNumber,
  pyJsonObject,
  pyJsonString,
  readJsonRows,
  readUtf8Strict,
} from "../../src/data/json_stream.ts";

Deno.test("parseJsonStream() reads values written back to back", () => {
  assert.deepEqual(parseJsonStream('{"a": 1}{"a": [2, "x"]}\n[3] "s" null', "x.json"), [
    { a: 1 },
    { a: [2, "x"] },
    [3],
    "s",
    null,
  ]);
  assert.deepEqual(parseJsonStream("  \n ", "x.json"), []);
});

Deno.test("parseJsonRows() agrees with JSON.parse on escapes, numbers and nesting", () => {
  const text = JSON.stringify([
    { s: 'a"b\\c\n\t\u0001é\u{1f600}/', n: [0, -1.5, 1e-7, 12345678901234, true, false, null] },
    { nested: { k: [[], {}, [{ x: "y" }]] } },
  ]);
  const rows = parseJsonRows(text, "x.json");
  assert.equal(rows.container, "array");
  assert.deepEqual(rows.rows.map((r) => r.value), JSON.parse(text));
  assert.deepEqual(
    parseJsonRows('["\\u00e9\\/\\ud83d\\ude00"]', "x.json").rows[0].value,
    "é/\u{1f600}",
  );
});

Deno.test("parseJsonRows() records row and field positions", () => {
  const text = '[\n    {\n        "a": "x",\n        "b": [1]\n    },\n    {"a": 2}\n]';
  const r = parseJsonRows(text, "x.json");
  assert.equal(r.rows.length, 2);
  assert.equal(
    text.slice(r.rows[0].start, r.rows[0].end),
    '{\n        "a": "x",\n        "b": [1]\n    }',
  );
  assert.deepEqual([r.rows[0].line, r.rows[0].column, r.rows[1].line, r.rows[1].column], [
    2,
    5,
    6,
    5,
  ]);
  const f = r.rows[0].fields!;
  assert.deepEqual(f.map((x) => x.key), ["a", "b"]);
  assert.equal(text.slice(f[1].valueStart, f[1].valueEnd), "[1]");
  const s = parseJsonRows('{"a": 1}{"a": 2}', "x.json");
  assert.equal(s.container, "stream");
  assert.deepEqual(s.rows.map((x) => [x.start, x.end]), [[0, 8], [8, 16]]);
});

Deno.test("parseJsonRows() names file, row, field, line and column on malformed JSON", () => {
  const cases: Array<[string, RegExp]> = [
    [
      '[{"a": "x"},\n {"a": "y", "b": [1, 2',
      /^f\.json, row 2, field "b\[1\]": .*end of input.* line 2, column 23/,
    ],
    [
      '[{"a": "x"},\n {"a": "unterminated',
      /^f\.json, row 2, field "a": unterminated string .*line 2, column 8/,
    ],
    ['[{"a": "x"} {"a": 1}]', /^f\.json, row 1: expected "," or "\]" after the row/],
    ['{"a": 1}{"a": tru}', /^f\.json, row 2, field "a": expected a JSON value, got "t"/],
    ['[{"a": 01}]', /^f\.json, row 1, field "a": invalid number "01"/],
    ['[{"a": "\\x"}]', /row 1, field "a": invalid escape "\\x"/],
    ['[{"a": "tab\there"}]', /row 1, field "a": raw control character U\+0009/],
    ['[{"a": 1}] [2]', /row 1: extra data after the top-level array/],
    ['[{"a": 1, }]', /row 1: expected a string key, got "}"/],
    [" \n", /^f\.json: empty file/],
    [
      "version https://git-lfs.github.com/spec/v1\noid sha256:0\n",
      /^f\.json: is a Git LFS pointer/,
    ],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseJsonRows(text, "f.json"), (e: unknown) => {
      assert.ok(e instanceof DataFormatError, `not a DataFormatError: ${e}`);
      assert.match(e.message, re);
      return true;
    });
  }
});

Deno.test("decodeUtf8Strict() rejects invalid bytes with byte offset and line", () => {
  const enc = new TextEncoder();
  const good = enc.encode("a\nbé\u{1f600}");
  assert.equal(invalidUtf8Offset(good), -1);
  assert.equal(decodeUtf8Strict(good, "f.json"), "a\nbé\u{1f600}");
  const bad = [
    [0x61, 0x0a, 0x62, 0xff],
    [0x61, 0x0a, 0x62, 0xc3],
    [0x61, 0x0a, 0x62, 0xe0, 0x80, 0x80], // overlong
    [0x61, 0x0a, 0x62, 0xed, 0xa0, 0x80], // surrogate
    [0x61, 0x0a, 0x62, 0xc3, 0x28],
  ];
  for (const b of bad) {
    const bytes = new Uint8Array(b);
    assert.equal(invalidUtf8Offset(bytes), 3);
    assert.throws(
      () => decodeUtf8Strict(bytes, "f.json"),
      (e: unknown) =>
        e instanceof DataFormatError &&
        /^f\.json: invalid UTF-8 at byte offset 3 \(line 2, byte column 2\)/.test(e.message),
    );
  }
  // A byte-order mark is kept, so the text maps back to the same bytes.
  assert.equal(decodeUtf8Strict(new Uint8Array([0xef, 0xbb, 0xbf, 0x31]), "f"), "\ufeff1");
});

Deno.test("readJsonRows() locates invalid UTF-8 in its row and field", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bad.json`;
    const head = new TextEncoder().encode('[{"a": "x"},\n {"a": "y", "b": "z');
    await Deno.writeFile(path, new Uint8Array([...head, 0xfe, ...new TextEncoder().encode('"}]')]));
    await assert.rejects(readJsonRows(path), (e: unknown) => {
      assert.ok(e instanceof DataFormatError);
      assert.equal(e.row, 2);
      assert.equal(e.field, "b");
      assert.match(
        e.message,
        /bad\.json, row 2, field "b": invalid UTF-8 at byte offset 32 \(line 2, byte column 20\)/,
      );
      return true;
    });
    await assert.rejects(readUtf8Strict(path), /bad\.json: invalid UTF-8 at byte offset 32/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pyJsonString() escapes like Python's json.dumps", () => {
  // Expected values are Python 3 outputs of json.dumps(s) / json.dumps(s, ensure_ascii=False).
  assert.equal(pyJsonString('a"b\\c/'), '"a\\"b\\\\c/"');
  assert.equal(pyJsonString("\n\r\t\b\f\u0001\u001f"), '"\\n\\r\\t\\b\\f\\u0001\\u001f"');
  assert.equal(pyJsonString("\u007f"), '"\\u007f"');
  assert.equal(pyJsonString("\u007f", false), '"\u007f"');
  assert.equal(pyJsonString("Júpiter Maçã"), '"J\\u00fapiter Ma\\u00e7\\u00e3"');
  assert.equal(pyJsonString("Pok\ufffdmon"), '"Pok\\ufffdmon"');
  assert.equal(pyJsonString("\u{1f600}"), '"\\ud83d\\ude00"');
  assert.equal(pyJsonString("Júpiter", false), '"Júpiter"');
});

Deno.test("pyJsonNumber() writes Python's repr", () => {
  const cases: Array<[number, string]> = [
    [0, "0"],
    [-3, "-3"],
    [1.5, "1.5"],
    [0.1, "0.1"],
    [1e-4, "0.0001"],
    [1e-5, "1e-05"],
    [1.5e-7, "1.5e-07"],
    [123456789.125, "123456789.125"],
    [2 ** 53, "9007199254740992"], // integer-valued below 1e16: written as an int
    [1.5e16, "1.5e+16"],
    [1.25e300, "1.25e+300"],
    [NaN, "NaN"],
    [-Infinity, "-Infinity"],
  ];
  for (const [x, s] of cases) assert.equal(pyJsonNumber(x), s, `pyJsonNumber(${x})`);
});

Deno.test("pyJsonDumps() frames arrays and objects like json.dumps with indent", () => {
  const v = { a: [1, "é", { b: [] }], c: {} };
  assert.equal(pyJsonDumps(v, PY_COMPACT_LAYOUT), '{"a": [1, "\\u00e9", {"b": []}], "c": {}}');
  assert.equal(
    pyJsonDumps(v, PY_INDENT4_LAYOUT),
    '{\n    "a": [\n        1,\n        "\\u00e9",\n        {\n            "b": []\n        }\n    ],\n    "c": {}\n}',
  );
  assert.equal(pyJsonObject([["k", "1"]], PY_INDENT4_LAYOUT, 1), '{\n        "k": 1\n    }');
});

Deno.test("detectJsonLayout() then formatJsonFile() gives back the file", () => {
  const texts = [
    '[{"a": "x", "b": ["\\u00e9"]}, {"a": "y", "b": []}]',
    '[\n    {\n        "a": "x",\n        "b": [\n            "q"\n        ]\n    },\n    {\n        "a": "y",\n        "b": []\n    }\n]',
    '{"a": "x", "b": [1]}{"a": "y", "b": [2]}',
    '{"a":"x","b":[1]}\n{"a":"y","b":[2]}\n',
    '[{"a": "é", "b": 1}]',
  ];
  for (const text of texts) {
    const parsed = parseJsonRows(text, "x.json");
    const layout = detectJsonLayout(parsed);
    const rows = parsed.rows.map((r) =>
      pyJsonObject(
        r.fields!.map((f) => [f.key, pyJsonDumps(f.value, layout, layout.rowLevel + 1)]),
        layout,
        layout.rowLevel,
      )
    );
    assert.equal(formatJsonFile(rows, layout), text);
  }
  const l = detectJsonLayout(parseJsonRows('[{"a": "é", "b": 1}]', "x.json"));
  assert.equal(l.ensureAscii, false);
  assert.equal(formatJsonFile([], PY_INDENT4_LAYOUT), "[]");
});
