/**
 * What the synthetic world's known law says about a test row: the true posterior of "which
 * candidate is the next item" given what the row shows, and the *expected* hit of a model's
 * choice under it. A sampled hit is 0 or 1; its expectation given the user and the
 * candidates is the same quantity with far less variance, so claims on it need far fewer
 * test prompts to decide (src/report/findings.ts, metric `rank_expected`).
 *
 * - S-DPO rows ({@link sdpoCandidatePosterior}): the target is drawn from
 *   `p(i|u) ∝ taste_u[g(i)] · pop(i)` (src/data/world.ts, `trueScores`) and the 19 negatives
 *   uniformly from the rest of the domain outside the history, then shuffled. Every
 *   candidate set containing `i` has the same probability `1 / C(N − |h| − 1, 19)` of being
 *   drawn around it, so `P(target = i | candidates, u) = p(i|u) / Σ_{c ∈ candidates} p(c|u)`.
 * - DMPO pairs ({@link dmpoPairPosterior}, {@link dmpoHistoryPairPosterior}): derivations in
 *   their doc comments; there the negatives are drawn by popularity, which cancels.
 *
 * @module
 */
import { InputError } from "../errors.ts";
import { Rng } from "../rng.ts";
import { type ScoringContext, trueScores, type World } from "../data/world.ts";

/**
 * Expected hit@1 of a scorer's top-1, per row: `Σ_{j ∈ top} posterior[j] / |top|`, where
 * `top` are the candidates tied at the row's highest score (ties broken uniformly at random,
 * as {@link hitsAtK} breaks them).
 *
 * @example Usage
 * ```ts
 * import { expectedHitsAtOne } from "./truth.ts";
 * const e = expectedHitsAtOne([[0.1, 0.9, 0.5], [1, 1, 0]], [[0.2, 0.5, 0.3], [0.2, 0.4, 0.4]]);
 * console.assert(e[0] === 0.5 && Math.abs(e[1] - 0.3) < 1e-12);
 * ```
 * @param scores Model scores, one row per test prompt (higher = preferred).
 * @param posterior True probability that each candidate is the next item (rows sum to 1).
 * @returns One expected hit in [0, 1] per row.
 */
export function expectedHitsAtOne(
  scores: readonly (readonly number[])[],
  posterior: readonly (readonly number[])[],
): number[] {
  if (scores.length !== posterior.length) {
    throw new InputError(
      "posterior",
      `expected one row per scored row (${scores.length}), got ${posterior.length}`,
    );
  }
  return scores.map((row, i) => {
    const p = posterior[i];
    if (p.length !== row.length) {
      throw new InputError(
        "posterior",
        `row ${i + 1}: ${p.length} values for ${row.length} scores`,
      );
    }
    let best = -Infinity;
    for (const s of row) {
      if (Number.isNaN(s)) throw new InputError("scores", `row ${i + 1}: NaN`);
      if (s > best) best = s;
    }
    let sum = 0, ties = 0;
    row.forEach((s, j) => {
      if (s === best) {
        sum += p[j];
        ties++;
      }
    });
    return sum / ties;
  });
}

/** What a candidate posterior needs of an S-DPO test row. */
export interface CandidateRow extends ScoringContext {
  /** The candidates' item ids, in row order. */
  candidateIds: readonly number[];
}

/**
 * The true posterior of an S-DPO row with uniformly drawn negatives:
 * `P(target = c | candidates, u) = p(c|u) / Σ_{c'} p(c'|u)` (module doc for why).
 *
 * @param world The world.
 * @param row User, domain, history and candidate ids.
 * @returns One probability per candidate, summing to 1.
 */
export function sdpoCandidatePosterior(world: World, row: CandidateRow): number[] {
  const p = trueScores(world, row.user, { domain: row.domain, history: row.historyIds });
  const q = row.candidateIds.map((id) => p[id]);
  const s = q.reduce((a, b) => a + b, 0);
  if (!(s > 0)) throw new InputError("candidateIds", "no candidate has positive probability");
  return q.map((x) => x / s);
}

/**
 * Expected hit@1 per S-DPO test row of a scorer (`scores[i]` over row i's candidates), under
 * {@link sdpoCandidatePosterior}.
 */
export function sdpoExpectedHits(
  world: World,
  rows: readonly CandidateRow[],
  scores: readonly (readonly number[])[],
): number[] {
  return expectedHitsAtOne(scores, rows.map((r) => sdpoCandidatePosterior(world, r)));
}

/** Popularity mass of the domain's items outside the history, and the history set. */
function poolMass(world: World, ctx: ScoringContext): number {
  const hist = new Set(ctx.historyIds);
  let m = 0;
  for (const id of world.domainItems[ctx.domain]) {
    if (!hist.has(id)) m += world.items[id].popularity;
  }
  return m;
}

/**
 * The true posterior that `x` (not `y`) is the liked item of a DMPO pair `{x, y}`, given the
 * user's taste: the pair-generating process of src/data/world.ts (`dmpoSamples`) draws the
 * liked item `i ~ p(i|u) = τ_g(i) pop(i) / Z` (outside the history h) and the named negative
 * — the first of the popularity-weighted draws without replacement from the rest, whatever
 * K is — with probability `pop(j) / (M − pop(i))`, `M` = popularity mass outside h; the order
 * in the prompt is a fair coin. So
 *
 *   P(liked = x, neg = y) = τ_g(x) pop(x) / Z · pop(y) / (M − pop(x))
 *
 * and `pop(x) pop(y) / Z` is common to both orders:
 *
 *   P(x | {x, y}) = a(x) / (a(x) + a(y)),  a(i) = τ_g(i) / (M − pop(i)).
 *
 * Popularity cancels except through `M − pop(i)` (a liked popular item leaves less mass for
 * the negative); ranking the pair by `τ · pop` instead (the old oracle) prefers the more
 * popular item, which is the negative more often than not. `uniform` negatives
 * (probability `1 / (|pool|)`, the same for both) give `τ_g(x) pop(x)` against `τ_g(y) pop(y)`.
 *
 * @param world The world.
 * @param ctx User, domain, history.
 * @param x One item of the pair.
 * @param y The other.
 * @param sampler How the named negative was drawn (default "popularity", as DMPO's data).
 * @returns P(x is the liked item | the pair, the user).
 */
export function dmpoPairPosterior(
  world: World,
  ctx: ScoringContext,
  x: number,
  y: number,
  sampler: "popularity" | "uniform" = "popularity",
): number {
  const taste = world.users[ctx.user].taste[ctx.domain];
  const w = (i: number) => taste[world.items[i].genre];
  return pairFromWeights(world, ctx, w, x, y, sampler);
}

function pairFromWeights(
  world: World,
  ctx: ScoringContext,
  genreWeight: (i: number) => number,
  x: number,
  y: number,
  sampler: "popularity" | "uniform",
): number {
  const pop = (i: number) => world.items[i].popularity;
  let ax: number, ay: number;
  if (sampler === "popularity") {
    const m = poolMass(world, ctx);
    ax = genreWeight(x) / (m - pop(x));
    ay = genreWeight(y) / (m - pop(y));
  } else {
    ax = genreWeight(x) * pop(x);
    ay = genreWeight(y) * pop(y);
  }
  return ax / (ax + ay);
}

/** Log of a Gamma(a, 1) draw (Marsaglia–Tsang; a < 1 via the u^(1/a) boost). */
function logGammaDraw(rng: Rng, a: number): number {
  if (a < 1) {
    let u = 0;
    while (u === 0) u = rng.next();
    return logGammaDraw(rng, a + 1) + Math.log(u) / a;
  }
  const d = a - 1 / 3, c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const z = rng.normal();
    let v = 1 + c * z;
    if (v <= 0) continue;
    v = v * v * v;
    const u = rng.next();
    if (u < 1 - 0.0331 * z ** 4) return Math.log(d * v); // squeeze: skips the logs below
    if (Math.log(u) < 0.5 * z * z + d * (1 - v + Math.log(v))) return Math.log(d * v);
  }
}

/** Gamma(α) log-draws shared by every history (key: α, genres, draws, seed). */
const priorPool = new Map<string, number[][]>();

/**
 * `draws` Dirichlet(α + c) draws, from independent log-Gamma(α + c_g) per genre. A genre the
 * history never shows (c_g = 0) takes its Gamma(α) draw from a pool shared by all histories
 * (most genres of a peaked taste, and the costly draws, α < 1); the others are drawn afresh
 * from `Rng(seed)`. Each history's draws are still independent Dirichlet(α + c) draws;
 * seeded, so deterministic.
 */
function proposalDraws(a: number, counts: number[], draws: number, seed: number): number[][] {
  const G = counts.length;
  const key = `${a}|${G}|${draws}|${seed}`;
  let pool = priorPool.get(key);
  if (!pool) {
    const prng = new Rng(seed + 7919);
    pool = Array.from({ length: draws }, () => counts.map(() => logGammaDraw(prng, a)));
    if (priorPool.size >= 8) priorPool.clear();
    priorPool.set(key, pool);
  }
  const rng = new Rng(seed);
  const out: number[][] = [];
  for (let s = 0; s < draws; s++) {
    const lg = counts.map((k, g) => (k === 0 ? pool![s][g] : logGammaDraw(rng, a + k)));
    const mx = Math.max(...lg);
    const e = lg.map((x) => Math.exp(x - mx));
    const tot = e.reduce((p, q) => p + q, 0);
    out.push(e.map((x) => x / tot));
  }
  return out;
}

/** Options of {@link historyGenreWeights}. */
export interface HistoryPosteriorOptions {
  /**
   * Importance draws (default 2048; on the default world's 400 DMPO test pairs, 4096 draws
   * against 16384 change 4 of 400 pair decisions and the paired AUC not at
   * three decimals; 2048 draws, about 5 s there, move it by about ±0.005).
   */
  draws?: number;
  /** Seed of the draws (default 0: the weights are a deterministic function of the history). */
  seed?: number;
}

/**
 * `E[τ_g / Z(τ) | h]` for every genre g, the user's taste τ unknown: what the history h
 * says about the next item, `p(i | h) = E[τ_g(i) / Z(τ) | h] · pop(i)`, where
 * `Z(τ) = Σ_{i ∉ h} τ_g(i) pop(i)`. The taste prior is the world's: θ ~ Dirichlet(α),
 * τ = (1 − ε)θ + ε/G (ε = uniformMix), and h was drawn item by item without replacement, each
 * step with probability `τ_g(h_t) pop(h_t) / Z_t(τ)` (Z_t: mass outside h_<t; with a
 * short-term weight w > 0 the genre weight is `(1 − w)τ_g + w·1{g = g(h_{t−1})}`). The
 * posterior has no closed form (Z_t depends on τ), so it is estimated by self-normalised
 * importance sampling with proposal Dirichlet(α + c) (c: the history's genre counts), whose
 * weight is the exact likelihood over `Π_g θ_g^{c_g}`. Seeded, so the result is a
 * deterministic function of the history; its Monte Carlo error is largest for genres absent
 * from the history (θ_g ~ Beta(α, ·) with α = 0.15 is heavy-tailed), where two such genres
 * are nearly tied anyway.
 *
 * @returns One value per genre.
 */
export function historyGenreWeights(
  world: World,
  ctx: ScoringContext,
  options: HistoryPosteriorOptions = {},
): number[] {
  const draws = options.draws ?? 2048;
  const c = world.config, G = c.numGenres, a = c.tasteConcentration, eps = c.uniformMix;
  const w = c.shortTermWeight;
  const gi = world.genreItems[ctx.domain];
  const genreOf = (id: number) => world.items[id].genre;
  const counts = new Array<number>(G).fill(0);
  for (const id of ctx.historyIds) counts[genreOf(id)]++;
  // Popularity mass per genre before each history step (masses[t][g]) and after all.
  const seen = new Set<number>();
  const massNow = () =>
    gi.map((ids) => ids.reduce((s, id) => s + (seen.has(id) ? 0 : world.items[id].popularity), 0));
  const masses: number[][] = [];
  for (const id of ctx.historyIds) {
    masses.push(massNow());
    seen.add(id);
  }
  const finalMass = massNow();
  const thetas = proposalDraws(a, counts, draws, options.seed ?? 0);
  const logW: number[] = [];
  const vals: number[][] = [];
  const weightsOf = (tau: number[], last: number | undefined) =>
    w === 0 || last === undefined ? tau : tau.map((t, g) => (1 - w) * t + (g === last ? w : 0));
  for (const theta of thetas) {
    const tau = theta.map((t) => (1 - eps) * t + eps / G);
    let lw = 0;
    ctx.historyIds.forEach((id, t) => {
      const wt = weightsOf(tau, t > 0 ? genreOf(ctx.historyIds[t - 1]) : undefined);
      let z = 0;
      for (let g = 0; g < G; g++) z += wt[g] * masses[t][g];
      lw += Math.log(wt[genreOf(id)]) - Math.log(z);
    });
    for (let g = 0; g < G; g++) if (counts[g] > 0) lw -= counts[g] * Math.log(theta[g]);
    const last = ctx.historyIds.length ? genreOf(ctx.historyIds[ctx.historyIds.length - 1]) : -1;
    const wt = weightsOf(tau, last >= 0 ? last : undefined);
    let z = 0;
    for (let g = 0; g < G; g++) z += wt[g] * finalMass[g];
    logW.push(lw);
    vals.push(wt.map((x) => x / z));
  }
  const mw = Math.max(...logW);
  const ws = logW.map((x) => Math.exp(x - mw));
  const sw = ws.reduce((p, q) => p + q, 0);
  return Array.from({ length: G }, (_, g) => vals.reduce((s, v, k) => s + v[g] * ws[k], 0) / sw);
}

/**
 * The posterior of a DMPO pair given the history only (taste unknown): as
 * {@link dmpoPairPosterior} with `τ_g(i)` replaced by `E[τ_g(i) / Z(τ) | h]`
 * ({@link historyGenreWeights}) — `P(liked = x, neg = y | h) = E[τ_g(x)/Z | h] pop(x) ·
 * pop(y) / (M − pop(x))`, and `pop(x) pop(y)` cancels again.
 */
export function dmpoHistoryPairPosterior(
  world: World,
  ctx: ScoringContext,
  x: number,
  y: number,
  sampler: "popularity" | "uniform" = "popularity",
  genreWeights: readonly number[] = historyGenreWeights(world, ctx),
): number {
  return pairFromWeights(world, ctx, (i) => genreWeights[world.items[i].genre], x, y, sampler);
}
