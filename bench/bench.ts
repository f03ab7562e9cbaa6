/**
 * `deno task bench`: training-speed benchmark, one JSON line per workload and backend.
 *
 * Workloads (named as `../shared/bench/torch_step.py` names them, same default config):
 * - `fwd_logp`: forward pass + summed response log-probs of batch × seq tokens (no gradient);
 * - `sft_step`: one LoRA SFT step (forward, backward, AdamW) on batch × seq tokens;
 * - `sdpo_step`: one LoRA S-DPO step with K rejected responses per prompt: batch × (1+K)
 *   sequences, reference log-probs computed live with adapters disabled (included in the
 *   time, not in the token count, as in the PyTorch script).
 * Each sequence is a prompt of seq/2 random tokens plus a response of the rest.
 *
 * Flags: --vocab --dim --layers --heads --ffn --seq --batch (the PyTorch script's), --rank,
 * --alpha, --n-rejected, --iters, --warmup, --backend (comma list, or `available` = wasm plus the
 * native tensorflow backend when installed, or `all` = those plus the slow pure-JS cpu backend;
 * default `available`), --workloads, --micro-batch, --out (results folder).
 *
 * @module
 */
import { errorLine, type FlagTable, helpText, parseFlags } from "../src/cli/_args.ts";
import { initBackend, tf } from "../src/backend.ts";
import { LlamaModel } from "../src/model.ts";
import { scorePairs, train, type TrainExample } from "../src/train.ts";
import { Rng } from "../src/rng.ts";
import { appendJsonLine, ensureDir } from "../src/io.ts";
import { barChart, writePlot } from "../src/report/plot.ts";

/** The flags of `deno task bench` (parser, `--help` and error messages). */
const BENCH_OPTIONS = {
  vocab: { type: "string", value: "N", default: "4096", help: "vocabulary size" },
  dim: { type: "string", value: "N", default: "256", help: "hidden size" },
  layers: { type: "string", value: "N", default: "4", help: "transformer layers" },
  heads: { type: "string", value: "N", default: "4", help: "attention heads" },
  ffn: { type: "string", value: "N", default: "688", help: "feed-forward size" },
  seq: { type: "string", value: "N", default: "128", help: "tokens per sequence" },
  batch: { type: "string", value: "N", default: "8", help: "sequences (prompts) per step" },
  rank: { type: "string", value: "N", default: "8", help: "LoRA rank" },
  alpha: { type: "string", value: "X", default: "16", help: "LoRA alpha" },
  "n-rejected": {
    type: "string",
    value: "K",
    default: "3",
    help: "rejected responses per prompt in sdpo_step",
  },
  iters: { type: "string", value: "N", default: "5", help: "timed iterations per workload" },
  warmup: { type: "string", value: "N", default: "2", help: "untimed iterations first" },
  backend: {
    type: "string",
    value: "available|all|LIST",
    default: "available",
    help: "backends to time: `available` = wasm plus tensorflow when tfjs-node is installed, " +
      "`all` = those plus the slow pure-JS cpu, or a comma list of wasm, cpu, tensorflow",
  },
  workloads: {
    type: "string",
    value: "LIST",
    default: "fwd_logp,sft_step,sdpo_step",
    help: "comma list of workloads",
  },
  "micro-batch": {
    type: "string",
    value: "N",
    default: "16",
    help: "sequences per forward/backward pass inside a step",
  },
  out: {
    type: "string",
    value: "DIR",
    default: "results/bench",
    help: "appends bench.jsonl (and compare.jsonl) and writes tokens_per_sec.svg there",
  },
  "compare-torch": {
    type: "boolean",
    help: "also time the same workloads in PyTorch (--torch-script) and write compare.jsonl",
  },
  "torch-script": {
    type: "string",
    value: "FILE",
    defaultText: "../shared/bench/torch_step.py",
    help: "the PyTorch step script of --compare-torch",
  },
  python: {
    type: "string",
    value: "FILE",
    default: "/usr/bin/python3",
    help: "a Python with torch, for --compare-torch",
  },
} as const satisfies FlagTable;

/** A bad flag or value: one line on stderr naming it and what is allowed, exit status 2. */
function usageError(msg: string): never {
  console.error(`bench: ${msg}`);
  Deno.exit(2);
}

function parseBenchFlags() {
  try {
    return parseFlags("bench", BENCH_OPTIONS, Deno.args);
  } catch (e) {
    usageError(errorLine(e).replace(/^bench: /, ""));
  }
}
const { values: flags, help } = parseBenchFlags();

if (help) {
  console.log(helpText(BENCH_OPTIONS, {
    usage: "deno task bench [flags]",
    about: "Training-speed benchmark: tokens per second of fwd_logp (forward + summed response " +
      "log-probs), sft_step (one LoRA SFT step) and sdpo_step (one LoRA S-DPO step with K " +
      "rejected responses, reference log-probs live) per backend, one JSON line each on stdout " +
      "and in --out.",
  }));
  Deno.exit(0);
}

function int(name: keyof typeof flags): number {
  const v = Number(flags[name]);
  if (!Number.isInteger(v) || v <= 0) {
    usageError(`--${name}: expected a positive integer, got "${flags[name]}"`);
  }
  return v;
}

const cfg = {
  vocab: int("vocab"),
  dim: int("dim"),
  layers: int("layers"),
  heads: int("heads"),
  ffn: int("ffn"),
  seq: int("seq"),
  batch: int("batch"),
  rank: int("rank"),
  alpha: Number(flags.alpha),
  k: int("n-rejected"),
};
const iters = int("iters");
const warmup = Number(flags.warmup);
const micro = int("micro-batch");
const workloads = flags.workloads!.split(",");
// Every value is checked before anything runs or is written.
if (!(Number.isFinite(cfg.alpha) && cfg.alpha > 0)) {
  usageError(`--alpha: expected a number > 0, got "${flags.alpha}"`);
}
if (!(Number.isInteger(warmup) && warmup >= 0)) {
  usageError(`--warmup: expected an integer >= 0, got "${flags.warmup}"`);
}
const WORKLOADS = ["fwd_logp", "sft_step", "sdpo_step"];
for (const w of workloads) {
  if (!WORKLOADS.includes(w)) {
    usageError(`--workloads: unknown workload "${w}"; allowed: ${WORKLOADS.join(", ")}`);
  }
}
if (!["available", "all"].includes(flags.backend!)) {
  for (const b of flags.backend!.split(",")) {
    if (!["wasm", "cpu", "tensorflow"].includes(b)) {
      usageError(
        `--backend: unknown backend "${b}"; allowed: available, all, or a comma list of wasm, cpu, tensorflow`,
      );
    }
  }
}
if (cfg.dim % cfg.heads !== 0 || (cfg.dim / cfg.heads) % 2 !== 0) {
  usageError(
    `--heads: --dim ${cfg.dim} / --heads ${cfg.heads} must be an even integer (the head size)`,
  );
}

function peakRss(): number {
  try {
    const m = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
    if (m) return Number(m[1]) * 1024;
  } catch { /* not Linux */ }
  return Deno.memoryUsage().rss;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function makeModel(): LlamaModel {
  const model = LlamaModel.random({
    vocab_size: cfg.vocab,
    hidden_size: cfg.dim,
    intermediate_size: cfg.ffn,
    num_hidden_layers: cfg.layers,
    num_attention_heads: cfg.heads,
    num_key_value_heads: cfg.heads,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    max_position_embeddings: Math.max(cfg.seq, 128),
  }, 0);
  model.addLora({
    r: cfg.rank,
    lora_alpha: cfg.alpha,
    lora_dropout: 0,
    target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    seed: 0,
  });
  return model;
}

function examples(): TrainExample[] {
  const rng = new Rng(0);
  const promptLen = Math.floor(cfg.seq / 2);
  const toks = (n: number) => Array.from({ length: n }, () => rng.int(cfg.vocab));
  return Array.from({ length: cfg.batch }, () => ({
    prompt: toks(promptLen),
    chosen: toks(cfg.seq - promptLen),
    rejected: Array.from({ length: cfg.k }, () => toks(cfg.seq - promptLen)),
  }));
}

async function timeTrain(
  stage: "sft" | "sdpo",
  model: LlamaModel,
  ex: TrainExample[],
): Promise<number[]> {
  const times: number[] = [];
  let last = performance.now();
  await train(model, ex, {
    stage,
    steps: warmup + iters,
    batchSize: cfg.batch,
    microBatchSize: micro,
    numNegatives: cfg.k,
    beta: 1,
    lr: 1e-3,
    warmupSteps: 0,
    logEvery: 1,
    reference: "live",
  }, {
    progress: false,
    onLog: () => {
      const now = performance.now();
      times.push((now - last) / 1000);
      last = now;
    },
  });
  return times.slice(warmup);
}

async function nativeInstalled(): Promise<boolean> {
  for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
    try {
      await Deno.stat(`node_modules/${pkg}`);
      return true;
    } catch { /* not installed */ }
  }
  return false;
}

const requested = flags.backend!;
/**
 * Run the PyTorch anchor (../shared/bench/torch_step.py) on the same config and return its JSON
 * rows. It runs before our workloads, in a fresh process state: measured after them, from this
 * process, it came out ~2× slower than from a shell.
 */
async function runTorch(): Promise<Record<string, unknown>[]> {
  const script = flags["torch-script"] ??
    new URL("../../shared/bench/torch_step.py", import.meta.url).pathname;
  const args = [
    script,
    "--threads",
    String(navigator.hardwareConcurrency || 2),
    ...["vocab", "dim", "layers", "heads", "ffn", "seq", "batch", "rank", "alpha"].flatMap((k) => [
      `--${k}`,
      String(flags[k as keyof typeof flags]),
    ]),
    "--n-rejected",
    String(cfg.k),
    "--iters",
    String(iters),
    "--warmup",
    String(warmup),
    "--workloads",
    workloads.join(","),
  ];
  // Debian's torch is measured with the OpenMP OpenBLAS: the pthread build oversubscribes the
  // cores under torch's own OpenMP threads (~2× slower here).
  const openmp = "/usr/lib/x86_64-linux-gnu/openblas-openmp";
  let env: Record<string, string> = {};
  try {
    Deno.statSync(openmp);
    env = { LD_LIBRARY_PATH: openmp };
  } catch { /* the system default BLAS */ }
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(flags.python!, { args, env, stdout: "piped", stderr: "piped" })
      .output();
  } catch (e) {
    console.error(`--compare-torch: could not run ${flags.python} (${(e as Error).message})`);
    return [];
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ");
    console.error(
      `--compare-torch: ${script} failed (needs Debian's python3-torch and libopenblas0-openmp): ${err}`,
    );
    return [];
  }
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.startsWith("{")).map((
    l,
  ) => JSON.parse(l));
}

const torchRows = flags["compare-torch"] ? await runTorch() : [];

type Row = {
  workload: string;
  backend: string;
  tokens_per_sec: number;
  sec_per_iter_median: number;
};
const rows: Row[] = [];
const backends = requested === "available" || requested === "all"
  ? [
    "wasm",
    ...(await nativeInstalled() ? ["tensorflow"] : []),
    ...(requested === "all" ? ["cpu"] : []),
  ]
  : requested.split(",");
await ensureDir(flags.out!);
for (const backend of backends) {
  const info = await initBackend(backend);
  const ex = examples();
  for (const workload of workloads) {
    const model = makeModel();
    let times: number[] = [];
    let tokens = 0;
    if (workload === "fwd_logp") {
      const pairs = ex.map((e) => ({ prompt: e.prompt, response: e.chosen }));
      for (let i = 0; i < warmup + iters; i++) {
        const t0 = performance.now();
        scorePairs(model, pairs, { microBatchSize: micro });
        if (i >= warmup) times.push((performance.now() - t0) / 1000);
      }
      tokens = cfg.batch * cfg.seq;
    } else if (workload === "sft_step") {
      times = await timeTrain("sft", model, ex);
      tokens = cfg.batch * cfg.seq;
    } else if (workload === "sdpo_step") {
      times = await timeTrain("sdpo", model, ex);
      tokens = cfg.batch * (1 + cfg.k) * cfg.seq;
    } else {
      console.error(
        `--workloads: unknown workload "${workload}"; allowed: fwd_logp, sft_step, sdpo_step`,
      );
      Deno.exit(2);
    }
    model.dispose();
    const sec = median(times);
    const row = {
      workload,
      backend: info.backend,
      tokens_per_sec: tokens / sec,
      sec_per_iter_median: sec,
      sec_per_iter_min: Math.min(...times),
      iters: times.length,
      threads: info.threads,
      simd: info.simd,
      peak_rss_bytes: peakRss(),
      tensors_after: tf.memory().numTensors,
      config: cfg,
      micro_batch: micro,
      date: new Date().toISOString(),
    };
    console.log(JSON.stringify(row));
    rows.push(row);
    await appendJsonLine(`${flags.out}/bench.jsonl`, row);
  }
}

for (const t of torchRows) {
  rows.push({ ...(t as Row), backend: "pytorch" });
  for (const ours of rows.filter((r) => r.workload === t.workload && r.backend !== "pytorch")) {
    const cmp = {
      workload: t.workload,
      backend: ours.backend,
      ours_tokens_per_sec: ours.tokens_per_sec,
      torch_tokens_per_sec: t.tokens_per_sec,
      ratio: ours.tokens_per_sec / (t.tokens_per_sec as number),
      torch_sec_per_iter_median: t.sec_per_iter_median,
      torch_blas: t.blas,
      torch_threads: t.threads,
      config: cfg,
      date: new Date().toISOString(),
    };
    console.log(JSON.stringify(cmp));
    await appendJsonLine(`${flags.out}/compare.jsonl`, cmp);
  }
}

if (rows.length) {
  await writePlot(
    `${flags.out}/tokens_per_sec.svg`,
    barChart(rows.map((r) => ({ ...r, series: `${r.workload} / ${r.backend}` })), {
      title: "Training throughput (tokens/s, higher is better)",
      x: "series",
      y: "tokens_per_sec",
      color: "backend",
      yTitle: "tokens / s",
    }),
  );
}
