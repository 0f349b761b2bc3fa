import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransLimitError } from '../errors/msgtrans-limit-error.js';

/**
 * Drops a peer that starts a packet and never finishes it. Armed when a
 * packet is partly in, re-armed only when a packet completes, disarmed when
 * nothing partial is held: bytes trickling into one packet do not extend its
 * time, but a steady stream of whole packets never trips it.
 */
export class IncompleteMessageWatchdog {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly timeoutMs: number,
    private readonly onExpired: (error: MsgTransLimitError) => void,
  ) {}

  /**
   * Call after each chunk with how many bytes of an unfinished packet are
   * held and whether any packet completed in it.
   */
  update(pendingBytes: number, completed: boolean): void {
    if (pendingBytes === 0 || completed) this.stop();
    if (pendingBytes === 0 || this.timer !== null || this.timeoutMs <= 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.onExpired(
        new MsgTransLimitError(
          MsgTransErrorCode.INCOMPLETE_TIMEOUT,
          `A packet stayed incomplete for ${this.timeoutMs} ms (${pendingBytes}+ bytes held)`,
        ),
      );
    }, this.timeoutMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** The error for a peer that lets more than `limit` bytes pile up unsent. */
export function sendBufferFull(buffered: number, limit: number): MsgTransLimitError {
  return new MsgTransLimitError(
    MsgTransErrorCode.SEND_BUFFER_FULL,
    `Peer is not reading: ${buffered} bytes wait to be sent (limit ${limit})`,
  );
}

/** What a {@link SendStallWatchdog} reads from its connection. */
export interface SendBacklog {
  /** Bytes waiting for the peer. */
  readonly bufferedAmount: number;
  /** Bytes the OS has taken so far; grows whenever the peer makes room. */
  readonly bytesTaken: number;
}

/**
 * Drops a peer that takes none of the bytes waiting for it for `timeoutMs`.
 * One timer per connection, armed only while a backlog exists and re-armed
 * once per period while the peer makes progress: a large backlog to a slow
 * but steady reader is never a reason to drop it.
 */
export class SendStallWatchdog {
  private timer: NodeJS.Timeout | null = null;
  private seenTaken = 0;

  constructor(
    private readonly timeoutMs: number,
    private readonly backlog: SendBacklog,
    private readonly onStalled: (error: MsgTransLimitError) => void,
  ) {}

  /** Call when bytes were left waiting: starts watching unless already watching. */
  arm(): void {
    if (this.timer !== null || this.timeoutMs <= 0) return;
    this.seenTaken = this.backlog.bytesTaken;
    this.timer = setTimeout(this.check, this.timeoutMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private readonly check = (): void => {
    this.timer = null;
    const buffered = this.backlog.bufferedAmount;
    // idle again: the next backlog arms a new period
    if (buffered === 0) return;
    if (this.backlog.bytesTaken > this.seenTaken) {
      this.arm();
      return;
    }
    this.onStalled(
      new MsgTransLimitError(
        MsgTransErrorCode.SEND_BUFFER_FULL,
        `Peer is not reading: ${buffered} bytes waited ${this.timeoutMs} ms and it took none`,
      ),
    );
  };
}
