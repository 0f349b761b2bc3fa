import type { MsgTransWebError } from './msgtrans-web-error.js';
import type { WebReplySink } from './web-connection.js';

/**
 * A streamed reply as an async iterator. The request goes out on the first
 * `next()` (like a cold Observable); values that arrive before they are
 * read wait in order. Leaving a `for await` early (`break`, `return`, a
 * throw) calls `return()`, which sends CANCEL so the server stops producing.
 */
export class ReplyStream<T> implements AsyncIterableIterator<T> {
  private readonly values: T[] = [];
  private head = 0;
  private ended = false;
  private failure: MsgTransWebError | undefined;
  private waiter: { resolve(result: IteratorResult<T>): void; reject(error: unknown): void } | null = null;
  private cancel: (() => void) | null = null;

  /** `start` sends the request with this stream as its reply sink and returns the cancel function. */
  constructor(private readonly start: (sink: WebReplySink) => () => void) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.cancel === null && !this.ended) {
      try {
        this.cancel = this.start(this.sink);
      } catch (err) {
        this.ended = true;
        return Promise.reject(err);
      }
    }
    if (this.head < this.values.length) {
      const value = this.values[this.head++];
      // drop read values now and then instead of shifting on every read
      if (this.head > 64 && this.head * 2 > this.values.length) this.values.splice(0, this.head), (this.head = 0);
      return Promise.resolve({ value, done: false });
    }
    if (this.failure) {
      const failure = this.failure;
      this.failure = undefined;
      return Promise.reject(failure);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  return(): Promise<IteratorResult<T>> {
    if (!this.ended) {
      this.ended = true;
      this.cancel?.();
    }
    this.values.length = this.head = 0;
    this.waiter?.resolve({ value: undefined, done: true });
    this.waiter = null;
    return Promise.resolve({ value: undefined, done: true });
  }

  // the sink is a separate object: its next() is not the iterator's
  private readonly sink: WebReplySink = {
    next: (value) => {
      if (this.ended) return;
      const waiter = this.waiter;
      this.waiter = null;
      if (waiter) waiter.resolve({ value: value as T, done: false });
      else this.values.push(value as T);
    },
    complete: () => {
      if (this.ended) return;
      this.ended = true;
      this.waiter?.resolve({ value: undefined, done: true });
      this.waiter = null;
    },
    error: (error) => {
      if (this.ended) return;
      this.ended = true;
      const waiter = this.waiter;
      this.waiter = null;
      if (waiter) waiter.reject(error);
      else this.failure = error;
    },
  };
}
