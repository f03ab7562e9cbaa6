/**
 * `deno task bench`: training-speed benchmark, one JSON line per preset, workload and backend.
 *
 * Presets (`bench/presets.ts`): `shipped`, the kit's own base LM (vocab 274, hidden 64, 2
 * layers, ffn 192; 16 sequences of 128 tokens), the model every experiment trains; `bench`, the
 * larger issue-8 config (vocab 4096, hidden 256, 4 layers, ffn 688; 8 × 128). Default: both.
 * Model flags (--vocab --dim …) override the values of a single preset.
 *
 * Workloads (the same in `bench/torch_step.py`):
 * - `fwd_logp`: forward pass + summed response log-probs of batch × seq tokens (no gradient);
 * - `sft_step`: one LoRA SFT step (forward, backward, AdamW) on batch × seq tokens;
 * - `sdpo_step`: one LoRA S-DPO step with K rejected responses per prompt: batch × (1+K)
 *   sequences, reference log-probs computed live with adapters disabled (included in the
 *   time, not in the token count, as in the PyTorch script).
 * Each sequence is a prompt of seq/2 random tokens plus a response of the rest.
 *
 * `--compare-torch` runs `bench/torch_step.py` (or `--torch-script`) as a second process on the
 * same preset and interleaves the two: for each workload, `--repeats` rounds of our `--iters`
 * steps then PyTorch's, so both see the same load on a shared machine, with `--handoff-ms` of
 * idle time before each turn (so that neither engine's threads are still spinning when the other
 * is timed); medians over all timed steps, and the share of CPU time stolen by the hypervisor. Writes `bench.jsonl`, `compare.jsonl` (with the machine's description) and a plot.
 *
 * @module
 */
import { errorLine, type FlagTable, helpText, parseFlags } from "../src/cli/_args.ts";
import { initBackend, tf } from "../src/backend.ts";
import { blasScaling } from "../src/blas.ts";
import type { LlamaModel } from "../src/model.ts";
import { scorePairs, train, type TrainExample } from "../src/train.ts";
import { appendJsonLine, ensureDir } from "../src/io.ts";
import { writePlot } from "../src/report/plot.ts";
import { throughputPlot } from "./plot.ts";
import {
  BENCH_PRESETS,
  type BenchConfig,
  benchExamples,
  benchModel,
  benchTrainConfig,
} from "./presets.ts";

/** The flags of `deno task bench` (parser, `--help` and error messages). */
const BENCH_OPTIONS = {
  preset: {
    type: "string",
    value: "LIST",
    default: "shipped,bench",
    help: "presets to run, comma list: shipped = the kit's base LM (vocab 274, hidden 64, " +
      "2 layers, ffn 192; 16 × 128 tokens), bench = the issue-8 config (vocab 4096, hidden 256, " +
      "4 layers, ffn 688; 8 × 128); see bench/presets.ts",
  },
  vocab: { type: "string", value: "N", defaultText: "preset", help: "vocabulary size" },
  dim: { type: "string", value: "N", defaultText: "preset", help: "hidden size" },
  layers: { type: "string", value: "N", defaultText: "preset", help: "transformer layers" },
  heads: { type: "string", value: "N", defaultText: "preset", help: "attention heads" },
  ffn: { type: "string", value: "N", defaultText: "preset", help: "feed-forward size" },
  seq: { type: "string", value: "N", defaultText: "preset", help: "tokens per sequence" },
  batch: {
    type: "string",
    value: "N",
    defaultText: "preset",
    help: "sequences (prompts) per step",
  },
  rank: { type: "string", value: "N", defaultText: "preset", help: "LoRA rank" },
  alpha: { type: "string", value: "X", defaultText: "preset", help: "LoRA alpha" },
  "n-rejected": {
    type: "string",
    value: "K",
    defaultText: "preset",
    help: "rejected responses per prompt in sdpo_step",
  },
  "micro-batch": {
    type: "string",
    value: "N",
    defaultText: "preset",
    help: "sequences per forward/backward pass inside a step (model flags change a single " +
      "--preset only)",
  },
  iters: { type: "string", value: "N", default: "3", help: "timed steps per round" },
  warmup: {
    type: "string",
    value: "N",
    default: "3",
    help: "untimed steps of each engine before the rounds (the worker engine's code is " +
      "compiled on its first steps)",
  },
  repeats: {
    type: "string",
    value: "N",
    default: "3",
    help: "rounds; with --compare-torch each round times ours, then PyTorch's (interleaved)",
  },
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
  out: {
    type: "string",
    value: "DIR",
    default: "results/bench",
    help: "appends bench.jsonl (and compare.jsonl) and writes tokens_per_sec.svg there",
  },
  "compare-torch": {
    type: "boolean",
    help: "also time the same workloads in PyTorch (--torch-script), interleaved with ours, " +
      "and write compare.jsonl",
  },
  "torch-script": {
    type: "string",
    value: "FILE",
    defaultText: "bench/torch_step.py",
    help: "the PyTorch step script of --compare-torch (its --serve mode is used)",
  },
  "torch-threads": {
    type: "string",
    value: "N",
    defaultText: "the number of cores",
    help: "PyTorch's intra-op threads for --compare-torch (1 is the steadier anchor on a busy " +
      "machine, where two OpenMP threads lose most of their time waiting for each other)",
  },
  python: {
    type: "string",
    value: "FILE",
    default: "/usr/bin/python3",
    help: "a Python with torch, for --compare-torch",
  },
  "handoff-ms": {
    type: "string",
    value: "MS",
    default: "300",
    help: "with --compare-torch, idle time between our round and PyTorch's and back, so that " +
      "neither times its steps while the other's threads still spin (OpenBLAS's for ~0.1 s " +
      "after a product; PyTorch's OpenMP threads stall when a core is taken)",
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
      "rejected responses, reference log-probs live) per preset and backend, one JSON line each " +
      "on stdout and in --out, with the machine's description.",
  }));
  Deno.exit(0);
}

function int(name: keyof typeof flags, value = flags[name]): number {
  const v = Number(value);
  if (!Number.isInteger(v) || v <= 0) {
    usageError(`--${name}: expected a positive integer, got "${value}"`);
  }
  return v;
}

const presetNames = flags.preset!.split(",");
for (const p of presetNames) {
  if (!BENCH_PRESETS[p]) {
    usageError(
      `--preset: unknown preset "${p}"; allowed: ${Object.keys(BENCH_PRESETS).join(", ")}`,
    );
  }
}
const OVERRIDES: [keyof typeof flags, keyof BenchConfig][] = [
  ["vocab", "vocab"],
  ["dim", "dim"],
  ["layers", "layers"],
  ["heads", "heads"],
  ["ffn", "ffn"],
  ["seq", "seq"],
  ["batch", "batch"],
  ["rank", "rank"],
  ["n-rejected", "k"],
  ["micro-batch", "micro"],
];
const given = OVERRIDES.filter(([f]) => flags[f] !== undefined);
if ((given.length || flags.alpha !== undefined) && presetNames.length > 1) {
  usageError(
    `--${
      given[0]?.[0] ?? "alpha"
    } changes one preset: give a single --preset (e.g. --preset shipped)`,
  );
}
const presets: [string, BenchConfig][] = presetNames.map((name) => {
  const cfg = { ...BENCH_PRESETS[name] };
  for (const [f, key] of given) cfg[key] = int(f);
  if (flags.alpha !== undefined) {
    cfg.alpha = Number(flags.alpha);
    if (!(Number.isFinite(cfg.alpha) && cfg.alpha > 0)) {
      usageError(`--alpha: expected a number > 0, got "${flags.alpha}"`);
    }
  }
  if (cfg.dim % cfg.heads !== 0 || (cfg.dim / cfg.heads) % 2 !== 0) {
    usageError(
      `--heads: --dim ${cfg.dim} / --heads ${cfg.heads} must be an even integer (the head size)`,
    );
  }
  return [name, cfg];
});
const iters = int("iters");
const torchThreads = flags["torch-threads"] === undefined
  ? navigator.hardwareConcurrency || 2
  : int("torch-threads");
const repeats = int("repeats");
const warmup = Number(flags.warmup);
if (!(Number.isInteger(warmup) && warmup >= 0)) {
  usageError(`--warmup: expected an integer >= 0, got "${flags.warmup}"`);
}
const handoffMs = Number(flags["handoff-ms"]);
if (!(Number.isFinite(handoffMs) && handoffMs >= 0)) {
  usageError(`--handoff-ms: expected a number >= 0, got "${flags["handoff-ms"]}"`);
}
const workloads = flags.workloads!.split(",");
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

/** Jiffies since boot of all CPUs: [total, steal] (Linux; undefined elsewhere). */
function cpuTimes(): [number, number] | undefined {
  try {
    // Deno reads /proc/stat only with --allow-all; cat reads it for us.
    const out = new Deno.Command("cat", { args: ["/proc/stat"], stdout: "piped", stderr: "null" })
      .outputSync();
    const f = new TextDecoder().decode(out.stdout).split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    return [f.reduce((a, b) => a + b, 0), f[7] ?? 0];
  } catch {
    return undefined;
  }
}

/** Share of CPU time the hypervisor gave to other machines between two {@link cpuTimes}, %. */
function stealPercent(
  from: [number, number] | undefined,
  to: [number, number] | undefined,
): number | undefined {
  if (!from || !to || to[0] === from[0]) return undefined;
  return Math.round(1000 * (to[1] - from[1]) / (to[0] - from[0])) / 10;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU, cores, memory, load and software: what a reader needs to weigh the figures. */
function machine(): Record<string, unknown> {
  let cpu: string = Deno.build.arch;
  try {
    // /proc/cpuinfo needs --allow-all under Deno; lscpu reads it for us.
    const out = new Deno.Command("lscpu", { stdout: "piped", stderr: "null" }).outputSync();
    cpu = new TextDecoder().decode(out.stdout).match(/Model name:\s*(.*)/)?.[1]?.trim() ?? cpu;
  } catch { /* no lscpu */ }
  const opt = <T>(f: () => T): T | undefined => {
    try {
      return f();
    } catch {
      return undefined;
    }
  };
  const mem = opt(() => Deno.systemMemoryInfo().total);
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memory_gib: mem ? Math.round(mem / 1024 ** 3 * 10) / 10 : undefined,
    load_average: opt(() => Deno.loadavg().map((x) => Math.round(x * 100) / 100)),
    os: `${Deno.build.os} ${opt(() => Deno.osRelease()) ?? ""}`.trim(),
    deno: Deno.version.deno,
    tfjs: tf.version_core,
  };
}

/** Seconds of each of `n` steps of a workload (a train run of n + 1 steps; the first is setup). */
async function ourSteps(
  workload: string,
  cfg: BenchConfig,
  model: LlamaModel,
  ex: TrainExample[],
  n: number,
): Promise<number[]> {
  if (workload === "fwd_logp") {
    const pairs = ex.map((e) => ({ prompt: e.prompt, response: e.chosen }));
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      scorePairs(model, pairs, { microBatchSize: cfg.micro });
      times.push((performance.now() - t0) / 1000);
    }
    return times;
  }
  const times: number[] = [];
  let last = performance.now();
  await train(model, ex, benchTrainConfig(cfg, workload, n + 1), {
    progress: false,
    onLog: () => {
      const now = performance.now();
      times.push((now - last) / 1000);
      last = now;
    },
  });
  return times.slice(1);
}

function tokensPerStep(workload: string, cfg: BenchConfig): number {
  return workload === "sdpo_step" ? cfg.batch * (1 + cfg.k) * cfg.seq : cfg.batch * cfg.seq;
}

/** The PyTorch step script in `--serve` mode: one JSON answer per "<workload> <iters>" line. */
class TorchServer {
  private proc: Deno.ChildProcess;
  private lines: AsyncIterator<string>;
  private writer: WritableStreamDefaultWriter<Uint8Array>;
  info: Record<string, unknown> = {};
  /** Which BLAS build torch was started with. */
  blasBuild = "the system's default BLAS (the OpenMP OpenBLAS build is not installed)";
  constructor(cfg: BenchConfig, script: string) {
    const args = [
      script,
      "--serve",
      "--threads",
      String(torchThreads),
      ...Object.entries({
        vocab: cfg.vocab,
        dim: cfg.dim,
        layers: cfg.layers,
        heads: cfg.heads,
        ffn: cfg.ffn,
        seq: cfg.seq,
        batch: cfg.batch,
        rank: cfg.rank,
        alpha: cfg.alpha,
        "n-rejected": cfg.k,
      }).flatMap(([k, v]) => [`--${k}`, String(v)]),
    ];
    // Debian's torch is measured with the OpenMP OpenBLAS: the pthread build oversubscribes the
    // cores under torch's own OpenMP threads (~2× slower here).
    const openmp = "/usr/lib/x86_64-linux-gnu/openblas-openmp";
    let env: Record<string, string> = {};
    try {
      Deno.statSync(openmp);
      env = { LD_LIBRARY_PATH: openmp };
      this.blasBuild = "OpenMP OpenBLAS";
    } catch { /* the system default BLAS */ }
    this.proc = new Deno.Command(flags.python!, {
      args,
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.writer = this.proc.stdin.getWriter();
    this.lines = this.proc.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(
      new TransformStream<string, string>(
        {
          buf: "",
          transform(chunk, ctl) {
            // deno-lint-ignore no-explicit-any
            const self = this as any;
            self.buf = (self.buf ?? "") + chunk;
            const parts = self.buf.split("\n");
            self.buf = parts.pop();
            for (const p of parts) if (p.trim()) ctl.enqueue(p);
          },
        } as Transformer<string, string> & { buf: string },
      ),
    )[Symbol.asyncIterator]();
  }
  private async next(): Promise<Record<string, unknown>> {
    const r = await this.lines.next();
    if (r.done) throw new Error("the PyTorch script exited (see its error above)");
    return JSON.parse(r.value);
  }
  async ready(): Promise<void> {
    this.info = await this.next();
  }
  async run(workload: string, n: number): Promise<number[]> {
    await this.writer.write(new TextEncoder().encode(`${workload} ${n}\n`));
    return (await this.next()).sec_per_iter as number[];
  }
  async close(): Promise<void> {
    await this.writer.write(new TextEncoder().encode("quit\n")).catch(() => {});
    await this.writer.close().catch(() => {});
    await this.proc.status;
  }
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
const backends = requested === "available" || requested === "all"
  ? [
    "wasm",
    ...(await nativeInstalled() ? ["tensorflow"] : []),
    ...(requested === "all" ? ["cpu"] : []),
  ]
  : requested.split(",");
const torchScript = flags["torch-script"] ??
  new URL("./torch_step.py", import.meta.url).pathname;
await ensureDir(flags.out!);

type Row = {
  preset: string;
  workload: string;
  backend: string;
  engine: string;
  tokens_per_sec: number;
  sec_per_iter_median: number;
};
const rows: Row[] = [];
for (const backend of backends) {
  const info = await initBackend(backend);
  const engine = info.backend === "wasm"
    ? `wasm${
      info.blas.startsWith("off") ? "" : /openblas/i.test(info.blas) ? " + OpenBLAS" : " + BLAS"
    }${info.engines > 1 ? `, ${info.engines} engines` : ""}`
    : info.backend;
  for (const [preset, cfg] of presets) {
    let torch: TorchServer | undefined;
    if (flags["compare-torch"] && backend === backends[0]) {
      try {
        torch = new TorchServer(cfg, torchScript);
        await torch.ready();
      } catch (e) {
        console.error(
          `--compare-torch: could not run ${flags.python} ${torchScript} (needs torch): ${
            (e as Error).message
          }`,
        );
        torch = undefined;
      }
    }
    const ex = benchExamples(cfg);
    for (const workload of workloads) {
      const model = benchModel(cfg);
      const ours: number[] = [];
      const theirs: number[] = [];
      if (warmup) {
        await ourSteps(workload, cfg, model, ex, warmup);
        if (torch) await torch.run(workload, warmup);
      }
      const cpuFrom = cpuTimes();
      const scaling: (number | undefined)[] = [];
      for (let r = 0; r < repeats; r++) {
        if (torch) {
          scaling.push(blasScaling());
          await pause(handoffMs);
        }
        ours.push(...await ourSteps(workload, cfg, model, ex, iters));
        if (torch) {
          await pause(handoffMs);
          theirs.push(...await torch.run(workload, iters));
        }
      }
      const steal = stealPercent(cpuFrom, cpuTimes());
      model.dispose();
      const tokens = tokensPerStep(workload, cfg);
      const sec = median(ours);
      const row = {
        preset,
        workload,
        backend: info.backend,
        engine,
        tokens_per_sec: tokens / sec,
        sec_per_iter_median: sec,
        sec_per_iter_min: Math.min(...ours),
        iters: ours.length,
        threads: info.threads,
        engines: info.engines,
        simd: info.simd,
        blas: info.blas,
        peak_rss_bytes: peakRss(),
        tensors_after: tf.memory().numTensors,
        config: cfg,
        machine: machine(),
        steal_percent: steal,
        date: new Date().toISOString(),
      };
      console.log(JSON.stringify(row));
      rows.push(row);
      await appendJsonLine(`${flags.out}/bench.jsonl`, row);
      if (torch) {
        const tsec = median(theirs);
        const torchEngine = `PyTorch ${
          String(torch.info.torch).replace(/a0$/, "")
        }, ${torch.info.threads} thread${torch.info.threads === 1 ? "" : "s"}`;
        rows.push({
          preset,
          workload,
          backend: "pytorch",
          engine: torchEngine,
          tokens_per_sec: tokens / tsec,
          sec_per_iter_median: tsec,
        });
        const cmp = {
          preset,
          workload,
          backend: info.backend,
          engine,
          ours_tokens_per_sec: tokens / sec,
          torch_tokens_per_sec: tokens / tsec,
          ratio: tsec / sec,
          ours_sec_per_iter: ours,
          torch_sec_per_iter: theirs,
          interleaved: `${repeats} rounds of ${iters} steps each, ours first, ${handoffMs} ms ` +
            "idle before each",
          steal_percent: steal,
          two_thread_scaling: scaling,
          torch_script: torchScript.split("/").slice(-2).join("/"),
          torch: torch.info,
          torch_blas_build: torch.blasBuild,
          peak_rss_bytes: peakRss(),
          config: cfg,
          machine: machine(),
          date: new Date().toISOString(),
        };
        console.log(JSON.stringify(cmp));
        await appendJsonLine(`${flags.out}/compare.jsonl`, cmp);
      }
    }
    await torch?.close();
  }
}

if (rows.length) {
  const load = Deno.loadavg()[2].toFixed(1);
  await writePlot(
    `${flags.out}/tokens_per_sec.svg`,
    throughputPlot(rows, `2 cores, 15-min load average ${load} when the run ended`),
  );
}
