/**
 * An S-DPO row written by `toSdpoMultiNegJsonl` goes through S-DPO's trainer the way that trainer
 * reads it. The steps below re-implement, independently and in TypeScript, how the released code
 * (github.com/chenyuxin1999/S-DPO at commit 07befa4) turns one dataset row into the
 * `concatenated_*` batch its loss uses; each step cites the file and lines it follows. Token ids
 * are stood in by the texts themselves: what is checked is which column ends up where.
 */
import assert from "node:assert/strict";
import { toSdpoMultiNegJsonl } from "../../src/export.ts";

type Feature = Record<string, string>;
type Batch = Record<string, string[] | string>;

/**
 * trainer/utils.py, `DPODataCollatorWithPadding.__call__` (lines 165-176): the prompt, the chosen
 * text, and every column whose name starts with "rejected" (in column order) as the rejected set.
 * Then `tokenize_batch_element` (lines 94-133): string keys `chosen`, each rejected key,
 * `<key>_response_only`; sequence keys `<k>_<type_key>` for chosen and prompt (lines 119-127) and
 * for each rejected key (lines 129-133). Sequences here are [prompt, response] pairs.
 */
function collatorElement(feature: Feature): Batch {
  const prompt = feature["prompt"];
  const chosen = feature["chosen"];
  const rejected: Feature = {};
  for (const key of Object.keys(feature)) {
    if (key.startsWith("rejected")) rejected[key] = feature[key];
  }
  const batch: Batch = {};
  batch["prompt"] = prompt;
  batch["chosen"] = prompt + chosen;
  for (const key of Object.keys(rejected)) batch[key] = prompt + rejected[key];
  batch["chosen_response_only"] = chosen;
  for (const key of Object.keys(rejected)) batch[`${key}_response_only`] = rejected[key];
  const seq = (resp: string) => ({
    input_ids: [prompt, resp],
    attention_mask: [prompt, resp],
    labels: ["-100", resp],
  });
  for (
    const [k, toks] of Object.entries({ chosen: seq(chosen), prompt: { input_ids: [prompt] } })
  ) {
    for (const [typeKey, v] of Object.entries(toks)) batch[`${k}_${typeKey}`] = v;
  }
  for (const [k, resp] of Object.entries(rejected)) {
    for (const [typeKey, v] of Object.entries(seq(resp))) batch[`${k}_${typeKey}`] = v;
  }
  return batch;
}

/** utils.py `collate` (lines 137-162): keys ending in _input_ids/_attention_mask/_labels are tensors. */
function isTensorKey(k: string): boolean {
  return k.endsWith("_input_ids") || k.endsWith("_attention_mask") || k.endsWith("_labels");
}

/**
 * trainer/softmax_dpo_trainer.py, `concatenated_inputs` (lines 187-219): chosen tensors are renamed
 * with `k.replace("chosen", "concatenated")`; each rejected tensor key is cut at its first "_"
 * (`prefix = k.split("_")[0]`, line 209) and appended to `"concatenated" + k[len(prefix):]`
 * (line 210), which must already exist (a Python KeyError otherwise). Rows are stacked in key order.
 */
function concatenatedInputs(batch: Batch): Record<string, string[][]> {
  const out: Record<string, string[][]> = {};
  for (const k of Object.keys(batch)) {
    if (k.startsWith("chosen") && isTensorKey(k)) {
      out[k.replace("chosen", "concatenated")] = [batch[k] as string[]];
    }
  }
  for (const k of Object.keys(batch)) {
    if (k.startsWith("rejected") && isTensorKey(k)) {
      const prefix = k.split("_")[0];
      const key = "concatenated" + k.slice(prefix.length);
      if (!(key in out)) throw new Error(`KeyError: '${key}'`);
      out[key].push(batch[k] as string[]);
    }
  }
  return out;
}

/** softmax_dpo_trainer.py `concatenated_forward` (lines 318-326): K = rejected *_input_ids keys. */
function negativesSeen(batch: Batch): number {
  return Object.keys(batch).filter((k) => k.startsWith("rejected") && k.endsWith("_input_ids"))
    .length;
}

Deno.test("an exported S-DPO row reaches S-DPO's concatenated batch: chosen first, then rejected1..K in order", () => {
  const rows = [
    { prompt: "Watched: A, B. Answer: ", chosen: "C", rejected: ["D", "E", "F"] },
    { prompt: "Listened: X. Answer: ", chosen: "Y", rejected: ["Z1", "Z2", "Z3"] },
  ];
  const lines = toSdpoMultiNegJsonl(rows).trimEnd().split("\n");
  assert.equal(lines.length, rows.length);
  lines.forEach((line, i) => {
    const feature = JSON.parse(line) as Feature;
    // softmax_dpo.py lines 61-80 build exactly these columns: prompt, chosen, rejected1..K.
    assert.deepEqual(Object.keys(feature), [
      "prompt",
      "chosen",
      "rejected1",
      "rejected2",
      "rejected3",
    ]);
    const batch = collatorElement(feature);
    assert.equal(negativesSeen(batch), 3);
    const cat = concatenatedInputs(batch);
    assert.deepEqual(Object.keys(cat).sort(), [
      "concatenated_attention_mask",
      "concatenated_input_ids",
      "concatenated_labels",
    ]);
    const responses = cat["concatenated_input_ids"].map(([p, r]) => {
      assert.equal(p, rows[i].prompt);
      return r;
    });
    assert.deepEqual(responses, [rows[i].chosen, ...rows[i].rejected]);
  });
});

Deno.test("the re-implemented trainer path rejects the former `rejected_1` column names (the test can fail)", () => {
  const old = { prompt: "p ", chosen: "a", rejected_1: "b", rejected_2: "c" };
  assert.throws(
    () => concatenatedInputs(collatorElement(old)),
    /KeyError: 'concatenated_1_input_ids'/,
  );
});

Deno.test("K ≥ 10 keeps rejected1..rejected10 in order (column order, not string order)", () => {
  const rejected = Array.from({ length: 10 }, (_, j) => `n${j + 1}`);
  const feature = JSON.parse(
    toSdpoMultiNegJsonl([{ prompt: "q ", chosen: "y", rejected }]),
  ) as Feature;
  const cat = concatenatedInputs(collatorElement(feature));
  assert.deepEqual(cat["concatenated_input_ids"].map(([, r]) => r), ["y", ...rejected]);
});
