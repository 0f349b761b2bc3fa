import * as dgram from 'node:dgram';

/** Something the socket flushes once per turn: a QUIC connection. */
export interface QuicFlushable {
  /** Set by the socket while the connection waits for the turn's send pass. */
  flushQueued: boolean;
  flush(): void;
}

const PROBE_DATAGRAM = Buffer.from([0]);
// Room for this many bytes, and at least 4 full datagrams, before a send pass
// wraps around (64 full loopback datagrams would take 4 MiB per socket).
const SLAB_BYTES = 96 * 1024;
// UDP socket buffers: the kernel default (~208 KiB) overflows on one 1 MiB burst.
export const QUIC_SOCKET_BUFFER = 4 * 1024 * 1024;

/**
 * One `node:dgram` socket and its send pass. Connections mark themselves
 * with {@link schedule} as datagrams arrive or packets are queued; every
 * receive of the poll phase is processed before one pass in the check phase
 * (setImmediate) lets each marked connection read its stream, write what
 * is queued and emit its datagrams. Datagrams are written by quiche into
 * views of one preallocated slab; the slab is reused only when the socket
 * has sent everything synchronously (nothing queued in libuv still points
 * into it).
 */
export class QuicUdpSocket {
  private slab: Buffer;
  private slabOffset = 0;
  private marked: QuicFlushable[] = [];
  private spare: QuicFlushable[] = [];
  private scheduled: NodeJS.Immediate | null = null;
  /** Scratch for stream reads; callers copy out what they keep. */
  readonly readBuffer = Buffer.allocUnsafe(64 * 1024);

  constructor(
    readonly socket: dgram.Socket,
    readonly maxDatagramSize: number,
  ) {
    this.slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, 4 * maxDatagramSize));
  }

  /** Raises the socket buffers; a kernel that refuses keeps its defaults. */
  raiseBuffers(): void {
    try {
      this.socket.setRecvBufferSize(QUIC_SOCKET_BUFFER);
      this.socket.setSendBufferSize(QUIC_SOCKET_BUFFER);
    } catch {
      // capped by net.core.rmem_max / wmem_max: the smaller buffers still work
    }
  }

  schedule(connection: QuicFlushable): void {
    if (connection.flushQueued) return;
    connection.flushQueued = true;
    this.marked.push(connection);
    this.scheduled ??= setImmediate(this.run);
  }

  /** Where quiche writes the next datagram. */
  datagramView(): Buffer {
    if (this.slabOffset + this.maxDatagramSize > this.slab.length) this.rewind();
    return this.slab.subarray(this.slabOffset, this.slabOffset + this.maxDatagramSize);
  }

  /**
   * Sends `length` bytes of the last {@link datagramView}; no address on a
   * connected socket. `onSent` (for the rare sends whose error matters)
   * learns of errors such as ECONNREFUSED that the kernel reports on a send
   * rather than on a receive.
   */
  commit(view: Buffer, length: number, port?: number, host?: string, onSent?: (error: Error | null) => void): void {
    this.slabOffset += length;
    try {
      if (port === undefined) this.socket.send(view, 0, length, onSent);
      else this.socket.send(view, 0, length, port, host);
    } catch {
      // a closed socket: the connection notices through its own state
    }
  }

  /**
   * Sends one byte, which no QUIC endpoint takes for a packet (too short)
   * and a closed port answers with an ICMP refusal: a liveness probe that
   * congestion control cannot hold back. Connected (client) sockets only.
   */
  probe(onSent: (error: Error | null) => void): void {
    try {
      this.socket.send(PROBE_DATAGRAM, onSent);
    } catch {
      // closed
    }
  }

  private readonly run = (): void => {
    this.scheduled = null;
    const list = this.marked;
    this.marked = this.spare;
    for (let i = 0; i < list.length; i++) {
      const connection = list[i];
      connection.flushQueued = false;
      connection.flush();
    }
    list.length = 0;
    this.spare = list;
    this.rewind();
  };

  private rewind(): void {
    let queued = 0;
    try {
      queued = this.socket.getSendQueueCount();
    } catch {
      // not bound or already closed: nothing can point into the slab
    }
    // Datagrams libuv could not send at once still reference the slab.
    if (queued > 0) this.slab = Buffer.allocUnsafe(this.slab.length);
    this.slabOffset = 0;
  }
}

/**
 * Resolves addresses synchronously: a server only ever sends to the IP
 * literal a datagram came from, and the default lookup would defer every
 * send to a later tick (after the slab may be reused).
 */
export function literalLookup(
  address: string,
  family: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  callback(null, address, address.includes(':') ? 6 : 4);
}
