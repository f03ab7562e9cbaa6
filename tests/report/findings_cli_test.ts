import assert from "node:assert/strict";
import { findingsOfMetrics, parseFindingsText, recompute } from "../../src/cli/findings.ts";
import { type Finding, renderFindingsMarkdown, sdpoFindings } from "../../src/report/findings.ts";
import { Rng } from "../../src/rng.ts";

const tmp = () => Deno.makeTempDir({ prefix: "recalign-findings-cli-" });

Deno.test("deno task findings: the committed findings of the default and full runs are what metrics.json gives", async () => {
  for (
    const dir of [
      "results/sdpo/synthetic",
      "results/dmpo/synthetic",
      "results/full/sdpo/synthetic",
      "results/full/dmpo/synthetic",
      "results/full/dpo4rec/synthetic",
      "results/s1-followup/sdpo/synthetic",
      "results/confirm/sdpo/synthetic",
      "results/confirm/dmpo/synthetic",
      "results/confirm/dpo4rec/synthetic",
      "results/confirm-k8/sdpo/synthetic",
    ]
  ) {
    const out = await tmp();
    try {
      await recompute(`${dir}/metrics.json`, out);
      const again = JSON.parse(await Deno.readTextFile(`${out}/findings.json`));
      const committed = JSON.parse(await Deno.readTextFile(`${dir}/findings.json`));
      assert.deepEqual(again, committed, dir);
      // The same text, but for the link to the plan: relative inside the repository, the
      // path as text from the temporary folder.
      assert.equal(
        await Deno.readTextFile(`${out}/findings.md`),
        (await Deno.readTextFile(`${dir}/findings.md`)).replace(
          /\[docs\/analysis-plan\.md\]\((\.\.\/)+docs\/analysis-plan\.md\)/,
          "`docs/analysis-plan.md`",
        ),
      );
      // The rows are clustered by the rebuilt test users, and seeds are resampled.
      const head = (again as Finding[]).find((f) => f.verdict !== "not tested")!;
      assert.equal(head.resampling!.cluster_by, "user");
      // Its arms train a model per seed: every seed of the run is a resampling unit.
      const metrics = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
      assert.equal(head.resampling!.seed_units, metrics.seeds.length);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  }
});

function fakeMetrics() {
  const rng = new Rng(2);
  const rows = (p: number) => Array.from({ length: 40 }, () => (rng.next() < p ? 1 : 0));
  const sft = {
    rank_hits: rows(0.2),
    pos_logp: rows(0.5),
    gen_hits: rows(0.2),
    gen_valid: rows(0.9),
  };
  return {
    paper: "sdpo",
    dataset: "lastfm",
    scale: "small",
    scale_preset: { stage0Seeds: 1 },
    findings_text: { title: "Fake run", notes: ["note one"], ablation_note: "" },
    result: {
      seeds: [0, 1, 2],
      row_users: Array.from({ length: 40 }, (_, i) => Math.floor(i / 4)),
      stage0_methods: ["SFT"],
      per_seed: [0, 1, 2].map((seed) => ({
        seed,
        stage0_seed: 0,
        methods: {
          SFT: sft,
          "SFT-cont": {
            rank_hits: rows(0.25),
            pos_logp: rows(0.5),
            gen_hits: rows(0.2),
            gen_valid: rows(0.9),
          },
          DPO: {
            rank_hits: rows(0.3),
            pos_logp: rows(0.4),
            gen_hits: rows(0.3),
            gen_valid: rows(0.9),
          },
          "S-DPO": {
            rank_hits: rows(0.5),
            pos_logp: rows(0.6),
            gen_hits: rows(0.4),
            gen_valid: rows(0.9),
          },
        },
      })),
    },
  };
}

Deno.test("deno task findings on a metrics.json that records its design: the same findings as the run, the run's text", async () => {
  const m = fakeMetrics();
  const dir = await tmp();
  try {
    await Deno.writeTextFile(`${dir}/metrics.json`, JSON.stringify(m));
    const { findings } = await recompute(`${dir}/metrics.json`);
    const direct = sdpoFindings(
      m.result,
      "the S-DPO ablations did not run (`--ablations` runs them)",
    );
    assert.deepEqual(findings, JSON.parse(JSON.stringify(direct)));
    const json = JSON.parse(await Deno.readTextFile(`${dir}/findings.json`));
    assert.deepEqual(json, JSON.parse(JSON.stringify(direct)));
    const md = await Deno.readTextFile(`${dir}/findings.md`);
    assert.match(md, /^# Findings: Fake run$/m);
    assert.match(md, /^- note one$/m);
    assert.doesNotMatch(md, /predates/); // nothing was inferred
    const f = json.find((x: Finding) => x.claim_id === "sdpo.sdpo_gt_sft.hr1");
    assert.equal(
      f.resampling.description,
      "3 seeds, then 10 test users, all rows of a user together",
    );
    // SFT is one model: S-DPO's 3 seeds against it.
    assert.equal(f.rows, 120);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task findings: a released-data run without recorded users: every row its own cluster, shared SFT inferred", () => {
  const m = fakeMetrics() as Record<string, unknown> & ReturnType<typeof fakeMetrics>;
  const r = m.result as Record<string, unknown>;
  delete r.row_users;
  delete r.stage0_methods;
  for (const s of m.result.per_seed) delete (s as Partial<typeof s>).stage0_seed;
  const fs = findingsOfMetrics(m);
  const f = fs.find((x) => x.claim_id === "sdpo.sdpo_gt_sft.hr1")!;
  assert.equal(f.resampling!.cluster_by, "prompt");
  // The stage-0 sharing is inferred from scale_preset.stage0Seeds: SFT one model.
  assert.equal(f.resampling!.seed_units, 3);
  const g = fs.find((x) => x.claim_id === "sdpo.sdpo_gt_dpo.hr1")!;
  assert.equal(g.rows, 120);
});

Deno.test("parseFindingsText reads back what renderFindingsMarkdown wrote", () => {
  const md = renderFindingsMarkdown("A title (x)", [], ["first note", "second `note`"], "abl note");
  const t = parseFindingsText(md);
  assert.equal(t.title, "A title (x)");
  assert.deepEqual(t.notes, ["first note", "second `note`"]);
  assert.equal(parseFindingsText("").title, "");
});
