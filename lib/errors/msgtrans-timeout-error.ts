import { MsgTransErrorCode } from './error-codes.js';
import { MsgTransError } from './msgtrans-error.js';

/** A request got no reply (or no further streamed value) within its timeout. */
export class MsgTransTimeoutError extends MsgTransError {
  constructor(readonly timeoutMs: number) {
    super(MsgTransErrorCode.TIMEOUT, `No reply within ${timeoutMs} ms`);
  }
}
