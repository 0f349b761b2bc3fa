import type { MsgTransErrorCode } from '../errors/error-codes.js';

/**
 * Every error the web client raises. `code` is one of the Node client's
 * `MsgTransErrorCode` strings (`ERR_MSGTRANS_TIMEOUT`, …); branch on it, never
 * on the message. For `ERR_MSGTRANS_REMOTE_ERROR` and `ERR_MSGTRANS_AUTH_FAILED`,
 * `payload` holds what the server sent (e.g. `{ status: 'error', message }`).
 */
export class MsgTransWebError extends Error {
  constructor(
    readonly code: MsgTransErrorCode,
    message: string,
    readonly payload?: unknown,
  ) {
    super(message);
    this.name = 'MsgTransWebError';
  }
}
