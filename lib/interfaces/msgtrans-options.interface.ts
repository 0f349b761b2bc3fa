import type { CompressionAlgorithm } from '../codec/compression.js';
import type { MsgTransCodec } from '../envelope/msgtrans-codec.interface.js';
import type { MsgTransEndpointOptions } from '../transport/endpoint.js';
import type { MsgTransListener } from '../transport/msgtrans-connection.interface.js';
import type { MsgTransHeartbeatMode, MsgTransProtocol } from '../transport/msgtrans-protocol.interface.js';
import type { MsgTransTlsOptions } from '../transport/tls-options.interface.js';
import type { MsgTransAuthenticate } from '../server/session-authenticator.js';
import type { MsgTransLoadBalancing } from '../client/load-balancer.js';
import type { MsgTransAdapter } from '../server/msgtrans-adapter.interface.js';
import type { MsgTransHealthCheck } from '../health/msgtrans-health.js';
import type { MsgTransTelemetryOptions } from '../otel/telemetry-options.interface.js';

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
  /** ms from a packet's first byte to its last; a peer that stalls mid-packet is dropped. 0 disables. Default 30000. */
  incompleteMessageTimeout?: number;
  /**
   * Unsent bytes that may wait for one peer. At this backlog the connection
   * stops reading and producers (stream replies, calls, pushes) wait until
   * it falls below half (backpressure). Default 8 MiB.
   */
  maxSendBufferSize?: number;
  /**
   * ms unsent bytes may wait while the peer takes none of them; then the
   * peer counts as not reading and is dropped (`ERR_MSGTRANS_SEND_BUFFER_FULL`).
   * A peer that reads, however slowly, is never dropped for it. Default 30000.
   */
  sendStallTimeout?: number;
  /**
   * Values one streamed reply may hold while the connection is congested
   * (backpressure): they wait as references, unencoded, and are encoded as
   * the connection drains. One more fails that reply (not the connection)
   * with `ERR_MSGTRANS_STREAM_BACKLOG_FULL`. Default 65536.
   */
  maxStreamBacklog?: number;
  /** Requests from the peer being answered at once; one more closes the connection. Default 4096. */
  maxInFlight?: number;
  /**
   * ms between liveness probes: WebSocket ping/pong, QUIC keep-alive, on
   * tcp/tls SO_KEEPALIVE plus heartbeat packets (see {@link heartbeat}). A
   * peer silent for about two intervals is dropped. 0 disables. Default 15000.
   */
  heartbeatInterval?: number;
  /**
   * tcp/tls: toward whom heartbeat packets (a CANCEL for message id 0) are
   * sent. `'auto'`: only to a peer seen to speak Part B (it has sent a
   * packet with a Part B flag), so a plain msgtrans peer never gets one and
   * relies on SO_KEEPALIVE; `'always'`: to every peer, for a peer known to
   * ignore them. Default `'auto'`.
   */
  heartbeat?: MsgTransHeartbeatMode;
  /** Extra protocols beyond the built-in ones, keyed by URL scheme. */
  protocols?: MsgTransProtocol[];
  /**
   * OpenTelemetry tracing and metrics (see {@link MsgTransTelemetryOptions}).
   * Default: the providers registered globally, if any; none, nothing is done.
   */
  telemetry?: MsgTransTelemetryOptions;
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
  /** Sessions held at once; further connections are refused (and counted). Default 10000. */
  maxConnections?: number;
  /** ms `close()` waits for requests in flight before ending connections. Default 5000. */
  shutdownTimeout?: number;
  /**
   * Decides who may talk to handlers (see {@link MsgTransAuthenticate}). Until
   * it accepts a connection, nothing the connection sends reaches a handler.
   * Default: everyone is accepted.
   */
  authenticate?: MsgTransAuthenticate;
  /** ms to wait for a client's credentials before calling `authenticate` without them. Default 5000. */
  authTimeout?: number;
  /**
   * Messages a connection may send before `authenticate` accepts it. They
   * are held as received (neither decompressed nor decoded) and handled once
   * it is accepted; one more closes the connection (`ERR_MSGTRANS_PRE_AUTH_LIMIT`).
   * The first message is always held. Default 1024.
   */
  maxPreAuthMessages?: number;
  /**
   * Bytes (as sent, compressed or not) of the messages held before
   * `authenticate` accepts a connection; past this it is closed
   * (`ERR_MSGTRANS_PRE_AUTH_LIMIT`). The first message is always held,
   * whatever its size up to `maxPacketSize`. Default 1 MiB.
   */
  maxPreAuthBytes?: number;
  /** ms a request pushed to a client (`sessions.sendTo`) waits for its reply. 0 disables. Default 30000. */
  requestTimeout?: number;
  /**
   * Makes `sessions` (rooms, pushes, `sendTo`, presence) span every instance
   * sharing it, e.g. `new MsgTransRedisAdapter({ url })` from
   * `nestjs-msgtrans/redis`. Default: this process only.
   */
  adapter?: MsgTransAdapter;
  /**
   * In a `node:cluster` worker, a `quic://` endpoint is refused
   * (`ERR_MSGTRANS_QUIC_CLUSTER_PORT`, workers cannot share a UDP port)
   * unless this is `'own-port'`: you give each worker a port of its own
   * (port 0 is still refused: in a worker it is shared). Default `'refuse'`.
   */
  quicInClusterWorker?: 'refuse' | 'own-port';
  /**
   * Named checks the reserved `msgtrans.health` route answers for, by
   * service name (the grpc.health.v1 model; `''`, the whole server, is
   * always there and needs none). Default: none.
   */
  healthChecks?: Record<string, MsgTransHealthCheck>;
  /**
   * With `authenticate`: answer `msgtrans.health` from connections not
   * accepted yet (load balancer and Kubernetes probes without credentials).
   * Default false: a probe is answered once its connection is accepted.
   */
  healthBeforeAuth?: boolean;
}

/**
 * Automatic reconnection after a connection that was up goes away, and
 * retries of a failed first connection when something wants the connection
 * (`keepConnected`, push subscribers, `whileDisconnected: 'wait'` calls).
 * Delays grow exponentially from `initialDelay` to `maxDelay`, each
 * randomised by ±`jitter` so that many clients do not reconnect in lockstep.
 * The client's `status` is `reconnecting` meanwhile.
 */
export interface MsgTransReconnectOptions {
  /** ms before the first attempt. Default 100. */
  initialDelay?: number;
  /** Largest ms between attempts. Default 5000. */
  maxDelay?: number;
  /** Growth of the delay per attempt. Default 2. */
  factor?: number;
  /** Random spread of each delay, as a fraction (0.2 = ±20%). Default 0.2. */
  jitter?: number;
  /** Attempts before giving up (the next call then tries once more). Default: unlimited. */
  maxAttempts?: number;
}

/** Options of {@link MsgTransClient}. */
export interface MsgTransClientOptions extends MsgTransCommonOptions {
  /**
   * Where to connect, e.g. `'tcp://127.0.0.1:8001'` or `'tls://service:8443'`;
   * a list for a service with several replicas (one connection each, calls
   * spread by `loadBalancing`). `dns://name:port` (tcp) or
   * `dns+<scheme>://name:port` connects to every A/AAAA address of `name`,
   * re-resolved every `dnsRefreshInterval` ms (a Kubernetes headless service).
   */
  url: string | MsgTransEndpointOptions | (string | MsgTransEndpointOptions)[];
  /**
   * With several replicas: `'round-robin'` (default) or `'least-pending'`
   * (the replica with the fewest calls awaiting a reply). Events follow the
   * same choice; pushes from every replica reach `incoming()`.
   */
  loadBalancing?: MsgTransLoadBalancing;
  /**
   * With several replicas: a call whose connection failed before its
   * request was written (refused, unreachable) is sent to another replica
   * instead of failing. Never after it was written; see `idempotentPatterns`. Default true.
   */
  retryOnConnectFailure?: boolean;
  /**
   * Patterns safe to run twice: such a call whose connection drops after its
   * request was written but before any reply arrived is sent once more (to
   * another replica when one is connected). Default: none.
   */
  idempotentPatterns?: unknown[];
  /** ms between DNS resolutions of `dns://` URLs. Default 30000. */
  dnsRefreshInterval?: number;
  /** TLS settings for `tls://` URLs (CA to trust, client certificate for mutual TLS). */
  tls?: MsgTransTlsOptions;
  /**
   * ms a call may take: it bounds the wait for a connection, then the wait
   * for the reply (and for each further streamed value). A
   * `MsgTransRecord` may set its own. 0 disables. Default 30000.
   */
  requestTimeout?: number;
  /** ms one connection attempt may take (TCP/TLS handshake, WebSocket upgrade, QUIC handshake). Default 10000. */
  connectTimeout?: number;
  /**
   * Sent first on every connection (a `msgtrans.auth` request) for the
   * server's `authenticate` hook, e.g. `{ token }`. Only a refusal by the
   * server fails `connect()` and the calls waiting on it with
   * `ERR_MSGTRANS_AUTH_FAILED` and stops reconnecting; a connection that
   * drops (or times out) while presenting them is a connection failure,
   * retried like any other.
   */
  credentials?: unknown;
  /** Reconnect automatically after a drop (see {@link MsgTransReconnectOptions}), or `false`. Default: on. */
  reconnect?: MsgTransReconnectOptions | false;
  /**
   * What calls do while the client is not connected. In every mode a call's
   * timeout (`requestTimeout`, or its record's) bounds the whole call,
   * waiting included, and at most `maxQueuedCalls` calls wait.
   * - `'auto'` (default): calls wait while a connection attempt is under
   *   way (the first one, or a reconnection that has not failed yet). Once
   *   an attempt fails (refused, unreachable, TLS error), calls fail at once
   *   with `ERR_MSGTRANS_CONNECT_FAILED` naming the cause (`cause` holds
   *   it) until an attempt succeeds; reconnection goes on in the background.
   *   This is Nest's TCP client and gRPC without wait-for-ready.
   * - `'wait'`: calls wait for the service to come up (gRPC wait-for-ready),
   *   through failed attempts, retried with the reconnect backoff.
   * - `'fail'`: calls fail at once with `ERR_MSGTRANS_CONNECTION_CLOSED`
   *   whenever the client is reconnecting.
   */
  whileDisconnected?: 'auto' | 'wait' | 'fail';
  /**
   * Keep trying to connect: a first connection that fails is retried with
   * the reconnect backoff, as after a drop, instead of waiting for the next
   * call. A client with push subscribers (`incoming()`,
   * `incomingMessages()`, `answer()`) does so anyway. Connecting starts with
   * `connect()`, the first call or the first push subscriber. Default false.
   */
  keepConnected?: boolean;
  /** Calls allowed to wait for a connection; more fail with `ERR_MSGTRANS_QUEUE_FULL`. Default 10000. */
  maxQueuedCalls?: number;
}
