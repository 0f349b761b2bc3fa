import { randomBytes } from 'node:crypto';
import { isObservable, type Observable } from 'rxjs';
import { compress, decompress } from '../codec/compression.js';
import { decodeExtHeader, encodeExtHeader, routeOnly } from '../codec/ext-header.js';
import { nextMessageId } from '../codec/message-id-counter.js';
import { Compression, HEADER_SIZE, PacketFlag, PacketType, type MsgTransPacket } from '../codec/packet.js';
import { encodePacket, encodeTextPacket } from '../codec/packet-encoder.js';
import type { MsgTransCodec } from '../envelope/msgtrans-codec.interface.js';
import { routeOfBizType } from '../envelope/route.js';
import { MSGTRANS_DEFAULTS } from '../constants.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConnectionError } from '../errors/msgtrans-connection-error.js';
import { MsgTransEncodeError } from '../errors/msgtrans-encode-error.js';
import { MsgTransError } from '../errors/msgtrans-error.js';
import { MsgTransProtocolError } from '../errors/msgtrans-protocol-error.js';
import { MsgTransTimeoutError } from '../errors/msgtrans-timeout-error.js';
import { MsgTransLimitError } from '../errors/msgtrans-limit-error.js';
import type { MsgTransConnection, MsgTransConnectionSink } from '../transport/msgtrans-connection.interface.js';
import type { ConnectionLimits } from '../transport/msgtrans-protocol.interface.js';
import { Fifo } from '../common/fifo.js';
import type { IncomingMessage } from './incoming-message.interface.js';
import { ReceivedMessage } from './received-message.js';
import { INTERNAL_ERROR, encodableErrorPart, serializeError } from './reply-error.js';
import { StreamReply, type ReplySink } from './stream-reply.js';
import type { SessionInstruments } from '../otel/session-instruments.js';

/** Receives what a session cannot handle by itself. */
export interface MsgTransSessionHandler {
  onRequest(session: MsgTransSession, message: IncomingMessage): void;
  onEvent(session: MsgTransSession, message: IncomingMessage): void;
  onClose(session: MsgTransSession, error: Error | undefined): void;
  /**
   * A reply could not be sent as produced (a value or error the codec cannot
   * encode, a packet over `maxPacketSize`): the peer got an ERROR reply
   * instead. For logging; optional.
   */
  onReplyFailure?(session: MsgTransSession, message: IncomingMessage, error: MsgTransError): void;
  /**
   * Plain Errors in replies travel as `{ status, message }`. Default (unset):
   * as Nest's `{ status: 'error', message: 'Internal server error' }`, since
   * on a server an Error that reaches the session bypassed Nest's filters
   * (a processing hook's, a bug's) and its message may hold internals.
   */
  readonly exposeErrorMessages?: boolean;
}

/** Settings a session runs with, resolved from server or client options. */
export interface MsgTransSessionOptions {
  limits: ConnectionLimits;
  /** Requests from the peer being answered at once before the connection is closed. */
  maxInFlight: number;
  /** Values one streamed reply may hold while the connection is congested. Default `MSGTRANS_DEFAULTS.maxStreamBacklog`. */
  maxStreamBacklog?: number;
  codec: MsgTransCodec;
  /** Wire algorithm and size threshold for outgoing payloads; undefined: never compress. */
  compression: { algorithm: Compression; threshold: number } | undefined;
  /** ms an outgoing request waits for each reply packet; 0: forever. */
  requestTimeout: number;
}

/** Where the replies to an outgoing request go. An RxJS Subscriber fits. */
export interface ReplyObserver {
  next(value: unknown): void;
  error(error: unknown): void;
  complete(): void;
}

interface PendingRequest {
  observer: ReplyObserver;
  deadline: number;
  /** ms this request waits for each reply packet. */
  timeout: number;
}

const EMPTY = Buffer.alloc(0);
const FINAL = 0;
// How often a congested session checks the backlog itself, for a connection that never calls onDrain.
const DRAIN_POLL_MS = 20;

/**
 * One msgtrans connection seen as a Nest peer: it turns packets into
 * requests, events and replies and back (PROTOCOL.md Part B). The same class
 * serves both ends: a server answers requests on it, a client sends them, and
 * either can do both.
 *
 * Backpressure: once the connection's `send` reports a full backlog, every
 * further packet waits in the session, in order, until the connection
 * drains (`onDrain`). Streamed replies then wait as unencoded values (see
 * {@link StreamReply}); calls and events wait encoded. While the connection
 * keeps up, the only cost is one null check per packet.
 */
export class MsgTransSession implements MsgTransConnectionSink, ReplySink {
  /** Unique id of this session, stable for its lifetime. */
  readonly id = newSessionId();
  /** What the server's `authenticate` hook returned for this connection (undefined without one). */
  principal: unknown = undefined;
  /** @internal */
  readonly maxStreamBacklog: number;
  /** @internal traffic counters and tracing, set by the server or client that made the session */
  instruments: SessionInstruments | null = null;
  // the next message id this side sends (a plain number: one object less per connection)
  private nextId = 1;
  // Insertion order is deadline order (one timeout for all), so the timeout
  // sweep only ever looks at the head of the map.
  // Both maps are created on first use: most server sessions never send a
  // request, and an idle connection should cost as little as possible.
  private pending: Map<number, PendingRequest> | null = null;
  private replying: Map<number, StreamReply> | null = null;
  // CANCELs that arrived before the reply to their request started; never more than requests being answered
  private cancelled: Set<number> | null = null;
  private timer: NodeJS.Timeout | null = null;
  // when the armed timer fires
  private timerAt = Infinity;
  // Set once a request brings its own timeout: deadlines are then no longer in insertion order.
  private ownTimeouts = false;
  private isClosed = false;
  // requests from the peer whose reply has not ended yet
  private answering = 0;
  private pendingError: Error | undefined;
  // packets waiting for the connection to drain, in the order they were produced (a StreamReply
  // stands for its next waiting value); null while the connection keeps up
  private backlog: Fifo<Buffer | StreamReply> | null = null;
  // bytes of one-way packets in the backlog: pushes are not bounded by anything else
  private backlogEventBytes = 0;
  private drainPoll: NodeJS.Timeout | null = null;
  // replies whose first value waits for the end of the turn
  private turnEnders: StreamReply[] | null = null;

  constructor(
    readonly connection: MsgTransConnection,
    private readonly options: MsgTransSessionOptions,
    private readonly handler: MsgTransSessionHandler,
  ) {
    this.maxStreamBacklog = options.maxStreamBacklog ?? MSGTRANS_DEFAULTS.maxStreamBacklog;
    // the session is the connection's sink itself: no extra object or closures per connection
    connection.open(this);
  }

  /** Protocol of the underlying connection (`tcp`, `tls`, …). */
  get protocol(): string {
    return this.connection.protocol;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Requests sent and still waiting for their reply. */
  get pendingRequests(): number {
    return this.pending?.size ?? 0;
  }

  /** Requests from the peer being answered right now. */
  get activeRequests(): number {
    return this.answering;
  }

  /** True while the connection's backlog is full and outgoing packets wait in the session. */
  get congested(): boolean {
    return this.backlog !== null;
  }

  /**
   * Sends a request; replies go to `observer`. Returns the message id, to be
   * passed to {@link cancel} if the caller loses interest, or 0 if the
   * request could not be sent (`observer` has its error then: a
   * {@link MsgTransEncodeError}, a {@link MsgTransLimitError} for a packet
   * over `maxPacketSize`, bad metadata, or a closed connection). `timeout`
   * overrides the session's `requestTimeout` for this request (0: none).
   */
  request(
    bizType: number,
    route: string | undefined,
    data: unknown,
    metadata: Record<string, string> | undefined,
    observer: ReplyObserver,
    timeout = this.options.requestTimeout,
  ): number {
    if (this.isClosed) {
      observer.error(this.closedError());
      return 0;
    }
    const telemetry = this.instruments?.telemetry;
    if (telemetry) {
      const traced = telemetry.outgoingRequest(this.connection, route ?? String(bizType), metadata, observer);
      metadata = traced.metadata;
      observer = traced;
    }
    const pending = (this.pending ??= new Map());
    let id = this.takeId();
    // After a wrap, skip ids a long-lived request still holds.
    while (pending.has(id)) id = this.takeId();
    let packet: Buffer;
    try {
      packet = this.encodeRouted(PacketType.REQUEST, bizType, id, route, metadata, data);
    } catch (err) {
      // nothing was sent: the id goes to the next packet, so ids still go up by one per packet
      this.nextId = id;
      observer.error(err);
      return 0;
    }
    this.output(packet);
    if (timeout !== this.options.requestTimeout) this.ownTimeouts = true;
    const deadline = timeout > 0 ? Date.now() + timeout : Infinity;
    pending.set(id, { observer, deadline, timeout });
    if (deadline < this.timerAt) this.armTimer(deadline);
    return id;
  }

  /**
   * Sends a one-way packet (an event). Throws, with nothing sent, if the
   * session is closed or the data cannot be encoded or is too large.
   */
  emit(bizType: number, route: string | undefined, data: unknown, metadata: Record<string, string> | undefined): void {
    if (this.isClosed) throw this.closedError();
    const telemetry = this.instruments?.telemetry;
    if (telemetry) metadata = telemetry.outgoingEvent(this.connection, route ?? String(bizType), metadata);
    const id = this.takeId();
    let packet: Buffer;
    try {
      packet = this.encodeRouted(PacketType.ONE_WAY, bizType, id, route, metadata, data);
    } catch (err) {
      this.nextId = id;
      throw err;
    }
    if (this.backlog !== null) {
      // A peer that leaves this much unread while pushes keep coming is not
      // reading: drop it rather than hold pushes without bound.
      this.backlogEventBytes += packet.length;
      if (this.backlogEventBytes > this.options.limits.maxSendBufferSize) {
        this.close(
          new MsgTransLimitError(
            MsgTransErrorCode.SEND_BUFFER_FULL,
            `Peer is not reading: ${this.connection.bufferedAmount + this.backlogEventBytes} bytes wait to be sent (limit ${this.options.limits.maxSendBufferSize})`,
          ),
        );
        return;
      }
    }
    this.output(packet);
  }

  /**
   * Drops interest in the reply to request `id`: the observer hears nothing
   * more and the peer is sent CANCEL so it stops producing.
   */
  cancel(id: number): void {
    (this.pending?.get(id)?.observer as { cancelled?(): void } | undefined)?.cancelled?.();
    if (!this.pending?.delete(id) || this.isClosed) return;
    this.sendCancel(id);
  }

  /**
   * Stops answering a request from the peer, as a CANCEL from it would (its
   * deadline passed): a reply in progress is unsubscribed; a reply not
   * started yet no longer counts as in flight, and the caller must not send
   * it. Call it at most once per request.
   */
  abandon(request: IncomingMessage): void {
    const reply = this.replying?.get(request.messageId);
    if (reply !== undefined) reply.cancel();
    else this.endAnswer();
  }

  /**
   * Answers a request with a handler result: a value, or an Observable whose
   * values become the reply (one plain response for a single value, MORE…END
   * for a stream, ERROR on failure). `done` runs once the reply has ended,
   * been cancelled, or the session closed. Never throws: a value that cannot
   * be sent becomes an ERROR reply.
   */
  reply(request: IncomingMessage, result: unknown, done?: () => void): void {
    if (this.isClosed) {
      done?.();
      return;
    }
    if (this.cancelled !== null && this.cancelled.delete(request.messageId)) {
      // the peer cancelled before the handler had a result: nothing is sent, a stream is stopped at once
      if (isObservable(result)) result.subscribe({ error: ignore }).unsubscribe();
      this.endAnswer();
      done?.();
      return;
    }
    if (!isObservable(result)) {
      this.sendResponse(request, FINAL, result, false);
      this.endAnswer();
      done?.();
      return;
    }
    this.replyWithStream(request, result, done);
  }

  /**
   * Ends a request's reply with an error. Never throws: an error that cannot
   * be encoded travels as what can be of it (its top-level plain fields),
   * else as Nest's `{ status: 'error', message: 'Internal server error' }`.
   */
  replyError(request: IncomingMessage, error: unknown): void {
    if (this.isClosed) return;
    if (this.cancelled === null || !this.cancelled.delete(request.messageId)) {
      this.sendResponse(request, PacketFlag.ERROR, error, false);
    }
    this.endAnswer();
  }

  /**
   * Closes the session. Pending requests fail at once with `pendingError`
   * (default: a connection-closed error); replies in progress are cancelled.
   * Without `error`, replies and events waiting for the connection to drain
   * are handed to it first, so a graceful close loses none of them; requests
   * still waiting are not sent (their callers get `pendingError`).
   */
  close(error?: Error, pendingError?: Error): void {
    if (this.isClosed) return;
    this.pendingError = pendingError;
    if (!error) this.flushBacklog();
    this.teardown(error);
    this.connection.close(error);
  }

  private replyWithStream(request: IncomingMessage, stream: Observable<unknown>, done?: () => void): void {
    const reply = new StreamReply(this, request, done);
    // a stream that ended inside subscribe (of(x), the common case) is never registered: CANCEL cannot reach it
    if (reply.start(stream)) (this.replying ??= new Map()).set(request.messageId, reply);
  }

  /** @internal ReplySink */
  sendResponse(request: IncomingMessage, flags: number, data: unknown, direct: boolean): boolean {
    if (this.isClosed) return false;
    let packet: Buffer;
    let sent = true;
    if (flags & PacketFlag.ERROR) {
      packet = this.encodeError(request, data);
    } else {
      try {
        packet = this.encode(PacketType.RESPONSE, request.bizType, request.messageId, flags, EMPTY, data);
      } catch (err) {
        // A value that cannot travel (a cycle, a BigInt, too large): the caller gets an error, not silence.
        const failure = err as MsgTransError;
        packet = this.encodeError(request, failure);
        sent = false;
        this.handler.onReplyFailure?.(this, request, failure);
      }
    }
    if (direct) this.connection.send(packet);
    else this.output(packet);
    return sent;
  }

  /** @internal ReplySink */
  holdUntilTurnEnd(reply: StreamReply): void {
    const waiting = this.turnEnders;
    if (waiting !== null) {
      waiting.push(reply);
      return;
    }
    this.turnEnders = [reply];
    // setImmediate, not a microtask: a Promise-based handler's complete() may come several microtasks after its value
    setImmediate(endTurn, this);
  }

  /** @internal the turn in which values were held is over */
  endTurn(): void {
    const waiting = this.turnEnders;
    this.turnEnders = null;
    if (waiting !== null) for (const reply of waiting) reply.turnEnded();
  }

  /** @internal ReplySink */
  enqueueReply(reply: StreamReply): void {
    (this.backlog ??= this.startHolding()).push(reply);
  }

  /** @internal ReplySink */
  replyEnded(reply: StreamReply): void {
    const replying = this.replying;
    if (replying !== null && replying.get(reply.request.messageId) === reply) replying.delete(reply.request.messageId);
    this.endAnswer();
    reply.done?.();
  }

  private endAnswer(): void {
    if (--this.answering <= 0) {
      this.answering = 0;
      // nothing is being answered: no remembered CANCEL can match a reply any more
      this.cancelled = null;
    }
  }

  /** Hands a packet to the connection, or to the backlog while it is congested. */
  private output(packet: Buffer): void {
    const traffic = this.instruments?.traffic;
    if (traffic) {
      traffic.messagesOut++;
      traffic.bytesOut += packet.length;
    }
    const backlog = this.backlog;
    if (backlog !== null) {
      backlog.push(packet);
      return;
    }
    if (packet[2] === PacketType.REQUEST && this.requestWouldFill(packet)) {
      (this.backlog = this.startHolding()).push(packet);
      return;
    }
    if (this.connection.send(packet) === false) this.backlog = this.startHolding();
  }

  /**
   * Our own calls take at most half of `maxSendBufferSize`: with a large
   * backlog the connection stops reading, and a side that stops reading the
   * replies to its calls while the peer stops reading calls until its
   * replies are read would wait for each other forever. The other half is
   * for replies and pushes. (A call larger than that still goes once
   * nothing else waits.)
   */
  private requestWouldFill(packet: Buffer): boolean {
    const buffered = this.connection.bufferedAmount;
    return buffered > 0 && buffered + packet.length >= this.options.limits.maxSendBufferSize / 2;
  }

  private startHolding(): Fifo<Buffer | StreamReply> {
    // Transports call onDrain; the poll is a safety net for one that does not, so nothing waits forever.
    this.drainPoll ??= setInterval(pollDrain, DRAIN_POLL_MS, this);
    this.drainPoll.unref();
    return new Fifo();
  }

  /** @internal drain-poll tick */
  pollDrain(): void {
    if (this.connection.bufferedAmount < this.options.limits.maxSendBufferSize / 2) this.onDrain();
  }

  /** @internal connection sink: the backlog fell below half; packets that waited go on, in order. */
  onDrain(): void {
    const backlog = this.backlog;
    if (backlog === null || this.isClosed) return;
    const limit = this.options.limits.maxSendBufferSize;
    const connection = this.connection;
    // bounded: every round removes one item
    while (backlog.size > 0) {
      if (connection.bufferedAmount >= limit) return;
      const next = backlog.peek()!;
      // the connection does not call onDrain for this wait (no send() returned false): the poll does
      if (!(next instanceof StreamReply) && next[2] === PacketType.REQUEST && this.requestWouldFill(next)) return;
      const item = backlog.shift()!;
      if (item instanceof StreamReply) {
        item.drainOne();
        continue;
      }
      if (item[2] === PacketType.ONE_WAY && !(item.readUInt16BE(14) & PacketFlag.CANCEL)) this.backlogEventBytes -= item.length;
      connection.send(item);
    }
    this.stopHolding();
  }

  private stopHolding(): void {
    this.backlog = null;
    this.backlogEventBytes = 0;
    if (this.drainPoll) clearInterval(this.drainPoll);
    this.drainPoll = null;
  }

  /**
   * Graceful close: replies and events that wait go to the connection, which
   * flushes them before it closes. Requests that wait are not sent: their
   * callers are told the session closed, so the peer must not run them.
   */
  private flushBacklog(): void {
    const backlog = this.backlog;
    if (backlog === null) return;
    for (let item = backlog.shift(); item !== undefined; item = backlog.shift()) {
      if (item instanceof StreamReply) {
        item.drainOne();
      } else if (item[2] !== PacketType.REQUEST) {
        this.connection.send(item);
      }
    }
    this.stopHolding();
  }

  private sendCancel(id: number): void {
    this.output(this.encode(PacketType.ONE_WAY, 0, id, PacketFlag.CANCEL, EMPTY, EMPTY));
  }

  private encodeRouted(
    packetType: PacketType,
    bizType: number,
    messageId: number,
    route: string | undefined,
    metadata: Record<string, string> | undefined,
    data: unknown,
  ): Buffer {
    const extHeader = encodeExtHeader(route, metadata);
    return this.encode(packetType, bizType, messageId, route !== undefined ? PacketFlag.HAS_ROUTE_TAG : 0, extHeader, data);
  }

  /**
   * An ERROR response for `error`; never throws. What the codec cannot
   * encode of the error is left out, down to Nest's generic error.
   */
  private encodeError(request: IncomingMessage, error: unknown): Buffer {
    const value = serializeError(error, this.handler.exposeErrorMessages === true);
    const { bizType, messageId } = request;
    try {
      return this.encode(PacketType.RESPONSE, bizType, messageId, PacketFlag.ERROR, EMPTY, value);
    } catch (err) {
      this.handler.onReplyFailure?.(this, request, err as MsgTransError);
      try {
        return this.encode(PacketType.RESPONSE, bizType, messageId, PacketFlag.ERROR, EMPTY, encodableErrorPart(value));
      } catch {
        // a codec that cannot encode even a two-field object: the text as raw bytes
        return encodePacket({
          compression: Compression.NONE,
          packetType: PacketType.RESPONSE,
          bizType,
          messageId,
          flags: PacketFlag.ERROR,
          extHeader: EMPTY,
          payload: Buffer.from(INTERNAL_ERROR.message),
        });
      }
    }
  }

  /**
   * Encodes one packet. Throws a {@link MsgTransEncodeError} when the codec
   * cannot encode `data`, and a {@link MsgTransLimitError} (PACKET_TOO_LARGE)
   * when the packet, or its payload once the peer decompresses it, would be
   * over `maxPacketSize`, which the peer (configured alike) would answer by
   * closing the connection: nothing is sent then.
   */
  private encode(
    packetType: PacketType,
    bizType: number,
    messageId: number,
    flags: number,
    extHeader: Buffer,
    data: unknown,
  ): Buffer {
    let payload: string | Uint8Array;
    if (data instanceof Uint8Array) {
      payload = data;
    } else {
      flags |= PacketFlag.CODEC;
      try {
        payload = this.options.codec.encode(data);
      } catch (err) {
        throw new MsgTransEncodeError(MsgTransErrorCode.ENCODE_FAILED, `Cannot encode the data: ${(err as Error)?.message ?? String(err)}`, {
          cause: err,
        });
      }
    }
    const maxPacketSize = this.options.limits.maxPacketSize;
    // string length is a lower bound of its UTF-8 size; the exact size is taken only near the limit
    let size = payload.length;
    if (typeof payload === 'string' && size * 3 > maxPacketSize - HEADER_SIZE - extHeader.length) {
      size = Buffer.byteLength(payload);
    }
    if (HEADER_SIZE + extHeader.length + size > maxPacketSize) throw tooLarge(HEADER_SIZE + extHeader.length + size, maxPacketSize);
    let compression: Compression = Compression.NONE;
    const c = this.options.compression;
    // an empty payload is never compressed: END, CANCEL and `undefined` carry none (PROTOCOL.md Part B)
    if (c && size > 0 && size >= c.threshold) {
      payload = compress(c.algorithm, typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload);
      compression = c.algorithm;
      // incompressible data grows a little
      const total = HEADER_SIZE + extHeader.length + payload.length;
      if (total > maxPacketSize) throw tooLarge(total, maxPacketSize);
    }
    return typeof payload === 'string'
      ? encodeTextPacket(compression, packetType, bizType, messageId, flags, extHeader, payload)
      : encodePacket({ compression, packetType, bizType, messageId, flags, extHeader, payload: toBuffer(payload) });
  }

  /** @internal connection sink: a validated packet arrived. */
  onPacket(packet: MsgTransPacket): void {
    const traffic = this.instruments?.traffic;
    if (traffic) {
      traffic.messagesIn++;
      traffic.bytesIn += HEADER_SIZE + packet.extHeader.length + packet.payload.length;
    }
    try {
      switch (packet.packetType) {
        case PacketType.RESPONSE:
          this.onResponse(packet);
          return;
        case PacketType.ONE_WAY:
          if (packet.flags & PacketFlag.CANCEL) {
            this.onCancel(packet.messageId);
            return;
          }
          this.handler.onEvent(this, this.toMessage(packet));
          return;
        default:
          if (++this.answering > this.options.maxInFlight) {
            throw new MsgTransLimitError(
              MsgTransErrorCode.TOO_MANY_IN_FLIGHT,
              `More than ${this.options.maxInFlight} requests in flight on one connection`,
            );
          }
          // a new request with an id cancelled earlier is a new request
          if (this.cancelled !== null) this.cancelled.delete(packet.messageId);
          this.handler.onRequest(this, this.toMessage(packet));
      }
    } catch (err) {
      // Bad input closes this connection only; a handler bug must not take the process down either.
      this.close(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private onCancel(id: number): void {
    const reply = this.replying?.get(id);
    if (reply !== undefined) {
      reply.cancel();
      return;
    }
    // The handler has no result yet (an async handler, or subscribe-then-unsubscribe in one turn):
    // remember it for reply(). Bounded by the requests being answered; ids of ended replies are
    // forgotten when nothing is being answered.
    if (this.answering > 0 && (this.cancelled?.size ?? 0) < this.answering) (this.cancelled ??= new Set()).add(id);
  }

  private onResponse(packet: MsgTransPacket): void {
    const id = packet.messageId;
    const pending = this.pending;
    const entry = pending?.get(id);
    // Replies to requests that timed out or were cancelled are dropped.
    if (pending == null || entry === undefined) return;
    const flags = packet.flags;
    if (flags & PacketFlag.END) {
      pending.delete(id);
      entry.observer.complete();
      return;
    }
    const value = this.decodePayload(packet);
    if (flags & PacketFlag.ERROR) {
      pending.delete(id);
      entry.observer.error(value);
    } else if (flags & PacketFlag.MORE) {
      if (entry.deadline !== Infinity) {
        // re-inserting keeps the map in deadline order
        pending.delete(id);
        entry.deadline = Date.now() + entry.timeout;
        pending.set(id, entry);
      }
      entry.observer.next(value);
    } else {
      pending.delete(id);
      entry.observer.next(value);
      entry.observer.complete();
    }
  }

  private toMessage(packet: MsgTransPacket): IncomingMessage {
    const ext = packet.extHeader;
    let route: string | undefined;
    let metadata: Record<string, string> | undefined;
    if (ext.length > 0) {
      route = routeOnly(ext);
      if (route === undefined) ({ route, metadata } = decodeExtHeader(ext));
    }
    // the payload is decoded when the receiver reads `data`, once it has decided to handle the message
    return new ReceivedMessage(this, packet, route ?? routeOfBizType(packet.bizType), metadata);
  }

  /** @internal Decompresses and decodes a payload; bad ones are the peer's fault (MsgTransProtocolError). */
  decodePayload(packet: MsgTransPacket): unknown {
    const payload =
      packet.compression === Compression.NONE
        ? packet.payload
        : decompress(packet.compression, packet.payload, this.options.limits.maxPacketSize);
    if (!(packet.flags & PacketFlag.CODEC)) return payload;
    try {
      return this.options.codec.decode(payload);
    } catch (err) {
      throw new MsgTransProtocolError(MsgTransErrorCode.BAD_PAYLOAD, `Undecodable payload: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private armTimer(deadline: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = deadline;
    if (deadline === Infinity) return;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, deadline - Date.now()) + 1);
    this.timer.unref();
  }

  /** The earliest deadline: the head of the map while every request has the session's timeout. */
  private nextDeadline(): number {
    if (this.pending === null || this.pending.size === 0) {
      // nothing pending: insertion order is deadline order again
      this.ownTimeouts = false;
      return Infinity;
    }
    if (!this.ownTimeouts) return this.pending.values().next().value?.deadline ?? Infinity;
    let next = Infinity;
    for (const entry of this.pending.values()) if (entry.deadline < next) next = entry.deadline;
    return next;
  }

  private sweep(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const now = Date.now();
    const pending = this.pending;
    if (pending === null) return;
    for (const [id, entry] of pending) {
      if (entry.deadline > now) {
        if (this.ownTimeouts) continue;
        break;
      }
      pending.delete(id);
      this.sendCancel(id);
      entry.observer.error(new MsgTransTimeoutError(entry.timeout));
    }
    if (!this.isClosed) this.armTimer(this.nextDeadline());
  }

  private closedError(): Error {
    return this.pendingError ?? new MsgTransConnectionError(MsgTransErrorCode.CONNECTION_CLOSED, 'Connection is closed');
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = nextMessageId(id);
    return id;
  }

  /** @internal connection sink: the connection is gone. */
  onClose(error?: Error): void {
    this.teardown(error);
  }

  /** Runs once, whichever comes first: our close() or the connection going away. */
  private teardown(error: Error | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.backlog?.clear();
    this.stopHolding();
    this.cancelled = null;
    if (this.pending !== null && this.pending.size > 0) {
      const failure =
        this.pendingError ??
        new MsgTransConnectionError(
          MsgTransErrorCode.CONNECTION_CLOSED,
          `Connection closed before the reply arrived${error ? `: ${error.message}` : ''}`,
          { cause: error },
        );
      const entries = [...this.pending.values()];
      this.pending.clear();
      for (const entry of entries) entry.observer.error(failure);
    }
    if (this.replying !== null && this.replying.size > 0) {
      const replies = [...this.replying.values()];
      this.replying.clear();
      for (const reply of replies) reply.cancel();
    }
    this.handler.onClose(this, error);
  }
}

// Session ids: a random prefix per process and a counter. One flat short
// string per connection (a randomUUID() string is a ~600-byte rope in V8).
const ID_PREFIX = randomBytes(6).toString('hex');
let sessionCounter = 0;
function newSessionId(): string {
  return `${ID_PREFIX}-${(++sessionCounter).toString(36)}`;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function tooLarge(size: number, limit: number): MsgTransLimitError {
  return new MsgTransLimitError(
    MsgTransErrorCode.PACKET_TOO_LARGE,
    `Packet of ${size} bytes would exceed maxPacketSize (${limit}); nothing was sent`,
  );
}

function endTurn(session: MsgTransSession): void {
  session.endTurn();
}

function pollDrain(session: MsgTransSession): void {
  session.pollDrain();
}

function ignore(): void {}
