/**
 * JSON reading and writing for the released data files, byte-exact.
 *
 * - {@link decodeUtf8Strict} / {@link readUtf8Strict}: strict UTF-8 (invalid bytes are a
 *   {@link DataFormatError} naming the file, byte offset and line, never U+FFFD).
 * - {@link parseJsonRows}: a JSON parser that accepts one top-level array (its elements are
 *   the rows) or concatenated top-level values (each value is a row; DMPO's `_old` eval file
 *   writes objects back to back, JSON Lines files separate them by newlines). It records
 *   where every row and every row field starts and ends, and reports syntax errors with the
 *   file, the 1-based row, the field and the 1-based line and column.
 * - {@link pyJsonDumps} and friends: a serializer that writes what Python's `json.dump`
 *   writes (`ensure_ascii` escapes, `indent`, `separators`), so parsed rows can be written
 *   back byte for byte. {@link detectJsonLayout} reads those settings off a parsed file.
 *
 * @module
 */

import { DataFormatError } from "../errors.ts";

/** A parsed JSON value. Numbers are JS numbers (see {@link pyJsonDumps} for writing). */
export type JsonValue = null | boolean | number | string | JsonValue[] | {
  [key: string]: JsonValue;
};

/** One key of a row object, with where its key and value sit in the text. */
export interface JsonField {
  /** The key. */
  key: string;
  /** The parsed value. */
  value: JsonValue;
  /** Offset (UTF-16 code units) of the key's opening quote. */
  keyStart: number;
  /** Offset just after the key's closing quote. */
  keyEnd: number;
  /** Offset of the value's first character. */
  valueStart: number;
  /** Offset just after the value's last character. */
  valueEnd: number;
}

/** One row: an element of the top-level array, or one top-level value of a stream. */
export interface JsonRow {
  /** 1-based row number. */
  row: number;
  /** The parsed value. */
  value: JsonValue;
  /** Offset (UTF-16 code units) of the row's first character in the text. */
  start: number;
  /** Offset just after the row's last character. */
  end: number;
  /** 1-based line of `start`. */
  line: number;
  /** 1-based column of `start`. */
  column: number;
  /** The row's keys in file order (duplicates included), when the row is an object. */
  fields?: JsonField[];
}

/** A parsed data file: its text and rows. */
export interface JsonRows {
  /** The file name used in error messages. */
  file: string;
  /** The whole decoded text. */
  text: string;
  /** `"array"`: one top-level array whose elements are rows; `"stream"`: each top-level value is a row. */
  container: "array" | "stream";
  /** The rows in file order. */
  rows: JsonRow[];
}

/** How Python's `json.dump` was called: what {@link pyJsonDumps} needs to write the same bytes. */
export interface JsonStyle {
  /** `indent` as a string of whitespace (Python `indent=4` is `"    "`), or `null` for one line. */
  indent: string | null;
  /** `separators[0]`: `", "` (Python default without indent) or `","` (default with indent). */
  itemSeparator: string;
  /** `separators[1]`: `": "` by default. */
  keySeparator: string;
  /** `ensure_ascii`: non-ASCII (and DEL) written as `\uXXXX` escapes. Python's default is true. */
  ensureAscii: boolean;
}

/** A whole file's layout: the style plus what surrounds and separates the rows. */
export interface JsonLayout extends JsonStyle {
  /** Whether rows are elements of one array or back-to-back top-level values. */
  container: "array" | "stream";
  /** Nesting level of a row (1 inside an array, 0 in a stream); sets the row's indentation. */
  rowLevel: number;
  /** Text before the first row (e.g. `"[\n    "` or `"["`). */
  head: string;
  /** Text between two rows (e.g. `",\n    "`, `", "`, or `""` for back-to-back objects). */
  rowSeparator: string;
  /** Text after the last row (e.g. `"\n]"`). */
  tail: string;
  /** True when every gap between rows equals {@link rowSeparator} (so the file can be rebuilt). */
  uniformSeparators: boolean;
}

/** Python `json.dump(rows, f)` defaults: one line, `", "` and `": "`, ASCII escapes. */
export const PY_COMPACT_LAYOUT: Readonly<JsonLayout> = {
  indent: null,
  itemSeparator: ", ",
  keySeparator: ": ",
  ensureAscii: true,
  container: "array",
  rowLevel: 1,
  head: "[",
  rowSeparator: ", ",
  tail: "]",
  uniformSeparators: true,
};

/** Python `json.dump(rows, f, indent=4)` (Python ≥ 3.4 separators `","` and `": "`). */
export const PY_INDENT4_LAYOUT: Readonly<JsonLayout> = {
  indent: "    ",
  itemSeparator: ",",
  keySeparator: ": ",
  ensureAscii: true,
  container: "array",
  rowLevel: 1,
  head: "[\n    ",
  rowSeparator: ",\n    ",
  tail: "\n]",
  uniformSeparators: true,
};

// ---------------------------------------------------------------------------------------
// UTF-8

/**
 * Offset of the first byte of the first invalid UTF-8 sequence, or -1 when all bytes are
 * valid (the same rules as `TextDecoder("utf-8", { fatal: true })`: no overlongs, no
 * surrogates, nothing above U+10FFFF, no truncated sequences).
 */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number, lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    if (i + need >= n) return i;
    const c1 = bytes[i + 1];
    if (c1 < lo || c1 > hi) return i;
    for (let k = 2; k <= need; k++) {
      const c = bytes[i + k];
      if (c < 0x80 || c > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** 1-based line and byte column of a byte offset (lines end at `\n`). */
function byteLineColumn(bytes: Uint8Array, offset: number): { line: number; column: number } {
  let line = 1, lineStart = 0;
  for (let i = 0; i < offset; i++) {
    if (bytes[i] === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function hexBytes(bytes: Uint8Array, offset: number, count: number): string {
  return Array.from(bytes.subarray(offset, offset + count))
    .map((b) => "0x" + b.toString(16).toUpperCase().padStart(2, "0"))
    .join(" ");
}

/**
 * Decode bytes as strict UTF-8. A byte-order mark is kept as U+FEFF (not stripped), so the
 * text maps back to the same bytes.
 *
 * @example Usage
 * ```ts
 * import { decodeUtf8Strict } from "./json_stream.ts";
 * import assert from "node:assert/strict";
 * assert.equal(decodeUtf8Strict(new Uint8Array([0x68, 0xc3, 0xa9]), "x.json"), "hé");
 * assert.throws(() => decodeUtf8Strict(new Uint8Array([0x68, 0xff]), "x.json"), /byte offset 1/);
 * ```
 *
 * @param bytes The file content.
 * @param file The file name for error messages.
 * @returns The decoded text.
 * @throws {DataFormatError} naming the file, the byte offset, line and column of the first
 * invalid sequence.
 */
export function decodeUtf8Strict(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (cause) {
    const offset = invalidUtf8Offset(bytes);
    const at = offset < 0 ? bytes.length : offset;
    const { line, column } = byteLineColumn(bytes, at);
    throw new DataFormatError(
      { file },
      `invalid UTF-8 at byte offset ${at} (line ${line}, byte column ${column}): ` +
        `bytes ${hexBytes(bytes, at, 4)}`,
      { cause },
    );
  }
}

/**
 * Read a file as strict UTF-8.
 *
 * @param path The file to read.
 * @returns Its text.
 * @throws {DataFormatError} on invalid UTF-8 (see {@link decodeUtf8Strict}).
 */
export async function readUtf8Strict(path: string): Promise<string> {
  return decodeUtf8Strict(await Deno.readFile(path), path);
}

// ---------------------------------------------------------------------------------------
// Parsing

/** 1-based line and column (in UTF-16 code units) of a text offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1, lineStart = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

const MAX_DEPTH = 512;

function describeChar(text: string, pos: number): string {
  if (pos >= text.length) return "end of input";
  const c = text.codePointAt(pos)!;
  if (c >= 0x20 && c < 0x7f) return `"${String.fromCharCode(c)}"`;
  return `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
}

type PathItem = string | number;

class Parser {
  pos = 0;
  /** Path from the current row down to the value being parsed. */
  path: PathItem[] = [];
  /** 1-based number of the row being parsed (or last one parsed). */
  row = 0;
  inRow = false;

  constructor(readonly text: string, readonly file: string) {}

  fail(problem: string, at = this.pos): never {
    const { line, column } = lineColumn(this.text, at);
    const where: { file: string; row?: number; field?: string } = { file: this.file };
    if (this.row > 0) where.row = this.row;
    if (this.inRow && this.path.length > 0) where.field = formatPath(this.path);
    const after = this.inRow ? "" : this.row > 0 ? " (after the row)" : "";
    throw new DataFormatError(where, `${problem} at line ${line}, column ${column}${after}`);
  }

  ws(): void {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  expect(ch: string, what: string): void {
    if (this.text[this.pos] !== ch) {
      this.fail(`expected ${what}, got ${describeChar(this.text, this.pos)}`);
    }
    this.pos++;
  }

  value(depth: number, fields?: JsonField[]): JsonValue {
    this.ws();
    const t = this.text;
    const c = t.charCodeAt(this.pos);
    if (c === 0x22) return this.string();
    if (c === 0x7b) return this.object(depth, fields);
    if (c === 0x5b) return this.array(depth);
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (t.startsWith("true", this.pos)) return this.pos += 4, true;
    if (t.startsWith("false", this.pos)) return this.pos += 5, false;
    if (t.startsWith("null", this.pos)) return this.pos += 4, null;
    if (this.pos >= t.length) this.fail("unexpected end of input (truncated file?)");
    return this.fail(`expected a JSON value, got ${describeChar(t, this.pos)}`);
  }

  object(depth: number, fields?: JsonField[]): JsonValue {
    if (depth >= MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    const t = this.text;
    this.pos++; // {
    const out: { [key: string]: JsonValue } = {};
    this.ws();
    if (t[this.pos] === "}") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.ws();
      const keyStart = this.pos;
      if (t[this.pos] !== '"') {
        if (this.pos >= t.length) {
          this.fail("unexpected end of input (truncated file?) inside an object");
        }
        this.fail(`expected a string key, got ${describeChar(t, this.pos)}`);
      }
      const key = this.string();
      const keyEnd = this.pos;
      this.path.push(key);
      this.ws();
      this.expect(":", `":" after key "${key}"`);
      this.ws();
      const valueStart = this.pos;
      const v = this.value(depth + 1);
      if (key === "__proto__") {
        Object.defineProperty(out, key, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      } else out[key] = v;
      fields?.push({ key, value: v, keyStart, keyEnd, valueStart, valueEnd: this.pos });
      this.ws();
      const c = t[this.pos];
      if (c === ",") {
        this.pos++;
        this.path.pop();
        continue;
      }
      if (c === "}") {
        this.pos++;
        this.path.pop();
        return out;
      }
      if (this.pos >= t.length) {
        this.fail('unexpected end of input (truncated file?): expected "," or "}"');
      }
      this.fail(`expected "," or "}" after the value, got ${describeChar(t, this.pos)}`);
    }
  }

  array(depth: number): JsonValue {
    if (depth >= MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    const t = this.text;
    this.pos++; // [
    const out: JsonValue[] = [];
    this.ws();
    if (t[this.pos] === "]") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.path.push(out.length);
      out.push(this.value(depth + 1));
      this.path.pop();
      this.ws();
      const c = t[this.pos];
      if (c === ",") {
        this.pos++;
        continue;
      }
      if (c === "]") {
        this.pos++;
        return out;
      }
      this.path.push(out.length - 1);
      if (this.pos >= t.length) {
        this.fail('unexpected end of input (truncated file?): expected "," or "]"');
      }
      this.fail(`expected "," or "]" after the item, got ${describeChar(t, this.pos)}`);
    }
  }

  string(): string {
    const t = this.text;
    const open = this.pos;
    let p = this.pos + 1;
    let out = "";
    let chunk = p;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 0x22) {
        out += t.slice(chunk, p);
        this.pos = p + 1;
        return out;
      }
      if (c === 0x5c) {
        out += t.slice(chunk, p);
        const e = t[p + 1];
        switch (e) {
          case '"':
          case "\\":
          case "/":
            out += e;
            break;
          case "b":
            out += "\b";
            break;
          case "f":
            out += "\f";
            break;
          case "n":
            out += "\n";
            break;
          case "r":
            out += "\r";
            break;
          case "t":
            out += "\t";
            break;
          case "u": {
            const hex = t.slice(p + 2, p + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
              this.fail(`invalid \\u escape "\\u${hex}" in a string`, p);
            }
            out += String.fromCharCode(parseInt(hex, 16));
            p += 4;
            break;
          }
          default:
            if (p + 1 >= t.length) this.fail("unterminated string (truncated file?)", open);
            this.fail(`invalid escape "\\${e}" in a string`, p);
        }
        p += 2;
        chunk = p;
        continue;
      }
      if (c < 0x20 || Number.isNaN(c)) {
        if (Number.isNaN(c)) this.fail("unterminated string (truncated file?)", open);
        this.fail(`raw control character ${describeChar(t, p)} in a string (must be escaped)`, p);
      }
      p++;
    }
  }

  number(): number {
    const t = this.text;
    const m = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    m.lastIndex = this.pos;
    const r = m.exec(t);
    if (!r || r[0] === "-") this.fail(`invalid number starting with ${describeChar(t, this.pos)}`);
    this.pos += r[0].length;
    const next = t.charCodeAt(this.pos);
    if ((next >= 0x30 && next <= 0x39) || next === 0x2e || next === 0x65 || next === 0x45) {
      this.fail(`invalid number "${t.slice(this.pos - r[0].length, this.pos + 1)}"`);
    }
    return Number(r[0]);
  }
}

function formatPath(path: PathItem[]): string {
  let s = "";
  for (let i = 0; i < path.length; i++) {
    const p = path[i];
    if (typeof p === "number") s += `[${p}]`;
    else s += i === 0 ? p : `.${p}`;
  }
  return s;
}

/**
 * Parse a data file's text into rows. If the text (after whitespace and an optional
 * byte-order mark) starts with `[`, it must be exactly one array and its elements are the
 * rows; otherwise it may hold any number of top-level values back to back (with or without
 * whitespace between them, as in JSON Lines or DMPO's `_old` file), each one a row.
 *
 * @example Usage
 * ```ts
 * import { parseJsonRows } from "./json_stream.ts";
 * import assert from "node:assert/strict";
 * const r = parseJsonRows('{"a": 1}{"a": 2}', "x.json");
 * assert.equal(r.container, "stream");
 * assert.deepEqual(r.rows.map((x) => x.value), [{ a: 1 }, { a: 2 }]);
 * ```
 *
 * @param text The decoded file.
 * @param file The file name for error messages.
 * @returns The rows with their positions.
 * @throws {DataFormatError} naming file, row, field, line and column on malformed JSON.
 */
export function parseJsonRows(text: string, file: string): JsonRows {
  const p = new Parser(text, file);
  if (text.charCodeAt(0) === 0xfeff) p.pos = 1;
  p.ws();
  if (p.pos >= text.length) {
    throw new DataFormatError({ file }, "empty file: expected a JSON array or JSON objects");
  }
  if (text.startsWith("version https://git-lfs", p.pos)) {
    throw new DataFormatError(
      { file },
      "is a Git LFS pointer, not the data (fetch the LFS object)",
    );
  }
  const rows: JsonRow[] = [];
  const container = text[p.pos] === "[" ? "array" : "stream";
  const starts: number[] = [];
  const addRow = () => {
    p.row = rows.length + 1;
    p.inRow = true;
    p.path = [];
    const start = p.pos;
    const fields: JsonField[] | undefined = text[start] === "{" ? [] : undefined;
    const value = p.value(1, fields);
    p.inRow = false;
    starts.push(start);
    rows.push({ row: rows.length + 1, value, start, end: p.pos, line: 0, column: 0, fields });
  };
  if (container === "array") {
    p.pos++;
    p.ws();
    if (text[p.pos] === "]") p.pos++;
    else {
      for (;;) {
        p.ws();
        addRow();
        p.ws();
        const c = text[p.pos];
        if (c === ",") {
          p.pos++;
          continue;
        }
        if (c === "]") {
          p.pos++;
          break;
        }
        if (p.pos >= text.length) {
          p.fail('unexpected end of input (truncated file?): expected "," or "]"');
        }
        p.fail(`expected "," or "]" after the row, got ${describeChar(text, p.pos)}`);
      }
    }
    p.ws();
    if (p.pos < text.length) {
      p.fail(`extra data after the top-level array: ${describeChar(text, p.pos)}`);
    }
  } else {
    while (p.pos < text.length) {
      addRow();
      p.ws();
    }
  }
  // 1-based line/column of every row start, in one pass: `next` is the first newline not yet
  // counted (-1 once there is none), so a file without newlines is not rescanned per row.
  let line = 1, lineStart = 0;
  let next = text.indexOf("\n");
  for (const r of rows) {
    while (next !== -1 && next < r.start) {
      line++;
      lineStart = next + 1;
      next = text.indexOf("\n", next + 1);
    }
    r.line = line;
    r.column = r.start - lineStart + 1;
  }
  return { file, text, container, rows };
}

/**
 * Parse concatenated JSON values (several top-level documents back to back).
 *
 * @example Usage
 * ```ts
 * import { parseJsonStream } from "./json_stream.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseJsonStream('{"a": 1}{"a": 2} 3', "x.json"), [{ a: 1 }, { a: 2 }, 3]);
 * ```
 *
 * @param text The text.
 * @param file The file name for error messages.
 * @returns The values in order.
 * @throws {DataFormatError} with file, value number (as row), field, line and column.
 */
export function parseJsonStream(text: string, file: string): JsonValue[] {
  const p = new Parser(text, file);
  if (text.charCodeAt(0) === 0xfeff) p.pos = 1;
  const out: JsonValue[] = [];
  p.ws();
  while (p.pos < text.length) {
    p.row = out.length + 1;
    p.inRow = true;
    p.path = [];
    out.push(p.value(1));
    p.inRow = false;
    p.ws();
  }
  return out;
}

/**
 * Read a data file (strict UTF-8) and parse it with {@link parseJsonRows}. Invalid UTF-8 is
 * reported with the byte offset and line and, where the rest of the file parses, the row
 * and field holding the bad bytes.
 *
 * @param path The file.
 * @returns The rows with their positions.
 * @throws {DataFormatError} on invalid UTF-8 or malformed JSON.
 */
export async function readJsonRows(path: string): Promise<JsonRows> {
  const bytes = await Deno.readFile(path);
  let text: string;
  try {
    text = decodeUtf8Strict(bytes, path);
  } catch (err) {
    throw locateUtf8Error(bytes, path, err as DataFormatError);
  }
  return parseJsonRows(text, path);
}

function locateUtf8Error(bytes: Uint8Array, file: string, err: DataFormatError): DataFormatError {
  const offset = invalidUtf8Offset(bytes);
  if (offset < 0) return err;
  const lenient = new TextDecoder("utf-8", { ignoreBOM: true });
  const charOffset = lenient.decode(bytes.subarray(0, offset)).length;
  let rows: JsonRows;
  try {
    rows = parseJsonRows(lenient.decode(bytes), file);
  } catch {
    return err;
  }
  const row = rows.rows.find((r) => r.start <= charOffset && charOffset < r.end);
  if (!row) return err;
  const field = row.fields?.find((f) => f.keyStart <= charOffset && charOffset < f.valueEnd);
  const problem = err.message.slice(err.message.indexOf(": ") + 2);
  return new DataFormatError({ file, row: row.row, field: field?.key }, problem, { cause: err });
}

// ---------------------------------------------------------------------------------------
// Layout and Python-compatible writing

/**
 * Read the `json.dump` settings and the row framing off a parsed file. The style is taken
 * from the first row object with two or more keys (key separator, item separator, indent
 * unit); `ensureAscii` is false exactly when the text holds a raw character ≥ U+007F.
 *
 * @param parsed A parsed file.
 * @returns Its layout; rows written with it (and {@link formatJsonFile}) give back the file
 * when it was written by Python's `json` module.
 */
export function detectJsonLayout(parsed: JsonRows): JsonLayout {
  const { text, rows, container } = parsed;
  const rowLevel = container === "array" ? 1 : 0;
  // deno-lint-ignore no-control-regex
  const ensureAscii = !/[^\x00-\x7e]/.test(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  let indent: string | null = null, itemSeparator = ", ", keySeparator = ": ";
  const sample = rows.find((r) => r.fields && r.fields.length >= 2) ??
    rows.find((r) => r.fields && r.fields.length >= 1);
  if (sample?.fields) {
    const f0 = sample.fields[0];
    keySeparator = text.slice(f0.keyEnd, f0.valueStart);
    const opening = text.slice(sample.start + 1, f0.keyStart);
    if (opening.startsWith("\n")) indent = unitOf(opening.slice(1), rowLevel + 1);
    if (sample.fields.length >= 2) {
      const gap = text.slice(f0.valueEnd, sample.fields[1].keyStart);
      const nl = gap.indexOf("\n");
      itemSeparator = nl === -1 ? gap : gap.slice(0, nl);
    } else itemSeparator = indent === null ? ", " : ",";
  }
  let head: string, tail: string, rowSeparator: string, uniformSeparators = true;
  if (rows.length === 0) {
    const close = container === "array" ? text.lastIndexOf("]") : text.length;
    head = text.slice(0, close);
    tail = text.slice(close);
    rowSeparator = container === "array"
      ? itemSeparator + (indent === null ? "" : "\n" + indent)
      : "";
  } else {
    head = text.slice(0, rows[0].start);
    tail = text.slice(rows[rows.length - 1].end);
    rowSeparator = rows.length >= 2
      ? text.slice(rows[0].end, rows[1].start)
      : container === "array"
      ? itemSeparator + (indent === null ? "" : "\n" + indent)
      : "";
    for (let i = 1; i < rows.length; i++) {
      if (text.slice(rows[i - 1].end, rows[i].start) !== rowSeparator) {
        uniformSeparators = false;
        break;
      }
    }
  }
  return {
    indent,
    itemSeparator,
    keySeparator,
    ensureAscii,
    container,
    rowLevel,
    head,
    rowSeparator,
    tail,
    uniformSeparators,
  };
}

function unitOf(ws: string, level: number): string | null {
  const m = /^[ \t]*/.exec(ws)![0];
  if (m.length === 0 || m.length % level !== 0) return m.length === 0 ? "" : m;
  return m.slice(0, m.length / level);
}

/**
 * A JSON string literal exactly as Python's `json.dumps` writes it: `"`, `\` and the
 * control characters `\b \f \n \r \t` get short escapes, other characters below U+0020 get
 * `\u00XX`; with `ensureAscii` every character above U+007E (DEL included) becomes a
 * lowercase `\uXXXX` escape (astral characters as two surrogate escapes).
 *
 * @example Usage
 * ```ts
 * import { pyJsonString } from "./json_stream.ts";
 * import assert from "node:assert/strict";
 * assert.equal(pyJsonString('Júpiter "x"', true), '"J\\u00fapiter \\"x\\""');
 * assert.equal(pyJsonString("Júpiter", false), '"Júpiter"');
 * ```
 *
 * @param s The string.
 * @param ensureAscii Python's `ensure_ascii`.
 * @returns The quoted, escaped literal.
 */
export function pyJsonString(s: string, ensureAscii = true): string {
  let out = '"';
  let chunk = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c !== 0x22 && c !== 0x5c && (c < 0x7f || !ensureAscii)) continue;
    out += s.slice(chunk, i);
    chunk = i + 1;
    switch (c) {
      case 0x22:
        out += '\\"';
        break;
      case 0x5c:
        out += "\\\\";
        break;
      case 0x0a:
        out += "\\n";
        break;
      case 0x0d:
        out += "\\r";
        break;
      case 0x09:
        out += "\\t";
        break;
      case 0x08:
        out += "\\b";
        break;
      case 0x0c:
        out += "\\f";
        break;
      default:
        out += "\\u" + c.toString(16).padStart(4, "0");
    }
  }
  return out + s.slice(chunk) + '"';
}

/**
 * A number as Python writes it: integers as digits, other finite numbers as `float.__repr__`
 * (shortest round-trip digits, exponent form below 1e-4 or from 1e16 on, e.g. `1e-05`,
 * `1.5e+16`), `NaN`, `Infinity`, `-Infinity`. An integer-valued float below 1e16 (Python
 * `1.0`) cannot be told apart from an integer after parsing and is written as `1`; from 1e16
 * on, numbers are written as floats (an exact big integer does not survive JS parsing).
 */
export function pyJsonNumber(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return String(x);
  const [mant, expStr] = x.toExponential().split("e");
  const exp = Number(expStr);
  const neg = mant.startsWith("-");
  const digits = mant.replace("-", "").replace(".", "");
  let body: string;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) body = "0." + "0".repeat(-exp - 1) + digits;
    else if (digits.length > exp + 1) body = digits.slice(0, exp + 1) + "." + digits.slice(exp + 1);
    else body = digits + "0".repeat(exp + 1 - digits.length) + ".0";
  } else {
    const m = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
    body = m + "e" + (exp < 0 ? "-" : "+") + String(Math.abs(exp)).padStart(2, "0");
  }
  return (neg ? "-" : "") + body;
}

/**
 * Serialize a value exactly as Python's `json.dumps(value, indent=…, separators=…,
 * ensure_ascii=…)` does at nesting level `level` (the level sets the indentation of nested
 * lines; 0 for a top-level value, 1 for an element of the top-level array). Object keys are
 * written in JS property order.
 *
 * @example Usage
 * ```ts
 * import { pyJsonDumps, PY_COMPACT_LAYOUT } from "./json_stream.ts";
 * import assert from "node:assert/strict";
 * assert.equal(pyJsonDumps({ a: ["x", 1.5e-7] }, PY_COMPACT_LAYOUT), '{"a": ["x", 1.5e-07]}');
 * ```
 *
 * @param value The value.
 * @param style Indent, separators and `ensure_ascii`.
 * @param level Nesting level of the value.
 * @returns The JSON text.
 */
export function pyJsonDumps(value: JsonValue, style: JsonStyle, level = 0): string {
  if (value === null) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (typeof value === "number") return pyJsonNumber(value);
  if (typeof value === "string") return pyJsonString(value, style.ensureAscii);
  if (Array.isArray(value)) {
    return pyJsonArray(value.map((v) => pyJsonDumps(v, style, level + 1)), style, level);
  }
  return pyJsonObject(
    Object.keys(value).map((k) => [k, pyJsonDumps(value[k], style, level + 1)]),
    style,
    level,
  );
}

/**
 * An array from already-serialized items (each written at `level + 1`), framed as Python
 * frames it at `level`.
 */
export function pyJsonArray(items: readonly string[], style: JsonStyle, level: number): string {
  if (items.length === 0) return "[]";
  if (style.indent === null) return "[" + items.join(style.itemSeparator) + "]";
  const inner = "\n" + style.indent.repeat(level + 1);
  return "[" + inner + items.join(style.itemSeparator + inner) + "\n" + style.indent.repeat(level) +
    "]";
}

/**
 * An object from `[key, serialized value]` pairs in the given order (values written at
 * `level + 1`), framed as Python frames it at `level`.
 */
export function pyJsonObject(
  entries: ReadonlyArray<readonly [string, string]>,
  style: JsonStyle,
  level: number,
): string {
  if (entries.length === 0) return "{}";
  const items = entries.map(([k, v]) =>
    pyJsonString(k, style.ensureAscii) + style.keySeparator + v
  );
  if (style.indent === null) return "{" + items.join(style.itemSeparator) + "}";
  const inner = "\n" + style.indent.repeat(level + 1);
  return "{" + inner + items.join(style.itemSeparator + inner) + "\n" + style.indent.repeat(level) +
    "}";
}

/**
 * A whole file from row texts: `head + rows.join(rowSeparator) + tail` (an empty array
 * container gives `"[]"` plus whatever followed the `]`).
 *
 * @param rowTexts Rows as written by a row formatter.
 * @param layout The file's layout.
 * @returns The file text.
 */
export function formatJsonFile(rowTexts: readonly string[], layout: JsonLayout): string {
  if (rowTexts.length === 0) {
    if (layout.container === "stream") return layout.head + layout.tail;
    const after = layout.tail.slice(layout.tail.lastIndexOf("]") + 1);
    return "[]" + after;
  }
  return layout.head + rowTexts.join(layout.rowSeparator) + layout.tail;
}

// ---------------------------------------------------------------------------------------
// Row checks shared by the loaders

/** What a loader did with a file's rows. Nothing is dropped without being counted here. */
export interface LoadSummary {
  /** The file. */
  file: string;
  /** Rows in the file. */
  rowsRead: number;
  /** Rows returned. */
  kept: number;
  /** Rows left out, by reason (only where the original code leaves them out too). */
  dropped: Record<string, number>;
  /** Rows kept but worth knowing about (known defects), by kind. */
  warnings: Record<string, number>;
}

/** A new, empty {@link LoadSummary}. */
export function emptySummary(file: string): LoadSummary {
  return { file, rowsRead: 0, kept: 0, dropped: {}, warnings: {} };
}

/** Add `n` to `counts[key]`. */
export function bump(counts: Record<string, number>, key: string, n = 1): void {
  counts[key] = (counts[key] ?? 0) + n;
}

/** One line describing a summary, e.g. for a warning on stderr. */
export function formatSummary(s: LoadSummary): string {
  const list = (r: Record<string, number>) =>
    Object.entries(r).map(([k, v]) => `${v} × ${k}`).join("; ") || "none";
  return `${s.file}: ${s.rowsRead} rows read, ${s.kept} kept, dropped: ${list(s.dropped)}`;
}

/** The JSON type of a value, for messages (`"string"`, `"array"`, `"object"`, `"null"`…). */
export function jsonTypeName(v: JsonValue | undefined): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** Short quoted preview of a value for error messages. */
export function preview(v: JsonValue | undefined, max = 60): string {
  const s = v === undefined ? "undefined" : JSON.stringify(v);
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

/**
 * The fields of a row that must be an object, checked: no duplicate keys.
 *
 * @param row A parsed row.
 * @param file The file, for errors.
 * @returns A map from key to field, in file order.
 * @throws {DataFormatError} when the row is not an object or repeats a key.
 */
export function rowFieldMap(row: JsonRow, file: string): Map<string, JsonField> {
  if (!row.fields) {
    throw new DataFormatError(
      { file, row: row.row },
      `expected an object, got ${jsonTypeName(row.value)} ${preview(row.value)}`,
    );
  }
  const map = new Map<string, JsonField>();
  for (const f of row.fields) {
    if (map.has(f.key)) {
      throw new DataFormatError(
        { file, row: row.row, field: f.key },
        "key occurs twice in the row",
      );
    }
    map.set(f.key, f);
  }
  return map;
}
