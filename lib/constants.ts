/**
 * Every default in one place. Options documented elsewhere refer here.
 */
export const MSGTRANS_DEFAULTS = {
  /** Largest packet (header + extension header + payload), and largest decompressed payload: 16 MiB. */
  maxPacketSize: 16 * 1024 * 1024,
  /** Largest extension header accepted: 16 KiB (the wire allows 64 KiB). */
  maxExtHeaderSize: 16 * 1024,
  /** Server: sessions held at once; more connections are refused. */
  maxConnections: 10_000,
  /** Requests from one peer being answered at once; more closes that connection. */
  maxInFlight: 4096,
  /** ms a packet may take from its first byte to its last; a stalled one closes the connection. */
  incompleteMessageTimeout: 30_000,
  /** Unsent bytes queued for one peer at which producers wait and reading pauses (backpressure). */
  maxSendBufferSize: 8 * 1024 * 1024,
  /** ms bytes may wait for a peer that takes none of them before it is dropped as not reading. */
  sendStallTimeout: 30_000,
  /**
   * Values one streamed reply may hold (unencoded, by reference) while the
   * connection is congested; one more fails that reply with
   * `ERR_MSGTRANS_STREAM_BACKLOG_FULL`.
   */
  maxStreamBacklog: 65_536,
  /** Server: ms close() waits for requests in flight before ending connections. */
  shutdownTimeout: 5_000,
  /** Server with `authenticate`: ms to wait for a client's credentials before deciding without them. */
  authTimeout: 5_000,
  /** Server with `authenticate`: messages a connection may send before it is accepted (held undecoded). */
  maxPreAuthMessages: 1024,
  /** Server with `authenticate`: bytes of those messages, as sent (compressed), the first message aside. */
  maxPreAuthBytes: 1024 * 1024,
  /** Server with `authenticate`: answer `msgtrans.health` before a connection is accepted. */
  healthBeforeAuth: false,
  /** Client: ms a request waits for its reply, or for the next value of a stream. 0 disables. */
  requestTimeout: 30_000,
  /** Client: ms to establish a connection. */
  connectTimeout: 10_000,
  /** ms between liveness probes (WebSocket ping, QUIC keep-alive, tcp/tls SO_KEEPALIVE and heartbeat packets); a peer silent for about two intervals is dropped. */
  heartbeatInterval: 15_000,
  /** tcp/tls: send heartbeats only to peers seen to speak Part B (`'auto'`), or to every peer (`'always'`). */
  heartbeat: 'auto',
  /** Client: automatic reconnection after a drop. */
  reconnect: { initialDelay: 100, maxDelay: 5000, factor: 2, jitter: 0.2, maxAttempts: Infinity },
  /** Client: calls that may wait for a (re)connection at once. */
  maxQueuedCalls: 10_000,
  /** Client: what calls do while not connected (see `whileDisconnected`). */
  whileDisconnected: 'auto',
  /** Client: retry a failed first connection as after a drop, without push subscribers too. */
  keepConnected: false,
  /** Client with several replicas: how each call picks one. */
  loadBalancing: 'round-robin',
  /** Client with several replicas: a call whose connection failed before it was written tries another replica. */
  retryOnConnectFailure: true,
  /** Client: ms between DNS resolutions of `dns://` URLs. */
  dnsRefreshInterval: 30_000,
  /** Server adapter: ms a cluster query, or each value of a request relayed to another instance, may take. */
  adapterRequestTimeout: 30_000,
  /** Server in a `node:cluster` worker: a quic:// endpoint is refused unless each worker has its own port ('own-port'). */
  quicInClusterWorker: 'refuse',
  /** Server adapter: ms between an instance's heartbeats; an instance silent for 3 of them is taken as gone. */
  adapterHeartbeatInterval: 5_000,
  /** Payloads at least this large are compressed, when compression is configured. */
  compressionThreshold: 1024,
  /** QUIC (`new QuicProtocol({...})` in `protocols`); see QuicProtocolOptions. */
  quic: {
    /** Application protocol (ALPN) offered and required. */
    alpn: 'msgtrans',
    /** Largest UDP payload: fits a 1,500-byte MTU with room for IPv6 and tunnel headers. */
    maxDatagramSize: 1350,
    /** Server: validate client addresses with a Retry before keeping state. */
    retry: true,
    /** Server: ms a client has to finish the handshake and open its stream. */
    handshakeTimeout: 10_000,
    /** Largest UDP payload toward this host (loopback address): its 64 KiB MTU never fragments. */
    loopbackDatagramSize: 65527,
  },
} as const;

/**
 * Transport id of {@link MsgTransServer}. Bind a handler to this transport
 * alone in a hybrid app: `@MessagePattern('x', MSGTRANS_TRANSPORT)`.
 */
export const MSGTRANS_TRANSPORT: unique symbol = Symbol('MSGTRANS_TRANSPORT');

/** Error sent for a request whose pattern has no handler (Nest's own wording). */
export const NO_MESSAGE_HANDLER = 'There is no matching message handler defined in the remote service.';
