/**
 * One seeded pseudo-random source (xoshiro128**), used for every init, shuffle, sample and
 * dropout mask in recalign, so the same seed gives the same run. Its state is four 32-bit
 * words and can be saved in a checkpoint and restored.
 *
 * @module
 */

/** Serializable state of an {@link Rng}. */
export type RngState = [number, number, number, number];

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** Seeded PRNG. `new Rng(seed)`; `rng.next()` is uniform in [0, 1). */
export class Rng {
  private s: Uint32Array;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) {
      throw new RangeError(`Rng seed must be a finite number, got ${seed}`);
    }
    const sm = splitmix32(Math.floor(seed) ^ 0x5bd1e995);
    this.s = new Uint32Array([sm(), sm(), sm(), sm()]);
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /** A generator in the given saved state. */
  static fromState(state: RngState): Rng {
    const r = new Rng(0);
    r.setState(state);
    return r;
  }

  /** The current state (copy), to save in a checkpoint. */
  state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  /** Restore a state returned by {@link state}. */
  setState(state: RngState): void {
    this.s.set(state.map((x) => x >>> 0));
  }

  /** Next raw 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform float in [0, 1) with 32 bits of randomness. */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!(n >= 1)) throw new RangeError(`Rng.int(n) needs n >= 1, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Standard normal draw (Box–Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Fisher–Yates shuffle in place; returns the array. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }

  /** One element chosen uniformly. */
  choice<T>(a: readonly T[]): T {
    if (a.length === 0) throw new RangeError("Rng.choice() on an empty array");
    return a[this.int(a.length)];
  }

  /** k distinct elements chosen uniformly without replacement, in draw order. */
  sample<T>(a: readonly T[], k: number): T[] {
    if (k > a.length) throw new RangeError(`Rng.sample(): k=${k} > ${a.length} elements`);
    const idx = a.map((_, i) => i);
    for (let i = 0; i < k; i++) {
      const j = i + this.int(idx.length - i);
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    return idx.slice(0, k).map((i) => a[i]);
  }

  /** A new independent generator derived from this one (advances this one). */
  fork(): Rng {
    return new Rng(this.nextUint32());
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
