import type { MsgTransErrorCode } from './error-codes.js';

/**
 * Base class of every error this library raises. `code` is stable and is what
 * applications should branch on.
 */
export class MsgTransError extends Error {
  constructor(
    readonly code: MsgTransErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}
