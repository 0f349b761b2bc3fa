const MAX_ID = 0xffffffff;

/** The id after `id`: up by one, skipping 0, wrapping from 2^32-1 to 1. */
export function nextMessageId(id: number): number {
  return id >= MAX_ID ? 1 : id + 1;
}

/**
 * Per-connection, per-sender message id counter: starts at 1, goes up by one
 * for every one-way and request packet, skips 0 and wraps from 2^32-1 to 1.
 */
export class MessageIdCounter {
  constructor(private nextId = 1) {}

  next(): number {
    const id = this.nextId;
    this.nextId = nextMessageId(id);
    return id;
  }
}
