/**
 * Property-based bad arguments for the command lines: `reproduce`, `data`, `notebooks` and
 * `bench`, each spawned exactly as its deno.json task runs it, with generated unknown flags and
 * bad values (fast-check, seeded). Each must exit 2 with one line on stderr that names the flag
 * (and what is allowed), no stack frame, and no output folder created. Observations go to the
 * reliability report.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { taskCommand } from "./_kill.ts";
import { bySetting, type FaultRecord, parseReport, recordFaults } from "./report.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const CASES = bySetting(4, 12);
const SEED = 4242;

/** One generated command line: the args and the word the error line must contain. */
interface BadArgs {
  args: string[];
  mustName: string;
  what: string;
}

const flagName = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
const anyWord = fc.string({ minLength: 1, maxLength: 8 }).filter((s) => !/[\s=]/.test(s));
const notPositiveInt = fc.oneof(
  fc.constantFrom("0", "-1", "1.5", "abc", "1e400", "NaN", "", "0x"),
  fc.integer({ max: 0 }).map(String),
);

function unknownFlag(known: string[]): fc.Arbitrary<BadArgs> {
  return fc.tuple(flagName.filter((f) => !known.includes(f)), anyWord).map(([f, v]) => ({
    args: [`--${f}`, v],
    mustName: `--${f}`,
    what: `unknown flag --${f}`,
  }));
}

function badValue(flag: string, values: fc.Arbitrary<string>): fc.Arbitrary<BadArgs> {
  return values.map((v) => ({
    args: [`--${flag}=${v}`],
    mustName: flag,
    what: `--${flag}=${JSON.stringify(v)}`,
  }));
}

const not = (allowed: string[]) => anyWord.filter((s) => !allowed.includes(s));

const CLIS: Record<
  string,
  { task: string; extra: (out: string) => string[]; gen: fc.Arbitrary<BadArgs> }
> = {
  reproduce: {
    task: "reproduce",
    extra: (out) => ["--out", out],
    gen: fc.oneof(
      unknownFlag([
        "paper",
        "scale",
        "seeds",
        "backend",
        "out",
        "ablations",
        "no-ablations",
        "no-cache",
        "dataset",
        "data",
        "model",
        "help",
      ]),
      badValue("paper", not(["sdpo", "dmpo", "dpo4rec", "all"])),
      badValue("scale", not(["test", "tiny", "small"])),
      badValue("seeds", notPositiveInt),
      badValue("backend", not(["auto", "wasm", "cpu", "tensorflow"])),
    ),
  },
  data: {
    task: "data",
    extra: () => [],
    gen: fc.oneof(
      not(["audit", "build", "download", "export-trl", "help", "--help", "-h"]).map((c) => ({
        args: [c],
        mustName: "command",
        what: `unknown command ${c}`,
      })),
      unknownFlag(["json", "examples"]).map((b) => ({ ...b, args: ["audit", ...b.args] })),
      fc.tuple(
        fc.constantFrom(
          ["encoding", ["auto", "utf-8", "latin1"]] as const,
          ["titles", ["full", "short"]] as const,
          ["negative-pool", ["interacted", "catalogue"]] as const,
        ),
        anyWord,
      ).filter(([[, allowed], v]) => !(allowed as readonly string[]).includes(v)).map((
        [[flag], v],
      ) => ({
        args: ["build", "lastfm", "--raw", "RAW", "--out", "OUT", `--${flag}=${v}`],
        mustName: `--${flag}`,
        what: `build --${flag}=${JSON.stringify(v)}`,
      })),
      fc.tuple(
        fc.constantFrom("seed", "max-history", "candidates", "k", "max-users"),
        fc.constantFrom("abc", "1e400", "NaN", "x1"),
      ).map(([flag, v]) => ({
        args: ["build", "lastfm", "--raw", "RAW", "--out", "OUT", `--${flag}=${v}`],
        mustName: `--${flag}`,
        what: `build --${flag}=${v}`,
      })),
    ),
  },
  notebooks: {
    task: "notebooks",
    extra: (out) => ["--out", out],
    gen: fc.oneof(
      unknownFlag(["html", "out", "scale", "timeout", "help"]),
      badValue("scale", not(["tiny", "test", "small"])),
      badValue("timeout", notPositiveInt),
    ),
  },
  bench: {
    task: "bench",
    extra: (out) => ["--out", out],
    gen: fc.oneof(
      unknownFlag([
        "vocab",
        "dim",
        "layers",
        "heads",
        "ffn",
        "seq",
        "batch",
        "rank",
        "alpha",
        "n-rejected",
        "iters",
        "warmup",
        "backend",
        "workloads",
        "micro-batch",
        "out",
        "compare-torch",
        "torch-script",
        "python",
        "help",
      ]),
      fc.constantFrom("vocab", "dim", "layers", "heads", "seq", "batch", "iters").chain((f) =>
        badValue(f, notPositiveInt)
      ),
      badValue("alpha", fc.constantFrom("0", "-2", "abc", "NaN")),
      badValue("warmup", fc.constantFrom("-1", "1.5", "abc")),
      badValue("workloads", not(["fwd_logp", "sft_step", "sdpo_step"])),
      badValue("backend", not(["available", "all", "wasm", "cpu", "tensorflow"])),
    ),
  },
};

/** stderr lines that are ours (Deno's own npm download notices aside). */
function ourLines(stderr: string): string[] {
  const ansi = new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g");
  return stderr.split("\n").map((l) => l.replace(ansi, "")).filter((l) =>
    l.trim() !== "" && !/^(Download|Initialize) /.test(l)
  );
}

Deno.test("reproduce, data, notebooks and bench refuse generated bad flags and values: exit 2, one line naming the flag, no stack, no output", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "recalign-cli-args-" });
  const records: FaultRecord[] = [];
  const failures: string[] = [];
  try {
    let n = 0;
    for (const [cli, spec] of Object.entries(CLIS)) {
      const [exe, ...base] = await taskCommand(ROOT, spec.task);
      const cases = fc.sample(spec.gen, { numRuns: CASES, seed: SEED + n });
      const details: string[] = [];
      let clean = 0;
      for (const c of cases) {
        const out = `${tmp}/out${n++}`;
        const args = [
          ...base,
          ...c.args.map((a) => a === "RAW" ? `${tmp}/raw` : a === "OUT" ? out : a),
          ...spec.extra(out),
        ];
        const r = await new Deno.Command(exe, {
          args,
          cwd: ROOT,
          stdout: "piped",
          stderr: "piped",
          env: { NO_COLOR: "1" },
        }).output();
        const lines = ourLines(new TextDecoder().decode(r.stderr));
        const problems: string[] = [];
        if (r.code !== 2) problems.push(`exit ${r.code}`);
        if (lines.length !== 1) problems.push(`${lines.length} stderr lines`);
        if (lines.some((l) => /^\s+at /.test(l))) problems.push("stack trace");
        if (!lines.join(" ").includes(c.mustName)) problems.push(`does not name ${c.mustName}`);
        try {
          await Deno.stat(out);
          problems.push(`created ${out}`);
        } catch { /* not created: good */ }
        details.push(
          `\`${cli} ${c.args.join(" ")}\` → exit ${r.code}: ${lines.join(" / ").slice(0, 160)}` +
            (problems.length ? ` — PROBLEM: ${problems.join(", ")}` : ""),
        );
        if (problems.length) {
          failures.push(`${cli} ${c.what}: ${problems.join(", ")}: ${lines.join(" / ")}`);
        } else clean++;
      }
      records.push({
        suite: "command lines (tests/fault/cli_args_test.ts)",
        fault: `${cli}: generated unknown flags and bad values`,
        injected: cases.length,
        outcome: `${clean} of ${cases.length} exited 2 with one stderr line naming the flag, ` +
          "no stack trace, no output folder",
        lost: clean === cases.length ? "nothing" : `${cases.length - clean} unclear failures`,
        details,
      });
    }
    const path = await recordFaults(records);
    const report = parseReport(await Deno.readTextFile(path));
    for (const r of records) assert.ok(report.rows.some((x) => x.fault === r.fault));
    assert.deepEqual(failures, []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
