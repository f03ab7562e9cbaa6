import assert from "node:assert/strict";
import { initBackend } from "../../src/backend.ts";
import { pairedBootstrapCI } from "../../src/eval/metrics.ts";
import { verdictOf } from "../../src/report/findings.ts";
import { main } from "../../src/cli/reproduce.ts";
import { dmpoExample } from "../../src/experiments/dmpo.ts";
import { buildTokenizer, buildWorld } from "../../src/experiments/common.ts";
import { dmpoSamples, sdpoSamples } from "../../src/data/world.ts";

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
    assert.deepEqual(abl.k_sweep.map((r: { k: number }) => r.k), [1, 2]);
    assert.ok(abl.cross_domain.some((r: { domain: string }) => r.domain === "game"));
    // Claims: listed in findings.md; the negatives verdict re-derived from the stored rows.
    assert.ok(m.ablation_claims.length >= 3);
    for (const c of m.ablation_claims) {
      const row = findings.split("\n").find((l: string) => l.startsWith(`| ${c.text} |`));
      assert.ok(row?.includes(`**${c.verdict}**`), `findings.md lists "${c.text}"`);
    }
    const neg = m.ablation_claims.find((c: { id: string }) => c.id === "dmpo-more-negatives-help");
    assert.ok(neg);
    const ci = pairedBootstrapCI(abl.methods[neg.a].pair_correct, abl.methods[neg.b].pair_correct);
    assert.ok(Math.abs(ci.mean - neg.diff.mean) < 1e-12);
    assert.equal(verdictOf(ci), neg.verdict);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
