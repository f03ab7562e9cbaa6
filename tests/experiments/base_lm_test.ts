import assert from "node:assert/strict";
import { initBackend, tf } from "../../src/backend.ts";
import {
  BASE_LM_RECIPE,
  baseLmExercises,
  baseLmHash,
  baseLmSetting,
  loadBaseLm,
  pretrainBaseLm,
} from "../../src/experiments/base_lm.ts";
import { sdpoSamples } from "../../src/data/world.ts";

await initBackend(undefined, { quiet: true });

Deno.test("baseLmExercises: train users only; selection answers a listed title, copy all in order", () => {
  const { world, tok, samples } = baseLmSetting();
  const recipe = { minCandidates: 3, maxCandidates: 7, copyShare: 0.3, seed: 1 };
  const ex = baseLmExercises(world, tok, samples, 300, recipe);
  assert.equal(ex.length, 300);
  const trainUsers = new Set(world.splits.train);
  assert.ok(samples.every((s) => trainUsers.has(s.user)));
  const counts = new Set<number>();
  let copies = 0;
  for (const e of ex) {
    const prompt = tok.decode(e.prompt, { skipSpecial: true });
    const answer = tok.decode(e.chosen, { skipSpecial: true }).trim();
    assert.ok(!e.prompt.includes(tok.unkId) && !e.chosen.includes(tok.unkId), prompt);
    const sel = prompt.match(/following (\d+) movie titles: (.*)\. Answer:$/);
    const copy = prompt.match(
      / recently\. Repeat the following (\d+) movie titles in order: (.*)\. Answer:$/,
    );
    const m = copy ?? sel;
    assert.ok(m, prompt);
    const listed = m[2].split(", ");
    assert.equal(Number(m[1]), listed.length, "the count says how many are listed");
    counts.add(listed.length);
    assert.ok(listed.length >= 3 && listed.length <= 7);
    if (copy) {
      copies++;
      assert.equal(answer, listed.join(", "));
    } else {
      assert.ok(listed.includes(answer), `${answer} not in ${listed}`);
    }
  }
  assert.ok(counts.size >= 4, "candidate counts vary");
  assert.ok(copies > 60 && copies < 120, `about 30 % copy exercises: ${copies}`);
  // Seeded: the same recipe gives the same exercises, another seed others.
  const again = baseLmExercises(world, tok, samples, 300, recipe);
  assert.deepEqual(again.map((e) => e.chosen), ex.map((e) => e.chosen));
  const other = baseLmExercises(world, tok, samples, 300, { ...recipe, seed: 2 });
  assert.notDeepEqual(other.map((e) => e.prompt), ex.map((e) => e.prompt));
  // Test users never appear: their histories are not the exercises' histories.
  const testHist = new Set(
    sdpoSamples(world, "test", { drawsPerUser: 1 }).map((s) => s.history.join(", ")),
  );
  assert.ok(samples.every((s) => !testHist.has(s.history.join(", "))));
});

Deno.test("base LM: pretrain → save → load round-trips; a stale recipe is refused by hash", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const recipe = { ...BASE_LM_RECIPE, steps: 3, batchSize: 4, warmupSteps: 1 };
    const before = tf.memory().numTensors;
    const info = await pretrainBaseLm(dir, recipe, { progress: false });
    assert.equal(info.hash, await baseLmHash(recipe));
    assert.ok(Number.isFinite(info.final_loss));
    assert.ok(info.probe_valid_ratio >= 0 && info.probe_valid_ratio <= 1);
    const got = await loadBaseLm(dir, recipe);
    assert.ok("snap" in got, "loads");
    const { config } = baseLmSetting();
    assert.deepEqual(got.snap.get("model.embed_tokens.weight")!.shape, [
      config.vocab_size,
      config.hidden_size,
    ]);
    for (const t of got.snap.values()) t.dispose();
    assert.equal(tf.memory().numTensors, before, "no tensor left behind");
    const stale = await loadBaseLm(dir, { ...recipe, lr: recipe.lr * 2 });
    assert.ok("reason" in stale && /another recipe/.test(stale.reason), JSON.stringify(stale));
    const missing = await loadBaseLm(`${dir}/nope`, recipe);
    assert.ok("reason" in missing && /not found/.test(missing.reason));
    // The training checkpoints are cleaned up after a finished run.
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "config.json",
      "model.safetensors",
      "recalign_tokenizer.json",
      "recipe.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("base LM: another model shape (studies) is saved with its config, and reproduce's loader refuses it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const recipe = { ...BASE_LM_RECIPE, steps: 10, batchSize: 2, warmupSteps: 1 };
    const setting = baseLmSetting();
    const config = {
      ...setting.config,
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 2,
      intermediate_size: 64,
    };
    const info = await pretrainBaseLm(dir, recipe, { progress: false, config, probes: false });
    assert.deepEqual(info.probe_curve, [], "no probes during training");
    assert.equal(info.hash, await baseLmHash(recipe, { ...setting, config }));
    assert.notEqual(info.hash, await baseLmHash(recipe), "the shape is part of the hash");
    const saved = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    assert.equal(saved.hidden_size, 32);
    assert.equal(saved.num_hidden_layers, 1);
    assert.equal(saved.intermediate_size, 64);
    const got = await loadBaseLm(dir, recipe);
    assert.ok("reason" in got && /another recipe/.test(got.reason), JSON.stringify(got));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
