import { X509Certificate } from 'node:crypto';
import type { QUICConnection, QUICStream } from '@matrixai/quic';
import { events } from '@matrixai/quic';
import { decodePacket } from '../../codec/packet-decoder.js';
import { MsgTransProtocolError } from '../../errors/msgtrans-protocol-error.js';
import type { MsgTransConnection, MsgTransConnectionSink } from '../msgtrans-connection.interface.js';
import { IncompleteMessageWatchdog, sendBufferFull } from '../connection-guards.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import { WriteQueue } from '../write-queue.js';
import { encodeFrames, QuicFrameDecoder } from './quic-frame-decoder.js';

/** QUIC application error codes this transport closes with. */
export const QuicCloseCode = {
  NORMAL: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
} as const;

/**
 * A msgtrans connection over QUIC: every packet of the connection, both ways,
 * travels on the one bidirectional stream the client opens, each preceded by
 * its u32 big-endian length.
 */
export class QuicConnection implements MsgTransConnection {
  readonly protocol = 'quic';
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly peerCertificate: X509Certificate | undefined;
  private sink: MsgTransConnectionSink | null = null;
  private readonly decoder: QuicFrameDecoder;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  // one stream write per turn: every write costs datagrams, so no early flush by count
  private readonly queue = new WriteQueue((items, bytes) => this.writeFrames(encodeFrames(items, bytes)), Infinity);
  private lastWrite: Promise<void> = Promise.resolve();
  private isClosed = false;
  private closeError: Error | undefined;
  private told = false;
  private unsentBytes = 0;
  // frames decoded so far: tells the watchdog whether a chunk completed one
  private received = 0;
  private readonly watchdog: IncompleteMessageWatchdog;

  /**
   * @param onClosed releases what owns the connection (the client's UDP
   * socket); runs once after the connection is gone.
   */
  constructor(
    private readonly connection: QUICConnection,
    private readonly stream: QUICStream,
    private readonly limits: ConnectionLimits,
    private readonly onClosed?: () => void,
  ) {
    this.remoteAddress = connection.remoteHost;
    this.remotePort = connection.remotePort;
    const [leaf] = connection.getRemoteCertsChain();
    this.peerCertificate = leaf ? new X509Certificate(Buffer.from(leaf)) : undefined;
    this.writer = stream.writable.getWriter();
    this.decoder = new QuicFrameDecoder(limits.maxPacketSize, (frame) => {
      this.received++;
      this.sink?.onPacket(decodePacket(frame, limits));
    });
    this.watchdog = new IncompleteMessageWatchdog(limits.incompleteMessageTimeout, (err) => this.close(err));
    connection.addEventListener(
      events.EventQUICConnectionClose.name,
      (event: Event) => {
        this.closeError ??= peerError((event as events.EventQUICConnectionClose).detail);
        this.finish();
      },
      { once: true },
    );
  }

  get closed(): boolean {
    return this.isClosed;
  }

  open(sink: MsgTransConnectionSink): void {
    this.sink = sink;
    if (this.connection.closed) {
      this.finish();
      return;
    }
    void this.readLoop();
  }

  get bufferedAmount(): number {
    return this.queue.pendingBytes + this.unsentBytes;
  }

  send(packet: Buffer): boolean {
    if (!this.isClosed) this.queue.push(packet);
    return this.bufferedAmount < this.limits.maxSendBufferSize;
  }

  close(error?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.decoder.stop();
    this.watchdog.stop();
    if (error) {
      this.closeError = error;
      this.queue.clear();
    } else {
      this.queue.flushNow();
    }
    const code = !error
      ? QuicCloseCode.NORMAL
      : error instanceof MsgTransProtocolError
        ? QuicCloseCode.PROTOCOL_ERROR
        : QuicCloseCode.INTERNAL_ERROR;
    const reason = Buffer.from((error?.message ?? '').slice(0, 100));
    // Let queued frames go out before the connection is torn down; force so
    // that an open stream cannot hold the close forever.
    void this.lastWrite
      .catch(() => undefined)
      .then(() => this.connection.stop({ isApp: true, errorCode: code, reason, force: true }))
      .catch(() => undefined)
      .finally(() => this.finish());
  }

  unwrap<T = unknown>(): T {
    return this.connection as T;
  }

  private async readLoop(): Promise<void> {
    const reader = this.stream.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.isClosed) break;
        const before = this.received;
        this.decoder.push(value as Buffer);
        this.watchdog.update(this.decoder.pendingBytes, this.received !== before);
        // backpressure: stop taking requests from a peer that is not taking replies
        if (this.unsentBytes > this.limits.maxSendBufferSize / 2) await this.lastWrite;
      }
      // the peer ended its side of the stream: the connection has nothing more to say
      if (!this.isClosed) this.close();
    } catch (err) {
      if (!this.isClosed) this.close(err instanceof MsgTransProtocolError ? err : undefined);
    } finally {
      reader.releaseLock();
    }
  }

  /** Writes bytes that are already framed, bypassing the queue. */
  writeFrames(frames: Buffer): void {
    if (this.unsentBytes > this.limits.maxSendBufferSize) {
      this.close(sendBufferFull(this.unsentBytes, this.limits.maxSendBufferSize));
      return;
    }
    this.unsentBytes += frames.length;
    this.lastWrite = this.writer.write(frames).then(
      () => {
        this.unsentBytes -= frames.length;
      },
      (err: Error) => {
        this.closeError ??= err;
      },
    );
  }

  private finish(): void {
    this.isClosed = true;
    this.decoder.stop();
    this.watchdog.stop();
    this.queue.clear();
    if (this.told) return;
    this.told = true;
    const sink = this.sink;
    this.sink = null;
    sink?.onClose(this.closeError);
    this.onClosed?.();
  }
}

/** A peer's orderly close (application code 0) is not an error. */
function peerError(error: unknown): Error | undefined {
  const data = (error as { data?: { isApp?: boolean; errorCode?: number } } | undefined)?.data;
  if (data?.isApp && data.errorCode === QuicCloseCode.NORMAL) return undefined;
  return error instanceof Error ? error : undefined;
}
