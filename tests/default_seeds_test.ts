/**
 * `deno task reproduce --scale full` carries docs/analysis-plan.md: its default seeds per paper
 * are the plan's (read back from the plan's text), and parsing `--scale full` keeps every part
 * the plan needs (the DMPO ablations run; nothing refused).
 */
import assert from "node:assert/strict";
import { DEFAULT_SEEDS, parseOptions } from "../src/cli/reproduce.ts";
import { PLAN_DESIGN } from "../src/report/findings.ts";

const PLAN = new URL("../docs/analysis-plan.md", import.meta.url).pathname;

/** The text of the plan's `## <name>` section. */
function section(plan: string, name: string): string {
  const at = plan.indexOf(`\n## ${name}\n`);
  assert.ok(at >= 0, `docs/analysis-plan.md has a "## ${name}" section`);
  const end = plan.indexOf("\n## ", at + 1);
  return plan.slice(at, end < 0 ? undefined : end);
}

/** The first capture of `re` in `text`, as a number (fails naming what was looked for). */
function seedsIn(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  assert.ok(m, `docs/analysis-plan.md states ${what} (${re})`);
  return Number(m[1]);
}

Deno.test("DEFAULT_SEEDS.full = the seeds docs/analysis-plan.md plans for the full run", async () => {
  const plan = await Deno.readTextFile(PLAN);
  const want = {
    // "`deno task reproduce --scale full` (S-DPO part: 3 seeds, ..."
    sdpo: seedsIn(section(plan, "S-DPO"), /S-DPO part: (\d+) seeds/, "S-DPO's full-run seeds"),
    // "Seeds: **5** (they vary the preference stages ..."
    dmpo: seedsIn(section(plan, "DMPO"), /Seeds: \*\*(\d+)\*\*/, "DMPO's seeds"),
    // "Seeds: **2** at small, **5** in the full run"
    dpo4rec: seedsIn(
      section(plan, "DPO4Rec"),
      /\*\*(\d+)\*\* in the full run/,
      "DPO4Rec's full-run seeds",
    ),
  };
  assert.deepEqual(DEFAULT_SEEDS.full, want);
  // The findings' deviation check reads the same plan.
  for (const paper of ["sdpo", "dmpo", "dpo4rec"] as const) {
    assert.equal(PLAN_DESIGN[paper].seeds, want[paper], paper);
  }
  // DPO4Rec's small-run seeds are the plan's too.
  assert.equal(
    DEFAULT_SEEDS.small.dpo4rec,
    seedsIn(section(plan, "DPO4Rec"), /Seeds: \*\*(\d+)\*\* at small/, "DPO4Rec's small seeds"),
  );
});

Deno.test("parseOptions(--scale full): every paper, the plan's seeds, no refusal", () => {
  const o = parseOptions(["--scale", "full"])!;
  assert.deepEqual(o.papers, ["sdpo", "dmpo", "dpo4rec"]);
  assert.equal(o.scale, "full");
  assert.equal(o.seeds, 0); // 0 = DEFAULT_SEEDS.full per paper
  assert.deepEqual(o.skipped, []);
  assert.equal(o.dataset, "synthetic");
  // --seeds still overrides, at any count.
  assert.equal(parseOptions(["--scale", "full", "--seeds", "5"])!.seeds, 5);
});

Deno.test("parseOptions --first-seed and --lr: fresh seeds and a fixed S-DPO rate; bad values fail in one line", () => {
  const o = parseOptions([
    "--scale",
    "full",
    "--paper",
    "sdpo",
    "--first-seed",
    "10",
    "--lr",
    "3e-3",
  ])!;
  assert.equal(o.firstSeed, 10);
  assert.equal(o.sdpoLr, 0.003);
  const d = parseOptions([])!;
  assert.equal(d.firstSeed, 0);
  assert.equal("sdpoLr" in d, false);
  assert.throws(
    () => parseOptions(["--first-seed=-1"]),
    /--first-seed: expected an integer >= 0/,
  );
  assert.throws(() => parseOptions(["--first-seed", "1.5"]), /--first-seed: expected an integer/);
  assert.throws(
    () => parseOptions(["--paper", "sdpo", "--lr", "2"]),
    /--lr must be between 0 and 1/,
  );
  assert.throws(() => parseOptions(["--paper", "sdpo", "--lr", "x"]), /--lr: expected a number/);
  assert.throws(() => parseOptions(["--paper", "dmpo", "--lr", "1e-3"]), /--lr sets S-DPO's/);
  assert.throws(
    () => parseOptions(["--paper", "sdpo", "--dataset", "lastfm", "--lr", "1e-3"]),
    /--dataset synthetic/,
  );
});
