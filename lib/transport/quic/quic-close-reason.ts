import { MsgTransErrorCode } from '../../errors/error-codes.js';
import { QuicConnectionError } from './quic-connection-error.js';
import type { QuicheConnectionError } from './quic-native.js';
import { describeAlert } from './quic-tls.js';

/** QUIC application error codes this transport closes with. */
export const QuicCloseCode = {
  NORMAL: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
} as const;

const TRANSPORT_ERRORS = [
  'NO_ERROR',
  'INTERNAL_ERROR',
  'CONNECTION_REFUSED',
  'FLOW_CONTROL_ERROR',
  'STREAM_LIMIT_ERROR (msgtrans allows one stream per connection)',
  'STREAM_STATE_ERROR',
  'FINAL_SIZE_ERROR',
  'FRAME_ENCODING_ERROR',
  'TRANSPORT_PARAMETER_ERROR',
  'CONNECTION_ID_LIMIT_ERROR',
  'PROTOCOL_VIOLATION',
  'INVALID_TOKEN',
  'APPLICATION_ERROR',
  'CRYPTO_BUFFER_EXCEEDED',
  'KEY_UPDATE_ERROR',
  'AEAD_LIMIT_REACHED',
  'NO_VIABLE_PATH',
];
const APP_ERRORS = ['closed', 'protocol error', 'internal error'];

/** `transport error 0x12a (bad certificate …)` / `application error 1 (protocol error): reason`. */
export function describeQuicError(error: QuicheConnectionError, local: boolean, caConfigured: boolean): string {
  const reason = Buffer.from(error.reason).toString('utf8');
  const code = error.errorCode;
  let text: string;
  if (error.isApp) {
    text = `application error ${code}${APP_ERRORS[code] ? ` (${APP_ERRORS[code]})` : ''}`;
  } else if (code >= 0x100 && code <= 0x1ff) {
    text = `TLS error 0x${code.toString(16)}: ${describeAlert(code - 0x100, local, caConfigured)}`;
  } else {
    text = `transport error 0x${code.toString(16)} (${TRANSPORT_ERRORS[code] ?? 'unknown'})`;
  }
  return reason ? `${text}: ${reason}` : text;
}

/** The error for a connection quiche reports closed, or undefined for an orderly close. */
export function quicCloseError(
  peer: QuicheConnectionError | null,
  local: QuicheConnectionError | null,
  established: boolean,
  caConfigured: boolean,
): QuicConnectionError | undefined {
  const error = peer ?? local;
  if (error === null) return undefined;
  if (error.errorCode === 0) return undefined;
  const by = peer ? 'the peer' : 'this side';
  return new QuicConnectionError(
    established ? MsgTransErrorCode.CONNECTION_CLOSED : MsgTransErrorCode.CONNECT_FAILED,
    `QUIC connection closed by ${by}: ${describeQuicError(error, !peer, caConfigured)}`,
    error.errorCode,
    error.isApp,
  );
}
