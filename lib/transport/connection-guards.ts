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
