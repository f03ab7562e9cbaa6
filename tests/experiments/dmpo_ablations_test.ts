import assert from "node:assert/strict";
import { initBackend } from "../../src/backend.ts";
import { clusteredBootstrapCI } from "../../src/eval/metrics.ts";
import { findingsOfMetrics } from "../../src/cli/findings.ts";
import { type Finding, verdictOf } from "../../src/report/findings.ts";
import { main } from "../../src/cli/reproduce.ts";
import { dmpoExample } from "../../src/experiments/dmpo.ts";
import {
  buildTokenizer,
  buildWorld,
  encodePrompt,
  encodeResponse,
  modelConfig,
  SCALE_PRESETS,
} from "../../src/experiments/common.ts";
import {
  candidateScores,
  equalStepsKs,
  moreNegativesClaimId,
  samplerKs,
} from "../../src/experiments/dmpo_ablations.ts";
import {
  ABLATION_SAMPLERS,
  extraNegativePool,
  hardestFirst,
  withExtraNegatives,
} from "../../src/experiments/negatives.ts";
import { dmpoSamples, sdpoSamples } from "../../src/data/world.ts";
import { worldDmpoPrompt } from "../../src/data/world_text.ts";
import { LlamaModel } from "../../src/model.ts";
import { scorePairs } from "../../src/train.ts";
import { assertFindingSchema } from "../report/_findings_schema.ts";

await initBackend("wasm", { quiet: true });

Deno.test("dmpoExample: title responses by default, rankings on request", () => {
  const world = buildWorld();
  const tok = buildTokenizer(world, sdpoSamples(world, "train")[0]);
  const s = dmpoSamples(world, "train", { numNegatives: 3 })[0];
  const t = dmpoExample(tok, s, world, 3);
  assert.equal(tok.decode(t.chosen, { skipSpecial: true }), `<Title: ${s.positive}>`);
  assert.equal(t.rejected.length, 3);
  assert.equal(tok.decode(t.rejected[2], { skipSpecial: true }), `<Title: ${s.negatives[2]}>`);
  const r = dmpoExample(tok, s, world, 1, "ranking");
  assert.ok(r.chosen.length > t.chosen.length);
  assert.equal(r.rejected.length, 1);
  assert.deepEqual(r.prompt, t.prompt);
});

Deno.test("reproduce --paper dmpo --scale test writes the DMPO ablations with verdicts", async () => {
  const out = await Deno.makeTempDir({ prefix: "recalign-dmpo-abl-" });
  try {
    await main(["--paper", "dmpo", "--scale", "test", "--out", out]);
    const dir = `${out}/dmpo/synthetic`;
    const m = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
    const table = await Deno.readTextFile(`${dir}/table.md`);
    const findings = await Deno.readTextFile(`${dir}/findings.md`);
    const abl = m.result.ablations;
    assert.ok(abl, "ablations in metrics.json");
    for (const f of ["dmpo_negatives", "dmpo_few_shot", "dmpo_cross_domain"]) {
      const svg = await Deno.readTextFile(`${dir}/${f}.svg`);
      assert.match(svg, /^<svg/);
      JSON.parse(await Deno.readTextFile(`${dir}/${f}.vl.json`));
      assert.ok(table.includes(`(${f}.svg)`), `table.md links ${f}.svg`);
    }
    // Every AUC is finite and in [0, 1].
    for (const [name, row] of Object.entries(abl.methods) as [string, Record<string, number>][]) {
      for (const f of ["auc_paired", "auc_released"]) {
        assert.ok(Number.isFinite(row[f]) && row[f] >= 0 && row[f] <= 1, `${name} ${f}`);
      }
    }
    for (
      const r of [...abl.k_sweep, ...abl.few_shot, ...abl.cross_domain] as {
        auc_paired: number;
      }[]
    ) {
      assert.ok(Number.isFinite(r.auc_paired) && r.auc_paired >= 0 && r.auc_paired <= 1);
    }
    // The negatives sweep: every sampler × K = 1, 2; K = 1 is one shared arm.
    assert.deepEqual(abl.samplers, [...ABLATION_SAMPLERS]);
    const sweep = abl.k_sweep as { sampler: string; k: number; method: string }[];
    assert.deepEqual(
      sweep.map((r) => `${r.sampler}:${r.k}`),
      ABLATION_SAMPLERS.flatMap((x) => [`${x}:1`, `${x}:2`]),
    );
    assert.deepEqual(
      new Set(sweep.filter((r) => r.k === 1).map((r) => r.method)),
      new Set([
        "SFT+DMPO K=1",
      ]),
    );
    assert.equal(new Set(sweep.filter((r) => r.k === 2).map((r) => r.method)).size, 4);
    for (const r of sweep) assert.ok(abl.methods[r.method], `row ${r.method}`);
    assert.equal(abl.sweep_prompts, 8); // test scale: the protocol's 8 few-shot users
    // Equal steps: the popularity rows of K = 2 for K = 1's steps.
    const eq = abl.k_equal_steps as { k: number; method: string; steps: number }[];
    assert.deepEqual(eq.map((r) => r.k), [2]);
    assert.equal(eq[0].steps, abl.methods["SFT+DMPO K=1"].steps);
    assert.equal(abl.methods["SFT+DMPO K=2"].steps, 4); // 1 epoch × 16 rows / batch 4
    assert.equal(abl.methods["SFT+DMPO K=1"].steps, 2); // 1 epoch × 8 rows / batch 4

    assert.ok(
      m.stage_seconds.some((t: { stage: string }) => /model-hard mining/.test(t.stage)),
      "mining time recorded",
    );
    // The plot: one line per sampler, plus the popularity negatives at equal steps.
    const spec = JSON.parse(await Deno.readTextFile(`${dir}/dmpo_negatives.vl.json`));
    const line = spec.spec.layer.find((l: { mark: { type: string } }) => l.mark.type === "line");
    assert.equal(line.encoding.color.field, "sampler");
    assert.deepEqual(
      new Set(spec.data.values.map((v: { sampler: string }) => v.sampler)),
      new Set([...ABLATION_SAMPLERS, "popularity (equal steps)"]),
    );
    for (const x of ABLATION_SAMPLERS) assert.ok(table.includes(`| ${x} | `), `table row ${x}`);
    assert.ok(table.includes("at equal epochs"), "K table: equal epochs and equal steps");
    assert.ok(abl.cross_domain.some((r: { domain: string }) => r.domain === "game"));
    // findings.json: headline + ablation claims, schema, verdicts re-derived from the rows.
    const fj = JSON.parse(await Deno.readTextFile(`${dir}/findings.json`)) as Finding[];
    for (const f of fj) assertFindingSchema(f);
    const ids = fj.map((f) => f.claim_id);
    assert.equal(new Set(ids).size, ids.length, "claim ids unique");
    for (
      const id of [
        "dmpo.sft_dmpo_gt_dmpo_only.auc",
        "dmpo.k3_gt_k1.auc",
        ...ABLATION_SAMPLERS.map(moreNegativesClaimId),
        "dmpo.model_hard_gt_uniform.auc",
        "dmpo.more_negatives_help_equal_steps.auc",
        "dmpo.sft_dmpo_gt_dmpo_only_few_shot.auc",
        "dmpo.sft_gain_largest_at_small_n.auc",
        "dmpo.transfers.auc",
        "dmpo.transfers_gt_sft.auc",
      ]
    ) assert.ok(ids.includes(id), id);
    const byId = Object.fromEntries(fj.map((f) => [f.claim_id, f]));
    // One few-shot size at test scale: the gap claim cannot be evaluated, and says so.
    assert.equal(byId["dmpo.sft_gain_largest_at_small_n.auc"].verdict, "not tested");
    assert.match(byId["dmpo.sft_gain_largest_at_small_n.auc"].reason!, /single size/);
    for (const x of ABLATION_SAMPLERS) {
      const f = byId[moreNegativesClaimId(x)];
      assert.equal(f.scope, "ablation");
      assert.deepEqual(f.seeds, [0]);
      assert.equal(f.ours_method, sweep.find((r) => r.sampler === x && r.k === 2)!.method);
      assert.equal(f.baseline_method, "SFT+DMPO K=1");
      const a = abl.methods[f.ours_method!].pair_correct as number[];
      const b = abl.methods[f.baseline_method!].pair_correct as number[];
      // One seed; the test pairs of one test user are one cluster.
      const d = a.map((v, i) => v - b[i]);
      assert.equal(abl.row_users.length, d.length);
      const ci = clusteredBootstrapCI([d], abl.row_users);
      assert.ok(Math.abs(ci.mean - f.effect!) < 1e-12);
      assert.deepEqual(f.ci95, [ci.lo, ci.hi]);
      assert.equal(verdictOf(ci), f.verdict);
      // MDE = 2.8016 · bootstrap SE, near its closed form 2.8016 · sd(d) / √n.
      const md = d.reduce((s, v) => s + v, 0) / d.length;
      const sd = Math.sqrt(d.reduce((s, v) => s + (v - md) ** 2, 0) / (d.length - 1));
      const closed = 2.801585218 * sd / Math.sqrt(d.length);
      assert.ok(Math.abs(f.mde! - 2.801585218 * ci.se) < 1e-8);
      assert.ok(Math.abs(f.mde! - closed) <= 0.25 * closed + 1e-9, `${f.mde} vs ${closed}`);
    }
    // Every verdict recomputed from metrics.json alone (`deno task findings`).
    const again = findingsOfMetrics(m);
    assert.deepEqual(
      again.map((f) => [f.claim_id, f.verdict, f.ci95]),
      fj.map((f) => [f.claim_id, f.verdict, f.ci95]),
    );
    // findings.md: one row per finding with its id and verdict; metrics.json's claims agree.
    for (const f of fj) {
      const row = findings.split("\n").find((l) => l.includes(`\`${f.claim_id}\``));
      assert.ok(row?.startsWith(`| ${f.claim} |`), f.claim_id);
      if (f.verdict !== "not tested") assert.ok(row!.includes(`**${f.verdict}**`), f.claim_id);
    }
    assert.deepEqual(
      m.ablation_claims.map((c: { id: string; verdict: string }) => `${c.id}=${c.verdict}`),
      fj.filter((f) => f.scope === "ablation" && f.verdict !== "not tested").map((f) =>
        `${f.claim_id}=${f.verdict}`
      ),
    );
    assert.equal(m.claims.length, fj.filter((f) => f.scope === "headline").length);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("withExtraNegatives: the prompt's negative kept, extras drawn per sampler outside history, positive and that item", () => {
  const world = buildWorld();
  const samples = dmpoSamples(world, "train", { numNegatives: 1 }).slice(0, 40);
  for (const sampler of ["popularity", "uniform", "same-genre"] as const) {
    const out = withExtraNegatives(world, samples, 4, sampler, { seed: 3 });
    out.forEach((s, i) => {
      const orig = samples[i];
      assert.equal(s.negativeIds[0], orig.negativeIds[0]);
      assert.deepEqual(s.pair, orig.pair, "prompt unchanged");
      assert.equal(s.negativeIds.length, 5);
      assert.equal(new Set(s.negativeIds).size, 5, "distinct");
      assert.deepEqual(s.negatives, s.negativeIds.map((id) => world.items[id].title));
      const hist = new Set(orig.historyIds);
      for (const id of s.negativeIds.slice(1)) {
        assert.ok(!hist.has(id) && id !== orig.positiveId && id !== orig.negativeIds[0]);
        assert.ok(world.domainItems[orig.domain].includes(id));
        if (sampler === "same-genre") {
          assert.equal(world.items[id].genre, world.items[orig.positiveId].genre);
        }
      }
    });
    // Deterministic in the seed.
    assert.deepEqual(withExtraNegatives(world, samples, 4, sampler, { seed: 3 }), out);
  }
  // Popularity-weighted extras are more popular than uniform ones on average.
  const meanPop = (sampler: "popularity" | "uniform") => {
    const out = withExtraNegatives(world, samples, 4, sampler, { seed: 9 });
    const ids = out.flatMap((s) => s.negativeIds.slice(1));
    return ids.reduce((a, id) => a + world.items[id].popularity, 0) / ids.length;
  };
  assert.ok(meanPop("popularity") > meanPop("uniform"));
});

Deno.test("withExtraNegatives model-hard: the top-scored candidates, hardest first (checked by a plain scan)", () => {
  const world = buildWorld();
  const samples = dmpoSamples(world, "train", { numNegatives: 1 }).slice(0, 20);
  let seen: number[][] = [];
  // A fake model: likes items by a hash of their id.
  const like = (id: number) => ((id * 2654435761) % 1000) / 7;
  const out = withExtraNegatives(world, samples, 3, "model-hard", {
    seed: 4,
    mineFrom: 10,
    score: (ss, cands) => {
      assert.equal(ss.length, samples.length);
      seen = cands;
      return cands.map((c) => c.map(like));
    },
  });
  out.forEach((s, i) => {
    const cands = seen[i];
    assert.equal(cands.length, 10);
    const pool = new Set(extraNegativePool(world, samples[i]));
    for (const id of cands) assert.ok(pool.has(id), "candidates from the pool");
    // Plain scan: repeatedly take the best remaining candidate.
    const left = cands.slice(), top: number[] = [];
    for (let r = 0; r < 3; r++) {
      let bi = 0;
      for (let j = 1; j < left.length; j++) if (like(left[j]) > like(left[bi])) bi = j;
      top.push(left.splice(bi, 1)[0]);
    }
    assert.deepEqual(s.negativeIds, [samples[i].negativeIds[0], ...top]);
  });
  assert.deepEqual(hardestFirst([0.1, 0.5, 0.5, -1]), [1, 2, 0, 3]);
  assert.throws(() => withExtraNegatives(world, samples, 2, "model-hard", { seed: 1 }), /score/);
});

Deno.test("candidateScores (model-hard mining) equals scorePairs on each prompt + <Title:x> response", () => {
  const world = buildWorld();
  const tok = buildTokenizer(world, sdpoSamples(world, "train")[0]);
  const model = LlamaModel.random(modelConfig(tok.vocabSize), 2);
  try {
    const samples = dmpoSamples(world, "train", { numNegatives: 1 }).slice(0, 3);
    const cands = samples.map((s) => extraNegativePool(world, s).slice(0, 4));
    const fast = candidateScores(model, tok, world, samples, cands);
    const slow = scorePairs(
      model,
      samples.flatMap((s, i) =>
        cands[i].map((id) => ({
          prompt: encodePrompt(tok, worldDmpoPrompt(s, world.domains[s.domain]).prompt),
          response: encodeResponse(tok, `<Title:${world.items[id].title}>`),
        }))
      ),
    );
    fast.flat().forEach((v, j) =>
      assert.ok(Math.abs(v - slow[j]) < 1e-4, `${j}: ${v} vs ${slow[j]}`)
    );
  } finally {
    model.dispose();
  }
});

Deno.test("DMPO negatives sweep: every sampler's K values hold K = 1 and the largest K", () => {
  for (const scale of Object.values(SCALE_PRESETS)) {
    const all = scale.ablDmpoNegs;
    for (const sampler of ABLATION_SAMPLERS) {
      const ks = samplerKs(scale, sampler);
      assert.ok(ks.every((k) => all.includes(k)), `${scale.name} ${sampler}: ${ks} within ${all}`);
      assert.ok(ks.includes(Math.min(...all)), `${scale.name} ${sampler} has the smallest K`);
      assert.ok(ks.includes(Math.max(...all)), `${scale.name} ${sampler} has the largest K`);
    }
  }
  assert.deepEqual(samplerKs(SCALE_PRESETS.small, "popularity"), [1, 2, 3, 4, 5]);
  assert.deepEqual(samplerKs(SCALE_PRESETS.small, "uniform"), [1, 5]);
  assert.deepEqual(equalStepsKs(SCALE_PRESETS.small), [3, 5]);
  assert.deepEqual(equalStepsKs(SCALE_PRESETS.test), [2]);
});
