import type { IncomingHttpHeaders } from 'node:http';
import type { X509Certificate } from 'node:crypto';
import type { MsgTransPacket } from '../codec/packet.js';

/** Receives what a connection delivers. Set once with {@link MsgTransConnection.open}. */
export interface MsgTransConnectionSink {
  /** A packet whose header passed validation; payload still as sent (maybe compressed). */
  onPacket(packet: MsgTransPacket): void;
  /** The connection is gone; `error` says why when it did not close normally. Called once. */
  onClose(error?: Error): void;
  /**
   * The send backlog ({@link MsgTransConnection.bufferedAmount}) fell below
   * half of `maxSendBufferSize` after a {@link MsgTransConnection.send}
   * returned false: producers that waited may go on.
   */
  onDrain?(): void;
}

/**
 * One msgtrans connection over some protocol. A protocol module implements
 * this (and {@link MsgTransListener}); the Nest layer sees nothing else.
 *
 * Implementations frame packets as their protocol requires, validate headers
 * against the configured limits before allocating, and close themselves with
 * a {@link MsgTransProtocolError} on bad input.
 */
export interface MsgTransConnection {
  /** Protocol name as it appears in URLs: `tcp`, `tls`, `ws`, `wss`, `quic`, or a custom one. */
  readonly protocol: string;
  /** The peer's address, when the protocol has one. */
  readonly remoteAddress: string | undefined;
  /** The peer's port, when the protocol has one. */
  readonly remotePort: number | undefined;
  /** The certificate the peer presented (mutual TLS), when it presented one. */
  readonly peerCertificate?: X509Certificate;
  /** WebSocket only: the headers of the upgrade request. */
  readonly upgradeHeaders?: IncomingHttpHeaders;
  /** True once {@link close} was called or the peer went away. */
  readonly closed: boolean;
  /** Starts delivering packets to `sink`. Called exactly once. */
  open(sink: MsgTransConnectionSink): void;
  /**
   * Queues one encoded packet. Writes may be coalesced; order is kept.
   * Ignored once closed. Returns false when the backlog has reached
   * `maxSendBufferSize` (like a Node stream's `write()`): the packet is still
   * queued, but the caller should hold further packets until the sink's
   * `onDrain`. A large backlog never closes the connection by itself; only a
   * peer that takes no bytes for `sendStallTimeout` while some wait is dropped
   * (`ERR_MSGTRANS_SEND_BUFFER_FULL`).
   */
  send(packet: Buffer): boolean;
  /** Bytes handed to {@link send} that the peer (or the OS) has not taken yet. */
  readonly bufferedAmount: number;
  /**
   * Closes the connection. Without `error`, queued packets are flushed first;
   * with one, the connection is torn down at once. Idempotent.
   */
  close(error?: Error): void;
  /** The underlying socket / stream, for advanced use. */
  unwrap<T = unknown>(): T;
}

/** The bound address of a listener. */
export interface MsgTransListenerAddress {
  protocol: string;
  host: string;
  port: number;
  /** A URL a client can connect to (host as bound). */
  url: string;
}

/** Accepts incoming connections for one endpoint. */
export interface MsgTransListener {
  /** Protocol name, as on the connections it produces. */
  readonly protocol: string;
  /**
   * Binds and starts accepting; rejects if the endpoint cannot be bound.
   * Errors of the listening server afterwards (EMFILE on accept, …) go to
   * `onError` instead of crashing the process.
   */
  listen(
    onConnection: (connection: MsgTransConnection) => void,
    onError?: (error: Error) => void,
  ): Promise<MsgTransListenerAddress>;
  /** Stops accepting. Connections already handed out are the caller's to close. */
  close(): Promise<void>;
  /** The underlying server, for advanced use. */
  unwrap<T = unknown>(): T;
}
