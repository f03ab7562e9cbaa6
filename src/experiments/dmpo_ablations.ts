/**
 * DMPO ablations on the synthetic world (one seed), under the released protocol of
 * src/experiments/dmpo.ts ({@link DMPO_PROTOCOL}: `users` few-shot train users, K negatives =
 * K pair rows per user, each prompt naming its own negative; SFT 5 epochs, preference 3):
 *
 * - **negatives**: SFT+DMPO with K = 1 … n negatives (`scale.ablDmpoNegs`) from one SFT model,
 *   for each negative sampler of src/experiments/negatives.ts (popularity-drawn over every K;
 *   uniform, same-genre, model-mined hard over `scale.ablSamplerNegs`): the first negative is
 *   the SFT pair's, the sampler draws the K − 1 extra ones, each gets its own pair prompt;
 *   every arm trains its rows for the same epochs ("equal epochs": K× the steps of K = 1),
 *   and the popularity arms with K > 1 also at K = 1's steps ("equal steps");
 * - **few-shot**: SFT+DMPO vs DMPO-only trained on `n` users for each `n` of the protocol's
 *   few-shot sizes (world `fewShot` subsets of the train users);
 * - **cross-domain**: the SFT and SFT+DMPO models trained on domain 0 ("movie") evaluated on
 *   the test users' domain-1 ("game") pairs, beside domain 0 (world `crossDomainDmpo`).
 *
 * Findings ({@link dmpoAblationFindings}) use the verdict rule of src/report/findings.ts on
 * the per-pair correctness rows. {@link writeDmpoAblationPlots} writes the SVG plots.
 *
 * @module
 */
import { tf } from "../backend.ts";
import { crossDomainDmpo, type DmpoSample, fewShot, type World } from "../data/world.ts";
import {
  type ClaimSpec,
  compareRows,
  type Finding,
  notTested,
  toFinding,
} from "../report/findings.ts";
import { dmpoAblationFigures, writeFigures } from "../report/figures.ts";
import { Rng } from "../rng.ts";
import {
  disposeSnapshot,
  fromSnapshot,
  recordStage,
  type Scale,
  SCALE_PRESETS,
  type ScaleName,
  scoreResponses,
  since,
  type Snapshot,
  subset,
} from "./common.ts";
import { ABLATION_SAMPLERS, type AblationSampler, withExtraNegatives } from "./negatives.ts";
import {
  DMPO_PROTOCOL,
  DMPO_RESPONSE,
  dmpoExample,
  type DmpoMethodResult,
  dmpoPairRows,
  dmpoProtocol,
  dmpoSft,
  dmpoTrainSamples,
  epochSteps,
  evaluateDmpo,
} from "./dmpo.ts";
import { sdpoData, trainArm } from "./sdpo.ts";
import { stage0Snapshot } from "./pretrained.ts";
import { sourceNote } from "./runs.ts";

/** One ablation row: the DMPO evaluation of one model. */
export type DmpoAblationRow = Omit<DmpoMethodResult, "chosen_logp" | "rejected_logp">;

/** One arm of the negatives sweep. */
export interface KSweepRow {
  /** Sampler of the extra negatives. */
  sampler: AblationSampler;
  /** Negatives (pair rows) per user. */
  k: number;
  /** Row name in `methods`. */
  method: string;
  /** Paired AUC. */
  auc_paired: number;
  /** AUC as DMPO's notebook. */
  auc_released: number;
  /** Mean summed log-prob of the positive's response on the test pairs. */
  mean_chosen_logp: number;
  /** Last logged training loss. */
  final_loss: number | null;
  /** Optimizer steps. */
  steps: number;
}

/** What {@link runDmpoAblations} returns. */
export interface DmpoAblations {
  /** Scale preset name. */
  scale: ScaleName;
  /** Seed. */
  seed: number;
  /** Test pairs (domain 0; the cross-domain rows use as many domain-1 pairs). */
  num_test: number;
  /** The test user of each domain-0 test pair (rows of one user are one cluster). */
  row_users?: number[];
  /** The test user of each domain-1 test pair (the rows of methods named `... @<domain>`). */
  target_row_users?: number[];
  /** Row name → evaluation ("SFT+DMPO K=2", "DMPO-only n=64", "SFT+DMPO K=3 @game", ...). */
  methods: Record<string, DmpoAblationRow>;
  /**
   * Negatives sweep at equal epochs: per sampler and K (K = 1 is one arm, shared by every
   * sampler).
   */
  k_sweep: KSweepRow[];
  /** Popularity negatives at K = 1's steps (equal steps), K > 1. */
  k_equal_steps: KSweepRow[];
  /** The samplers of the negatives sweep. */
  samplers: AblationSampler[];
  /** Train users of every negatives-sweep arm (K pair rows each). */
  sweep_prompts: number;
  /** Few-shot sweep. */
  few_shot: {
    n: number;
    arm: "SFT+DMPO" | "DMPO-only" | "SFT";
    method: string;
    auc_paired: number;
  }[];
  /** Cross-domain rows. */
  cross_domain: { model: string; domain: string; method: string; auc_paired: number }[];
  /** Notes. */
  notes: string[];
  /** Seconds. */
  seconds: number;
}

/** Config of {@link runDmpoAblations}. */
export interface DmpoAblationConfig {
  /** Scale preset. */
  scale: ScaleName;
  /** Seed (default 0). */
  seed?: number;
  /** Progress lines (default true). */
  progress?: boolean;
}

const K_MID = 3;

/** Model-mined hard negatives: uniform candidates per prompt that the SFT model scores. */
export const MINE_FROM = 19;

/**
 * The K values the negatives sweep trains for `sampler`: popularity all of `ablDmpoNegs`; the
 * other samplers the smallest and largest of `ablSamplerNegs` (their claims compare those
 * two; under the released protocol a K arm costs K× the steps of K = 1).
 */
export function samplerKs(scale: Scale, sampler: AblationSampler): number[] {
  if (sampler === "popularity") return scale.ablDmpoNegs;
  const ks = scale.ablSamplerNegs;
  return [...new Set([Math.min(...ks), Math.max(...ks)])];
}

/** The K values > 1 the popularity negatives also train at K = 1's steps (K_MID and the largest). */
export function equalStepsKs(scale: Scale): number[] {
  const hi = Math.max(...scale.ablDmpoNegs);
  return [...new Set([K_MID, hi])].filter((k) => k > 1 && scale.ablDmpoNegs.includes(k)).sort(
    (a, b) => a - b,
  );
}

/** Row name of a negatives-sweep arm (K = 1 and the popularity sampler keep the plain name). */
export function negativesArmName(k: number, sampler: AblationSampler): string {
  return k === 1 || sampler === "popularity" ? `SFT+DMPO K=${k}` : `SFT+DMPO K=${k} (${sampler})`;
}

/**
 * A model's summed log-prob of each candidate item's response (`<Title:x>` + EOS) after each
 * DMPO sample's prompt: the scores model-hard mining ranks by.
 */
export function candidateScores(
  model: Parameters<typeof scoreResponses>[0],
  tok: Parameters<typeof dmpoExample>[0],
  world: World,
  samples: readonly DmpoSample[],
  candidateIds: readonly number[][],
): number[][] {
  return scoreResponses(
    model,
    samples.map((s, i) => {
      const c = candidateIds[i].map((id) => world.items[id].title);
      const e = dmpoExample(tok, { ...s, negatives: c }, world, c.length);
      return { prompt: e.prompt, responses: e.rejected };
    }),
  );
}

/** Run the DMPO ablations. */
export async function runDmpoAblations(cfg: DmpoAblationConfig): Promise<DmpoAblations> {
  const t0 = performance.now();
  const scale = SCALE_PRESETS[cfg.scale];
  const protocol = dmpoProtocol(scale);
  const seed = cfg.seed ?? 0;
  const progress = cfg.progress !== false;
  const log = (m: string) => progress && console.error(m);
  const sd = sdpoData(scale);
  const { world, tok, config } = sd;
  const kMax = Math.max(...scale.ablDmpoNegs, K_MID);
  const pb = scale.prefBatch;
  const nMax = Math.max(protocol.users, ...protocol.fewShot);
  const all = dmpoTrainSamples(world, nMax, kMax);
  const cross = crossDomainDmpo(world, { numNegatives: 1 });
  const test = subset(cross.testSource, scale.dmpoTest, 13);
  const testTarget = subset(cross.test, scale.dmpoTest, 13);
  const sftSteps = (n: number) => epochSteps(n, protocol.sftEpochs, scale.batchSize);
  const base = await stage0Snapshot(config, sd.trainExamples, scale, seed, {
    label: `stage0/SFT s${seed}`,
    progress,
  });
  const methods: Record<string, DmpoAblationRow> = {};
  const ev = (
    name: string,
    m: { dispose(): void } & Parameters<typeof evaluateDmpo>[0],
    set: DmpoSample[] = test,
  ) => {
    const { chosen_logp: _c, rejected_logp: _r, ...row } = evaluateDmpo(m, tok, world, set);
    methods[name] = { ...row, train_seconds: 0, final_loss: null };
    return methods[name];
  };
  const evSnap = (name: string, snap: Snapshot, set: DmpoSample[] = test) => {
    const m = fromSnapshot(config, snap);
    try {
      return ev(name, m, set);
    } finally {
      m.dispose();
    }
  };
  // K negatives = K pair rows per user, each naming its own negative.
  const rows = (samples: DmpoSample[], k: number) =>
    dmpoPairRows(samples, k, 17).map((s) => dmpoExample(tok, s, world, 1));
  const arm = async (
    name: string,
    from: Snapshot,
    samples: DmpoSample[],
    k: number,
    steps: number,
    extraTests: [string, DmpoSample[]][] = [],
  ) => {
    const { model, seconds, finalLoss, ...how } = await trainArm(
      config,
      from,
      rows(samples, k),
      { name, stage: "dmpo-paper", k: 1, beta: 1 },
      scale,
      steps,
      seed,
      progress,
    );
    try {
      recordStage("dmpo-abl", name + sourceNote(how), seed, how.wallSeconds);
      const row = ev(name, model);
      row.train_seconds = seconds;
      row.final_loss = finalLoss;
      row.steps = steps;
      row.rows = samples.length * k;
      for (const [suffix, set] of extraTests) ev(`${name} ${suffix}`, model, set);
      log(
        `[dmpo-abl] ${name}: paired AUC ${row.auc_paired.toFixed(3)}, positive log-prob ` +
          `${row.mean_chosen_logp.toFixed(3)}, final loss ${
            finalLoss?.toFixed(4)
          } (${steps} steps)`,
      );
      return row;
    } finally {
      model.dispose();
    }
  };
  const sftOn = async (name: string, samples: DmpoSample[]) => {
    const r = await dmpoSft(
      config,
      base.snap,
      rows(samples, 1),
      scale,
      seed,
      {
        label: `dmpo-abl/${name}`,
        progress,
      },
      sftSteps(samples.length),
      name,
    );
    recordStage("dmpo-abl", name + sourceNote(r), seed, r.wallSeconds);
    return r;
  };
  const stepsOf = (users: number, k: number) => epochSteps(users * k, protocol.prefEpochs, pb);
  const ks = [...new Set([...scale.ablDmpoNegs, K_MID])].sort((a, b) => a - b);

  // Negatives sweep, per sampler, on the protocol's few-shot users (K pair rows each), plus
  // the cross-domain evaluation.
  const sweepBase = fewShot(all, Math.min(protocol.users, all.length), new Rng(29 + seed));
  const sft = await sftOn("SFT", sweepBase);
  const k_sweep: KSweepRow[] = [];
  const k_equal_steps: KSweepRow[] = [];
  const cross_domain: DmpoAblations["cross_domain"] = [];
  const target = world.domains[1].noun, source = world.domains[0].noun;
  const sweepRow = (sampler: AblationSampler, k: number, method: string): KSweepRow => {
    const r = methods[method];
    return {
      sampler,
      k,
      method,
      auc_paired: r.auc_paired,
      auc_released: r.auc_released,
      mean_chosen_logp: r.mean_chosen_logp,
      final_loss: r.final_loss,
      steps: r.steps ?? 0,
    };
  };
  try {
    const sftRow = evSnap("SFT", sft.snap);
    sftRow.train_seconds = sft.seconds;
    sftRow.steps = sftSteps(sweepBase.length);
    evSnap(`SFT @${target}`, sft.snap, testTarget);
    const bm = fromSnapshot(config, base.snap);
    try {
      ev(`Base LM @${target}`, bm, testTarget);
      ev("Base LM", bm);
    } finally {
      bm.dispose();
    }
    // The sweep's samples per sampler (kMax − 1 extra negatives each; model-hard: the SFT
    // model's top-scored of MINE_FROM uniform candidates).
    const tm = performance.now();
    const sm = fromSnapshot(config, sft.snap);
    const sets = {} as Record<AblationSampler, DmpoSample[]>;
    try {
      const score = (samples: DmpoSample[], cands: number[][]) =>
        candidateScores(sm, tok, world, samples, cands);
      ABLATION_SAMPLERS.forEach((sampler, i) => {
        sets[sampler] = withExtraNegatives(world, sweepBase, kMax - 1, sampler, {
          seed: 31 + 7 * i + seed,
          mineFrom: MINE_FROM,
          score,
        });
      });
    } finally {
      sm.dispose();
    }
    recordStage("dmpo-abl", "negative samplers (model-hard mining)", seed, since(tm));
    const n = sweepBase.length;
    const runs: [AblationSampler, number][] = [
      ...ks.map((k) => ["popularity", k] as [AblationSampler, number]),
      ...ABLATION_SAMPLERS.filter((x) => x !== "popularity").flatMap((x) =>
        samplerKs(scale, x).filter((k) => k > 1).map((k) => [x, k] as [AblationSampler, number])
      ),
    ];
    for (const [sampler, k] of runs) {
      const extra: [string, DmpoSample[]][] = k === K_MID && sampler === "popularity"
        ? [[`@${target}`, testTarget]]
        : [];
      await arm(negativesArmName(k, sampler), sft.snap, sets[sampler], k, stepsOf(n, k), extra);
    }
    // Equal steps: the popularity rows of K > 1 for K = 1's steps.
    for (const k of equalStepsKs(scale)) {
      const name = equalStepsArmName(k);
      await arm(name, sft.snap, sets.popularity, k, stepsOf(n, 1));
      k_equal_steps.push(sweepRow("popularity", k, name));
    }
    for (const sampler of ABLATION_SAMPLERS) {
      for (const k of samplerKs(scale, sampler)) {
        k_sweep.push(sweepRow(sampler, k, negativesArmName(k, sampler)));
      }
    }
    for (const model of ["Base LM", "SFT", `SFT+DMPO K=${K_MID}`]) {
      for (const [domain, name] of [[source, model], [target, `${model} @${target}`]]) {
        cross_domain.push({ model, domain, method: name, auc_paired: methods[name].auc_paired });
      }
    }
  } finally {
    disposeSnapshot(sft.snap);
  }

  // Few-shot sweep: n users, SFT then DMPO K=3 (equal epochs), and DMPO-only K=3; at the
  // protocol's own size the negatives sweep's SFT and K=3 arm are the n-user rows.
  const few_shot: DmpoAblations["few_shot"] = [];
  for (const n of protocol.fewShot) {
    if (n === sweepBase.length && methods[negativesArmName(K_MID, "popularity")]) {
      const name = (x: string) => `${x} n=${n}`;
      methods[name("SFT")] = methods.SFT;
      methods[name("SFT+DMPO")] = methods[negativesArmName(K_MID, "popularity")];
      few_shot.push({ n, arm: "SFT", method: name("SFT"), auc_paired: methods.SFT.auc_paired });
      few_shot.push({
        n,
        arm: "SFT+DMPO",
        method: name("SFT+DMPO"),
        auc_paired: methods[name("SFT+DMPO")].auc_paired,
      });
      const b = await arm(name("DMPO-only"), base.snap, sweepBase, K_MID, stepsOf(n, K_MID));
      few_shot.push({ n, arm: "DMPO-only", method: name("DMPO-only"), auc_paired: b.auc_paired });
      continue;
    }
    const samples = fewShot(all, Math.min(n, all.length), new Rng(1000 + n + seed));
    const s = await sftOn(`SFT n=${n}`, samples);
    try {
      const sRow = evSnap(`SFT n=${n}`, s.snap);
      sRow.train_seconds = s.seconds;
      sRow.steps = sftSteps(samples.length);
      few_shot.push({ n, arm: "SFT", method: `SFT n=${n}`, auc_paired: sRow.auc_paired });
      const a = await arm(
        `SFT+DMPO n=${n}`,
        s.snap,
        samples,
        K_MID,
        stepsOf(samples.length, K_MID),
      );
      few_shot.push({ n, arm: "SFT+DMPO", method: `SFT+DMPO n=${n}`, auc_paired: a.auc_paired });
    } finally {
      disposeSnapshot(s.snap);
    }
    const b = await arm(
      `DMPO-only n=${n}`,
      base.snap,
      samples,
      K_MID,
      stepsOf(samples.length, K_MID),
    );
    few_shot.push({ n, arm: "DMPO-only", method: `DMPO-only n=${n}`, auc_paired: b.auc_paired });
  }
  log(
    `[dmpo-abl] done in ${Math.round((performance.now() - t0) / 100) / 10} s ` +
      `(tensors ${tf.memory().numTensors})`,
  );
  const n = sweepBase.length;
  return {
    scale: cfg.scale,
    seed,
    num_test: test.length,
    row_users: test.map((s) => s.user),
    target_row_users: testTarget.map((s) => s.user),
    methods,
    k_sweep,
    k_equal_steps,
    samplers: [...ABLATION_SAMPLERS],
    sweep_prompts: n,
    few_shot,
    cross_domain,
    notes: [
      `seed ${seed}, ${n} train users (few-shot, as the released files' 100), ${kMax} ` +
      `negatives each, ${test.length} test pairs per domain, response form "${DMPO_RESPONSE}"; ` +
      "K negatives = K pair prompts per user, each naming the positive and its own negative " +
      "(the released layout)",
      `negatives sweep: SFT (${sftSteps(n)} steps, ${protocol.sftEpochs} epochs) then SFT+DMPO ` +
      `(paper form per pair row, β = 1) with K = ${scale.ablDmpoNegs.join(", ")} ` +
      `(popularity-weighted) and K = ${samplerKs(scale, "uniform").join(", ")} (the other ` +
      "samplers), " +
      `each for ${protocol.prefEpochs} epochs of its ${n}·K rows at batch ${pb} (equal ` +
      `epochs: ${ks.map((k) => `K=${k}: ${stepsOf(n, k)}`).join(", ")} steps), and the ` +
      `popularity rows of K = ${equalStepsKs(scale).join(", ")} also for K=1's ${
        stepsOf(n, 1)
      } steps (equal steps); ` +
      "negative 1 = the SFT pair's, the K − 1 extra ones drawn per sampler from the items " +
      "outside the history: popularity-weighted (DMPO's default), uniform, same-genre as the " +
      `positive (hard), model-hard (the SFT model's top-scored of ${MINE_FROM} uniform ` +
      "candidates, hardest first); K = 1 is one arm shared by every sampler",
      `few-shot: per size n, SFT (${protocol.sftEpochs} epochs: ` +
      `${protocol.fewShot.map((x) => `n=${x}: ${sftSteps(x)}`).join(", ")} steps) + DMPO ` +
      `K=${K_MID} and DMPO-only K=${K_MID} on the same n users (n = ${n}: the negatives ` +
      `sweep's SFT and K=${K_MID} arm), ${protocol.prefEpochs} epochs ` +
      `(${protocol.fewShot.map((x) => `n=${x}: ${stepsOf(x, K_MID)}`).join(", ")} steps)`,
      `cross-domain: models trained on domain 0 (${source}) scored on the test users' ` +
      `domain-1 (${target}) pairs; the domain-1 wording is outside the tokenizer's ` +
      "template words (<unk>), its titles are not",
    ],
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

/** Row name of an equal-steps arm of the negatives sweep (popularity negatives). */
export function equalStepsArmName(k: number): string {
  return `SFT+DMPO K=${k} (equal steps)`;
}

/** The protocols the ablations run under, by scale (re-exported for notebooks). */
export { DMPO_PROTOCOL };

const SAMPLER_LABEL: Record<AblationSampler, string> = {
  popularity: "popularity-weighted extra negatives, DMPO's default",
  uniform: "uniform extra negatives",
  "same-genre": "same-genre (hard) extra negatives",
  "model-hard": "model-mined hard extra negatives",
};

/** Claim id of "more negatives help" for a sampler (popularity: the plain claim). */
export function moreNegativesClaimId(sampler: AblationSampler): string {
  return sampler === "popularity"
    ? "dmpo.more_negatives_help.auc"
    : `dmpo.more_negatives_help_${sampler.replace("-", "_")}.auc`;
}

function spec(id: string, text: string, a: string, b: string): ClaimSpec {
  return { id, paper: "dmpo-abl", text, metric: "pair_correct", metricLabel: "paired AUC", a, b };
}

/**
 * The DMPO ablation findings, from the per-pair rows (one seed): more negatives help (largest
 * K vs K = 1) for each negative sampler, model-hard > uniform at the largest K; SFT+DMPO >
 * DMPO-only at the smallest few-shot size, and its gain larger there than at the largest;
 * DMPO transfers across domains (SFT+DMPO on the other domain > chance 0.5, and > the SFT
 * model there). Without ablations (`a` undefined) every claim is "not tested" with `reason`;
 * a claim whose rows this run did not produce is "not tested" with the reason.
 */
export function dmpoAblationFindings(
  a: DmpoAblations | undefined,
  reason = "the DMPO ablations did not run (`--no-ablations`)",
): Finding[] {
  const seeds = a ? [a.seed] : [];
  const ks = a ? [...new Set(a.k_sweep.map((r) => r.k))] : [];
  const kLo = ks.length ? Math.min(...ks) : 1, kHi = ks.length ? Math.max(...ks) : NaN;
  const ns = a ? [...new Set(a.few_shot.map((r) => r.n))] : [];
  const nLo = ns.length ? Math.min(...ns) : NaN, nHi = ns.length ? Math.max(...ns) : NaN;
  const rows = (m: string) => a?.methods[m]?.pair_correct;
  const out: Finding[] = [];
  // Compare two row sets, or say why not.
  const add = (sp: ClaimSpec, ar?: number[], br?: number[], why?: string) => {
    if (!a) return out.push(notTested(sp, seeds, reason));
    if (why) return out.push(notTested(sp, seeds, why));
    if (!ar || !br) {
      return out.push(
        notTested(sp, seeds, `the ablations have no rows for "${ar ? sp.b : sp.a}"`),
      );
    }
    // Clusters: the test users of the domain the rows were scored on.
    const users = /@/.test(sp.a) ? a.target_row_users : a.row_users;
    out.push(toFinding(compareRows(sp, [ar], [br], users ? { clusters: users } : {}), seeds));
  };
  const oneK = ks.length < 2 ? "the negatives sweep has a single K" : undefined;
  for (const sampler of ABLATION_SAMPLERS) {
    const own = a ? a.k_sweep.filter((r) => r.sampler === sampler).map((r) => r.k) : [];
    const sHi = own.length ? Math.max(...own) : kHi;
    const hi = negativesArmName(sHi, sampler), lo = negativesArmName(kLo, sampler);
    add(
      spec(
        moreNegativesClaimId(sampler),
        `More negatives help (DMPO, ${SAMPLER_LABEL[sampler]}): the largest K > K=1 on ` +
          "paired AUC, at equal epochs",
        a ? hi : "SFT+DMPO K=max",
        a ? lo : "SFT+DMPO K=1",
      ),
      rows(hi),
      rows(lo),
      oneK,
    );
  }
  const eqHi = a?.k_equal_steps?.length
    ? a.k_equal_steps.reduce((x, y) => (y.k > x.k ? y : x))
    : undefined;
  add(
    spec(
      "dmpo.more_negatives_help_equal_steps.auc",
      "More negatives help at equal steps (DMPO, popularity-weighted negatives): the largest " +
        "K for K=1's steps > K=1 on paired AUC",
      eqHi?.method ?? "SFT+DMPO K=max (equal steps)",
      negativesArmName(kLo, "popularity"),
    ),
    eqHi ? rows(eqHi.method) : undefined,
    rows(negativesArmName(kLo, "popularity")),
    a && !eqHi ? "the negatives sweep has no equal-steps arm" : oneK,
  );
  const hard = negativesArmName(kHi, "model-hard"), uni = negativesArmName(kHi, "uniform");
  add(
    spec(
      "dmpo.model_hard_gt_uniform.auc",
      "At the largest K, model-mined hard extra negatives > uniform ones on paired AUC",
      a ? hard : "SFT+DMPO K=max (model-hard)",
      a ? uni : "SFT+DMPO K=max (uniform)",
    ),
    rows(hard),
    rows(uni),
    oneK,
  );
  const sLo = `SFT+DMPO n=${nLo}`, dLo = `DMPO-only n=${nLo}`;
  add(
    spec(
      "dmpo.sft_dmpo_gt_dmpo_only_few_shot.auc",
      "SFT+DMPO > DMPO-only at the smallest few-shot size on paired AUC",
      a ? sLo : "SFT+DMPO n=min",
      a ? dLo : "DMPO-only n=min",
    ),
    rows(sLo),
    rows(dLo),
  );
  const gap = (n: number) => {
    const s = rows(`SFT+DMPO n=${n}`), d = rows(`DMPO-only n=${n}`);
    return s && d ? s.map((x, i) => x - d[i]) : undefined;
  };
  add(
    spec(
      "dmpo.sft_gain_largest_at_small_n.auc",
      "SFT+DMPO's gain over DMPO-only is larger at the smallest few-shot size than at the " +
        "largest (difference of paired-AUC gaps)",
      a ? `gap n=${nLo}` : "gap n=min",
      a ? `gap n=${nHi}` : "gap n=max",
    ),
    gap(nLo),
    gap(nHi),
    ns.length < 2 ? "the few-shot sweep has a single size" : undefined,
  );
  const t = a?.cross_domain.find((r) => r.model === `SFT+DMPO K=${K_MID}` && r.method !== r.model);
  const noCross = a && !t ? "the cross-domain rows are missing" : undefined;
  const tr = t ? rows(t.method) : undefined;
  add(
    spec(
      "dmpo.transfers.auc",
      "DMPO transfers across domains: SFT+DMPO trained on domain 0, scored on domain 1, > " +
        "chance (0.5) on paired AUC",
      t?.method ?? `SFT+DMPO K=${K_MID} @domain 1`,
      "chance (0.5)",
    ),
    tr,
    tr?.map(() => 0.5),
    noCross,
  );
  const sftT = t ? a?.cross_domain.find((x) => x.model === "SFT" && x.domain === t.domain) : null;
  add(
    spec(
      "dmpo.transfers_gt_sft.auc",
      "DMPO's gain transfers: on domain 1, SFT+DMPO (trained on domain 0) > SFT on paired AUC",
      t?.method ?? `SFT+DMPO K=${K_MID} @domain 1`,
      sftT?.method ?? "SFT @domain 1",
    ),
    tr,
    sftT ? rows(sftT.method) : undefined,
    noCross ?? (a && !sftT ? "the SFT cross-domain row is missing" : undefined),
  );
  return out;
}

/** Write the ablation plots into `dir`; returns the table.md section that links them. */
export async function writeDmpoAblationPlots(
  dir: string,
  a: DmpoAblations,
  references?: Record<string, Record<string, number>>,
): Promise<string> {
  await writeFigures(dir, dmpoAblationFigures(a, references));
  const f = (x: number) => x.toFixed(3);
  const sweepKs = [...new Set(a.k_sweep.map((r) => r.k))].sort((x, y) => x - y);
  const ns = [...new Set(a.few_shot.map((r) => r.n))];
  const fs = (n: number, arm: string) =>
    a.few_shot.find((r) => r.n === n && r.arm === arm)?.auc_paired;
  return [
    "",
    `## DMPO ablations (scale ${a.scale}, seed ${a.seed}, ${a.num_test} test pairs)`,
    "",
    ...a.notes.map((n) => `- ${n}`),
    "",
    "![paired AUC vs K](dmpo_negatives.svg)",
    "",
    "Paired AUC per negative sampler (rows) and K (columns); K = 1 is one shared arm:",
    "",
    "| sampler | " + sweepKs.map((k) => `K=${k}`).join(" | ") + " |",
    "|---|" + sweepKs.map(() => "---|").join(""),
    ...[...new Set(a.k_sweep.map((r) => r.sampler))].map((s) =>
      `| ${s} | ${
        sweepKs.map((k) => {
          const v = a.k_sweep.find((r) => r.sampler === s && r.k === k)?.auc_paired;
          return v === undefined ? "–" : f(v);
        }).join(" | ")
      } |`
    ),
    "",
    "Popularity negatives by K, at equal epochs (K× the steps of K = 1) and at equal steps " +
    "(K = 1's steps): paired AUC, mean summed log-prob of the positive's response on the test " +
    "pairs, last logged training loss:",
    "",
    "| K | steps (equal epochs) | paired AUC | positive log-prob | final loss | " +
    "paired AUC (equal steps) | positive log-prob (equal steps) | final loss (equal steps) |",
    "|---|---|---|---|---|---|---|---|",
    ...a.k_sweep.filter((r) => r.sampler === "popularity").map((r) => {
      const e = (a.k_equal_steps ?? []).find((x) => x.k === r.k);
      const g = (x: number | null | undefined, d = 3) =>
        x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(d);
      return `| ${r.k} | ${r.steps} | ${g(r.auc_paired)} | ${g(r.mean_chosen_logp)} | ` +
        `${g(r.final_loss, 4)} | ${e ? g(e.auc_paired) : r.k === 1 ? "(same arm)" : "–"} | ` +
        `${e ? g(e.mean_chosen_logp) : "–"} | ${e ? g(e.final_loss, 4) : "–"} |`;
    }),
    "",
    "![paired AUC vs few-shot size](dmpo_few_shot.svg)",
    "",
    "| train prompts | SFT | SFT+DMPO | DMPO-only |",
    "|---|---|---|---|",
    ...ns.map((n) =>
      `| ${n} | ${
        ["SFT", "SFT+DMPO", "DMPO-only"].map((arm) => {
          const v = fs(n, arm);
          return v === undefined ? "–" : f(v);
        }).join(" | ")
      } |`
    ),
    "",
    "![in-domain vs cross-domain](dmpo_cross_domain.svg)",
    "",
    "| model | " + [...new Set(a.cross_domain.map((r) => r.domain))].join(" | ") + " |",
    "|---|---|---|",
    ...[...new Set(a.cross_domain.map((r) => r.model))].map((m) =>
      `| ${m} | ${
        a.cross_domain.filter((r) => r.model === m).map((r) => f(r.auc_paired)).join(" | ")
      } |`
    ),
    "",
  ].join("\n");
}
