/**
 * DMPO ablations on the synthetic world (one seed):
 *
 * - **negatives**: SFT+DMPO with K = 1 … n negatives (`scale.ablDmpoNegs`) from one SFT model;
 * - **few-shot**: SFT+DMPO vs DMPO-only (no SFT) trained on `n` prompts for each `n` of
 *   `scale.ablFewShot` (world `fewShot` subsets of the train prompts);
 * - **cross-domain**: the SFT and SFT+DMPO models trained on domain 0 ("movie") evaluated on
 *   the test users' domain-1 ("game") pairs, beside domain 0 (world `crossDomainDmpo`).
 *
 * Claims ({@link dmpoAblationClaims}) use the verdict rule of src/report/findings.ts on the
 * per-pair correctness rows. {@link writeDmpoAblationPlots} writes the SVG plots.
 *
 * @module
 */
import { tf } from "../backend.ts";
import { crossDomainDmpo, type DmpoSample, fewShot } from "../data/world.ts";
import { pairedBootstrapCI } from "../eval/metrics.ts";
import { type ClaimResult, verdictOf } from "../report/findings.ts";
import { barChart, lineChart, writePlot } from "../report/plot.ts";
import { Rng } from "../rng.ts";
import {
  baseSnapshot,
  disposeSnapshot,
  fromSnapshot,
  recordStage,
  SCALE_PRESETS,
  type ScaleName,
  type Snapshot,
  subset,
} from "./common.ts";
import {
  DMPO_RESPONSE,
  dmpoExample,
  type DmpoMethodResult,
  dmpoSft,
  dmpoTrainSamples,
  evaluateDmpo,
} from "./dmpo.ts";
import { sdpoData, trainArm } from "./sdpo.ts";

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
  /** Row name → evaluation ("SFT+DMPO K=2", "DMPO-only n=64", "SFT+DMPO K=3 @game", ...). */
  methods: Record<string, DmpoAblationRow>;
  /** Negatives sweep. */
  k_sweep: { k: number; method: string; auc_paired: number; auc_released: number }[];
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
  const base = await baseSnapshot(config, sd.trainExamples, scale, seed, {
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
    const { model, seconds, finalLoss } = await trainArm(
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
      recordStage("dmpo-abl", name, seed, seconds);
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
    const r = await dmpoSft(config, base.snap, examples(samples, 1), scale, seed, {
      label: `dmpo-abl/${name}`,
      progress,
    }, sftSteps(samples.length));
    recordStage("dmpo-abl", name, seed, r.seconds);
    return r;
  };

  // Negatives sweep (all train prompts), plus the cross-domain evaluation.
  const sft = await sftOn("SFT", all);
  const k_sweep: DmpoAblations["k_sweep"] = [];
  const cross_domain: DmpoAblations["cross_domain"] = [];
  const target = world.domains[1].noun, source = world.domains[0].noun;
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
    const ks = [...new Set([...scale.ablDmpoNegs, K_MID])].sort((a, b) => a - b);
    for (const k of ks) {
      const name = `SFT+DMPO K=${k}`;
      const extra: [string, DmpoSample[]][] = k === K_MID ? [[`@${target}`, testTarget]] : [];
      const row = await arm(name, sft.snap, all, k, extra);
      if (scale.ablDmpoNegs.includes(k)) {
        k_sweep.push({
          k,
          method: name,
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
    methods,
    k_sweep,
    few_shot,
    cross_domain,
    notes: [
      `seed ${seed}, ${all.length} train prompts (${kMax} negatives each), ${test.length} ` +
      `test pairs per domain, response form "${DMPO_RESPONSE}"`,
      `negatives sweep: SFT+DMPO (paper form, β = 1) with K = ${scale.ablDmpoNegs.join(", ")} ` +
      `from one SFT model, ${scale.dmpoPrefSteps} LoRA steps each`,
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

/** Row names the claims compare (smallest / largest few-shot size, K range). */
function claimNames(a: DmpoAblations) {
  const ks = a.k_sweep.map((r) => r.k);
  const ns = [...new Set(a.few_shot.map((r) => r.n))];
  return {
    kLo: `SFT+DMPO K=${Math.min(...ks)}`,
    kHi: `SFT+DMPO K=${Math.max(...ks)}`,
    nLo: Math.min(...ns),
    nHi: Math.max(...ns),
  };
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

function claim(
  id: string,
  text: string,
  a: string,
  b: string,
  aRows: number[],
  bRows: number[],
): ClaimResult {
  const diff = pairedBootstrapCI(aRows, bRows);
  return {
    id,
    paper: "dmpo-abl",
    text,
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a,
    b,
    a_per_seed: [mean(aRows)],
    b_per_seed: [mean(bRows)],
    rows: aRows.length,
    diff,
    verdict: verdictOf(diff),
  };
}

/**
 * The ablation claims, from the per-pair rows: more negatives help (largest K vs K=1);
 * SFT+DMPO > DMPO-only at the smallest few-shot size, and its gap larger there than at the
 * largest size; DMPO transfers (SFT+DMPO on the other domain > chance 0.5, and > the SFT
 * model there).
 */
export function dmpoAblationClaims(a: DmpoAblations): ClaimResult[] {
  const rows = (m: string) => {
    const r = a.methods[m]?.pair_correct;
    if (!r) throw new Error(`DMPO ablations have no rows for "${m}"`);
    return r;
  };
  const { kLo, kHi, nLo, nHi } = claimNames(a);
  const out: ClaimResult[] = [];
  if (kLo !== kHi) {
    out.push(claim(
      "dmpo-more-negatives-help",
      `More negatives help (DMPO): ${kHi} > ${kLo} on paired AUC`,
      kHi,
      kLo,
      rows(kHi),
      rows(kLo),
    ));
  }
  const gap = (n: number) => {
    const s = rows(`SFT+DMPO n=${n}`), d = rows(`DMPO-only n=${n}`);
    return s.map((x, i) => x - d[i]);
  };
  out.push(claim(
    "dmpo-sft-gt-dmpoonly-fewshot",
    `SFT+DMPO > DMPO-only with ${nLo} train prompts on paired AUC`,
    `SFT+DMPO n=${nLo}`,
    `DMPO-only n=${nLo}`,
    rows(`SFT+DMPO n=${nLo}`),
    rows(`DMPO-only n=${nLo}`),
  ));
  if (nLo !== nHi) {
    out.push(claim(
      "dmpo-sft-gap-largest-at-small-n",
      `SFT+DMPO's gain over DMPO-only is larger at n=${nLo} than at n=${nHi}`,
      `gap n=${nLo}`,
      `gap n=${nHi}`,
      gap(nLo),
      gap(nHi),
    ));
  }
  const t = a.cross_domain.find((r) => r.model === `SFT+DMPO K=${K_MID}` && r.method !== r.model);
  if (t) {
    const r = rows(t.method);
    out.push(claim(
      "dmpo-transfers",
      `DMPO transfers across domains: ${t.method} (trained on domain 0) > chance (0.5)`,
      t.method,
      "Random",
      r,
      r.map(() => 0.5),
    ));
    const sftT = a.cross_domain.find((x) => x.model === "SFT" && x.domain === t.domain);
    if (sftT) {
      out.push(claim(
        "dmpo-transfers-gt-sft",
        `DMPO's gain transfers: ${t.method} > ${sftT.method}`,
        t.method,
        sftT.method,
        r,
        rows(sftT.method),
      ));
    }
  }
  return out;
}

/** Write the ablation plots into `dir`; returns the table.md section that links them. */
export async function writeDmpoAblationPlots(dir: string, a: DmpoAblations): Promise<string> {
  await writePlot(
    `${dir}/dmpo_negatives.svg`,
    lineChart(a.k_sweep.map((r) => ({ K: r.k, auc: r.auc_paired })), {
      title: `DMPO: paired AUC vs negatives K (seed ${a.seed})`,
      x: "K",
      y: "auc",
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
    "| K | " + a.k_sweep.map((r) => r.k).join(" | ") + " |",
    "|---|" + a.k_sweep.map(() => "---|").join(""),
    "| paired AUC | " + a.k_sweep.map((r) => f(r.auc_paired)).join(" | ") + " |",
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
