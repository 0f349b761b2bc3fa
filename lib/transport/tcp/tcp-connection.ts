import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { PacketStreamDecoder } from '../../codec/packet-stream-decoder.js';
import type { MsgTransConnection, MsgTransConnectionSink } from '../msgtrans-connection.interface.js';
import { IncompleteMessageWatchdog, sendBufferFull } from '../connection-guards.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import { WriteQueue } from '../write-queue.js';

// Above this a batch is written buffer by buffer (corked) instead of being
// concatenated: copying large payloads costs more than the extra write calls.
const CONCAT_LIMIT = 64 * 1024;
// How long a graceful close waits for the peer before destroying the socket.
const END_GRACE_MS = 2000;

/** A msgtrans connection over a TCP or TLS socket: packets back to back on the stream. */
export class TcpConnection implements MsgTransConnection {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly peerCertificate: X509Certificate | undefined;
  private sink: MsgTransConnectionSink | null = null;
  // made on the first bytes received, like the queue and watchdog below
  private decoder: PacketStreamDecoder | null = null;
  // created on first use, like the watchdog: idle connections stay small
  private queue: WriteQueue | null = null;
  private isClosed = false;
  private closeError: Error | undefined;
  private endTimer: NodeJS.Timeout | null = null;
  private watchdog: IncompleteMessageWatchdog | null = null;
  private readPaused = false;
  // packets decoded so far: tells the watchdog whether a chunk completed one
  private received = 0;

  constructor(
    private readonly socket: Socket,
    readonly protocol: string,
    private readonly limits: ConnectionLimits,
  ) {
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    this.peerCertificate = (socket as TLSSocket).getPeerX509Certificate?.() ?? undefined;
    socket.setNoDelay(true);
    socket.on('error', (err) => {
      this.closeError ??= err;
    });
    socket.once('close', () => this.onSocketClose());
  }

  get closed(): boolean {
    return this.isClosed;
  }

  open(sink: MsgTransConnectionSink): void {
    this.sink = sink;
    if (this.socket.destroyed) {
      this.onSocketClose();
      return;
    }
    this.socket.on('data', (chunk: Buffer) => {
      try {
        const decoder = (this.decoder ??= new PacketStreamDecoder(this.limits, (packet) => {
          this.received++;
          this.sink?.onPacket(packet);
        }));
        const before = this.received;
        decoder.push(chunk);
        const pendingBytes = decoder.pendingBytes;
        if (pendingBytes > 0 || this.watchdog !== null) {
          this.watchdog ??= new IncompleteMessageWatchdog(this.limits.incompleteMessageTimeout, (err) => this.close(err));
          this.watchdog.update(pendingBytes, this.received !== before);
        }
      } catch (err) {
        this.close(err as Error);
      }
    });
  }

  get bufferedAmount(): number {
    return (this.queue?.pendingBytes ?? 0) + this.socket.writableLength;
  }

  send(packet: Buffer): boolean {
    if (!this.isClosed) (this.queue ??= new WriteQueue((items, bytes) => this.write(items, bytes))).push(packet);
    return this.bufferedAmount < this.limits.maxSendBufferSize;
  }

  close(error?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.decoder?.stop();
    this.watchdog?.stop();
    if (error) {
      this.closeError = error;
      this.queue?.clear();
      this.socket.destroy();
      return;
    }
    this.queue?.flushNow();
    this.socket.end();
    this.endTimer = setTimeout(() => this.socket.destroy(), END_GRACE_MS);
    this.endTimer.unref();
  }

  unwrap<T = unknown>(): T {
    return this.socket as T;
  }

  private write(items: Buffer[], bytes: number): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    // What is still unsent from earlier batches is what the peer failed to read.
    const unsent = socket.writableLength;
    if (unsent > this.limits.maxSendBufferSize) {
      this.close(sendBufferFull(unsent, this.limits.maxSendBufferSize));
      return;
    }
    if (items.length === 1) {
      socket.write(items[0]);
    } else if (bytes <= CONCAT_LIMIT) {
      socket.write(Buffer.concat(items, bytes));
    } else {
      socket.cork();
      for (const item of items) socket.write(item);
      socket.uncork();
    }
    if (!this.readPaused && socket.writableLength > this.limits.maxSendBufferSize / 2) {
      // backpressure: stop taking requests from a peer that is not taking replies
      this.readPaused = true;
      socket.pause();
      socket.once('drain', () => {
        this.readPaused = false;
        if (!this.isClosed) socket.resume();
      });
    }
  }

  private onSocketClose(): void {
    if (this.endTimer) clearTimeout(this.endTimer);
    this.endTimer = null;
    this.isClosed = true;
    this.decoder?.stop();
    this.watchdog?.stop();
    this.queue?.clear();
    const sink = this.sink;
    this.sink = null;
    sink?.onClose(this.closeError);
  }
}
