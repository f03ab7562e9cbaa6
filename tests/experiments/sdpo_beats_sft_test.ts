/**
 * The can-fail check of issue #5: on the synthetic world at `--scale tiny`, S-DPO (K=3)
 * ranks the held-out positives better than the SFT model it starts from. Deterministic
 * (seeded, same backend), so it does not flake; it fails if S-DPO stops helping.
 */
import assert from "node:assert/strict";
import { initBackend, tf } from "../../src/backend.ts";
import { clearBaseCache, disposeSnapshot, setBaseLm } from "../../src/experiments/common.ts";
import { loadBaseLm } from "../../src/experiments/base_lm.ts";
import * as sdpo from "../../src/experiments/sdpo.ts";

await initBackend("wasm", { quiet: true });

Deno.test("S-DPO beats SFT on ranking HR@1 at --scale tiny (synthetic world, base LM, seed 0)", async () => {
  const lm = await loadBaseLm();
  assert.ok(
    "snap" in lm,
    `models/base-lm must match the code's recipe: ${"reason" in lm && lm.reason}`,
  );
  setBaseLm({ snap: lm.snap, hash: lm.info.hash });
  try {
    const r = await sdpo.run({
      scale: "tiny",
      seeds: [0],
      ablations: false,
      baselines: false,
      progress: false,
    });
    const m = r.per_seed[0].methods;
    for (const name of sdpo.SDPO_METHODS) {
      assert.ok(m[name].hr1_rank >= 0 && m[name].hr1_rank <= 1, name);
    }
    assert.ok(
      m["S-DPO"].hr1_rank > m.SFT.hr1_rank,
      `S-DPO HR@1 ${m["S-DPO"].hr1_rank} should beat SFT ${m.SFT.hr1_rank} ` +
        `(${r.num_test} test prompts)`,
    );
  } finally {
    clearBaseCache();
    setBaseLm(undefined);
    disposeSnapshot(lm.snap);
  }
  assert.ok(tf.memory().numTensors < 200, `tensors left: ${tf.memory().numTensors}`);
});
