import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransLimitError } from '../errors/msgtrans-limit-error.js';

/**
 * Drops a peer that starts a packet and never finishes it. Armed when a
 * packet is partly in, disarmed when nothing partial is held; progress does
 * not re-arm it, so trickling one byte at a time does not help.
 */
export class IncompleteMessageWatchdog {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly timeoutMs: number,
    private readonly onExpired: (error: MsgTransLimitError) => void,
  ) {}

  /** Call after each chunk with how many bytes of an unfinished packet are held. */
  update(pendingBytes: number): void {
    if (pendingBytes === 0) {
      this.stop();
      return;
    }
    if (this.timer !== null || this.timeoutMs <= 0) return;
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
