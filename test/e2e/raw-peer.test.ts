/**
 * A plain msgtrans v1 peer, written from PROTOCOL.md alone, talking to a
 * MsgTransServer over real TCP. Packets are built and parsed by hand here on
 * purpose: nothing from lib/codec or lib/session is used, so this suite checks
 * the wire bytes the library actually sends and accepts, not its own codec
 * agreeing with itself.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import { MsgTransErrorCode, type MsgTransServer } from '../../lib/index.js';
import {
  CANCEL,
  CODEC,
  END,
  ERROR,
  FRAGMENTED,
  HAS_ROUTE_TAG,
  HEADER,
  MORE,
  NONE,
  ONE_WAY,
  REQUEST,
  RESPONSE,
  ZLIB,
  ZSTD,
  encode,
  zstdCompress,
  zstdDecompress,
  type PacketSpec,
} from '../support/raw-wire.js';
import { startMsgTrans, waitFor, type RunningApp } from '../support/test-app.js';
import { within } from '../support/async.js';

// ---------------------------------------------------------------------------
// msgtrans v1 by hand (PROTOCOL.md Part A + the Part B flags)
// ---------------------------------------------------------------------------

const WAIT_MS = 2000;
const SILENCE_MS = 100;
const NO_HANDLER = 'There is no matching message handler defined in the remote service.';

/** A JSON request to a route, the way a plain peer would send it. */
function jsonRequest(messageId: number, route: string, value: unknown, extra: Partial<PacketSpec> = {}): Buffer {
  return encode({
    packetType: REQUEST,
    messageId,
    flags: HAS_ROUTE_TAG | CODEC,
    ext: `route:${route}`,
    payload: JSON.stringify(value),
    ...extra,
  });
}

interface InPacket {
  version: number;
  compression: number;
  packetType: number;
  bizType: number;
  messageId: number;
  flags: number;
  ext: Buffer;
  /** As sent (still compressed if `compression` is not 0). */
  rawPayload: Buffer;
  /** Decompressed. */
  payload: Buffer;
}

function decompress(compression: number, data: Buffer): Buffer {
  if (compression === ZLIB) return zlib.inflateSync(data);
  if (compression === ZSTD) return zstdDecompress(data);
  return data;
}

/** The payload of a CODEC packet as JSON (empty means undefined). */
function json(p: InPacket): unknown {
  assert.ok(p.flags & CODEC, `expected the CODEC flag, got flags 0x${p.flags.toString(16)}`);
  return p.payload.length === 0 ? undefined : JSON.parse(p.payload.toString('utf8'));
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(4, '0')}`;
}

/**
 * A raw TCP socket that accumulates whatever arrives and cuts it into packets
 * by the header's lengths. Every wait is bounded.
 */
class RawPeer {
  private buffered: Buffer = Buffer.alloc(0);
  private readonly packets: InPacket[] = [];
  private waiters: Array<() => void> = [];
  private isClosed = false;
  readonly errors: Error[] = [];
  private readonly closedPromise: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.errors.push(err));
    this.closedPromise = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.notify();
        resolve();
      }),
    );
  }

  static async open(url: string): Promise<RawPeer> {
    const { hostname, port } = new URL(url);
    const socket = connect({ host: hostname, port: Number(port) });
    const peer = new RawPeer(socket);
    peers.push(peer);
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      }),
      'connect',
    );
    return peer;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Packets received and not yet taken. */
  get queued(): number {
    return this.packets.length;
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next packet, or undefined if none arrives within `timeoutMs`. */
  async tryNext(timeoutMs: number): Promise<InPacket | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.packets.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0 || this.isClosed) return undefined;
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

  /** The next packet; fails if none arrives within `timeoutMs`. */
  async next(timeoutMs = WAIT_MS): Promise<InPacket> {
    const packet = await this.tryNext(timeoutMs);
    if (!packet) throw new Error(this.isClosed ? 'socket closed while waiting for a packet' : `no packet within ${timeoutMs} ms`);
    return packet;
  }

  /** `count` packets, in arrival order. */
  async take(count: number, timeoutMs = WAIT_MS): Promise<InPacket[]> {
    const deadline = Date.now() + timeoutMs;
    const out: InPacket[] = [];
    while (out.length < count) out.push(await this.next(Math.max(1, deadline - Date.now())));
    return out;
  }

  /** Takes packets until none arrives for `quietMs`; fails if that never happens within `timeoutMs`. */
  async drain(quietMs = 50, timeoutMs = WAIT_MS): Promise<InPacket[]> {
    const deadline = Date.now() + timeoutMs;
    const out: InPacket[] = [];
    for (;;) {
      const packet = await this.tryNext(quietMs);
      if (!packet) return out;
      out.push(packet);
      if (Date.now() > deadline) throw new Error(`still receiving packets after ${timeoutMs} ms (${out.length} so far)`);
    }
  }

  /** Asserts that nothing (more) arrives within `ms`. */
  async expectSilence(ms = SILENCE_MS): Promise<void> {
    const extra = await this.tryNext(ms);
    assert.equal(
      extra,
      undefined,
      extra && `unexpected packet: id ${extra.messageId} flags ${hex(extra.flags)} payload ${extra.payload.toString()}`,
    );
  }

  /** Resolves when the server has closed the socket; fails after `timeoutMs`. */
  async waitClosed(timeoutMs = WAIT_MS): Promise<void> {
    await withTimeout(this.closedPromise, 'socket close', timeoutMs);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= HEADER) {
      const b = this.buffered;
      const extLen = b.readUInt16BE(8);
      const payloadLen = b.readUInt32BE(10);
      const total = HEADER + extLen + payloadLen;
      if (b.length < total) break;
      const compression = b.readUInt8(1);
      const rawPayload = Buffer.from(b.subarray(HEADER + extLen, total));
      this.packets.push({
        version: b.readUInt8(0),
        compression,
        packetType: b.readUInt8(2),
        bizType: b.readUInt8(3),
        messageId: b.readUInt32BE(4),
        flags: b.readUInt16BE(14),
        ext: Buffer.from(b.subarray(HEADER, HEADER + extLen)),
        rawPayload,
        payload: decompress(compression, rawPayload),
      });
      this.buffered = b.subarray(total);
    }
    this.notify();
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

const peers: RawPeer[] = [];

/** Rejects if `promise` does not settle within `ms` (the shared helper, with this file's argument order). */
const withTimeout = <T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> => within(promise, ms, what);

/** The fields every response to request `id` must have. */
function assertResponseHeader(p: InPacket, id: number, bizType = 0): void {
  assert.equal(p.version, 1, 'version');
  assert.equal(p.packetType, RESPONSE, 'packet_type');
  assert.equal(p.messageId, id, 'message_id');
  assert.equal(p.bizType, bizType, 'biz_type');
  assert.equal(p.ext.length, 0, 'a response carries no extension header');
}

// ---------------------------------------------------------------------------

describe('a raw msgtrans v1 peer (bytes per PROTOCOL.md) against MsgTransServer over TCP', () => {
  let running: RunningApp & { server: MsgTransServer; url: string };
  const serverErrors: Array<{ error: Error & { code?: string }; hadSession: boolean }> = [];

  before(async () => {
    running = await startMsgTrans({ listen: 'tcp://127.0.0.1:0' });
    running.server.on('error', (error, session) => serverErrors.push({ error, hadSession: session !== undefined }));
  });

  after(async () => {
    for (const peer of peers) peer.destroy();
    await running?.close();
  });

  test('raw request on biz_type 10: "ping" gets exactly one raw "pong" response', async () => {
    const peer = await RawPeer.open(running.url);
    peer.write(encode({ packetType: REQUEST, bizType: 10, messageId: 100, flags: 0, payload: 'ping' }));
    const reply = await peer.next();
    assert.equal(reply.version, 1);
    assert.equal(reply.compression, NONE);
    assert.equal(reply.packetType, RESPONSE);
    assert.equal(reply.bizType, 10);
    assert.equal(reply.messageId, 100);
    assert.equal(reply.ext.length, 0);
    assert.equal(reply.flags, 0, `raw reply must carry no flags, got ${hex(reply.flags)}`);
    assert.equal(reply.payload.toString('utf8'), 'pong');
    await peer.expectSilence();
  });

  test('JSON request to route "echo", with and without HAS_ROUTE_TAG', async () => {
    const peer = await RawPeer.open(running.url);

    peer.write(jsonRequest(200, 'echo', { a: 1 }));
    const tagged = await peer.next();
    assertResponseHeader(tagged, 200);
    assert.equal(tagged.compression, NONE);
    assert.equal(tagged.flags, CODEC, `got ${hex(tagged.flags)}`);
    assert.deepEqual(json(tagged), { a: 1 });
    await peer.expectSilence();

    // route entry present, flag absent: the route must still be used
    peer.write(jsonRequest(201, 'echo', { a: 1 }, { flags: CODEC }));
    const untagged = await peer.next();
    assertResponseHeader(untagged, 201);
    assert.equal(untagged.flags, CODEC, `got ${hex(untagged.flags)}`);
    assert.deepEqual(json(untagged), { a: 1 });
    await peer.expectSilence();

    // HIGH_PRIORITY and bits the receiver does not know are ignored; ids 0 and 2^32-1 are legal
    peer.write(jsonRequest(0xffffffff, 'echo', 'max id', { flags: HAS_ROUTE_TAG | CODEC | 0x0002 | 0x8000 | 0x0100 }));
    const maxId = await peer.next();
    assertResponseHeader(maxId, 0xffffffff);
    assert.equal(maxId.flags, CODEC, `got ${hex(maxId.flags)}`);
    assert.equal(json(maxId), 'max id');
    peer.write(jsonRequest(0, 'echo', 'zero id'));
    const zeroId = await peer.next();
    assertResponseHeader(zeroId, 0);
    assert.equal(json(zeroId), 'zero id');

    // a response for a request the server never sent is dropped, not fatal
    peer.write(encode({ packetType: RESPONSE, messageId: 12345, flags: CODEC, payload: '"stray"' }));
    await peer.expectSilence();
    peer.write(jsonRequest(202, 'echo', 'still open'));
    assert.equal(json(await peer.next()), 'still open');
  });

  test('the route entry need not come first; other entries arrive as metadata', async () => {
    const peer = await RawPeer.open(running.url);
    peer.write(
      encode({
        packetType: REQUEST,
        messageId: 210,
        flags: HAS_ROUTE_TAG | CODEC,
        ext: 'trace-id:4bf92f35\nroute:ctx\nodd:a%25b%0Ac',
        payload: '{}',
      }),
    );
    const reply = await peer.next();
    assertResponseHeader(reply, 210);
    assert.equal(reply.flags, CODEC);
    const ctx = json(reply) as Record<string, unknown>;
    assert.equal(ctx.pattern, 'ctx');
    assert.equal(ctx.messageId, 210);
    assert.equal(ctx.bizType, 0);
    assert.deepEqual(ctx.metadata, { 'trace-id': '4bf92f35', odd: 'a%b\nc' });
  });

  test('streamed reply of 3 values: three MORE|CODEC packets then one END', async () => {
    const peer = await RawPeer.open(running.url);
    peer.write(jsonRequest(300, 'stream', { n: 3 }));
    const packets = await peer.take(4);
    for (const [i, p] of packets.slice(0, 3).entries()) {
      assertResponseHeader(p, 300);
      assert.equal(p.flags, MORE | CODEC, `value ${i}: got ${hex(p.flags)}`);
      assert.equal(json(p), i + 1);
    }
    const end = packets[3];
    assertResponseHeader(end, 300);
    assert.ok(end.flags & END, `last packet must be END, got ${hex(end.flags)}`);
    assert.equal(end.flags & (ERROR | MORE), 0, `END packet flags ${hex(end.flags)}`);
    assert.equal(end.payload.length, 0, 'END carries no payload');
    await peer.expectSilence();
  });

  test('streamed reply of 1 value is one plain response; of 0 values one END', async () => {
    const peer = await RawPeer.open(running.url);
    peer.write(jsonRequest(310, 'stream', { n: 1 }));
    const single = await peer.next();
    assertResponseHeader(single, 310);
    assert.equal(single.flags, CODEC, `a single value travels as a plain response, got ${hex(single.flags)}`);
    assert.equal(json(single), 1);
    await peer.expectSilence();

    peer.write(jsonRequest(311, 'stream', { n: 0 }));
    const end = await peer.next();
    assertResponseHeader(end, 311);
    assert.ok(end.flags & END, `got ${hex(end.flags)}`);
    assert.equal(end.flags & (ERROR | MORE), 0, `END packet flags ${hex(end.flags)}`);
    assert.equal(end.payload.length, 0);
    await peer.expectSilence();
  });

  // An END packet carries no value, so it must not claim a codec payload either.
  test('END packets carry exactly flags 0x0040 (no CODEC)', async () => {
    const peer = await RawPeer.open(running.url);
    peer.write(jsonRequest(320, 'stream', { n: 0 }));
    const end = await peer.next();
    assert.equal(end.flags, END, `got ${hex(end.flags)}`);
  });

  test('an unknown route gets one ERROR response with Nest\'s "no handler" message', async () => {
    const peer = await RawPeer.open(running.url);
    peer.write(jsonRequest(400, 'no.such.route', { a: 1 }));
    const reply = await peer.next();
    assertResponseHeader(reply, 400);
    assert.ok(reply.flags & ERROR, `ERROR flag expected, got ${hex(reply.flags)}`);
    assert.ok(reply.flags & CODEC, `CODEC flag expected, got ${hex(reply.flags)}`);
    assert.equal(reply.flags & (MORE | END), 0, `got ${hex(reply.flags)}`);
    assert.equal(json(reply), NO_HANDLER);
    await peer.expectSilence();

    // also on an unbound biz_type with no route
    peer.write(encode({ packetType: REQUEST, bizType: 99, messageId: 401, payload: 'x' }));
    const byBiz = await peer.next();
    assertResponseHeader(byBiz, 401, 99);
    assert.ok(byBiz.flags & ERROR, `got ${hex(byBiz.flags)}`);
    assert.equal(json(byBiz), NO_HANDLER);
  });

  test('one-way packets reach @EventPattern(12) raw and @EventPattern("event") as JSON, with no reply', async () => {
    const peer = await RawPeer.open(running.url);
    const start = running.observed.events.length;
    peer.write(encode({ packetType: ONE_WAY, bizType: 12, messageId: 1, payload: 'raw-event' }));
    await waitFor(() => running.observed.events.length >= start + 1, WAIT_MS);
    assert.deepEqual(running.observed.events.slice(start), [{ biz12: 'raw-event' }]);

    peer.write(
      encode({ packetType: ONE_WAY, messageId: 2, flags: HAS_ROUTE_TAG | CODEC, ext: 'route:event', payload: '{"raw":true}' }),
    );
    await waitFor(() => running.observed.events.length >= start + 2, WAIT_MS);
    assert.deepEqual(running.observed.events.slice(start), [{ biz12: 'raw-event' }, { raw: true }]);
    await peer.expectSilence();

    // a one-way packet nobody handles is dropped quietly; the connection stays usable
    peer.write(encode({ packetType: ONE_WAY, messageId: 3, flags: HAS_ROUTE_TAG | CODEC, ext: 'route:no.such.event', payload: '1' }));
    await peer.expectSilence();
    peer.write(jsonRequest(500, 'echo', 'after event'));
    assert.equal(json(await peer.next()), 'after event');
    assert.equal(running.observed.events.length, start + 2);
  });

  test('a request written one byte at a time is answered', async () => {
    const peer = await RawPeer.open(running.url);
    const bytes = jsonRequest(600, 'echo', { split: 'into single bytes', n: [1, 2, 3] });
    for (let i = 0; i < bytes.length; i++) {
      peer.write(bytes.subarray(i, i + 1));
      if (i % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
      if (i === 7 || i === 16) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const reply = await peer.next();
    assertResponseHeader(reply, 600);
    assert.equal(reply.flags, CODEC);
    assert.deepEqual(json(reply), { split: 'into single bytes', n: [1, 2, 3] });

    // and a raw biz_type request byte by byte too
    const ping = encode({ packetType: REQUEST, bizType: 10, messageId: 601, payload: 'ping' });
    for (const byte of ping) {
      peer.write(Buffer.of(byte));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const pong = await peer.next();
    assertResponseHeader(pong, 601, 10);
    assert.equal(pong.payload.toString(), 'pong');

    // a header-only packet (no ext header, no payload) split into bytes
    const empty = encode({ packetType: REQUEST, bizType: 10, messageId: 602 });
    assert.equal(empty.length, HEADER);
    for (const byte of empty) {
      peer.write(Buffer.of(byte));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const question = await peer.next();
    assertResponseHeader(question, 602, 10);
    assert.equal(question.payload.toString(), '?');
    await peer.expectSilence();
  });

  test('several requests in one write() all get their replies', async () => {
    const peer = await RawPeer.open(running.url);
    const batch = Buffer.concat([
      jsonRequest(700, 'echo', 'first'),
      encode({ packetType: REQUEST, bizType: 10, messageId: 701, payload: 'ping' }),
      jsonRequest(702, 'echo', { second: true }, { flags: CODEC }),
      encode({ packetType: ONE_WAY, messageId: 703, flags: HAS_ROUTE_TAG | CODEC, ext: 'route:event', payload: '"batched"' }),
      jsonRequest(704, 'echo.async', [4]),
      jsonRequest(705, 'stream', { n: 2 }),
      jsonRequest(706, 'echo', 6),
    ]);
    const start = running.observed.events.length;
    peer.write(batch);
    // 5 single replies + 2 MORE + 1 END
    const packets = await peer.take(8);
    await peer.expectSilence();
    const byId = new Map<number, InPacket[]>();
    for (const p of packets) {
      assert.equal(p.packetType, RESPONSE);
      byId.set(p.messageId, [...(byId.get(p.messageId) ?? []), p]);
    }
    assert.deepEqual([...byId.keys()].sort(), [700, 701, 702, 704, 705, 706]);
    assert.deepEqual(json(byId.get(700)![0]), 'first');
    assert.equal(byId.get(701)![0].payload.toString(), 'pong');
    assert.equal(byId.get(701)![0].bizType, 10);
    assert.deepEqual(json(byId.get(702)![0]), { second: true });
    assert.deepEqual(json(byId.get(704)![0]), [4]);
    assert.deepEqual(json(byId.get(706)![0]), 6);
    const stream = byId.get(705)!;
    assert.deepEqual(
      stream.map((p) => p.flags & (MORE | END)),
      [MORE, MORE, END],
    );
    assert.deepEqual(stream.slice(0, 2).map(json), [1, 2]);
    await waitFor(() => running.observed.events.length >= start + 1, WAIT_MS);
    assert.deepEqual(running.observed.events.slice(start), ['batched']);
  });

  test('a 1 MiB request spread over many TCP segments is answered in full', async () => {
    const peer = await RawPeer.open(running.url);
    const big = 'x'.repeat(1024 * 1024);
    const bytes = jsonRequest(750, 'echo', big);
    // odd-sized pieces so header, ext header and payload boundaries fall mid-write
    for (let i = 0; i < bytes.length; i += 65_537) {
      peer.write(bytes.subarray(i, i + 65_537));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const reply = await peer.next();
    assertResponseHeader(reply, 750);
    assert.equal(reply.flags, CODEC);
    assert.equal(json(reply), big);
  });

  test('compressed requests (zlib = 2, zstd = 1) are answered correctly', async () => {
    const peer = await RawPeer.open(running.url);
    const value = { a: 1, text: 'compress me '.repeat(20) };
    const body = Buffer.from(JSON.stringify(value), 'utf8');

    const deflated = zlib.deflateSync(body);
    assert.equal(deflated[0] & 0x0f, 8, 'RFC 1950 zlib stream (CM = deflate)');
    peer.write(jsonRequest(800, 'echo', undefined, { compression: ZLIB, payload: deflated }));
    const zlibReply = await peer.next();
    assertResponseHeader(zlibReply, 800);
    assert.equal(zlibReply.flags, CODEC);
    assert.deepEqual(json(zlibReply), value);

    const zstd = zstdCompress(body);
    assert.equal(zstd.readUInt32LE(0), 0xfd2fb528, 'zstd frame magic');
    peer.write(jsonRequest(801, 'echo', undefined, { compression: ZSTD, payload: zstd }));
    const zstdReply = await peer.next();
    assertResponseHeader(zstdReply, 801);
    assert.equal(zstdReply.flags, CODEC);
    assert.deepEqual(json(zstdReply), value);

    // a compressed raw payload on a biz_type
    peer.write(encode({ packetType: REQUEST, bizType: 10, messageId: 802, compression: ZLIB, payload: zlib.deflateSync('ping') }));
    const pong = await peer.next();
    assertResponseHeader(pong, 802, 10);
    assert.equal(pong.payload.toString(), 'pong');
    await peer.expectSilence();
  });

  const garbageCases: Array<{ name: string; bytes: () => Buffer; code: string }> = [
    {
      name: 'version 2',
      bytes: () => encode({ version: 2, packetType: REQUEST, bizType: 10, messageId: 1 }),
      code: MsgTransErrorCode.BAD_VERSION,
    },
    {
      name: 'random bytes starting with 0x07',
      bytes: () => Buffer.from([0x07, 0x9a, 0x33, 0xee, 0x01, 0x02, 0xfe, 0x11, 0x00, 0x42, 0x13, 0x37, 0xca, 0xfe, 0xba, 0xbe]),
      code: MsgTransErrorCode.BAD_VERSION,
    },
    {
      name: 'payload_len 0xFFFFFFFF',
      bytes: () => encode({ packetType: REQUEST, bizType: 10, messageId: 1, payloadLen: 0xffffffff }),
      code: MsgTransErrorCode.PACKET_TOO_LARGE,
    },
    {
      name: 'the FRAGMENTED flag',
      bytes: () => encode({ packetType: REQUEST, bizType: 10, messageId: 1, flags: FRAGMENTED, payload: 'ping' }),
      code: MsgTransErrorCode.FRAGMENTED,
    },
    {
      name: 'invalid JSON under CODEC',
      bytes: () => jsonRequest(1, 'echo', undefined, { payload: '{"a":1,,' }),
      code: MsgTransErrorCode.BAD_PAYLOAD,
    },
    {
      name: 'compression 3',
      bytes: () => encode({ compression: 3, packetType: REQUEST, bizType: 10, messageId: 1, payload: 'ping' }),
      code: MsgTransErrorCode.BAD_COMPRESSION,
    },
    {
      name: 'packet_type 3',
      bytes: () => encode({ packetType: 3, bizType: 10, messageId: 1, payload: 'ping' }),
      code: MsgTransErrorCode.BAD_PACKET_TYPE,
    },
    {
      name: 'a corrupt zlib payload',
      bytes: () => encode({ compression: ZLIB, packetType: REQUEST, bizType: 10, messageId: 1, payload: 'not zlib at all' }),
      code: MsgTransErrorCode.DECOMPRESSION_FAILED,
    },
    {
      name: 'a zlib payload inflating past 16 MiB',
      bytes: () =>
        encode({ compression: ZLIB, packetType: REQUEST, bizType: 10, messageId: 1, payload: zlib.deflateSync(Buffer.alloc(17 * 1024 * 1024)) }),
      code: MsgTransErrorCode.DECOMPRESSED_TOO_LARGE,
    },
    {
      name: 'an extension header that is not UTF-8',
      bytes: () => encode({ packetType: REQUEST, messageId: 1, flags: HAS_ROUTE_TAG | CODEC, ext: Buffer.from([0x72, 0x3a, 0xff, 0xfe]), payload: '1' }),
      code: MsgTransErrorCode.BAD_EXT_HEADER,
    },
  ];

  for (const c of garbageCases) {
    test(`garbage (${c.name}) closes only that connection with ${c.code}`, async () => {
      const b = await RawPeer.open(running.url);
      b.write(jsonRequest(900, 'echo', 'before'));
      assert.deepEqual(json(await b.next()), 'before');

      const a = await RawPeer.open(running.url);
      const errorsBefore = serverErrors.length;
      a.write(c.bytes());
      await a.waitClosed();
      assert.equal(a.queued, 0, 'the server answers garbage with nothing but a close');
      await waitFor(() => serverErrors.length > errorsBefore, WAIT_MS);
      const fresh = serverErrors.slice(errorsBefore);
      assert.deepEqual(
        fresh.map((e) => e.error.code),
        [c.code],
      );
      assert.ok(fresh[0].hadSession, 'the error names the session it closed');

      // B is untouched
      assert.equal(b.closed, false);
      b.write(jsonRequest(901, 'echo', { after: c.name }));
      const reply = await b.next();
      assertResponseHeader(reply, 901);
      assert.deepEqual(json(reply), { after: c.name });
      b.write(encode({ packetType: REQUEST, bizType: 10, messageId: 902, payload: 'ping' }));
      assert.equal((await b.next()).payload.toString(), 'pong');

      // and a new connection works
      const fresh2 = await RawPeer.open(running.url);
      fresh2.write(jsonRequest(903, 'echo', 'new'));
      const newReply = await fresh2.next();
      assertResponseHeader(newReply, 903);
      assert.deepEqual(json(newReply), 'new');

      a.destroy();
      b.destroy();
      fresh2.destroy();
    });
  }

  test('CANCEL stops a streamed reply', async () => {
    const peer = await RawPeer.open(running.url);
    const cancelledBefore = running.observed.cancelled;
    peer.write(jsonRequest(1000, 'ticker', {}));
    const first = await peer.take(2);
    for (const [i, p] of first.entries()) {
      assertResponseHeader(p, 1000);
      assert.equal(p.flags, MORE | CODEC, `got ${hex(p.flags)}`);
      assert.equal(json(p), i);
    }
    peer.write(encode({ packetType: ONE_WAY, messageId: 1000, flags: CANCEL }));
    // what was in flight when the CANCEL arrived may still come, then nothing
    const inFlight = await peer.drain(50);
    for (const p of inFlight) {
      assert.equal(p.messageId, 1000);
      assert.equal(p.flags & (ERROR | END), 0, `no END or ERROR after CANCEL, got ${hex(p.flags)}`);
    }
    await waitFor(() => running.observed.cancelled > cancelledBefore, WAIT_MS);
    const ticks = running.observed.ticks;
    await peer.expectSilence(SILENCE_MS);
    assert.equal(running.observed.ticks, ticks, 'the handler stopped producing');

    // the connection is still fine
    peer.write(jsonRequest(1001, 'echo', 'still here'));
    assert.deepEqual(json(await peer.next()), 'still here');
  });
});
