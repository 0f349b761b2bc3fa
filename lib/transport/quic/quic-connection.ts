import { X509Certificate } from 'node:crypto';
import { decodePacket } from '../../codec/packet-decoder.js';
import { MsgTransErrorCode } from '../../errors/error-codes.js';
import { MsgTransProtocolError } from '../../errors/msgtrans-protocol-error.js';
import { IncompleteMessageWatchdog, sendBufferFull } from '../connection-guards.js';
import { joinHeartbeat, type HeartbeatMember } from '../heartbeat.js';
import type { MsgTransConnection, MsgTransConnectionSink } from '../msgtrans-connection.interface.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import { QuicCloseCode, quicCloseError } from './quic-close-reason.js';
import { QuicConnectionError } from './quic-connection-error.js';
import { encodeFrames, QuicFrameDecoder } from './quic-frame-decoder.js';
import type { QuicheConnection, QuicheRecvInfo } from './quic-native.js';
import type { QuicFlushable, QuicUdpSocket } from './quic-udp-socket.js';

export { QuicCloseCode };

/** The one stream of a msgtrans QUIC connection: the client's first bidirectional stream. */
const STREAM = 0;
const EMPTY = new Uint8Array(0);
// Bounds of one flush, so one busy connection cannot hold the event loop.
const MAX_READS_PER_FLUSH = 256;
const MAX_DATAGRAMS_PER_FLUSH = 512;
// Requests and replies wait a turn for their answers to carry the ACK; bulk data does not.
const HOLD_BACK_MAX_BYTES = 64 * 1024;
/** ms a graceful close waits for the peer to finish its side before closing anyway. */
export const QUIC_CLOSE_LINGER = 5_000;
/** ms at most that a closed connection keeps answering late packets with its close. */
const QUIC_CLOSE_DRAIN = 1_000;
/** ms of silence after a client sent something before it probes whether the server is still there. */
export const QUIC_SILENCE_PROBE = 300;
/** ms a refused datagram (ECONNREFUSED) gives the peer to prove it is alive. */
export const QUIC_REFUSED_PROBE = 250;

const enum State {
  Handshake,
  Open,
  /** close() called: queued bytes and FIN go out, then the connection closes. */
  Closing,
  /** quiche was told to close; waiting for it to finish (draining). */
  Closed,
  /** Nothing left: released. */
  Done,
}

/** What owns a connection (the listener, or the client's connect()). */
export interface QuicConnectionOwner {
  /** The handshake finished (and on the server, the client opened its stream). */
  ready(connection: QuicConnection): void;
  /** quiche finished with the connection, or it failed before being ready. */
  done(connection: QuicConnection, error: Error | undefined): void;
}

/** Fixed facts of one connection. */
export interface QuicConnectionParams {
  io: QuicUdpSocket;
  conn: QuicheConnection;
  isServer: boolean;
  /** Peer address; the server sends there, the client's socket is connected. */
  host: string;
  port: number;
  recvInfo: QuicheRecvInfo;
  limits: ConnectionLimits;
  heartbeatInterval: number;
  handshakeTimeout: number;
  /** A CA was configured (for error texts). */
  caConfigured: boolean;
  owner: QuicConnectionOwner;
}

/**
 * A msgtrans connection over QUIC, driven directly through quiche: every
 * packet of the connection, both ways, travels on the one bidirectional
 * stream the client opens, each preceded by its u32 big-endian length.
 *
 * Work happens in {@link flush}, once per event-loop turn for every
 * connection that received datagrams or queued packets: read the stream,
 * hand whole packets to the sink, move queued packets into the stream as
 * far as stream and connection credit allow, emit datagrams, arm the one
 * timer quiche asks for.
 */
export class QuicConnection implements MsgTransConnection, QuicFlushable, HeartbeatMember {
  readonly protocol = 'quic';
  readonly remoteAddress: string;
  readonly remotePort: number;
  peerCertificate: X509Certificate | undefined;
  flushQueued = false;
  private state = State.Handshake;
  private isClosed = false;
  private sink: MsgTransConnectionSink | null = null;
  private closeError: Error | undefined;
  private told = false;
  private readonly conn: QuicheConnection;
  private readonly io: QuicUdpSocket;
  private readonly recvInfo: QuicheRecvInfo;
  private readonly sendPort: number | undefined;
  private readonly limits: ConnectionLimits;
  private readonly decoder: QuicFrameDecoder;
  private readonly watchdog: IncompleteMessageWatchdog;
  private received = 0;
  // packets queued this turn, framed into one buffer at the next flush
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  // framed bytes quiche has not accepted yet (no stream or connection credit)
  private backlog: Buffer[] = [];
  private backlogHead = 0;
  private backlogBytes = 0;
  private finSent = false;
  private peerFin = false;
  private streamOpen: boolean;
  // the stream exists in quiche: the server saw its bytes, the client wrote some
  private streamStarted: boolean;
  private needDrain = false;
  private readPaused = false;
  private stallSince = 0;
  private stallTimer: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;
  private guardTimer: NodeJS.Timeout | null = null;
  private probing = false;
  // the last flush delivered packets and sent nothing, waiting for their replies
  private heldBack = false;
  private readBytes = 0;
  // client: when it last sent something the server has not answered yet (0: nothing waits)
  private awaitingSince = 0;
  private silenceTimer: NodeJS.Timeout | null = null;
  private silenceWait = 0;
  // report send errors of this flush (client: retransmissions and probes only)
  private watchSends = false;
  private probeTimer: NodeJS.Timeout | null = null;
  private stopHeartbeat: (() => void) | null = null;

  constructor(private readonly params: QuicConnectionParams) {
    this.conn = params.conn;
    this.io = params.io;
    this.recvInfo = params.recvInfo;
    this.limits = params.limits;
    this.remoteAddress = params.host;
    this.remotePort = params.port;
    this.sendPort = params.isServer ? params.port : undefined;
    // the client's stream exists from its first write; the server's when data arrives
    this.streamOpen = !params.isServer;
    this.streamStarted = params.isServer;
    this.decoder = new QuicFrameDecoder(params.limits.maxPacketSize, (frame) => {
      this.received++;
      this.sink?.onPacket(decodePacket(frame, this.limits));
    });
    this.watchdog = new IncompleteMessageWatchdog(params.limits.incompleteMessageTimeout, (err) => this.close(err));
    if (params.handshakeTimeout > 0) {
      this.guardTimer = setTimeout(() => {
        this.guardTimer = null;
        if (this.state === State.Handshake) {
          this.abort(
            new QuicConnectionError(
              MsgTransErrorCode.CONNECT_FAILED,
              `QUIC handshake with ${params.host}:${params.port} did not complete within ${params.handshakeTimeout} ms`,
            ),
          );
        }
      }, params.handshakeTimeout);
      this.guardTimer.unref();
    }
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** The handshake is over (and on the server, the client opened its stream). */
  get established(): boolean {
    return this.state !== State.Handshake;
  }

  get bufferedAmount(): number {
    return this.queuedBytes + 4 * this.queued.length + this.backlogBytes;
  }

  open(sink: MsgTransConnectionSink): void {
    this.sink = sink;
    if (this.state >= State.Closed) {
      this.tell();
      return;
    }
    this.io.schedule(this);
  }

  send(packet: Buffer): boolean {
    if (!this.isClosed) {
      this.queued.push(packet);
      this.queuedBytes += packet.length;
      this.io.schedule(this);
    }
    if (this.bufferedAmount < this.limits.maxSendBufferSize) return true;
    this.needDrain = true;
    return false;
  }

  close(error?: Error): void {
    if (error) {
      this.abort(error);
      return;
    }
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.state === State.Handshake) {
      this.closeNow(QuicCloseCode.NORMAL, '');
      return;
    }
    this.state = State.Closing;
    this.decoder.stop();
    this.watchdog.stop();
    // a peer that never finishes its side does not hold the connection forever
    this.guardTimer = setTimeout(() => {
      this.guardTimer = null;
      this.closeNow(QuicCloseCode.NORMAL, '');
    }, QUIC_CLOSE_LINGER);
    this.guardTimer.unref();
    this.io.schedule(this);
  }

  unwrap<T = unknown>(): T {
    return this.conn as T;
  }

  /** One datagram for this connection arrived. */
  receive(datagram: Buffer): void {
    if (this.state === State.Done) return;
    try {
      this.conn.recv(datagram, this.recvInfo);
      this.awaitingSince = 0;
      if (this.probing) this.endProbe();
    } catch {
      // undecryptable or invalid: quiche dropped it, or closed the connection (seen in flush)
    }
    this.io.schedule(this);
  }

  /**
   * The client's connected socket got ECONNREFUSED (ICMP port unreachable).
   * While connecting that is the answer; on an established connection it
   * is only a hint (ICMP is unauthenticated), confirmed by a PING that must
   * be answered within {@link QUIC_REFUSED_PROBE} ms and is not refused again.
   */
  refused(): void {
    if (this.state === State.Done) return;
    const target = `${this.remoteAddress}:${this.remotePort}`;
    if (this.state === State.Handshake) {
      this.fail(`Connection refused: nothing is listening on UDP ${target}`);
      return;
    }
    if (this.probing) {
      this.fail(`The server at ${target} is gone (connection refused twice)`);
      return;
    }
    this.probing = true;
    this.watchSends = true;
    this.io.probe(this.onSent);
    try {
      this.conn.sendAckEliciting();
    } catch {
      // closed already
    }
    this.io.schedule(this);
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      if (this.probing) this.fail(`The server at ${target} is gone (connection refused, no answer within ${QUIC_REFUSED_PROBE} ms)`);
    }, QUIC_REFUSED_PROBE);
    this.probeTimer.unref();
  }

  private endProbe(): void {
    this.probing = false;
    this.watchSends = false;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
  }

  beat(): void {
    if (this.state !== State.Open) return;
    try {
      this.conn.sendAckEliciting();
    } catch {
      return;
    }
    this.expectAnswer();
    this.io.schedule(this);
  }

  /**
   * Client: something was sent that the server acknowledges within a round
   * trip and its ACK delay. Should the server stay silent, a probe datagram
   * goes out after {@link QUIC_SILENCE_PROBE} ms and then at growing
   * intervals (up to 2 s) while the silence lasts, so that a server killed
   * while quiche backs off its retransmissions (seconds apart) shows up as a
   * refusal at once.
   */
  private expectAnswer(): void {
    if (this.params.isServer) return;
    if (this.awaitingSince === 0) this.awaitingSince = Date.now();
    if (this.silenceTimer !== null) return;
    this.silenceWait = QUIC_SILENCE_PROBE;
    this.silenceTimer = setTimeout(this.onSilence, QUIC_SILENCE_PROBE);
    this.silenceTimer.unref();
  }

  private readonly onSilence = (): void => {
    this.silenceTimer = null;
    if (this.state === State.Done || this.awaitingSince === 0) return;
    const silent = Date.now() - this.awaitingSince;
    if (silent >= QUIC_SILENCE_PROBE) {
      this.io.probe(this.onSent);
      this.silenceWait = Math.min(this.silenceWait * 2, 2_000);
    }
    this.silenceTimer = setTimeout(this.onSilence, silent >= QUIC_SILENCE_PROBE ? this.silenceWait : QUIC_SILENCE_PROBE - silent);
    this.silenceTimer.unref();
  };

  flush(): void {
    if (this.state === State.Done) return;
    const conn = this.conn;
    const delivered = this.received;
    this.readBytes = 0;
    if (this.state < State.Closed) {
      try {
        if (this.state === State.Handshake && conn.isEstablished()) this.establish();
        if (this.state !== State.Handshake) {
          if (this.sink !== null && !this.readPaused && this.streamStarted) this.readStream();
          // also before open(): the client's first packet rides with its handshake Finished
          if (this.streamOpen && this.state < State.Closed) this.writeStream();
        }
      } catch (err) {
        this.abort(err instanceof Error ? err : new Error(String(err)));
      }
    }
    if (this.received !== delivered && this.readBytes <= HOLD_BACK_MAX_BYTES && !this.heldBack && this.state === State.Open) {
      // Packets just went up; their answers come in this turn's microtasks.
      // Sending now would put quiche's ACK in a datagram of its own, ahead of
      // the reply that can carry it: wait one turn (once, so that a steady
      // inflow cannot hold ACKs back).
      this.heldBack = true;
      this.io.schedule(this);
      this.armTimer();
      return;
    }
    this.heldBack = false;
    for (let i = 0; i < MAX_DATAGRAMS_PER_FLUSH; i++) {
      const view = this.io.datagramView();
      let sent: [number, unknown] | null;
      try {
        sent = conn.send(view);
      } catch {
        break;
      }
      if (sent === null) break;
      this.io.commit(view, sent[0], this.sendPort, this.remoteAddress, this.watchSends ? this.onSent : undefined);
      if (i === MAX_DATAGRAMS_PER_FLUSH - 1) this.io.schedule(this);
    }
    if (conn.isClosed()) {
      this.done();
      return;
    }
    this.armTimer();
  }

  private establish(): void {
    if (this.params.isServer) {
      // PROTOCOL.md: the connection starts when the client's stream carries bytes
      if (!this.conn.streamReadable(STREAM)) return;
      this.streamOpen = true;
    }
    this.state = State.Open;
    if (this.guardTimer) clearTimeout(this.guardTimer);
    this.guardTimer = null;
    const [leaf] = this.conn.peerCertChain() ?? [];
    this.peerCertificate = leaf ? new X509Certificate(Buffer.from(leaf)) : undefined;
    if (this.params.heartbeatInterval > 0) this.stopHeartbeat = joinHeartbeat(this.params.heartbeatInterval, this);
    this.params.owner.ready(this);
  }

  private readStream(): void {
    const buf = this.io.readBuffer;
    const conn = this.conn;
    for (let i = 0; i < MAX_READS_PER_FLUSH; i++) {
      let read: [number, boolean] | null;
      try {
        read = conn.streamRecv(STREAM, buf);
      } catch (err) {
        throw new QuicConnectionError(MsgTransErrorCode.CONNECTION_CLOSED, `The peer reset the msgtrans stream (${(err as Error).message})`);
      }
      if (read === null) return;
      this.streamOpen = true;
      const length = read[0];
      if (length > 0 && this.state === State.Open) {
        // stream data is handed up as views: give each read its own memory
        this.readBytes += length;
        const chunk = Buffer.allocUnsafe(length);
        buf.copy(chunk, 0, 0, length);
        const before = this.received;
        this.decoder.push(chunk);
        this.watchdog.update(this.decoder.pendingBytes, this.received !== before);
      }
      if (read[1]) {
        this.peerFin = true;
        if (this.state === State.Open && this.decoder.pendingBytes > 0) {
          throw new MsgTransProtocolError(MsgTransErrorCode.BAD_FRAME, 'The peer ended the stream inside a packet');
        }
        // Our FIN went first and the peer answered with its own: each side
        // has everything the other sent. Otherwise finish our side too and
        // let the peer close the connection.
        if (this.finSent) this.closeNow(QuicCloseCode.NORMAL, '');
        else this.close();
        return;
      }
      if (this.state !== State.Open && this.state !== State.Closing) return;
      // backpressure: stop taking requests from a peer that is not taking replies
      if (this.bufferedAmount > this.limits.maxSendBufferSize / 2) {
        this.readPaused = true;
        return;
      }
    }
    if (this.state === State.Open || this.state === State.Closing) this.io.schedule(this);
  }

  private writeStream(): void {
    if (this.queued.length > 0) {
      const framed = encodeFrames(this.queued, this.queuedBytes);
      this.queued = [];
      this.queuedBytes = 0;
      this.backlog.push(framed);
      this.backlogBytes += framed.length;
    }
    let progress = false;
    const conn = this.conn;
    while (this.backlog.length > 0) {
      const head = this.backlog[0];
      const view = this.backlogHead === 0 ? head : head.subarray(this.backlogHead);
      let written: number | null;
      try {
        written = conn.streamSend(STREAM, view, false);
      } catch (err) {
        throw new QuicConnectionError(MsgTransErrorCode.CONNECTION_CLOSED, `The peer stopped reading the msgtrans stream (${(err as Error).message})`);
      }
      if (written === null || written === 0) break;
      if (!progress) this.expectAnswer();
      progress = true;
      this.streamStarted = true;
      this.backlogBytes -= written;
      if (written === view.length) {
        this.backlog.shift();
        this.backlogHead = 0;
      } else {
        this.backlogHead += written;
        break;
      }
    }
    if (this.backlogBytes === 0 || progress) {
      this.stallSince = this.backlogBytes === 0 ? 0 : Date.now();
    } else if (this.limits.sendStallTimeout > 0) {
      const now = Date.now();
      if (this.stallSince === 0) this.stallSince = now;
      if (now - this.stallSince >= this.limits.sendStallTimeout) throw sendBufferFull(this.backlogBytes, this.limits.maxSendBufferSize);
      // a peer that grants no credit sends nothing either: look again when the time is up
      if (this.stallTimer === null) {
        this.stallTimer = setTimeout(() => {
          this.stallTimer = null;
          this.io.schedule(this);
        }, this.stallSince + this.limits.sendStallTimeout - now + 1);
        this.stallTimer.unref();
      }
    }
    const buffered = this.bufferedAmount;
    if (buffered <= this.limits.maxSendBufferSize / 2) {
      if (this.readPaused) {
        this.readPaused = false;
        this.io.schedule(this);
      }
      if (this.needDrain) {
        this.needDrain = false;
        this.sink?.onDrain?.();
      }
    }
    if (this.state === State.Closing && this.backlogBytes === 0 && this.queued.length === 0) {
      if (!this.finSent) {
        conn.streamSend(STREAM, EMPTY, true);
        this.finSent = true;
      }
    }
  }

  /** Tells quiche to close with `code`; the datagram goes out in this or the next flush. */
  private closeNow(code: number, reason: string): void {
    if (this.state >= State.Closed) return;
    this.state = State.Closed;
    this.isClosed = true;
    this.queued = [];
    this.queuedBytes = 0;
    this.backlog = [];
    this.backlogBytes = 0;
    this.decoder.stop();
    this.watchdog.stop();
    try {
      this.conn.close(true, code, Buffer.from(reason.slice(0, 200)));
    } catch {
      // already closing
    }
    // quiche ends the closing period itself (3 PTO), except when it had to
    // send the close in handshake packets only: bound it either way
    if (this.guardTimer) clearTimeout(this.guardTimer);
    this.guardTimer = setTimeout(() => {
      this.guardTimer = null;
      this.done();
    }, QUIC_CLOSE_DRAIN);
    this.guardTimer.unref();
    this.io.schedule(this);
  }

  /** Closes at once with an error; what is queued is dropped. */
  private abort(error: Error): void {
    if (this.state >= State.Closed) return;
    this.closeError ??= error;
    const code = error instanceof MsgTransProtocolError ? QuicCloseCode.PROTOCOL_ERROR : QuicCloseCode.INTERNAL_ERROR;
    const handshaking = this.state === State.Handshake;
    this.closeNow(code, error.message);
    if (handshaking) {
      // nobody waits on a connection that never started: send the close, release it
      this.flush();
      this.done();
      return;
    }
    // the application learns now; quiche keeps draining in the background
    this.tell();
  }

  /** Ends without telling the peer (it is not there). */
  private fail(message: string): void {
    this.closeError ??= new QuicConnectionError(
      this.state === State.Handshake ? MsgTransErrorCode.CONNECT_FAILED : MsgTransErrorCode.CONNECTION_CLOSED,
      message,
    );
    this.done();
  }

  private armTimer(): void {
    const timeout = this.conn.timeout();
    if (timeout === null) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      return;
    }
    const at = Date.now() + timeout;
    // an earlier timer stands: quiche's on_timeout is harmless when early
    if (this.timer !== null && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.onTimer, timeout);
    this.timer.unref();
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    if (this.state === State.Done) return;
    this.conn.onTimeout();
    // A retransmission after silence is where a dead server shows: on a
    // connected socket the kernel may report its ICMP refusal on the next
    // send (e.g. quiche's second probe) instead of the socket, so listen there.
    this.watchSends = !this.params.isServer;
    this.flush();
    this.watchSends = this.probing;
  };

  private readonly onSent = (error: Error | null): void => {
    if ((error as NodeJS.ErrnoException | null)?.code === 'ECONNREFUSED') this.refused();
  };

  private done(): void {
    if (this.state === State.Done) return;
    const wasReady = this.state !== State.Handshake;
    this.state = State.Done;
    this.isClosed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.guardTimer) clearTimeout(this.guardTimer);
    if (this.stallTimer) clearTimeout(this.stallTimer);
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.timer = this.guardTimer = this.stallTimer = this.silenceTimer = null;
    this.endProbe();
    this.stopHeartbeat?.();
    this.stopHeartbeat = null;
    this.decoder.stop();
    this.watchdog.stop();
    this.queued = [];
    this.backlog = [];
    this.queuedBytes = this.backlogBytes = 0;
    this.closeError ??= this.quicheError(wasReady);
    this.tell();
    this.params.owner.done(this, this.closeError);
  }

  private quicheError(wasReady: boolean): Error | undefined {
    const conn = this.conn;
    const error = quicCloseError(conn.peerError(), conn.localError(), wasReady, this.params.caConfigured);
    if (error) return error;
    const target = `${this.remoteAddress}:${this.remotePort}`;
    if (conn.isTimedOut()) {
      return new QuicConnectionError(
        wasReady ? MsgTransErrorCode.CONNECTION_CLOSED : MsgTransErrorCode.CONNECT_FAILED,
        wasReady ? `No packets from ${target} for the idle timeout (two heartbeat intervals)` : `QUIC handshake with ${target} timed out`,
      );
    }
    if (conn.peerError() === null && conn.localError() === null && !this.finSent && !this.peerFin) {
      // quiche closes silently on a valid stateless reset
      return new QuicConnectionError(
        wasReady ? MsgTransErrorCode.CONNECTION_CLOSED : MsgTransErrorCode.CONNECT_FAILED,
        `${target} reset the connection (stateless reset: the server no longer knows it, e.g. it restarted)`,
      );
    }
    return undefined;
  }

  private tell(): void {
    if (this.told || this.sink === null) return;
    this.told = true;
    const sink = this.sink;
    this.sink = null;
    sink.onClose(this.closeError);
  }
}
