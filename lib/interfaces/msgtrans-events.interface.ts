import type { MsgTransSession } from '../session/msgtrans-session.js';
import type { MsgTransListenerAddress } from '../transport/msgtrans-connection.interface.js';

/** Events of {@link MsgTransServer}, for `server.on(event, callback)`. */
export type MsgTransServerEvents = {
  /** A connection was accepted and is now a session. */
  connect: (session: MsgTransSession) => void;
  /** A session ended; `error` says why when it was not a normal close. */
  disconnect: (session: MsgTransSession, error: Error | undefined) => void;
  /** Something went wrong: a listener failed, or a session was closed for bad input. */
  error: (error: Error, session: MsgTransSession | undefined) => void;
  /** Every endpoint is bound. */
  listening: (addresses: MsgTransListenerAddress[]) => void;
};

/** Events of {@link MsgTransClient}, for `client.on(event, callback)`. */
export type MsgTransClientEvents = {
  /** The connection is up. */
  connect: (session: MsgTransSession) => void;
  /** The connection went away; `error` says why when it was not a normal close. */
  disconnect: (error: Error | undefined) => void;
  /** A connection attempt failed or the connection broke. */
  error: (error: Error) => void;
};

/** Status values of the server and the client, as Nest's TCP transport names them. */
export const MsgTransStatus = {
  CONNECTED: 'connected',
  DISCONNECTED: 'disconnected',
  /** Client only: the connection dropped and automatic reconnection is under way. */
  RECONNECTING: 'reconnecting',
} as const;
export type MsgTransStatus = (typeof MsgTransStatus)[keyof typeof MsgTransStatus];

/**
 * Where the client's connection is (`MsgTransClient#state`). `status`
 * reports the coarser Nest view: `connected` in CONNECTED, `reconnecting`
 * while a reconnection is under way, `disconnected` in IDLE and CLOSED.
 */
export const MsgTransConnectionState = {
  /** Not connected and not trying: before first use, or after a failed connection that is not retried. */
  IDLE: 'idle',
  /** Opening the transport connection (TCP, TLS, WebSocket upgrade, QUIC handshake). */
  CONNECTING: 'connecting',
  /** Connected; the `credentials` are being presented and the server has not answered yet. */
  AUTHENTICATING: 'authenticating',
  /** Calls go out at once. */
  CONNECTED: 'connected',
  /** Waiting out the backoff delay before the next connection attempt. */
  RECONNECTING: 'reconnecting',
  /** `close()` was called. A later call or `connect()` starts again, as with Nest's clients. */
  CLOSED: 'closed',
} as const;
export type MsgTransConnectionState = (typeof MsgTransConnectionState)[keyof typeof MsgTransConnectionState];
