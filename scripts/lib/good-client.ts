/**
 * A well-behaved MsgTransClient that keeps sending 'echo' requests with
 * unique payloads and checks that each gets exactly one reply equal to what
 * it sent. Used beside the fuzzer: the fuzzer's garbage on other
 * connections must not disturb it.
 */
import { lastValueFrom, toArray } from 'rxjs';
import { isDeepStrictEqual } from 'node:util';
import { MsgTransClient, type MsgTransClientOptions } from '../../lib/index.js';

export class GoodClient {
  readonly client: MsgTransClient;
  sent = 0;
  ok = 0;
  wrong = 0;
  failed = 0;
  readonly problems: string[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private seq = 0;

  constructor(
    readonly name: string,
    options: MsgTransClientOptions,
    private readonly concurrency = 2,
    /** ms each loop waits between requests: a steady trickle, not a load test. */
    private readonly pauseMs = 2,
  ) {
    this.client = new MsgTransClient({ requestTimeout: 10_000, ...options });
  }

  async connect(): Promise<void> {
    await this.client.connect();
  }

  start(): void {
    this.running = true;
    for (let i = 0; i < this.concurrency; i++) this.loops.push(this.loop(i));
  }

  /** Stops sending and waits for the requests under way; the connection stays open. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  close(): void {
    this.client.close();
  }

  private async loop(slot: number): Promise<void> {
    while (this.running) {
      const n = this.seq++;
      // unique, and sometimes big enough to cross the compression-free limits of a chunk
      const payload = { client: this.name, slot, n, text: `${this.name}-${n}-`.padEnd(16 + ((n * 7919) % 3000), 'x') };
      this.sent++;
      try {
        const values = await lastValueFrom(this.client.send('echo', payload).pipe(toArray()));
        if (values.length === 1 && isDeepStrictEqual(values[0], payload)) {
          this.ok++;
        } else {
          this.wrong++;
          this.note(`request ${n}: sent ${JSON.stringify(payload).slice(0, 80)}, got ${JSON.stringify(values).slice(0, 120)}`);
        }
      } catch (err) {
        this.failed++;
        const e = err as { code?: string; message?: string };
        this.note(`request ${n} failed: ${e?.code ?? ''} ${e?.message ?? JSON.stringify(err)}`);
      }
      // a pause between requests, so the good clients do not starve the fuzzer of CPU
      await new Promise((resolve) => setTimeout(resolve, this.pauseMs));
    }
  }

  private note(problem: string): void {
    if (this.problems.length < 20) this.problems.push(problem);
  }

  summary(): string {
    return `${this.name}: ${this.sent} sent, ${this.ok} correct, ${this.wrong} wrong, ${this.failed} failed`;
  }
}
