import assert from "node:assert/strict";
import { InputError } from "../../src/errors.ts";
import {
  aucPaired,
  aucReleased,
  bootstrapCI,
  hitRateAtK,
  hitsAtK,
  meanStd,
  ndcgAtK,
  ndcgsAtK,
  pairedBootstrapCI,
  rankOfPositive,
  rocAuc,
  sdpoGeneratedPart,
  sdpoGenerationMetrics,
  sdpoValidity,
} from "../../src/eval/metrics.ts";
import { Rng } from "../../src/rng.ts";

const close = (a: number, b: number, tol = 1e-12) =>
  assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

/** O(n²) AUC: count positive/negative pairs, ties 1/2. */
function bruteAuc(labels: number[], scores: number[]): number {
  let s = 0, n = 0;
  for (let i = 0; i < labels.length; i++) {
    for (let j = 0; j < labels.length; j++) {
      if (labels[i] !== 1 || labels[j] !== 0) continue;
      n++;
      s += scores[i] > scores[j] ? 1 : scores[i] === scores[j] ? 0.5 : 0;
    }
  }
  return s / n;
}

Deno.test("hitRateAtK()/ndcgAtK() equal a brute-force sort on tie-free random scores", () => {
  const rng = new Rng(1);
  const rows = Array.from({ length: 200 }, () => Array.from({ length: 20 }, () => rng.next()));
  const pos = rows.map(() => rng.int(20));
  for (const k of [1, 3, 5, 10, 20]) {
    let hit = 0, ndcg = 0;
    rows.forEach((r, i) => {
      const order = r.map((_, j) => j).sort((a, b) => r[b] - r[a]);
      const rank = order.indexOf(pos[i]) + 1;
      assert.equal(rankOfPositive(r, pos[i]), rank);
      if (rank <= k) {
        hit++;
        ndcg += 1 / Math.log2(rank + 1);
      }
    });
    close(hitRateAtK({ scores: rows }, pos, k), hit / rows.length);
    close(ndcgAtK({ scores: rows }, pos, k), ndcg / rows.length);
    // The same through explicit rankings (ids = column indices).
    const rankings = rows.map((r) => r.map((_, j) => j).sort((a, b) => r[b] - r[a]));
    close(hitRateAtK({ rankings }, pos, k), hit / rows.length);
    close(ndcgAtK({ rankings }, pos, k), ndcg / rows.length);
  }
});

Deno.test("hitRateAtK()/ndcgAtK() hand values, including ties and truncated rankings", () => {
  // positive 3rd of 3: NDCG@5 = 1/log2(4) = 0.5; HR@2 = 0
  assert.equal(ndcgAtK({ scores: [[0.9, 0.8, 0.7]] }, [2], 5), 0.5);
  assert.equal(hitRateAtK({ scores: [[0.9, 0.8, 0.7]] }, [2], 2), 0);
  assert.equal(ndcgAtK({ scores: [[0.1, 0.8, 0.7]] }, [1], 1), 1);
  // two rows: ranks 1 and 2 → NDCG@2 = (1 + 1/log2 3) / 2
  close(ndcgAtK({ scores: [[3, 1], [1, 3]] }, [0, 0], 2), (1 + 1 / Math.log2(3)) / 2);
  // constant scorer over 20 candidates: expected HR@1 = 1/20, rank 10.5
  const flat = [new Array(20).fill(0)];
  close(hitRateAtK({ scores: flat }, [7], 1), 1 / 20);
  close(hitRateAtK({ scores: flat }, [7], 5), 5 / 20);
  assert.equal(rankOfPositive(flat[0], 7), 10.5);
  // one better, positive tied with one other: rank 2 or 3 → HR@2 = 0.5, NDCG@3 averaged
  assert.deepEqual(hitsAtK({ scores: [[5, 1, 1]] }, [1], 2), [0.5]);
  close(ndcgsAtK({ scores: [[5, 1, 1]] }, [1], 3)[0], (1 / Math.log2(3) + 1 / Math.log2(4)) / 2);
  // truncated ranking without the positive is a miss
  assert.equal(hitRateAtK({ rankings: [[4, 5]] }, [9], 2), 0);
  assert.equal(ndcgAtK({ rankings: [[4, 9]] }, [9], 2), 1 / Math.log2(3));
});

Deno.test("ranking metrics reject bad input with InputError", () => {
  assert.throws(() => hitRateAtK({ scores: [[1, 2]] }, [0, 1], 1), InputError);
  assert.throws(() => hitRateAtK({ scores: [[1, 2]] }, [2], 1), InputError);
  assert.throws(() => hitRateAtK({ scores: [[1, NaN]] }, [0], 1), InputError);
  assert.throws(() => ndcgAtK({ scores: [[1, 2]] }, [0], 0), InputError);
});

Deno.test("sdpoValidity() follows S-DPO's substring rule, pitfall included", () => {
  const cands = ["Rebecca Black", "Black", "Tinariwen", "Glee Cast"];
  // README defect 4: the correct answer also contains another candidate → invalid, no hit
  assert.deepEqual(sdpoValidity(" Rebecca Black", cands, "Rebecca Black"), {
    valid: false,
    hit: false,
  });
  assert.deepEqual(sdpoValidity(" Glee Cast</s>", cands, "Glee Cast"), { valid: true, hit: true });
  assert.deepEqual(sdpoValidity(" Tinariwen", cands, "Glee Cast"), { valid: true, hit: false });
  assert.deepEqual(sdpoValidity(" Black", cands, "Black"), { valid: true, hit: true });
  assert.deepEqual(sdpoValidity(" Tinariwen, Glee Cast", cands, "Glee Cast"), {
    valid: false,
    hit: false,
  });
  assert.deepEqual(sdpoValidity(" Kylie Minogue", cands, "Glee Cast"), {
    valid: false,
    hit: false,
  });
  assert.equal(sdpoGeneratedPart("  Q? Answer: Glee Cast ", "Q? Answer:"), " Glee Cast");
});

Deno.test("sdpoGenerationMetrics() gives both HR@1 denominators and ValidRatio", () => {
  const rows = [
    { valid: true, hit: true },
    { valid: true, hit: true },
    { valid: true, hit: false },
    { valid: false, hit: false },
    { valid: false, hit: false },
  ];
  const m = sdpoGenerationMetrics(rows);
  assert.deepEqual(m, {
    n: 5,
    valid: 3,
    hits: 2,
    hr1_all: 2 / 5,
    hr1_valid: 2 / 3,
    valid_ratio: 3 / 5,
  });
  assert.ok(Number.isNaN(sdpoGenerationMetrics([{ valid: false, hit: false }]).hr1_valid));
  assert.throws(() => sdpoGenerationMetrics([{ valid: false, hit: true }]), InputError);
});

Deno.test("rocAuc() equals an O(n²) pair count on random data with ties", () => {
  const rng = new Rng(2);
  for (let r = 0; r < 30; r++) {
    const n = 2 + rng.int(80);
    const labels = Array.from({ length: n }, () => rng.int(2));
    labels[0] = 1;
    labels[1] = 0;
    const scores = Array.from({ length: n }, () => rng.int(6) - 2); // many ties
    close(rocAuc(labels, scores), bruteAuc(labels, scores));
  }
  assert.equal(rocAuc([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.4]), 0.875);
  assert.equal(rocAuc([true, false], [1, 1]), 0.5);
  assert.throws(() => rocAuc([1, 1], [0.2, 0.3]), InputError);
  assert.throws(() => rocAuc([1, 0], [0.2]), InputError);
});

Deno.test("aucReleased() reproduces the notebook's coin-flip procedure with our Rng", () => {
  const rng = new Rng(3);
  const n = 300;
  const chosen = Array.from({ length: n }, () => -10 + 3 * rng.normal());
  const rejected = Array.from({ length: n }, () => -12 + 3 * rng.normal());
  // by hand: one coin per pair from Rng(42)
  const coins = new Rng(42);
  const labels: number[] = [], scores: number[] = [];
  for (let i = 0; i < n; i++) {
    if (coins.next() < 0.5) {
      labels.push(1);
      scores.push(chosen[i]);
    } else {
      labels.push(0);
      scores.push(rejected[i]);
    }
  }
  close(aucReleased(chosen, rejected), bruteAuc(labels, scores));
  close(aucReleased(chosen, rejected, 7), aucReleased(chosen, rejected, 7));
  // every chosen above every rejected → 1.0; reversed → 0.0
  const hi = Array.from({ length: 50 }, (_, i) => -1 - i / 100);
  const lo = Array.from({ length: 50 }, (_, i) => -5 - i / 100);
  assert.equal(aucReleased(hi, lo), 1);
  assert.equal(aucReleased(lo, hi), 0);
  assert.throws(() => aucReleased([1], [0]), InputError); // one coin → one class
});

Deno.test("aucPaired() counts chosen > rejected per pair, ties 1/2", () => {
  assert.equal(aucPaired([2, 1, 3, 0], [1, 1, 4, -1]), (1 + 0.5 + 0 + 1) / 4);
  const rng = new Rng(4);
  const a = Array.from({ length: 100 }, () => rng.int(4));
  const b = Array.from({ length: 100 }, () => rng.int(4));
  let s = 0;
  for (let i = 0; i < 100; i++) s += a[i] > b[i] ? 1 : a[i] === b[i] ? 0.5 : 0;
  close(aucPaired(a, b), s / 100);
  assert.throws(() => aucPaired([1, 2], [1]), InputError);
});

Deno.test("bootstrapCI() contains the mean, narrows with more data, is seeded", () => {
  const rng = new Rng(5);
  const small = Array.from({ length: 50 }, (): number => (rng.next() < 0.4 ? 1 : 0));
  const big = Array.from({ length: 2000 }, (): number => (rng.next() < 0.4 ? 1 : 0));
  const a = bootstrapCI(small, { rng: new Rng(1) });
  const b = bootstrapCI(big, { rng: new Rng(1) });
  for (const ci of [a, b]) assert.ok(ci.lo <= ci.mean && ci.mean <= ci.hi, JSON.stringify(ci));
  close(a.mean, small.reduce((x, y) => x + y, 0) / small.length);
  assert.ok(b.hi - b.lo < (a.hi - a.lo) / 3, `${b.hi - b.lo} vs ${a.hi - a.lo}`);
  // width ≈ 2 · 1.96 · sd/√n for the big sample
  const sd = Math.sqrt(b.mean * (1 - b.mean) / big.length);
  assert.ok(Math.abs((b.hi - b.lo) - 2 * 1.96 * sd) < 0.3 * 2 * 1.96 * sd);
  assert.deepEqual(bootstrapCI(small, { rng: new Rng(1) }), a);
  const wide = bootstrapCI(small, { rng: new Rng(1), alpha: 0.01 });
  assert.ok(wide.hi - wide.lo >= a.hi - a.lo);
  assert.deepEqual(bootstrapCI([0.3, 0.3, 0.3]), { mean: 0.3, lo: 0.3, hi: 0.3 });
});

Deno.test("pairedBootstrapCI() is the bootstrap of per-row differences", () => {
  const rng = new Rng(6);
  const a = Array.from({ length: 300 }, () => (rng.next() < 0.5 ? 1 : 0));
  const b = a.map((x) => (rng.next() < 0.1 ? 1 - x : x));
  const p = pairedBootstrapCI(a, b, { rng: new Rng(9), iters: 500 });
  const d = bootstrapCI(a.map((x, i) => x - b[i]), { rng: new Rng(9), iters: 500 });
  assert.deepEqual(p, d);
  assert.ok(p.lo <= p.mean && p.mean <= p.hi);
  assert.throws(() => pairedBootstrapCI([1, 2], [1]), InputError);
});

Deno.test("meanStd() gives the mean and the sample (n − 1) std", () => {
  assert.deepEqual(meanStd([1, 2, 3]), { mean: 2, std: 1, n: 3 });
  const xs = [0.375, 0.385, 0.364];
  const m = (0.375 + 0.385 + 0.364) / 3;
  const sd = Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / 2);
  const r = meanStd(xs);
  close(r.mean, m);
  close(r.std, sd);
  assert.ok(Number.isNaN(meanStd([4]).std));
  assert.throws(() => meanStd([]), InputError);
});
