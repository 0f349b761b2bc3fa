/**
 * Latencies for percentiles in bounded memory: every value up to `capacity`,
 * then a uniform random sample of them all (reservoir sampling), so a long
 * fast run cannot grow without limit.
 */
export class LatencySample {
  private readonly values: Float64Array;
  private stored = 0;
  private seen = 0;

  constructor(capacity = 100_000) {
    this.values = new Float64Array(capacity);
  }

  get count(): number {
    return this.seen;
  }

  add(ms: number): void {
    this.seen++;
    if (this.stored < this.values.length) {
      this.values[this.stored++] = ms;
      return;
    }
    const slot = Math.floor(Math.random() * this.seen);
    if (slot < this.values.length) this.values[slot] = ms;
  }

  /** The `p`-th percentile (0-100) in ms, NaN when empty. */
  percentile(p: number): number {
    if (this.stored === 0) return Number.NaN;
    const sorted = this.values.slice(0, this.stored).sort();
    return sorted[Math.min(this.stored - 1, Math.max(0, Math.ceil((p / 100) * this.stored) - 1))];
  }
}
