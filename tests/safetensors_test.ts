import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../src/backend.ts";
import { CheckpointError } from "../src/errors.ts";
import { Rng } from "../src/rng.ts";
import {
  bf16BitsToFloat,
  decodeBF16,
  decodeF16,
  encodeBF16,
  encodeF16,
  f16BitsToFloat,
  floatToBf16Bits,
  floatToF16Bits,
  fromTfTensors,
  type LoadedTensor,
  loadSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  readShardedSafetensors,
  toTfTensors,
  writeSafetensors,
} from "../src/safetensors.ts";

await initBackend("wasm", { quiet: true });

/** Build a safetensors file by hand from the spec: u64 LE length, JSON padded to 8, data. */
function handFile(
  header: unknown,
  data: Uint8Array,
  opts: { declaredLength?: number; pad?: boolean } = {},
) {
  let json = JSON.stringify(header);
  if (opts.pad !== false) { while ((8 + json.length) % 8 !== 0) json += " "; }
  const jb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + jb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(opts.declaredLength ?? jb.length), true);
  out.set(jb, 8);
  out.set(data, 8 + jb.length);
  return out;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A tensor's values as a plain array, whatever its dtype. */
function vals(t: LoadedTensor): (number | bigint)[] {
  return [...t.data];
}

function u32(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

async function rejectsCheckpoint(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CheckpointError, `expected CheckpointError, got ${err}`);
    for (const part of parts) {
      assert.ok(err.message.includes(part), `"${err.message}" lacks "${part}"`);
    }
    return true;
  });
}

Deno.test("f16BitsToFloat() / bf16BitsToFloat() decode known bit patterns", () => {
  const f16: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504],
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0400, 2 ** -14], // smallest normal
    [0x3555, 0.333251953125],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x0000, 0],
  ];
  for (const [bits, v] of f16) assert.equal(f16BitsToFloat(bits), v, `f16 0x${bits.toString(16)}`);
  assert.ok(Object.is(f16BitsToFloat(0x8000), -0));
  assert.ok(Number.isNaN(f16BitsToFloat(0x7e00)));
  assert.ok(Number.isNaN(f16BitsToFloat(0x7c01)));
  const bf16: [number, number][] = [
    [0x3f80, 1],
    [0xc000, -2],
    [0x4780, 65536], // 65504 is not a bf16 value; it rounds to 2^16
    [0x7f7f, (2 - 2 ** -7) * 2 ** 127], // largest finite
    [0x0001, 2 ** -133], // smallest subnormal
    [0x0080, 2 ** -126], // smallest normal
    [0x7f80, Infinity],
    [0xff80, -Infinity],
  ];
  for (const [bits, v] of bf16) {
    assert.equal(bf16BitsToFloat(bits), v, `bf16 0x${bits.toString(16)}`);
  }
  assert.ok(Number.isNaN(bf16BitsToFloat(0x7fc0)));
  assert.deepEqual(Array.from(decodeF16(new Uint16Array([0x3c00, 0xc000, 0x7bff]))), [
    1,
    -2,
    65504,
  ]);
  assert.deepEqual(Array.from(decodeBF16(new Uint16Array([0x3f80, 0xc000]))), [1, -2]);
});

Deno.test("floatToF16Bits() / floatToBf16Bits() round to nearest, ties to even", () => {
  assert.equal(floatToF16Bits(1), 0x3c00);
  assert.equal(floatToF16Bits(-2), 0xc000);
  assert.equal(floatToF16Bits(65504), 0x7bff);
  assert.equal(floatToF16Bits(65519), 0x7bff); // below the midpoint to 2^16
  assert.equal(floatToF16Bits(65520), 0x7c00); // midpoint, odd mantissa → up → inf
  assert.equal(floatToF16Bits(1e6), 0x7c00);
  assert.equal(floatToF16Bits(1 + 2 ** -11), 0x3c00); // tie → even (down)
  assert.equal(floatToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
  assert.equal(floatToF16Bits(2 ** -24), 0x0001);
  assert.equal(floatToF16Bits(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal
  assert.equal(floatToF16Bits(3 * 2 ** -26), 0x0001);
  assert.equal(floatToF16Bits(-0), 0x8000);
  assert.equal(floatToF16Bits(-Infinity), 0xfc00);
  assert.equal(floatToF16Bits(NaN) & 0x7c00, 0x7c00);
  assert.notEqual(floatToF16Bits(NaN) & 0x3ff, 0);
  assert.equal(floatToBf16Bits(1), 0x3f80);
  assert.equal(floatToBf16Bits(-2), 0xc000);
  assert.equal(floatToBf16Bits(65504), 0x4780);
  assert.equal(floatToBf16Bits(1 + 2 ** -8), 0x3f80); // tie → even (down)
  assert.equal(floatToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie → even (up)
  assert.equal(floatToBf16Bits(3.4e38), 0x7f80); // above max + half ulp → inf
  assert.ok(Number.isNaN(bf16BitsToFloat(floatToBf16Bits(NaN))));
});

Deno.test("decodeF16() / encodeF16() agree with the platform Float16Array", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const ours = decodeF16(all);
  const ref = new Float16Array(all.buffer);
  for (let i = 0; i < 65536; i++) assert.ok(Object.is(ours[i], ref[i]), `bits 0x${i.toString(16)}`);
  // Random float32 bit patterns over all exponents, plus values near f16 ties.
  const rng = new Rng(7);
  const bits = new Uint32Array(20000).map(() => rng.nextUint32());
  const xs = new Float32Array(bits.buffer);
  for (let i = 0; i < 2000; i++) xs[i] = (rng.int(4096) + 0.5) * 2 ** (rng.int(40) - 34); // ties
  const enc = encodeF16(xs);
  const want = new Uint16Array(Float16Array.from(xs).buffer);
  for (let i = 0; i < xs.length; i++) {
    if (Number.isNaN(xs[i])) assert.ok(Number.isNaN(f16BitsToFloat(enc[i])));
    else assert.equal(enc[i], want[i], `x=${xs[i]}`);
  }
});

Deno.test("encodeBF16() matches a brute-force nearest-even search", () => {
  const rng = new Rng(11);
  const xs = new Float32Array(5000);
  const xb = u32(xs);
  for (let i = 0; i < xs.length; i++) {
    xb[i] = rng.nextUint32();
    if (i % 3 === 0) xb[i] = (xb[i] & 0xffff0000) | 0x8000; // exact ties
    if (Number.isNaN(xs[i])) xs[i] = 1.5;
  }
  const enc = encodeBF16(xs);
  for (let i = 0; i < xs.length; i++) {
    const lo = xb[i] >>> 16, hi = lo + 1; // the two bf16 values around x (same sign)
    // With an unbounded exponent the value after the largest finite is ±2^128; it encodes as ±inf.
    const hiValue = Number.isFinite(bf16BitsToFloat(hi))
      ? bf16BitsToFloat(hi)
      : Math.sign(xs[i]) * 2 ** 128;
    const dlo = Math.abs(xs[i] - bf16BitsToFloat(lo)), dhi = Math.abs(hiValue - xs[i]);
    const want = !Number.isFinite(xs[i]) || dlo < dhi
      ? lo
      : dhi < dlo
      ? hi
      : (lo & 1) === 0
      ? lo
      : hi;
    assert.equal(enc[i], want, `x=${xs[i]}`);
  }
});

Deno.test("writeSafetensors() → readSafetensors() round-trips F32/I32/I64/F16/BF16 bit for bit", async () => {
  await withTempDir(async (dir) => {
    const f32bits = new Uint32Array([
      0x3f800000,
      0x80000000,
      0x7f800000,
      0x7fc00001,
      0xffbfffff,
      0x00000001,
      0xc0490fdb,
    ]);
    const f32 = new Float32Array(f32bits.buffer);
    const i32 = new Int32Array([-2147483648, -1, 0, 1, 2147483647, 42]);
    const i64 = new BigInt64Array([-(2n ** 63n), -1n, 0n, 2n ** 40n, 2n ** 63n - 1n]);
    const all = new Uint16Array(65536).map((_, i) => i);
    const p1 = `${dir}/a.safetensors`;
    await writeSafetensors(p1, {
      f32: { dtype: "F32", shape: [7], data: f32 },
      i32: { dtype: "I32", shape: [2, 3], data: i32 },
      i64: { dtype: "I64", shape: [5], data: i64 },
      f16: { dtype: "F16", shape: [256, 256], data: all },
      bf16: { dtype: "BF16", shape: [65536], data: all },
      scalar: { dtype: "F32", shape: [], data: new Float32Array([2.5]) },
      empty: { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    }, { format: "pt" });
    const { tensors: t, metadata } = await readSafetensors(p1);
    assert.deepEqual(metadata, { format: "pt" });
    assert.deepEqual(u32(t.f32.data as Float32Array), f32bits);
    assert.deepEqual(t.i32.data, i32);
    assert.deepEqual(t.i32.shape, [2, 3]);
    assert.deepEqual(t.i64.data, i64);
    assert.deepEqual(t.f16.shape, [256, 256]);
    assert.deepEqual(encodeF16(t.f16.data as Float32Array), all);
    assert.deepEqual(encodeBF16(t.bf16.data as Float32Array), all);
    assert.deepEqual(vals(t.scalar), [2.5]);
    assert.deepEqual(t.scalar.shape, []);
    assert.deepEqual(t.empty.shape, [0, 4]);
    // Writing the decoded values again yields the identical file.
    const p2 = `${dir}/b.safetensors`;
    await writeSafetensors(p2, t, metadata);
    assert.deepEqual(await Deno.readFile(p2), await Deno.readFile(p1));
  });
});

Deno.test("writeSafetensors() output follows the spec layout", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/w.safetensors`;
    await writeSafetensors(path, {
      b: { dtype: "F16", shape: [3], data: [1, -2, 0.5] },
      a: { dtype: "I64", shape: [1], data: [7] },
    });
    const bytes = await Deno.readFile(path);
    const dv = new DataView(bytes.buffer);
    const n = Number(dv.getBigUint64(0, true));
    assert.equal((8 + n) % 8, 0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    assert.match(text, /^\{.*\} *$/);
    const header = JSON.parse(text);
    assert.deepEqual(header.a, { dtype: "I64", shape: [1], data_offsets: [0, 8] });
    assert.deepEqual(header.b, { dtype: "F16", shape: [3], data_offsets: [8, 14] });
    assert.equal(bytes.length, 8 + n + 14);
    assert.equal(dv.getBigInt64(8 + n, true), 7n);
    assert.deepEqual([0, 1, 2].map((i) => dv.getUint16(8 + n + 8 + 2 * i, true)), [
      0x3c00,
      0xc000,
      0x3800,
    ]);
    const h = await readSafetensorsHeader(path);
    assert.equal(h.dataStart, 8 + n);
    assert.deepEqual(h.tensors.b, { dtype: "F16", shape: [3], dataOffsets: [8, 14] });
    assert.deepEqual(h.metadata, {});
  });
});

Deno.test("readSafetensors() reads a file built by hand from the spec (unaligned offsets)", async () => {
  await withTempDir(async (dir) => {
    const data = new Uint8Array(26);
    const dv = new DataView(data.buffer);
    dv.setUint16(0, 0x3c00, true); // h: F16 1.0
    dv.setFloat32(2, 1.5, true); // f: F32 [1.5, -3.25] at an unaligned offset
    dv.setFloat32(6, -3.25, true);
    dv.setUint16(10, 0xc000, true); // b: BF16 [-2, 1]
    dv.setUint16(12, 0x3f80, true);
    dv.setInt32(14, -7, true); // i: I32 scalar
    dv.setBigInt64(18, -(2n ** 40n), true); // l: I64
    const header = {
      __metadata__: { format: "pt", note: "hand" },
      h: { dtype: "F16", shape: [1], data_offsets: [0, 2] },
      f: { dtype: "F32", shape: [2], data_offsets: [2, 10] },
      b: { dtype: "BF16", shape: [2, 1], data_offsets: [10, 14] },
      i: { dtype: "I32", shape: [], data_offsets: [14, 18] },
      l: { dtype: "I64", shape: [1], data_offsets: [18, 26] },
      e: { dtype: "F32", shape: [0, 3], data_offsets: [26, 26] },
    };
    for (const pad of [true, false]) {
      const path = `${dir}/hand_${pad}.safetensors`;
      await Deno.writeFile(path, handFile(header, data, { pad }));
      const { tensors: t, metadata } = await readSafetensors(path);
      assert.deepEqual(metadata, { format: "pt", note: "hand" });
      assert.deepEqual(Object.keys(t), ["h", "f", "b", "i", "l", "e"]);
      assert.deepEqual(vals(t.h), [1]);
      assert.deepEqual(vals(t.f), [1.5, -3.25]);
      assert.deepEqual(vals(t.b), [-2, 1]);
      assert.deepEqual(t.b.shape, [2, 1]);
      assert.deepEqual(vals(t.i), [-7]);
      assert.deepEqual(t.i.shape, []);
      assert.deepEqual(vals(t.l), [-(2n ** 40n)]);
      assert.equal(t.e.data.length, 0);
      const only = await readSafetensors(path, { names: ["b"] });
      assert.deepEqual(Object.keys(only.tensors), ["b"]);
    }
  });
});

Deno.test("readSafetensors() names file and tensor in each CheckpointError", async () => {
  await withTempDir(async (dir) => {
    const f32 = (offs: [number, number], shape = [2]) => ({
      dtype: "F32",
      shape,
      data_offsets: offs,
    });
    const write = async (name: string, bytes: Uint8Array) => {
      const path = `${dir}/${name}.safetensors`;
      await Deno.writeFile(path, bytes);
      return path;
    };
    const ok = await write("ok", handFile({ w: f32([0, 8]) }, new Uint8Array(8)));
    await rejectsCheckpoint(
      readSafetensors(ok, { names: ["w", "missing.weight"] }),
      ok,
      '"missing.weight"',
    );

    const oob = await write(
      "oob",
      handFile({ w: f32([0, 8]), x: f32([8, 16]) }, new Uint8Array(12)),
    );
    await rejectsCheckpoint(readSafetensors(oob), oob, '"x"', "out of range");
    await rejectsCheckpoint(readSafetensorsHeader(oob), oob, '"x"');

    const long = await write(
      "long",
      handFile({ w: f32([0, 8]) }, new Uint8Array(8), { declaredLength: 4096 }),
    );
    await rejectsCheckpoint(
      readSafetensors(long),
      long,
      "header length 4096",
      "larger than the file",
    );

    const u8 = await write(
      "u8",
      handFile(
        { w: f32([0, 8]), m: { dtype: "U8", shape: [3], data_offsets: [8, 11] } },
        new Uint8Array(11),
      ),
    );
    await rejectsCheckpoint(readSafetensors(u8), u8, '"m"', 'unsupported dtype "U8"');
    assert.deepEqual(Object.keys((await readSafetensors(u8, { names: ["w"] })).tensors), ["w"]);
    const odd = await write(
      "odd",
      handFile({ q: { dtype: "Q4", shape: [2], data_offsets: [0, 1] } }, new Uint8Array(1)),
    );
    await rejectsCheckpoint(readSafetensors(odd), odd, '"q"', 'unsupported dtype "Q4"');

    const size = await write("size", handFile({ w: f32([0, 8], [3]) }, new Uint8Array(8)));
    await rejectsCheckpoint(readSafetensors(size), size, '"w"', "shape [3]", "span 8 bytes");

    const overlap = await write(
      "overlap",
      handFile({ a: f32([0, 8]), b: f32([4, 12]) }, new Uint8Array(12)),
    );
    await rejectsCheckpoint(readSafetensors(overlap), overlap, '"a"', '"b"', "overlap");

    const tiny = await write("tiny", new Uint8Array(5));
    await rejectsCheckpoint(readSafetensors(tiny), tiny, "5 bytes");

    const bad = new Uint8Array(16);
    new DataView(bad.buffer).setBigUint64(0, 8n, true);
    bad.set(new TextEncoder().encode("{notjson"), 8);
    const badJson = await write("badjson", bad);
    await rejectsCheckpoint(readSafetensors(badJson), badJson, "not valid UTF-8 JSON");

    await rejectsCheckpoint(
      readSafetensors(`${dir}/absent.safetensors`),
      "absent.safetensors",
      "cannot open",
    );
    await rejectsCheckpoint(
      writeSafetensors(`${dir}/w.safetensors`, {
        w: { dtype: "F32", shape: [3], data: new Float32Array(2) },
      }),
      "w.safetensors",
      '"w"',
      "needs 3 elements, got 2",
    );
  });
});

Deno.test("readShardedSafetensors() loads each tensor from its shard", async () => {
  await withTempDir(async (dir) => {
    const s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors";
    await writeSafetensors(`${dir}/${s1}`, {
      "model.embed_tokens.weight": { dtype: "BF16", shape: [2, 2], data: [1, 2, 3, 4] },
      "model.norm.weight": { dtype: "F32", shape: [2], data: [0.5, 0.25] },
    }, { format: "pt" });
    await writeSafetensors(`${dir}/${s2}`, {
      "lm_head.weight": { dtype: "F16", shape: [2, 2], data: [-1, -2, -3, -4] },
    }, { format: "pt" });
    const index = {
      metadata: { total_size: 28 },
      weight_map: {
        "model.embed_tokens.weight": s1,
        "model.norm.weight": s1,
        "lm_head.weight": s2,
      },
    };
    const indexPath = `${dir}/model.safetensors.index.json`;
    await Deno.writeTextFile(indexPath, JSON.stringify(index));
    const { tensors, metadata } = await readShardedSafetensors(indexPath);
    assert.deepEqual(Object.keys(tensors).sort(), [
      "lm_head.weight",
      "model.embed_tokens.weight",
      "model.norm.weight",
    ]);
    assert.deepEqual(vals(tensors["model.embed_tokens.weight"]), [1, 2, 3, 4]);
    assert.deepEqual(vals(tensors["lm_head.weight"]), [-1, -2, -3, -4]);
    assert.deepEqual(tensors["lm_head.weight"].dtype, "F16");
    assert.deepEqual(metadata, { format: "pt" });
    const some = await readShardedSafetensors(indexPath, { names: ["lm_head.weight"] });
    assert.deepEqual(Object.keys(some.tensors), ["lm_head.weight"]);
    assert.deepEqual(Object.keys((await loadSafetensors(dir)).tensors).length, 3);
    await rejectsCheckpoint(
      readShardedSafetensors(indexPath, { names: ["nope"] }),
      indexPath,
      '"nope"',
      "weight_map",
    );

    const broken = `${dir}/broken.index.json`;
    await Deno.writeTextFile(
      broken,
      JSON.stringify({ weight_map: { ...index.weight_map, "extra.weight": s2 } }),
    );
    await rejectsCheckpoint(
      readShardedSafetensors(broken),
      broken,
      s2,
      '"extra.weight"',
      "not found",
    );
    const escape = `${dir}/escape.index.json`;
    await Deno.writeTextFile(escape, JSON.stringify({ weight_map: { w: "../x.safetensors" } }));
    await rejectsCheckpoint(readShardedSafetensors(escape), escape, '"w"');
  });
});

Deno.test("toTfTensors() / fromTfTensors() bridge tf tensors without leaks", async () => {
  await withTempDir(async (dir) => {
    const before = tf.memory().numTensors;
    const src = { w: tf.tensor([[1, 2.5], [3, -4]]), ids: tf.tensor([1, 2, 3], [3], "int32") };
    const path = `${dir}/t.safetensors`;
    await writeSafetensors(path, await fromTfTensors(src, { floatDtype: "BF16" }));
    const read = await readSafetensors(path);
    assert.equal(read.tensors.w.dtype, "BF16");
    const back = toTfTensors(read.tensors);
    assert.equal(back.w.dtype, "float32");
    assert.deepEqual(back.w.shape, [2, 2]);
    assert.deepEqual(Array.from(await back.w.data()), [1, 2.5, 3, -4]);
    assert.equal(back.ids.dtype, "int32");
    assert.deepEqual(Array.from(await back.ids.data()), [1, 2, 3]);
    tf.dispose([src, back]);
    const i64 = toTfTensors({
      x: { dtype: "I64", shape: [2], data: new BigInt64Array([5n, -6n]) },
    });
    assert.deepEqual(Array.from(await i64.x.data()), [5, -6]);
    tf.dispose(i64);
    assert.throws(
      () =>
        toTfTensors({
          ok: { dtype: "F32", shape: [1], data: [1] },
          x: { dtype: "I64", shape: [1], data: new BigInt64Array([2n ** 40n]) },
        }),
      (err: unknown) => err instanceof CheckpointError && err.message.includes('"x"'),
    );
    assert.equal(tf.memory().numTensors, before);
  });
});
