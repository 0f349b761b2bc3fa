import type { CompressionAlgorithm } from '../codec/compression.js';
import type { MsgTransCodec } from '../envelope/msgtrans-codec.interface.js';
import type { MsgTransEndpointOptions } from '../transport/endpoint.js';
import type { MsgTransListener } from '../transport/msgtrans-connection.interface.js';
import type { MsgTransProtocol } from '../transport/msgtrans-protocol.interface.js';
import type { MsgTransTlsOptions } from '../transport/tls-options.interface.js';

/** Payload compression for packets this side sends. Receiving always accepts zlib and zstd. */
export interface MsgTransCompressionOptions {
  /** `zlib` (Node's) or `zstd` (Node's where present, else the `zstd-napi` binding). */
  algorithm: CompressionAlgorithm;
  /** Compress payloads of at least this many bytes. Default 1024. */
  threshold?: number;
}

/** Options shared by the server and the client. Defaults: `MSGTRANS_DEFAULTS`. */
export interface MsgTransCommonOptions {
  /**
   * Largest packet accepted, checked from the header before anything is
   * allocated; also the bound for a decompressed payload. Default 16 MiB.
   */
  maxPacketSize?: number;
  /** Largest extension header (route + metadata) accepted. Default 16 KiB. */
  maxExtHeaderSize?: number;
  /** Encoding of non-binary data. Default JSON ({@link JsonCodec}). Both ends must agree. */
  codec?: MsgTransCodec;
  /** Compress outgoing payloads. Default: off. */
  compression?: MsgTransCompressionOptions;
  /**
   * ms between liveness probes: WebSocket ping/pong, QUIC keep-alive. A peer
   * that stays silent for a whole interval after a probe is dropped. 0
   * disables. Default 15000.
   */
  heartbeatInterval?: number;
  /** Extra protocols beyond the built-in ones, keyed by URL scheme. */
  protocols?: MsgTransProtocol[];
}

/** One entry of the server's `listen` option. */
export type MsgTransListenInput = string | MsgTransEndpointOptions | MsgTransListener;

/** Options of {@link MsgTransServer}. */
export interface MsgTransServerOptions extends MsgTransCommonOptions {
  /**
   * Endpoints to serve, e.g. `'tcp://0.0.0.0:8001'`, `'tls://0.0.0.0:8443'`,
   * an endpoint object, or a ready-made listener of a custom protocol.
   * Port 0 picks a free port; see `MsgTransServer#addresses()`.
   */
  listen: MsgTransListenInput | MsgTransListenInput[];
  /** Certificate and key for every TLS endpoint (an endpoint's own `tls` overrides it). */
  tls?: MsgTransTlsOptions;
}

/** Options of {@link MsgTransClient}. */
export interface MsgTransClientOptions extends MsgTransCommonOptions {
  /** Where to connect, e.g. `'tcp://127.0.0.1:8001'` or `'tls://service:8443'`. */
  url: string | MsgTransEndpointOptions;
  /** TLS settings for `tls://` URLs (CA to trust, client certificate for mutual TLS). */
  tls?: MsgTransTlsOptions;
  /** ms a request waits for its reply (or the next streamed value). 0 disables. Default 30000. */
  requestTimeout?: number;
  /** ms to establish the connection. Default 10000. */
  connectTimeout?: number;
}
