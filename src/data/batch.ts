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
import type { AttentionBlocks } from "../model.ts";

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
  /**
   * Packed batches laid out in blocks only (see {@link packGroups}): the same mask as
   * `attentionBias`, per block, so that attention computes only the scores a response can see.
   */
  blocks?: AttentionBlocks;
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
  b.blocks?.promptBias.dispose();
  b.blocks?.responseBias.dispose();
}

/** One prompt with several responses, scored together (see {@link packGroups}). */
export interface ResponseGroup {
  prompt: number[];
  responses: number[][];
}

/** Options of {@link packGroups}. */
export interface PackOptions extends PadOptions {
  /**
   * Lay rows out in blocks (every prompt left-padded to the longest, every response
   * right-padded to the longest) and give the model the per-block masks (`blocks`), so that
   * attention skips the scores no response can see. `"auto"` (default) does so when it computes
   * at most {@link BLOCK_SCORES_RATIO} of the scores of the unpadded layout and pads rows by at
   * most {@link BLOCK_PADDING_RATIO}; `false` keeps the unpadded layout.
   */
  blocks?: boolean | "auto";
}

/**
 * `blocks: "auto"` lays rows out in blocks when that computes at most this share of the scores:
 * where responses are about as long as the prompt (the bench's 64 + 4 × 64: 0.36). The kit's
 * own S-DPO and DMPO rows (a prompt of ~100 tokens, responses of 4–15) stay above it (0.5–0.9),
 * where blocks would save little, and keep the unpadded layout's numbers bit for bit.
 */
export const BLOCK_SCORES_RATIO = 0.45;
/** … and makes rows at most this much longer than the unpadded layout. */
export const BLOCK_PADDING_RATIO = 1.25;

/**
 * Pack each group into one row: the prompt once, then every response, each response attending
 * only to the prompt and to itself, with positions restarting after the prompt — so every
 * response gets exactly the log-probs it would get as its own sequence, while the prompt's
 * tokens are computed once. The `select` rows come out in group order, responses in order
 * (row `g·n + j` is response j of group g when every group has n responses).
 *
 * Two layouts, the same log-probs. Unpadded: prompt and responses end to end, rows right-padded.
 * In blocks (`opts.blocks`): a prompt block of P positions (the longest prompt; shorter ones
 * left-padded), then R response blocks of L positions (the most responses and the longest
 * response; shorter ones right-padded, missing ones all padding). The batch then carries
 * `blocks`, and the model computes P² + R·L·(P + L) scores per row and head instead of
 * (P + R·L)² (for a 64-token prompt and four 64-token responses, 37k instead of 102k).
 *
 * With `maxLength`, the prompt loses tokens from the left (keeping at least one) so that the
 * prompt plus its longest response fits.
 *
 * The batch's `labels` are all −100 (the first token of every response is predicted at the
 * same, shared position, which a [rows, T] label grid cannot hold): use `select` and
 * `responseLabels`, and pass `attentionBias`, `positions` and `blocks` to the model (as
 * `forwardBatch` in `train.ts` does).
 */
export function packGroups(groups: ResponseGroup[], opts: PackOptions = {}): PaddedBatch {
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
  const nResp = rows.reduce((a, g) => a + g.responses.length, 0);
  const tr = Math.max(...rows.flatMap((g) => g.responses.map((r) => r.length)));
  // The block layout: prompt block bp, nb response blocks of tr positions.
  const bp = Math.max(...rows.map((g) => g.prompt.length));
  const nb = Math.max(...rows.map((g) => g.responses.length));
  const tUnpadded = Math.max(...lens);
  const tBlocks = bp + nb * tr;
  const mode = opts.blocks ?? "auto";
  const useBlocks = mode === "auto"
    ? bp * bp + nb * tr * (bp + tr) <= BLOCK_SCORES_RATIO * tUnpadded * tUnpadded &&
      tBlocks <= BLOCK_PADDING_RATIO * tUnpadded
    : mode;
  const t = useBlocks ? tBlocks : tUnpadded;
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
    // Unpadded: the prompt at 0, responses end to end. Blocks: the prompt ends at bp, response
    // j starts at bp + j·tr.
    const lead = useBlocks ? bp - p : 0;
    const used = new Uint8Array(t);
    g.prompt.forEach((tok, i) => {
      const at = lead + i;
      ids[base + at] = tok;
      mask[base + at] = 1;
      positions[base + at] = i;
      used[at] = 1;
      for (let k = lead; k <= at; k++) allow(at, k);
    });
    let off = lead + p;
    for (const resp of g.responses) {
      resp.forEach((tok, q) => {
        const at = off + q;
        ids[base + at] = tok;
        mask[base + at] = 1;
        positions[base + at] = p + q;
        used[at] = 1;
        for (let k = lead; k < lead + p; k++) allow(at, k);
        for (let k = off; k <= at; k++) allow(at, k);
        // Token q is predicted at the previous position: the last prompt token for q = 0.
        selIndex[sel * tr + q] = base + (q === 0 ? lead + p - 1 : at - 1);
        selLabels[sel * tr + q] = tok;
        numTokens++;
      });
      off += useBlocks ? tr : resp.length;
      sel++;
    }
    for (let i = 0; i < t; i++) if (!used[i]) allow(i, i); // padding attends to itself only
  });
  let blocks: AttentionBlocks | undefined;
  if (useBlocks) {
    // The same mask, cut into blocks: prompt × prompt, and each response × (prompt, itself).
    const w = bp + tr;
    const pb = new Float32Array(rows.length * bp * bp);
    const rb = new Float32Array(rows.length * nb * tr * w);
    for (let r = 0; r < rows.length; r++) {
      for (let i = 0; i < bp; i++) {
        const src = (r * t + i) * t;
        pb.set(bias.subarray(src, src + bp), (r * bp + i) * bp);
      }
      for (let j = 0; j < nb; j++) {
        const off = bp + j * tr;
        for (let q = 0; q < tr; q++) {
          const src = (r * t + off + q) * t;
          const dst = ((r * nb + j) * tr + q) * w;
          rb.set(bias.subarray(src, src + bp), dst);
          rb.set(bias.subarray(src + off, src + off + tr), dst + bp);
        }
      }
    }
    blocks = {
      prompt: bp,
      responses: nb,
      length: tr,
      promptBias: tf.tensor4d(pb, [rows.length, 1, bp, bp]),
      responseBias: tf.tensor5d(rb, [rows.length, 1, nb, tr, w]),
    };
  }
  return {
    ids: tf.tensor2d(ids, [rows.length, t], "int32"),
    labels: tf.tensor2d(labels, [rows.length, t], "int32"),
    attentionMask: tf.tensor2d(mask, [rows.length, t], "int32"),
    numTokens,
    select: { index: tf.tensor1d(selIndex, "int32"), shape: [nResp, tr] },
    responseLabels: tf.tensor2d(selLabels, [nResp, tr], "int32"),
    attentionBias: tf.tensor4d(bias, [rows.length, 1, t, t]),
    positions: tf.tensor2d(positions, [rows.length, t], "int32"),
    blocks,
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
