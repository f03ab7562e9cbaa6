/**
 * Overall progress of `deno task reproduce`: one line per finished stage on stderr,
 *
 * ```
 * [reproduce] stage 12/40 · 5m10s elapsed · ETA 8m
 * ```
 *
 * How the ETA is estimated:
 *
 * 1. **Plan.** {@link planReproduce} lists the stages the run will record (the same
 *    enumeration the experiments follow: per seed stage 0, SFT, the arms and their
 *    evaluations; the classic baselines; each ablation arm), each with a *kind* and a prior
 *    cost in seconds from a cost model per kind: a fixed overhead plus a per-step cost times
 *    the scale's steps × batch (`SCALE_PRESETS`), with constants measured on 2 cores at
 *    `--scale small` and `test`. DPO4Rec records no stages: it is one planned block.
 * 2. **Refine.** Each finished stage is classified by its recorded name ({@link stageKind}) and
 *    compared with *its own planned prior* (the next planned stage of that kind: the plan lists
 *    stages in the order the run records them, so a 113-step DMPO arm is compared with the
 *    prior of a 113-step arm, a main S-DPO arm with {@link sdpoMainArmSeconds}); the ratio
 *    measured / prior of the finished stages of a kind rescales that kind's remaining stages
 *    (kinds not seen yet use the ratio over all finished stages). Stages loaded from a run
 *    folder or cache are not used to refine.
 * 3. **Overhead.** Wall time spent outside the timed stages (evaluations of baselines, plots,
 *    tables) is carried as the ratio of wall time to the stages' seconds since the first stage
 *    finished (between 1 and 2).
 *
 * Only the CLI prints this line: the notebooks call the experiment functions directly.
 *
 * @module
 */
import { type Scale, sdpoArmSteps } from "../experiments/common.ts";
import { dmpoProtocol, epochSteps } from "../experiments/dmpo.ts";
import { equalStepsKs, samplerKs } from "../experiments/dmpo_ablations.ts";

/** Kinds of stages, each with its own cost model. */
export type StageKind =
  | "stage0"
  | "sdpo-eval"
  | "sdpo-arm"
  | "baseline"
  | "score"
  | "dmpo-sft"
  | "dmpo-arm"
  | "few-shot-sft"
  | "mining"
  | "reused"
  | "dpo4rec";

/** One planned stage. */
export interface PlannedStage {
  /** The experiment it belongs to (as `recordStage` names it). */
  experiment: string;
  /** Its kind. */
  kind: StageKind;
  /** Prior cost in seconds. */
  seconds: number;
}

/** The baselines `recordStage` times, in order, with their prior seconds. */
const BASELINE_PRIOR = [0, 9, 5, 13];

/**
 * Prior seconds of a stage of `kind` at `scale` (n = the few-shot size of a few-shot SFT, the
 * seed count of a DPO4Rec block; the steps of a DMPO SFT or arm). Constants measured on 2
 * cores: S-DPO stage 0 183 s for 450 steps × 64 (small) and 4 s for 12 × 8 (test); an arm
 * 6–10 s for 120 steps × 8; DMPO's SFT 17 s for 200 steps, an arm 2.5–3.5 s for 40 steps;
 * DPO4Rec (since its headroom design: SASRec window 1, reward diagnostics, τ = 2) 949 s for
 * one seed at small on 2 cores shared with other jobs, whose DMPO stages of the same hour ran at
 * about 2.5× their priors, so about 300-380 s idle; 4-44 s at test, by load.
 */
export function priorSeconds(kind: StageKind, scale: Scale, n = 1): number {
  switch (kind) {
    case "stage0":
      return 2 + 0.0063 * scale.baseSteps * scale.sftBatch;
    case "sdpo-eval":
      return 0.3 + 0.005 * scale.sdpoTest;
    case "sdpo-arm":
      return 0.7 + 0.0085 * scale.prefSteps * scale.prefBatch;
    case "baseline":
      return 7;
    case "score":
      return 0.2 + 0.001 * scale.prefPrompts;
    case "dmpo-sft":
      return 1 + 0.08 * n;
    case "dmpo-arm":
      return 0.8 + 0.07 * n;
    case "few-shot-sft":
      return 0.5 + 0.012 * n;
    case "mining":
      return 1.5;
    case "reused":
      return 0.1;
    case "dpo4rec":
      return n * (4 + 2.5 * scale.prefSteps);
  }
}

/**
 * Prior seconds of a main S-DPO arm under the released protocol (K = 0: SFT-cont): its
 * examples at a per-example cost growing with K (on 2 idle cores, from the default run's
 * 960-example arms: 6.4 ms SFT-cont, 8.6 ms DPO, 9.5 ms K = 3; K = 8 about 1.65-2× K = 3),
 * plus its validation and curve evaluations at the cost of an `sdpo-eval` stage's prompt (5 ms a
 * 20-candidate prompt; 3 ms underestimated the curve evaluations of `--scale tiny` runs).
 */
export function sdpoMainArmSeconds(scale: Scale, k: number): number {
  const perExample = k === 0 ? 0.0064 : 0.0075 + 0.0011 * k;
  return 0.7 + sdpoArmSteps(scale) * scale.prefBatch * perExample +
    scale.sdpoEvals * 0.005 * (scale.sdpoValid + scale.sdpoCurveTest);
}

/** What a run does, as far as the plan needs it. */
export interface PlanInput {
  /** Papers, in run order. */
  papers: readonly ("sdpo" | "dmpo" | "dpo4rec")[];
  /** The scale preset. */
  scale: Scale;
  /** Seeds per paper. */
  seeds: Readonly<Record<"sdpo" | "dmpo" | "dpo4rec", number>>;
  /** The S-DPO ablations run. */
  sdpoAblations: boolean;
  /** The DMPO ablations run. */
  dmpoAblations: boolean;
  /** The synthetic world (false: a released data set). */
  synthetic: boolean;
}

/** The stages a run will record, in order, with their prior costs. */
export function planReproduce(p: PlanInput): PlannedStage[] {
  const s = p.scale;
  const out: PlannedStage[] = [];
  const add = (experiment: string, kind: StageKind, n = 1) =>
    out.push({ experiment, kind, seconds: priorSeconds(kind, s, n) });
  const baselines = (seed: number) => {
    if (seed >= s.baselineSeeds) return;
    BASELINE_PRIOR.forEach((sec) =>
      out.push({ experiment: "baselines", kind: "baseline", seconds: sec })
    );
  };
  for (const paper of p.papers) {
    const seeds = p.seeds[paper];
    if (paper === "dpo4rec") {
      add("dpo4rec", "dpo4rec", seeds);
      continue;
    }
    if (paper === "sdpo") {
      for (let seed = 0; seed < seeds; seed++) {
        const own = seed < Math.max(1, s.stage0Seeds);
        add("sdpo", own ? "stage0" : "reused");
        add("sdpo", own ? "sdpo-eval" : "reused");
        if (p.synthetic) {
          // The released protocol: on the first seed DPO at each learning rate of the grid
          // (the chosen one is the DPO arm), then SFT-cont, DPO, S-DPO at each K.
          const grid = seed === 0 && s.sdpoLrGrid.length > 1;
          const arm = (k: number) =>
            out.push({ experiment: "sdpo", kind: "sdpo-arm", seconds: sdpoMainArmSeconds(s, k) });
          if (grid) s.sdpoLrGrid.forEach(() => arm(1));
          for (const k of [0, 1, ...s.sdpoKs]) {
            if (!(grid && k === 1)) arm(k);
            add("sdpo", "sdpo-eval");
          }
        } else {
          for (let arm = 0; arm < 3; arm++) {
            add("sdpo", "sdpo-arm");
            add("sdpo", "sdpo-eval");
          }
        }
        baselines(seed);
        if (seed === 0 && p.sdpoAblations && p.synthetic) {
          // Their own uniform DPO and S-DPO K=3, then the other K and β.
          const nK = s.ablKs.filter((k) => k !== 1 && k !== 3).length;
          const nBeta = s.ablBetas.filter((b) => b !== 1).length;
          for (let i = 0; i < 2 + nK + nBeta; i++) add("sdpo-ablations", "sdpo-arm");
          add("sdpo-ablations", "score");
          // Samplers (same-genre, model-hard) × (DPO, S-DPO), then the K sweep per sampler:
          // popularity at every K, the others at the K not trained already.
          for (let i = 0; i < 4 + s.ablKs.length + 2 * nK; i++) add("sdpo-ablations", "sdpo-arm");
        }
      }
    } else {
      // Stage 0 is shared with S-DPO's when both run on the synthetic world. DMPO's protocol
      // (src/experiments/dmpo.ts): SFT and arms by epochs of the few-shot users' pair rows.
      const shared = p.synthetic && p.papers.includes("sdpo");
      const pr = dmpoProtocol(s);
      const pb = s.prefBatch;
      const armSteps = (users: number, k: number) => epochSteps(users * k, pr.prefEpochs, pb);
      const sftSteps = (users: number) => epochSteps(users, pr.sftEpochs, s.batchSize);
      // The released files hold 100 users (src/experiments/datasets.ts keeps the first ones).
      const users = p.synthetic ? pr.users : Math.min(pr.users, 100);
      // SFT-cont, K=3, K=1, K=3 at equal steps (0: K=1's steps), released K=3, DMPO-only K=3.
      const arms = [1, 3, 1, 0, 3, 3];
      for (let seed = 0; seed < seeds; seed++) {
        const own = seed < Math.max(1, s.stage0Seeds);
        add("dmpo", own && !shared ? "stage0" : "reused");
        add("dmpo", own ? "dmpo-sft" : "reused", sftSteps(users));
        for (const k of arms) add("dmpo", "dmpo-arm", armSteps(users, k || 1));
        // On the synthetic world the baselines are S-DPO's (same world), trained once.
        if (!p.synthetic || !p.papers.includes("sdpo")) baselines(seed);
      }
      if (p.dmpoAblations && p.synthetic) {
        add("dmpo-abl", "dmpo-sft", sftSteps(pr.users));
        add("dmpo-abl", "mining");
        // Popularity at every K (and 3), the other samplers at their K > 1, then the
        // popularity rows at K=1's steps.
        for (const k of new Set([...s.ablDmpoNegs, 3])) {
          add("dmpo-abl", "dmpo-arm", armSteps(pr.users, k));
        }
        for (const k of samplerKs(s, "uniform").filter((k) => k > 1)) {
          for (let i = 0; i < 3; i++) add("dmpo-abl", "dmpo-arm", armSteps(pr.users, k));
        }
        for (const _ of equalStepsKs(s)) add("dmpo-abl", "dmpo-arm", armSteps(pr.users, 1));
        // Few-shot: SFT, SFT+DMPO and DMPO-only per n (at the protocol's own n, DMPO-only).
        for (const n of pr.fewShot) {
          if (n !== pr.users) {
            add("dmpo-abl", "few-shot-sft", n);
            add("dmpo-abl", "dmpo-arm", armSteps(n, 3));
          }
          add("dmpo-abl", "dmpo-arm", armSteps(n, 3));
        }
      }
    }
  }
  return out;
}

/** The kind of a recorded stage, from its experiment and name (as `recordStage` gets them). */
export function stageKind(experiment: string, stage: string): StageKind {
  if (/\(reused\)|from run folder|from disk cache/.test(stage)) return "reused";
  if (experiment === "baselines") return "baseline";
  if (experiment === "dpo4rec") return "dpo4rec";
  if (experiment === "sdpo") {
    if (/^SFT($| \()/.test(stage)) return "stage0";
    return stage.startsWith("eval/") ? "sdpo-eval" : "sdpo-arm";
  }
  if (experiment === "sdpo-ablations") return stage.startsWith("score") ? "score" : "sdpo-arm";
  if (experiment === "dmpo" && stage.startsWith("Base LM")) return "stage0";
  if (/^SFT n=/.test(stage)) return "few-shot-sft";
  if (/^SFT($| \()/.test(stage)) return "dmpo-sft";
  if (/mining/.test(stage)) return "mining";
  return "dmpo-arm";
}

/** `5m10s`, `45s`, `1h02m`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** `8m`, `40s`, `1h05m`: an ETA, rounded to what an estimate can say. */
export function formatEta(seconds: number): string {
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.max(5, Math.round(s / 5) * 5)}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** The overall progress of a run: feed it each finished stage; it says where the run is. */
export class RunProgress {
  private done = 0;
  private readonly measured = new Map<StageKind, { seconds: number; prior: number }>();
  /** Wall clock when the first stage finished, and the stage seconds recorded since. */
  private first: number | undefined;
  private secondsSinceFirst = 0;

  /**
   * @param plan The planned stages ({@link planReproduce}).
   * @param scale The scale (prior costs of recorded stages).
   * @param now Wall clock in seconds (tests pass their own).
   */
  constructor(
    readonly plan: PlannedStage[],
    private readonly scale: Scale,
    private readonly now: () => number = () => performance.now() / 1000,
    private readonly start = now(),
  ) {}

  /** Stages finished so far. */
  get finished(): number {
    return this.done;
  }

  /**
   * The prior of a finished stage: the planned stage it is (the one at its position when the
   * kinds agree, else the next planned stage of its kind), else the kind's prior at `n`.
   */
  private priorOf(kind: StageKind, n: number): number {
    const at = this.plan[this.done];
    if (at?.kind === kind) return at.seconds;
    const next = this.plan.slice(this.done).find((p) => p.kind === kind);
    return next?.seconds ?? priorSeconds(kind, this.scale, n);
  }

  /** Record a finished stage (its experiment, name and seconds); returns the progress line. */
  stage(experiment: string, stage: string, seconds: number, n = 1): string {
    const kind = stageKind(experiment, stage);
    if (kind === "few-shot-sft") n = Number(/n=(\d+)/.exec(stage)?.[1] ?? n);
    if (kind !== "reused") {
      const m = this.measured.get(kind) ?? { seconds: 0, prior: 0 };
      m.seconds += seconds;
      m.prior += this.priorOf(kind, n);
      this.measured.set(kind, m);
    }
    if (this.first === undefined) this.first = this.now();
    else this.secondsSinceFirst += seconds;
    this.done++;
    return this.line();
  }

  /** Estimated seconds left: the remaining planned stages, rescaled as measured so far. */
  etaSeconds(): number {
    let all = { seconds: 0, prior: 0 };
    for (const m of this.measured.values()) {
      all = { seconds: all.seconds + m.seconds, prior: all.prior + m.prior };
    }
    const global = all.prior > 0 ? all.seconds / all.prior : 1;
    let left = 0;
    for (const st of this.plan.slice(this.done)) {
      const m = this.measured.get(st.kind);
      left += st.seconds * (m && m.prior > 0 ? m.seconds / m.prior : global);
    }
    // Wall time outside the timed stages (evaluations, plots, tables) as a share of the stages'
    // time, measured from the first finished stage on (set-up before it does not recur).
    const wall = this.first === undefined ? 0 : this.now() - this.first;
    const overhead = this.secondsSinceFirst >= 5
      ? Math.min(2, Math.max(1, wall / this.secondsSinceFirst))
      : 1;
    return left * overhead;
  }

  /** `[reproduce] stage 12/40 · 5m10s elapsed · ETA 8m` (no ETA once every stage is done). */
  line(): string {
    const total = Math.max(this.plan.length, this.done);
    const elapsed = formatDuration(this.now() - this.start);
    const head = `[reproduce] stage ${this.done}/${total} · ${elapsed} elapsed`;
    return this.done >= total ? head : `${head} · ETA ${formatEta(this.etaSeconds())}`;
  }
}
