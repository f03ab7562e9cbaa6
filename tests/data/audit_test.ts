import assert from "node:assert/strict";
import { auditPath, findingCount, formatAuditMarkdown } from "../../src/data/audit.ts";
import { buildDataset } from "../../src/data/build.ts";

/** The released data (never copied into the project); the test is ignored without it. */
const DATA = new URL("../../../shared/data/", import.meta.url);
const HAVE_DATA = (() => {
  try {
    return Deno.statSync(DATA).isDirectory;
  } catch {
    return false;
  }
})();
if (!HAVE_DATA) console.warn(`audit_test: ${DATA.pathname} absent, real-data test ignored`);

Deno.test({
  name: "auditPath() finds the README's defects in the released data with the stated counts",
  ignore: !HAVE_DATA,
  fn: async () => {
    const r = await auditPath(DATA.pathname);
    const n = (kind: Parameters<typeof findingCount>[1], scope: string) =>
      findingCount(r, kind, scope);
    const T = "sdpo-lastfm/lastfm-test.json", V = "sdpo-lastfm/lastfm-val.json";
    // S-DPO LastFM, README defects 1-4.
    assert.equal(n("duplicate-row", T), 1);
    assert.equal(n("duplicate-row", V), 1);
    const dupT = r.findings.find((f) => f.kind === "duplicate-row" && f.scope === T)!;
    assert.deepEqual([dupT.examples[0].row, dupT.examples[0].detail], [1187, "same as row 745"]);
    const dupV = r.findings.find((f) => f.kind === "duplicate-row" && f.scope === V)!;
    assert.deepEqual([dupV.examples[0].row, dupV.examples[0].detail], [590, "same as row 16"]);
    assert.equal(n("split-overlap", "sdpo-lastfm/ (eval ∩ test)"), 3);
    assert.equal(n("comma-in-candidate", T), 150);
    assert.equal(n("comma-in-candidate", V), 154);
    assert.equal(n("comma-in-answer", T), 4);
    assert.equal(n("comma-in-answer", V), 5);
    assert.equal(n("candidate-substring", T), 25);
    assert.equal(n("candidate-substring", V), 34);
    assert.equal(n("answer-never-hit", T), 3);
    assert.equal(n("answer-never-hit", V), 1);
    assert.equal(n("answer-not-in-candidates", T), 0);
    assert.equal(n("history-colon-split", T) + n("history-colon-split", V), 0);
    // DMPO ML-1M, README defects 1-4 and 7.
    const M = "dmpo/ml-1m/";
    assert.equal(n("dropped-by-original-loader", M + "rec_data_ml_1m_eval_ranking.json"), 1000);
    assert.equal(n("dropped-by-original-loader", M + "rec_data_ml_1m_sft_ranking.json"), 0);
    assert.equal(
      n("stray-space", M + "rec_data_ml_1m_sft_ranking.json (history titles, of 2219)"),
      1656,
    );
    assert.ok(n("title-form-mismatch", M) > 1000);
    assert.equal(n("history-repeats", M + "rec_data_ml_1m_sft_ranking.json"), 1);
    for (const k of [2, 3, 4, 5]) {
      assert.equal(n("negative-in-history", M + `rec_data_ml_1m_dpo_ranking_${k}.json`), 1);
    }
    assert.equal(
      n("replacement-char", M + "rec_data_ml_1m_eval_ranking.json (characters in all fields)"),
      92,
    );
    assert.equal(
      n("replacement-char", M + "rec_data_ml_1m_eval_ranking_old.json (characters in all fields)"),
      92,
    );
    assert.equal(n("replacement-char", M + "rec_data_ml_1m_dpo_ranking_5.json"), 1);
    assert.equal(n("not-one-json-document", M + "rec_data_ml_1m_eval_ranking_old.json"), 1);
    // Amazon Movie, README defects 5-6; no file has duplicate rows, eval users are disjoint.
    const A = "dmpo/amazon-movie/";
    assert.equal(n("html-entity", A + " (distinct titles)"), 469);
    assert.equal(n("stray-space", A + " (distinct titles)"), 206);
    assert.equal(n("foreign-users", A + "rec_Amazon_Movie_dpo_ranking_1.json"), 200);
    assert.equal(n("foreign-users", A + "rec_Amazon_Movie_dpo_ranking_1_old.json"), 0);
    assert.equal(n("mojibake", A + " (distinct titles)"), 0);
    for (const f of r.findings) {
      assert.ok(!(f.kind === "duplicate-row" && f.scope.startsWith("dmpo/")), f.scope);
      assert.ok(!(f.kind === "split-overlap" && f.scope.startsWith("dmpo/")), f.scope);
      assert.notEqual(f.kind, "malformed-row");
      assert.notEqual(f.kind, "unreadable");
    }
    const md = formatAuditMarkdown(r);
    assert.match(md, /\| sdpo-lastfm\/lastfm-test\.json \| 1 rows \| .*row 1187: same as row 745/);
  },
});

Deno.test("auditPath() finds nothing in a clean built dataset", async () => {
  const dir = await Deno.makeTempDir({ prefix: "audit_clean_" });
  try {
    const raw = `${dir}/raw`;
    await Deno.mkdir(raw);
    const movies = Array.from(
      { length: 40 },
      (_, i) => `${i + 1}::Film ${i + 1} (19${50 + i})::Drama`,
    );
    await Deno.writeTextFile(`${raw}/movies.dat`, movies.join("\n") + "\n");
    const ratings: string[] = [];
    for (let u = 1; u <= 8; u++) {
      for (let k = 0; k < 6; k++) {
        ratings.push(`${u}::${1 + ((u * 7 + k * 3) % 40)}::4::${1000 + k}`);
      }
    }
    await Deno.writeTextFile(`${raw}/ratings.dat`, ratings.join("\n") + "\n");
    await buildDataset("ml-1m", raw, `${dir}/out`, { seed: 3 });
    const r = await auditPath(`${dir}/out`);
    assert.deepEqual(r.findings, [], formatAuditMarkdown(r));
    assert.deepEqual(
      r.files.map((f) => [f.file, f.format, f.role]),
      [
        ["dmpo/dpo_k3.json", "dmpo", "train"],
        ["dmpo/sft.json", "dmpo", "train"],
        ["dmpo/test.json", "dmpo", "test"],
        ["dmpo/valid.json", "dmpo", "eval"],
        ["sdpo/test.json", "sdpo", "test"],
        ["sdpo/train.json", "sdpo", "train"],
        ["sdpo/valid.json", "sdpo", "eval"],
      ],
    );
    assert.match(formatAuditMarkdown(r), /No defects found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auditPath() counts planted defects with file and 1-based row", async () => {
  const dir = await Deno.makeTempDir({ prefix: "audit_bad_" });
  try {
    const row = (h: string, c: string[], a: string) => ({
      historyList: h,
      itemList: c,
      trueSelection: a,
    });
    const train = [
      row("A::B", ["Beck", "Jeff Beck", "C"], "Jeff Beck"), // 1: substring, answer never a hit
      row("A::B", ["Beck", "Jeff Beck", "C"], "Jeff Beck"), // 2: duplicate of 1
      row("A::B", ["Caf\u00c3\u00a9", "D", "E"], "Z"), // 3: mojibake, answer missing
      row("A", ["Tom &amp; Jerry", "Earth, Wind & Fire", "Q"], "Q"), // 4: entity, comma
      row("A::F", ["G", "H"], "G"), // 5: also in test
      { historyList: 3 }, // 6: malformed
    ];
    await Deno.writeTextFile(`${dir}/x-train.json`, JSON.stringify(train));
    await Deno.writeTextFile(`${dir}/x-test.json`, JSON.stringify([row("A::F", ["H", "G"], "G")]));
    await Deno.writeTextFile(`${dir}/broken-test.json`, "[{");
    const r = await auditPath(dir);
    const n = (kind: Parameters<typeof findingCount>[1], scope: string) =>
      findingCount(r, kind, scope);
    assert.equal(n("candidate-substring", "x-train.json"), 2);
    assert.equal(n("answer-never-hit", "x-train.json"), 2);
    assert.equal(n("duplicate-row", "x-train.json"), 1);
    assert.equal(n("mojibake", "x-train.json"), 1);
    assert.equal(n("answer-not-in-candidates", "x-train.json"), 1);
    assert.equal(n("html-entity", "x-train.json"), 1);
    assert.equal(n("comma-in-candidate", "x-train.json"), 1);
    assert.equal(n("malformed-row", "x-train.json"), 1);
    assert.equal(n("split-overlap", "./ (train ∩ test)"), 1);
    assert.equal(n("unreadable", "broken-test.json"), 1);
    const moj = r.findings.find((f) => f.kind === "mojibake" && f.scope === "x-train.json")!;
    assert.deepEqual(moj.examples[0], { file: "x-train.json", row: 3, detail: '"CafÃ©"' });
    const bad = r.findings.find((f) => f.kind === "malformed-row")!;
    assert.equal(bad.examples[0].row, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
