/**
 * Export preference data for the reference trainers: TRL's DPO format (one JSON object per line
 * with `prompt`, `chosen`, `rejected`) and S-DPO's multi-negative format (`prompt`, `chosen`,
 * `rejected1` … `rejectedK`: the column names S-DPO's `softmax_dpo.py` builds and its trainer
 * reads; a name with an underscore after `rejected` breaks that trainer, which splits column
 * names on `_`).
 *
 * @module
 */
import { InputError } from "./errors.ts";

/** One preference pair. */
export interface PreferencePair {
  prompt: string;
  chosen: string;
  rejected: string;
}

/** One prompt with K rejected responses (S-DPO). */
export interface MultiNegativeRow {
  prompt: string;
  chosen: string;
  rejected: string[];
}

function checkString(row: number, field: string, v: unknown): void {
  if (typeof v !== "string") {
    throw new InputError(
      "rows",
      `row ${row}, field "${field}": expected a string, got ${typeof v}`,
    );
  }
}

/**
 * TRL DPO JSON lines: `{"prompt": …, "chosen": …, "rejected": …}` per line, newline-terminated.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { toTrlJsonl } from "./export.ts";
 * assert.equal(
 *   toTrlJsonl([{ prompt: "p", chosen: "a", rejected: "b" }]),
 *   '{"prompt":"p","chosen":"a","rejected":"b"}\n',
 * );
 * ```
 *
 * @param rows Pairs.
 * @returns The file text.
 * @throws {InputError} Naming the 1-based row and field of a non-string value.
 */
export function toTrlJsonl(rows: readonly PreferencePair[]): string {
  return rows.map((r, i) => {
    for (const f of ["prompt", "chosen", "rejected"] as const) checkString(i + 1, f, r[f]);
    return JSON.stringify({ prompt: r.prompt, chosen: r.chosen, rejected: r.rejected }) + "\n";
  }).join("");
}

/**
 * S-DPO multi-negative JSON lines: `{"prompt", "chosen", "rejected1", …, "rejectedK"}`, the
 * columns S-DPO's trainer reads (github.com/chenyuxin1999/S-DPO: `softmax_dpo.py` builds
 * `rejected{i}`; the collator in `trainer/utils.py` takes every key starting with "rejected";
 * `trainer/softmax_dpo_trainer.py` maps `rejected3_input_ids` to `concatenated_input_ids` by
 * splitting on `_`). Every row must have the same K ≥ 1.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { toSdpoMultiNegJsonl } from "./export.ts";
 * assert.equal(
 *   toSdpoMultiNegJsonl([{ prompt: "p", chosen: "a", rejected: ["b", "c"] }]),
 *   '{"prompt":"p","chosen":"a","rejected1":"b","rejected2":"c"}\n',
 * );
 * ```
 *
 * @param rows Rows with K rejected responses each.
 * @returns The file text.
 * @throws {InputError} Naming the 1-based row on an empty or uneven `rejected` list or a
 *   non-string value.
 */
export function toSdpoMultiNegJsonl(rows: readonly MultiNegativeRow[]): string {
  const k = rows[0]?.rejected.length ?? 0;
  return rows.map((r, i) => {
    checkString(i + 1, "prompt", r.prompt);
    checkString(i + 1, "chosen", r.chosen);
    if (!Array.isArray(r.rejected) || r.rejected.length === 0 || r.rejected.length !== k) {
      throw new InputError(
        "rows",
        `row ${i + 1}, field "rejected": expected ${k || "≥ 1"} items (as row 1), got ${
          Array.isArray(r.rejected) ? r.rejected.length : typeof r.rejected
        }`,
      );
    }
    const obj: Record<string, string> = { prompt: r.prompt, chosen: r.chosen };
    r.rejected.forEach((s, j) => {
      checkString(i + 1, `rejected[${j}]`, s);
      obj[`rejected${j + 1}`] = s;
    });
    return JSON.stringify(obj) + "\n";
  }).join("");
}
