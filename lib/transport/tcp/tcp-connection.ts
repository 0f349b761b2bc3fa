import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { PacketStreamDecoder } from '../../codec/packet-stream-decoder.js';
import type { MsgTransPacket } from '../../codec/packet.js';
import type { MsgTransConnection, MsgTransConnectionSink } from '../msgtrans-connection.interface.js';
import { IncompleteMessageWatchdog, SendStallWatchdog } from '../connection-guards.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import { HEARTBEAT_PACKET, isHeartbeat, PART_B_FLAGS, PeerHeartbeat } from '../peer-heartbeat.js';
import { WriteQueue } from '../write-queue.js';
import { Fifo } from '../../common/fifo.js';

// Above this a batch is written buffer by buffer (corked) instead of being
// concatenated: copying large payloads costs more than the extra write calls.
const CONCAT_LIMIT = 64 * 1024;
// At most this much is handed to the socket at a time; the rest waits here.
// Node reports a write done only when all of it reached the OS, so a write
// far larger than this would look like no progress to the stall check.
const WRITE_WINDOW = 256 * 1024;
// How long a graceful close waits for the peer to take its bytes (without
// progress) before destroying the socket.
const END_GRACE_MS = 2000;

// The socket's listeners are functions shared by every connection, which
// find their connection through this property: a closure and its context
// per listener per connection cost ~300 bytes of an idle connection's ~2 KiB.
const kConnection = Symbol('msgtrans.connection');
type OwnedSocket = Socket & { [kConnection]: TcpConnection };

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
  // batches beyond WRITE_WINDOW, oldest first (a Fifo: Array#shift is
  // quadratic over the 100,000s of entries a backlog can hold); of the
  // oldest, heldOffset bytes were handed over already
  private held: Fifo<Buffer> | null = null;
  private heldOffset = 0;
  private heldBytes = 0;
  // bytes handed to the socket so far; less what it still holds, what the OS took
  private handed = 0;
  private stall: SendStallWatchdog | null = null;
  private heartbeat: PeerHeartbeat | null = null;
  private isClosed = false;
  private ending = false;
  private closeError: Error | undefined;
  private endTimer: NodeJS.Timeout | null = null;
  private watchdog: IncompleteMessageWatchdog | null = null;
  private readPaused = false;
  // maxSendBufferSize, but never below the socket's high-water mark (see onSocketDrain)
  private readonly sendLimit: number;
  // a send() returned false: the sink hears onDrain once the backlog halves
  private drainWanted = false;
  // packets decoded so far: tells the watchdog whether a chunk completed one
  private received = 0;

  /**
   * @param heartbeatInterval ms; enables SO_KEEPALIVE, and the application
   *   heartbeat toward peers that speak Part B (or every peer with
   *   `limits.heartbeat: 'always'`). 0 disables both.
   */
  constructor(
    private readonly socket: Socket,
    readonly protocol: string,
    private readonly limits: ConnectionLimits,
    private readonly heartbeatInterval = 0,
  ) {
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    this.peerCertificate = (socket as TLSSocket).getPeerX509Certificate?.() ?? undefined;
    socket.setNoDelay(true);
    // The kernel notices a vanished host on an idle connection (Node sets
    // 10 probes 1 s apart); keep-alive seconds cannot go below 1.
    if (heartbeatInterval > 0) socket.setKeepAlive(true, Math.max(1000, heartbeatInterval));
    (socket as OwnedSocket)[kConnection] = this;
    socket.on('error', TcpConnection.onError);
    // on rather than once: 'close' comes once anyway, and once() allocates a wrapper per socket
    socket.on('close', TcpConnection.onClose);
    socket.on('drain', TcpConnection.onDrain);
    this.sendLimit = Math.max(limits.maxSendBufferSize, socket.writableHighWaterMark);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** @internal for the heartbeat: silence means nothing while we do not read. */
  get readingPaused(): boolean {
    return this.readPaused;
  }

  open(sink: MsgTransConnectionSink): void {
    this.sink = sink;
    if (this.socket.destroyed) {
      this.onSocketClose();
      return;
    }
    if (this.heartbeatInterval > 0 && this.limits.heartbeat === 'always') this.startHeartbeat();
    this.socket.on('data', TcpConnection.onData);
  }

  private static onData(this: OwnedSocket, chunk: Buffer): void {
    this[kConnection].onChunk(chunk);
  }

  private static onError(this: OwnedSocket, err: Error): void {
    this[kConnection].closeError ??= err;
  }

  private static onClose(this: OwnedSocket): void {
    this[kConnection].onSocketClose();
  }

  private static onDrain(this: OwnedSocket): void {
    this[kConnection].onSocketDrain();
  }

  private onChunk(chunk: Buffer): void {
    if (this.heartbeat !== null) this.heartbeat.received = true;
    try {
      // made on the first bytes, with its callback: an idle connection holds neither
      const decoder = (this.decoder ??= new PacketStreamDecoder(this.limits, (packet) => this.onPacket(packet)));
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
  }

  get bufferedAmount(): number {
    return (this.queue?.pendingBytes ?? 0) + this.heldBytes + this.socket.writableLength;
  }

  /** @internal for the stall check: bytes the OS has taken so far. */
  get bytesTaken(): number {
    return this.handed - this.socket.writableLength;
  }

  send(packet: Buffer): boolean {
    if (!this.isClosed) {
      (this.queue ??= new WriteQueue((items, bytes) => this.write(items, bytes))).push(packet);
      if (this.heartbeat !== null) this.heartbeat.sent = true;
    }
    if (this.bufferedAmount < this.sendLimit) return true;
    this.drainWanted = true;
    return false;
  }

  close(error?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.decoder?.stop();
    this.watchdog?.stop();
    this.heartbeat?.stop();
    if (error) {
      this.closeError = error;
      this.stall?.stop();
      this.queue?.clear();
      this.held = null;
      this.heldOffset = 0;
      this.heldBytes = 0;
      this.socket.destroy();
      return;
    }
    // what is queued still goes out: end() once the last held bytes are handed over
    this.ending = true;
    this.queue?.flushNow();
    this.endWhenFlushed();
    this.armEndTimer();
  }

  unwrap<T = unknown>(): T {
    return this.socket as T;
  }

  private onPacket(packet: MsgTransPacket): void {
    this.received++;
    if (packet.flags & PART_B_FLAGS) {
      const heartbeat = isHeartbeat(packet);
      if (this.heartbeat === null && this.heartbeatInterval > 0 && !this.isClosed) this.startHeartbeat(heartbeat);
      if (heartbeat) return;
    }
    this.sink?.onPacket(packet);
  }

  /**
   * @param answer the peer's heartbeat taught us: it already expects ours, so
   *   the first goes out now rather than at the next tick.
   */
  private startHeartbeat(answer = false): void {
    this.heartbeat = new PeerHeartbeat(this.heartbeatInterval, this);
    if (answer) this.sendHeartbeat();
  }

  /** @internal heartbeat: a CANCEL for id 0, unless bytes already wait for the peer. */
  sendHeartbeat(): void {
    if (this.isClosed || this.bufferedAmount > 0) return;
    this.send(HEARTBEAT_PACKET);
  }

  private write(items: Buffer[], bytes: number): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    if (this.heldBytes > 0 || socket.writableLength >= WRITE_WINDOW) {
      // a batch of small packets is held as one buffer: fewer entries, and pump() writes fewer buffers
      const held = (this.held ??= new Fifo());
      if (items.length === 1) held.push(items[0]);
      else if (bytes <= CONCAT_LIMIT) held.push(Buffer.concat(items, bytes));
      else for (const item of items) held.push(item);
      this.heldBytes += bytes;
    } else if (items.length === 1) {
      this.handed += bytes;
      socket.write(items[0]);
    } else if (bytes <= CONCAT_LIMIT) {
      this.handed += bytes;
      socket.write(Buffer.concat(items, bytes));
    } else {
      this.handed += bytes;
      socket.cork();
      for (const item of items) socket.write(item);
      socket.uncork();
    }
    this.afterWrite();
  }

  /** Hands held bytes to the socket, up to the window. */
  private pump(): void {
    const socket = this.socket;
    const held = this.held as Fifo<Buffer>;
    socket.cork();
    while (this.heldBytes > 0 && socket.writableLength < WRITE_WINDOW) {
      const oldest = held.peek() as Buffer;
      const offset = this.heldOffset;
      let item: Buffer;
      if (oldest.length - offset > WRITE_WINDOW) {
        item = oldest.subarray(offset, offset + WRITE_WINDOW);
        this.heldOffset += WRITE_WINDOW;
      } else {
        item = offset === 0 ? oldest : oldest.subarray(offset);
        held.shift();
        this.heldOffset = 0;
      }
      this.heldBytes -= item.length;
      this.handed += item.length;
      socket.write(item);
    }
    socket.uncork();
    if (this.heldBytes === 0) this.held = null;
  }

  /**
   * The socket took everything handed to it. Drain is the progress signal
   * rather than a callback per write (which costs a tick per write): bytes
   * are only held, or send() only reports a full backlog, above the socket's
   * high-water mark, and then Node always emits drain.
   */
  private onSocketDrain(): void {
    if (this.heldBytes > 0) this.pump();
    if (this.ending) this.endWhenFlushed();
    this.afterWrite();
  }

  /** Backpressure bookkeeping after anything was handed over or taken. */
  private afterWrite(): void {
    if (this.socket.writableLength > 0 || this.heldBytes > 0) {
      (this.stall ??= new SendStallWatchdog(this.limits.sendStallTimeout, this, (err) => this.close(err))).arm();
    }
    const buffered = this.bufferedAmount;
    const limit = this.sendLimit;
    if (!this.readPaused && buffered >= limit && !this.isClosed) {
      // stop taking requests from a peer that is not taking replies
      this.readPaused = true;
      this.socket.pause();
    } else if (buffered < limit / 2) {
      if (this.readPaused) {
        this.readPaused = false;
        if (!this.isClosed) this.socket.resume();
      }
      if (this.drainWanted) {
        this.drainWanted = false;
        this.sink?.onDrain?.();
      }
    }
  }

  private endWhenFlushed(): void {
    if (this.heldBytes === 0 && !this.socket.destroyed && !this.socket.writableEnded) this.socket.end();
  }

  /** Destroys the socket once the peer has taken nothing for END_GRACE_MS. */
  private armEndTimer(): void {
    let seen = -1;
    const check = () => {
      const buffered = this.bufferedAmount;
      if (buffered > 0 && buffered !== seen) {
        seen = buffered;
        this.endTimer = setTimeout(check, END_GRACE_MS);
        this.endTimer.unref();
        return;
      }
      this.socket.destroy();
    };
    this.endTimer = setTimeout(check, END_GRACE_MS);
    this.endTimer.unref();
  }

  private onSocketClose(): void {
    if (this.endTimer) clearTimeout(this.endTimer);
    this.endTimer = null;
    this.isClosed = true;
    this.decoder?.stop();
    this.watchdog?.stop();
    this.stall?.stop();
    this.heartbeat?.stop();
    this.queue?.clear();
    this.held = null;
    this.heldOffset = 0;
    this.heldBytes = 0;
    const sink = this.sink;
    this.sink = null;
    sink?.onClose(this.closeError);
  }
}
