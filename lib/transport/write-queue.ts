/**
 * Collects packets queued during one turn of the event loop and hands them to
 * `flush` together in the following check phase, so a burst of replies or
 * requests costs one write (one syscall, one UDP datagram run) instead of one
 * per packet. setImmediate rather than nextTick: replies produced by every
 * read of the current poll phase, including ones resolved in microtasks,
 * join the same batch.
 */
export class WriteQueue {
  private items: Buffer[] = [];
  private bytes = 0;
  private scheduled: NodeJS.Immediate | null = null;

  constructor(private readonly flush: (items: Buffer[], bytes: number) => void) {}

  /** Bytes queued and not yet handed to `flush`. */
  get pendingBytes(): number {
    return this.bytes;
  }

  push(item: Buffer): void {
    this.items.push(item);
    this.bytes += item.length;
    this.scheduled ??= setImmediate(this.run);
  }

  /** Flushes now, for a graceful close. */
  flushNow(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.run();
  }

  /** Drops everything queued, for an abrupt close. */
  clear(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = null;
    this.items = [];
    this.bytes = 0;
  }

  private readonly run = (): void => {
    this.scheduled = null;
    if (this.items.length === 0) return;
    const items = this.items;
    const bytes = this.bytes;
    this.items = [];
    this.bytes = 0;
    this.flush(items, bytes);
  };
}
