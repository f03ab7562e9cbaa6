import assert from "node:assert/strict";
import { DataFormatError, InputError } from "../../src/errors.ts";
import {
  buildDataset,
  type BuildOptions,
  decodeRawText,
  parseGoodreadsDate,
} from "../../src/data/build.ts";
import { loadSdpoFile } from "../../src/data/sdpo.ts";
import { loadDmpoFile } from "../../src/data/dmpo.ts";

const latin1 = (s: string) => new Uint8Array([...s].map((c) => c.charCodeAt(0)));

/** 40 movies (movie 7 is "Café (1999)" in Latin-1), 3 users; user 1 has a known order. */
async function writeMl1m(dir: string, extraRatings: string[] = []): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const movies = Array.from(
    { length: 40 },
    (_, i) =>
      i + 1 === 7 ? "7::Caf\u00e9 (1999)::Drama" : `${i + 1}::Film ${i + 1} (19${50 + i})::Drama`,
  );
  await Deno.writeFile(`${dir}/movies.dat`, latin1(movies.join("\n") + "\n"));
  const ratings = [
    // user 1: times out of file order -> chronological 3, 7, 5, 9, 2 (movie ids)
    "1::5::4::300",
    "1::3::5::100",
    "1::9::3::400",
    "1::7::4::200",
    "1::2::1::500",
    ...[11, 12, 13, 14].map((m, k) => `2::${m}::4::${10 + k}`),
    ...[21, 22, 23].map((m, k) => `3::${m}::4::${10 + k}`),
    ...extraRatings,
  ];
  await Deno.writeTextFile(`${dir}/ratings.dat`, ratings.join("\r\n") + "\r\n");
}

async function tmp(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "build_test_" });
}

Deno.test("buildDataset('ml-1m') builds leave-last-out S-DPO and DMPO rows checked by hand", async () => {
  const dir = await tmp();
  try {
    await writeMl1m(`${dir}/raw`);
    const s = await buildDataset("ml-1m", `${dir}/raw`, `${dir}/out`, {
      seed: 1,
      negativePool: "catalogue",
    });
    assert.equal(s.rowsRead, 12);
    assert.equal(s.kept, 12);
    assert.equal(s.users, 3);
    assert.equal(s.inputs[0].encoding, "latin1");
    const test = (await loadSdpoFile(`${dir}/out/sdpo/test.json`)).samples;
    const valid = (await loadSdpoFile(`${dir}/out/sdpo/valid.json`)).samples;
    const train = (await loadSdpoFile(`${dir}/out/sdpo/train.json`)).samples;
    // user 1: Film 3, Café, Film 5, Film 9, Film 2 in time order.
    assert.deepEqual(test[0].history, [
      "Film 3 (1952)",
      "Caf\u00e9 (1999)",
      "Film 5 (1954)",
      "Film 9 (1958)",
    ]);
    assert.equal(test[0].positive, "Film 2 (1951)");
    assert.deepEqual(valid[0].history, ["Film 3 (1952)", "Caf\u00e9 (1999)", "Film 5 (1954)"]);
    assert.equal(valid[0].positive, "Film 9 (1958)");
    assert.deepEqual(
      train.slice(0, 2).map((x) => [x.history, x.positive]),
      [
        [["Film 3 (1952)"], "Caf\u00e9 (1999)"],
        [["Film 3 (1952)", "Caf\u00e9 (1999)"], "Film 5 (1954)"],
      ],
    );
    // user 3 (3 items): no training rows; users 1, 2, 3 -> 2 + 1 + 0 training rows.
    assert.equal(train.length, 3);
    assert.deepEqual([test[2].history, test[2].positive], [
      ["Film 21 (1970)", "Film 22 (1971)"],
      "Film 23 (1972)",
    ]);
    const user1 = new Set([
      "Film 3 (1952)",
      "Caf\u00e9 (1999)",
      "Film 5 (1954)",
      "Film 9 (1958)",
      "Film 2 (1951)",
    ]);
    for (const x of [...train, ...valid, ...test]) {
      assert.equal(x.candidates.length, 20);
      assert.equal(new Set(x.candidates).size, 20);
      assert.ok(x.candidates.includes(x.positive));
    }
    for (const x of [test[0], valid[0], train[0], train[1]]) {
      for (const c of x.negatives) assert.ok(!user1.has(c), c);
    }
    // The file is laid out like the released LastFM files (indent 4, ASCII escapes).
    const text = await Deno.readTextFile(`${dir}/out/sdpo/test.json`);
    assert.ok(
      text.startsWith('[\n    {\n        "historyList": "Film 3 (1952)::Caf\\u00e9 (1999)::'),
    );
    // DMPO: sft = one row per training target, dpo = k = 3 rows per target, eval pairs.
    const sft = (await loadDmpoFile(`${dir}/out/dmpo/sft.json`)).samples;
    const dpo = (await loadDmpoFile(`${dir}/out/dmpo/dpo_k3.json`)).samples;
    const dtest = (await loadDmpoFile(`${dir}/out/dmpo/test.json`)).samples;
    assert.equal(sft.length, 3);
    assert.equal(dpo.length, 9);
    assert.equal(sft[0].outputKind, "string");
    assert.equal(dpo[0].outputKind, "pair");
    assert.deepEqual(dpo.slice(0, 3).map((x) => x.positive), Array(3).fill("Caf\u00e9 (1999)"));
    assert.equal(new Set(dpo.slice(0, 3).map((x) => x.negative)).size, 3);
    assert.deepEqual(
      dpo.slice(0, 3).map((x) => x.negative),
      train[0].candidates.filter((c) => c !== train[0].positive).length === 19
        ? dpo.slice(0, 3).map((x) => x.negative)
        : [],
    );
    for (const x of dpo.slice(0, 3)) assert.ok(train[0].negatives.includes(x.negative));
    assert.equal(dtest[0].positive, "Film 2 (1951)");
    assert.equal(dtest[0].wording.domain, "movie");
    const saved = JSON.parse(await Deno.readTextFile(`${dir}/out/summary.json`));
    assert.deepEqual(saved.outputs["dmpo/dpo_k3.json"], 9);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildDataset() is deterministic for a seed and differs across seeds", async () => {
  const dir = await tmp();
  try {
    await writeMl1m(`${dir}/raw`);
    const read = async (out: string) =>
      (await Promise.all(
        ["sdpo/train.json", "sdpo/test.json", "dmpo/dpo_k3.json"].map((f) =>
          Deno.readTextFile(`${out}/${f}`)
        ),
      )).join("\n");
    await buildDataset("ml-1m", `${dir}/raw`, `${dir}/a`, { seed: 5, negativePool: "catalogue" });
    await buildDataset("ml-1m", `${dir}/raw`, `${dir}/b`, { seed: 5, negativePool: "catalogue" });
    await buildDataset("ml-1m", `${dir}/raw`, `${dir}/c`, { seed: 6, negativePool: "catalogue" });
    assert.equal(await read(`${dir}/a`), await read(`${dir}/b`));
    assert.notEqual(await read(`${dir}/a`), await read(`${dir}/c`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildDataset('ml-1m') names file, line and field of a bad line, or counts it when lenient", async () => {
  const dir = await tmp();
  try {
    await writeMl1m(`${dir}/raw`, ["4::1::x::5", "4::999::4::6"]);
    await assert.rejects(
      () => buildDataset("ml-1m", `${dir}/raw`, `${dir}/out`, { negativePool: "catalogue" }),
      (err: unknown) => {
        assert.ok(err instanceof DataFormatError);
        assert.equal(err.file, `${dir}/raw/ratings.dat`);
        assert.equal(err.row, 13);
        assert.equal(err.field, "Rating");
        assert.match(
          err.message,
          /ratings\.dat, row 13, field "Rating": line 13: expected a number, got "x"/,
        );
        return true;
      },
    );
    const s = await buildDataset("ml-1m", `${dir}/raw`, `${dir}/out`, {
      lenient: true,
      negativePool: "catalogue",
    });
    assert.deepEqual(s.dropped, { "malformed line": 1, "unknown item id": 1 });
    assert.deepEqual(s.dropExamples["unknown item id"], [
      `${dir}/raw/ratings.dat:14: MovieID 999 not in movies.dat`,
    ]);
    assert.equal(s.rowsRead, 14);
    assert.equal(s.kept, 12);
    // Without lenient an unknown id is still a counted drop, never silent.
    await writeMl1m(`${dir}/raw`, ["4::999::4::6"]);
    const strict = await buildDataset("ml-1m", `${dir}/raw`, `${dir}/out2`, {
      negativePool: "catalogue",
    });
    assert.deepEqual(strict.dropped, { "unknown item id": 1 });
    // Too few items for 19 negatives among interacted items: a clear error.
    await assert.rejects(
      () => buildDataset("ml-1m", `${dir}/raw`, `${dir}/out4`),
      InputError,
      "only 12 distinct items",
    );
    // Declared UTF-8 on a Latin-1 file: a located encoding error.
    await assert.rejects(
      () =>
        buildDataset("ml-1m", `${dir}/raw`, `${dir}/out3`, {
          encoding: "utf-8",
          negativePool: "catalogue",
        }),
      DataFormatError,
      "movies.dat",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decodeRawText() reads UTF-8 when valid, else Latin-1", () => {
  assert.deepEqual(decodeRawText(latin1("Caf\u00e9"), "f"), {
    text: "Caf\u00e9",
    encoding: "latin1",
  });
  assert.deepEqual(decodeRawText(new TextEncoder().encode("Caf\u00e9"), "f"), {
    text: "Caf\u00e9",
    encoding: "utf-8",
  });
});

const SMALL: BuildOptions = {
  candidates: 5,
  dmpoNegatives: 2,
  maxHistory: 3,
  seed: 2,
  negativePool: "catalogue",
};

Deno.test("buildDataset('lastfm') orders by first tag time, else by file order", async () => {
  const dir = await tmp();
  try {
    const raw = `${dir}/raw`;
    await Deno.mkdir(raw);
    const artists = [
      "id\tname\turl\tpictureURL",
      ...Array.from(
        { length: 12 },
        (_, i) => `${i + 1}\tArtist ${String.fromCharCode(65 + i)}\thttp://x\thttp://y`,
      ),
    ];
    await Deno.writeTextFile(`${raw}/artists.dat`, artists.join("\n") + "\n");
    await Deno.writeTextFile(
      `${raw}/user_artists.dat`,
      [
        "userID\tartistID\tweight",
        "2\t1\t10",
        "2\t2\t5",
        "2\t3\t7",
        "2\t4\t1",
        "2\t99\t3",
        "3\t5\t1",
        "3\t6\t1",
        "3\t7\t1",
      ].join("\n") + "\n",
    );
    const s1 = await buildDataset("lastfm", raw, `${dir}/o1`, SMALL);
    assert.match(s1.order, /file order/);
    assert.equal(s1.dropped["unknown item id"], 1);
    let test = (await loadSdpoFile(`${dir}/o1/sdpo/test.json`)).samples;
    assert.deepEqual([test[0].history, test[0].positive], [
      ["Artist A", "Artist B", "Artist C"],
      "Artist D",
    ]);
    await Deno.writeTextFile(
      `${raw}/user_taggedartists-timestamps.dat`,
      [
        "userID\tartistID\ttagID\ttimestamp",
        "2\t1\t7\t4000",
        "2\t2\t7\t1000",
        "2\t3\t7\t3000",
        "2\t3\t8\t2000",
        "3\t5\t1\t1",
        "3\t6\t1\t2",
        "3\t7\t1\t3",
      ].join("\n") + "\n",
    );
    const s2 = await buildDataset("lastfm", raw, `${dir}/o2`, SMALL);
    assert.match(s2.order, /first tag/);
    assert.equal(s2.dropped["no timestamp (pair never tagged)"], 1); // 2 / 4
    test = (await loadSdpoFile(`${dir}/o2/sdpo/test.json`)).samples;
    assert.deepEqual([test[0].history, test[0].positive], [["Artist B", "Artist C"], "Artist A"]);
    const d = (await loadDmpoFile(`${dir}/o2/dmpo/test.json`)).samples;
    assert.equal(d[0].wording.consumed, "listened to");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function gzip(text: string): Promise<Uint8Array> {
  const s = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

Deno.test("buildDataset('amazon') reads 2018 and 2023 JSON lines (gzip too) and locates bad lines", async () => {
  const dir = await tmp();
  try {
    const raw = `${dir}/raw`;
    await Deno.mkdir(raw);
    const meta = Array.from(
      { length: 12 },
      (_, i) => JSON.stringify({ asin: `B${i}`, title: `Item ${i}` }),
    );
    meta.push(JSON.stringify({ asin: "B99" })); // no title
    await Deno.writeFile(`${raw}/meta_Movies.json.gz`, await gzip(meta.join("\n") + "\n"));
    const reviews = [
      { reviewerID: "u1", asin: "B3", unixReviewTime: 30, overall: 5 },
      { reviewerID: "u1", asin: "B1", unixReviewTime: 10, overall: 5 },
      { user_id: "u1", parent_asin: "B2", timestamp: 20000, rating: 4 },
      { reviewerID: "u1", asin: "B4", unixReviewTime: 40, overall: 5 },
      { reviewerID: "u1", asin: "B99", unixReviewTime: 50, overall: 5 },
    ].map((x) => JSON.stringify(x));
    await Deno.writeTextFile(`${raw}/Movies.jsonl`, reviews.join("\n") + "\n");
    const s = await buildDataset("amazon", raw, `${dir}/out`, SMALL);
    assert.equal(s.dropped["unknown item id"], 1);
    assert.equal(s.dropped["metadata without title"], 1);
    const test = (await loadSdpoFile(`${dir}/out/sdpo/test.json`)).samples;
    assert.deepEqual([test[0].history, test[0].positive], [
      ["Item 1", "Item 2", "Item 3"],
      "Item 4",
    ]);
    await Deno.writeTextFile(`${raw}/Movies.jsonl`, '{"reviewerID": "u2", "asin": "B1"}\n', {
      append: true,
    });
    await assert.rejects(
      () => buildDataset("amazon", raw, `${dir}/out2`, SMALL),
      DataFormatError,
      'Movies.jsonl, row 6, field "unixReviewTime": line 6: missing',
    );
    await Deno.writeFile(`${raw}/Movies.jsonl`, new Uint8Array([0x7b, 0xff, 0x7d, 0x0a]));
    await assert.rejects(
      () => buildDataset("amazon", raw, `${dir}/out3`, SMALL),
      DataFormatError,
      "invalid UTF-8",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseGoodreadsDate() and buildDataset('goodreads') order by date_added", async () => {
  assert.equal(
    parseGoodreadsDate("Tue Oct 17 09:39:38 -0700 2017"),
    Date.UTC(2017, 9, 17, 16, 39, 38) / 1000,
  );
  assert.equal(parseGoodreadsDate("yesterday"), undefined);
  const dir = await tmp();
  try {
    const raw = `${dir}/raw`;
    await Deno.mkdir(raw);
    const books = Array.from(
      { length: 12 },
      (_, i) => JSON.stringify({ book_id: String(100 + i), title: `Book ${i}` }),
    );
    await Deno.writeTextFile(`${raw}/goodreads_books_poetry.json`, books.join("\n") + "\n");
    const dates = [
      "Mon Jan 02 10:00:00 -0800 2017",
      "Sun Jan 01 10:00:00 -0800 2017",
      "Tue Jan 03 10:00:00 -0800 2017",
      "Wed Jan 04 10:00:00 -0800 2017",
    ];
    const inter = [103, 101, 102, 104].map((b, k) =>
      JSON.stringify({ user_id: "x", book_id: String(b), rating: 3, date_added: dates[k] })
    );
    await Deno.writeTextFile(`${raw}/goodreads_interactions_poetry.json`, inter.join("\n") + "\n");
    await buildDataset("goodreads", raw, `${dir}/out`, SMALL);
    const test = (await loadSdpoFile(`${dir}/out/sdpo/test.json`)).samples;
    assert.deepEqual([test[0].history, test[0].positive], [
      ["Book 1", "Book 3", "Book 2"],
      "Book 4",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
