import assert from "node:assert/strict";
import {
  downloadDataset,
  DownloadError,
  downloadFile,
  extractZip,
} from "../../src/data/download.ts";
import { sha256Hex } from "../../src/io.ts";

const PAYLOAD = new Uint8Array(200_000).map((_, i) => (i * 31 + (i >> 8)) & 0xff);

/** Loopback server: /ok, /drop (first full request dies halfway), /corrupt, 404 otherwise. */
function serve(files: Record<string, Uint8Array>) {
  const log: Array<{ path: string; range: string | null }> = [];
  let dropped = false;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    const range = req.headers.get("range");
    log.push({ path, range });
    const name = path.slice(1);
    const body = name === "corrupt" ? PAYLOAD.map((b, i) => (i === 1000 ? b ^ 1 : b)) : files[name];
    if (!body) return new Response("not here", { status: 404, statusText: "Not Found" });
    const m = range ? /bytes=(\d+)-/.exec(range) : null;
    const start = m ? Number(m[1]) : 0;
    const part = body.subarray(start);
    const headers: Record<string, string> = { "content-length": String(part.length) };
    if (m) headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
    if (name === "drop" && !dropped) {
      dropped = true;
      const half = part.subarray(0, 80_000);
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(half);
          setTimeout(() => c.error(new Error("connection dropped")), 20);
        },
      });
      return new Response(stream, { status: m ? 206 : 200, headers });
    }
    return new Response(part.slice(), { status: m ? 206 : 200, headers });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  return { server, base, log };
}

Deno.test("downloadFile() resumes with Range after a dropped connection", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dl_" });
  const { server, base, log } = serve({ drop: PAYLOAD });
  try {
    const sha = await sha256Hex(PAYLOAD);
    const r = await downloadFile(`${base}/drop`, `${dir}/f.bin`, { sha256: sha });
    assert.equal(r.requests, 2);
    assert.deepEqual(await Deno.readFile(`${dir}/f.bin`), PAYLOAD);
    assert.equal(r.sha256, sha);
    assert.equal(log[0].range, null);
    assert.match(log[1].range ?? "", /^bytes=\d+-$/);
    assert.ok(Number(/\d+/.exec(log[1].range!)![0]) > 0);
    await assert.rejects(() => Deno.stat(`${dir}/f.bin.part`), Deno.errors.NotFound);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("downloadFile() resumes a .part file left by an earlier run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dl_" });
  const { server, base, log } = serve({ ok: PAYLOAD });
  try {
    await Deno.writeFile(`${dir}/f.bin.part`, PAYLOAD.subarray(0, 12345));
    const r = await downloadFile(`${base}/ok`, `${dir}/f.bin`, {
      sha256: await sha256Hex(PAYLOAD),
    });
    assert.equal(r.resumedFrom, 12345);
    assert.equal(log[0].range, "bytes=12345-");
    assert.deepEqual(await Deno.readFile(`${dir}/f.bin`), PAYLOAD);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("downloadFile() deletes the file and names it on a checksum mismatch", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dl_" });
  const { server, base } = serve({});
  try {
    const sha = await sha256Hex(PAYLOAD);
    await assert.rejects(
      () => downloadFile(`${base}/corrupt`, `${dir}/c.bin`, { sha256: sha }),
      (err: unknown) => {
        assert.ok(err instanceof DownloadError);
        assert.match(
          err.message,
          new RegExp(`c\\.bin\\.part: SHA-256 mismatch: expected ${sha}, got [0-9a-f]{64}`),
        );
        assert.match(err.message, /the file was deleted/);
        return true;
      },
    );
    await assert.rejects(() => Deno.stat(`${dir}/c.bin.part`), Deno.errors.NotFound);
    await assert.rejects(() => Deno.stat(`${dir}/c.bin`), Deno.errors.NotFound);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("downloadFile() reports a 404 with URL and status", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dl_" });
  const { server, base } = serve({});
  try {
    await assert.rejects(
      () => downloadFile(`${base}/nothing.zip`, `${dir}/n.zip`),
      DownloadError,
      `${base}/nothing.zip: HTTP 404 Not Found`,
    );
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

/** CRC-32 (zip) of bytes, for the hand-built zips below. */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip (deflate) built by hand: entries under one top folder. */
async function makeZip(entries: Record<string, string>): Promise<Uint8Array> {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const [name, text] of Object.entries(entries)) {
    const data = enc.encode(text);
    const s = new Blob([data]).stream().pipeThrough(new CompressionStream("deflate-raw"));
    const comp = new Uint8Array(await new Response(s).arrayBuffer());
    const nm = enc.encode(name);
    const crc = crc32(data);
    const lh = new Uint8Array(30 + nm.length);
    const l = new DataView(lh.buffer);
    l.setUint32(0, 0x04034b50, true);
    l.setUint16(4, 20, true);
    l.setUint16(8, 8, true);
    l.setUint32(14, crc, true);
    l.setUint32(18, comp.length, true);
    l.setUint32(22, data.length, true);
    l.setUint16(26, nm.length, true);
    lh.set(nm, 30);
    const ch = new Uint8Array(46 + nm.length);
    const c = new DataView(ch.buffer);
    c.setUint32(0, 0x02014b50, true);
    c.setUint16(10, 8, true);
    c.setUint32(16, crc, true);
    c.setUint32(20, comp.length, true);
    c.setUint32(24, data.length, true);
    c.setUint16(28, nm.length, true);
    c.setUint32(42, offset, true);
    ch.set(nm, 46);
    locals.push(lh, comp);
    centrals.push(ch);
    offset += lh.length + comp.length;
  }
  const cdSize = centrals.reduce((a, b) => a + b.length, 0);
  const eocd = new Uint8Array(22);
  const e = new DataView(eocd.buffer);
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, centrals.length, true);
  e.setUint16(10, centrals.length, true);
  e.setUint32(12, cdSize, true);
  e.setUint32(16, offset, true);
  const all = [...locals, ...centrals, eocd];
  const out = new Uint8Array(all.reduce((a, b) => a + b.length, 0));
  let p = 0;
  for (const a of all) {
    out.set(a, p);
    p += a.length;
  }
  return out;
}

Deno.test("downloadDataset() downloads, records the checksum, unzips, and checks it next time", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dl_" });
  const zip = await makeZip({
    "toy/ratings.dat": "1::1::5::1\n",
    "toy/movies.dat": "1::Caf\u00e9 (1999)::Drama\n",
  });
  const { server, base } = serve({ "toy.zip": zip });
  try {
    const registry = {
      toy: {
        builder: "ml-1m" as const,
        terms: "test",
        files: [{ url: `${base}/toy.zip`, file: "toy.zip", sha256: "unknown", extract: true }],
      },
    };
    const r = await downloadDataset("toy", { root: dir, registry });
    assert.deepEqual(r.extracted.sort(), ["movies.dat", "ratings.dat"]);
    assert.equal(await Deno.readTextFile(`${dir}/toy/ratings.dat`), "1::1::5::1\n");
    assert.equal(await Deno.readTextFile(`${dir}/toy/movies.dat`), "1::Caf\u00e9 (1999)::Drama\n");
    const rec = JSON.parse(await Deno.readTextFile(`${dir}/checksums.json`));
    assert.equal(rec["toy/toy.zip"].sha256, await sha256Hex(zip));
    // A later run checks the local file against the recorded checksum.
    await Deno.writeFile(`${dir}/toy/toy.zip`, zip.subarray(0, 100));
    await assert.rejects(
      () => downloadDataset("toy", { root: dir, registry }),
      DownloadError,
      "SHA-256 mismatch",
    );
    await assert.rejects(() => Deno.stat(`${dir}/toy/toy.zip`), Deno.errors.NotFound);
    await assert.rejects(
      () => downloadDataset("nope", { root: dir, registry }),
      DownloadError,
      "unknown dataset",
    );
    // Cut short (no end-of-directory record): one error naming the zip.
    await Deno.writeFile(`${dir}/bad.zip`, zip.subarray(0, 100));
    await assert.rejects(
      () => extractZip(`${dir}/bad.zip`, `${dir}/x`),
      DownloadError,
      "bad.zip: damaged or not a zip file",
    );
    // The directory's uncompressed size of the first entry off by 7: caught, naming the entry.
    const cd = zip.length - 22 - 2 * 46 - "toy/ratings.dat".length - "toy/movies.dat".length;
    const wrong = zip.slice();
    const dv = new DataView(wrong.buffer);
    assert.equal(dv.getUint32(cd, true), 0x02014b50);
    dv.setUint32(cd + 24, dv.getUint32(cd + 24, true) + 7, true);
    await Deno.writeFile(`${dir}/size.zip`, wrong);
    await assert.rejects(
      () => extractZip(`${dir}/size.zip`, `${dir}/y`),
      DownloadError,
      "the directory says",
    );
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("extractZip() reads a zip written by Python's zipfile (stored and deflated entries, nested folders)", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "zip_py_" });
  try {
    const files: Record<string, string> = {
      "data/README": "stored entry\n",
      "data/sub/ratings.dat": "1::2::5::978300760\n".repeat(500),
      "data/sub/caf\u00e9.txt": "unicode name, deflated\n",
    };
    await Deno.writeTextFile(`${dir}/files.json`, JSON.stringify(files));
    const script = `
import json, sys, zipfile
files = json.load(open(sys.argv[1], encoding="utf-8"))
with zipfile.ZipFile(sys.argv[2], "w") as z:
    for i, (name, text) in enumerate(files.items()):
        z.writestr(name, text, compress_type=zipfile.ZIP_STORED if i == 0 else zipfile.ZIP_DEFLATED)
`;
    let ok = false;
    try {
      const r = await new Deno.Command("/usr/bin/python3", {
        args: ["-c", script, `${dir}/files.json`, `${dir}/py.zip`],
        stderr: "piped",
      }).output();
      ok = r.success;
    } catch { /* no python */ }
    if (!ok) {
      await t.step({
        name: "ignored: /usr/bin/python3 cannot write the zip",
        ignore: true,
        fn() {},
      });
      return;
    }
    const got = await extractZip(`${dir}/py.zip`, `${dir}/out`);
    assert.deepEqual(got.sort(), ["README", "sub/caf\u00e9.txt", "sub/ratings.dat"]);
    for (const [name, text] of Object.entries(files)) {
      assert.equal(await Deno.readTextFile(`${dir}/out/${name.slice("data/".length)}`), text);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
