/**
 * The command-line plumbing every task shares (`reproduce`, `data`, `pretrain`, `world`,
 * `notebooks`, `bench`): one flag table per command gives the parser, the `--help` text
 * (each flag, what it does, its default) and the list of allowed flags in errors, so the three
 * cannot drift apart. Errors are one line, `<command>: <what is wrong>`, naming the flag, file,
 * row or field; never a stack trace (`RECALIGN_DEBUG=1` prints one).
 *
 * ```ts
 * const FLAGS = {
 *   out: { type: "string", value: "DIR", default: "results", help: "where results go" },
 *   quick: { type: "boolean", help: "fewer steps" },
 * } as const satisfies FlagTable;
 * const { values } = parseFlags("mytask", FLAGS, Deno.args);
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { RecalignError } from "../errors.ts";

/** One flag: its type, the value's placeholder, default and one-sentence description. */
export interface FlagSpec {
  /** `string` takes a value, `boolean` does not. */
  readonly type: "string" | "boolean";
  /** Placeholder of the value in `--help` (`N`, `DIR`, `sdpo|dmpo|all`); strings only. */
  readonly value?: string;
  /** The default (applied by the parser and shown in `--help`). */
  readonly default?: string;
  /** A default the parser cannot know (computed, or from the environment), for `--help` only. */
  readonly defaultText?: string;
  /** What the flag does. */
  readonly help: string;
}

/** A command's flags by long name (without `--`). `--help` / `-h` is added to every table. */
export type FlagTable = Readonly<Record<string, FlagSpec>>;

/** Parsed values: strings for `string` flags, booleans for `boolean` flags. */
export type FlagValues<T extends FlagTable> = {
  [K in keyof T]?: T[K]["type"] extends "boolean" ? boolean : string;
};

/** A bad command, flag or value: one line naming it and what is allowed (exit status 2). */
export class UsageError extends RecalignError {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The flags of a table as users write them (`--out`, …, `--help`). */
export function flagNames(table: FlagTable): string[] {
  return [...Object.keys(table).map((k) => `--${k}`), "--help"];
}

/**
 * Parse `args` against `table`. Unknown flags, missing values and (unless `positionals` is
 * true) stray arguments throw a {@link UsageError} naming the flag and the allowed ones.
 *
 * @param command The command name used in messages (`reproduce`, `data fetch`).
 * @param table The flags.
 * @param args The arguments.
 * @param positionals Whether positional arguments are allowed.
 * @returns Values (defaults applied), positionals, and whether `--help` was asked for.
 */
export function parseFlags<T extends FlagTable>(
  command: string,
  table: T,
  args: string[],
  positionals = false,
): { values: FlagValues<T>; positionals: string[]; help: boolean } {
  const options: Record<string, { type: "string" | "boolean"; default?: string }> = {};
  for (const [name, spec] of Object.entries(table)) {
    options[name] = spec.default === undefined
      ? { type: spec.type }
      : { type: spec.type, default: spec.default };
  }
  const allowed = flagNames(table).join(", ");
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    const msg = (e as Error).message;
    const flag = msg.match(/'(-[^' ]*)/)?.[1] ?? "?";
    if (/Unknown option/i.test(msg)) {
      throw new UsageError(`${command}: unknown flag ${flag}; allowed: ${allowed}`);
    }
    if (/argument missing/i.test(msg)) throw new UsageError(`${command}: ${flag} needs a value`);
    if (/does not take an argument/i.test(msg)) {
      throw new UsageError(`${command}: ${flag} takes no value`);
    }
    if (/ambiguous/i.test(msg)) {
      throw new UsageError(
        `${command}: ${flag}: write a value starting with "-" as ${flag}=VALUE`,
      );
    }
    throw new UsageError(`${command}: ${msg.split("\n")[0]} (allowed: ${allowed})`);
  }
  const { help, ...values } = parsed.values as Record<string, string | boolean | undefined>;
  if (!positionals && parsed.positionals.length > 0 && !help) {
    throw new UsageError(
      `${command}: unexpected argument ${JSON.stringify(parsed.positionals[0])}; ` +
        `allowed flags: ${allowed}`,
    );
  }
  return {
    values: values as FlagValues<T>,
    positionals: parsed.positionals,
    help: help === true,
  };
}

/** Text of a command's `--help`. */
export interface HelpText {
  /** The usage line(s) after `usage: `. */
  usage: string;
  /** What the command does (a paragraph; wrapped). */
  about: string;
  /** Extra sections after the flags (already formatted lines). */
  after?: string;
}

/** Width of help text. */
export const WIDTH = 100;

/** `text` wrapped at `width`: the first line starts with `first`, the others with `indent`. */
export function wrap(text: string, width: number, first = "", indent = ""): string[] {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line);
      line = indent + word;
    } else line = empty ? line + word : `${line} ${word}`;
    empty = false;
  }
  lines.push(line);
  return lines;
}

/** The flags of a table, one per entry: `  --name VALUE   what it does (default: …)`. */
export function flagLines(table: FlagTable): string {
  const rows = Object.entries(table).map(([name, s]) => {
    const head = `--${name}${s.type === "string" ? ` ${s.value ?? "VALUE"}` : ""}`;
    const def = s.defaultText ?? (s.default !== undefined ? s.default : undefined);
    return { head, text: s.help + (def !== undefined ? ` (default: ${def})` : "") };
  });
  rows.push({ head: "-h, --help", text: "print this help and exit" });
  const col = Math.min(32, Math.max(...rows.map((r) => r.head.length)) + 2);
  const pad = " ".repeat(col + 2);
  const out: string[] = [];
  for (const r of rows) {
    const first = `  ${r.head.padEnd(col)}`;
    if (first.length > col + 2) {
      out.push(first.trimEnd());
      out.push(...wrap(r.text, WIDTH, pad, pad));
    } else out.push(...wrap(r.text, WIDTH, first, pad));
  }
  return out.join("\n");
}

/** A command's full `--help`: usage, what it does, its flags, extra sections. */
export function helpText(table: FlagTable, text: HelpText): string {
  const parts = [
    `usage: ${text.usage}`,
    "",
    wrap(text.about, WIDTH).join("\n"),
    "",
    "flags:",
    flagLines(table),
  ];
  if (text.after) parts.push("", text.after);
  return parts.join("\n");
}

/** A flag's value as a number (`undefined` stays undefined); anything else is a UsageError. */
export function numberFlag(
  command: string,
  flag: string,
  v: string | undefined,
  opts: { integer?: boolean; min?: number } = {},
): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  const ok = v.trim() !== "" && Number.isFinite(x) && (!opts.integer || Number.isInteger(x)) &&
    (opts.min === undefined || x >= opts.min);
  if (!ok) {
    const what = opts.integer ? opts.min === 1 ? "a positive integer" : "an integer" : "a number";
    const bound = opts.min !== undefined && opts.min !== 1 ? ` >= ${opts.min}` : "";
    throw new UsageError(
      `${command}: --${flag}: expected ${what}${bound}, got ${JSON.stringify(v)}`,
    );
  }
  return x;
}

/** A flag's value from a fixed list; anything else is a UsageError naming the allowed values. */
export function choiceFlag<V extends string>(
  command: string,
  flag: string,
  v: string,
  allowed: readonly V[],
): V {
  if (!(allowed as readonly string[]).includes(v)) {
    throw new UsageError(
      `${command}: --${flag}: expected ${allowed.join(", ")}; got ${JSON.stringify(v)}`,
    );
  }
  return v as V;
}

/** One line for an error: its message (its name too when it is not one of recalign's). */
export function errorLine(err: unknown): string {
  const e = err as Error;
  const msg = err instanceof RecalignError
    ? e.message
    : `${e?.name ?? "Error"}: ${e?.message ?? String(err)}`;
  return String(msg).replace(/\s*\n\s*/g, " ");
}

function debug(): boolean {
  try {
    return !!Deno.env.get("RECALIGN_DEBUG");
  } catch {
    return false; // no --allow-env
  }
}

/**
 * Run a command's `main` as the program: exit with the status it returns (0 when it returns
 * nothing). A thrown error prints one line `<command>: <message>` and exits 2 for a
 * {@link UsageError} or a kind listed in `usageKinds`, 1 for anything else.
 */
export async function runMain(
  command: string,
  main: (args: string[]) => Promise<number | void | unknown>,
  usageKinds: (abstract new (...a: never[]) => Error)[] = [],
): Promise<never> {
  try {
    const code = await main(Deno.args);
    Deno.exit(typeof code === "number" ? code : 0);
  } catch (err) {
    if (debug()) console.error(err);
    const line = errorLine(err);
    const named = line.startsWith(`${command}:`) || line.startsWith(`${command} `);
    console.error(named ? line : `${command}: ${line}`);
    const usage = err instanceof UsageError || usageKinds.some((k) => err instanceof k);
    Deno.exit(usage ? 2 : 1);
  }
}
