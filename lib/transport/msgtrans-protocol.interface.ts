import type { PacketLimits } from '../codec/packet.js';
import type { MsgTransConnection, MsgTransListener } from './msgtrans-connection.interface.js';
import type { MsgTransEndpoint } from './endpoint.js';
import type { MsgTransTlsOptions } from './tls-options.interface.js';

/** Limits a connection enforces by itself. */
export interface ConnectionLimits extends PacketLimits {
  /** ms from a packet's first byte to its last before the connection is closed; 0 disables. */
  incompleteMessageTimeout: number;
  /** Backlog at which `send()` returns false and reading pauses (backpressure); producers resume below half. */
  maxSendBufferSize: number;
  /** ms a non-empty backlog may go without the peer taking a byte before the peer is dropped as not reading. */
  sendStallTimeout: number;
  /**
   * Byte streams (tcp, tls): `'auto'` runs the application heartbeat only
   * toward a peer seen to speak Part B; `'always'` toward every peer.
   * Default `'auto'`.
   */
  heartbeat?: MsgTransHeartbeatMode;
}

/** When a byte-stream connection sends heartbeats (CANCEL for id 0); see PROTOCOL.md, Liveness. */
export type MsgTransHeartbeatMode = 'auto' | 'always';

/** What a protocol needs to build a listener. */
export interface MsgTransListenContext {
  limits: ConnectionLimits;
  /** Server-wide TLS merged with the endpoint's own; set for TLS schemes. */
  tls: MsgTransTlsOptions | undefined;
  /** ms between liveness probes (ping, keep-alive); a peer silent for two is dropped. 0 disables. */
  heartbeatInterval: number;
}

/** What a protocol needs to open a client connection. */
export interface MsgTransConnectContext {
  limits: ConnectionLimits;
  tls: MsgTransTlsOptions | undefined;
  /** Give up connecting after this many ms. */
  connectTimeout: number;
  /** As for listeners. */
  heartbeatInterval: number;
}

/**
 * A protocol: the URL schemes it answers to, how to listen and how to
 * connect. TCP/TLS is built in; pass your own in the `protocols` option of
 * the server and client to add one.
 */
export interface MsgTransProtocol {
  /** URL schemes handled, e.g. `['tcp', 'tls']`. */
  readonly schemes: readonly string[];
  createListener(endpoint: MsgTransEndpoint, context: MsgTransListenContext): MsgTransListener;
  connect(endpoint: MsgTransEndpoint, context: MsgTransConnectContext): Promise<MsgTransConnection>;
}
