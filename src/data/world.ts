/**
 * A seeded synthetic recommendation world with known ground truth, the test bed every
 * experiment in recalign runs on (built on the world of the feasibility study that preceded
 * the kit).
 *
 * - **Items** live in `numDomains` domains ("movie", "game", …), each with `numItems` items
 *   split evenly over `numGenres` genres. Genre g of every domain is the "same" genre slot, so
 *   a user's taste carries over from one domain to another.
 * - **Titles** have 2–3 words drawn from the genre's own words (`ghost3`, `ghost7`); with
 *   probability `titleNoise` one word is replaced by a shared word (`the`, `night`, …). Titles
 *   are unique and no title is a substring of another (checked at construction, on characters,
 *   which also rules out contiguous word sub-sequences), so "a candidate title occurs in the
 *   generated text" is unambiguous.
 * - **Popularity** is log-normal: `exp(popularitySigma · z)`.
 * - **Users** have a genre taste drawn from Dirichlet(`tasteConcentration`), mixed with the
 *   uniform distribution (weight `uniformMix`). The true item probability is
 *   `p(i|u) ∝ taste_u[genre(i)] · pop(i)`.
 * - **Histories** (one per user and domain) are drawn sequentially without replacement: each
 *   next item from `p_t(i) ∝ [(1 − w)·taste_u[g(i)] + w·1{g(i) = g(last)}] · pop(i)` with
 *   `w = shortTermWeight` (the first item uses w = 0). {@link trueScores} gives the same law for
 *   the item after the history: the target of every sample is drawn from it.
 *
 * Generators build the artefacts experiments need: S-DPO candidate-list samples
 * ({@link sdpoSamples}), DMPO pairwise samples ({@link dmpoSamples}), few-shot subsets
 * ({@link fewShot}), cross-domain sets ({@link crossDomainSdpo}, {@link crossDomainDmpo}) and
 * reference scorers ({@link oracleScores}, {@link popularityScores},
 * {@link historyBayesScores}). Every random draw goes through {@link Rng}.
 *
 * @module
 */
import { ConfigError, InputError } from "../errors.ts";
import { Rng } from "../rng.ts";

// ---------------------------------------------------------------------------------------
// Configuration

/** Knobs of the synthetic world. Defaults ({@link DEFAULT_WORLD_CONFIG}) give domain 0 the
 * feasibility study's world. */
export interface WorldConfig {
  /** Number of domains (1–4): 0 "movie", 1 "game", 2 "book", 3 "song". */
  numDomains: number;
  /** Items in each domain (so the world has `numDomains · numItems` items). */
  numItems: number;
  /** Genres per domain; items are split evenly (contiguous blocks) over them. */
  numGenres: number;
  /** Distinct words per genre (`ghost0` … `ghost11`) titles are built from. */
  wordsPerGenre: number;
  /** Shared noise words (`the`, `night`, …) any title may contain; at most 16. */
  numSharedWords: number;
  /** Probability that a title has one of its words replaced by a shared word. */
  titleNoise: number;
  /** Sigma of the log-normal popularity: `pop = exp(sigma · z)`. */
  popularitySigma: number;
  /** Number of users (all users have a history in every domain). */
  numUsers: number;
  /** Inclusive [min, max] history length; each history's length is uniform in it. */
  historyLen: [number, number];
  /** Dirichlet concentration α of user genre tastes (small = peaked tastes). */
  tasteConcentration: number;
  /** Weight of the uniform distribution mixed into every taste (0.03 = 97/3). */
  uniformMix: number;
  /** Short-term effect w: weight of "same genre as the last item" in the next-item law. */
  shortTermWeight: number;
  /** How much a user's taste in domains d > 0 equals their domain-0 taste (1 = identical,
   * 0 = independent draw). */
  crossDomainShare: number;
  /** Fractions of users in [train, valid, test]; users are assigned in id order. */
  splitFractions: [number, number, number];
  /** Seed of everything in the world. */
  seed: number;
}

/** Default world: 2 domains × 400 items in 8 genres, 2,000 users (1,400 / 200 / 400). */
export const DEFAULT_WORLD_CONFIG: Readonly<WorldConfig> = Object.freeze({
  numDomains: 2,
  numItems: 400,
  numGenres: 8,
  wordsPerGenre: 12,
  numSharedWords: 10,
  titleNoise: 0.35,
  popularitySigma: 1,
  numUsers: 2000,
  historyLen: [5, 10] as [number, number],
  tasteConcentration: 0.15,
  uniformMix: 0.03,
  shortTermWeight: 0,
  crossDomainShare: 1,
  splitFractions: [0.7, 0.1, 0.2] as [number, number, number],
  seed: 0,
});

// ---------------------------------------------------------------------------------------
// Types

/** Wording of one domain, used by the prompt templates. */
export interface DomainInfo {
  /** Singular noun: "movie". */
  noun: string;
  /** Plural noun: "movies". */
  plural: string;
  /** Past participle of the consumption verb: "watched". */
  past: string;
  /** Base form: "watch". */
  base: string;
  /** Gerund: "watching". */
  gerund: string;
}

/** The domains a world can have, in order. */
export const DOMAINS: readonly DomainInfo[] = Object.freeze([
  { noun: "movie", plural: "movies", past: "watched", base: "watch", gerund: "watching" },
  { noun: "game", plural: "games", past: "played", base: "play", gerund: "playing" },
  { noun: "book", plural: "books", past: "read", base: "read", gerund: "reading" },
  {
    noun: "song",
    plural: "songs",
    past: "listened to",
    base: "listen to",
    gerund: "listening to",
  },
]);

/** One item of the world. */
export interface Item {
  /** Global id: index into `world.items`. */
  id: number;
  /** Domain index. */
  domain: number;
  /** Genre index within the domain (genre slot, shared across domains). */
  genre: number;
  /** Title: its words joined by single spaces. */
  title: string;
  /** Words of the title. */
  words: string[];
  /** Positive popularity weight (log-normal). */
  popularity: number;
}

/** One user of the world. */
export interface User {
  /** Index into `world.users`. */
  id: number;
  /** Genre taste per domain: `taste[d][g]`, each row sums to 1. */
  taste: number[][];
  /** History per domain: item ids in consumption order (oldest first). */
  histories: number[][];
}

/** A user split. */
export type Split = "train" | "valid" | "test";

/** The generated world; plain JSON-able data. */
export interface World {
  /** The full config the world was built from. */
  config: WorldConfig;
  /** Wording of each domain. */
  domains: DomainInfo[];
  /** Genre words: `genreWords[d][g]` lists the words of genre g in domain d. */
  genreWords: string[][][];
  /** Shared noise words. */
  sharedWords: string[];
  /** All items; `items[id].id === id`. */
  items: Item[];
  /** Item ids of each domain (contiguous ranges). */
  domainItems: number[][];
  /** Item ids of each genre: `genreItems[d][g]`. */
  genreItems: number[][][];
  /** Title → item id. */
  titleToId: Record<string, number>;
  /** All users; `users[id].id === id`. */
  users: User[];
  /** User ids of each split. */
  splits: Record<Split, number[]>;
}

// ---------------------------------------------------------------------------------------
// Construction

const GENRE_STEMS = [
  // movie
  "ghost",
  "laser",
  "cowboy",
  "heist",
  "robot",
  "pirate",
  "dragon",
  "alien",
  // game
  "puzzle",
  "racer",
  "sniper",
  "farm",
  "castle",
  "zombie",
  "rocket",
  "wizard",
  // book
  "poem",
  "saga",
  "spy",
  "memoir",
  "fable",
  "crime",
  "voyage",
  "empire",
  // song
  "jazz",
  "punk",
  "disco",
  "opera",
  "banjo",
  "techno",
  "gospel",
  "reggae",
];

const SHARED_WORDS = [
  "the",
  "night",
  "last",
  "return",
  "dark",
  "city",
  "lost",
  "secret",
  "blue",
  "final",
  "golden",
  "silent",
  "wild",
  "broken",
  "empty",
  "frozen",
];

function checkConfig(c: WorldConfig): void {
  const posInt = (field: keyof WorldConfig, v: number, min = 1) => {
    if (!Number.isInteger(v) || v < min) {
      throw new ConfigError(field, `expected an integer >= ${min}, got ${v}`);
    }
  };
  const prob = (field: keyof WorldConfig, v: number) => {
    if (typeof v !== "number" || !(v >= 0 && v <= 1)) {
      throw new ConfigError(field, `expected a value in [0, 1], got ${JSON.stringify(v)}`);
    }
  };
  // Sizes beyond these would take hours or exhaust memory rather than fail.
  const atMost = (field: keyof WorldConfig, v: number, max: number) => {
    if (v > max) throw new ConfigError(field, `at most ${max}, got ${v}`);
  };
  posInt("numDomains", c.numDomains);
  if (c.numDomains > DOMAINS.length) {
    throw new ConfigError("numDomains", `at most ${DOMAINS.length} domains, got ${c.numDomains}`);
  }
  posInt("numGenres", c.numGenres);
  posInt("numItems", c.numItems, c.numGenres);
  atMost("numItems", c.numItems, 1_000_000);
  posInt("wordsPerGenre", c.wordsPerGenre, 2);
  atMost("wordsPerGenre", c.wordsPerGenre, 10_000);
  posInt("numSharedWords", c.numSharedWords, 0);
  if (c.numSharedWords > SHARED_WORDS.length) {
    throw new ConfigError(
      "numSharedWords",
      `at most ${SHARED_WORDS.length}, got ${c.numSharedWords}`,
    );
  }
  prob("titleNoise", c.titleNoise);
  if (typeof c.popularitySigma !== "number" || !(c.popularitySigma >= 0)) {
    throw new ConfigError("popularitySigma", `expected >= 0, got ${c.popularitySigma}`);
  }
  atMost("popularitySigma", c.popularitySigma, 100); // exp(σ·z) overflows beyond
  posInt("numUsers", c.numUsers);
  atMost("numUsers", c.numUsers, 1_000_000);
  if (!Array.isArray(c.historyLen) || c.historyLen.length !== 2) {
    throw new ConfigError(
      "historyLen",
      `expected [min, max], got ${JSON.stringify(c.historyLen)}`,
    );
  }
  const [lo, hi] = c.historyLen;
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi < lo) {
    throw new ConfigError("historyLen", `expected integers 0 <= min <= max, got [${lo}, ${hi}]`);
  }
  if (hi >= c.numItems) {
    throw new ConfigError("historyLen", `max ${hi} must be below numItems ${c.numItems}`);
  }
  if (
    typeof c.tasteConcentration !== "number" ||
    !(c.tasteConcentration >= 1e-6 && c.tasteConcentration < Infinity)
  ) {
    // Below 1e-6 the Dirichlet draw underflows to 0/0 (NaN tastes).
    throw new ConfigError(
      "tasteConcentration",
      `expected a finite value >= 1e-6, got ${c.tasteConcentration}`,
    );
  }
  prob("uniformMix", c.uniformMix);
  prob("shortTermWeight", c.shortTermWeight);
  prob("crossDomainShare", c.crossDomainShare);
  const f = c.splitFractions;
  if (
    !Array.isArray(f) || f.length !== 3 || f.some((x) => typeof x !== "number" || !(x >= 0)) ||
    !(Math.abs(f[0] + f[1] + f[2] - 1) <= 1e-9)
  ) {
    throw new ConfigError(
      "splitFractions",
      `expected 3 non-negative fractions summing to 1, got ${JSON.stringify(f)}`,
    );
  }
  if (typeof c.seed !== "number" || !Number.isFinite(c.seed)) {
    throw new ConfigError("seed", `expected a number, got ${c.seed}`);
  }
}

/** log of a Gamma(a, 1) draw (Marsaglia–Tsang; a < 1 via the u^(1/a) boost, in log space). */
function logGamma(rng: Rng, a: number): number {
  if (a < 1) {
    let u = 0;
    while (u === 0) u = rng.next();
    return logGamma(rng, a + 1) + Math.log(u) / a;
  }
  const d = a - 1 / 3, c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = rng.normal();
    let v = 1 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    const u = rng.next();
    if (u < 1 - 0.0331 * x ** 4) return Math.log(d * v);
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return Math.log(d * v);
  }
}

/** A Dirichlet(alpha, …, alpha) draw of dimension n. */
function dirichlet(rng: Rng, alpha: number, n: number): number[] {
  const lg = Array.from({ length: n }, () => logGamma(rng, alpha));
  const m = Math.max(...lg);
  const e = lg.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

function makeTitles(c: WorldConfig, rng: Rng, genreWords: string[][][], shared: string[]) {
  const titles: string[] = [];
  const words: string[][] = [];
  const maxTries = 10000;
  for (let d = 0; d < c.numDomains; d++) {
    for (let j = 0; j < c.numItems; j++) {
      const g = genreOfIndex(j, c);
      const gw = genreWords[d][g];
      let tries = 0;
      for (;;) {
        if (++tries > maxTries) {
          throw new ConfigError(
            "numItems",
            `could not make ${c.numItems} distinct titles per domain from ${c.wordsPerGenre} words ` +
              `per genre (domain ${d}, genre ${g}); raise wordsPerGenre or lower numItems`,
          );
        }
        const len = 2 + rng.int(2);
        const ws = rng.sample(gw, Math.min(len, gw.length));
        if (ws.length < 2) continue;
        if (shared.length > 0 && rng.next() < c.titleNoise) {
          ws[rng.int(ws.length)] = rng.choice(shared);
        }
        const t = ws.join(" ");
        // No title may be a substring of another (on characters, hence also on words).
        if (titles.some((e) => e.includes(t) || t.includes(e))) continue;
        titles.push(t);
        words.push(ws);
        break;
      }
    }
  }
  return { titles, words };
}

function genreOfIndex(j: number, c: WorldConfig): number {
  return Math.floor((j * c.numGenres) / c.numItems);
}

/** Normalized taste-and-short-term weights per genre, for the item after `history`. */
function genreWeights(world: World, taste: number[], history: readonly number[]): number[] {
  const w = world.config.shortTermWeight;
  if (w === 0 || history.length === 0) return taste.slice();
  const last = world.items[history[history.length - 1]].genre;
  return taste.map((t, g) => (1 - w) * t + (g === last ? w : 0));
}

/** Scores ∝ weight[genre] · pop over the domain's items, 0 on excluded items, normalized. */
function itemLaw(
  world: World,
  domain: number,
  weights: readonly number[],
  excluded: ReadonlySet<number>,
): number[] {
  const p = new Array<number>(world.items.length).fill(0);
  let s = 0;
  for (const id of world.domainItems[domain]) {
    if (excluded.has(id)) continue;
    const it = world.items[id];
    p[id] = weights[it.genre] * it.popularity;
    s += p[id];
  }
  if (!(s > 0)) {
    throw new InputError("history", `no item of domain ${domain} is left outside the history`);
  }
  for (const id of world.domainItems[domain]) p[id] /= s;
  return p;
}

/** Popularity mass of the genre's items outside `seen`. */
function genreMass(world: World, ids: readonly number[], seen: ReadonlySet<number>): number {
  let m = 0;
  for (const id of ids) if (!seen.has(id)) m += world.items[id].popularity;
  return m;
}

/**
 * A history of `len` items drawn sequentially without replacement from the law of
 * {@link trueScores}, in two stages (genre ∝ weight · remaining popularity mass, then item ∝
 * popularity within the genre), which is the same law and much cheaper.
 */
function drawHistory(world: World, rng: Rng, taste: number[], d: number, len: number): number[] {
  const gi = world.genreItems[d];
  const seen = new Set<number>();
  const mass = gi.map((ids) => genreMass(world, ids, seen));
  const h: number[] = [];
  for (let t = 0; t < len; t++) {
    const wts = genreWeights(world, taste, h).map((x, g) => x * mass[g]);
    const g = drawIndex(rng, wts);
    const inGenre = gi[g].filter((id) => !seen.has(id));
    const id = inGenre[drawIndex(rng, inGenre.map((i) => world.items[i].popularity))];
    h.push(id);
    seen.add(id);
    mass[g] = genreMass(world, gi[g], seen);
  }
  return h;
}

/** Draw an index with probability ∝ `weights` (non-negative, positive sum). */
function drawIndex(rng: Rng, weights: readonly number[]): number {
  let s = 0;
  for (const w of weights) s += w;
  let u = rng.next() * s;
  let last = -1;
  for (let i = 0; i < weights.length; i++) {
    if (weights[i] <= 0) continue;
    last = i;
    u -= weights[i];
    if (u < 0) return i;
  }
  return last; // rounding: u landed past the final cumulative sum
}

/** Draw an id from `law` restricted to `ids` (law sums to 1 over them). */
function drawFrom(rng: Rng, law: readonly number[], ids: readonly number[]): number {
  let u = rng.next();
  let last = -1;
  for (const id of ids) {
    if (law[id] <= 0) continue;
    last = id;
    u -= law[id];
    if (u < 0) return id;
  }
  return last; // rounding: u landed past the final cumulative sum
}

/** A shallow copy of an array; anything else as is. */
function copyIfArray<T>(x: T): T {
  return (Array.isArray(x) ? [...x] : x) as T;
}

/**
 * Build a world. Same config (including `seed`) → deep-equal world. The default world takes
 * about 0.1–0.3 s on one core.
 *
 * @example Usage
 * ```ts
 * import { makeWorld } from "./world.ts";
 * const world = makeWorld({ seed: 1 });
 * console.assert(world.items.length === 800 && world.splits.test.length === 400);
 * ```
 * @param config Fields overriding {@link DEFAULT_WORLD_CONFIG}.
 * @returns The world.
 * @throws {ConfigError} On an invalid knob, naming the field and value.
 */
export function makeWorld(config: Partial<WorldConfig> = {}): World {
  const c: WorldConfig = {
    ...DEFAULT_WORLD_CONFIG,
    ...config,
    // Copied (the caller's arrays stay untouched); a non-array is left for checkConfig to name.
    historyLen: copyIfArray(config.historyLen ?? DEFAULT_WORLD_CONFIG.historyLen),
    splitFractions: copyIfArray(config.splitFractions ?? DEFAULT_WORLD_CONFIG.splitFractions),
  };
  checkConfig(c);
  const rng = new Rng(c.seed);
  const titleRng = rng.fork(), popRng = rng.fork(), userRng = rng.fork();

  const genreWords: string[][][] = [];
  for (let d = 0; d < c.numDomains; d++) {
    genreWords.push([]);
    for (let g = 0; g < c.numGenres; g++) {
      // Named stems for up to 8 genres per domain, generated ones beyond.
      const stem = c.numGenres <= 8 ? GENRE_STEMS[d * 8 + g] : `d${d}g${g}w`;
      genreWords[d].push(Array.from({ length: c.wordsPerGenre }, (_, i) => `${stem}${i}`));
    }
  }
  const sharedWords = SHARED_WORDS.slice(0, c.numSharedWords);
  const { titles, words } = makeTitles(c, titleRng, genreWords, sharedWords);

  const items: Item[] = [];
  const domainItems: number[][] = [];
  const titleToId: Record<string, number> = {};
  for (let d = 0; d < c.numDomains; d++) {
    domainItems.push([]);
    for (let j = 0; j < c.numItems; j++) {
      const id = items.length;
      items.push({
        id,
        domain: d,
        genre: genreOfIndex(j, c),
        title: titles[id],
        words: words[id],
        popularity: Math.exp(c.popularitySigma * popRng.normal()),
      });
      domainItems[d].push(id);
      titleToId[titles[id]] = id;
    }
  }

  const nTrain = Math.round(c.splitFractions[0] * c.numUsers);
  const nValid = Math.min(c.numUsers - nTrain, Math.round(c.splitFractions[1] * c.numUsers));
  const ids = Array.from({ length: c.numUsers }, (_, i) => i);
  const world: World = {
    config: c,
    domains: DOMAINS.slice(0, c.numDomains).map((x) => ({ ...x })),
    genreWords,
    sharedWords,
    items,
    domainItems,
    genreItems: domainItems.map((ids) =>
      Array.from({ length: c.numGenres }, (_, g) => ids.filter((id) => items[id].genre === g))
    ),
    titleToId,
    users: [],
    splits: {
      train: ids.slice(0, nTrain),
      valid: ids.slice(nTrain, nTrain + nValid),
      test: ids.slice(nTrain + nValid),
    },
  };

  const G = c.numGenres;
  const drawTaste = () =>
    dirichlet(userRng, c.tasteConcentration, G).map((x) =>
      (1 - c.uniformMix) * x + c.uniformMix / G
    );
  for (let u = 0; u < c.numUsers; u++) {
    const base = drawTaste();
    const taste = [base];
    for (let d = 1; d < c.numDomains; d++) {
      if (c.crossDomainShare === 1) taste.push(base.slice());
      else {
        const own = drawTaste();
        taste.push(base.map((b, g) => c.crossDomainShare * b + (1 - c.crossDomainShare) * own[g]));
      }
    }
    const histories: number[][] = [];
    for (let d = 0; d < c.numDomains; d++) {
      const len = c.historyLen[0] + userRng.int(c.historyLen[1] - c.historyLen[0] + 1);
      histories.push(drawHistory(world, userRng, taste[d], d, len));
    }
    world.users.push({ id: u, taste, histories });
  }
  return world;
}

// ---------------------------------------------------------------------------------------
// Ground truth

/** Options of {@link trueScores}. */
export interface TrueScoresOptions {
  /** Domain (default 0). */
  domain?: number;
  /** History item ids, oldest first (default: the user's stored history in `domain`); these
   * items get probability 0, and the last one drives the short-term effect. Pass `[]` for
   * the plain taste law p(i|u). */
  history?: readonly number[];
}

function checkUser(world: World, user: number): User {
  const u = world.users[user];
  if (!Number.isInteger(user) || u === undefined) {
    throw new InputError("user", `expected a user id in [0, ${world.users.length}), got ${user}`);
  }
  return u;
}

function checkDomain(world: World, domain: number): number {
  if (!Number.isInteger(domain) || domain < 0 || domain >= world.domains.length) {
    throw new InputError(
      "domain",
      `expected a domain in [0, ${world.domains.length}), got ${domain}`,
    );
  }
  return domain;
}

/**
 * The true probability that `user`'s next item (after `history`) is item i, for every item of
 * the world: `p(i) ∝ [(1 − w)·taste[g(i)] + w·1{g(i) = g(last)}] · pop(i)` on the domain's
 * items outside the history, 0 elsewhere. Sums to 1. Sample targets are drawn from it.
 *
 * @example Usage
 * ```ts
 * import { makeWorld, trueScores } from "./world.ts";
 * const w = makeWorld({ numUsers: 10 });
 * const p = trueScores(w, 0);
 * console.assert(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-9);
 * ```
 * @param world The world.
 * @param user User id.
 * @param options Domain and history.
 * @returns `p[itemId]`, length `world.items.length`.
 */
export function trueScores(world: World, user: number, options: TrueScoresOptions = {}): number[] {
  const u = checkUser(world, user);
  const d = checkDomain(world, options.domain ?? 0);
  const history = options.history ?? u.histories[d];
  return itemLaw(world, d, genreWeights(world, u.taste[d], history), new Set(history));
}

// ---------------------------------------------------------------------------------------
// Samples

/** How negatives are drawn (always distinct, outside the history, never the positive). */
export type NegativeSampler = "uniform" | "popularity" | "same-genre";

/** One S-DPO-style sample: history, 20 candidates (the positive once, in random order). */
export interface SdpoSample {
  /** User id. */
  user: number;
  /** Domain index. */
  domain: number;
  /** History titles, oldest first. */
  history: string[];
  /** History item ids. */
  historyIds: number[];
  /** Candidate titles, shuffled. */
  candidates: string[];
  /** Candidate item ids (same order). */
  candidateIds: number[];
  /** The target title. */
  positive: string;
  /** The target item id. */
  positiveId: number;
  /** Index of the positive in `candidates`. */
  positiveIndex: number;
  /** The non-positive candidate titles, in candidate order. */
  negatives: string[];
  /** Their item ids. */
  negativeIds: number[];
}

/** Options of {@link sdpoSamples}. */
export interface SdpoSampleOptions {
  /** Candidates per sample, positive included (default 20). */
  numCandidates?: number;
  /** Independent (target, candidates) draws per user, history fixed (default 16 for train,
   * 2 otherwise). */
  drawsPerUser?: number;
  /** How the negatives are drawn (default "uniform"). */
  negativeSampler?: NegativeSampler;
  /** Domain (default 0). */
  domain?: number;
  /** Random source (default: a generator seeded from the world seed, split, domain, kind). */
  rng?: Rng;
}

const SPLIT_CODE: Record<Split, number> = { train: 1, valid: 2, test: 3 };

function defaultRng(world: World, split: Split, domain: number, kind: number): Rng {
  return new Rng(
    (Math.imul(world.config.seed | 0, 1000003) + SPLIT_CODE[split] * 7919 + domain * 104729 +
      kind * 15485863) | 0,
  );
}

function checkSplit(world: World, split: Split): number[] {
  const users = world.splits[split];
  if (users === undefined) {
    throw new InputError("split", `expected "train", "valid" or "test", got "${split}"`);
  }
  return users;
}

/**
 * k distinct ids from `pool` drawn by `sampler` (pool excludes history and positive); the
 * samplers of {@link sdpoSamples} and {@link dmpoSamples}, also used by
 * src/experiments/negatives.ts. `field` names the option blamed when the pool is too small.
 */
export function drawNegatives(
  world: World,
  rng: Rng,
  pool: number[],
  k: number,
  sampler: NegativeSampler,
  positiveId: number,
  field: string,
): number[] {
  if (pool.length < k) {
    throw new ConfigError(
      field,
      `needs ${k} negatives but only ${pool.length} items are outside the history`,
    );
  }
  if (sampler === "uniform") return rng.sample(pool, k);
  if (sampler === "popularity") {
    // Weighted sampling without replacement (Efraimidis–Spirakis keys log(u) / w).
    // Keep the k largest keys in a small array sorted descending (k is small).
    const ids: number[] = [], keys: number[] = [];
    for (const id of pool) {
      let u = 0;
      while (u === 0) u = rng.next();
      const key = Math.log(u) / world.items[id].popularity;
      if (keys.length === k && key <= keys[k - 1]) continue;
      let at = keys.length === k ? k - 1 : keys.length;
      while (at > 0 && keys[at - 1] < key) {
        keys[at] = keys[at - 1];
        ids[at] = ids[at - 1];
        at--;
      }
      keys[at] = key;
      ids[at] = id;
    }
    return ids;
  }
  if (sampler === "same-genre") {
    const g = world.items[positiveId].genre;
    const same = pool.filter((id) => world.items[id].genre === g);
    if (same.length >= k) return rng.sample(same, k);
    const other = pool.filter((id) => world.items[id].genre !== g);
    return [...rng.shuffle(same), ...rng.sample(other, k - same.length)];
  }
  throw new ConfigError(
    "negativeSampler",
    `expected "uniform", "popularity" or "same-genre", got "${sampler}"`,
  );
}

/**
 * S-DPO-style samples for the users of one split: per user, `drawsPerUser` independent
 * draws of a target from {@link trueScores} (history fixed) plus `numCandidates − 1`
 * negatives, shuffled together.
 *
 * @example Usage
 * ```ts
 * import { makeWorld, sdpoSamples } from "./world.ts";
 * const w = makeWorld({ numUsers: 50 });
 * const s = sdpoSamples(w, "test");
 * console.assert(s[0].candidates.length === 20);
 * console.assert(s[0].candidates[s[0].positiveIndex] === s[0].positive);
 * ```
 * @param world The world.
 * @param split Which users.
 * @param options Candidates, draws, negative sampler, domain, rng.
 * @returns Samples, grouped by user in id order.
 */
export function sdpoSamples(
  world: World,
  split: Split,
  options: SdpoSampleOptions = {},
): SdpoSample[] {
  const users = checkSplit(world, split);
  const domain = checkDomain(world, options.domain ?? 0);
  const numCandidates = options.numCandidates ?? 20;
  if (!Number.isInteger(numCandidates) || numCandidates < 2) {
    throw new ConfigError("numCandidates", `expected an integer >= 2, got ${numCandidates}`);
  }
  const draws = options.drawsPerUser ?? (split === "train" ? 16 : 2);
  if (!Number.isInteger(draws) || draws < 1) {
    throw new ConfigError("drawsPerUser", `expected an integer >= 1, got ${draws}`);
  }
  const sampler = options.negativeSampler ?? "uniform";
  const rng = options.rng ?? defaultRng(world, split, domain, 1);
  const out: SdpoSample[] = [];
  for (const user of users) {
    const historyIds = world.users[user].histories[domain];
    const hist = new Set(historyIds);
    const law = trueScores(world, user, { domain, history: historyIds });
    const history = historyIds.map((id) => world.items[id].title);
    for (let r = 0; r < draws; r++) {
      const positiveId = drawFrom(rng, law, world.domainItems[domain]);
      const pool = world.domainItems[domain].filter((id) => id !== positiveId && !hist.has(id));
      const negs = drawNegatives(
        world,
        rng,
        pool,
        numCandidates - 1,
        sampler,
        positiveId,
        "numCandidates",
      );
      const candidateIds = rng.shuffle([positiveId, ...negs]);
      const positiveIndex = candidateIds.indexOf(positiveId);
      const negativeIds = candidateIds.filter((id) => id !== positiveId);
      out.push({
        user,
        domain,
        history: history.slice(),
        historyIds: historyIds.slice(),
        candidates: candidateIds.map((id) => world.items[id].title),
        candidateIds,
        positive: world.items[positiveId].title,
        positiveId,
        positiveIndex,
        negatives: negativeIds.map((id) => world.items[id].title),
        negativeIds,
      });
    }
  }
  return out;
}

/** One DMPO-style pairwise sample: the prompt names `pair` (the positive and the first
 * negative, in random order); `negatives[1..]` are extra "exposed but not liked" items. */
export interface DmpoSample {
  /** User id. */
  user: number;
  /** Domain index. */
  domain: number;
  /** Domain noun for the wording ("movie"). */
  noun: string;
  /** History titles, oldest first. */
  history: string[];
  /** History item ids. */
  historyIds: number[];
  /** The liked item's title. */
  positive: string;
  /** The liked item's id. */
  positiveId: number;
  /** k disliked titles; `negatives[0]` is the one named in the prompt. */
  negatives: string[];
  /** Their item ids. */
  negativeIds: number[];
  /** The two titles the prompt names, in order. */
  pair: [string, string];
  /** Their item ids. */
  pairIds: [number, number];
  /** Whether `pair[0]` is the positive. */
  positiveFirst: boolean;
}

/** Options of {@link dmpoSamples}. */
export interface DmpoSampleOptions {
  /** Negatives per sample, k (default 1; DMPO uses 1–5). */
  numNegatives?: number;
  /** Draws per user, history fixed (default 1 for train, 2 otherwise). */
  drawsPerUser?: number;
  /** How the negatives are drawn (default "popularity": exposed but not liked). */
  negativeSampler?: NegativeSampler;
  /** Domain (default 0). */
  domain?: number;
  /** Random source (default: seeded from the world seed, split, domain, kind). */
  rng?: Rng;
}

/**
 * DMPO-style pairwise samples: per user and draw, a liked item from {@link trueScores} and k
 * distinct negatives drawn by popularity alone (outside the history), the first of which is
 * named with the positive in the prompt, in random order.
 *
 * @example Usage
 * ```ts
 * import { dmpoSamples, makeWorld } from "./world.ts";
 * const w = makeWorld({ numUsers: 50 });
 * const s = dmpoSamples(w, "train", { numNegatives: 3 });
 * console.assert(s[0].negatives.length === 3 && s[0].pair.includes(s[0].positive));
 * ```
 * @param world The world.
 * @param split Which users.
 * @param options Negatives, draws, sampler, domain, rng.
 * @returns Samples, grouped by user in id order.
 */
export function dmpoSamples(
  world: World,
  split: Split,
  options: DmpoSampleOptions = {},
): DmpoSample[] {
  const users = checkSplit(world, split);
  const domain = checkDomain(world, options.domain ?? 0);
  const k = options.numNegatives ?? 1;
  if (!Number.isInteger(k) || k < 1) {
    throw new ConfigError("numNegatives", `expected an integer >= 1, got ${k}`);
  }
  const draws = options.drawsPerUser ?? (split === "train" ? 1 : 2);
  if (!Number.isInteger(draws) || draws < 1) {
    throw new ConfigError("drawsPerUser", `expected an integer >= 1, got ${draws}`);
  }
  const sampler = options.negativeSampler ?? "popularity";
  const rng = options.rng ?? defaultRng(world, split, domain, 2);
  const noun = world.domains[domain].noun;
  const out: DmpoSample[] = [];
  for (const user of users) {
    const historyIds = world.users[user].histories[domain];
    const hist = new Set(historyIds);
    const law = trueScores(world, user, { domain, history: historyIds });
    const history = historyIds.map((id) => world.items[id].title);
    for (let r = 0; r < draws; r++) {
      const positiveId = drawFrom(rng, law, world.domainItems[domain]);
      const pool = world.domainItems[domain].filter((id) => id !== positiveId && !hist.has(id));
      const negativeIds = drawNegatives(world, rng, pool, k, sampler, positiveId, "numNegatives");
      const positiveFirst = rng.next() < 0.5;
      const pairIds: [number, number] = positiveFirst
        ? [positiveId, negativeIds[0]]
        : [negativeIds[0], positiveId];
      out.push({
        user,
        domain,
        noun,
        history: history.slice(),
        historyIds: historyIds.slice(),
        positive: world.items[positiveId].title,
        positiveId,
        negatives: negativeIds.map((id) => world.items[id].title),
        negativeIds,
        pair: [world.items[pairIds[0]].title, world.items[pairIds[1]].title],
        pairIds,
        positiveFirst,
      });
    }
  }
  return out;
}

/**
 * A few-shot subset: `n` samples drawn uniformly without replacement, kept in their
 * original order.
 *
 * @example Usage
 * ```ts
 * import { fewShot } from "./world.ts";
 * import { Rng } from "../rng.ts";
 * console.assert(fewShot([1, 2, 3, 4, 5], 2, new Rng(0)).length === 2);
 * ```
 * @param samples The full set.
 * @param n Subset size, at most `samples.length`.
 * @param rng Random source.
 * @returns The subset (new array; the samples themselves are shared).
 */
export function fewShot<T>(samples: readonly T[], n: number, rng: Rng): T[] {
  if (!Number.isInteger(n) || n < 0 || n > samples.length) {
    throw new InputError("n", `expected an integer in [0, ${samples.length}], got ${n}`);
  }
  const idx = rng.sample(samples.map((_, i) => i), n).sort((a, b) => a - b);
  return idx.map((i) => samples[i]);
}

/** Sets of a cross-domain run: train and validate on the source domain, test on the target. */
export interface CrossDomainSets<T> {
  /** Train users, source domain. */
  train: T[];
  /** Valid users, source domain. */
  valid: T[];
  /** Test users, target domain. */
  test: T[];
  /** Test users, source domain (the in-domain comparison). */
  testSource: T[];
}

/** Source/target domains of a cross-domain run (defaults 0 → 1). */
export interface CrossDomainOptions {
  /** Domain trained on (default 0). */
  source?: number;
  /** Domain evaluated on (default 1). */
  target?: number;
}

/**
 * The two-domain setting for S-DPO samples: train/valid on `source`, test on `target`
 * (plus the in-domain test set for comparison).
 *
 * @example Usage
 * ```ts
 * import { crossDomainSdpo, makeWorld } from "./world.ts";
 * const sets = crossDomainSdpo(makeWorld({ numUsers: 50 }));
 * console.assert(sets.train[0].domain === 0 && sets.test[0].domain === 1);
 * ```
 * @param world A world with at least two domains.
 * @param options Domains and the {@link sdpoSamples} options (minus `domain` and `rng`).
 * @returns The four sample sets.
 */
export function crossDomainSdpo(
  world: World,
  options: CrossDomainOptions & Omit<SdpoSampleOptions, "domain" | "rng"> = {},
): CrossDomainSets<SdpoSample> {
  const { source = 0, target = 1, ...rest } = options;
  checkCross(world, source, target);
  return {
    train: sdpoSamples(world, "train", { ...rest, domain: source }),
    valid: sdpoSamples(world, "valid", { ...rest, domain: source }),
    test: sdpoSamples(world, "test", { ...rest, domain: target }),
    testSource: sdpoSamples(world, "test", { ...rest, domain: source }),
  };
}

/**
 * The two-domain setting for DMPO samples: train/valid on `source`, test on `target`.
 *
 * @example Usage
 * ```ts
 * import { crossDomainDmpo, makeWorld } from "./world.ts";
 * const sets = crossDomainDmpo(makeWorld({ numUsers: 50 }), { numNegatives: 2 });
 * console.assert(sets.test[0].noun === "game");
 * ```
 * @param world A world with at least two domains.
 * @param options Domains and the {@link dmpoSamples} options (minus `domain` and `rng`).
 * @returns The four sample sets.
 */
export function crossDomainDmpo(
  world: World,
  options: CrossDomainOptions & Omit<DmpoSampleOptions, "domain" | "rng"> = {},
): CrossDomainSets<DmpoSample> {
  const { source = 0, target = 1, ...rest } = options;
  checkCross(world, source, target);
  return {
    train: dmpoSamples(world, "train", { ...rest, domain: source }),
    valid: dmpoSamples(world, "valid", { ...rest, domain: source }),
    test: dmpoSamples(world, "test", { ...rest, domain: target }),
    testSource: dmpoSamples(world, "test", { ...rest, domain: source }),
  };
}

function checkCross(world: World, source: number, target: number): void {
  checkDomain(world, source);
  checkDomain(world, target);
  if (source === target) {
    throw new ConfigError("target", `must differ from source (both ${source})`);
  }
}

// ---------------------------------------------------------------------------------------
// Reference scorers

/** What a reference scorer needs to know about a sample (both sample kinds have it). */
export interface ScoringContext {
  /** User id. */
  user: number;
  /** Domain index. */
  domain: number;
  /** History item ids, oldest first. */
  historyIds: readonly number[];
}

/** A reference scorer: one score per item id (higher = more likely the next item). */
export type ReferenceScorer = (
  world: World,
  context: ScoringContext,
  itemIds: readonly number[],
) => number[];

/**
 * Oracle: the true probability {@link trueScores} of each item (the upper reference).
 *
 * @example Usage
 * ```ts
 * import { makeWorld, oracleScores, sdpoSamples } from "./world.ts";
 * const w = makeWorld({ numUsers: 20 });
 * const s = sdpoSamples(w, "test")[0];
 * console.assert(oracleScores(w, s, s.candidateIds).length === 20);
 * ```
 * @param world The world.
 * @param context User, domain and history.
 * @param itemIds Items to score.
 * @returns Scores, one per item id.
 */
export function oracleScores(
  world: World,
  context: ScoringContext,
  itemIds: readonly number[],
): number[] {
  const p = trueScores(world, context.user, {
    domain: context.domain,
    history: context.historyIds,
  });
  return itemIds.map((id) => p[id]);
}

/**
 * Popularity: each item's popularity weight, ignoring the user.
 *
 * @example Usage
 * ```ts
 * import { makeWorld, popularityScores } from "./world.ts";
 * const w = makeWorld({ numUsers: 20 });
 * console.assert(popularityScores(w, { user: 0, domain: 0, historyIds: [] }, [3])[0] > 0);
 * ```
 * @param world The world.
 * @param _context Unused (same signature as the other scorers).
 * @param itemIds Items to score.
 * @returns Scores, one per item id.
 */
export function popularityScores(
  world: World,
  _context: ScoringContext,
  itemIds: readonly number[],
): number[] {
  return itemIds.map((id) => world.items[id].popularity);
}

/**
 * History-Bayes: the Dirichlet(α) posterior-mean genre share from the history's genre
 * counts, `(α + c_g) / (Gα + n)`, mixed with the world's short-term effect on the last
 * item's genre, times true popularity; 0 for history items. A realistic ceiling for a model
 * that sees only the history (it knows genres, popularity and α, not the user's taste).
 *
 * @example Usage
 * ```ts
 * import { historyBayesScores, makeWorld } from "./world.ts";
 * const w = makeWorld({ numUsers: 20 });
 * const h = w.users[0].histories[0];
 * console.assert(historyBayesScores(w, { user: 0, domain: 0, historyIds: h }, h)[0] === 0);
 * ```
 * @param world The world.
 * @param context User, domain and history.
 * @param itemIds Items to score.
 * @returns Scores, one per item id.
 */
export function historyBayesScores(
  world: World,
  context: ScoringContext,
  itemIds: readonly number[],
): number[] {
  const G = world.config.numGenres, a = world.config.tasteConcentration;
  const counts = new Array<number>(G).fill(0);
  for (const id of context.historyIds) counts[world.items[id].genre]++;
  const n = context.historyIds.length;
  const post = counts.map((c) => (a + c) / (G * a + n));
  const weights = genreWeights(world, post, context.historyIds);
  const hist = new Set(context.historyIds);
  return itemIds.map((id) =>
    hist.has(id) ? 0 : weights[world.items[id].genre] * world.items[id].popularity
  );
}

// ---------------------------------------------------------------------------------------
// Negative diagnostics (LM-free, from the world's law; `deno task world`)

/**
 * How a "hardest" negative is picked among a prompt's negatives, by the model-free criteria
 * the kit's samplers use: `random` (a uniform pick: what a uniform sampler gives),
 * `popularity` (the most popular negative), `same-genre` (a uniform pick among the negatives
 * of the positive's genre), `oracle` (the negative with the highest true probability: a
 * model that has learned the law mining its hardest negative).
 */
export type HardnessCriterion = "random" | "popularity" | "same-genre" | "oracle";

/** The criteria of {@link hardestNegativeReport}, in table order. */
export const HARDNESS_CRITERIA: readonly HardnessCriterion[] = [
  "random",
  "popularity",
  "same-genre",
  "oracle",
];

/**
 * A sampler of {@link informativeReport}: the world's samplers ({@link drawNegatives}) and
 * `oracle-hard`, the `k` highest-true-probability items of `mineFrom` uniform candidates (the
 * model-free stand-in for the ablations' model-hard mining with a model that knows the law).
 */
export type DiagnosticSampler = NegativeSampler | "oracle-hard";

/** The samplers of {@link informativeReport}, in table order. */
export const DIAGNOSTIC_SAMPLERS: readonly DiagnosticSampler[] = [
  "uniform",
  "popularity",
  "same-genre",
  "oracle-hard",
];

/**
 * Default factor of "informative": a negative n of positive p is informative when
 * `q(n) ≥ q(p) / 10` under the true next-item law q. At the law's own optimum the
 * Bradley–Terry (DPO) preference of p over n is `q(p) / (q(p) + q(n))`, so the pair's
 * logistic gradient weight `q(n) / (q(p) + q(n))` is below 1/11 ≈ 0.09 for every
 * non-informative negative: a pair the law already decides by more than ln 10 ≈ 2.3 nats.
 */
export const INFORMATIVE_FACTOR = 10;

/** Per criterion: how often the hardest negative is truly worse than the positive. */
export interface HardestNegativeRow {
  /** The criterion. */
  criterion: HardnessCriterion;
  /** Prompts with a negative the criterion can pick (same-genre: one of the genre). */
  prompts: number;
  /** Fraction of those prompts whose picked negative has q(n) < q(p). */
  truly_worse: number;
  /** Median over those prompts of q(n) / q(p). */
  median_ratio: number;
}

/**
 * Index into `negativeIds` of the hardest negative by `criterion` (ties: the first), or −1
 * when none qualifies (`same-genre` without a negative of the positive's genre).
 */
export function hardestNegativeIndex(
  world: World,
  sample: Pick<SdpoSample, "positiveId" | "negativeIds">,
  criterion: HardnessCriterion,
  q: readonly number[],
  rng: Rng,
): number {
  const ids = sample.negativeIds;
  if (ids.length === 0) return -1;
  const argmax = (f: (id: number) => number) => {
    let best = 0;
    for (let j = 1; j < ids.length; j++) if (f(ids[j]) > f(ids[best])) best = j;
    return best;
  };
  if (criterion === "random") return rng.int(ids.length);
  if (criterion === "popularity") return argmax((id) => world.items[id].popularity);
  if (criterion === "oracle") return argmax((id) => q[id]);
  if (criterion === "same-genre") {
    const g = world.items[sample.positiveId].genre;
    const same = ids.map((id, j) => [id, j]).filter(([id]) => world.items[id].genre === g);
    return same.length ? same[rng.int(same.length)][1] : -1;
  }
  throw new ConfigError("criterion", `expected one of ${HARDNESS_CRITERIA.join(", ")}`);
}

/**
 * How often the hardest of each prompt's negatives is truly worse than its positive
 * (`q(n) < q(p)`, q = {@link trueScores} given the prompt's user and history), per
 * {@link HARDNESS_CRITERIA}. A "hard" negative that is truly better than the positive is
 * label noise: mining it trains the model toward the less likely item.
 *
 * @param world The world.
 * @param samples S-DPO prompts (positive and negatives as item ids).
 * @param seed Seed of the `random` / `same-genre` picks.
 * @returns One row per criterion.
 */
export function hardestNegativeReport(
  world: World,
  samples: readonly SdpoSample[],
  seed = 0,
): HardestNegativeRow[] {
  return HARDNESS_CRITERIA.map((criterion, c) => {
    const rng = new Rng(seed * 31 + c);
    let worse = 0;
    const ratios: number[] = [];
    for (const s of samples) {
      const q = trueScores(world, s.user, { domain: s.domain, history: s.historyIds });
      const j = hardestNegativeIndex(world, s, criterion, q, rng);
      if (j < 0) continue;
      const r = q[s.negativeIds[j]] / q[s.positiveId];
      ratios.push(r);
      if (r < 1) worse++;
    }
    ratios.sort((a, b) => a - b);
    const m = ratios.length;
    return {
      criterion,
      prompts: m,
      truly_worse: m ? worse / m : NaN,
      median_ratio: m
        ? (m % 2 ? ratios[(m - 1) / 2] : (ratios[m / 2 - 1] + ratios[m / 2]) / 2)
        : NaN,
    };
  });
}

/** Per sampler and K: what K negatives carry. */
export interface InformativeRow {
  /** The sampler. */
  sampler: DiagnosticSampler;
  /** Negatives drawn per prompt. */
  k: number;
  /** Mean number of informative negatives (`q(n) ≥ q(p) / factor`) among the K. */
  informative: number;
  /** Mean number of negatives truly better than the positive (`q(n) > q(p)`) among the K. */
  truly_better: number;
  /** Fraction of prompts with at least one informative negative. */
  any_informative: number;
}

/**
 * How many informative negatives K negatives carry, per sampler: for every prompt (user,
 * history, positive), K negatives drawn from the items outside the history and the positive
 * (as {@link dmpoSamples} / {@link sdpoSamples} draw them), counted as informative when
 * `q(n) ≥ q(p) / factor` ({@link INFORMATIVE_FACTOR}) and as truly better when `q(n) > q(p)`.
 *
 * @param world The world.
 * @param samples Prompts (their user, history, domain and positive are used; their own
 *   negatives are not).
 * @param ks Values of K.
 * @param opts `factor` (default {@link INFORMATIVE_FACTOR}), `seed`, `mineFrom` (oracle-hard
 *   candidates, default 19).
 * @returns One row per sampler and K.
 */
export function informativeReport(
  world: World,
  samples: readonly Pick<SdpoSample, "user" | "domain" | "historyIds" | "positiveId">[],
  ks: readonly number[] = [1, 3, 8],
  opts: { factor?: number; seed?: number; mineFrom?: number } = {},
): InformativeRow[] {
  const factor = opts.factor ?? INFORMATIVE_FACTOR;
  if (!(factor >= 1 && Number.isFinite(factor))) {
    throw new ConfigError("factor", `expected a finite number >= 1, got ${factor}`);
  }
  const mineFrom = opts.mineFrom ?? 19;
  const out: InformativeRow[] = [];
  DIAGNOSTIC_SAMPLERS.forEach((sampler, si) => {
    for (const k of ks) {
      const rng = new Rng((opts.seed ?? 0) * 1009 + si * 101 + k);
      let inf = 0, better = 0, any = 0;
      for (const s of samples) {
        const q = trueScores(world, s.user, { domain: s.domain, history: s.historyIds });
        const hist = new Set(s.historyIds);
        const pool = world.domainItems[s.domain].filter((id) =>
          id !== s.positiveId && !hist.has(id)
        );
        let negs: number[];
        if (sampler === "oracle-hard") {
          const cands = rng.sample(pool, Math.min(pool.length, Math.max(k, mineFrom)));
          negs = cands.sort((a, b) => q[b] - q[a]).slice(0, k);
        } else negs = drawNegatives(world, rng, pool, k, sampler, s.positiveId, "k");
        const qp = q[s.positiveId];
        const n = negs.filter((id) => q[id] * factor >= qp).length;
        inf += n;
        better += negs.filter((id) => q[id] > qp).length;
        if (n > 0) any++;
      }
      const m = samples.length || NaN;
      out.push({
        sampler,
        k,
        informative: inf / m,
        truly_better: better / m,
        any_informative: any / m,
      });
    }
  });
  return out;
}
