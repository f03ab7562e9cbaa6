/**
 * Turn tokenized (prompt, response) pairs into the padded tensors a causal LM is trained on,
 * the way TRL's collators do: the sequence is prompt + response, the model reads
 * `seq[:-1]`, and the labels are `seq[1:]` with every prompt and padding position set to
 * -100, so only response tokens (EOS included, when the caller appends it) are scored.
 *
 * For preference training all responses of an example are stacked in one batch,
 * `[chosen_0, rejected_0_1..K, chosen_1, …]` (row `b·(1+K) + j`), so one forward pass
 * scores the chosen and every rejected response (TRL's concatenated forward).
 *
 * @module
 */
import { tf } from "../backend.ts";
import { InputError } from "../errors.ts";
import { IGNORE_INDEX } from "../losses.ts";

/** One tokenized prompt with one response. Token ids; add EOS to `response` yourself. */
export interface SequencePair {
  prompt: number[];
  response: number[];
}

/** Padded model inputs: ids [R, T], labels [R, T], attention mask [R, T] (1 real, 0 pad). */
export interface PaddedBatch {
  ids: tf.Tensor2D;
  labels: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  /** Number of scored (response) tokens over the batch. */
  numTokens: number;
  /**
   * The scored positions only, for `model.forward(ids, { select })`: `index` (int32, into the
   * flattened R·T positions) of each row's response positions, right-padded to Tr = the
   * longest response; `labels` [R, Tr] are their targets (−100 on the padding).
   */
  select: { index: tf.Tensor1D; shape: [number, number] };
  /** Labels [R, Tr] matching `select`. */
  responseLabels: tf.Tensor2D;
  /** Packed batches only: additive attention bias [rows, 1, T, T] (0 allowed, −1e9 masked). */
  attentionBias?: tf.Tensor4D;
  /** Packed batches only: position ids [rows, T] (int32). */
  positions?: tf.Tensor2D;
}

/** Options of {@link padPairs}. */
export interface PadOptions {
  /** Pad id (default 0). */
  padId?: number;
  /**
   * Longest sequence (prompt + response) kept; longer ones lose prompt tokens from the left
   * first, then response tokens from the right (at least one response token is kept).
   */
  maxLength?: number;
}

/** Truncate one pair to maxLength tokens: prompt from the left, then response from the right. */
export function truncatePair(pair: SequencePair, maxLength: number): SequencePair {
  const total = pair.prompt.length + pair.response.length;
  if (total <= maxLength) return pair;
  let { prompt, response } = pair;
  const over = total - maxLength;
  const fromPrompt = Math.min(over, Math.max(prompt.length - 1, 0));
  prompt = prompt.slice(fromPrompt);
  const rest = prompt.length + response.length - maxLength;
  if (rest > 0) response = response.slice(0, Math.max(response.length - rest, 1));
  return { prompt, response };
}

/**
 * Right-padded ids/labels/mask for causal-LM scoring of each pair's response.
 * Throws InputError naming the pair index on an empty response.
 */
export function padPairs(pairs: SequencePair[], opts: PadOptions = {}): PaddedBatch {
  if (pairs.length === 0) {
    throw new InputError("pairs", "expected at least one (prompt, response) pair");
  }
  const padId = opts.padId ?? 0;
  const rows = pairs.map((p, i) => {
    if (p.response.length === 0) throw new InputError("pairs", `pair ${i} has an empty response`);
    if (p.prompt.length === 0) {
      throw new InputError("pairs", `pair ${i} has an empty prompt (add BOS)`);
    }
    return opts.maxLength ? truncatePair(p, opts.maxLength) : p;
  });
  const t = Math.max(...rows.map((p) => p.prompt.length + p.response.length)) - 1;
  const ids = new Int32Array(rows.length * t).fill(padId);
  const labels = new Int32Array(rows.length * t).fill(IGNORE_INDEX);
  const mask = new Int32Array(rows.length * t);
  const tr = Math.max(...rows.map((p) => p.response.length));
  const selIndex = new Int32Array(rows.length * tr);
  const selLabels = new Int32Array(rows.length * tr).fill(IGNORE_INDEX);
  let numTokens = 0;
  rows.forEach((p, r) => {
    const seq = [...p.prompt, ...p.response];
    for (let j = 0; j < seq.length - 1; j++) {
      ids[r * t + j] = seq[j];
      mask[r * t + j] = 1;
      if (j + 1 >= p.prompt.length) {
        labels[r * t + j] = seq[j + 1];
        const q = j + 1 - p.prompt.length; // response token q
        selIndex[r * tr + q] = r * t + j;
        selLabels[r * tr + q] = seq[j + 1];
        numTokens++;
      }
    }
  });
  return {
    ids: tf.tensor2d(ids, [rows.length, t], "int32"),
    labels: tf.tensor2d(labels, [rows.length, t], "int32"),
    attentionMask: tf.tensor2d(mask, [rows.length, t], "int32"),
    numTokens,
    select: { index: tf.tensor1d(selIndex, "int32"), shape: [rows.length, tr] },
    responseLabels: tf.tensor2d(selLabels, [rows.length, tr], "int32"),
  };
}

/** Free the tensors of a batch. */
export function disposeBatch(b: PaddedBatch): void {
  b.ids.dispose();
  b.labels.dispose();
  b.attentionMask.dispose();
  b.select.index.dispose();
  b.responseLabels.dispose();
  b.attentionBias?.dispose();
  b.positions?.dispose();
}

/** One prompt with several responses, scored together (see {@link packGroups}). */
export interface ResponseGroup {
  prompt: number[];
  responses: number[][];
}

/**
 * Pack each group into one row: the prompt once, then every response, each response attending
 * only to the prompt and to itself, with positions restarting after the prompt — so every
 * response gets exactly the log-probs it would get as its own sequence, while the prompt's
 * tokens are computed once. The `select` rows come out in group order, responses in order
 * (row `g·n + j` is response j of group g when every group has n responses).
 *
 * With `maxLength`, the prompt loses tokens from the left (keeping at least one) so that the
 * prompt plus its longest response fits.
 *
 * The batch's `labels` are all −100 (the first token of every response is predicted at the
 * same, shared position, which a [rows, T] label grid cannot hold): use `select` and
 * `responseLabels`, and pass `attentionBias` and `positions` to the model.
 */
export function packGroups(groups: ResponseGroup[], opts: PadOptions = {}): PaddedBatch {
  if (groups.length === 0) throw new InputError("groups", "expected at least one group");
  const padId = opts.padId ?? 0;
  const rows = groups.map((g, i) => {
    if (g.prompt.length === 0) {
      throw new InputError("groups", `group ${i} has an empty prompt (add BOS)`);
    }
    if (g.responses.length === 0) throw new InputError("groups", `group ${i} has no responses`);
    g.responses.forEach((r, j) => {
      if (r.length === 0) throw new InputError("groups", `group ${i} response ${j} is empty`);
    });
    if (!opts.maxLength) return g;
    const longest = Math.max(...g.responses.map((r) => r.length));
    const cut = Math.max(
      0,
      Math.min(g.prompt.length - 1, g.prompt.length + longest - opts.maxLength),
    );
    return { prompt: g.prompt.slice(cut), responses: g.responses };
  });
  const lens = rows.map((g) => g.prompt.length + g.responses.reduce((a, r) => a + r.length, 0));
  const t = Math.max(...lens);
  const nResp = rows.reduce((a, g) => a + g.responses.length, 0);
  const tr = Math.max(...rows.flatMap((g) => g.responses.map((r) => r.length)));
  const ids = new Int32Array(rows.length * t).fill(padId);
  const labels = new Int32Array(rows.length * t).fill(IGNORE_INDEX);
  const mask = new Int32Array(rows.length * t);
  const positions = new Int32Array(rows.length * t);
  const bias = new Float32Array(rows.length * t * t).fill(-1e9);
  const selIndex = new Int32Array(nResp * tr);
  const selLabels = new Int32Array(nResp * tr).fill(IGNORE_INDEX);
  let numTokens = 0;
  let sel = 0;
  rows.forEach((g, r) => {
    const p = g.prompt.length;
    const base = r * t;
    const allow = (q: number, k: number) => (bias[(r * t + q) * t + k] = 0);
    g.prompt.forEach((tok, i) => {
      ids[base + i] = tok;
      mask[base + i] = 1;
      positions[base + i] = i;
      for (let k = 0; k <= i; k++) allow(i, k);
    });
    let off = p;
    for (const resp of g.responses) {
      resp.forEach((tok, q) => {
        const at = off + q;
        ids[base + at] = tok;
        mask[base + at] = 1;
        positions[base + at] = p + q;
        for (let k = 0; k < p; k++) allow(at, k);
        for (let k = off; k <= at; k++) allow(at, k);
        // Token q is predicted at the previous position: the last prompt token for q = 0.
        selIndex[sel * tr + q] = base + (q === 0 ? p - 1 : at - 1);
        selLabels[sel * tr + q] = tok;
        numTokens++;
      });
      off += resp.length;
      sel++;
    }
    for (let i = lens[r]; i < t; i++) allow(i, i); // padding attends to itself only
  });
  return {
    ids: tf.tensor2d(ids, [rows.length, t], "int32"),
    labels: tf.tensor2d(labels, [rows.length, t], "int32"),
    attentionMask: tf.tensor2d(mask, [rows.length, t], "int32"),
    numTokens,
    select: { index: tf.tensor1d(selIndex, "int32"), shape: [nResp, tr] },
    responseLabels: tf.tensor2d(selLabels, [nResp, tr], "int32"),
    attentionBias: tf.tensor4d(bias, [rows.length, 1, t, t]),
    positions: tf.tensor2d(positions, [rows.length, t], "int32"),
  };
}

/** A preference example: one prompt, its chosen response and K rejected ones (token ids). */
export interface PreferenceExample {
  prompt: number[];
  chosen: number[];
  rejected: number[][];
}

/**
 * Stack examples as rows `[chosen, rejected_1..K]` per example (all examples need the same K).
 * Row `b·(1+K) + j` is response j of example b (j = 0 chosen).
 */
export function stackPreference(
  examples: PreferenceExample[],
): { pairs: SequencePair[]; k: number } {
  if (examples.length === 0) throw new InputError("examples", "expected at least one example");
  const k = examples[0].rejected.length;
  const pairs: SequencePair[] = [];
  examples.forEach((ex, i) => {
    if (ex.rejected.length !== k) {
      throw new InputError(
        "examples",
        `example ${i} has ${ex.rejected.length} rejected responses, expected ${k}`,
      );
    }
    pairs.push({ prompt: ex.prompt, response: ex.chosen });
    for (const r of ex.rejected) pairs.push({ prompt: ex.prompt, response: r });
  });
  return { pairs, k };
}
