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
import { IncompleteMessageWatchdog, SendStallWatchdog } from '../connection-guards.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import { joinHeartbeat } from '../heartbeat.js';
import { WriteQueue } from '../write-queue.js';
import { encodeWsFrames } from './ws-frame-encoder.js';
import { WsFrameTracker } from './ws-frame-tracker.js';

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

// At most this much is handed to the socket at a time; the rest waits here,
// so that the stall check sees progress message by message (as on tcp).
const WRITE_WINDOW = 256 * 1024;
// How long a closing connection waits for the peer's close frame, or for any
// progress on what it still has to read.
const CLOSE_GRACE_MS = 2000;

// Follows the frames of every connection that holds no partial message: a
// connection takes a tracker of its own only while one is partly in, so an
// idle connection holds none.
let cleanFrames = new WsFrameTracker();

/**
 * A msgtrans connection over one WebSocket: one packet per binary message.
 * Ping/pong only keeps liveness: a peer from which nothing at all (not even a
 * pong) arrived for a whole heartbeat interval after a ping is terminated,
 * and nothing of it reaches the session.
 *
 * `ws` reads and answers control frames; the packets of a turn are framed
 * here (one final binary frame each) and written to the socket in one write.
 * The socket is the one the connection was upgraded on (the server's
 * `upgrade` event, the client's `upgrade` response), not a private field of
 * `ws`. Frames only go out while `ws` is OPEN, so none follows its close frame.
 */
export class WsConnection implements MsgTransConnection {
  private sink: MsgTransConnectionSink | null = null;
  // created on the first send: an idle connection holds no queue
  private queue: WriteQueue | null = null;
  // batches beyond WRITE_WINDOW, oldest first
  private held: Buffer[] | null = null;
  private heldBytes = 0;
  // frame bytes written to the socket so far; less what it still holds, about what the OS took
  private handed = 0;
  private stall: SendStallWatchdog | null = null;
  private isClosed = false;
  private closeError: Error | undefined;
  private leaveHeartbeat: (() => void) | null = null;
  private alive = true;
  private readPaused = false;
  // maxSendBufferSize, but never below the socket's high-water mark (see onSocketDrain)
  private readonly sendLimit: number;
  private drainWanted = false;
  private watchdog: IncompleteMessageWatchdog | null = null;
  // a message is partly in: the tracker following it (see cleanFrames)
  private frames: WsFrameTracker | null = null;
  // drain is listened to once something waited in the socket
  private drainListening = false;

  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;

  /**
   * @param socket the socket `ws` runs on
   * @param masked a client's frames are masked (RFC 6455 §5.3), a server's are not
   */
  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Socket,
    private readonly masked: boolean,
    readonly protocol: string,
    private readonly limits: ConnectionLimits,
    heartbeatInterval: number,
    readonly upgradeHeaders?: IncomingHttpHeaders,
    readonly peerCertificate?: X509Certificate,
  ) {
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    this.sendLimit = Math.max(limits.maxSendBufferSize, socket.writableHighWaterMark);
    // Messages that came with the upgrade response (a welcome push) would be
    // emitted before open() attaches the listener: hold them in the socket.
    if (ws.readyState === 1) ws.pause();
    ws.on('error', (err) => {
      this.closeError ??= asProtocolError(err);
    });
    ws.on('close', () => this.onSocketClose());
    // a pong is bytes from the peer: onSocketData sees it, no pong listener needed
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
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
    if (!this.readPaused) this.ws.resume();
  }

  /**
   * Every byte from the peer proves it alive (a pong may wait behind a large
   * message), and a message that starts but does not finish within
   * incompleteMessageTimeout is dropped, fragments included.
   */
  private onSocketData(chunk: Buffer): void {
    this.alive = true;
    const timeout = this.limits.incompleteMessageTimeout;
    if (timeout <= 0 || this.isClosed) return;
    const frames = this.frames ?? cleanFrames;
    const completed = frames.push(chunk);
    const pending = frames.pendingBytes;
    if (pending > 0 && frames === cleanFrames) {
      this.frames = frames;
      cleanFrames = new WsFrameTracker();
    } else if (pending === 0 && this.frames !== null) {
      this.frames = null;
    }
    if (pending > 0 || this.watchdog !== null) {
      this.watchdog ??= new IncompleteMessageWatchdog(timeout, (err) => this.close(err));
      this.watchdog.update(pending, completed > 0);
    }
  }

  get bufferedAmount(): number {
    return (this.queue?.pendingBytes ?? 0) + this.heldBytes + this.socket.writableLength;
  }

  /**
   * @internal for the stall check: bytes the OS has taken so far. Frame
   * headers still waiting count against it, so a peer that takes nothing
   * never shows progress.
   */
  get bytesTaken(): number {
    return this.handed - this.socket.writableLength;
  }

  send(packet: Buffer): boolean {
    if (!this.isClosed) (this.queue ??= new WriteQueue((items) => this.write(items))).push(packet);
    if (this.bufferedAmount < this.sendLimit) return true;
    this.drainWanted = true;
    return false;
  }

  close(error?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.stopHeartbeat();
    // the peer's close frame must be read, even if open() never came or reading was paused
    this.ws.resume();
    if (error) {
      this.closeError = error;
      this.dropBacklog();
      this.closeWith(closeCodeFor(error), error.message);
      return;
    }
    this.queue?.flushNow();
    // the close frame goes behind the last held message (see onSocketDrain)
    if (this.heldBytes === 0) this.closeWith(1000, '');
  }

  unwrap<T = unknown>(): T {
    return this.ws as T;
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.isClosed) return;
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
    // A peer that never answers the close handshake is cut off, once it has
    // taken none of what was sent before the close frame for CLOSE_GRACE_MS.
    let seen = -1;
    let timer: NodeJS.Timeout;
    const check = () => {
      const buffered = this.ws.bufferedAmount;
      if (buffered > 0 && buffered !== seen) {
        seen = buffered;
        timer = setTimeout(check, CLOSE_GRACE_MS);
        timer.unref();
        return;
      }
      this.ws.terminate();
    };
    timer = setTimeout(check, CLOSE_GRACE_MS);
    timer.unref();
    this.ws.once('close', () => clearTimeout(timer));
  }

  private write(items: Buffer[]): void {
    if (this.ws.readyState !== 1) return;
    if (this.heldBytes > 0 || this.socket.writableLength >= WRITE_WINDOW) {
      const held = (this.held ??= []);
      for (const item of items) {
        held.push(item);
        this.heldBytes += item.length;
      }
    } else {
      this.sendNow(items, items.length);
    }
    this.afterWrite();
  }

  /** Writes the first `count` items, one frame each, in one write where they fit one buffer. */
  private sendNow(items: Buffer[], count: number): void {
    const socket = this.socket;
    const chunks = encodeWsFrames(items, 0, count, this.masked);
    if (chunks.length === 1) {
      this.handed += chunks[0].length;
      socket.write(chunks[0]);
      return;
    }
    socket.cork();
    for (const chunk of chunks) {
      this.handed += chunk.length;
      socket.write(chunk);
    }
    socket.uncork();
  }

  /** Writes held messages until `window` bytes wait in the socket. */
  private sendHeld(window: number): void {
    const held = this.held;
    if (held === null || this.heldBytes === 0 || this.ws.readyState !== 1) return;
    let count = 0;
    let bytes = this.socket.writableLength;
    while (count < held.length && bytes < window) bytes += held[count++].length;
    if (count === 0) return;
    this.held = count === held.length ? null : held.slice(count);
    for (let i = 0; i < count; i++) this.heldBytes -= held[i].length;
    this.sendNow(held, count);
  }

  /**
   * The socket took everything handed to it. Drain is the progress signal
   * rather than a send callback per batch (which costs a tick each): bytes
   * are only held, or send() only reports a full backlog, above the socket's
   * high-water mark, and then Node always emits drain.
   */
  private onSocketDrain(): void {
    if (this.ws.readyState > 1) return;
    if (this.heldBytes === 0) return this.afterWrite();
    this.sendHeld(WRITE_WINDOW);
    // a graceful close waited for the held messages
    if (this.isClosed && this.heldBytes === 0) this.closeWith(1000, '');
    this.afterWrite();
  }

  /** Backpressure bookkeeping after anything was handed over or taken. */
  private afterWrite(): void {
    if (this.socket.writableLength > 0 || this.heldBytes > 0) {
      (this.stall ??= new SendStallWatchdog(this.limits.sendStallTimeout, this, (error) => this.onStalled(error))).arm();
      if (!this.drainListening) {
        // drain follows a write that filled the socket, always on a later tick
        this.drainListening = true;
        this.socket.on('drain', () => this.onSocketDrain());
      }
    }
    const buffered = this.bufferedAmount;
    const limit = this.sendLimit;
    if (!this.readPaused && buffered >= limit && !this.isClosed) {
      // stop taking requests from a peer that is not taking replies
      this.readPaused = true;
      this.ws.pause();
    } else if (buffered < limit / 2) {
      if (this.readPaused) {
        this.readPaused = false;
        if (!this.isClosed && this.sink !== null) this.ws.resume();
      }
      if (this.drainWanted) {
        this.drainWanted = false;
        this.sink?.onDrain?.();
      }
    }
  }

  private onStalled(error: Error): void {
    if (!this.isClosed) return this.close(error);
    // a graceful close still waiting to hand over held messages
    this.closeError ??= error;
    this.dropBacklog();
    this.ws.terminate();
  }

  /** @internal heartbeat tick: ping, or drop a peer that sent nothing since the last one. */
  beat(): void {
    if (!this.alive && !this.readPaused) {
      this.closeError = new MsgTransConnectionError(
        MsgTransErrorCode.HEARTBEAT_TIMEOUT,
        'Peer missed its heartbeat: nothing, not even a pong, arrived for a whole interval after a ping',
      );
      this.isClosed = true;
      this.stopHeartbeat();
      this.dropBacklog();
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  private dropBacklog(): void {
    this.stall?.stop();
    this.queue?.clear();
    this.held = null;
    this.heldBytes = 0;
  }

  private stopHeartbeat(): void {
    this.leaveHeartbeat?.();
    this.leaveHeartbeat = null;
    this.watchdog?.stop();
  }

  private onSocketClose(): void {
    this.isClosed = true;
    this.stopHeartbeat();
    this.dropBacklog();
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
