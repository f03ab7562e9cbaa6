/**
 * `deno task reproduce --dataset …`: the released data sets as experiment inputs
 * (src/experiments/datasets.ts). Tests that read the released files (never copied into the
 * project) read them from `$RECALIGN_DATA`, else the default data root (`data/raw/`, filled by
 * `deno task data fetch`), else `../shared/data`, and are ignored, visibly, when none has them.
 */
import assert from "node:assert/strict";
import { initBackend } from "../../src/backend.ts";
import { SCALE_PRESETS } from "../../src/experiments/common.ts";
import { BASELINE_ROWS } from "../../src/experiments/baselines.ts";
import {
  DatasetError,
  DATASETS,
  defaultDataRoot,
  dmpoDataset,
  dmpoFewShotRows,
  lastfmSdpo,
  lastfmUsers,
  notApplicable,
  PAPER_DATASETS,
} from "../../src/experiments/datasets.ts";
import { SDPO_TEMPLATES } from "../../src/data/prompts.ts";
import { readSdpoFile } from "../../src/data/sdpo.ts";
import {
  DMPO_FILES,
  type DmpoSample as FileDmpoSample,
  readDmpoFile,
} from "../../src/data/dmpo.ts";
import { MOVIE_WORDING } from "../../src/data/prompts.ts";
import { dmpoProtocol } from "../../src/experiments/dmpo.ts";
import { main } from "../../src/cli/reproduce.ts";

const CLI = new URL("../../src/cli/reproduce.ts", import.meta.url).pathname;
const isFile = (path: string) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
};
const SHARED = new URL("../../../shared/data", import.meta.url).pathname;
const ROOT = Deno.env.get("RECALIGN_DATA") ||
  (isFile(`${defaultDataRoot()}/sdpo-lastfm/lastfm-test.json`) ? defaultDataRoot() : SHARED);
const has = (rel: string) => isFile(`${ROOT}/${rel}`);
const HAVE_LASTFM = has("sdpo-lastfm/lastfm-test.json") && has("sdpo-lastfm/lastfm-val.json");
const HAVE_ML1M = has("dmpo/ml-1m/rec_data_ml_1m_eval_ranking.json");
const HAVE_AMAZON = has("dmpo/amazon-movie/rec_Amazon_Movie_eval_ranking.json");
const why = (ok: boolean, what: string) => ok ? "" : ` (ignored: ${ROOT}/${what} is absent)`;

async function cli(...args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, err: new TextDecoder().decode(r.stderr).trim() };
}

// ---------------------------------------------------------------------------------------
// Flags (no data needed)

Deno.test("reproduce: a bad --dataset exits 2 naming the allowed values", async () => {
  const r = await cli("--dataset", "movielens", "--scale", "test");
  assert.equal(r.code, 2);
  assert.equal(r.err.split("\n").length, 1, r.err);
  assert.match(r.err, /--dataset/);
  for (const d of DATASETS) assert.ok(r.err.includes(d), `${d} named in: ${r.err}`);
});

Deno.test("reproduce: --paper dpo4rec on a released data set exits 2 with one line", async () => {
  const r = await cli("--paper", "dpo4rec", "--dataset", "lastfm", "--scale", "test");
  assert.equal(r.code, 2);
  assert.equal(r.err.split("\n").length, 1, r.err);
  assert.match(r.err, /DPO4Rec is not available on --dataset lastfm/);
  const s = await cli("--paper", "sdpo", "--dataset", "ml-1m", "--scale", "test");
  assert.equal(s.code, 2);
  assert.match(s.err, /S-DPO does not run on --dataset ml-1m.*synthetic, lastfm/);
});

Deno.test("reproduce: a missing data folder exits 2 naming the path and what to do", async () => {
  const dir = await Deno.makeTempDir({ prefix: "recalign-nodata-" });
  try {
    const r = await cli("--dataset", "ml-1m", "--data", dir, "--scale", "test", "--out", dir);
    assert.equal(r.code, 2);
    const last = r.err.split("\n").at(-1)!;
    assert.ok(last.includes(`${dir}/dmpo/ml-1m`), last);
    assert.match(last, /github\.com\/BZX667\/DMPO/);
    assert.match(last, /--data/);
    assert.match(last, /run `deno task data fetch`/);
    assert.ok(!/at .*\.ts:\d+/.test(r.err), "no stack trace");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("datasets: which paper runs where", () => {
  assert.deepEqual(PAPER_DATASETS.sdpo, ["synthetic", "lastfm"]);
  assert.deepEqual(PAPER_DATASETS.dmpo, ["synthetic", "ml-1m", "amazon-movie"]);
  assert.deepEqual(PAPER_DATASETS.dpo4rec, ["synthetic"]);
  assert.equal(notApplicable("sdpo", "lastfm"), undefined);
  assert.match(notApplicable("dpo4rec", "ml-1m")!, /reward/);
  assert.match(notApplicable("dmpo", "lastfm")!, /synthetic, ml-1m, amazon-movie/);
});

Deno.test("lastfmUsers splits sliding-window rows into users", () => {
  const row = (h: string[], p: string) => ({
    history: h,
    candidates: [p],
    positive: p,
    negatives: [],
  });
  const rows = [
    row(["a", "b"], "c"),
    row(["a", "b", "c"], "d"),
    row(["x"], "y"),
    row(["x", "y"], "z"),
    row(["a", "b"], "c"),
  ];
  assert.deepEqual(lastfmUsers(rows), [0, 0, 1, 1, 2]);
});

// ---------------------------------------------------------------------------------------
// Builders on the released files

Deno.test({
  name: `lastfmSdpo: train = val rows minus duplicate and test overlap, prompts as FORMATS.md${
    why(HAVE_LASTFM, "sdpo-lastfm")
  }`,
  ignore: !HAVE_LASTFM,
  fn: async () => {
    // Val and test only (a fetched train file in ROOT would replace the val stand-in).
    const root = await Deno.makeTempDir({ prefix: "recalign-lastfm-" });
    await Deno.mkdir(`${root}/sdpo-lastfm`);
    for (const f of ["lastfm-val.json", "lastfm-test.json"]) {
      await Deno.copyFile(`${ROOT}/sdpo-lastfm/${f}`, `${root}/sdpo-lastfm/${f}`);
    }
    const { data, notes, tableReferences } = await lastfmSdpo(SCALE_PRESETS.tiny, root)
      .finally(() => Deno.remove(root, { recursive: true }));
    const val = await readSdpoFile(`${ROOT}/sdpo-lastfm/lastfm-val.json`, { onSummary: () => {} });
    const test = await readSdpoFile(`${ROOT}/sdpo-lastfm/lastfm-test.json`, {
      onSummary: () => {},
    });
    assert.equal(data.name, "lastfm");
    assert.equal(data.trainExamples.length, val.length - 1 - 3); // README: 1 duplicate, 3 overlaps
    assert.equal(data.test.length, SCALE_PRESETS.tiny.sdpoTest);
    const testKeys = new Set(test.map((r) => JSON.stringify([r.history, r.positive])));
    for (const s of data.prefSamples) {
      assert.ok(!testKeys.has(JSON.stringify([s.history, s.positive])), "no train/test overlap");
    }
    const templates = SDPO_TEMPLATES.music.map((t) => t.trim());
    for (const s of data.test) {
      const p = data.text.prompt(s);
      assert.ok(p.endsWith("Answer:"), p.slice(-20));
      // Exactly one template, filled with the raw names joined by ", ".
      const filled = templates.map((t) =>
        t.replaceAll("[HistoryHere]", () => s.history.join(", "))
          .replaceAll("[CansHere]", () => s.candidates.join(", "))
      );
      assert.ok(filled.includes(p), p);
      assert.equal(s.candidates[s.positiveIndex], s.positive);
      assert.equal(s.candidateIds.length, 20);
      // Every name is in the vocabulary.
      for (const c of s.candidates) assert.ok(!data.tok.encode(c).includes(3), c);
    }
    assert.ok(data.text.maxNewTokens <= 20);
    assert.deepEqual(Object.keys(tableReferences).slice(0, 2), ["Oracle", "History-Bayes"]);
    assert.deepEqual(tableReferences.Oracle, {});
    assert.ok(notes.some((n) => /no train file/i.test(n)));
    assert.equal(data.config.hidden_size, 64);
    for (const e of data.prefExamples) assert.equal(e.rejected!.length, 8);
  },
});

/** A LastFM-format folder of made-up rows: `users` users × `rows` sliding-window rows each. */
async function fakeLastfm(root: string, files: Record<string, number>): Promise<void> {
  await Deno.mkdir(`${root}/sdpo-lastfm`, { recursive: true });
  const names = Array.from(
    { length: 60 },
    (_, i) => `Band ${String.fromCharCode(65 + (i % 26))}${i}`,
  );
  let offset = 0;
  for (const [file, users] of Object.entries(files)) {
    const rows = [];
    for (let u = 0; u < users; u++) {
      const seq = Array.from({ length: 8 }, (_, j) => names[(offset + u * 7 + j * 3) % 60]);
      for (let t = 3; t < 8; t++) {
        const answer = seq[t];
        const others = names.filter((n) => !seq.includes(n)).slice(u % 10, (u % 10) + 19);
        const items = [...others.slice(0, t), answer, ...others.slice(t)];
        rows.push({
          historyList: seq.slice(0, t).join("::"),
          itemList: items,
          trueSelection: answer,
        });
      }
    }
    if (file === "lastfm-train.json") rows.push(rows[0]); // one exact duplicate, kept as released
    offset += 17;
    await Deno.writeTextFile(`${root}/sdpo-lastfm/${file}`, JSON.stringify(rows, null, 4));
  }
}

Deno.test("lastfmSdpo: S-DPO's lastfm-train.json, when present, is the training set as released", async () => {
  const root = await Deno.makeTempDir({ prefix: "recalign-lastfm-train-" });
  try {
    await fakeLastfm(root, { "lastfm-val.json": 4, "lastfm-test.json": 4 });
    const without = await lastfmSdpo(SCALE_PRESETS.test, root);
    assert.equal(without.data.trainExamples.length, 4 * 5); // the val rows
    assert.ok(without.notes.some((n) => /There is no train file .*deno task data fetch/.test(n)));
    await fakeLastfm(root, { "lastfm-train.json": 6 });
    const withTrain = await lastfmSdpo(SCALE_PRESETS.test, root);
    // Every train row, its duplicate too (4 val rows stay out of training).
    assert.equal(withTrain.data.trainExamples.length, 6 * 5 + 1);
    assert.match(String(withTrain.data.describe.train), /^lastfm-train\.json as released: 31 rows/);
    assert.ok(
      withTrain.notes[0].includes("S-DPO's own lastfm-train.json as released, all 31 rows"),
    );
    assert.ok(
      withTrain.notes[0].includes("1 exact duplicate row and 0 rows whose"),
      withTrain.notes[0],
    );
    assert.ok(!withTrain.notes.some((n) => /no train file/i.test(n)));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

// A made-up released layout: user u has history [h<u>], positive P<u>, negatives N<u>a..c; the
// K=1 file holds each user's first pair, the K=3 file its three pairs, each question naming
// the positive and that row's negative (in the order a coin gives).
function fakeRow(u: number, neg: string, swap = false): FileDmpoSample {
  const p = `P${u}`, n = `N${u}${neg}`;
  return {
    history: [`h${u}`],
    candidates: swap ? [n, p] : [p, n],
    positive: p,
    negative: n,
    wording: MOVIE_WORDING,
    outputKind: "pair",
    input: "",
  };
}

Deno.test("dmpoFewShotRows: one pair row per K=3 negative, the first users kept, the rest returned", () => {
  const k1 = [0, 1, 2].map((u) => fakeRow(u, "a"));
  const k3 = [0, 1, 2].flatMap((u) => ["a", "b", "c"].map((n, j) => fakeRow(u, n, j === 1)));
  const { k1: one, k3: three, rest } = dmpoFewShotRows(k1, k3, 2, "ml-1m");
  assert.deepEqual(one.map((s) => s.positive), ["P0", "P1"]);
  // 2 users × 3 rows, grouped by user, each with one negative that its question names.
  assert.deepEqual(three.map((s) => s.negative), ["N0a", "N0b", "N0c", "N1a", "N1b", "N1c"]);
  for (const s of three) {
    assert.ok(s.candidates.includes(s.negative) && s.candidates.includes(s.positive));
  }
  // Row 0 of each user is its K=1 pair (the SFT pair).
  assert.deepEqual(three[3], one[1]);
  // The third user's K=1 and K=3 rows are left for stage 0.
  assert.deepEqual(rest.map((s) => s.negative), ["N2a", "N2a", "N2b", "N2c"]);
  // More users asked than the files hold: all of them.
  assert.equal(dmpoFewShotRows(k1, k3, 100, "ml-1m").k3.length, 9);
  // A K=1 user without K=3 rows, or with another first negative: one line naming the row.
  assert.throws(
    () => dmpoFewShotRows(k1, k3.slice(0, 6), 3, "ml-1m"),
    (e: Error) =>
      e instanceof DatasetError && /K=1 row 2 .*no rows in the K=3 file/.test(e.message),
  );
  assert.throws(
    () => dmpoFewShotRows([k1[0], fakeRow(1, "b")], k3, 2, "ml-1m"),
    (e: Error) =>
      e instanceof DatasetError && /K=1 row 1 names negative "N1b".*"N1a"/.test(e.message),
  );
});

Deno.test({
  name: `dmpoFewShotRows on a slice of the released ML-1M and Amazon Movie files${
    why(HAVE_ML1M && HAVE_AMAZON, "dmpo")
  }`,
  ignore: !HAVE_ML1M || !HAVE_AMAZON,
  fn: async () => {
    for (const [name, folder] of [["ml-1m", "ml-1m"], ["amazon-movie", "amazon-movie"]] as const) {
      const files = DMPO_FILES[name];
      const read = (f: string) =>
        readDmpoFile(`${ROOT}/dmpo/${folder}/${f}`, { onSummary: () => {} });
      // The first 5 users (15 rows of the K=3 file).
      const k1 = (await read(files.dpo[0])).slice(0, 5);
      const k3 = (await read(files.dpo[2])).slice(0, 15);
      const got = dmpoFewShotRows(k1, k3, 5, name);
      assert.equal(got.k3.length, 15, name);
      assert.equal(got.rest.length, 0, name);
      got.k1.forEach((s, u) => {
        const rows = got.k3.slice(3 * u, 3 * u + 3);
        // Three distinct negatives, each named by its own question beside the positive.
        assert.equal(new Set(rows.map((r) => r.negative)).size, 3, `${name} user ${u}`);
        for (const r of rows) {
          assert.equal(r.positive, s.positive);
          assert.deepEqual([...r.candidates].sort(), [r.positive, r.negative].sort());
        }
        assert.equal(rows[0].negative, s.negative);
      });
    }
  },
});

Deno.test({
  name: `dmpoDataset(ml-1m): K=1/K=3 pair rows, eval titles in the training form${
    why(HAVE_ML1M, "dmpo/ml-1m")
  }`,
  ignore: !HAVE_ML1M,
  fn: async () => {
    const { data, tableReferences, notes } = await dmpoDataset(
      "ml-1m",
      SCALE_PRESETS.test,
      "title",
      ROOT,
    );
    // The test scale's few-shot users (8), K=3 as 3 pair rows each, one negative per row.
    const users = dmpoProtocol(SCALE_PRESETS.test).users;
    assert.equal(data.train1.length, users);
    assert.equal(data.train3.length, 3 * users);
    assert.ok([...data.train1, ...data.train3].every((e) => e.rejected.length === 1));
    assert.equal(data.test.length, SCALE_PRESETS.test.dmpoTest);
    assert.equal(data.baselineTest.length, data.test.length);
    // Row 0 of each user's K=3 rows is its K=1 pair (the SFT pair); rows 1, 2 name another
    // negative in another prompt, with the same chosen title.
    data.train1.forEach((e, i) => {
      const rows = data.train3.slice(3 * i, 3 * i + 3);
      // (same pair; the files may name its two titles in another order)
      assert.deepEqual([rows[0].chosen, rows[0].rejected], [e.chosen, e.rejected]);
      for (const r of rows.slice(1)) {
        assert.deepEqual(r.chosen, e.chosen);
        assert.notDeepEqual(r.prompt, e.prompt);
        assert.notDeepEqual(r.rejected[0], e.rejected[0]);
        // The prompt names the rejected title.
        const rejected = /<Title:([^>]*)>/.exec(data.tok.decode(r.rejected[0]))![1].trim();
        assert.ok(data.tok.decode(r.prompt).includes(rejected), rejected);
      }
    });
    // Steps by epochs, as on the synthetic world; the notes name the pair-row form.
    assert.equal(data.sftSteps, Math.ceil((2 * users) / SCALE_PRESETS.test.batchSize));
    assert.match(notes[0], /K negatives = K pair prompts per user/);
    // ML-1M eval titles are cut: no "(19xx)" year reaches the model.
    const text = data.test.map((e) => data.tok.decode(e.prompt)).join(" ");
    assert.ok(!/\(19\d\d\)/.test(text));
    assert.ok(data.stage0.length > 1000);
    for (const e of [...data.train3, ...data.test]) {
      assert.ok(e.prompt.length + e.chosen.length <= data.config.max_position_embeddings);
    }
    assert.deepEqual(tableReferences["History-Bayes"], {});
    const pop = tableReferences.Popularity.auc_paired;
    assert.ok(pop >= 0 && pop <= 1);
  },
});

Deno.test({
  name: `dmpoDataset(amazon-movie, ranking): K=1 from dpo_ranking_1_old, ranking responses${
    why(HAVE_AMAZON, "dmpo/amazon-movie")
  }`,
  ignore: !HAVE_AMAZON,
  fn: async () => {
    const { data } = await dmpoDataset("amazon-movie", SCALE_PRESETS.test, "ranking", ROOT);
    // _old: the SFT users (the registered file has 200 others); the test scale keeps 8 of 100.
    assert.equal(data.train1.length, dmpoProtocol(SCALE_PRESETS.test).users);
    assert.equal(data.train3.length, 3 * data.train1.length);
    assert.equal(data.response, "ranking");
    const e = data.test[0];
    // Chosen and rejected rankings hold the same tokens in another order.
    assert.deepEqual([...e.chosen].sort(), [...e.rejected[0]].sort());
    assert.notDeepEqual(e.chosen, e.rejected[0]);
    assert.match((data.describe.files as { k1_and_sft: string }).k1_and_sft, /_old\.json$/);
  },
});

// ---------------------------------------------------------------------------------------
// End to end (test scale)

await initBackend("wasm", { quiet: true });

function checkUnit(m: Record<string, unknown>, fields: string[], label: string) {
  for (
    const s of (m.result as { per_seed: { methods: Record<string, Record<string, unknown>> }[] })
      .per_seed
  ) {
    for (const [method, v] of Object.entries(s.methods)) {
      const isBaseline = Object.values(BASELINE_ROWS).includes(method);
      for (const f of isBaseline ? fields.filter((u) => !/gen|valid/.test(u)) : fields) {
        const x = v[f] as number;
        assert.ok(Number.isFinite(x) && x >= 0 && x <= 1, `${label} ${method} ${f} = ${x}`);
      }
    }
  }
}

Deno.test({
  name: `reproduce --paper sdpo --dataset lastfm --scale test writes parseable artefacts${
    why(HAVE_LASTFM, "sdpo-lastfm")
  }`,
  ignore: !HAVE_LASTFM,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "recalign-lastfm-" });
    try {
      const dirs = await main([
        "--paper",
        "sdpo",
        "--dataset",
        "lastfm",
        "--scale",
        "test",
        "--out",
        out,
        "--data",
        ROOT,
      ]);
      assert.deepEqual(dirs, [`${out}/sdpo/lastfm`]);
      const m = JSON.parse(await Deno.readTextFile(`${out}/sdpo/lastfm/metrics.json`));
      assert.equal(m.paper, "sdpo");
      assert.equal(m.dataset, "lastfm");
      assert.equal(m.result.config.dataset, "lastfm");
      assert.equal(m.result.ablations, undefined);
      checkUnit(m, ["hr1_rank", "ndcg5_rank", "hr1_gen_all", "valid_ratio"], "lastfm");
      const table = await Deno.readTextFile(`${out}/sdpo/lastfm/table.md`);
      assert.match(table, /^# S-DPO on LastFM/);
      assert.match(table, /\| \*Oracle\* \(reference\) \| not available \|/);
      assert.match(table, /\| SASRec \|/);
      assert.ok((await Deno.readTextFile(`${out}/sdpo/lastfm/findings.md`)).length > 0);
      const index = await Deno.readTextFile(`${out}/README.md`);
      assert.match(index, /sdpo \/ lastfm \| \[metrics\.json\]\(sdpo\/lastfm\/metrics\.json\)/);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: `reproduce --paper dmpo --dataset ml-1m --scale test writes parseable artefacts${
    why(HAVE_ML1M, "dmpo/ml-1m")
  }`,
  ignore: !HAVE_ML1M,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "recalign-ml1m-" });
    try {
      const dirs = await main([
        "--paper",
        "all",
        "--dataset",
        "ml-1m",
        "--scale",
        "test",
        "--out",
        out,
        "--data",
        ROOT,
      ]);
      // --paper all on ml-1m runs DMPO only (S-DPO and DPO4Rec are skipped).
      assert.deepEqual(dirs, [`${out}/dmpo/ml-1m`]);
      const m = JSON.parse(await Deno.readTextFile(`${out}/dmpo/ml-1m/metrics.json`));
      assert.equal(m.dataset, "ml-1m");
      checkUnit(m, ["auc_released", "auc_paired"], "ml-1m");
      const table = await Deno.readTextFile(`${out}/dmpo/ml-1m/table.md`);
      assert.match(table, /^# DMPO on MovieLens-1M/);
      assert.match(table, /\| SFT\+DMPO K=3 \|/);
      assert.match(table, /\| \*Oracle\* \(reference\) \| not available \| not available \|/);
      const index = await Deno.readTextFile(`${out}/README.md`);
      assert.match(index, /dmpo \/ ml-1m/);
      assert.ok(!/sdpo \//.test(index));
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
