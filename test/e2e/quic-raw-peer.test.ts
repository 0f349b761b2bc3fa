/**
 * A plain msgtrans v1 peer over QUIC, written with @matrixai/quic directly and
 * from PROTOCOL.md alone: one bidirectional stream opened right after the
 * handshake, every packet preceded by its u32 big-endian length, ALPN
 * "msgtrans". Packets and frames are built and parsed by hand; nothing from
 * lib/codec or lib/session is used, so this checks the bytes the server
 * really accepts and sends.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import Logger, { LogLevel } from '@matrixai/logger';
import { QUICClient, events, type QUICClientCrypto, type QUICStream } from '@matrixai/quic';
import { MsgTransErrorCode, type MsgTransServer } from '../../lib/index.js';
import { createDevCertificates, type DevCertificates } from '../../sample/dev-certs.js';
import { testCertificates } from '../support/protocols.js';
import { startMsgTrans, waitFor, type RunningApp } from '../support/test-app.js';
import { CODEC, END, HAS_ROUTE_TAG, HEADER, MORE, ONE_WAY, REQUEST, RESPONSE, encode as packet, frame } from '../support/raw-wire.js';
import { within } from '../support/async.js';

// ---------------------------------------------------------------------------
// msgtrans v1 by hand
// ---------------------------------------------------------------------------

const WAIT_MS = 3000;
const CONNECT_MS = 5000;
const SILENCE_MS = 100;

function jsonRequest(messageId: number, route: string, value: unknown): Buffer {
  return frame(
    packet({ packetType: REQUEST, messageId, flags: HAS_ROUTE_TAG | CODEC, ext: `route:${route}`, payload: JSON.stringify(value) }),
  );
}

function pingRequest(messageId: number): Buffer {
  return frame(packet({ packetType: REQUEST, bizType: 10, messageId, payload: 'ping' }));
}

interface InPacket {
  frameLength: number;
  version: number;
  compression: number;
  packetType: number;
  bizType: number;
  messageId: number;
  flags: number;
  ext: Buffer;
  payload: Buffer;
}

function json(p: InPacket): unknown {
  assert.ok(p.flags & CODEC, `expected the CODEC flag, got flags 0x${p.flags.toString(16)}`);
  return p.payload.length === 0 ? undefined : JSON.parse(p.payload.toString('utf8'));
}

function assertResponse(p: InPacket, id: number, flags: number, bizType = 0): void {
  assert.equal(p.version, 1, 'version');
  assert.equal(p.compression, 0, 'compression');
  assert.equal(p.packetType, RESPONSE, 'packet_type');
  assert.equal(p.messageId, id, 'message_id');
  assert.equal(p.bizType, bizType, 'biz_type');
  assert.equal(p.ext.length, 0, 'a response carries no extension header');
  assert.equal(p.flags, flags, `flags: got 0x${p.flags.toString(16)}, want 0x${flags.toString(16)}`);
}

/** Rejects if `promise` does not settle within `ms` (the shared helper, with this file's argument order). */
const withTimeout = <T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> => within(promise, ms, what);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// A raw QUIC peer
// ---------------------------------------------------------------------------

/** Random bytes for the client's side of the handshake (all the library asks of a client). */
const rawClientCrypto: QUICClientCrypto = {
  ops: {
    randomBytes: async (data) => {
      webcrypto.getRandomValues(new Uint8Array(data));
    },
  },
};

const quietLogger = () => new Logger('raw-quic-peer', LogLevel.SILENT);

interface PeerOptions {
  alpn?: string[];
  ca?: string;
}

const clients: QUICClient[] = [];

async function createClient(port: number, options: PeerOptions): Promise<QUICClient> {
  const client = await QUICClient.createQUICClient(
    {
      host: '127.0.0.1',
      port,
      localHost: '127.0.0.1',
      // the stack's own check: BoringSSL against the CA, name "localhost" (in the dev certificate)
      serverName: 'localhost',
      crypto: rawClientCrypto,
      logger: quietLogger(),
      config: {
        applicationProtos: options.alpn ?? ['msgtrans'],
        ca: options.ca,
        verifyPeer: true,
      },
    },
    { timer: CONNECT_MS },
  );
  clients.push(client);
  // errors also arrive as close events; a listener keeps them from being reported as unhandled
  client.addEventListener(events.EventQUICClientError.name, () => undefined);
  return client;
}

/**
 * One QUIC connection with the single bidirectional stream msgtrans uses;
 * reads u32-length-prefixed frames off it. Every wait is bounded.
 */
class QuicRawPeer {
  private buffered: Buffer = Buffer.alloc(0);
  private readonly packets: InPacket[] = [];
  private waiters: Array<() => void> = [];
  private connectionClosed = false;
  private streamEnded = false;
  /** The first framing error seen in what the server sent. */
  private parseError: Error | undefined;
  readonly closedPromise: Promise<void>;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly stream: QUICStream;

  private constructor(readonly client: QUICClient) {
    this.closedPromise = new Promise((resolve) => {
      client.connection.addEventListener(
        events.EventQUICConnectionClose.name,
        () => {
          this.connectionClosed = true;
          this.notify();
          resolve();
        },
        { once: true },
      );
    });
    this.stream = client.connection.newStream('bidi');
    this.writer = this.stream.writable.getWriter();
    void this.readLoop();
  }

  static async open(port: number, options: PeerOptions = {}): Promise<QuicRawPeer> {
    return new QuicRawPeer(await createClient(port, options));
  }

  get closed(): boolean {
    return this.connectionClosed;
  }

  get queued(): number {
    return this.packets.length;
  }

  async write(bytes: Buffer): Promise<void> {
    await withTimeout(this.writer.write(bytes), 'stream write');
  }

  async tryNext(timeoutMs: number): Promise<InPacket | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.packets.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0 || this.connectionClosed || this.streamEnded) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.push(done);
      });
    }
    return this.packets.shift();
  }

  async next(timeoutMs = WAIT_MS): Promise<InPacket> {
    const p = await this.tryNext(timeoutMs);
    if (this.parseError) throw this.parseError;
    if (!p) throw new Error(this.connectionClosed ? 'connection closed while waiting for a packet' : `no packet within ${timeoutMs} ms`);
    return p;
  }

  async take(count: number, timeoutMs = WAIT_MS): Promise<InPacket[]> {
    const deadline = Date.now() + timeoutMs;
    const out: InPacket[] = [];
    while (out.length < count) out.push(await this.next(Math.max(1, deadline - Date.now())));
    return out;
  }

  async expectSilence(ms = SILENCE_MS): Promise<void> {
    const extra = await this.tryNext(ms);
    if (this.parseError) throw this.parseError;
    assert.equal(extra, undefined, extra && `unexpected packet: id ${extra.messageId} flags 0x${extra.flags.toString(16)}`);
  }

  async waitClosed(timeoutMs = WAIT_MS): Promise<void> {
    await withTimeout(this.closedPromise, 'QUIC connection close', timeoutMs);
  }

  private async readLoop(): Promise<void> {
    const reader = this.stream.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.onData(Buffer.from(value));
      }
    } catch (err) {
      // the connection went away (closedPromise reports it), or the server's framing was wrong
      if (err instanceof assert.AssertionError) this.parseError ??= err;
    } finally {
      this.streamEnded = true;
      this.notify();
    }
  }

  private onData(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 4) {
      const b = this.buffered;
      const length = b.readUInt32BE(0);
      if (b.length < 4 + length) break;
      const p = b.subarray(4, 4 + length);
      assert.ok(length >= HEADER, `frame of ${length} bytes is shorter than a packet header`);
      const extLen = p.readUInt16BE(8);
      const payloadLen = p.readUInt32BE(10);
      // the frame's length and the packet's own lengths must agree
      assert.equal(HEADER + extLen + payloadLen, length, 'frame length matches the packet header');
      this.packets.push({
        frameLength: length,
        version: p[0],
        compression: p[1],
        packetType: p[2],
        bizType: p[3],
        messageId: p.readUInt32BE(4),
        flags: p.readUInt16BE(14),
        ext: Buffer.from(p.subarray(HEADER, HEADER + extLen)),
        payload: Buffer.from(p.subarray(HEADER + extLen, length)),
      });
      this.buffered = b.subarray(4 + length);
    }
    this.notify();
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

// ---------------------------------------------------------------------------

describe('a raw msgtrans v1 peer over QUIC (@matrixai/quic, bytes per PROTOCOL.md)', () => {
  let running: RunningApp & { server: MsgTransServer; url: string };
  let port: number;
  let certs: DevCertificates;
  const serverErrors: Array<{ error: Error & { code?: string }; hadSession: boolean }> = [];

  before(async () => {
    certs = await testCertificates();
    running = await startMsgTrans({ listen: 'quic://127.0.0.1:0', tls: { key: certs.serverKey, cert: certs.serverCert } });
    running.server.on('error', (error, session) => serverErrors.push({ error, hadSession: session !== undefined }));
    port = running.server.addresses()[0].port;
    assert.ok(port > 0);
  });

  after(async () => {
    await Promise.all(clients.map((c) => withTimeout(c.destroy({ force: true }), 'client destroy').catch(() => undefined)));
    await running?.close();
  });

  test('a request by route ("route:echo", HAS_ROUTE_TAG|CODEC) gets one CODEC response, framed', async () => {
    const peer = await QuicRawPeer.open(port, { ca: certs.ca });
    await peer.write(jsonRequest(41, 'echo', { hello: 'quic', n: [1, 2, 3] }));
    const reply = await peer.next();
    assertResponse(reply, 41, CODEC);
    assert.deepEqual(json(reply), { hello: 'quic', n: [1, 2, 3] });
    assert.equal(reply.frameLength, HEADER + reply.payload.length);
    await peer.expectSilence();

    // the context sees protocol quic and the raw peer's message id
    await peer.write(jsonRequest(42, 'ctx', {}));
    const ctx = json(await peer.next()) as Record<string, unknown>;
    assert.equal(ctx.protocol, 'quic');
    assert.equal(ctx.messageId, 42);
    assert.equal(ctx.pattern, 'ctx');
    assert.equal(ctx.remoteAddress, '127.0.0.1');
  });

  test('a request by biz_type 10: raw "ping" gets raw "pong" (no flags, biz_type 10)', async () => {
    const peer = await QuicRawPeer.open(port, { ca: certs.ca });
    await peer.write(pingRequest(7));
    const reply = await peer.next();
    assertResponse(reply, 7, 0, 10);
    assert.equal(reply.payload.toString('utf8'), 'pong');
    await peer.expectSilence();
  });

  test('a streamed reply: MORE|CODEC packets then END, all with the request id', async () => {
    const peer = await QuicRawPeer.open(port, { ca: certs.ca });
    await peer.write(jsonRequest(300, 'stream', { n: 3 }));
    const packets = await peer.take(4);
    for (const [i, p] of packets.slice(0, 3).entries()) {
      assertResponse(p, 300, MORE | CODEC);
      assert.equal(json(p), i + 1);
    }
    assert.equal(packets[3].messageId, 300);
    assert.equal(packets[3].packetType, RESPONSE);
    assert.ok(packets[3].flags & END, 'last packet is END');
    assert.equal(packets[3].payload.length, 0);
    await peer.expectSilence();
  });

  test('several requests in one stream write are all answered', async () => {
    const peer = await QuicRawPeer.open(port, { ca: certs.ca });
    const start = running.observed.events.length;
    await peer.write(
      Buffer.concat([
        jsonRequest(1, 'echo', 'one'),
        pingRequest(2),
        frame(packet({ packetType: ONE_WAY, messageId: 3, flags: HAS_ROUTE_TAG | CODEC, ext: 'route:event', payload: '"quic-batched"' })),
        jsonRequest(4, 'echo.async', { four: 4 }),
        jsonRequest(5, 'echo', 5),
      ]),
    );
    const packets = await peer.take(4);
    await peer.expectSilence();
    const byId = new Map(packets.map((p) => [p.messageId, p]));
    assert.deepEqual([...byId.keys()].sort(), [1, 2, 4, 5]);
    assertResponse(byId.get(1)!, 1, CODEC);
    assert.equal(json(byId.get(1)!), 'one');
    assertResponse(byId.get(2)!, 2, 0, 10);
    assert.equal(byId.get(2)!.payload.toString(), 'pong');
    assert.deepEqual(json(byId.get(4)!), { four: 4 });
    assert.equal(json(byId.get(5)!), 5);
    await waitFor(() => running.observed.events.length > start, WAIT_MS);
    assert.deepEqual(running.observed.events.slice(start), ['quic-batched']);
  });

  test('a frame split across writes (inside the length prefix, inside the payload) is answered', async () => {
    const peer = await QuicRawPeer.open(port, { ca: certs.ca });
    const bytes = jsonRequest(60, 'echo', { split: 'x'.repeat(3000) });
    // 2 bytes of the prefix, then up to mid-header, then mid-payload, then the rest
    const cuts = [2, 11, 1500, bytes.length];
    let from = 0;
    for (const cut of cuts) {
      await peer.write(bytes.subarray(from, cut));
      from = cut;
      await sleep(20);
    }
    const reply = await peer.next();
    assertResponse(reply, 60, CODEC);
    assert.deepEqual(json(reply), { split: 'x'.repeat(3000) });

    // the end of one frame and the start of the next in one write
    const a = pingRequest(61);
    const b = jsonRequest(62, 'echo', 'second');
    await peer.write(Buffer.concat([a, b.subarray(0, 3)]));
    await sleep(20);
    await peer.write(b.subarray(3));
    const [r1, r2] = await peer.take(2);
    assertResponse(r1, 61, 0, 10);
    assert.equal(r1.payload.toString(), 'pong');
    assertResponse(r2, 62, CODEC);
    assert.equal(json(r2), 'second');
    await peer.expectSilence();
  });

  const badFrames: Array<{ name: string; bytes: () => Buffer; code: string }> = [
    {
      name: 'a length prefix of 16 MiB + 1 (0x01000001)',
      // only the prefix and a few bytes: the server must refuse from the prefix alone
      bytes: () => Buffer.concat([Buffer.from([0x01, 0x00, 0x00, 0x01]), Buffer.alloc(64, 0x01)]),
      code: MsgTransErrorCode.PACKET_TOO_LARGE,
    },
    {
      name: 'a frame longer than the packet its header describes',
      bytes: () => {
        const p = packet({ packetType: REQUEST, bizType: 10, messageId: 1, payload: 'ping' });
        return frame(Buffer.concat([p, Buffer.from('xyz')]));
      },
      code: MsgTransErrorCode.BAD_LENGTH,
    },
    {
      name: 'a frame shorter than the packet its header describes',
      bytes: () => frame(packet({ packetType: REQUEST, bizType: 10, messageId: 1, payload: 'ping', payloadLen: 40 })),
      code: MsgTransErrorCode.BAD_LENGTH,
    },
    {
      name: 'a frame shorter than a packet header',
      bytes: () => frame(Buffer.from([1, 0, 1, 10, 0, 0, 0, 1])),
      code: MsgTransErrorCode.BAD_LENGTH,
    },
  ];

  for (const c of badFrames) {
    test(`${c.name} ends that connection with ${c.code}; another connection keeps working`, async () => {
      const other = await QuicRawPeer.open(port, { ca: certs.ca });
      await other.write(jsonRequest(900, 'echo', 'before'));
      assert.equal(json(await other.next()), 'before');

      const victim = await QuicRawPeer.open(port, { ca: certs.ca });
      // prove the victim connection works before it misbehaves
      await victim.write(pingRequest(1));
      assertResponse(await victim.next(), 1, 0, 10);

      const errorsBefore = serverErrors.length;
      await victim.write(c.bytes());
      await victim.waitClosed();
      assert.equal(victim.closed, true);
      assert.equal(victim.queued, 0, 'nothing but a close answers a bad frame');
      await waitFor(() => serverErrors.length > errorsBefore, WAIT_MS);
      const fresh = serverErrors.slice(errorsBefore);
      assert.deepEqual(
        fresh.map((e) => e.error.code),
        [c.code],
      );
      assert.ok(fresh[0].hadSession, 'the error names the session it closed');

      assert.equal(other.closed, false);
      await other.write(jsonRequest(901, 'echo', { after: c.name }));
      const reply = await other.next();
      assertResponse(reply, 901, CODEC);
      assert.deepEqual(json(reply), { after: c.name });

      const newcomer = await QuicRawPeer.open(port, { ca: certs.ca });
      await newcomer.write(pingRequest(5));
      assert.equal((await newcomer.next()).payload.toString(), 'pong');
    });
  }

  test('ALPN mismatch: a client offering only "other" cannot connect; msgtrans clients still can', async () => {
    const started = Date.now();
    await assert.rejects(
      createClient(port, { alpn: ['other'], ca: certs.ca }),
      (err: Error & { data?: { isApp?: boolean; errorCode?: number } }) => {
        assert.ok(!/timed? ?out/i.test(`${err.name} ${err.message}`), `failed by the handshake, not the timer: ${err.name} ${err.message}`);
        // RFC 9001: a TLS alert travels as transport error 0x0100 + alert; 120 is no_application_protocol
        assert.equal(err.data?.isApp, false, `a transport-level close: ${err.name} ${err.message}`);
        assert.equal(err.data?.errorCode, 0x100 + 120, `no_application_protocol alert: ${err.name} ${err.message}`);
        return true;
      },
    );
    assert.ok(Date.now() - started < CONNECT_MS, `refused within ${CONNECT_MS} ms (took ${Date.now() - started} ms)`);

    const peer = await QuicRawPeer.open(port, { ca: certs.ca });
    await peer.write(pingRequest(1));
    assert.equal((await peer.next()).payload.toString(), 'pong');
  });

  test('verification is on: a client trusting another CA cannot connect', async () => {
    const stranger = await createDevCertificates();
    await assert.rejects(createClient(port, { ca: stranger.ca }));
  });
});
