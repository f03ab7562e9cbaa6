import assert from "node:assert/strict";
import fc from "fast-check";
import {
  clusteredBootstrapCI,
  pairedBootstrapCI,
  projectedSe,
  varianceComponents,
} from "../../src/eval/metrics.ts";
import { Rng } from "../../src/rng.ts";

/** The same bootstrap by plain loops: build each resampled grid row by row, then average. */
function plainLoopReplicates(
  values: number[][],
  clusters: (string | number)[],
  iters: number,
  rng: Rng,
  resampleUnits: boolean,
): number[] {
  const ids = [...new Set(clusters)];
  const reps: number[] = [];
  for (let b = 0; b < iters; b++) {
    const units: number[] = [];
    for (let i = 0; i < values.length; i++) units.push(resampleUnits ? rng.int(values.length) : i);
    const picked: (string | number)[] = [];
    for (let j = 0; j < ids.length; j++) picked.push(ids[rng.int(ids.length)]);
    const rows: number[] = [];
    for (const u of units) {
      for (const c of picked) {
        for (let r = 0; r < clusters.length; r++) if (clusters[r] === c) rows.push(values[u][r]);
      }
    }
    rows.sort((a, b) => a - b); // order-free sum
    let s = 0;
    for (const x of rows) s += x;
    reps.push(s / rows.length);
  }
  return reps;
}

const quantile = (sorted: number[], q: number) => {
  const pos = q * (sorted.length - 1), i = Math.floor(pos), f = pos - i;
  return i + 1 < sorted.length ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
};

Deno.test("clusteredBootstrapCI = a plain-loop bootstrap of the resampled grid, draw for draw", () => {
  const rng = new Rng(3);
  const clusters = [0, 0, 1, 2, 2, 2, 3, 4, 5, 5];
  const values = [0, 1, 2].map(() => clusters.map(() => Math.round(rng.normal() * 100) / 100));
  for (const resampleUnits of [true, false]) {
    const ci = clusteredBootstrapCI(values, clusters, {
      iters: 300,
      rng: new Rng(7),
      resampleUnits,
    });
    const reps = plainLoopReplicates(values, clusters, 300, new Rng(7), resampleUnits)
      .sort((a, b) => a - b);
    assert.ok(Math.abs(ci.lo - quantile(reps, 0.025)) < 1e-12, `${ci.lo}`);
    assert.ok(Math.abs(ci.hi - quantile(reps, 0.975)) < 1e-12, `${ci.hi}`);
    const m = reps.reduce((a, b) => a + b, 0) / reps.length;
    const se = Math.sqrt(reps.reduce((a, b) => a + (b - m) ** 2, 0) / (reps.length - 1));
    assert.ok(Math.abs(ci.se - se) < 1e-12);
    assert.equal(ci.units, 3);
    assert.equal(ci.clusters, 6);
    assert.equal(ci.resampledUnits, resampleUnits);
    assert.ok(Math.abs(ci.mean - values.flat().reduce((a, b) => a + b, 0) / 30) < 1e-12);
  }
});

Deno.test("clusteredBootstrapCI: the bootstrap variance matches its closed form (one and two levels)", () => {
  // Balanced data: U units × C clusters of 2 rows. Cell means y[u][c].
  const rng = new Rng(11);
  const U = 4, C = 12;
  const clusters = Array.from({ length: 2 * C }, (_, r) => Math.floor(r / 2));
  const values = Array.from(
    { length: U },
    (_, u) => clusters.map((c) => u * 0.3 + Math.sin(c) + rng.normal() * 0.5),
  );
  const cell = values.map((v) =>
    Array.from({ length: C }, (_, c) => (v[2 * c] + v[2 * c + 1]) / 2)
  );
  const all = cell.flat(), m = all.reduce((a, b) => a + b, 0) / all.length;
  const v = all.reduce((a, x) => a + (x - m) ** 2, 0) / all.length;
  const uMeans = cell.map((r) => r.reduce((a, b) => a + b, 0) / C);
  const vu = uMeans.reduce((a, x) => a + (x - m) ** 2, 0) / U;
  const cMeans = Array.from({ length: C }, (_, c) => cell.reduce((a, r) => a + r[c], 0) / U);
  const vc = cMeans.reduce((a, x) => a + (x - m) ** 2, 0) / C;
  // Two levels: Var* = v/(UC) + (C−1)·v_u/(UC) + (U−1)·v_c/(UC).
  const two = clusteredBootstrapCI(values, clusters, { iters: 40000, rng: new Rng(1) });
  const want2 = Math.sqrt((v + (C - 1) * vu + (U - 1) * vc) / (U * C));
  assert.ok(Math.abs(two.se / want2 - 1) < 0.02, `two-level SE ${two.se} vs ${want2}`);
  // Units fixed: Var* = v_c / C (only the clusters vary).
  const one = clusteredBootstrapCI(values, clusters, {
    iters: 40000,
    rng: new Rng(2),
    resampleUnits: false,
  });
  const want1 = Math.sqrt(vc / C);
  assert.ok(Math.abs(one.se / want1 - 1) < 0.02, `one-level SE ${one.se} vs ${want1}`);
  assert.ok(two.se > one.se, "resampling seeds adds their spread");
});

Deno.test("clusteredBootstrapCI with one row per cluster and one unit is the plain bootstrap of the mean", () => {
  const rng = new Rng(4);
  const d = Array.from(
    { length: 50 },
    () => (rng.next() < 0.3 ? 1 : 0) - (rng.next() < 0.2 ? 1 : 0),
  );
  const ci = clusteredBootstrapCI([d], d.map((_, i) => i), { iters: 20000, rng: new Rng(5) });
  // Closed form of the plain bootstrap: SE² = (1/n)·(1/n)Σ(d − d̄)².
  const m = d.reduce((a, b) => a + b, 0) / d.length;
  const want = Math.sqrt(d.reduce((a, x) => a + (x - m) ** 2, 0) / d.length / d.length);
  assert.ok(Math.abs(ci.se / want - 1) < 0.03, `${ci.se} vs ${want}`);
  const plain = pairedBootstrapCI(d, d.map(() => 0), { iters: 20000, rng: new Rng(6) });
  assert.ok(Math.abs(ci.lo - plain.lo) < 0.02 && Math.abs(ci.hi - plain.hi) < 0.02);
});

Deno.test("property: duplicating every seed's rows cannot narrow the prompt-clustered interval (it does narrow a row bootstrap)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 3, max: 25 }),
      fc.integer({ min: 0, max: 1e6 }),
      (U, n, seed) => {
        const rng = new Rng(seed);
        const clusters = Array.from({ length: n }, () => rng.int(Math.max(2, n >> 1)));
        if (new Set(clusters).size < 2) return;
        const values = Array.from({ length: U }, () => clusters.map(() => rng.int(3) - 1));
        const base = clusteredBootstrapCI(values, clusters, { iters: 200, rng: new Rng(seed) });
        // Each seed's rows twice (same prompts, so the same clusters).
        const dup = clusteredBootstrapCI(
          values.map((v) => [...v, ...v]),
          [...clusters, ...clusters],
          { iters: 200, rng: new Rng(seed) },
        );
        assert.ok(Math.abs(dup.lo - base.lo) < 1e-12 && Math.abs(dup.hi - base.hi) < 1e-12);
        assert.ok(Math.abs(dup.se - base.se) < 1e-12);
      },
    ),
    { seed: 17, numRuns: 60 },
  );
  // The pooled-row bootstrap (the old findings rule) is narrowed by the same duplication.
  const rng = new Rng(8);
  const a = Array.from({ length: 200 }, () => (rng.next() < 0.3 ? 1 : 0));
  const b = Array.from({ length: 200 }, () => (rng.next() < 0.25 ? 1 : 0));
  const w1 = pairedBootstrapCI(a, b);
  const w2 = pairedBootstrapCI([...a, ...a], [...b, ...b]);
  assert.ok(w2.hi - w2.lo < 0.8 * (w1.hi - w1.lo), "row bootstrap narrows");
  const c1 = clusteredBootstrapCI([a.map((x, i) => x - b[i])], a.map((_, i) => i));
  const c2 = clusteredBootstrapCI(
    [[...a, ...a].map((x, i) => x - [...b, ...b][i])],
    [...a.map((_, i) => i), ...a.map((_, i) => i)],
  );
  assert.equal(c2.hi - c2.lo, c1.hi - c1.lo);
});

Deno.test("clusteredBootstrapCI: one-line errors naming the argument", () => {
  assert.throws(() => clusteredBootstrapCI([], [0]), /values/);
  assert.throws(() => clusteredBootstrapCI([[1, 2]], [0]), /unit 1 has 2 rows, expected 1/);
  assert.throws(() => clusteredBootstrapCI([[1]], []), /clusters/);
  assert.throws(() => clusteredBootstrapCI([[NaN]], [0]), /NaN/);
  assert.throws(() => clusteredBootstrapCI([[1]], [0], { iters: 1 }), /iters/);
});

Deno.test("varianceComponents recovers simulated seed, prompt and residual variances; projectedSe matches both the true SE and the pigeonhole bootstrap", () => {
  const rng = new Rng(13);
  const U = 8, C = 300, sA = 0.02, sB = 0.3, sE = 0.5; // standard deviations
  const a = Array.from({ length: U }, () => sA * rng.normal());
  const b = Array.from({ length: C }, () => sB * rng.normal());
  const values = a.map((au) => b.map((bc) => 0.1 + au + bc + sE * rng.normal()));
  const ids = b.map((_, c) => c);
  const vc = varianceComponents(values, ids);
  assert.ok(Math.abs(vc.cluster / sB ** 2 - 1) < 0.2, `cluster ${vc.cluster}`);
  assert.ok(Math.abs(vc.residual / sE ** 2 - 1) < 0.1, `residual ${vc.residual}`);
  assert.ok(vc.unit < 5 * sA ** 2 + 0.002, `unit ${vc.unit}`);
  // True SE of the grand mean at the simulated components.
  const trueSe = Math.sqrt(sA ** 2 / U + sB ** 2 / C + sE ** 2 / (U * C));
  assert.ok(Math.abs(projectedSe(vc, U, C) / trueSe - 1) < 0.15);
  // The pigeonhole projection is what the bootstrap reports (within Monte Carlo error).
  const boot = clusteredBootstrapCI(values, ids, { iters: 4000, rng: new Rng(3) });
  assert.ok(Math.abs(boot.se / projectedSe(vc, U, C, true) - 1) < 0.05, `${boot.se}`);
  assert.throws(() => varianceComponents([[1, 2]], [0, 1]), /2 units/);
});
