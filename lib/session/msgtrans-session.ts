import { randomBytes } from 'node:crypto';
import { isObservable, type Observable, type Subscription } from 'rxjs';
import { compress, decompress } from '../codec/compression.js';
import { decodeExtHeader, encodeExtHeader, routeOnly } from '../codec/ext-header.js';
import { nextMessageId } from '../codec/message-id-counter.js';
import { Compression, PacketFlag, PacketType, type MsgTransPacket } from '../codec/packet.js';
import { encodePacket, encodePacketWithText } from '../codec/packet-encoder.js';
import type { MsgTransCodec } from '../envelope/msgtrans-codec.interface.js';
import { routeOfBizType } from '../envelope/route.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConnectionError } from '../errors/msgtrans-connection-error.js';
import { MsgTransProtocolError } from '../errors/msgtrans-protocol-error.js';
import { MsgTransTimeoutError } from '../errors/msgtrans-timeout-error.js';
import { MsgTransLimitError } from '../errors/msgtrans-limit-error.js';
import type { MsgTransConnection, MsgTransConnectionSink } from '../transport/msgtrans-connection.interface.js';
import type { ConnectionLimits } from '../transport/msgtrans-protocol.interface.js';
import type { IncomingMessage } from './incoming-message.interface.js';
import type { SessionInstruments } from '../otel/session-instruments.js';
import { HEADER_SIZE } from '../codec/packet.js';

/** Receives what a session cannot handle by itself. */
export interface MsgTransSessionHandler {
  onRequest(session: MsgTransSession, message: IncomingMessage): void;
  onEvent(session: MsgTransSession, message: IncomingMessage): void;
  onClose(session: MsgTransSession, error: Error | undefined): void;
}

/** Settings a session runs with, resolved from server or client options. */
export interface MsgTransSessionOptions {
  limits: ConnectionLimits;
  /** Requests from the peer being answered at once before the connection is closed. */
  maxInFlight: number;
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

/**
 * One msgtrans connection seen as a Nest peer: it turns packets into
 * requests, events and replies and back (PROTOCOL.md Part B). The same class
 * serves both ends: a server answers requests on it, a client sends them, and
 * either can do both.
 */
export class MsgTransSession implements MsgTransConnectionSink {
  /** Unique id of this session, stable for its lifetime. */
  readonly id = newSessionId();
  /** What the server's `authenticate` hook returned for this connection (undefined without one). */
  principal: unknown = undefined;
  /** @internal traffic counters and tracing, set by the server or client that made the session */
  instruments: SessionInstruments | null = null;
  // the next message id this side sends (a plain number: one object less per connection)
  private nextId = 1;
  // Insertion order is deadline order (one timeout for all), so the timeout
  // sweep only ever looks at the head of the map.
  // Both maps are created on first use: most server sessions never send a
  // request, and an idle connection should cost as little as possible.
  private pending: Map<number, PendingRequest> | null = null;
  private replying: Map<number, Subscription> | null = null;
  private timer: NodeJS.Timeout | null = null;
  // when the armed timer fires
  private timerAt = Infinity;
  // Set once a request brings its own timeout: deadlines are then no longer in insertion order.
  private ownTimeouts = false;
  private isClosed = false;
  // requests from the peer whose reply has not ended yet
  private answering = 0;
  private pendingError: Error | undefined;

  constructor(
    readonly connection: MsgTransConnection,
    private readonly options: MsgTransSessionOptions,
    private readonly handler: MsgTransSessionHandler,
  ) {
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

  /**
   * Sends a request; replies go to `observer`. Returns the message id, to be
   * passed to {@link cancel} if the caller loses interest. `timeout`
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
    this.send(PacketType.REQUEST, bizType, id, route, metadata, data, 0);
    if (timeout !== this.options.requestTimeout) this.ownTimeouts = true;
    const deadline = timeout > 0 ? Date.now() + timeout : Infinity;
    pending.set(id, { observer, deadline, timeout });
    if (deadline < this.timerAt) this.armTimer(deadline);
    return id;
  }

  /** Sends a one-way packet (an event). */
  emit(bizType: number, route: string | undefined, data: unknown, metadata: Record<string, string> | undefined): void {
    if (this.isClosed) throw this.closedError();
    const telemetry = this.instruments?.telemetry;
    if (telemetry) metadata = telemetry.outgoingEvent(this.connection, route ?? String(bizType), metadata);
    this.send(PacketType.ONE_WAY, bizType, this.takeId(), route, metadata, data, 0);
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
    const subscription = this.replying?.get(request.messageId);
    if (subscription !== undefined) subscription.unsubscribe();
    else this.answering--;
  }

  /**
   * Answers a request with a handler result: a value, or an Observable whose
   * values become the reply (one plain response for a single value, MORE…END
   * for a stream, ERROR on failure). `done` runs once the reply has ended,
   * been cancelled, or the session closed.
   */
  reply(request: IncomingMessage, result: unknown, done?: () => void): void {
    if (!isObservable(result)) {
      this.sendResponse(request, FINAL, result);
      done?.();
      return;
    }
    this.replyWithStream(request, result, done);
  }

  /** Ends a request's reply with an error. */
  replyError(request: IncomingMessage, error: unknown): void {
    this.sendResponse(request, PacketFlag.ERROR, serializeError(error));
  }

  /**
   * Closes the session. Pending requests fail at once with `pendingError`
   * (default: a connection-closed error); replies in progress are cancelled.
   */
  close(error?: Error, pendingError?: Error): void {
    if (this.isClosed) return;
    this.pendingError = pendingError;
    this.teardown(error);
    this.connection.close(error);
  }

  private replyWithStream(request: IncomingMessage, stream: Observable<unknown>, done?: () => void): void {
    // A value is held back until the next one (or the end) shows whether the
    // reply is a single value, which must travel as one plain response.
    let held: unknown;
    let holding = false;
    let streamed = false;
    let finished = false;
    const id = request.messageId;
    const flushHeld = () => {
      if (holding) {
        this.sendResponse(request, PacketFlag.MORE, held);
        streamed = true;
        holding = false;
        held = undefined;
      }
    };
    const subscription = stream.subscribe({
      next: (value) => {
        flushHeld();
        held = value;
        holding = true;
      },
      error: (err) => {
        finished = true;
        flushHeld();
        this.replyError(request, err);
      },
      complete: () => {
        finished = true;
        if (holding && !streamed) {
          this.sendResponse(request, FINAL, held);
          return;
        }
        flushHeld();
        this.sendResponse(request, PacketFlag.END, EMPTY);
      },
    });
    if (finished) {
      done?.();
      return;
    }
    const replying = (this.replying ??= new Map());
    replying.set(id, subscription);
    subscription.add(() => {
      if (replying.get(id) === subscription) replying.delete(id);
      // cancelled (CANCEL or close) rather than ended by a reply packet
      if (!finished) this.answering--;
      done?.();
    });
  }

  private send(
    packetType: PacketType,
    bizType: number,
    messageId: number,
    route: string | undefined,
    metadata: Record<string, string> | undefined,
    data: unknown,
    flags: number,
  ): void {
    const extHeader = encodeExtHeader(route, metadata);
    if (route !== undefined) flags |= PacketFlag.HAS_ROUTE_TAG;
    this.writePacket(packetType, bizType, messageId, flags, extHeader, data);
  }

  private sendResponse(request: IncomingMessage, flags: number, data: unknown): void {
    if (this.isClosed) return;
    if (!(flags & PacketFlag.MORE)) this.answering--;
    try {
      this.writePacket(PacketType.RESPONSE, request.bizType, request.messageId, flags, EMPTY, data);
    } catch (err) {
      if (flags & PacketFlag.ERROR) throw err;
      // The handler's value cannot be encoded (a BigInt, a cycle): the caller gets an error, not silence.
      this.writePacket(
        PacketType.RESPONSE,
        request.bizType,
        request.messageId,
        PacketFlag.ERROR,
        EMPTY,
        serializeError(err),
      );
    }
  }

  private sendCancel(id: number): void {
    this.writePacket(PacketType.ONE_WAY, 0, id, PacketFlag.CANCEL, EMPTY, EMPTY);
  }

  private writePacket(
    packetType: PacketType,
    bizType: number,
    messageId: number,
    flags: number,
    extHeader: Buffer,
    data: unknown,
  ): void {
    let payload: string | Uint8Array;
    if (data instanceof Uint8Array) {
      payload = data;
    } else {
      flags |= PacketFlag.CODEC;
      payload = this.options.codec.encode(data);
    }
    let compression: Compression = Compression.NONE;
    const c = this.options.compression;
    if (c && payload.length >= c.threshold) {
      // string length is a lower bound of its UTF-8 size, so this never skips a large payload
      payload = compress(c.algorithm, typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload);
      compression = c.algorithm;
    }
    const head = { compression, packetType, bizType, messageId, flags, extHeader };
    const packet =
      typeof payload === 'string'
        ? encodePacketWithText(head, payload)
        : encodePacket({ ...head, payload: toBuffer(payload) });
    const traffic = this.instruments?.traffic;
    if (traffic) {
      traffic.messagesOut++;
      traffic.bytesOut += packet.length;
    }
    this.connection.send(packet);
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
            this.replying?.get(packet.messageId)?.unsubscribe();
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
          this.handler.onRequest(this, this.toMessage(packet));
      }
    } catch (err) {
      // Bad input closes this connection only; a handler bug must not take the process down either.
      this.close(err instanceof Error ? err : new Error(String(err)));
    }
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
    return {
      packetType: packet.packetType,
      messageId: packet.messageId,
      bizType: packet.bizType,
      flags: packet.flags,
      route: route ?? routeOfBizType(packet.bizType),
      metadata,
      data: this.decodePayload(packet),
    };
  }

  private decodePayload(packet: MsgTransPacket): unknown {
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
      const subscriptions = [...this.replying.values()];
      this.replying.clear();
      for (const subscription of subscriptions) subscription.unsubscribe();
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

/**
 * Errors travel as the codec encoding of what Nest's exception filters
 * produced (`{ status, message }` for RpcException, whatever the filter
 * returned otherwise). A bare Error would encode as `{}`, so it is spelled out.
 */
function serializeError(error: unknown): unknown {
  if (error instanceof Error) return { status: 'error', message: error.message };
  return error;
}
