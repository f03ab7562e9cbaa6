/**
 * `deno task data export-trl`: preference rows as TRL / S-DPO JSON lines, from the synthetic
 * world's S-DPO preference prompts (checked against the token ids the arms train on) or from a
 * released-format S-DPO file.
 */
import assert from "node:assert/strict";
import { main } from "../../src/cli/data.ts";
import { encodePrompt, SCALE_PRESETS } from "../../src/experiments/common.ts";
import { sdpoData } from "../../src/experiments/sdpo.ts";

const dir = await Deno.makeTempDir({ prefix: "recalign-export-" });

async function lines(path: string): Promise<Record<string, string>[]> {
  const text = await Deno.readTextFile(path);
  assert.ok(text.endsWith("\n"));
  return text.trimEnd().split("\n").map((l) => JSON.parse(l));
}

Deno.test("data export-trl writes the synthetic preference prompts the arms train on, as TRL pairs and S-DPO rows", async () => {
  const scale = SCALE_PRESETS.test;
  const data = sdpoData(scale);
  const { tok } = data;
  const enc = (text: string) => [...tok.encode(text), tok.eosId];
  const trl = `${dir}/trl.jsonl`;
  assert.equal(await main(["export-trl", "--scale", "test", "--negatives", "2", "--out", trl]), 0);
  const pairs = await lines(trl);
  assert.equal(pairs.length, data.prefExamples.length * 2);
  pairs.forEach((p, n) => {
    assert.deepEqual(Object.keys(p), ["prompt", "chosen", "rejected"]);
    const e = data.prefExamples[Math.floor(n / 2)];
    // Encoded the way recalign encodes, the text gives back the training ids.
    assert.deepEqual(encodePrompt(tok, p.prompt), e.prompt);
    assert.ok(p.prompt.endsWith("Answer:"));
    assert.ok(p.chosen.startsWith(" ") && p.rejected.startsWith(" "));
    assert.deepEqual(enc(p.chosen), e.chosen);
    assert.deepEqual(enc(p.rejected), e.rejected![n % 2]);
    assert.notEqual(p.chosen, p.rejected);
  });
  const multi = `${dir}/sdpo.jsonl`;
  await main([
    "export-trl",
    "--scale",
    "test",
    "--format",
    "sdpo",
    "--negatives",
    "3",
    "--out",
    multi,
  ]);
  const rows = await lines(multi);
  assert.equal(rows.length, data.prefExamples.length);
  rows.forEach((r, i) => {
    assert.deepEqual(Object.keys(r), [
      "prompt",
      "chosen",
      "rejected1",
      "rejected2",
      "rejected3",
    ]);
    for (let j = 0; j < 3; j++) {
      assert.deepEqual(enc(r[`rejected${j + 1}`]), data.prefExamples[i].rejected![j]);
    }
  });
  // More negatives than the pool holds, or an unknown format: an error naming the flag.
  await assert.rejects(
    () => main(["export-trl", "--scale", "test", "--negatives", "9", "--out", trl]),
    /negatives.*\[1, 4\].*got 9/,
  );
  await assert.rejects(
    () => main(["export-trl", "--format", "csv", "--out", trl]),
    /--format: expected trl, sdpo; got "csv"/,
  );
  await assert.rejects(() => main(["export-trl", "--scale", "test"]), /--out .* is required/);
});

Deno.test("data export-trl --input reads a released S-DPO file: training prompt, true item, seeded negatives", async () => {
  const file = `${dir}/released.json`;
  const cands = (p: string) => Array.from({ length: 20 }, (_, i) => `${p} ${i}`);
  await Deno.writeTextFile(
    file,
    JSON.stringify(
      [
        { historyList: "A::B::C", itemList: cands("Band"), trueSelection: "Band 4" },
        { historyList: "D::E", itemList: cands("Group"), trueSelection: "Group 17" },
      ],
      null,
      4,
    ),
  );
  const out = `${dir}/released.jsonl`;
  await main(["export-trl", "--input", file, "--negatives", "3", "--out", out, "--seed", "5"]);
  const pairs = await lines(out);
  assert.equal(pairs.length, 6);
  for (const [i, p] of pairs.entries()) {
    const [name, truth, hist] = i < 3
      ? ["Band", "Band 4", "A, B, C"]
      : ["Group", "Group 17", "D, E"];
    assert.equal(p.chosen, truth);
    assert.ok(p.rejected.startsWith(name) && p.rejected !== truth);
    assert.ok(p.prompt.endsWith("Answer: "), "S-DPO's training prompt ends with a space");
    assert.ok(p.prompt.includes(hist) && p.prompt.includes(cands(name).join(", ")));
  }
  assert.equal(new Set(pairs.slice(0, 3).map((p) => p.rejected)).size, 3);
  // Seeded: the same seed, the same file; another seed, other draws.
  const again = `${dir}/again.jsonl`;
  await main(["export-trl", "--input", file, "--negatives", "3", "--out", again, "--seed", "5"]);
  assert.equal(await Deno.readTextFile(again), await Deno.readTextFile(out));
  await main(["export-trl", "--input", file, "--negatives", "3", "--out", again, "--seed", "6"]);
  assert.notEqual(await Deno.readTextFile(again), await Deno.readTextFile(out));
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* already gone */ }
});
