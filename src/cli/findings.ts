/**
 * `deno task findings <metrics.json>...`: recompute `findings.json` and `findings.md` from
 * the per-row arrays of a run's `metrics.json` (S-DPO, DMPO or DPO4Rec), with the
 * statistics of src/report/findings.ts, and write them beside it (or into `--out DIR`).
 * Every verdict of a committed run can be checked this way without training anything.
 * `--update-metrics` also rewrites the `claims` / `ablation_claims` fields of each
 * metrics.json from the recomputed findings (nothing else in it changes), so a committed
 * metrics.json never shows verdicts of an older statistics.
 *
 * What a verdict needs from metrics.json: the per-row arrays per seed and method; the test
 * user of each row (`result.row_users`); which methods are the shared stage-0 model
 * (`result.stage0_methods`, `per_seed[].stage0_seed`). Runs written before those fields
 * existed are read as follows, and findings.md says so in its notes: stage-0 sharing from
 * `scale_preset.stage0Seeds` (seed s uses the stage 0 of seed s mod stage0Seeds, as the
 * experiments do; with a base model every seed has its own); on the synthetic world the test
 * users are rebuilt from the world config (the same seeded draw as the experiment) and
 * accepted only if the rebuilt rows reproduce the run's Oracle reference row; otherwise,
 * and on released data, every row is its own cluster (the test prompt). The title and notes
 * of findings.md come from `findings_text` in metrics.json, or from the findings.md being
 * replaced.
 *
 * @module
 */
import {
  dmpoFindings,
  type Finding,
  legacyClaims,
  sdpoFindings,
  type SeedRows,
  writeFindings,
} from "../report/findings.ts";
import {
  dmpoSamples,
  makeWorld,
  oracleScores,
  sdpoSamples,
  type WorldConfig,
} from "../data/world.ts";
import { aucPaired, hitsAtK } from "../eval/metrics.ts";
import { subset } from "../experiments/common.ts";
import { dmpoAblationFindings } from "../experiments/dmpo_ablations.ts";
import { dpo4recClaimsOf, dpo4recFindings } from "../experiments/dpo4rec.ts";
import type { DmpoAblations } from "../experiments/dmpo_ablations.ts";
import { writeFileAtomic } from "../io.ts";

/** The text around the findings table. */
export interface FindingsText {
  title: string;
  notes: string[];
  ablation_note: string;
}

/** The stage-0 methods of each paper's runs (before `stage0_methods` was recorded). */
const STAGE0_METHODS: Record<string, string[]> = {
  sdpo: ["SFT"],
  dmpo: ["Base LM", "SFT"],
  dpo4rec: [],
};

// deno-lint-ignore no-explicit-any
type Json = any;

/** Test users of a synthetic run's rows, rebuilt and checked, or the reason they are not. */
function rebuildRowUsers(m: Json): { users?: number[]; note: string } {
  const r = m.result;
  const wc = r.config?.world as WorldConfig | null | undefined;
  if (m.dataset !== "synthetic" || !wc) {
    return { note: "this run recorded no test users, so every row is its own cluster (prompt)" };
  }
  const world = makeWorld(wc);
  const close = (a: number, b: number) => Math.abs(a - b) < 1e-9;
  if (m.paper === "dmpo") {
    const test = subset(dmpoSamples(world, "test", { numNegatives: 1 }), r.num_test, 13);
    const sc = test.map((s) => oracleScores(world, s, [s.positiveId, s.negativeIds[0]]));
    const auc = aucPaired(sc.map((x) => x[0]), sc.map((x) => x[1]));
    if (test.length === r.num_test && close(auc, r.references?.Oracle?.auc_paired)) {
      return {
        users: test.map((s) => s.user),
        note: "test users of the rows rebuilt from the world config (this run predates " +
          "`row_users`); the rebuilt pairs reproduce the run's τ·pop oracle AUC " +
          `(${auc.toFixed(4)})`,
      };
    }
  } else {
    const n = m.paper === "dpo4rec" ? r.scale.testRows : r.num_test;
    const test = subset(sdpoSamples(world, "test"), n, 11);
    const scores = test.map((s) => oracleScores(world, s, s.candidateIds));
    const hits = hitsAtK({ scores }, test.map((s) => s.positiveIndex), 1);
    const hr = hits.reduce((a, b) => a + b, 0) / hits.length;
    const want = m.paper === "dpo4rec" ? r.references?.Oracle?.hr1 : r.references?.Oracle?.hr1_rank;
    if (test.length === r.num_test && close(hr, want)) {
      return {
        users: test.map((s) => s.user),
        note: "test users of the rows rebuilt from the world config (this run predates " +
          "`row_users`); the rebuilt prompts reproduce the run's Oracle HR@1 " +
          `(${hr.toFixed(4)})`,
      };
    }
  }
  return {
    note: "this run recorded no test users and rebuilding them from the world config did not " +
      "reproduce its Oracle row, so every row is its own cluster (prompt)",
  };
}

/** The run's rows with the design fields filled in, and notes on what was inferred. */
export function withDesign(m: Json): { result: Json; notes: string[] } {
  const r = m.result;
  const notes: string[] = [];
  let rowUsers: number[] | undefined = r.row_users;
  if (!rowUsers) {
    const rb = rebuildRowUsers(m);
    rowUsers = rb.users;
    notes.push(rb.note);
  }
  const stage0Seeds = m.scale_preset?.stage0Seeds ?? r.scale?.stage0Seeds;
  const ownStage0 = m.base_model != null || !stage0Seeds;
  let inferred = false;
  const perSeed: SeedRows[] = r.per_seed.map((s: Json) => {
    if (s.stage0_seed !== undefined) return s;
    inferred = true;
    return { ...s, stage0_seed: ownStage0 ? s.seed : s.seed % stage0Seeds };
  });
  const stage0 = r.stage0_methods ?? STAGE0_METHODS[m.paper] ?? [];
  if (inferred && stage0.length && perSeed.length > 1) {
    notes.push(
      `shared models inferred (this run predates \`stage0_seed\`): ${stage0.join(" and ")} ` +
        (ownStage0
          ? "trained per seed"
          : `= the stage-0 model of seed s mod ${stage0Seeds} (scale ${m.scale})`),
    );
  }
  return {
    result: {
      ...r,
      per_seed: perSeed,
      ...(rowUsers ? { row_users: rowUsers } : {}),
      stage0_methods: stage0,
    },
    notes,
  };
}

/** Title, notes and ablation note of the findings.md being replaced. */
export function parseFindingsText(md: string): FindingsText {
  const title = md.match(/^# Findings: (.*)$/m)?.[1] ?? "";
  const notesPart = md.split(/^## Notes$/m)[1] ?? "";
  const notes = notesPart.split("\n").filter((l) => l.startsWith("- ")).map((l) => l.slice(2));
  const abl = md.split(/^## Ablation claims$/m)[1]?.split("\n").map((l) => l.trim())
    .find((l) => l.length > 0 && !l.startsWith("|")) ?? "";
  return { title, notes, ablation_note: abl };
}

/** The findings of a metrics.json (as parsed JSON); `old` = the findings being replaced. */
export function findingsOfMetrics(m: Json, old: Finding[] = []): Finding[] {
  const { result: r } = withDesign(m);
  const reasonOf = (scope: string, fallback: string) =>
    old.find((f) => f.scope === scope && f.verdict === "not tested")?.reason ?? fallback;
  if (m.paper === "sdpo") {
    return sdpoFindings(
      r,
      reasonOf("ablation", "the S-DPO ablations did not run (`--ablations` runs them)"),
    );
  }
  if (m.paper === "dmpo") {
    return [
      ...dmpoFindings(r),
      ...(r.ablations
        ? dmpoAblationFindings(r.ablations as DmpoAblations)
        : dmpoAblationFindings(undefined, reasonOf("ablation", "the DMPO ablations did not run"))),
    ];
  }
  if (m.paper === "dpo4rec") {
    return dpo4recFindings(r as Parameters<typeof dpo4recFindings>[0]);
  }
  throw new Error(`${m.paper}: expected paper "sdpo", "dmpo" or "dpo4rec"`);
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Recompute one run's findings; returns the seconds the statistics took and a summary. */
export async function recompute(
  metricsPath: string,
  outDir?: string,
  updateMetrics = false,
): Promise<{ seconds: number; findings: Finding[] }> {
  let m: Json;
  try {
    m = JSON.parse(await Deno.readTextFile(metricsPath));
  } catch (e) {
    throw new Error(`${metricsPath}: ${(e as Error).message}`);
  }
  if (!m?.result?.per_seed) {
    throw new Error(`${metricsPath}: no result.per_seed (not a metrics.json?)`);
  }
  const dir = outDir ?? (metricsPath.includes("/") ? metricsPath.replace(/\/[^/]*$/, "") : ".");
  const srcDir = metricsPath.includes("/") ? metricsPath.replace(/\/[^/]*$/, "") : ".";
  const oldJson = await readText(`${srcDir}/findings.json`);
  const old: Finding[] = oldJson ? JSON.parse(oldJson) : [];
  const t0 = performance.now();
  const findings = findingsOfMetrics(m, old);
  const seconds = (performance.now() - t0) / 1000;
  const text: FindingsText = m.findings_text ??
    parseFindingsText((await readText(`${srcDir}/findings.md`)) ?? "");
  const { notes } = withDesign(m);
  await writeFindings(
    dir,
    text.title || `${m.paper} (${m.dataset})`,
    findings,
    [...text.notes.filter((n) => !/predates|recorded no test users/.test(n)), ...notes],
    text.ablation_note,
    m,
  );
  if (updateMetrics) {
    const before = await Deno.readTextFile(metricsPath);
    const after = JSON.stringify(withClaims(m, findings), null, 2) + "\n";
    if (after !== before) await writeFileAtomic(metricsPath, after);
  }
  return { seconds, findings };
}

/**
 * metrics.json with its `claims` (and `ablation_claims`, where the run has that field)
 * replaced by the recomputed findings, in the shape the run writes them (S-DPO and DMPO:
 * {@link legacyClaims}; DPO4Rec: its claim shape); every other field as it was, in the same
 * key order.
 */
export function withClaims(m: Json, findings: Finding[]): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(m)) {
    if (k === "claims") {
      out.claims = m.paper === "dpo4rec"
        ? dpo4recClaimsOf(findings)
        : legacyClaims(findings, "headline");
    } else if (k === "ablation_claims") out.ablation_claims = legacyClaims(findings, "ablation");
    else out[k] = v;
  }
  return JSON.parse(
    JSON.stringify(out, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v)),
  );
}

const HELP = `usage: deno task findings <metrics.json>... [flags]

Recompute findings.json and findings.md from the per-row arrays of each run's metrics.json and
write them beside it. Prints each claim's old and new verdict.

flags:
  --out DIR           write findings.json and findings.md into DIR instead (default: beside
                      each metrics.json)
  --update-metrics    also replace the \`claims\` and \`ablation_claims\` fields of each
                      metrics.json with the recomputed findings (every other field unchanged)
  --help              this text`;

/** Old verdict → new verdict per claim, for the terminal. */
function diffLines(old: Finding[], now: Finding[]): string[] {
  const f3 = (x: number) => (x >= 0 ? "+" : "") + x.toFixed(3);
  const ci = (f?: Finding) => f?.ci95 ? `[${f3(f.ci95[0])}, ${f3(f.ci95[1])}]` : "";
  return now.map((f) => {
    const o = old.find((x) =>
      x.claim_id === f.claim_id && (x.scope ?? "headline") === f.scope &&
      (f.scope !== "sensitivity" || x.rule === f.rule)
    );
    const at = f.scope === "sensitivity" ? ` @ ${f.rule}` : "";
    const v = (x?: Finding) =>
      x ? x.verdict + (x.ruled_out === undefined ? "" : " (gain ruled out)") : "(new)";
    return `  ${f.claim_id}${at}: ${v(o)} ${ci(o)} -> ${v(f)} ${ci(f)}` +
      (f.resampling ? ` (${f.resampling.description})` : "");
  });
}

if (import.meta.main) {
  const args = [...Deno.args];
  const oi = args.indexOf("--out");
  const out = oi >= 0 ? args.splice(oi, 2)[1] : undefined;
  if (oi >= 0 && !out) {
    console.error("findings: --out needs a directory");
    Deno.exit(2);
  }
  const ui = args.indexOf("--update-metrics");
  const update = ui >= 0;
  if (update) args.splice(ui, 1);
  if (update && out) {
    console.error("findings: --update-metrics rewrites the metrics.json given; drop --out");
    Deno.exit(2);
  }
  if (args.length === 0 || args.includes("--help")) {
    console.error(HELP);
    Deno.exit(args.length === 0 ? 2 : 0);
  }
  const unknown = args.find((a) => a.startsWith("--"));
  if (unknown) {
    console.error(`findings: unknown flag ${unknown} (--help lists the flags)`);
    Deno.exit(2);
  }
  try {
    for (const p of args) {
      const dir = p.includes("/") ? p.replace(/\/[^/]*$/, "") : ".";
      const oldJson = await readText(`${dir}/findings.json`);
      const old: Finding[] = oldJson ? JSON.parse(oldJson) : [];
      const { seconds, findings } = await recompute(p, out, update);
      console.log(`${p}: findings in ${seconds.toFixed(2)} s`);
      console.log(diffLines(old, findings).join("\n"));
    }
  } catch (e) {
    console.error(`findings: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
