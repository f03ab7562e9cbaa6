/**
 * The command-line tasks: `--help` lists every flag the parser accepts (the list is read back
 * from the parser's own one-line error for an unknown flag, and from the exported flag
 * tables), and a bad flag or value gives one line `<command>: …`, exit status 2, no stack.
 */
import assert from "node:assert/strict";
import {
  choiceFlag,
  flagNames,
  type FlagTable,
  helpText,
  numberFlag,
  parseFlags,
  UsageError,
} from "../src/cli/_args.ts";
import { REPRODUCE_FLAGS } from "../src/cli/reproduce.ts";
import { PRETRAIN_FLAGS } from "../src/cli/pretrain.ts";
import { WORLD_FLAGS } from "../src/cli/world.ts";
import { NOTEBOOKS_FLAGS } from "../src/cli/notebooks.ts";
import { DATA_COMMANDS } from "../src/cli/data.ts";

const file = (rel: string) => new URL(`../${rel}`, import.meta.url).pathname;

/** Every command: its file, the arguments before the flags, the prefix of its errors. */
const COMMANDS: { name: string; file: string; pre: string[]; table?: FlagTable }[] = [
  { name: "reproduce", file: file("src/cli/reproduce.ts"), pre: [], table: REPRODUCE_FLAGS },
  { name: "pretrain", file: file("src/cli/pretrain.ts"), pre: [], table: PRETRAIN_FLAGS },
  { name: "world", file: file("src/cli/world.ts"), pre: [], table: WORLD_FLAGS },
  { name: "notebooks", file: file("src/cli/notebooks.ts"), pre: [], table: NOTEBOOKS_FLAGS },
  { name: "bench", file: file("bench/bench.ts"), pre: [] },
  ...Object.entries(DATA_COMMANDS).map(([cmd, c]) => ({
    name: `data ${cmd}`,
    file: file("src/cli/data.ts"),
    pre: [cmd],
    table: c.flags as FlagTable,
  })),
];

async function run(path: string, args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", path, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { RECALIGN_DEBUG: "" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr).trim() };
}

/** The flags a help text documents: `--name` at the start of a line (after spaces). */
function documented(help: string): Set<string> {
  return new Set([...help.matchAll(/^\s+(?:-h, )?(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1]));
}

for (const c of COMMANDS) {
  Deno.test(`${c.name} --help documents every flag its parser accepts`, async () => {
    const bad = await run(c.file, [...c.pre, "--no-such-flag"]);
    assert.equal(bad.code, 2, bad.err);
    assert.equal(bad.err.split("\n").length, 1, bad.err);
    assert.ok(bad.err.startsWith(`${c.name}: unknown flag --no-such-flag; allowed: `), bad.err);
    assert.ok(!/at .*\.ts:\d+/.test(bad.err), "no stack trace");
    const allowed = bad.err.split("allowed: ")[1].split(", ");
    if (c.table) assert.deepEqual(allowed, flagNames(c.table));
    const help = await run(c.file, [...c.pre, "--help"]);
    assert.equal(help.code, 0, help.err);
    const has = documented(help.out);
    for (const f of allowed) assert.ok(has.has(f), `${c.name} --help lacks ${f}:\n${help.out}`);
    assert.ok(!/\.ts\b/.test(help.out.split("\n")[0]), "usage names the task, not a file");
  });
}

Deno.test("reproduce --help names --base-lm, the test scale and each default", async () => {
  const { out } = await run(file("src/cli/reproduce.ts"), ["--help"]);
  assert.match(out, /^usage: deno task reproduce/);
  assert.match(out, /--base-lm DIR\|none/);
  assert.match(out, /--scale test\|tiny\|small/);
  for (const [name, spec] of Object.entries(REPRODUCE_FLAGS) as [string, FlagSpecLike][]) {
    const def = spec.defaultText ?? spec.default;
    if (def === undefined) continue;
    const at = out.search(new RegExp(`\\n  --${name}(?=[ \\n])`));
    assert.ok(at >= 0, name);
    const block = out.slice(at + 3).split(/\n {2}-/)[0].replace(/\s+/g, " ");
    assert.ok(block.includes(`(default: ${def.replace(/\s+/g, " ")})`), `${name}: ${block}`);
  }
});

type FlagSpecLike = { default?: string; defaultText?: string };

Deno.test("data --help lists every command and flag, without file names", async () => {
  const { code, out } = await run(file("src/cli/data.ts"), ["--help"]);
  assert.equal(code, 0);
  assert.match(out, /^usage: deno task data <command>/);
  assert.ok(!out.includes("data.ts"), out);
  const has = documented(out);
  for (const [cmd, c] of Object.entries(DATA_COMMANDS)) {
    assert.match(out, new RegExp(`^  ${cmd} `, "m"));
    for (const f of flagNames(c.flags as FlagTable)) assert.ok(has.has(f), `${cmd} ${f}`);
  }
});

Deno.test("a bad value gives one line naming the flag (reproduce, data, world, notebooks)", async () => {
  const cases: [string, string[], RegExp][] = [
    [
      "src/cli/reproduce.ts",
      ["--seeds", "two"],
      /^reproduce: --seeds: expected a positive integer/,
    ],
    ["src/cli/reproduce.ts", ["--scale"], /^reproduce: --scale needs a value$/],
    ["src/cli/data.ts", ["fetch", "--only", "both"], /^data fetch: --only: expected sdpo, dmpo/],
    ["src/cli/data.ts", ["nope"], /^data: unknown command "nope"; allowed: fetch, audit/],
    ["src/cli/world.ts", ["--prompts", "0"], /^world: --prompts: expected a positive integer/],
    [
      "src/cli/notebooks.ts",
      ["--scale", "huge"],
      /^notebooks: --scale: expected tiny, test, small/,
    ],
    ["src/cli/pretrain.ts", ["extra"], /^pretrain: unexpected argument "extra"/],
  ];
  for (const [f, args, re] of cases) {
    const r = await run(file(f), args);
    assert.equal(r.code, 2, `${f} ${args.join(" ")}: ${r.err}`);
    assert.equal(r.err.split("\n").length, 1, r.err);
    assert.match(r.err, re);
  }
});

// ---------------------------------------------------------------------------------------
// src/cli/_args.ts

const T = {
  out: { type: "string", value: "DIR", default: "results", help: "where results go" },
  steps: { type: "string", value: "N", defaultText: "the recipe's", help: "training steps" },
  quick: { type: "boolean", help: "fewer steps" },
} as const satisfies FlagTable;

Deno.test("parseFlags: defaults, values, --help and -h", () => {
  const a = parseFlags("t", T, ["--steps", "5", "--quick"]);
  assert.deepEqual(a.values, { out: "results", steps: "5", quick: true });
  assert.equal(a.help, false);
  assert.equal(parseFlags("t", T, ["-h"]).help, true);
  assert.equal(parseFlags("t", T, ["--out=x"]).values.out, "x");
});

Deno.test("parseFlags: every mistake is a one-line UsageError naming the flag", () => {
  const msg = (args: string[], positionals = false) => {
    try {
      parseFlags("t", T, args, positionals);
    } catch (e) {
      assert.ok(e instanceof UsageError);
      assert.ok(!e.message.includes("\n"));
      return e.message;
    }
    return "no error";
  };
  assert.equal(msg(["--nope"]), "t: unknown flag --nope; allowed: --out, --steps, --quick, --help");
  assert.equal(msg(["--out"]), "t: --out needs a value");
  assert.equal(msg(["--quick=yes"]), "t: --quick takes no value");
  assert.match(msg(["stray"]), /^t: unexpected argument "stray"; allowed flags: --out/);
  assert.equal(msg(["stray"], true), "no error");
});

Deno.test("helpText: every flag with its placeholder, description and default", () => {
  const h = helpText(T, { usage: "t [flags]", about: "Does t." });
  assert.match(h, /^usage: t \[flags\]\n\nDoes t\.\n\nflags:\n/);
  assert.match(h, /\n {2}--out DIR +where results go \(default: results\)\n/);
  assert.match(h, /\n {2}--steps N +training steps \(default: the recipe's\)\n/);
  assert.match(h, /\n {2}--quick +fewer steps\n/);
  assert.match(h, /\n {2}-h, --help +print this help and exit$/);
  for (const line of h.split("\n")) assert.ok(line.length <= 100, line);
});

Deno.test("numberFlag and choiceFlag: the value or one line naming flag and value", () => {
  assert.equal(numberFlag("t", "n", "3", { integer: true, min: 1 }), 3);
  assert.equal(numberFlag("t", "n", undefined), undefined);
  assert.equal(numberFlag("t", "x", "0.5"), 0.5);
  assert.throws(
    () => numberFlag("t", "n", "0", { integer: true, min: 1 }),
    /^UsageError: t: --n: expected a positive integer, got "0"$/,
  );
  assert.throws(() => numberFlag("t", "n", "", {}), /--n: expected a number, got ""/);
  assert.throws(() => numberFlag("t", "n", "1.5", { integer: true }), /expected an integer/);
  assert.equal(choiceFlag("t", "c", "a", ["a", "b"]), "a");
  assert.throws(
    () => choiceFlag("t", "c", "z", ["a", "b"]),
    /^UsageError: t: --c: expected a, b; got "z"$/,
  );
});

Deno.test("reproduce's index links the other run folders kept beside it, and only those", async () => {
  const { writeIndex } = await import("../src/cli/reproduce.ts");
  const out = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${out}/full`);
    await Deno.mkdir(`${out}/bench`);
    await Deno.mkdir(`${out}/notes`);
    await writeIndex(`${out}/full`); // a run folder writes its own index
    await Deno.writeTextFile(`${out}/notes/README.md`, "# notes\n");
    await writeIndex(out);
    const text = await Deno.readTextFile(`${out}/README.md`);
    assert.match(text, /- \[full\/\]\(full\/README\.md\)/);
    assert.doesNotMatch(text, /notes\/|bench\//);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
