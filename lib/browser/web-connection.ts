import { nextMessageId } from '../codec/message-id-counter.js';
import { Compression, PacketFlag, PacketType } from '../codec/packet.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransWebError } from './msgtrans-web-error.js';
import type { ResolvedWebClientOptions, WebSocketLike } from './web-client-options.js';
import { deflate, inflate } from './web-compression.js';
import { EMPTY_BYTES, decodeExtHeader, decodeUtf8, encodeExtHeader, encodeUtf8, encodeWebPacket, decodeWebPacket, type WebPacket } from './web-packet.js';

/** What arrived with a pushed event or a server request, besides its data. */
export interface MsgTransWebMessageInfo {
  /** The route (`String(bizType)` for a packet without one). */
  route: string;
  bizType: number;
  messageId: number;
  /** Extension-header entries other than the route. */
  metadata: Record<string, string> | undefined;
}

/** An event or a request from the server. */
export interface WebIncoming extends MsgTransWebMessageInfo {
  data: unknown;
}

/** Where a packet goes: its biz_type and its encoded extension header (route and metadata). */
export interface WebTarget {
  bizType: number;
  extHeader: Uint8Array;
  /** HAS_ROUTE_TAG when the extension header holds a route, else 0. */
  flags: number;
}

/**
 * Encodes a call's route and metadata once, before it waits for a
 * connection, so bad metadata fails the call at once.
 */
export function webTarget(bizType: number, route: string | undefined, metadata: Record<string, string> | undefined): WebTarget {
  return { bizType, extHeader: encodeExtHeader(route, metadata), flags: route === undefined ? 0 : PacketFlag.HAS_ROUTE_TAG };
}

/** Where the replies to one request go. */
export interface WebReplySink {
  next(value: unknown): void;
  complete(): void;
  error(error: MsgTransWebError): void;
}

/** What a connection hands up to its client. */
export interface WebConnectionOwner {
  onEvent(connection: WebConnection, message: WebIncoming): void;
  onRequest(connection: WebConnection, message: WebIncoming): void;
  onClose(connection: WebConnection, error: MsgTransWebError | undefined): void;
}

// close codes a page may send: 1000 or 4000-4999 (the browser refuses the rest)
const NORMAL_CLOSURE = 1000;
const BAD_INPUT_CLOSURE = 4000;

type Job = () => unknown;

/**
 * One open WebSocket seen as a msgtrans peer: it numbers outgoing packets,
 * matches replies to requests by id, answers the server's CANCEL, and keeps
 * packets in order both ways while a payload is being (de)compressed (the
 * streams API is asynchronous; everything else stays synchronous).
 */
export class WebConnection {
  private nextId = 1;
  private readonly pending = new Map<number, WebReplySink>();
  // streamed answers to server requests, by id, so a CANCEL can stop them
  private readonly answering = new Map<number, () => void>();
  private inbound: Promise<unknown> | null = null;
  private outbound: Promise<unknown> | null = null;
  private isClosed = false;
  /** Resolves once the socket has closed. */
  readonly whenClosed: Promise<void>;

  constructor(
    private readonly socket: WebSocketLike,
    private readonly options: ResolvedWebClientOptions,
    private readonly owner: WebConnectionOwner,
  ) {
    let socketClosed!: () => void;
    this.whenClosed = new Promise((resolve) => (socketClosed = resolve));
    socket.onmessage = (event: { data: unknown }) => this.onMessage(event.data);
    socket.onerror = () => undefined;
    socket.onclose = (event: { code: number; reason: string }) => {
      socketClosed();
      this.teardown(
        event.code === NORMAL_CLOSURE
          ? undefined
          : new MsgTransWebError(MsgTransErrorCode.CONNECTION_CLOSED, `WebSocket closed (${event.code}${event.reason ? ` ${event.reason}` : ''})`),
      );
    };
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Sends a request; returns its message id, for {@link cancel}. Throws if the data cannot be encoded. */
  request(target: WebTarget, data: unknown, sink: WebReplySink): number {
    let id = this.takeId();
    // after a wrap, skip ids a long-lived request still holds
    while (this.pending.has(id)) id = this.takeId();
    this.send(PacketType.REQUEST, target, id, data, 0);
    this.pending.set(id, sink);
    return id;
  }

  /** Sends a one-way packet. */
  emit(target: WebTarget, data: unknown): void {
    this.send(PacketType.ONE_WAY, target, this.takeId(), data, 0);
  }

  /** Drops interest in request `id`'s reply and tells the server to stop producing it. */
  cancel(id: number): void {
    if (this.pending.delete(id) && !this.isClosed) this.write(PacketType.ONE_WAY, 0, id, PacketFlag.CANCEL, EMPTY_BYTES, EMPTY_BYTES);
  }

  /** Answers a server request with a value, or with each value of an async iterable (MORE…END). */
  reply(request: WebIncoming, result: unknown): void {
    const iterable = result as AsyncIterable<unknown> | null;
    if (typeof iterable?.[Symbol.asyncIterator] !== 'function') {
      this.respond(request, 0, result);
      return;
    }
    const iterator = iterable[Symbol.asyncIterator]();
    let stopped = false;
    this.answering.set(request.messageId, () => {
      stopped = true;
      // the answerer's cleanup may fail; the server asked for nothing more
      Promise.resolve(iterator.return?.()).catch(() => undefined);
    });
    // As on the server: a value is held back until the next one (or the end) shows
    // whether the reply is a single value, which travels as one plain response.
    const pump = async (): Promise<void> => {
      let ended = false;
      try {
        let held: { value: unknown } | undefined;
        let streamed = false;
        for (;;) {
          const step = await iterator.next();
          if (stopped || this.isClosed) return;
          if (step.done) {
            ended = true;
            break;
          }
          if (held) {
            if (!this.respond(request, PacketFlag.MORE, held.value)) return;
            streamed = true;
          }
          held = { value: step.value };
        }
        if (held && !streamed) this.respond(request, 0, held.value);
        else if (!held || this.respond(request, PacketFlag.MORE, held.value)) this.respond(request, PacketFlag.END, EMPTY_BYTES);
      } catch (err) {
        ended = true;
        if (!stopped) this.replyError(request, err);
      } finally {
        this.answering.delete(request.messageId);
        // left early (the connection closed, a value could not be encoded): let the answerer clean up
        if (!ended && !stopped) Promise.resolve(iterator.return?.()).catch(() => undefined);
      }
    };
    void pump();
  }

  /** Ends a server request's reply with an error (`{ status, message }` for an Error, else the value). */
  replyError(request: WebIncoming, error: unknown): void {
    try {
      this.respond(request, PacketFlag.ERROR, error instanceof Error ? { status: 'error', message: error.message } : error);
    } catch (err) {
      // what was thrown cannot be encoded either (a BigInt): say so rather than nothing
      this.respond(request, PacketFlag.ERROR, { status: 'error', message: `Unencodable error: ${(err as Error).message}` });
    }
  }

  /**
   * Closes the connection: pending requests fail with `pendingError` (default
   * `ERR_MSGTRANS_CONNECTION_CLOSED`), the socket is closed, and the owner
   * hears `error` (undefined: a normal close).
   */
  close(error?: MsgTransWebError, pendingError?: MsgTransWebError): void {
    if (this.isClosed) return;
    try {
      this.socket.close(error ? BAD_INPUT_CLOSURE : NORMAL_CLOSURE, error ? error.code : '');
    } catch {
      // a socket that is still connecting or already gone: nothing more to close
    }
    this.teardown(error, pendingError);
  }

  /** Sends one reply packet; false if it could not go out as asked (closed, or replaced by an error reply). */
  private respond(request: WebIncoming, flags: number, data: unknown): boolean {
    if (this.isClosed) return false;
    try {
      this.send(PacketType.RESPONSE, { bizType: request.bizType, extHeader: EMPTY_BYTES, flags: 0 }, request.messageId, data, flags);
      return true;
    } catch (err) {
      if (flags & PacketFlag.ERROR) throw err;
      // a value JSON cannot encode (a BigInt, a cycle): the server gets an error, not silence
      this.respond(request, PacketFlag.ERROR, { status: 'error', message: (err as Error).message });
      return false;
    }
  }

  private send(
    packetType: number,
    target: WebTarget,
    messageId: number,
    data: unknown,
    flags: number,
  ): void {
    if (this.isClosed) throw new MsgTransWebError(MsgTransErrorCode.CONNECTION_CLOSED, 'Connection is closed');
    flags |= target.flags;
    let payload: Uint8Array;
    if (data instanceof Uint8Array) payload = data;
    else if (data instanceof ArrayBuffer) payload = new Uint8Array(data);
    else {
      flags |= PacketFlag.CODEC;
      payload = data === undefined ? EMPTY_BYTES : encodeUtf8(JSON.stringify(data) ?? '');
    }
    this.write(packetType, target.bizType, messageId, flags, target.extHeader, payload);
  }

  private write(packetType: number, bizType: number, messageId: number, flags: number, extHeader: Uint8Array, payload: Uint8Array): void {
    const packet: WebPacket = { compression: Compression.NONE, packetType, bizType, messageId, flags, extHeader, payload };
    if (payload.length < this.options.compressThreshold) {
      if (this.outbound === null) this.socket.send(encodeWebPacket(packet));
      else this.afterOutbound(() => this.socket.send(encodeWebPacket(packet)));
      return;
    }
    this.afterOutbound(async () => {
      packet.payload = await deflate(payload);
      packet.compression = Compression.ZLIB;
      if (!this.isClosed) this.socket.send(encodeWebPacket(packet));
    });
  }

  /** Runs `job` after every earlier asynchronous send, so packets leave in the order they were sent. */
  private afterOutbound(job: Job): void {
    const done = (this.outbound ?? Promise.resolve())
      .then(job)
      .catch((err) => this.close(err instanceof MsgTransWebError ? err : new MsgTransWebError(MsgTransErrorCode.BAD_PAYLOAD, String(err))))
      .then(() => {
        if (this.outbound === done) this.outbound = null;
      });
    this.outbound = done;
  }

  private onMessage(data: unknown): void {
    if (this.isClosed) return;
    if (!(data instanceof ArrayBuffer)) {
      this.close(new MsgTransWebError(MsgTransErrorCode.UNSUPPORTED_MESSAGE, 'Text WebSocket messages are not part of msgtrans'));
      return;
    }
    let packet: WebPacket;
    try {
      packet = decodeWebPacket(new Uint8Array(data), this.options.limits);
    } catch (err) {
      this.close(err as MsgTransWebError);
      return;
    }
    if (packet.compression === Compression.NONE && this.inbound === null) {
      this.dispatch(packet, packet.payload);
      return;
    }
    // a compressed payload inflates asynchronously: later packets wait behind it to keep their order
    const done = (this.inbound ?? Promise.resolve())
      .then(async () => {
        const payload = packet.compression === Compression.NONE ? packet.payload : await inflate(packet.compression, packet.payload, this.options.limits.maxPacketSize);
        if (!this.isClosed) this.dispatch(packet, payload);
      })
      .catch((err) => this.close(err as MsgTransWebError))
      .then(() => {
        if (this.inbound === done) this.inbound = null;
      });
    this.inbound = done;
  }

  private dispatch(packet: WebPacket, payload: Uint8Array): void {
    try {
      if (packet.packetType === PacketType.RESPONSE) {
        this.onResponse(packet, payload);
      } else if (packet.flags & PacketFlag.CANCEL) {
        if (packet.packetType === PacketType.ONE_WAY) this.answering.get(packet.messageId)?.();
      } else {
        const { route, metadata } = decodeExtHeader(packet.extHeader);
        const message: WebIncoming = {
          route: route ?? String(packet.bizType),
          bizType: packet.bizType,
          messageId: packet.messageId,
          metadata,
          data: this.decodePayload(packet.flags, payload),
        };
        if (packet.packetType === PacketType.ONE_WAY) this.owner.onEvent(this, message);
        else this.owner.onRequest(this, message);
      }
    } catch (err) {
      // bad input closes this connection; the client reconnects
      this.close(err instanceof MsgTransWebError ? err : new MsgTransWebError(MsgTransErrorCode.BAD_PAYLOAD, String(err)));
    }
  }

  private onResponse(packet: WebPacket, payload: Uint8Array): void {
    const id = packet.messageId;
    const sink = this.pending.get(id);
    // replies to requests that timed out or were cancelled are dropped
    if (sink === undefined) return;
    const flags = packet.flags;
    if (flags & PacketFlag.END) {
      this.pending.delete(id);
      sink.complete();
      return;
    }
    const value = this.decodePayload(flags, payload);
    if (flags & PacketFlag.ERROR) {
      this.pending.delete(id);
      const message = typeof value === 'string' ? value : ((value as { message?: unknown })?.message ?? JSON.stringify(value));
      sink.error(new MsgTransWebError(MsgTransErrorCode.REMOTE_ERROR, String(message), value));
    } else if (flags & PacketFlag.MORE) {
      sink.next(value);
    } else {
      this.pending.delete(id);
      sink.next(value);
      sink.complete();
    }
  }

  private decodePayload(flags: number, payload: Uint8Array): unknown {
    if (!(flags & PacketFlag.CODEC)) return payload;
    try {
      return payload.length === 0 ? undefined : JSON.parse(decodeUtf8(payload));
    } catch (err) {
      throw new MsgTransWebError(MsgTransErrorCode.BAD_PAYLOAD, `Undecodable payload: ${(err as Error).message}`);
    }
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = nextMessageId(id);
    return id;
  }

  /** Runs once, whichever comes first: close() or the socket going away. */
  private teardown(error: MsgTransWebError | undefined, pendingError?: MsgTransWebError): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const failure =
      pendingError ??
      new MsgTransWebError(
        MsgTransErrorCode.CONNECTION_CLOSED,
        `Connection closed before the reply arrived${error ? `: ${error.message}` : ''}`,
        undefined,
        error,
      );
    const sinks = [...this.pending.values()];
    this.pending.clear();
    for (const sink of sinks) sink.error(failure);
    for (const stop of [...this.answering.values()]) stop();
    this.answering.clear();
    this.owner.onClose(this, error);
  }
}
