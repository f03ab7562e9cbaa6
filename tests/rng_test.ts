import assert from "node:assert/strict";
import { Rng } from "../src/rng.ts";

Deno.test("Rng same seed gives the same sequence; state() round-trips", () => {
  const a = new Rng(42), b = new Rng(42);
  const xs = Array.from({ length: 5 }, () => a.next());
  assert.deepEqual(xs, Array.from({ length: 5 }, () => b.next()));
  const s = a.state();
  const next = a.next();
  assert.equal(Rng.fromState(s).next(), next);
  assert.notDeepEqual(xs, Array.from({ length: 5 }, () => new Rng(43).next()));
});

Deno.test("Rng.next() is roughly uniform and sample() draws distinct elements", () => {
  const r = new Rng(1);
  const bins = new Array(10).fill(0);
  for (let i = 0; i < 20000; i++) bins[Math.floor(r.next() * 10)]++;
  for (const c of bins) assert.ok(Math.abs(c - 2000) < 200, `bin count ${c}`);
  const s = r.sample([1, 2, 3, 4, 5, 6], 4);
  assert.equal(new Set(s).size, 4);
  assert.throws(() => r.sample([1], 2), RangeError);
});
