/**
 * Read and write the Hugging Face safetensors format, plus sharded checkpoints
 * (`model.safetensors.index.json`).
 *
 * Layout (https://github.com/huggingface/safetensors, "Format"):
 *
 * ```
 * [8 bytes]  N, the header length, unsigned 64-bit little-endian
 * [N bytes]  UTF-8 JSON: {"__metadata__": {string: string},
 *                         name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, …}
 *            padded with spaces (0x20) so that 8 + N is a multiple of 8
 * [rest]     the data buffer; offsets are relative to its start, values little-endian
 * ```
 *
 * Reading keeps F32, I32 and I64 as they are (`Float32Array`, `Int32Array`, `BigInt64Array`) and
 * decodes F16 and BF16 to `Float32Array`. Writing encodes float values to F16 / BF16 with
 * round-to-nearest-even (or takes raw 16-bit patterns from a `Uint16Array`). Typed-array views
 * assume a little-endian host, like every platform Deno runs on.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { CheckpointError, InputError } from "./errors.ts";
import { writeFileAtomic } from "./io.ts";

/** Dtypes recalign reads and writes. */
export const SAFETENSORS_DTYPES = ["F32", "F16", "BF16", "I32", "I64"] as const;
/** A dtype recalign reads and writes. */
export type SafetensorsDtype = typeof SAFETENSORS_DTYPES[number];

/** Bytes per element of every dtype the spec defines (used to validate headers). */
const SPEC_DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** Largest header accepted (the reference implementation's limit), in bytes. */
export const MAX_HEADER_BYTES = 100_000_000;

/**
 * Tensor values given to the writer. F16/BF16: a `Uint16Array` is taken as raw bit patterns,
 * anything else as values to encode. I64: a `BigInt64Array`, or integers.
 */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Uint16Array
  | readonly number[];

/** One tensor to write: dtype in the file, shape, and row-major values. */
export interface TensorRecord {
  /** Dtype stored in the file. */
  dtype: SafetensorsDtype;
  /** Shape; `[]` for a scalar. */
  shape: number[];
  /** Row-major values, `shape` product long. */
  data: TensorData;
}

/**
 * One tensor as read: F32/F16/BF16 → `Float32Array`, I32 → `Int32Array`, I64 → `BigInt64Array`
 * (narrow on `dtype` to get the array type). `data` is a fresh array owned by the caller.
 */
export type LoadedTensor =
  | { dtype: "F32" | "F16" | "BF16"; shape: number[]; data: Float32Array }
  | { dtype: "I32"; shape: number[]; data: Int32Array }
  | { dtype: "I64"; shape: number[]; data: BigInt64Array };

/** One entry of a safetensors header. */
export interface HeaderEntry {
  /** Dtype string as written (may be one recalign cannot decode, e.g. `U8`). */
  dtype: string;
  /** Shape. */
  shape: number[];
  /** `[begin, end)` byte range inside the data buffer. */
  dataOffsets: [number, number];
}

/** A parsed and validated safetensors header. */
export interface SafetensorsHeader {
  /** N, the JSON header length in bytes (including padding). */
  headerLength: number;
  /** Absolute file offset where the data buffer starts (8 + N). */
  dataStart: number;
  /** Length of the data buffer in bytes. */
  dataLength: number;
  /** Tensor entries, in header order. */
  tensors: Record<string, HeaderEntry>;
  /** The `__metadata__` string map (empty if absent). */
  metadata: Record<string, string>;
}

/** What the readers return: tensors by name, and the string metadata. */
export interface SafetensorsContents {
  /** Tensors by name. */
  tensors: Record<string, LoadedTensor>;
  /** `__metadata__` (for a sharded checkpoint, merged over the shards read). */
  metadata: Record<string, string>;
}

/** Options of the readers. */
export interface ReadSafetensorsOptions {
  /** Load only these tensors (default: all). A name not in the file is an error. */
  names?: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// Half-precision codecs (bit-level, so NaN payloads and -0 survive a round trip).

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** IEEE binary16 bits → binary32 bits. */
function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN (payload kept)
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // normal: rebias 15 → 127
  if (mant === 0) return sign >>> 0; // ±0
  // Subnormal: value = mant · 2^-24; normalise so the leading 1 sits at bit 10.
  let e = 1;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | ((e + 112) << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/** binary32 bits → binary16 bits, round to nearest, ties to even. */
function f32ToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00; // ±inf
    const m = mant >>> 13;
    return sign | 0x7c00 | (m === 0 ? 0x200 : m); // NaN: keep top payload bits, stay NaN
  }
  const e = exp - 112; // binary16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // overflow → ±inf
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal → ±0
    mant |= 0x800000; // implicit leading 1
    const shift = 14 - e; // 13 mantissa bits dropped, plus the denormalising shift
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rem > half || (rem === half && (m & 1) === 1)) m++; // may carry into the smallest normal
    return sign | m;
  }
  const rem = mant & 0x1fff;
  let out = sign | (e << 10) | (mant >>> 13);
  if (rem > 0x1000 || (rem === 0x1000 && (out & 1) === 1)) out++; // carry may give ±inf: correct
  return out;
}

/** binary32 bits → bfloat16 bits, round to nearest, ties to even. */
function f32ToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
    const b = x >>> 16;
    return (b & 0x7f) === 0 ? b | 0x40 : b; // NaN: keep it a NaN after truncation
  }
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

let f16Table: Uint32Array | undefined;
function f16DecodeTable(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32Bits(h);
  }
  return f16Table;
}

/**
 * Decode one IEEE half-precision (F16) bit pattern to a number.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { f16BitsToFloat } from "./safetensors.ts";
 * assert.equal(f16BitsToFloat(0x3c00), 1);
 * assert.equal(f16BitsToFloat(0x7bff), 65504);
 * ```
 *
 * @param bits A 16-bit pattern.
 * @returns The value it encodes.
 */
export function f16BitsToFloat(bits: number): number {
  scratchU32[0] = f16ToF32Bits(bits & 0xffff);
  return scratchF32[0];
}

/**
 * Encode a number as IEEE half precision (F16), round to nearest, ties to even. The number is
 * first rounded to float32 (as storing it in a `Float32Array` would); overflow gives ±inf.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { floatToF16Bits } from "./safetensors.ts";
 * assert.equal(floatToF16Bits(-2), 0xc000);
 * ```
 *
 * @param x The value.
 * @returns Its 16-bit pattern.
 */
export function floatToF16Bits(x: number): number {
  scratchF32[0] = x;
  return f32ToF16Bits(scratchU32[0]);
}

/**
 * Decode one bfloat16 (BF16) bit pattern to a number.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { bf16BitsToFloat } from "./safetensors.ts";
 * assert.equal(bf16BitsToFloat(0x3f80), 1);
 * ```
 *
 * @param bits A 16-bit pattern.
 * @returns The value it encodes.
 */
export function bf16BitsToFloat(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}

/**
 * Encode a number as bfloat16 (BF16), round to nearest, ties to even (after rounding to float32).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { floatToBf16Bits } from "./safetensors.ts";
 * assert.equal(floatToBf16Bits(1), 0x3f80);
 * ```
 *
 * @param x The value.
 * @returns Its 16-bit pattern.
 */
export function floatToBf16Bits(x: number): number {
  scratchF32[0] = x;
  return f32ToBf16Bits(scratchU32[0]);
}

/**
 * Decode an array of F16 bit patterns to float32 (exact: every F16 value is a float32 value).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeF16 } from "./safetensors.ts";
 * assert.deepEqual(Array.from(decodeF16(new Uint16Array([0x3c00, 0xc000]))), [1, -2]);
 * ```
 *
 * @param bits F16 bit patterns.
 * @returns The values, as a new `Float32Array`.
 */
export function decodeF16(bits: Uint16Array): Float32Array {
  const table = f16DecodeTable();
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return new Float32Array(out.buffer);
}

/**
 * Encode float32 values as F16 bit patterns (round to nearest, ties to even).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeF16 } from "./safetensors.ts";
 * assert.deepEqual(Array.from(encodeF16(new Float32Array([1, 65504]))), [0x3c00, 0x7bff]);
 * ```
 *
 * @param values The values.
 * @returns A new `Uint16Array` of bit patterns.
 */
export function encodeF16(values: Float32Array): Uint16Array {
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]);
  return out;
}

/**
 * Decode an array of BF16 bit patterns to float32 (exact).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeBF16 } from "./safetensors.ts";
 * assert.deepEqual(Array.from(decodeBF16(new Uint16Array([0x3f80, 0xc000]))), [1, -2]);
 * ```
 *
 * @param bits BF16 bit patterns.
 * @returns The values, as a new `Float32Array`.
 */
export function decodeBF16(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/**
 * Encode float32 values as BF16 bit patterns (round to nearest, ties to even).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeBF16 } from "./safetensors.ts";
 * assert.deepEqual(Array.from(encodeBF16(new Float32Array([1, -2]))), [0x3f80, 0xc000]);
 * ```
 *
 * @param values The values.
 * @returns A new `Uint16Array` of bit patterns.
 */
export function encodeBF16(values: Float32Array): Uint16Array {
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToBf16Bits(src[i]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing.

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function isDtype(d: unknown): d is SafetensorsDtype {
  return typeof d === "string" && (SAFETENSORS_DTYPES as readonly string[]).includes(d);
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function toFloat32(data: TensorData, where: string): Float32Array {
  if (data instanceof Float32Array) return data;
  if (data instanceof BigInt64Array) {
    throw new CheckpointError(`${where}: BigInt64Array data for a float dtype`);
  }
  return Float32Array.from(data);
}

function toIntegers(
  data: TensorData,
  where: string,
  lo: number,
  hi: number,
): number[] | Int32Array {
  if (data instanceof Int32Array) return data;
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const x = typeof data[i] === "bigint" ? Number(data[i]) : data[i] as number;
    if (!Number.isInteger(x) || x < lo || x > hi) {
      throw new CheckpointError(
        `${where}: element ${i} is ${String(data[i])}, not an integer in [${lo}, ${hi}]`,
      );
    }
    out.push(x);
  }
  return out;
}

function tensorBytes(name: string, t: TensorRecord, source: string): Uint8Array {
  const where = `${source}: tensor "${name}"`;
  switch (t.dtype) {
    case "F32":
      return bytesOf(toFloat32(t.data, where));
    case "F16":
      return bytesOf(t.data instanceof Uint16Array ? t.data : encodeF16(toFloat32(t.data, where)));
    case "BF16":
      return bytesOf(t.data instanceof Uint16Array ? t.data : encodeBF16(toFloat32(t.data, where)));
    case "I32": {
      const ints = toIntegers(t.data, where, -0x80000000, 0x7fffffff);
      return bytesOf(ints instanceof Int32Array ? ints : Int32Array.from(ints));
    }
    case "I64": {
      if (t.data instanceof BigInt64Array) return bytesOf(t.data);
      const ints = toIntegers(t.data, where, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
      return bytesOf(BigInt64Array.from(ints, (x) => BigInt(x)));
    }
  }
}

/**
 * Serialise tensors to safetensors bytes, as chunks (8-byte length, padded JSON header, then
 * one chunk per tensor; F32/I32/I64 typed arrays are not copied). Tensors are laid out by
 * element size (largest first), then name, so each is aligned to its element size.
 *
 * @example Usage
 * ```ts
 * import { encodeSafetensors } from "./safetensors.ts";
 * const chunks = encodeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
 * ```
 *
 * @param tensors Tensors by name (`__metadata__` is reserved).
 * @param metadata Optional string → string map stored as `__metadata__`.
 * @param source Name used in error messages (the target file).
 * @returns The file contents, in chunks.
 * @throws {CheckpointError} On an unsupported dtype, a bad shape, or a data length that does not
 *   match the shape; the message names the tensor.
 */
export function encodeSafetensors(
  tensors: Record<string, TensorRecord>,
  metadata?: Record<string, string>,
  source = "<memory>",
): Uint8Array[] {
  const names = Object.keys(tensors);
  for (const name of names) {
    const t = tensors[name];
    const where = `${source}: tensor "${name}"`;
    if (name === "__metadata__") {
      throw new CheckpointError(`${source}: "__metadata__" is reserved, not a tensor name`);
    }
    if (!isDtype(t.dtype)) {
      throw new CheckpointError(
        `${where}: unsupported dtype "${t.dtype}"; supported: ${SAFETENSORS_DTYPES.join(", ")}`,
      );
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new CheckpointError(
        `${where}: shape must be non-negative integers, got ${JSON.stringify(t.shape)}`,
      );
    }
    const expected = numel(t.shape);
    if (t.data.length !== expected) {
      throw new CheckpointError(
        `${where}: shape [${t.shape}] needs ${expected} elements, got ${t.data.length}`,
      );
    }
  }
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new CheckpointError(
          `${source}: __metadata__ "${k}" must be a string, got ${typeof v}`,
        );
      }
    }
  }
  const order = names.slice().sort((a, b) => {
    const sa = SPEC_DTYPE_BYTES[tensors[a].dtype], sb = SPEC_DTYPE_BYTES[tensors[b].dtype];
    return sa !== sb ? sb - sa : a < b ? -1 : a > b ? 1 : 0;
  });
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = { ...metadata };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of order) {
    const t = tensors[name];
    const bytes = tensorBytes(name, t, source);
    header[name] = {
      dtype: t.dtype,
      shape: [...t.shape],
      data_offsets: [offset, offset + bytes.length],
    };
    offset += bytes.length;
    chunks.push(bytes);
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
  padded.set(json);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded.length), true);
  return [prefix, padded, ...chunks];
}

/**
 * Write tensors to a `.safetensors` file, atomically (see {@link writeFileAtomic}).
 *
 * @example Usage
 * ```ts
 * import { writeSafetensors } from "./safetensors.ts";
 * await writeSafetensors("runs/recalign_example.safetensors", {
 *   w: { dtype: "BF16", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
 * }, { format: "pt" });
 * ```
 *
 * @param path Target file.
 * @param tensors Tensors by name.
 * @param metadata Optional string → string map stored as `__metadata__`.
 * @throws {CheckpointError} As {@link encodeSafetensors}.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorRecord>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata, path));
}

// ---------------------------------------------------------------------------------------------
// Reading.

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

function parseHeaderJson(
  headerBytes: Uint8Array,
  source: string,
  headerLength: number,
  dataLength: number,
): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (err) {
    throw new CheckpointError(
      `${source}: header (${headerLength} bytes) is not valid UTF-8 JSON: ${
        (err as Error).message
      }`,
      { cause: err },
    );
  }
  if (!isPlainObject(json)) throw new CheckpointError(`${source}: header is not a JSON object`);
  const tensors: Record<string, HeaderEntry> = {};
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!isPlainObject(raw) || !Object.values(raw).every((v) => typeof v === "string")) {
        throw new CheckpointError(
          `${source}: __metadata__ must be an object of strings, got ${JSON.stringify(raw)}`,
        );
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const where = `${source}: tensor "${name}"`;
    if (!isPlainObject(raw)) throw new CheckpointError(`${where}: header entry is not an object`);
    const { dtype, shape, data_offsets: offs } = raw;
    if (typeof dtype !== "string") {
      throw new CheckpointError(`${where}: dtype missing or not a string`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new CheckpointError(
        `${where}: shape must be non-negative integers, got ${JSON.stringify(shape)}`,
      );
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount) || offs[0] > offs[1]) {
      throw new CheckpointError(
        `${where}: data_offsets must be [begin, end] with begin <= end, got ${
          JSON.stringify(offs)
        }`,
      );
    }
    const [begin, end] = offs as [number, number];
    if (end > dataLength) {
      throw new CheckpointError(
        `${where}: data_offsets [${begin}, ${end}] out of range: the data buffer is ${dataLength} bytes`,
      );
    }
    const size = SPEC_DTYPE_BYTES[dtype];
    if (size !== undefined && numel(shape) * size !== end - begin) {
      throw new CheckpointError(
        `${where}: shape [${shape}] × ${dtype} (${size} bytes) = ${numel(shape) * size} bytes, ` +
          `but data_offsets [${begin}, ${end}] span ${end - begin} bytes`,
      );
    }
    tensors[name] = { dtype, shape: shape as number[], dataOffsets: [begin, end] };
  }
  const spans = Object.entries(tensors)
    .filter(([, e]) => e.dataOffsets[1] > e.dataOffsets[0])
    .sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0]);
  for (let i = 1; i < spans.length; i++) {
    const [prevName, prev] = spans[i - 1], [name, cur] = spans[i];
    if (cur.dataOffsets[0] < prev.dataOffsets[1]) {
      throw new CheckpointError(
        `${source}: tensor "${name}" data_offsets [${cur.dataOffsets}] overlap tensor "${prevName}" [${prev.dataOffsets}]`,
      );
    }
  }
  return { headerLength, dataStart: 8 + headerLength, dataLength, tensors, metadata };
}

function headerLengthOf(prefix: Uint8Array, totalLength: number, source: string): number {
  if (totalLength < 8) {
    throw new CheckpointError(
      `${source}: ${totalLength} bytes, shorter than the 8-byte header length prefix`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(totalLength - 8)) {
    throw new CheckpointError(
      `${source}: header length ${n} is larger than the file (${totalLength} bytes, ${
        totalLength - 8
      } after the prefix)`,
    );
  }
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      `${source}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`,
    );
  }
  return Number(n);
}

function decodeTensor(
  bytes: Uint8Array,
  entry: HeaderEntry,
  source: string,
  name: string,
): LoadedTensor {
  // `bytes` must start at offset 0 of its own buffer (aligned for any element size).
  const shape = [...entry.shape];
  const n = numel(shape);
  switch (entry.dtype) {
    case "F32":
      return { dtype: "F32", shape, data: new Float32Array(bytes.buffer, 0, n) };
    case "F16":
      return { dtype: "F16", shape, data: decodeF16(new Uint16Array(bytes.buffer, 0, n)) };
    case "BF16":
      return { dtype: "BF16", shape, data: decodeBF16(new Uint16Array(bytes.buffer, 0, n)) };
    case "I32":
      return { dtype: "I32", shape, data: new Int32Array(bytes.buffer, 0, n) };
    case "I64":
      return { dtype: "I64", shape, data: new BigInt64Array(bytes.buffer, 0, n) };
    default:
      throw new CheckpointError(
        `${source}: tensor "${name}" has unsupported dtype "${entry.dtype}"; supported: ${
          SAFETENSORS_DTYPES.join(", ")
        }`,
      );
  }
}

function pickNames(
  header: SafetensorsHeader,
  names: readonly string[] | undefined,
  source: string,
): string[] {
  const all = Object.keys(header.tensors);
  if (!names) return all;
  for (const name of names) {
    if (!Object.hasOwn(header.tensors, name)) {
      const shown = all.slice(0, 8).map((s) => `"${s}"`).join(", ") + (all.length > 8 ? ", …" : "");
      throw new CheckpointError(
        `${source}: tensor "${name}" not found (the file has ${all.length} tensors: ${
          shown || "none"
        })`,
      );
    }
  }
  return [...names];
}

/**
 * Parse safetensors bytes already in memory.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSafetensors, encodeSafetensors } from "./safetensors.ts";
 * const chunks = encodeSafetensors({ w: { dtype: "I32", shape: [2], data: new Int32Array([1, 2]) } });
 * const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
 * let off = 0;
 * for (const c of chunks) { bytes.set(c, off); off += c.length; }
 * assert.deepEqual(decodeSafetensors(bytes).tensors.w.data, new Int32Array([1, 2]));
 * ```
 *
 * @param bytes The whole file.
 * @param opts `names` to load only some tensors; `source` names the bytes in errors.
 * @returns Tensors (fresh arrays) and metadata.
 * @throws {CheckpointError} On any malformed header, missing tensor or unsupported dtype.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  opts: ReadSafetensorsOptions & { source?: string } = {},
): SafetensorsContents {
  const source = opts.source ?? "<memory>";
  const headerLength = headerLengthOf(bytes.subarray(0, 8), bytes.length, source);
  const header = parseHeaderJson(
    bytes.subarray(8, 8 + headerLength),
    source,
    headerLength,
    bytes.length - 8 - headerLength,
  );
  const tensors: Record<string, LoadedTensor> = {};
  for (const name of pickNames(header, opts.names, source)) {
    const [b, e] = header.tensors[name].dataOffsets;
    const slice = bytes.slice(header.dataStart + b, header.dataStart + e);
    tensors[name] = decodeTensor(slice, header.tensors[name], source, name);
  }
  return { tensors, metadata: { ...header.metadata } };
}

async function readExactly(
  file: Deno.FsFile,
  pos: number,
  length: number,
  source: string,
): Promise<Uint8Array> {
  await file.seek(pos, Deno.SeekMode.Start);
  const buf = new Uint8Array(length);
  let off = 0;
  while (off < length) {
    const n = await file.read(buf.subarray(off));
    if (n === null) {
      throw new CheckpointError(
        `${source}: unexpected end of file reading ${length} bytes at offset ${pos}`,
      );
    }
    off += n;
  }
  return buf;
}

async function readHeaderOf(file: Deno.FsFile, source: string): Promise<SafetensorsHeader> {
  const size = (await file.stat()).size;
  const prefix = size >= 8 ? await readExactly(file, 0, 8, source) : new Uint8Array(8);
  const headerLength = headerLengthOf(prefix, size, source);
  const headerBytes = await readExactly(file, 8, headerLength, source);
  return parseHeaderJson(headerBytes, source, headerLength, size - 8 - headerLength);
}

async function openCheckpoint(path: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, { read: true });
  } catch (err) {
    throw new CheckpointError(`${path}: cannot open: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Read and validate just the header of a `.safetensors` file: 8 bytes, then N header bytes;
 * the data buffer is not read (cheap even for multi-gigabyte shards).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { readSafetensorsHeader, writeSafetensors } from "./safetensors.ts";
 * const path = `${await Deno.makeTempDir()}/a.safetensors`;
 * await writeSafetensors(path, { w: { dtype: "F32", shape: [2], data: [1, 2] } }, { format: "pt" });
 * const h = await readSafetensorsHeader(path);
 * assert.deepEqual(h.tensors.w, { dtype: "F32", shape: [2], dataOffsets: [0, 8] });
 * ```
 *
 * @param path The file.
 * @returns The parsed header.
 * @throws {CheckpointError} If the file cannot be opened, the header length exceeds the file,
 *   the JSON is malformed, or an entry is inconsistent (named in the message).
 */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const file = await openCheckpoint(path);
  try {
    return await readHeaderOf(file, path);
  } finally {
    file.close();
  }
}

/**
 * Read tensors from a `.safetensors` file. Only the header and the requested tensors' bytes are
 * read. F16/BF16 are decoded to `Float32Array`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { readSafetensors, writeSafetensors } from "./safetensors.ts";
 * const path = `${await Deno.makeTempDir()}/a.safetensors`;
 * await writeSafetensors(path, { w: { dtype: "BF16", shape: [2], data: [1, 2] } });
 * const { tensors } = await readSafetensors(path, { names: ["w"] });
 * assert.deepEqual(tensors.w.data, new Float32Array([1, 2]));
 * ```
 *
 * @param path The file.
 * @param opts `names`: load only these tensors.
 * @returns Tensors (fresh arrays) and metadata.
 * @throws {CheckpointError} Naming the file and tensor: missing tensor, offsets out of range,
 *   header longer than the file, unsupported dtype, shape × dtype size ≠ byte length.
 */
export async function readSafetensors(
  path: string,
  opts: ReadSafetensorsOptions = {},
): Promise<SafetensorsContents> {
  const file = await openCheckpoint(path);
  try {
    const header = await readHeaderOf(file, path);
    const tensors: Record<string, LoadedTensor> = {};
    for (const name of pickNames(header, opts.names, path)) {
      const entry = header.tensors[name];
      const [b, e] = entry.dataOffsets;
      // An unsupported dtype throws in decodeTensor before any data is read.
      const bytes = isDtype(entry.dtype)
        ? await readExactly(file, header.dataStart + b, e - b, path)
        : new Uint8Array(0);
      tensors[name] = decodeTensor(bytes, entry, path, name);
    }
    return { tensors, metadata: { ...header.metadata } };
  } finally {
    file.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints.

/** File name of a sharded checkpoint's index. */
export const SHARD_INDEX_FILE = "model.safetensors.index.json";

/** A parsed `model.safetensors.index.json`. */
export interface ShardIndex {
  /** Tensor name → shard file name (relative to the index's directory). */
  weightMap: Record<string, string>;
  /** The index's `metadata` object (e.g. `total_size`), or `{}`. */
  metadata: Record<string, unknown>;
}

function dirOf(path: string): string {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/**
 * Read and validate a sharded checkpoint index (`{"weight_map": {name: file}}`).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { readShardIndex } from "./safetensors.ts";
 * const index = `${await Deno.makeTempDir()}/model.safetensors.index.json`;
 * await Deno.writeTextFile(index, JSON.stringify({ weight_map: { w: "model-00001-of-00001.safetensors" } }));
 * assert.deepEqual((await readShardIndex(index)).weightMap, { w: "model-00001-of-00001.safetensors" });
 * ```
 *
 * @param indexPath Path of the index JSON.
 * @returns The weight map and metadata.
 * @throws {CheckpointError} If the file is missing, not JSON, or a shard name is not a relative
 *   file name inside the index's directory.
 */
export async function readShardIndex(indexPath: string): Promise<ShardIndex> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(indexPath));
  } catch (err) {
    throw new CheckpointError(`${indexPath}: cannot read shard index: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!isPlainObject(json) || !isPlainObject(json.weight_map)) {
    throw new CheckpointError(`${indexPath}: expected an object with a "weight_map" object`);
  }
  const weightMap: Record<string, string> = {};
  for (const [name, file] of Object.entries(json.weight_map)) {
    if (
      typeof file !== "string" || file === "" || file.startsWith("/") ||
      file.split(/[\\/]/).includes("..")
    ) {
      throw new CheckpointError(
        `${indexPath}: weight_map entry for tensor "${name}" must be a relative file name, got ${
          JSON.stringify(file)
        }`,
      );
    }
    weightMap[name] = file;
  }
  return { weightMap, metadata: isPlainObject(json.metadata) ? json.metadata : {} };
}

/**
 * Read tensors from a sharded checkpoint: the index maps each tensor to a shard file, and each
 * shard is opened once to read only its requested tensors.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { readShardedSafetensors, writeSafetensors } from "./safetensors.ts";
 * const dir = await Deno.makeTempDir();
 * await writeSafetensors(`${dir}/model-00001-of-00001.safetensors`, { w: { dtype: "F32", shape: [1], data: [3] } });
 * const index = `${dir}/model.safetensors.index.json`;
 * await Deno.writeTextFile(index, JSON.stringify({ weight_map: { w: "model-00001-of-00001.safetensors" } }));
 * const { tensors } = await readShardedSafetensors(index);
 * assert.deepEqual(tensors.w.data, new Float32Array([3]));
 * ```
 *
 * @param indexPath Path of `model.safetensors.index.json`.
 * @param opts `names`: load only these tensors (each must be in `weight_map`).
 * @returns Tensors and the shards' `__metadata__` merged.
 * @throws {CheckpointError} Naming the index, the shard file and the tensor when a tensor is
 *   not in the weight map, or not in the shard the map points to, or malformed there.
 */
export async function readShardedSafetensors(
  indexPath: string,
  opts: ReadSafetensorsOptions = {},
): Promise<SafetensorsContents> {
  const { weightMap } = await readShardIndex(indexPath);
  const names = opts.names ?? Object.keys(weightMap);
  const byShard = new Map<string, string[]>();
  for (const name of names) {
    if (!Object.hasOwn(weightMap, name)) {
      throw new CheckpointError(`${indexPath}: tensor "${name}" is not in weight_map`);
    }
    const shard = weightMap[name];
    if (!byShard.has(shard)) byShard.set(shard, []);
    byShard.get(shard)!.push(name);
  }
  const dir = dirOf(indexPath);
  const tensors: Record<string, LoadedTensor> = {};
  const metadata: Record<string, string> = {};
  for (const [shard, shardNames] of byShard) {
    let part: SafetensorsContents;
    try {
      part = await readSafetensors(`${dir}/${shard}`, { names: shardNames });
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      throw new CheckpointError(`${indexPath} (shard "${shard}"): ${err.message}`, { cause: err });
    }
    Object.assign(tensors, part.tensors);
    Object.assign(metadata, part.metadata);
  }
  return { tensors, metadata };
}

/**
 * Read a checkpoint given as a `.safetensors` file, a `*.index.json` shard index, or a
 * directory holding `model.safetensors.index.json` or else `model.safetensors`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadSafetensors, writeSafetensors } from "./safetensors.ts";
 * const dir = await Deno.makeTempDir();
 * await writeSafetensors(`${dir}/model.safetensors`, { w: { dtype: "F32", shape: [1], data: [3] } });
 * const { tensors } = await loadSafetensors(dir); // finds dir/model.safetensors
 * assert.deepEqual(tensors.w.data, new Float32Array([3]));
 * ```
 *
 * @param path File, index or directory.
 * @param opts `names`: load only these tensors.
 * @returns Tensors and metadata.
 * @throws {CheckpointError} If nothing loadable is found, or as the readers it calls.
 */
export async function loadSafetensors(
  path: string,
  opts: ReadSafetensorsOptions = {},
): Promise<SafetensorsContents> {
  let isDir = false;
  try {
    isDir = (await Deno.stat(path)).isDirectory;
  } catch (err) {
    throw new CheckpointError(`${path}: cannot open: ${(err as Error).message}`, { cause: err });
  }
  if (!isDir) {
    return path.endsWith(".json")
      ? await readShardedSafetensors(path, opts)
      : await readSafetensors(path, opts);
  }
  const base = path.replace(/[\\/]+$/, "");
  for (
    const [name, read] of [[SHARD_INDEX_FILE, readShardedSafetensors], [
      "model.safetensors",
      readSafetensors,
    ]] as const
  ) {
    const candidate = `${base}/${name}`;
    const exists = await Deno.stat(candidate).then((s) => s.isFile, () => false);
    if (exists) return await read(candidate, opts);
  }
  throw new CheckpointError(
    `${path}: directory has neither ${SHARD_INDEX_FILE} nor model.safetensors`,
  );
}

// ---------------------------------------------------------------------------------------------
// tf.Tensor bridges.

/**
 * Make tf tensors from records (read or to be written). F32/F16/BF16 → `float32`,
 * I32 → `int32`, I64 → `int32` (each value must fit). The caller owns (and must dispose) the
 * returned tensors; on the cpu backend a tensor may share its `Float32Array` with the record.
 *
 * @example Usage
 * ```ts
 * import { toTfTensors } from "./safetensors.ts";
 * const ts = toTfTensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
 * ts.w.dispose();
 * ```
 *
 * @param records Tensors by name.
 * @returns tf tensors by name.
 * @throws {CheckpointError} On a length/shape mismatch or an I64 value outside int32, naming the
 *   tensor.
 */
export function toTfTensors(
  records: Record<string, TensorRecord | LoadedTensor>,
): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  try {
    for (const [name, r] of Object.entries(records)) {
      const where = `tensor "${name}"`;
      if (r.data.length !== numel(r.shape)) {
        throw new CheckpointError(
          `${where}: shape [${r.shape}] needs ${numel(r.shape)} elements, got ${r.data.length}`,
        );
      }
      switch (r.dtype) {
        case "F32":
        case "F16":
        case "BF16": {
          const values = r.dtype !== "F32" && r.data instanceof Uint16Array
            ? (r.dtype === "F16" ? decodeF16(r.data) : decodeBF16(r.data))
            : toFloat32(r.data, where);
          out[name] = tf.tensor(values, r.shape, "float32");
          break;
        }
        case "I32":
        case "I64": {
          const ints = toIntegers(r.data, where, -0x80000000, 0x7fffffff);
          out[name] = tf.tensor(
            ints instanceof Int32Array ? ints : Int32Array.from(ints),
            r.shape,
            "int32",
          );
          break;
        }
        default:
          throw new CheckpointError(
            `${where}: unsupported dtype "${(r as { dtype: string }).dtype}"`,
          );
      }
    }
  } catch (err) {
    tf.dispose(out);
    throw err;
  }
  return out;
}

/** Options of {@link fromTfTensors}. */
export interface FromTfOptions {
  /** Dtype to store float32 tensors as (default `F32`). */
  floatDtype?: "F32" | "F16" | "BF16";
}

/**
 * Read tf tensors back into records ready for {@link writeSafetensors}: `float32` → F32 (or
 * `floatDtype`, encoded when written), `int32` → I32. Values are copied; the tensors are not
 * disposed.
 *
 * @example Usage
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { fromTfTensors, writeSafetensors } from "./safetensors.ts";
 * const w = tf.tensor([1, 2, 3, 4], [2, 2]);
 * await writeSafetensors("runs/w.safetensors", await fromTfTensors({ w }, { floatDtype: "BF16" }));
 * w.dispose();
 * ```
 *
 * @param tensors tf tensors by name.
 * @param opts Storage dtype for float tensors.
 * @returns Records by name.
 * @throws {InputError} On a tensor of dtype other than float32 / int32.
 */
export async function fromTfTensors(
  tensors: tf.NamedTensorMap,
  opts: FromTfOptions = {},
): Promise<Record<string, TensorRecord>> {
  const out: Record<string, TensorRecord> = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (t.dtype === "float32") {
      out[name] = {
        dtype: opts.floatDtype ?? "F32",
        shape: [...t.shape],
        data: new Float32Array(await t.data() as Float32Array),
      };
    } else if (t.dtype === "int32") {
      out[name] = {
        dtype: "I32",
        shape: [...t.shape],
        data: new Int32Array(await t.data() as Int32Array),
      };
    } else {
      throw new InputError(
        name,
        `tensor dtype ${t.dtype} cannot be saved; expected float32 or int32`,
      );
    }
  }
  return out;
}
