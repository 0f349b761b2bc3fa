import type { MsgTransErrorCode } from '../errors/error-codes.js';

/**
 * Every error the web client raises. `code` is one of the Node client's
 * `MsgTransErrorCode` strings (`ERR_MSGTRANS_TIMEOUT`, …); branch on it, never
 * on the message. For `ERR_MSGTRANS_REMOTE_ERROR` and `ERR_MSGTRANS_AUTH_FAILED`,
 * `payload` holds what the server sent (e.g. `{ status: 'error', message }`).
 * A connection closed by bad input has that input's error (`ERR_MSGTRANS_BAD_VERSION`, …) as `cause`.
 */
export class MsgTransWebError extends Error {
  constructor(
    readonly code: MsgTransErrorCode,
    message: string,
    readonly payload?: unknown,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'MsgTransWebError';
  }
}
