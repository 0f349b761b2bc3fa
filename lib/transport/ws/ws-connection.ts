import type { X509Certificate } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { decodePacket } from '../../codec/packet-decoder.js';
import { MsgTransErrorCode } from '../../errors/error-codes.js';
import { MsgTransConnectionError } from '../../errors/msgtrans-connection-error.js';
import { MsgTransLimitError } from '../../errors/msgtrans-limit-error.js';
import { MsgTransProtocolError } from '../../errors/msgtrans-protocol-error.js';
import type { MsgTransConnection, MsgTransConnectionSink } from '../msgtrans-connection.interface.js';
import { IncompleteMessageWatchdog, sendBufferFull } from '../connection-guards.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import { joinHeartbeat } from '../heartbeat.js';
import { WriteQueue } from '../write-queue.js';

/** Close code for a text frame: "unsupported data" (RFC 6455 §7.4.1). */
const CLOSE_UNSUPPORTED_DATA = 1003;
/** Close code for a protocol violation. */
const CLOSE_PROTOCOL_ERROR = 1002;
/** Close code for a packet over the size limit. */
const CLOSE_TOO_BIG = 1009;
/** Close code for a failure on our side. */
const CLOSE_INTERNAL_ERROR = 1011;
/** Close code for a peer past one of our limits. */
const CLOSE_POLICY_VIOLATION = 1008;
/** Close code for a connection refused because the server is full. */
const CLOSE_TRY_AGAIN_LATER = 1013;

/**
 * A msgtrans connection over one WebSocket: one packet per binary message.
 * Ping/pong only keeps liveness: a peer that misses a whole heartbeat
 * interval is terminated, and nothing of it reaches the session.
 */
export class WsConnection implements MsgTransConnection {
  private sink: MsgTransConnectionSink | null = null;
  private readonly queue = new WriteQueue((items) => this.write(items));
  private isClosed = false;
  private closeError: Error | undefined;
  private leaveHeartbeat: (() => void) | null = null;
  private alive = true;
  private readPaused = false;
  private watchdog: IncompleteMessageWatchdog | null = null;
  private received = 0;

  constructor(
    private readonly ws: WebSocket,
    readonly protocol: string,
    private readonly limits: ConnectionLimits,
    readonly remoteAddress: string | undefined,
    readonly remotePort: number | undefined,
    heartbeatInterval: number,
    readonly upgradeHeaders?: IncomingHttpHeaders,
    readonly peerCertificate?: X509Certificate,
  ) {
    ws.on('error', (err) => {
      this.closeError ??= asProtocolError(err);
    });
    ws.once('close', () => this.onSocketClose());
    ws.on('pong', () => {
      this.alive = true;
    });
    if (heartbeatInterval > 0) this.leaveHeartbeat = joinHeartbeat(heartbeatInterval, this);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  open(sink: MsgTransConnectionSink): void {
    this.sink = sink;
    if (this.ws.readyState > 1) {
      this.onSocketClose();
      return;
    }
    this.ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    this.watchIncompleteFrames();
  }

  /**
   * ws assembles frames itself, so a peer that sends part of a message and
   * stalls is invisible to us: after each chunk ws has parsed, look at what
   * its receiver still holds (a private field; ws offers no public one).
   */
  private watchIncompleteFrames(): void {
    const socket = (this.ws as unknown as { _socket?: Socket })._socket;
    const receiver = (this.ws as unknown as { _receiver?: { _bufferedBytes?: number } })._receiver;
    if (!socket || typeof receiver?._bufferedBytes !== 'number' || this.limits.incompleteMessageTimeout <= 0) return;
    let seen = this.received;
    // registered after ws's own listener, so it runs once ws has consumed the chunk
    socket.on('data', () => {
      const pending = receiver._bufferedBytes ?? 0;
      if (pending > 0 || this.watchdog !== null) {
        this.watchdog ??= new IncompleteMessageWatchdog(this.limits.incompleteMessageTimeout, (err) => this.close(err));
        this.watchdog.update(pending, this.received !== seen);
      }
      seen = this.received;
    });
  }

  get bufferedAmount(): number {
    return this.queue.pendingBytes + this.ws.bufferedAmount;
  }

  send(packet: Buffer): boolean {
    if (!this.isClosed) this.queue.push(packet);
    return this.bufferedAmount < this.limits.maxSendBufferSize;
  }

  close(error?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.stopHeartbeat();
    if (error) {
      this.closeError = error;
      this.queue.clear();
      this.closeWith(closeCodeFor(error), error.message);
      return;
    }
    this.queue.flushNow();
    this.closeWith(1000, '');
  }

  unwrap<T = unknown>(): T {
    return this.ws as T;
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.isClosed) return;
    this.alive = true;
    this.received++;
    if (!isBinary) {
      this.close(new MsgTransProtocolError(MsgTransErrorCode.UNSUPPORTED_MESSAGE, 'Text messages are not part of msgtrans'));
      return;
    }
    try {
      this.sink?.onPacket(decodePacket(data, this.limits));
    } catch (err) {
      this.close(err as Error);
    }
  }

  private closeWith(code: number, reason: string): void {
    // close reasons are limited to 123 bytes; cut on a character boundary
    let text = reason;
    while (Buffer.byteLength(text) > 123) text = text.slice(0, -1);
    try {
      this.ws.close(code, text);
    } catch {
      this.ws.terminate();
      return;
    }
    // a peer that never answers the close handshake is cut off
    const timer = setTimeout(() => this.ws.terminate(), 2000);
    timer.unref();
    this.ws.once('close', () => clearTimeout(timer));
  }

  private write(items: Buffer[]): void {
    if (this.ws.readyState !== 1) return;
    // What is still unsent from earlier batches is what the peer failed to read.
    const unsent = this.ws.bufferedAmount;
    if (unsent > this.limits.maxSendBufferSize) {
      this.close(sendBufferFull(unsent, this.limits.maxSendBufferSize));
      return;
    }
    // ws writes every frame separately; corking its socket makes a burst one writev.
    const socket = (this.ws as unknown as { _socket?: Socket })._socket;
    socket?.cork();
    for (const item of items) this.ws.send(item, { binary: true, compress: false });
    socket?.uncork();
    if (socket && !this.readPaused && this.ws.bufferedAmount > this.limits.maxSendBufferSize / 2) {
      // backpressure: stop taking requests from a peer that is not taking replies
      this.readPaused = true;
      this.ws.pause();
      socket.once('drain', () => {
        this.readPaused = false;
        if (!this.isClosed) this.ws.resume();
      });
    }
  }

  /** @internal heartbeat tick: ping, or drop a peer that did not answer the last one. */
  beat(): void {
    if (!this.alive) {
      this.closeError = new MsgTransConnectionError(MsgTransErrorCode.CONNECTION_CLOSED, 'Peer missed its heartbeat');
      this.isClosed = true;
      this.stopHeartbeat();
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  private stopHeartbeat(): void {
    this.leaveHeartbeat?.();
    this.leaveHeartbeat = null;
    this.watchdog?.stop();
  }

  private onSocketClose(): void {
    this.isClosed = true;
    this.stopHeartbeat();
    this.queue.clear();
    const sink = this.sink;
    this.sink = null;
    sink?.onClose(this.closeError);
  }
}

function closeCodeFor(error: Error): number {
  if (error instanceof MsgTransLimitError) {
    return error.code === MsgTransErrorCode.TOO_MANY_CONNECTIONS ? CLOSE_TRY_AGAIN_LATER : CLOSE_POLICY_VIOLATION;
  }
  if (!(error instanceof MsgTransProtocolError)) return CLOSE_INTERNAL_ERROR;
  if (error.code === MsgTransErrorCode.UNSUPPORTED_MESSAGE) return CLOSE_UNSUPPORTED_DATA;
  if (error.code === MsgTransErrorCode.PACKET_TOO_LARGE) return CLOSE_TOO_BIG;
  return CLOSE_PROTOCOL_ERROR;
}

/** ws reports bad frames from the peer as plain errors with WS_ERR_* codes: they are the peer's fault. */
function asProtocolError(err: Error): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
    return new MsgTransProtocolError(MsgTransErrorCode.PACKET_TOO_LARGE, err.message, { cause: err });
  }
  if (code?.startsWith('WS_ERR_')) return new MsgTransProtocolError(MsgTransErrorCode.BAD_FRAME, err.message, { cause: err });
  return err;
}
