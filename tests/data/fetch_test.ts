/**
 * `deno task data fetch` (src/data/download.ts `fetchReleased`, src/cli/data.ts): the released
 * S-DPO and DMPO files from their repositories at pinned commits, against a loopback server with
 * GitHub's raw layout (no network in tests): full download, resume after a truncated file, a
 * SHA-256 mismatch and no network, each one clear line.
 */
import assert from "node:assert/strict";
import {
  DownloadError,
  fetchReleased,
  gitBlobId,
  RELEASED_FILES,
  RELEASED_REPOS,
  type ReleasedFile,
  releasedUrl,
} from "../../src/data/download.ts";
import { DATASET_SOURCES } from "../../src/experiments/datasets.ts";
import { sha256Hex } from "../../src/io.ts";
import { main } from "../../src/cli/data.ts";

const CLI = new URL("../../src/cli/data.ts", import.meta.url).pathname;
const SHARED = new URL("../../../shared/data", import.meta.url).pathname;
const HAVE_SHARED = (() => {
  try {
    return Deno.statSync(`${SHARED}/dmpo/ml-1m/rec_data_ml_1m_eval_ranking.json`).isFile;
  } catch {
    return false;
  }
})();

/** A loopback server: GitHub's raw layout, HTTP Range, a request log. */
function serve(files: Map<string, Uint8Array>) {
  const log: { path: string; range: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    const range = req.headers.get("range");
    log.push({ path, range });
    const body = files.get(path);
    if (!body) return new Response("404: Not Found", { status: 404, statusText: "Not Found" });
    const m = range ? /bytes=(\d+)-/.exec(range) : null;
    const start = m ? Number(m[1]) : 0;
    if (start >= body.length && m) return new Response(null, { status: 416 });
    const part = body.slice(start);
    const headers: Record<string, string> = { "content-length": String(part.length) };
    if (m) headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
    return new Response(part, { status: m ? 206 : 200, headers });
  });
  return { server, base: `http://127.0.0.1:${server.addr.port}`, log };
}

const bytes = (n: number, seed: number) =>
  new Uint8Array(n).map((_, i) => (i * 131 + seed * 17 + (i >> 7)) & 0xff);

/** Made-up files in the registry's shape (one checked by git blob id only, as the train file). */
async function fixture(): Promise<{ files: ReleasedFile[]; served: Map<string, Uint8Array> }> {
  const a = bytes(150_000, 1), b = bytes(70_000, 2), c = bytes(9_000, 3);
  const files: ReleasedFile[] = [
    {
      source: "sdpo",
      path: "sample_data/lastfm-sft-cans20/lastfm-train.json",
      dest: "sdpo-lastfm/lastfm-train.json",
      gitBlob: await gitBlobId(a),
    },
    {
      source: "sdpo",
      path: "sample_data/lastfm-sft-cans20/lastfm-test.json",
      dest: "sdpo-lastfm/lastfm-test.json",
      bytes: b.length,
      sha256: await sha256Hex(b),
      gitBlob: await gitBlobId(b),
    },
    {
      source: "dmpo",
      path: "data/rec_data_ml_1m_sft_ranking.json",
      dest: "dmpo/ml-1m/rec_data_ml_1m_sft_ranking.json",
      bytes: c.length,
      sha256: await sha256Hex(c),
      gitBlob: await gitBlobId(c),
    },
  ];
  const served = new Map<string, Uint8Array>();
  [a, b, c].forEach((x, i) => served.set(new URL(releasedUrl(files[i])).pathname, x));
  return { files, served };
}

Deno.test("gitBlobId equals `git hash-object`", async () => {
  const dir = await Deno.makeTempDir({ prefix: "blob_" });
  try {
    const data = bytes(5000, 9);
    await Deno.writeFile(`${dir}/x`, data);
    const git = await new Deno.Command("git", { args: ["hash-object", `${dir}/x`] }).output();
    assert.equal(await gitBlobId(data), new TextDecoder().decode(git.stdout).trim());
    assert.equal(await gitBlobId(new Uint8Array()), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the registry: pinned commits, and every file --dataset reads is fetched where it looks", () => {
  for (const r of Object.values(RELEASED_REPOS)) assert.match(r.commit, /^[0-9a-f]{40}$/);
  const dests = new Set(RELEASED_FILES.map((f) => f.dest));
  for (const src of Object.values(DATASET_SOURCES)) {
    for (const f of [...src.files, ...(src.optional ?? [])]) {
      assert.ok(dests.has(`${src.folder}/${f}`), `${src.folder}/${f}`);
    }
  }
  assert.equal(
    releasedUrl(RELEASED_FILES[0]),
    "https://raw.githubusercontent.com/chenyuxin1999/S-DPO/" +
      "07befa4141239c1ecd8d13b1136d226315d0227b/sample_data/lastfm-sft-cans20/lastfm-train.json",
  );
});

Deno.test({
  name: `the registry's sizes, SHA-256 and blob ids are those of the released files${
    HAVE_SHARED ? "" : " (ignored: ../shared/data is absent)"
  }`,
  ignore: !HAVE_SHARED,
  fn: async () => {
    let checked = 0;
    for (const f of RELEASED_FILES) {
      let data: Uint8Array;
      try {
        data = await Deno.readFile(`${SHARED}/${f.dest}`);
      } catch {
        assert.equal(f.sha256, undefined, `${f.dest} is pinned by SHA-256 but not in ../shared`);
        continue;
      }
      assert.equal(data.length, f.bytes, f.dest);
      assert.equal(await sha256Hex(data), f.sha256, f.dest);
      assert.equal(await gitBlobId(data), f.gitBlob, f.dest);
      checked++;
    }
    assert.equal(checked, RELEASED_FILES.length - 1); // all but S-DPO's train file
  },
});

Deno.test("fetchReleased: full download into the data root, then nothing fetched again", async () => {
  const root = await Deno.makeTempDir({ prefix: "fetch_" });
  const { files, served } = await fixture();
  const { server, base, log } = serve(served);
  try {
    const got = await fetchReleased({ root, base, files });
    assert.equal(got.length, 3);
    for (const [path, data] of served) {
      const f = files.find((x) => path.endsWith(x.path))!;
      assert.deepEqual(await Deno.readFile(`${root}/${f.dest}`), data);
    }
    assert.equal(log.length, 3);
    assert.ok(log.every((l) => l.range === null));
    const sources = JSON.parse(await Deno.readTextFile(`${root}/SOURCES.json`));
    assert.equal(sources["sdpo-lastfm/lastfm-test.json"].commit, RELEASED_REPOS.sdpo.commit);
    assert.equal(
      sources["sdpo-lastfm/lastfm-train.json"].sha256,
      await sha256Hex(served.values().next().value!),
    );
    const again = await fetchReleased({ root, base, files });
    assert.equal(log.length, 3, "intact files are checked, not fetched");
    assert.ok(again.every((r) => r.requests === 0));
  } finally {
    await server.shutdown();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("fetchReleased: a truncated file (final or .part) resumes with a Range request", async () => {
  const root = await Deno.makeTempDir({ prefix: "fetch_" });
  const { files, served } = await fixture();
  const { server, base, log } = serve(served);
  try {
    const test = [...served.values()][1], sft = [...served.values()][2];
    await Deno.mkdir(`${root}/sdpo-lastfm`, { recursive: true });
    await Deno.mkdir(`${root}/dmpo/ml-1m`, { recursive: true });
    // An interrupted copy: the final name, cut short; and a partial download.
    await Deno.writeFile(`${root}/${files[1].dest}`, test.subarray(0, 30_000));
    await Deno.writeFile(`${root}/${files[2].dest}.part`, sft.subarray(0, 4_000));
    const got = await fetchReleased({ root, base, files: files.slice(1) });
    assert.deepEqual(await Deno.readFile(`${root}/${files[1].dest}`), test);
    assert.deepEqual(await Deno.readFile(`${root}/${files[2].dest}`), sft);
    assert.deepEqual(log.map((l) => l.range), ["bytes=30000-", "bytes=4000-"]);
    assert.deepEqual(got.map((r) => r.resumedFrom), [30_000, 4_000]);
  } finally {
    await server.shutdown();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("fetchReleased: a SHA-256 mismatch is one line naming the file; the file is deleted", async () => {
  const root = await Deno.makeTempDir({ prefix: "fetch_" });
  const { files, served } = await fixture();
  const path = new URL(releasedUrl(files[1])).pathname;
  served.set(path, served.get(path)!.map((b, i) => (i === 500 ? b ^ 1 : b)));
  const { server, base } = serve(served);
  try {
    await assert.rejects(() => fetchReleased({ root, base, files: files.slice(1) }), (e) => {
      assert.ok(e instanceof DownloadError);
      assert.ok(!e.message.includes("\n"));
      assert.match(
        e.message,
        new RegExp(
          `lastfm-test\\.json\\.part: SHA-256 mismatch: expected ${
            files[1].sha256
          }, got [0-9a-f]{64}`,
        ),
      );
      return true;
    });
    for (const suffix of ["", ".part"]) {
      await assert.rejects(
        () => Deno.stat(`${root}/${files[1].dest}${suffix}`),
        Deno.errors.NotFound,
      );
    }
    // A file checked by its git blob id only (the train file) fails the same way.
    const train = new URL(releasedUrl(files[0])).pathname;
    served.set(train, served.get(train)!.slice(1));
    await assert.rejects(
      () => fetchReleased({ root, base, files: files.slice(0, 1) }),
      /lastfm-train\.json\.part: git blob id mismatch: expected [0-9a-f]{40}, got [0-9a-f]{40}/,
    );
  } finally {
    await server.shutdown();
    await Deno.remove(root, { recursive: true });
  }
});

/** A loopback port with nothing listening (a server that was shut down). */
async function closedPort(): Promise<string> {
  const s = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => new Response());
  const base = `http://127.0.0.1:${s.addr.port}`;
  await s.shutdown();
  return base;
}

Deno.test("deno task data fetch without network: one line, exit 1, nothing half-written", async () => {
  const root = await Deno.makeTempDir({ prefix: "fetch_" });
  try {
    const base = await closedPort();
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, "fetch", "--data", root, "--from", base, "--retries", "1"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr).trim().split("\n")
      .filter((l) => !l.startsWith("[data fetch]"));
    assert.equal(r.code, 1);
    assert.equal(err.length, 1, err.join("\n"));
    assert.match(
      err[0],
      new RegExp(
        `^data: ${base}/chenyuxin1999/S-DPO/[0-9a-f]{40}/sample_data/lastfm-sft-cans20/` +
          "lastfm-train\\.json: cannot connect after 2 attempt\\(s\\) \\(no network\\?\\)",
      ),
    );
    assert.ok(!/at .*\.ts:\d+/.test(err[0]), "no stack trace");
    const left: string[] = [];
    const walk = async (d: string) => {
      for await (const e of Deno.readDir(d)) {
        if (e.isDirectory) await walk(`${d}/${e.name}`);
        else left.push(e.name);
      }
    };
    await walk(root);
    assert.deepEqual(left, []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test({
  name: `deno task data fetch --only dmpo: the pinned files, as --dataset reads them${
    HAVE_SHARED ? "" : " (ignored: ../shared/data is absent)"
  }`,
  ignore: !HAVE_SHARED,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "fetch_" });
    const served = new Map<string, Uint8Array>();
    for (const f of RELEASED_FILES.filter((f) => f.source === "dmpo")) {
      served.set(new URL(releasedUrl(f)).pathname, await Deno.readFile(`${SHARED}/${f.dest}`));
    }
    const { server, base } = serve(served);
    const log = console.log, error = console.error;
    const out: string[] = [];
    console.log = (...a: unknown[]) => out.push(a.join(" "));
    console.error = () => {};
    try {
      assert.equal(await main(["fetch", "--only", "dmpo", "--data", root, "--from", base]), 0);
      for (const f of DATASET_SOURCES["ml-1m"].files) {
        assert.deepEqual(
          await Deno.readFile(`${root}/dmpo/ml-1m/${f}`),
          await Deno.readFile(`${SHARED}/dmpo/ml-1m/${f}`),
        );
      }
      const summary = out.find((l) => / files \(/.test(l))!;
      assert.match(summary, /^16 files \(16 downloaded, 0 already there\)/);
      assert.ok(out.some((l) => l.startsWith("terms of github.com/BZX667/DMPO: ")));
    } finally {
      console.log = log;
      console.error = error;
      await server.shutdown();
      await Deno.remove(root, { recursive: true });
    }
  },
});
