import assert from "node:assert/strict";
import { type FaultRecord, formatReport, parseReport, recordFaults } from "./report.ts";

const META = { setting: "test" as const, date: "2026-01-01T00:00:00.000Z" };

Deno.test("formatReport() → parseReport() round-trips the rows and says nothing was lost", () => {
  const recs: FaultRecord[] = [
    {
      suite: "a | b",
      fault: "SIGKILL",
      injected: 3,
      outcome: "resumed",
      lost: "nothing",
      details: ["x"],
    },
    { suite: "c", fault: "garbage", injected: 150, outcome: "refused\nall", lost: "Nothing." },
  ];
  const md = formatReport(recs, META);
  const r = parseReport(md);
  assert.equal(r.nothingLost, true);
  assert.deepEqual(r.rows.map((x) => [x.suite, x.fault, x.injected, x.lost]), [
    ["a | b", "SIGKILL", 3, "nothing"],
    ["c", "garbage", 150, "Nothing."],
  ]);
  assert.match(md, /\*\*Lost: nothing\*\* \(2 kinds of fault, 153 injections\)/);
  assert.match(md, /## a \| b: SIGKILL\n\n- x\n/);
});

Deno.test("parseReport() says something was lost when one row lost something, and refuses non-reports", () => {
  const md = formatReport([
    { suite: "s", fault: "f", injected: 1, outcome: "o", lost: "nothing" },
    { suite: "s", fault: "g", injected: 2, outcome: "o", lost: "metrics.json differs" },
  ], META);
  const r = parseReport(md);
  assert.equal(r.nothingLost, false);
  assert.match(md, /\*\*Lost: something\*\* in 1 of 2 kinds of fault: s \/ g\./);
  // A tampered verdict line does not hide a row's loss.
  assert.equal(
    parseReport(md.replace("**Lost: something**", "**Lost: nothing**")).nothingLost,
    false,
  );
  assert.throws(() => parseReport("# hello\n"), /no summary table/);
  assert.throws(
    () =>
      parseReport(
        "| suite | fault | injected | what happened | lost |\n|---|\n| a | b | x | c | d |\n",
      ),
    /malformed row/,
  );
});

Deno.test("recordFaults() merges this run's records across calls and replaces another run's report", async () => {
  const dir = await Deno.makeTempDir({ prefix: "recalign-report-" });
  const saved = Deno.env.get("RECALIGN_RELIABILITY_REPORT");
  Deno.env.set("RECALIGN_RELIABILITY_REPORT", `${dir}/r.md`);
  try {
    // A report of another run: its rows are not kept.
    await Deno.writeTextFile(
      `${dir}/r.md`,
      formatReport(
        [{ suite: "old", fault: "f", injected: 1, outcome: "o", lost: "nothing" }],
        META,
      ) +
        '\n<!-- recalign-reliability-records {"run":"other","records":[{"suite":"old","fault":"f","injected":1,"outcome":"o","lost":"nothing"}]} -->\n',
    );
    await recordFaults([{ suite: "s", fault: "a", injected: 1, outcome: "o", lost: "nothing" }]);
    await recordFaults([{ suite: "s", fault: "b", injected: 2, outcome: "o", lost: "x broke" }]);
    await recordFaults([{ suite: "s", fault: "a", injected: 5, outcome: "o", lost: "nothing" }]);
    const r = parseReport(await Deno.readTextFile(`${dir}/r.md`));
    assert.deepEqual(r.rows.map((x) => [x.fault, x.injected]), [["b", 2], ["a", 5]]);
    assert.equal(r.nothingLost, false);
  } finally {
    if (saved === undefined) Deno.env.delete("RECALIGN_RELIABILITY_REPORT");
    else Deno.env.set("RECALIGN_RELIABILITY_REPORT", saved);
    await Deno.remove(dir, { recursive: true });
  }
});
