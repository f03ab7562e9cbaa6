/**
 * DMPO ablations on the synthetic world (one seed):
 *
 * - **negatives**: SFT+DMPO with K = 1 … n negatives (`scale.ablDmpoNegs`) from one SFT model,
 *   for each negative sampler of src/experiments/negatives.ts (popularity-drawn over every K;
 *   uniform, same-genre, model-mined hard over `scale.ablSamplerNegs`): the item the prompt
 *   names is the first negative, the sampler draws the K − 1 extra ones; every arm trains on
 *   the same fixed prompts;
 * - **few-shot**: SFT+DMPO vs DMPO-only (no SFT) trained on `n` prompts for each `n` of
 *   `scale.ablFewShot` (world `fewShot` subsets of the train prompts);
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
import { barChart, lineChart, writePlot } from "../report/plot.ts";
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
  DMPO_RESPONSE,
  dmpoExample,
  type DmpoMethodResult,
  dmpoSft,
  dmpoTrainSamples,
  evaluateDmpo,
} from "./dmpo.ts";
import { sdpoData, trainArm } from "./sdpo.ts";
import { stage0Snapshot } from "./pretrained.ts";
import { sourceNote } from "./runs.ts";

/** One ablation row: the DMPO evaluation of one model. */
export type DmpoAblationRow = Omit<DmpoMethodResult, "chosen_logp" | "rejected_logp">;

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
  /** Negatives sweep: per sampler and K (K = 1 is one arm, shared by every sampler). */
  k_sweep: {
    sampler: AblationSampler;
    k: number;
    method: string;
    auc_paired: number;
    auc_released: number;
  }[];
  /** The samplers of the negatives sweep. */
  samplers: AblationSampler[];
  /** Train prompts of every negatives-sweep arm (steps × batch: one epoch). */
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

/** The K values the negatives sweep trains for `sampler` (popularity: all of them). */
export function samplerKs(scale: Scale, sampler: AblationSampler): number[] {
  return sampler === "popularity" ? scale.ablDmpoNegs : scale.ablSamplerNegs;
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

/** Few-shot SFT epochs cap: full fine-tuning for 50 epochs on 64 prompts only memorises. */
export const FEW_SHOT_SFT_EPOCHS = 4;

/** Run the DMPO ablations. */
export async function runDmpoAblations(cfg: DmpoAblationConfig): Promise<DmpoAblations> {
  const t0 = performance.now();
  const scale = SCALE_PRESETS[cfg.scale];
  const seed = cfg.seed ?? 0;
  const progress = cfg.progress !== false;
  const log = (m: string) => progress && console.error(m);
  const sd = sdpoData(scale);
  const { world, tok, config } = sd;
  const kMax = Math.max(...scale.ablDmpoNegs, K_MID);
  const all = dmpoTrainSamples(world, scale.dmpoTrain, kMax);
  const cross = crossDomainDmpo(world, { numNegatives: 1 });
  const test = subset(cross.testSource, scale.dmpoTest, 13);
  const testTarget = subset(cross.test, scale.dmpoTest, 13);
  const sftSteps = (n: number) =>
    Math.min(
      scale.dmpoSftSteps,
      Math.max(
        Math.min(10, scale.dmpoSftSteps),
        Math.ceil(FEW_SHOT_SFT_EPOCHS * n / scale.batchSize),
      ),
    );
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
  const examples = (samples: DmpoSample[], k: number) =>
    samples.map((s) => dmpoExample(tok, s, world, k));
  const arm = async (
    name: string,
    from: Snapshot,
    samples: DmpoSample[],
    k: number,
    extraTests: [string, DmpoSample[]][] = [],
  ) => {
    const { model, seconds, finalLoss, ...how } = await trainArm(
      config,
      from,
      examples(samples, k),
      { name, stage: "dmpo-paper", k, beta: 1 },
      scale,
      scale.dmpoPrefSteps,
      seed,
      progress,
    );
    try {
      recordStage("dmpo-abl", name + sourceNote(how), seed, how.wallSeconds);
      const row = ev(name, model);
      row.train_seconds = seconds;
      row.final_loss = finalLoss;
      for (const [suffix, set] of extraTests) ev(`${name} ${suffix}`, model, set);
      log(`[dmpo-abl] ${name}: paired AUC ${row.auc_paired.toFixed(3)}`);
      return row;
    } finally {
      model.dispose();
    }
  };
  const sftOn = async (name: string, samples: DmpoSample[]) => {
    const r = await dmpoSft(
      config,
      base.snap,
      examples(samples, 1),
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

  // Negatives sweep, per sampler, on a fixed subset of the train prompts (steps × batch, so
  // every arm sees each of them once), plus the cross-domain evaluation.
  const sft = await sftOn("SFT", all);
  const k_sweep: DmpoAblations["k_sweep"] = [];
  const cross_domain: DmpoAblations["cross_domain"] = [];
  const target = world.domains[1].noun, source = world.domains[0].noun;
  const sweepBase = subset(all, scale.dmpoPrefSteps * scale.prefBatch, 29);
  try {
    const sftRow = evSnap("SFT", sft.snap);
    sftRow.train_seconds = sft.seconds;
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
    const ks = [...new Set([...scale.ablDmpoNegs, K_MID])].sort((a, b) => a - b);
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
      await arm(negativesArmName(k, sampler), sft.snap, sets[sampler], k, extra);
    }
    for (const sampler of ABLATION_SAMPLERS) {
      for (const k of samplerKs(scale, sampler)) {
        const method = negativesArmName(k, sampler);
        const row = methods[method];
        k_sweep.push({
          sampler,
          k,
          method,
          auc_paired: row.auc_paired,
          auc_released: row.auc_released,
        });
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

  // Few-shot sweep.
  const few_shot: DmpoAblations["few_shot"] = [];
  for (const n of scale.ablFewShot) {
    const samples = fewShot(all, Math.min(n, all.length), new Rng(1000 + n + seed));
    const s = await sftOn(`SFT n=${n}`, samples);
    try {
      const sRow = evSnap(`SFT n=${n}`, s.snap);
      sRow.train_seconds = s.seconds;
      few_shot.push({ n, arm: "SFT", method: `SFT n=${n}`, auc_paired: sRow.auc_paired });
      const a = await arm(`SFT+DMPO n=${n}`, s.snap, samples, K_MID);
      few_shot.push({ n, arm: "SFT+DMPO", method: `SFT+DMPO n=${n}`, auc_paired: a.auc_paired });
    } finally {
      disposeSnapshot(s.snap);
    }
    const b = await arm(`DMPO-only n=${n}`, base.snap, samples, K_MID);
    few_shot.push({ n, arm: "DMPO-only", method: `DMPO-only n=${n}`, auc_paired: b.auc_paired });
  }
  log(
    `[dmpo-abl] done in ${Math.round((performance.now() - t0) / 100) / 10} s ` +
      `(tensors ${tf.memory().numTensors})`,
  );
  return {
    scale: cfg.scale,
    seed,
    num_test: test.length,
    row_users: test.map((s) => s.user),
    target_row_users: testTarget.map((s) => s.user),
    methods,
    k_sweep,
    samplers: [...ABLATION_SAMPLERS],
    sweep_prompts: sweepBase.length,
    few_shot,
    cross_domain,
    notes: [
      `seed ${seed}, ${all.length} train prompts (${kMax} negatives each), ${test.length} ` +
      `test pairs per domain, response form "${DMPO_RESPONSE}"`,
      `negatives sweep: SFT+DMPO (paper form, β = 1) with K = ${scale.ablDmpoNegs.join(", ")} ` +
      `(popularity-weighted) and K = ${scale.ablSamplerNegs.join(", ")} (the other samplers) ` +
      `from one SFT model, ${scale.dmpoPrefSteps} LoRA steps each, every arm on the same ` +
      `${sweepBase.length} train prompts (one epoch); negative 1 = the item the prompt names, ` +
      `the K − 1 extra ones drawn per sampler from the items outside the history: ` +
      `popularity-weighted (DMPO's default), uniform, same-genre as the positive (hard), ` +
      `model-hard (the SFT model's top-scored of ${MINE_FROM} uniform candidates, hardest ` +
      "first); K = 1 is one arm shared by every sampler",
      `few-shot: per size n, SFT (min(${scale.dmpoSftSteps}, ${FEW_SHOT_SFT_EPOCHS} epochs) ` +
      `steps: ${scale.ablFewShot.map((n) => `n=${n}: ${sftSteps(n)}`).join(", ")}) + ` +
      `DMPO K=${K_MID} and DMPO-only K=${K_MID} on the same n prompts, ` +
      `${scale.dmpoPrefSteps} LoRA steps each`,
      `cross-domain: models trained on domain 0 (${source}) scored on the test users' ` +
      `domain-1 (${target}) pairs; the domain-1 wording is outside the tokenizer's ` +
      "template words (<unk>), its titles are not",
    ],
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

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
          "paired AUC",
        a ? hi : "SFT+DMPO K=max",
        a ? lo : "SFT+DMPO K=1",
      ),
      rows(hi),
      rows(lo),
      oneK,
    );
  }
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
export async function writeDmpoAblationPlots(dir: string, a: DmpoAblations): Promise<string> {
  await writePlot(
    `${dir}/dmpo_negatives.svg`,
    lineChart(a.k_sweep.map((r) => ({ K: r.k, auc: r.auc_paired, sampler: r.sampler })), {
      title: `DMPO: paired AUC vs negatives K, per negative sampler (seed ${a.seed})`,
      x: "K",
      y: "auc",
      color: "sampler",
      yTitle: "paired AUC",
      points: true,
    }),
  );
  await writePlot(
    `${dir}/dmpo_few_shot.svg`,
    lineChart(a.few_shot.map((r) => ({ n: r.n, auc: r.auc_paired, arm: r.arm })), {
      title: `DMPO: paired AUC vs train prompts (seed ${a.seed})`,
      x: "n",
      y: "auc",
      color: "arm",
      xLog: true,
      xTitle: "train prompts",
      yTitle: "paired AUC",
      points: true,
    }),
  );
  await writePlot(
    `${dir}/dmpo_cross_domain.svg`,
    barChart(a.cross_domain.map((r) => ({ ...r, label: `${r.model} @${r.domain}` })), {
      title: `DMPO: in-domain vs cross-domain (seed ${a.seed})`,
      x: "label",
      y: "auc_paired",
      color: "domain",
      yTitle: "paired AUC",
    }),
  );
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
