/**
 * How a session ended, as the server saw it, classified for the fuzzer:
 * a violation (its code), a plain end, or an error that is neither a
 * violation nor the peer going away (an internal error worth reporting:
 * the session layer turns exceptions it catches into closes, which would
 * otherwise hide a bug behind a closed connection).
 */
import type { MsgTransServer } from '../../lib/index.js';
import { MsgTransError, MsgTransLimitError, MsgTransProtocolError } from '../../lib/index.js';
import type { DisconnectReport } from './fuzz-runner.js';

const PEER_GONE_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED']);

export function classifyEnd(error: Error | undefined): { code: string | null; internal?: string } {
  if (!error) return { code: null };
  if (error instanceof MsgTransProtocolError || error instanceof MsgTransLimitError) return { code: error.code };
  if (error instanceof MsgTransError) return { code: null };
  const code = (error as NodeJS.ErrnoException).code;
  if (code && PEER_GONE_CODES.has(code)) return { code: null };
  // @matrixai/quic reports the peer closing / the idle timeout as its own error classes
  if (error.name.startsWith('ErrorQUIC')) return { code: null };
  // ... and a stream the peer reset or stopped as `new Error('read <code>' | 'write <code>')` (its default codeToReason)
  if (error.constructor === Error && /^(read|write) \d+$/.test(error.message)) return { code: null };
  return { code: null, internal: `${error.name}: ${error.message}${error.stack ? `\n${error.stack.split('\n').slice(1, 6).join('\n')}` : ''}` };
}

/** Calls `report` for every session end of `server`. */
export function reportDisconnects(server: MsgTransServer, report: (r: DisconnectReport) => void): void {
  server.on('disconnect', (session, error) => {
    const { code, internal } = classifyEnd(error);
    report({ protocol: session.protocol, port: session.connection.remotePort, code, internal });
  });
}
