import assert from "node:assert/strict";
import {
  appendJsonLine,
  ensureDir,
  sha256Hex,
  writeFileAtomic,
  writeJsonAtomic,
} from "../src/io.ts";

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("writeFileAtomic() replaces contents and leaves no temp file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/out.txt`;
    await writeFileAtomic(path, "first version, longer than the second\n");
    await writeFileAtomic(path, "second\n");
    assert.equal(await Deno.readTextFile(path), "second\n");
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([1, 2, 3]));
    await writeFileAtomic(path, [new Uint8Array([4]), new Uint8Array([5, 6])]);
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([4, 5, 6]));
    assert.deepEqual(await entries(dir), ["out.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() into a missing directory throws and leaves nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(writeFileAtomic(`${dir}/nope/out.txt`, "x"), Deno.errors.NotFound);
    assert.deepEqual(await entries(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeJsonAtomic() writes parseable JSON; appendJsonLine() appends one line each", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeJsonAtomic(`${dir}/a.json`, { step: 3, loss: [0.5, 0.25] });
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/a.json`)), {
      step: 3,
      loss: [0.5, 0.25],
    });
    await appendJsonLine(`${dir}/log.jsonl`, { step: 1 });
    await appendJsonLine(`${dir}/log.jsonl`, { step: 2, s: "a\nb" });
    const lines = (await Deno.readTextFile(`${dir}/log.jsonl`)).split("\n");
    assert.deepEqual(lines, ['{"step":1}', '{"step":2,"s":"a\\nb"}', ""]);
    await assert.rejects(appendJsonLine(`${dir}/log.jsonl`, undefined), TypeError);
    assert.deepEqual(await entries(dir), ["a.json", "log.jsonl"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sha256Hex() matches the FIPS 180-2 test vectors", async () => {
  assert.equal(
    await sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    await sha256Hex(new TextEncoder().encode("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    await sha256Hex(""),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("ensureDir() creates parents and is idempotent", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await ensureDir(`${dir}/a/b/c`);
    await ensureDir(`${dir}/a/b/c`);
    assert.ok((await Deno.stat(`${dir}/a/b/c`)).isDirectory);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
