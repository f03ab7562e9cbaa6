/**
 * Property-based malformed-input tests (fast-check): generated bad input thrown at every
 * reader — the released-file readers (JSON stream, S-DPO, DMPO), safetensors, HF
 * `config.json`, the synthetic world's knobs and train()'s options and examples. Each must
 * either accept the input (and then read it right), or fail with the recalign error class
 * that names the file / row / field (or the knob), or drop the row and count it — never
 * another exception, and never a partial output. The CLIs are in `cli_args_test.ts`.
 * Observations go to the reliability report.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { CheckpointError, ConfigError, DataFormatError, InputError } from "../../src/errors.ts";
import {
  decodeUtf8Strict,
  invalidUtf8Offset,
  parseJsonRows,
  readJsonRows,
} from "../../src/data/json_stream.ts";
import { formatSdpoFile, loadSdpoFile, parseSdpoText, SDPO_FIELDS } from "../../src/data/sdpo.ts";
import { loadDmpoFile, parseDmpoText } from "../../src/data/dmpo.ts";
import {
  DMPO_PIECES,
  dmpoChosen,
  dmpoInstruction,
  dmpoRejected,
  type DmpoWording,
  MOVIE_WORDING,
} from "../../src/data/prompts.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  type TensorRecord,
} from "../../src/safetensors.ts";
import { configFromHf, loadPretrained } from "../../src/checkpoint.ts";
import { validateConfig } from "../../src/model.ts";
import { makeWorld, type WorldConfig } from "../../src/data/world.ts";
import { initBackend, tf } from "../../src/backend.ts";
import { LlamaModel, PRESETS } from "../../src/model.ts";
import { DEFAULT_LORA_CONFIG } from "../../src/lora.ts";
import { STAGES, train, type TrainExample } from "../../src/train.ts";
import { bySetting, type FaultRecord, parseReport, recordFaults } from "./report.ts";

const RUNS = bySetting(150, 600);
const SEED = Number(Deno.env.get("RECALIGN_FC_SEED") ?? 20251123);
const FC = { numRuns: RUNS, seed: SEED };
const FILE = "gen/file.json";

/** What happened to the generated inputs of one reader. */
interface Tally {
  cases: number;
  accepted: number;
  cleanErrors: number;
  dropped: number;
  wrong: string[];
}
const tallies = new Map<string, Tally>();
function tally(reader: string): Tally {
  let t = tallies.get(reader);
  if (!t) tallies.set(reader, t = { cases: 0, accepted: 0, cleanErrors: 0, dropped: 0, wrong: [] });
  return t;
}

/**
 * Run `f` on one generated input: returns its value, or the error when it is an instance of
 * `cls`; anything else (another error class) is counted as wrong and fails the property.
 */
function attempt<T>(
  reader: string,
  cls: new (...a: never[]) => Error,
  f: () => T,
): { ok: true; value: T } | { ok: false; error: Error } {
  const t = tally(reader);
  t.cases++;
  try {
    const value = f();
    t.accepted++;
    return { ok: true, value };
  } catch (e) {
    if (e instanceof cls) {
      t.cleanErrors++;
      return { ok: false, error: e };
    }
    const msg = `${(e as Error)?.name}: ${(e as Error)?.message}`.slice(0, 200);
    if (t.wrong.length < 5) t.wrong.push(msg);
    throw new Error(`${reader}: expected ${cls.name} or success, got ${msg}`, { cause: e });
  }
}

async function attemptAsync<T>(
  reader: string,
  cls: new (...a: never[]) => Error,
  f: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: Error }> {
  const t = tally(reader);
  t.cases++;
  try {
    const value = await f();
    t.accepted++;
    return { ok: true, value };
  } catch (e) {
    if (e instanceof cls) {
      t.cleanErrors++;
      return { ok: false, error: e };
    }
    const msg = `${(e as Error)?.name}: ${(e as Error)?.message}`.slice(0, 200);
    if (t.wrong.length < 5) t.wrong.push(msg);
    throw new Error(`${reader}: expected ${cls.name} or success, got ${msg}`, { cause: e });
  }
}

/**
 * `Deno.test` for a property of one reader: a failing property (whatever assertion failed) is
 * also counted against the reader, so the report can never say "nothing" over a failure.
 */
function propTest(reader: string, name: string, fn: () => void | Promise<void>): void {
  Deno.test(name, async () => {
    try {
      await fn();
    } catch (e) {
      const t = tally(reader);
      t.wrong.push(
        `property failed: ${String((e as Error)?.message).split("\n")[0]}`.slice(0, 240),
      );
      throw e;
    }
  });
}

/** An error the property expected but did not get (the input was wrongly accepted). */
function mustFail(reader: string, why: string): never {
  const t = tally(reader);
  if (t.wrong.length < 5) t.wrong.push(`accepted: ${why}`.slice(0, 200));
  throw new Error(`${reader}: accepted malformed input (${why})`);
}

function expectDataError(
  reader: string,
  r: { ok: boolean; error?: Error },
  where: { row?: number; field?: string },
  why: string,
): void {
  if (r.ok) mustFail(reader, why);
  const e = r.error as DataFormatError;
  assert.equal(e.file, FILE, e.message);
  assert.ok(e.message.startsWith(FILE), e.message);
  if (where.row !== undefined) assert.equal(e.row, where.row, `${why}: ${e.message}`);
  if (where.field !== undefined) assert.equal(e.field, where.field, `${why}: ${e.message}`);
}

// ---------------------------------------------------------------------------------------
// Shared generators

/** A JSON value that is never undefined, with the odd absurd number. */
const anyJson = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(1e308, -0, 0.1, 2 ** 53 + 2),
);
/** Wrong-type values for a field that wants a string. */
const notString = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 2 }),
);
/** Wrong-type values for a field that wants an array of strings. */
const notStringArray = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 2 }),
);

/** Item names: printable, non-empty, without "::" (the history separator). */
const itemName = fc.string({ minLength: 1, maxLength: 10 }).filter((s) =>
  !s.includes("::") && !s.startsWith(":") && !s.endsWith(":")
);

/** A row as ordered (key, raw JSON value text) pairs, so duplicate keys can be written. */
type RawRow = [string, string][] | string;

function rowText(row: RawRow): string {
  if (typeof row === "string") return row;
  return "{" + row.map(([k, v]) => `${JSON.stringify(k)}: ${v}`).join(", ") + "}";
}

function fileText(rows: RawRow[], form: "array" | "lines"): string {
  return form === "array"
    ? "[\n    " + rows.map(rowText).join(",\n    ") + "\n]"
    : rows.map(rowText).join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------
// JSON stream

propTest(
  "json_stream",
  "parseJsonRows() reads any generated JSON like JSON.parse (array and JSON-lines forms)",
  () => {
    fc.assert(
      fc.property(
        fc.array(fc.jsonValue(), { maxLength: 6 }),
        fc.array(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 })), {
          minLength: 1,
          maxLength: 6,
        }),
        (values, objects) => {
          const text = JSON.stringify(values);
          const r = attempt("json_stream", DataFormatError, () => parseJsonRows(text, FILE));
          assert.ok(r.ok, `valid JSON refused: ${!r.ok && r.error.message}`);
          assert.deepEqual(r.value.rows.map((x) => x.value), JSON.parse(text));
          const lines = objects.map((o) => JSON.stringify(o)).join("\n");
          const l = attempt("json_stream", DataFormatError, () => parseJsonRows(lines, FILE));
          assert.ok(l.ok, `valid JSON lines refused: ${!l.ok && l.error.message}`);
          assert.deepEqual(
            l.value.rows.map((x) => x.value),
            objects.map((o) => JSON.parse(JSON.stringify(o))),
          );
        },
      ),
      FC,
    );
  },
);

propTest(
  "json_stream",
  "parseJsonRows() on truncated or garbled JSON: DataFormatError with file, line and column, or a correct parse",
  () => {
    const garble = fc.oneof(
      fc.string({ maxLength: 4, unit: "binary" }),
      fc.constantFrom(
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        '"',
        "\\",
        "\u0000",
        "\n",
        "tru",
        "-",
        "1e",
        "\ud800",
      ),
    );
    fc.assert(
      fc.property(
        fc.array(fc.dictionary(fc.string({ maxLength: 5 }), anyJson, { maxKeys: 3 }), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.boolean(),
        fc.nat(),
        fc.nat(),
        garble,
        fc.constantFrom("truncate", "insert", "replace"),
        (rows, asArray, at1, at2, junk, how) => {
          const good = asArray
            ? JSON.stringify(rows, null, 4)
            : rows.map((x) => JSON.stringify(x)).join("\n");
          const i = at1 % good.length, j = i + (at2 % 3);
          const text = how === "truncate"
            ? good.slice(0, i)
            : how === "insert"
            ? good.slice(0, i) + junk + good.slice(i)
            : good.slice(0, i) + junk + good.slice(j);
          const r = attempt("json_stream", DataFormatError, () => parseJsonRows(text, FILE));
          if (!r.ok) {
            const e = r.error as DataFormatError;
            assert.equal(e.file, FILE);
            assert.match(e.message, /line \d+, column \d+|empty file/, e.message);
            return;
          }
          // Accepted: it must read what JSON.parse reads (array form), row by row otherwise.
          if (r.value.container === "array") {
            assert.deepEqual(
              r.value.rows.map((x) => x.value),
              JSON.parse(text.replace(/^\ufeff/, "")),
            );
          }
        },
      ),
      FC,
    );
  },
);

propTest(
  "json_stream",
  "decodeUtf8Strict() / readJsonRows() name the byte offset of any invalid UTF-8 sequence",
  async () => {
    const bad = fc.constantFrom(
      [0xff],
      [0xfe],
      [0xc0, 0x80], // overlong
      [0x80], // lone continuation
      [0xed, 0xa0, 0x80], // surrogate
      [0xe2, 0x82], // truncated
      [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
      [0xc3], // truncated two-byte
    );
    const enc = new TextEncoder();
    let fileCases = 0;
    const dir = await Deno.makeTempDir({ prefix: "recalign-prop-utf8-" });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 8 })), {
            minLength: 1,
            maxLength: 3,
          }),
          fc.nat(),
          bad,
          async (rows, at, seq) => {
            const good = enc.encode(JSON.stringify(rows));
            // Insert at a character boundary of the (ASCII or multi-byte) text.
            let p = at % (good.length + 1);
            while (p < good.length && (good[p] & 0xc0) === 0x80) p++;
            const bytes = new Uint8Array([...good.slice(0, p), ...seq, ...good.slice(p)]);
            assert.equal(invalidUtf8Offset(bytes), p);
            const r = attempt("json_stream", DataFormatError, () => decodeUtf8Strict(bytes, FILE));
            if (r.ok) mustFail("json_stream", `invalid UTF-8 at ${p} decoded`);
            assert.match(r.error.message, new RegExp(`byte offset ${p} \\(line \\d+`));
            if (fileCases++ < 20) {
              const path = `${dir}/f${fileCases}.json`;
              await Deno.writeFile(path, bytes);
              const f = await attemptAsync(
                "json_stream",
                DataFormatError,
                () => readJsonRows(path),
              );
              if (f.ok) {
                mustFail("json_stream", "invalid UTF-8 file read");
              }
              assert.equal((f.error as DataFormatError).file, path);
              assert.match(f.error.message, new RegExp(`byte offset ${p}\\b`));
            }
          },
        ),
        FC,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

propTest(
  "json_stream",
  "parseJsonRows() refuses absurd nesting with a DataFormatError, not a stack overflow",
  () => {
    fc.assert(
      fc.property(fc.integer({ min: 513, max: 200_000 }), fc.boolean(), (depth, obj) => {
        const open = obj ? '{"a":' : "[";
        const text = "[" + open.repeat(depth) + "1";
        const r = attempt("json_stream", DataFormatError, () => parseJsonRows(text, FILE));
        if (r.ok) mustFail("json_stream", `nesting ${depth}`);
        assert.match(r.error.message, /nesting deeper than 512/);
      }),
      { ...FC, numRuns: Math.min(RUNS, 30) },
    );
    // A huge value is fine: a 4 MB title.
    const title = "x".repeat(4 << 20);
    const r = parseJsonRows(`[{"t": "${title}"}]`, FILE);
    assert.equal((r.rows[0].value as { t: string }).t.length, 4 << 20);
  },
);

// ---------------------------------------------------------------------------------------
// S-DPO

interface SdpoRow {
  history: string[];
  historyAsArray: boolean;
  candidates: string[];
  positive: string;
}

const sdpoRow: fc.Arbitrary<SdpoRow> = fc.record({
  history: fc.uniqueArray(itemName, { minLength: 1, maxLength: 5 }),
  historyAsArray: fc.boolean(),
  candidates: fc.uniqueArray(itemName, { minLength: 2, maxLength: 8 }),
  pick: fc.nat(),
}).map(({ history, historyAsArray, candidates, pick }) => ({
  history,
  historyAsArray,
  candidates,
  positive: candidates[pick % candidates.length],
}));

function sdpoRaw(r: SdpoRow): [string, string][] {
  return [
    ["historyList", JSON.stringify(r.historyAsArray ? r.history : r.history.join("::"))],
    ["itemList", JSON.stringify(r.candidates)],
    ["trueSelection", JSON.stringify(r.positive)],
  ];
}

type Mutation = {
  name: string;
  /** Change the row; returns the field the error must name (null: row-level, no field). */
  apply: (row: [string, string][], r: SdpoRow) => { row: RawRow; field: string | null };
};

function setField(row: [string, string][], key: string, value: string): [string, string][] {
  return row.map(([k, v]) => [k, k === key ? value : v]);
}

const sdpoMutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.constantFrom(...SDPO_FIELDS), fc.oneof(notString, notStringArray)).map((
    [key, bad],
  ): Mutation => ({
    name: `wrong type for ${key}`,
    apply: (row) => {
      // A string is right for trueSelection / historyList; an array for itemList / historyList.
      const ok = key === "itemList"
        ? Array.isArray(bad) && bad.every((x) => typeof x === "string")
        : typeof bad === "string";
      return { row: setField(row, key, JSON.stringify(ok ? 0 : bad)), field: key };
    },
  })),
  fc.constantFrom<Mutation>(
    {
      name: "empty history (string)",
      apply: (row) => ({ row: setField(row, "historyList", '""'), field: "historyList" }),
    },
    {
      name: "empty history (array)",
      apply: (row) => ({ row: setField(row, "historyList", "[]"), field: "historyList" }),
    },
    {
      name: "empty name inside the history",
      apply: (row, r) => ({
        row: setField(row, "historyList", JSON.stringify(r.history.join("::") + "::")),
        field: "historyList",
      }),
    },
    {
      name: "candidates without the answer",
      apply: (row, r) => ({
        row: setField(
          row,
          "itemList",
          JSON.stringify(r.candidates.filter((c) => c !== r.positive)),
        ),
        field: "itemList",
      }),
    },
    {
      name: "candidate list holding only the answer",
      apply: (row, r) => ({
        row: setField(row, "itemList", JSON.stringify([r.positive])),
        field: "itemList",
      }),
    },
    {
      name: "empty candidate list",
      apply: (row) => ({ row: setField(row, "itemList", "[]"), field: "itemList" }),
    },
    {
      name: "duplicate candidate",
      apply: (row, r) => ({
        row: setField(row, "itemList", JSON.stringify([...r.candidates, r.candidates[0]])),
        field: "itemList",
      }),
    },
    {
      name: "non-string candidate",
      apply: (row, r) => ({
        row: setField(row, "itemList", JSON.stringify([...r.candidates, 7])),
        field: "itemList",
      }),
    },
    {
      name: "empty answer",
      apply: (row) => ({ row: setField(row, "trueSelection", '""'), field: "trueSelection" }),
    },
    {
      // Not an array: a JSON-lines file starting with "[" is read as one JSON array.
      name: "row is not an object",
      apply: () => ({ row: '"historyList::itemList"', field: null }),
    },
  ),
  fc.constantFrom(...SDPO_FIELDS).map((key): Mutation => ({
    name: `missing ${key}`,
    apply: (row) => ({ row: row.filter(([k]) => k !== key), field: key }),
  })),
  fc.constantFrom(...SDPO_FIELDS).map((key): Mutation => ({
    name: `duplicate key ${key}`,
    apply: (row) => ({ row: [...row, row.find(([k]) => k === key)!], field: key }),
  })),
);

propTest("sdpo", "parseSdpoText() round-trips generated valid files byte for byte", () => {
  fc.assert(
    fc.property(fc.array(sdpoRow, { minLength: 1, maxLength: 6 }), (rows) => {
      const text = JSON.stringify(
        rows.map((r) => ({
          historyList: r.historyAsArray ? r.history : r.history.join("::"),
          itemList: r.candidates,
          trueSelection: r.positive,
        })),
        null,
        4,
      );
      const res = attempt("sdpo", DataFormatError, () => parseSdpoText(text, FILE));
      assert.ok(res.ok, !res.ok ? res.error.message : "");
      const { samples, summary } = res.value;
      assert.equal(summary.kept, rows.length);
      samples.forEach((s, i) => {
        assert.deepEqual(s.history, rows[i].history);
        assert.equal(s.positive, rows[i].positive);
        assert.deepEqual(s.negatives, rows[i].candidates.filter((c) => c !== rows[i].positive));
      });
      if (!/[^\x20-\x7e\n]/.test(text)) assert.equal(formatSdpoFile(samples), text);
    }),
    FC,
  );
});

propTest("sdpo", "parseSdpoText() names file, row and field of any generated malformed row", () => {
  fc.assert(
    fc.property(
      fc.array(sdpoRow, { minLength: 1, maxLength: 5 }),
      fc.nat(),
      sdpoMutation,
      fc.constantFrom<"array" | "lines">("array", "lines"),
      (rows, at, mutation, form) => {
        const k = at % rows.length;
        const raw: RawRow[] = rows.map(sdpoRaw);
        const { row, field } = mutation.apply(raw[k] as [string, string][], rows[k]);
        raw[k] = row;
        const text = fileText(raw, form);
        const r = attempt("sdpo", DataFormatError, () => parseSdpoText(text, FILE));
        expectDataError("sdpo", r, { row: k + 1, field: field ?? undefined }, mutation.name);
        if (field === null && !r.ok) assert.equal((r.error as DataFormatError).field, undefined);
      },
    ),
    FC,
  );
});

propTest(
  "sdpo",
  "parseSdpoText() counts duplicate rows and keeps extra fields instead of failing",
  () => {
    fc.assert(
      fc.property(
        fc.array(sdpoRow, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
        fc.dictionary(
          fc.string({ minLength: 1, maxLength: 5 }).filter((k) =>
            !(SDPO_FIELDS as readonly string[]).includes(k)
          ),
          fc.jsonValue({ maxDepth: 1 }),
          { maxKeys: 2 },
        ),
        (rows, dupIdx, extra) => {
          const unique =
            new Set(rows.map((r) => JSON.stringify([r.history, r.candidates, r.positive]))).size;
          const all = [...rows, ...dupIdx.map((i) => rows[i % rows.length])];
          const raw = all.map((
            r,
          ) => [
            ...sdpoRaw(r),
            ...Object.entries(extra).map(([k, v]): [string, string] => [k, JSON.stringify(v)]),
          ]);
          const res = attempt(
            "sdpo",
            DataFormatError,
            () => parseSdpoText(fileText(raw, "array"), FILE),
          );
          assert.ok(res.ok, !res.ok ? res.error.message : "");
          const { summary, samples } = res.value;
          assert.equal(summary.rowsRead, all.length);
          assert.equal(summary.kept, all.length);
          assert.equal(summary.warnings["duplicate of an earlier row"] ?? 0, all.length - unique);
          for (const s of samples) {
            assert.deepEqual(
              Object.keys(s.source!.extra),
              Object.keys(extra),
            );
          }
        },
      ),
      { ...FC, numRuns: Math.ceil(RUNS / 2) },
    );
  },
);

propTest(
  "sdpo",
  "loadSdpoFile() locates invalid UTF-8 bytes: file, byte offset, row and field",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "recalign-prop-sdpo-utf8-" });
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(sdpoRow, { minLength: 1, maxLength: 4 }),
          fc.nat(),
          fc.constantFrom(...SDPO_FIELDS),
          fc.constantFrom([0xff], [0xc3], [0xed, 0xa0, 0x80], [0x80]),
          async (rows, at, field, seq) => {
            const k = at % rows.length;
            const enc = new TextEncoder();
            const MARK = "\u0001MARK\u0001"; // escaped in the JSON text, so unique
            const raw = rows.map(sdpoRaw);
            raw[k] = raw[k].map(([key, v]): [string, string] =>
              key === field
                ? [key, v.replace(/"/, `"${JSON.stringify(MARK).slice(1, -1)}`)]
                : [key, v]
            );
            const text = fileText(raw, "array");
            const cut = text.indexOf(JSON.stringify(MARK).slice(1, -1));
            const bytes = new Uint8Array([
              ...enc.encode(text.slice(0, cut)),
              ...seq,
              ...enc.encode(text.slice(cut)),
            ]);
            const path = `${dir}/s${n++}.json`;
            await Deno.writeFile(path, bytes);
            const r = await attemptAsync("sdpo", DataFormatError, () => loadSdpoFile(path));
            if (r.ok) mustFail("sdpo", "invalid UTF-8 read");
            const e = r.error as DataFormatError;
            assert.equal(e.file, path);
            assert.equal(e.row, k + 1, e.message);
            assert.equal(e.field, field, e.message);
            assert.match(e.message, /invalid UTF-8 at byte offset \d+/);
          },
        ),
        { ...FC, numRuns: Math.min(RUNS, 40) },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ---------------------------------------------------------------------------------------
// DMPO

/** Titles without the template's delimiters ("<", ">"). */
const title = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 ',.:&()!-]{0,14}$/);
const GAMES: DmpoWording = {
  domain: "Video Games",
  historyNoun: "Video Games",
  consumed: "shopped",
  consuming: "shopping",
  candidateNoun: "Video Games",
};

interface DmpoRowGen {
  history: string[];
  a: string;
  b: string;
  positiveIsA: boolean;
  pair: boolean;
  wording: DmpoWording;
}

const dmpoRow: fc.Arbitrary<DmpoRowGen> = fc.record({
  history: fc.array(title, { minLength: 1, maxLength: 5 }),
  ab: fc.uniqueArray(title, { minLength: 2, maxLength: 2 }),
  positiveIsA: fc.boolean(),
  pair: fc.boolean(),
  wording: fc.constantFrom(MOVIE_WORDING, GAMES),
}).map(({ history, ab, ...rest }) => ({ history, a: ab[0], b: ab[1], ...rest }));

function dmpoRaw(r: DmpoRowGen): [string, string][] {
  const [p, n] = r.positiveIsA ? [r.a, r.b] : [r.b, r.a];
  return [
    ["instruction", JSON.stringify(dmpoInstruction(r.history, r.a, r.b, r.wording))],
    ["input", '""'],
    ["output", JSON.stringify(r.pair ? [dmpoChosen(p, n), dmpoRejected(p, n)] : dmpoChosen(p, n))],
  ];
}

type DmpoMutation = {
  name: string;
  apply: (row: [string, string][], r: DmpoRowGen) => { row: RawRow; field: string | null } | {
    row: RawRow;
    dropped: true;
  };
};

const dmpoMutation: fc.Arbitrary<DmpoMutation> = fc.oneof(
  fc.tuple(fc.constantFrom("instruction", "input"), notString).map(([key, bad]) => ({
    name: `wrong type for ${key}`,
    apply: (row: [string, string][]) => ({
      row: setField(row, key, JSON.stringify(bad)),
      field: key,
    }),
  })),
  notStringArray.map((bad): DmpoMutation => ({
    name: "wrong type for output",
    apply: (row) => ({ row: setField(row, "output", JSON.stringify(bad)), field: "output" }),
  })),
  fc.constantFrom<DmpoMutation>(
    {
      name: "output array of one entry (dropped, as the released loader does)",
      apply: (row, r) => ({
        row: setField(row, "output", JSON.stringify([dmpoChosen(r.a, r.b)])),
        dropped: true,
      }),
    },
    {
      name: "empty output array (dropped)",
      apply: (row) => ({ row: setField(row, "output", "[]"), dropped: true }),
    },
    {
      name: "output array of three",
      apply: (row, r) => ({
        row: setField(
          row,
          "output",
          JSON.stringify([dmpoChosen(r.a, r.b), dmpoRejected(r.a, r.b), "x"]),
        ),
        field: "output",
      }),
    },
    {
      name: "non-string in the output array",
      apply: (row, r) => ({
        row: setField(row, "output", JSON.stringify([dmpoChosen(r.a, r.b), 3])),
        field: "output[1]",
      }),
    },
    {
      name: "output ranks other items than the question",
      apply: (row, r) => ({
        row: setField(row, "output", JSON.stringify(dmpoChosen(r.a + "X", r.b))),
        field: "output",
      }),
    },
    {
      name: "rejected is not the reversed ranking",
      apply: (row, r) => ({
        row: setField(row, "output", JSON.stringify([dmpoChosen(r.a, r.b), dmpoChosen(r.a, r.b)])),
        field: "output[1]",
      }),
    },
    {
      name: "empty history",
      apply: (row, r) => ({
        row: setField(row, "instruction", JSON.stringify(dmpoInstruction([], r.a, r.b, r.wording))),
        field: "instruction",
      }),
    },
    {
      name: "both candidates the same",
      apply: (row, r) =>
        [
          setField(
            setField(
              row,
              "instruction",
              JSON.stringify(dmpoInstruction(r.history, r.a, r.a, r.wording)),
            ),
            "output",
            JSON.stringify(dmpoChosen(r.a, r.a)),
          ),
        ].map((x) => ({ row: x, field: "instruction" }))[0],
    },
    {
      name: "row is not an object",
      apply: () => ({ row: "42", field: null }),
    },
  ),
  fc.tuple(fc.nat(), fc.constantFrom("cut", "garble")).map(([at, how]): DmpoMutation => ({
    name: `instruction ${how === "cut" ? "truncated" : "garbled"}`,
    apply: (row, r) => {
      const text = dmpoInstruction(r.history, r.a, r.b, r.wording);
      let bad: string;
      if (how === "cut") bad = text.slice(0, at % (text.length - 3)); // before the final "> ."
      else {
        // One character of a fixed piece of the template (a changed title would still parse).
        const pieces = [DMPO_PIECES.intro, DMPO_PIECES.afterDomain, DMPO_PIECES.question];
        const piece = pieces[at % pieces.length];
        const k = text.indexOf(piece) + (at % piece.length);
        bad = text.slice(0, k) + "\u0007" + text.slice(k + 1);
      }
      return { row: setField(row, "instruction", JSON.stringify(bad)), field: "instruction" };
    },
  })),
  fc.constantFrom("instruction", "input", "output").map((key): DmpoMutation => ({
    name: `missing ${key}`,
    apply: (row) => ({ row: row.filter(([k]) => k !== key), field: key }),
  })),
  fc.constantFrom("instruction", "input", "output").map((key): DmpoMutation => ({
    name: `duplicate key ${key}`,
    apply: (row) => ({ row: [...row, row.find(([k]) => k === key)!], field: key }),
  })),
);

propTest("dmpo", "parseDmpoText() reads generated valid rows back to the same parts", () => {
  fc.assert(
    fc.property(fc.array(dmpoRow, { minLength: 1, maxLength: 5 }), (rows) => {
      const res = attempt(
        "dmpo",
        DataFormatError,
        () => parseDmpoText(fileText(rows.map(dmpoRaw), "array"), FILE),
      );
      assert.ok(res.ok, !res.ok ? res.error.message : "");
      res.value.samples.forEach((s, i) => {
        const r = rows[i];
        assert.deepEqual(s.history, r.history);
        assert.deepEqual(s.candidates, [r.a, r.b]);
        assert.equal(s.positive, r.positiveIsA ? r.a : r.b);
        assert.equal(s.outputKind, r.pair ? "pair" : "string");
      });
    }),
    FC,
  );
});

propTest(
  "dmpo",
  "parseDmpoText() names file, row and field of a generated malformed row, or drops and counts it",
  () => {
    fc.assert(
      fc.property(
        fc.array(dmpoRow, { minLength: 1, maxLength: 4 }),
        fc.nat(),
        dmpoMutation,
        (rows, at, mutation) => {
          const k = at % rows.length;
          const raw: RawRow[] = rows.map(dmpoRaw);
          const m = mutation.apply(raw[k] as [string, string][], rows[k]);
          raw[k] = m.row;
          const text = fileText(raw, "array");
          const r = attempt("dmpo", DataFormatError, () => parseDmpoText(text, FILE));
          if ("dropped" in m) {
            assert.ok(r.ok, !r.ok ? r.error.message : "");
            const { summary, samples } = r.value;
            assert.equal(summary.rowsRead, rows.length);
            assert.equal(samples.length, rows.length - 1);
            const n = Object.values(summary.dropped).reduce((a, b) => a + b, 0);
            assert.equal(n, 1, JSON.stringify(summary.dropped));
            tally("dmpo").dropped++;
            return;
          }
          expectDataError("dmpo", r, { row: k + 1, field: m.field ?? undefined }, mutation.name);
        },
      ),
      FC,
    );
  },
);

propTest(
  "dmpo",
  "loadDmpoFile() reports its drops to the caller and names the path on a bad file",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "recalign-prop-dmpo-" });
    try {
      const rows = fc.sample(dmpoRow, { numRuns: 3, seed: SEED });
      const raw: RawRow[] = rows.map(dmpoRaw);
      raw[1] = setField(raw[1] as [string, string][], "output", "[]");
      await Deno.writeTextFile(`${dir}/a.json`, fileText(raw, "array"));
      const res = await loadDmpoFile(`${dir}/a.json`);
      assert.equal(res.summary.kept, 2);
      assert.deepEqual(Object.values(res.summary.dropped), [1]);
      await Deno.writeTextFile(`${dir}/b.json`, fileText(raw, "array").slice(0, 100));
      await assert.rejects(
        loadDmpoFile(`${dir}/b.json`),
        (e: unknown) =>
          e instanceof DataFormatError && e.file === `${dir}/b.json` && /truncated/.test(e.message),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ---------------------------------------------------------------------------------------
// safetensors

const tensorRecord: fc.Arbitrary<TensorRecord> = fc.record({
  dtype: fc.constantFrom("F32", "F16", "BF16", "I32") as fc.Arbitrary<
    "F32" | "F16" | "BF16" | "I32"
  >,
  shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
}).chain(({ dtype, shape }) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: n, maxLength: n }).map((
    data,
  ) => ({ dtype, shape, data }));
});
const tensorName = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s !== "__metadata__");
const tensorMap = fc.dictionary(tensorName, tensorRecord, { minKeys: 1, maxKeys: 4 });

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** A file with the given header object (re-encoded, length prefix fixed) and data bytes. */
function withHeader(header: unknown, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(json.length), true);
  return concat([prefix, json, data]);
}

function splitFile(bytes: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return {
    header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))),
    data: bytes.subarray(8 + n),
  };
}

const badEntryValue = fc.oneof(
  fc.record({
    key: fc.constant("dtype"),
    value: fc.oneof(fc.string({ maxLength: 4 }), fc.integer(), fc.constant(null)),
  }),
  fc.record({
    key: fc.constant("shape"),
    value: fc.oneof(
      fc.array(fc.integer({ min: -5, max: -1 }), { minLength: 1, maxLength: 2 }),
      fc.constant([1.5]),
      fc.constant([2 ** 40, 2 ** 40]),
      fc.constant([Number.MAX_SAFE_INTEGER, 3]),
      fc.constant("4"),
      fc.constant(null),
    ),
  }),
  fc.record({
    key: fc.constant("data_offsets"),
    value: fc.oneof(
      fc.tuple(fc.integer({ min: -10, max: 10 ** 9 }), fc.integer({ min: -10, max: 10 ** 9 })),
      fc.constant([0]),
      fc.constant([0, 4, 8]),
      fc.constant([2 ** 60, 2 ** 60 + 4]),
      fc.constant("0,4"),
      fc.constant(null),
    ),
  }),
);

propTest(
  "safetensors",
  "decodeSafetensors() on corrupt headers, bad offsets and absurd sizes: CheckpointError naming the source and tensor, or a correct read",
  () => {
    fc.assert(
      fc.property(
        tensorMap,
        fc.oneof(
          fc.record({ kind: fc.constant("entry" as const), pick: fc.nat(), bad: badEntryValue }),
          fc.record({
            kind: fc.constant("prefix" as const),
            value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          }),
          fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
          fc.record({
            kind: fc.constant("flip" as const),
            at: fc.nat(),
            bit: fc.integer({ min: 0, max: 7 }),
          }),
          fc.record({ kind: fc.constant("overlap" as const) }),
          fc.record({
            kind: fc.constant("metadata" as const),
            value: fc.oneof(
              fc.integer(),
              fc.array(fc.string()),
              fc.dictionary(fc.string(), fc.integer(), { minKeys: 1, maxKeys: 2 }),
            ),
          }),
        ),
        (tensors, fault) => {
          const good = concat(encodeSafetensors(tensors));
          const names = Object.keys(tensors);
          let bytes: Uint8Array;
          let mustName: string | undefined;
          if (fault.kind === "entry") {
            const { header, data } = splitFile(good);
            const name = names[fault.pick % names.length];
            (header[name] as Record<string, unknown>)[fault.bad.key] = fault.bad.value;
            bytes = withHeader(header, data);
            mustName = name;
          } else if (fault.kind === "prefix") {
            bytes = good.slice();
            new DataView(bytes.buffer).setBigUint64(0, fault.value, true);
          } else if (fault.kind === "truncate") {
            bytes = good.slice(0, fault.at % good.length);
          } else if (fault.kind === "flip") {
            bytes = good.slice();
            bytes[fault.at % bytes.length] ^= 1 << fault.bit;
          } else if (fault.kind === "overlap") {
            const { header, data } = splitFile(good);
            const spans = names.filter((n) => (tensors[n].data as number[]).length > 0);
            if (spans.length < 2) return;
            const [a, b] = spans;
            (header[b] as { data_offsets: number[] }).data_offsets = [
              ...(header[a] as { data_offsets: number[] }).data_offsets,
            ];
            if (
              tensors[a].dtype !== tensors[b].dtype ||
              String(tensors[a].shape) !== String(tensors[b].shape)
            ) {
              (header[b] as { dtype: string; shape: number[] }).dtype = tensors[a].dtype;
              (header[b] as { dtype: string; shape: number[] }).shape = tensors[a].shape;
            }
            bytes = withHeader(header, data);
            mustName = "overlap";
          } else {
            const { header, data } = splitFile(good);
            header.__metadata__ = fault.value;
            bytes = withHeader(header, data);
            mustName = "__metadata__";
          }
          const r = attempt(
            "safetensors",
            CheckpointError,
            () => decodeSafetensors(bytes, { source: "gen.safetensors" }),
          );
          if (r.ok) {
            // Accepted: every tensor it returns has as many values as its shape says.
            for (const t of Object.values(r.value.tensors)) {
              assert.equal(t.data.length, t.shape.reduce((a, b) => a * b, 1));
            }
            if (fault.kind === "overlap" || fault.kind === "metadata") {
              mustFail("safetensors", fault.kind);
            }
            return;
          }
          assert.ok(r.error.message.startsWith("gen.safetensors"), r.error.message);
          if (mustName) {
            assert.ok(r.error.message.includes(mustName), `${mustName}: ${r.error.message}`);
          }
        },
      ),
      FC,
    );
  },
);

propTest(
  "safetensors",
  "readSafetensors() names the path of a corrupt file and never reads past it",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "recalign-prop-st-" });
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(tensorMap, fc.nat(), async (tensors, at) => {
          const good = concat(encodeSafetensors(tensors));
          const path = `${dir}/t${n++}.safetensors`;
          await Deno.writeFile(path, good.slice(0, at % good.length));
          const r = await attemptAsync("safetensors", CheckpointError, () => readSafetensors(path));
          if (!r.ok) assert.ok(r.error.message.startsWith(path), r.error.message);
        }),
        { ...FC, numRuns: Math.min(RUNS, 40) },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ---------------------------------------------------------------------------------------
// config.json

const HF_BASE = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  vocab_size: 64,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  max_position_embeddings: 64,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
};
const HF_NUMERIC = Object.keys(HF_BASE).filter((k) =>
  typeof HF_BASE[k as keyof typeof HF_BASE] === "number"
);

propTest(
  "config.json",
  "configFromHf() on generated bad config.json fields: CheckpointError naming the file and field, or a valid config",
  () => {
    const badNumber = fc.oneof(
      fc.integer({ min: -1000, max: 0 }),
      fc.double({ min: -10, max: 10, noNaN: true }).filter((x) => !Number.isInteger(x)),
      fc.constantFrom(1e400, -1e400, NaN, 2 ** 60, 3),
      fc.string({ maxLength: 3 }),
      fc.constant(null),
      fc.boolean(),
      fc.array(fc.integer(), { maxLength: 2 }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom("llama", "qwen2", "qwen3"),
        fc.constantFrom(...HF_NUMERIC),
        badNumber,
        (type, field, value) => {
          const arch = {
            llama: "LlamaForCausalLM",
            qwen2: "Qwen2ForCausalLM",
            qwen3: "Qwen3ForCausalLM",
          }[type];
          const hf = { ...HF_BASE, architectures: [arch], model_type: type, [field]: value };
          const r = attempt(
            "config.json",
            CheckpointError,
            () => configFromHf(hf, "gen/config.json"),
          );
          if (r.ok) {
            // Accepted (a default replaced null, or the value is valid): a config the model takes.
            validateConfig(r.value);
            return;
          }
          assert.ok(r.error.message.startsWith("gen/config.json: "), r.error.message);
          const named = r.error.message.match(/field "([^"]+)"/)?.[1];
          // Heads and sizes are checked together: a bad one may be reported on its partner.
          const partners: Record<string, string[]> = {
            num_attention_heads: ["num_key_value_heads", "head_dim"],
            hidden_size: ["head_dim"],
            num_key_value_heads: ["num_key_value_heads"],
          };
          assert.ok(
            named === field || partners[field]?.includes(named ?? ""),
            `mutated ${field}=${JSON.stringify(value)}: ${r.error.message}`,
          );
        },
      ),
      FC,
    );
    // Unsupported architectures are refused with the supported list.
    assert.throws(
      () =>
        configFromHf(
          { ...HF_BASE, architectures: ["GPT2LMHeadModel"], model_type: "gpt2" },
          "c.json",
        ),
      (e: unknown) =>
        e instanceof CheckpointError &&
        /GPT2LMHeadModel.*supported: LlamaForCausalLM/.test(e.message),
    );
  },
);

propTest(
  "config.json",
  "loadPretrained() on a garbled config.json: CheckpointError naming the path",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "recalign-prop-cfg-" });
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.nat().map((at) => JSON.stringify(HF_BASE).slice(0, at % 60)),
            fc.constant("[1, 2]"),
            fc.constant("null"),
            fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)),
            fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) =>
              new TextDecoder().decode(new Uint8Array([0xff, ...b]))
            ),
          ),
          async (text) => {
            const folder = `${dir}/m${n++}`;
            await Deno.mkdir(folder);
            await Deno.writeTextFile(`${folder}/config.json`, text);
            const r = await attemptAsync(
              "config.json",
              CheckpointError,
              () => loadPretrained(folder, { tokenizer: false }),
            );
            if (r.ok) mustFail("config.json", `garbled config ${text.slice(0, 40)}`);
            assert.ok(r.error.message.includes(`${folder}`), r.error.message);
          },
        ),
        { ...FC, numRuns: Math.min(RUNS, 40) },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ---------------------------------------------------------------------------------------
// The synthetic world

type Knob = keyof WorldConfig;
const nonFinite = fc.constantFrom(NaN, Infinity, -Infinity);
const notNumber = fc.oneof(fc.string({ maxLength: 3 }), fc.boolean(), fc.constant({}));
const badInt = (lo: number, hi: number) =>
  fc.oneof(
    fc.integer({ min: -1000, max: lo - 1 }),
    fc.integer({ min: hi + 1, max: hi + 10 ** 9 }),
    fc.double({ min: lo, max: Math.min(hi, 1e6), noNaN: true }).filter((x) => !Number.isInteger(x)),
    nonFinite,
    notNumber,
  );
const badProb = fc.oneof(
  fc.double({ min: -1e6, max: -1e-9, noNaN: true }),
  fc.double({ min: 1 + 1e-9, max: 1e6, noNaN: true }),
  fc.constantFrom(NaN, Infinity),
  notNumber,
);
const WORLD_BAD: Record<Knob, fc.Arbitrary<unknown>> = {
  numDomains: badInt(1, 4),
  numItems: badInt(8, 1_000_000), // default 8 genres
  numGenres: fc.oneof(fc.integer({ min: -100, max: 0 }), fc.constantFrom(1.5, NaN), notNumber),
  wordsPerGenre: badInt(2, 10_000),
  numSharedWords: badInt(0, 10).filter((x) => !(typeof x === "number" && x > 10 && x <= 16)),
  titleNoise: badProb,
  popularitySigma: fc.oneof(
    fc.double({ min: -1e6, max: -1e-9, noNaN: true }),
    fc.double({ min: 100.001, max: 1e300, noNaN: true }),
    fc.constantFrom(NaN, Infinity),
    notNumber,
  ),
  numUsers: badInt(1, 1_000_000),
  historyLen: fc.oneof(
    fc.integer(),
    fc.string({ maxLength: 3 }),
    fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 3, maxLength: 4 }),
    fc.tuple(fc.integer({ min: 5, max: 9 }), fc.integer({ min: 0, max: 4 })), // min > max
    fc.tuple(fc.integer({ min: -9, max: -1 }), fc.integer({ min: 0, max: 4 })),
    fc.tuple(fc.constant(1), fc.integer({ min: 400, max: 10 ** 6 })), // max >= numItems
    fc.constant([1.5, 3]),
  ),
  tasteConcentration: fc.oneof(
    fc.double({ min: -1e6, max: 0, noNaN: true }),
    fc.double({ min: 1e-320, max: 9e-7, noNaN: true }),
    fc.constantFrom(NaN, Infinity),
    notNumber,
  ),
  uniformMix: badProb,
  shortTermWeight: badProb,
  crossDomainShare: badProb,
  splitFractions: fc.oneof(
    fc.integer(),
    fc.constant("0.7,0.1,0.2"),
    fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 0, maxLength: 2 }),
    fc.tuple(
      fc.double({ min: 0.6, max: 1, noNaN: true }),
      fc.double({ min: 0.6, max: 1, noNaN: true }),
      fc.constant(0),
    ),
    fc.constant([1.2, -0.2, 0]),
    fc.constant([NaN, 0.5, 0.5]),
  ),
  seed: fc.oneof(nonFinite, notNumber),
};

propTest(
  "world config",
  "makeWorld() refuses any generated bad knob (negative, NaN, absurd, wrong type) with a ConfigError naming it",
  () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...(Object.keys(WORLD_BAD) as Knob[])).chain((knob) =>
          WORLD_BAD[knob].map((value) => ({ knob, value }))
        ),
        ({ knob, value }) => {
          const t0 = performance.now();
          const r = attempt(
            "world config",
            ConfigError,
            () => makeWorld({ numUsers: 20, [knob]: value } as Partial<WorldConfig>),
          );
          if (r.ok) mustFail("world config", `${knob}=${JSON.stringify(value)}`);
          assert.equal((r.error as ConfigError).field, knob, r.error.message);
          assert.ok(performance.now() - t0 < 2000, "refused before any work");
        },
      ),
      FC,
    );
    // Valid small knobs still make a world without NaN anywhere.
    fc.assert(
      fc.property(
        fc.record({
          numUsers: fc.integer({ min: 1, max: 30 }),
          tasteConcentration: fc.double({ min: 1e-6, max: 1e6, noNaN: true }),
          popularitySigma: fc.double({ min: 0, max: 100, noNaN: true }),
          seed: fc.integer(),
        }),
        (knobs) => {
          const w = attempt("world config", ConfigError, () => makeWorld(knobs));
          assert.ok(w.ok);
          assert.ok(!JSON.stringify(w.value.users).includes("null"), "NaN in user tastes");
          assert.ok(!JSON.stringify(w.value.items).includes("null"), "NaN in items");
        },
      ),
      { ...FC, numRuns: bySetting(8, 30) },
    );
  },
);

// ---------------------------------------------------------------------------------------
// train() options and examples

await initBackend("wasm", { quiet: true });
const VOCAB = 48;

function toyExamples(): TrainExample[] {
  return Array.from({ length: 8 }, (_, a) => ({
    prompt: [1, 3, 4 + a],
    chosen: [20 + (a % 8), 2],
    rejected: [[30, 2], [31, 2], [32, 2]],
  }));
}

const posIntBad = fc.oneof(
  fc.integer({ min: -100, max: 0 }),
  fc.double({ min: 0.01, max: 100, noNaN: true }).filter((x) => !Number.isInteger(x)),
  nonFinite,
);
const nonNegBad = fc.oneof(fc.double({ min: -1e9, max: -1e-12, noNaN: true }), nonFinite);
const TRAIN_BAD: Record<string, fc.Arbitrary<unknown>> = {
  lr: fc.oneof(fc.double({ min: -1, max: 0, noNaN: true }), nonFinite),
  beta: fc.oneof(fc.double({ min: -5, max: 0, noNaN: true }), nonFinite),
  gamma: fc.oneof(fc.double({ min: -5, max: -1e-9, noNaN: true }), nonFinite),
  steps: posIntBad,
  batchSize: posIntBad,
  microBatchSize: posIntBad,
  numNegatives: posIntBad,
  logEvery: posIntBad,
  warmupSteps: nonNegBad,
  minLrRatio: nonNegBad,
  weightDecay: nonNegBad,
  maxGradNorm: nonNegBad,
  maxLength: nonNegBad,
  checkpointEvery: nonNegBad,
  beta1: fc.oneof(
    fc.double({ min: 1, max: 10, noNaN: true }),
    fc.double({ min: -5, max: -1e-9, noNaN: true }),
    fc.constant(NaN),
  ),
  beta2: fc.oneof(
    fc.double({ min: 1, max: 10, noNaN: true }),
    fc.double({ min: -5, max: -1e-9, noNaN: true }),
    fc.constant(NaN),
  ),
  keepCheckpoints: posIntBad,
  padId: fc.oneof(
    fc.integer({ min: -100, max: -1 }),
    fc.integer({ min: VOCAB, max: 10 ** 6 }),
    fc.constant(1.5),
    fc.constant(NaN),
  ),
  seed: nonFinite,
  stage: fc.string({ maxLength: 6 }).filter((s) => !(STAGES as readonly string[]).includes(s)),
  reference: fc.string({ maxLength: 6 }).filter((s) => s !== "live" && s !== "precomputed"),
  onNonFinite: fc.string({ maxLength: 6 }).filter((s) => s !== "stop" && s !== "skip"),
};

propTest(
  "train() options",
  "train() refuses any generated bad option with a ConfigError naming it, before touching weights or disk",
  async () => {
    const model = LlamaModel.random({ ...PRESETS["llama-nano"], vocab_size: VOCAB }, 1);
    model.addLora({ ...DEFAULT_LORA_CONFIG, r: 2, lora_alpha: 4, lora_dropout: 0, seed: 1 });
    const before = model.trainableVariables().map((v) => v.dataSync().slice());
    const tensorsBefore = tf.memory().numTensors;
    const dir = await Deno.makeTempDir({ prefix: "recalign-prop-train-" });
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...Object.keys(TRAIN_BAD)).chain((knob) =>
            TRAIN_BAD[knob].map((value) => ({ knob, value }))
          ),
          async ({ knob, value }) => {
            const outDir = `${dir}/run${n++}`;
            const r = await attemptAsync(
              "train() options",
              ConfigError,
              () =>
                train(
                  model,
                  toyExamples(),
                  {
                    stage: "sdpo",
                    steps: 2,
                    batchSize: 2,
                    numNegatives: 2,
                    beta: 1,
                    [knob]: value,
                  } as Parameters<typeof train>[2],
                  { outDir, progress: false },
                ),
            );
            if (r.ok) mustFail("train() options", `${knob}=${value}`);
            assert.equal((r.error as ConfigError).field, knob, r.error.message);
            await assert.rejects(Deno.stat(outDir), Deno.errors.NotFound, "no output folder");
          },
        ),
        FC,
      );
      // Malformed examples: out-of-vocabulary, negative, fractional or NaN token ids, empty
      // sequences, too few rejected responses → InputError naming the example.
      await fc.assert(
        fc.asyncProperty(
          fc.nat(),
          fc.constantFrom("prompt", "chosen", "rejected"),
          fc.oneof(
            fc.integer({ min: VOCAB, max: 10 ** 9 }),
            fc.integer({ min: -(10 ** 9), max: -1 }),
            fc.constantFrom(1.5, NaN, Infinity),
            fc.constant("empty"),
            fc.constant("few"),
          ),
          async (at, part, bad) => {
            const ex = toyExamples();
            const i = at % ex.length;
            if (bad === "empty") {
              if (part === "rejected") ex[i].rejected![0] = [];
              else ex[i][part] = [];
            } else if (bad === "few") ex[i].rejected = [[30, 2]];
            else {
              const seq = part === "rejected" ? ex[i].rejected![1] : ex[i][part];
              seq[at % seq.length] = bad as number;
            }
            const r = await attemptAsync(
              "train() examples",
              InputError,
              () =>
                train(
                  model,
                  ex,
                  { stage: "sdpo", steps: 1, batchSize: 2, numNegatives: 2, beta: 1 },
                  {
                    progress: false,
                  },
                ),
            );
            if (r.ok) mustFail("train() examples", `${part} ${bad}`);
            assert.match(r.error.message, new RegExp(`example ${i}\\b`), r.error.message);
          },
        ),
        FC,
      );
      const after = model.trainableVariables().map((v) => v.dataSync().slice());
      assert.deepEqual(after, before, "a refused train() call changed no weight");
      assert.equal(tf.memory().numTensors, tensorsBefore, "and leaked no tensor");
    } finally {
      model.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ---------------------------------------------------------------------------------------
// Report

Deno.test("malformed-input observations go to the reliability report, with nothing lost", async () => {
  const readers: Record<string, string> = {
    "json_stream":
      "src/data/json_stream.ts: truncated / garbled JSON, invalid UTF-8, absurd nesting",
    "sdpo":
      "src/data/sdpo.ts: wrong types, empty histories, candidates without the answer, duplicate candidates / keys / rows, missing fields",
    "dmpo":
      "src/data/dmpo.ts: wrong types, broken instructions, empty histories, bad outputs, short outputs (dropped), missing / duplicate keys",
    "safetensors":
      "src/safetensors.ts: corrupt headers, bad / overlapping offsets, absurd shapes, bad length prefix, truncation, bit flips",
    "config.json":
      "src/checkpoint.ts config.json: negative / zero / fractional / non-numeric sizes, garbled files",
    "world config": "src/data/world.ts knobs: negative, NaN, ±Infinity, absurd sizes, wrong types",
    "train() options":
      "src/train.ts options: negative / NaN / infinite lr, beta, steps, batch sizes, … unknown names",
    "train() examples":
      "src/train.ts examples: out-of-vocabulary / negative / NaN token ids, empty sequences, too few rejected",
  };
  const records: FaultRecord[] = [];
  for (const [reader, fault] of Object.entries(readers)) {
    const t = tally(reader);
    records.push({
      suite: "malformed input (tests/fault/property_test.ts)",
      fault,
      injected: t.cases,
      outcome:
        `${t.cleanErrors} refused with an error naming the file / row / field or the knob, ` +
        `${t.accepted - t.dropped} valid inputs read correctly` +
        (t.dropped ? `, ${t.dropped} files with a row dropped and counted in the summary` : ""),
      lost: t.wrong.length ? `unexpected: ${t.wrong.join("; ")}` : "nothing",
    });
  }
  const path = await recordFaults(records);
  const report = parseReport(await Deno.readTextFile(path));
  for (const r of records) {
    const row = report.rows.find((x) => x.fault === r.fault);
    assert.ok(row, `report lists ${r.fault}`);
    assert.equal(row!.lost, "nothing", row!.lost);
    assert.ok(row!.injected > 0, `${r.fault}: no case ran`);
  }
  assert.ok(records.every((r) => r.lost === "nothing"));
});
