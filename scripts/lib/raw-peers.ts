/**
 * Raw connections for the fuzzer: a TCP socket, a WebSocket (ws) whose
 * socket can also take hand-made frames, and a QUIC connection made with
 * @matrixai/quic directly (one bidirectional stream, ALPN "msgtrans").
 * They send bytes as given and cut what comes back into packets; nothing
 * from lib/codec or lib/session is involved.
 */
import * as net from 'node:net';
import Logger, { LogLevel } from '@matrixai/logger';
import { QUICClient, events as quicEvents } from '@matrixai/quic';
import { WebSocket } from 'ws';
import { webcrypto } from 'node:crypto';
import type { Chunk, Protocol } from './fuzz-inputs.js';
import { FrameSplitter, StreamSplitter, parsePacket, type InPacket } from '../../test/support/raw-wire.js';

/** Where the server listens. */
export interface Targets {
  tcp: { host: string; port: number };
  ws: string;
  quic: { host: string; port: number };
  /** CA that signed the server's certificate (QUIC is always TLS). */
  ca: string;
}

export interface RawConn {
  readonly protocol: Protocol;
  /** Our port: the server sees it as the peer's port. */
  readonly localPort: number;
  readonly closed: boolean;
  /** True once the server ended the connection (as opposed to us). */
  readonly closedByServer: boolean;
  /** WebSocket close code / QUIC application error code the server closed with. */
  readonly closeCode: number | undefined;
  onPacket: ((p: InPacket) => void) | null;
  /** Sends one chunk; resolves once handed to the transport. */
  send(chunk: Chunk): Promise<void>;
  /** Resolves true once closed, false if still open after `ms`. */
  waitClosed(ms: number): Promise<boolean>;
  /** Ends the connection from our side (if still open) and releases everything. */
  destroy(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const tick = () => new Promise((resolve) => setImmediate(resolve));

function timeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

abstract class BaseConn {
  onPacket: ((p: InPacket) => void) | null = null;
  closed = false;
  closedByServer = false;
  closeCode: number | undefined;
  protected byUs = false;
  private resolveClosed!: () => void;
  protected readonly closedPromise = new Promise<void>((resolve) => (this.resolveClosed = resolve));

  protected markClosed(code?: number): void {
    if (this.closed) return;
    this.closed = true;
    this.closeCode = code;
    if (!this.byUs) this.closedByServer = true;
    this.resolveClosed();
  }

  protected deliver = (p: InPacket): void => {
    this.onPacket?.(p);
  };

  async waitClosed(ms: number): Promise<boolean> {
    if (this.closed) return true;
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      this.closedPromise.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
    clearTimeout(timer);
    return closed;
  }
}

export class RawTcp extends BaseConn implements RawConn {
  readonly protocol = 'tcp' as const;
  readonly localPort: number;
  private readonly splitter = new StreamSplitter(this.deliver);

  private constructor(private readonly socket: net.Socket) {
    super();
    this.localPort = socket.localPort ?? 0;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.splitter.push(chunk));
    socket.on('error', () => undefined);
    socket.once('close', () => this.markClosed());
  }

  static async open(host: string, port: number, ms = 5000): Promise<RawTcp> {
    const socket = net.connect({ host, port });
    try {
      await timeout(
        new Promise<void>((resolve, reject) => {
          socket.once('connect', resolve);
          socket.once('error', reject);
        }),
        ms,
        'tcp connect',
      );
    } catch (err) {
      socket.destroy();
      throw err;
    }
    socket.removeAllListeners('error');
    return new RawTcp(socket);
  }

  async send(chunk: Chunk): Promise<void> {
    if (this.closed) return;
    if (chunk.type !== 'bytes') throw new Error(`tcp cannot send ${chunk.type}`);
    const cuts = chunk.cuts ?? [];
    let from = 0;
    for (const cut of [...cuts, chunk.data.length]) {
      if (this.closed) return;
      if (cut > from) this.socket.write(chunk.data.subarray(from, cut));
      from = cut;
      if (cut < chunk.data.length) await tick();
    }
  }

  async destroy(): Promise<void> {
    if (!this.closed) {
      this.byUs = true;
      this.socket.destroy();
    }
    await this.waitClosed(2000);
  }
}

export class RawWs extends BaseConn implements RawConn {
  readonly protocol = 'ws' as const;
  readonly localPort: number;

  private constructor(private readonly ws: WebSocket) {
    super();
    const socket = (ws as unknown as { _socket: net.Socket })._socket;
    this.localPort = socket.localPort ?? 0;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary && data.length >= 16) this.deliver(parsePacket(data));
    });
    ws.on('error', () => undefined);
    ws.once('close', (code: number) => this.markClosed(code));
  }

  static async open(url: string, ms = 5000): Promise<RawWs> {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024, handshakeTimeout: ms });
    try {
      await timeout(
        new Promise<void>((resolve, reject) => {
          ws.once('open', resolve);
          ws.once('error', reject);
        }),
        ms + 500,
        'ws connect',
      );
    } catch (err) {
      ws.terminate();
      throw err;
    }
    ws.removeAllListeners('error');
    return new RawWs(ws);
  }

  async send(chunk: Chunk): Promise<void> {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return;
    switch (chunk.type) {
      case 'binary':
        this.ws.send(chunk.data, { binary: true, compress: false });
        return;
      case 'text':
        this.ws.send(chunk.data, { binary: false, compress: false });
        return;
      case 'raw':
        (this.ws as unknown as { _socket: net.Socket })._socket.write(chunk.data);
        return;
      default:
        throw new Error(`ws cannot send ${chunk.type}`);
    }
  }

  async destroy(): Promise<void> {
    if (!this.closed) {
      this.byUs = true;
      this.ws.terminate();
    }
    await this.waitClosed(2000);
  }
}

const silentLogger = () => new Logger('fuzz-quic', LogLevel.SILENT);

export class RawQuic extends BaseConn implements RawConn {
  readonly protocol = 'quic' as const;
  readonly localPort: number;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private readonly splitter = new FrameSplitter(this.deliver);
  private released = false;

  private constructor(private readonly client: QUICClient) {
    super();
    this.localPort = client.localPort;
    client.addEventListener(quicEvents.EventQUICClientError.name, () => undefined);
    client.connection.addEventListener(
      quicEvents.EventQUICConnectionClose.name,
      (event: Event) => {
        const data = (event as quicEvents.EventQUICConnectionClose).detail as { data?: { errorCode?: number } } | undefined;
        this.markClosed(data?.data?.errorCode);
      },
      { once: true },
    );
    const stream = client.connection.newStream('bidi');
    this.writer = stream.writable.getWriter();
    this.writer.closed.catch(() => undefined);
    void this.readLoop(stream.readable.getReader());
  }

  static async open(host: string, port: number, ca: string, ms = 5000): Promise<RawQuic> {
    const client = await QUICClient.createQUICClient(
      {
        host,
        port,
        localHost: '127.0.0.1',
        // the stack's own verification: BoringSSL against the CA, name "localhost" (in the dev certificate)
        serverName: 'localhost',
        crypto: { ops: { randomBytes: async (data) => void webcrypto.getRandomValues(new Uint8Array(data)) } },
        logger: silentLogger(),
        config: {
          applicationProtos: ['msgtrans'],
          ca,
          verifyPeer: true,
          maxIdleTimeout: 30_000,
          initialMaxData: 64 * 1024 * 1024,
          initialMaxStreamDataBidiLocal: 16 * 1024 * 1024,
          initialMaxStreamDataBidiRemote: 16 * 1024 * 1024,
        },
      },
      { timer: ms },
    );
    return new RawQuic(client);
  }

  private async readLoop(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.splitter.push(Buffer.from(value));
      }
    } catch {
      // the connection went away: its close event says how
    }
  }

  async send(chunk: Chunk): Promise<void> {
    if (this.closed) return;
    if (chunk.type !== 'bytes') throw new Error(`quic cannot send ${chunk.type}`);
    const cuts = chunk.cuts ?? [];
    let from = 0;
    for (const cut of [...cuts, chunk.data.length]) {
      if (this.closed) return;
      if (cut > from) {
        try {
          await timeout(this.writer.write(chunk.data.subarray(from, cut)), 5000, 'quic stream write');
        } catch {
          return; // closed under us, or flow control never opened: the caller sees it as a close or a hang
        }
      }
      from = cut;
      if (cut < chunk.data.length) await sleep(2);
    }
  }

  async destroy(): Promise<void> {
    if (!this.closed) this.byUs = true;
    if (!this.released) {
      this.released = true;
      await timeout(this.client.destroy({ force: true }), 5000, 'quic destroy').catch(() => undefined);
    }
    await this.waitClosed(2000);
  }
}

export async function openRaw(protocol: Protocol, targets: Targets, ms = 5000): Promise<RawConn> {
  switch (protocol) {
    case 'tcp':
      return RawTcp.open(targets.tcp.host, targets.tcp.port, ms);
    case 'ws':
      return RawWs.open(targets.ws, ms);
    case 'quic':
      return RawQuic.open(targets.quic.host, targets.quic.port, targets.ca, ms);
  }
}
