import { MsgTransConnectionError } from '../../errors/msgtrans-connection-error.js';
import type { MsgTransErrorCode } from '../../errors/error-codes.js';

/**
 * A QUIC connection failed or was closed with an error. Carries the QUIC
 * error code (RFC 9000 §20: transport codes, 0x100 + TLS alert for crypto
 * errors) or the application's, and who closed it.
 */
export class QuicConnectionError extends MsgTransConnectionError {
  constructor(
    code: MsgTransErrorCode,
    message: string,
    /** The QUIC error code, when the connection was closed with one. */
    readonly quicErrorCode?: number,
    /** True when `quicErrorCode` is an application code rather than a transport one. */
    readonly isApplicationError?: boolean,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}
