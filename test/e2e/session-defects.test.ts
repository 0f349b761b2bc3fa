/**
 * Session-layer defects of issue 9, each on real sockets: payloads that
 * cannot be encoded (item 1), backpressure from the connection up to the
 * session (3), CANCEL before the reply starts (5), lazy payload decoding (7),
 * outgoing packets over the size limit (10), values flowing as produced
 * (11), nothing after an ERROR (14) and empty END/CANCEL payloads (17).
 * API-level checks run on every protocol of the matrix; wire-level checks use
 * a raw TCP peer built from test/support/raw-wire.ts (the wire is the same on
 * every protocol).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { NEVER, concat, finalize, from, interval, lastValueFrom, map, of, take, throwError, timer, toArray } from 'rxjs';
import {
  MsgTransClient,
  MsgTransEncodeError,
  MsgTransErrorCode,
  MsgTransLimitError,
  MsgTransServer,
  type MsgTransClientOptions,
  type MsgTransError,
  type MsgTransServerOptions,
} from '../../lib/index.js';
import { PROTOCOL_CASES, testCertificates, type ProtocolCase } from '../support/protocols.js';
import {
  CANCEL,
  CODEC,
  END,
  ERROR,
  HAS_ROUTE_TAG,
  MORE,
  NONE,
  ONE_WAY,
  REQUEST,
  RESPONSE,
  StreamSplitter,
  encode,
  type InPacket,
} from '../support/raw-wire.js';
import { TestModule, waitFor } from '../support/test-app.js';
import { rejection, sleep, within } from '../support/async.js';

const MiB = 1024 * 1024;
const BOUND = 10_000;

// ---------------------------------------------------------------------------
// handlers
// ---------------------------------------------------------------------------

const counters = { lateFinalized: 0, neverFinalized: 0, badStreamFinalized: 0, badStreamTicks: 0 };

function circular(): Record<string, unknown> {
  const node: Record<string, unknown> = { name: 'socket' };
  node.self = node;
  return node;
}

@Controller()
class SessionDefectsController {
  @MessagePattern('rpc.circular')
  rpcCircular() {
    // an axios error is the realistic case: its cause refers back to itself
    throw new RpcException({ message: 'upstream failed', cause: circular() });
  }

  @MessagePattern('rpc.bigint')
  rpcBigint() {
    throw new RpcException({ message: 'counted', cause: { n: 10n } });
  }

  @MessagePattern('stream.bad.sync')
  streamBadSync() {
    return of(1, { n: 10n }, 3);
  }

  @MessagePattern('stream.bad.then.error')
  streamBadThenError() {
    // the only value cannot be encoded, and the stream errors right after it
    return concat(of({ n: 10n }), throwError(() => new RpcException('after the bad value')));
  }

  @MessagePattern('stream.bad.async')
  streamBadAsync() {
    return interval(20).pipe(
      map((i) => {
        counters.badStreamTicks++;
        return i === 1 ? { n: 10n } : i;
      }),
      take(6),
      finalize(() => counters.badStreamFinalized++),
    );
  }

  @MessagePattern('stream.buffers')
  streamBuffers(@Payload() data: { n: number; size: number }) {
    return from(Array.from({ length: data.n }, (_, i) => Buffer.alloc(data.size, i)));
  }

  @MessagePattern('late.never')
  async lateNever() {
    await sleep(150);
    return NEVER.pipe(finalize(() => counters.lateFinalized++));
  }

  @MessagePattern('late.value')
  async lateValue() {
    await sleep(150);
    return 'late';
  }

  @MessagePattern('never.tracked')
  neverTracked() {
    return NEVER.pipe(finalize(() => counters.neverFinalized++));
  }

  @MessagePattern('first.then.later')
  firstThenLater() {
    return concat(of('first'), timer(900).pipe(map(() => 'second')));
  }

  @MessagePattern('every700')
  every700() {
    return interval(700).pipe(take(3));
  }

  @MessagePattern('single.of')
  singleOf() {
    return of('one');
  }

  @MessagePattern('single.promise')
  async singlePromise() {
    await sleep(10);
    return 'two';
  }

  @MessagePattern('single.timer')
  singleTimer() {
    // value and completion in the same timer callback: still one plain response
    return timer(30).pipe(map(() => 'three'));
  }

  @MessagePattern('stream.two')
  streamTwo() {
    return of(1, 2);
  }

  @MessagePattern('repeat')
  repeat(@Payload() size: number) {
    return 'x'.repeat(size);
  }

  @MessagePattern('slow')
  async slow() {
    await sleep(300);
    return 'slow done';
  }
}

@Module({ imports: [TestModule], controllers: [SessionDefectsController] })
class SessionDefectsModule {}

// ---------------------------------------------------------------------------
// servers, clients and raw peers, all closed after the file
// ---------------------------------------------------------------------------

interface Running {
  app: INestMicroservice;
  server: MsgTransServer;
  url: string;
}

const apps: INestMicroservice[] = [];
const clients: MsgTransClient[] = [];
const sockets: Socket[] = [];
const netServers: NetServer[] = [];

// An error that escapes into the process (a rethrow in an rxjs callback) is what item 1 is about.
const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);
process.on('uncaughtException', onUncaught);

after(async () => {
  for (const c of clients) c.close();
  for (const s of sockets) s.destroy();
  for (const s of netServers) s.close();
  for (const app of apps) await app.close();
  process.off('uncaughtException', onUncaught);
});

async function startServer(options: MsgTransServerOptions): Promise<Running> {
  const server = new MsgTransServer(options);
  const app = await NestFactory.createMicroservice(SessionDefectsModule, { strategy: server, logger: false });
  await app.listen();
  apps.push(app);
  return { app, server, url: server.addresses()[0].url };
}

async function startOn(protocol: ProtocolCase, extra: Partial<MsgTransServerOptions> = {}): Promise<Running> {
  return startServer({ ...protocol.server(await testCertificates()), ...extra });
}

async function clientOf(
  protocol: ProtocolCase,
  url: string,
  extra: Partial<MsgTransClientOptions> = {},
): Promise<MsgTransClient> {
  const client = new MsgTransClient({ ...protocol.client(url, await testCertificates()), reconnect: false, ...extra });
  clients.push(client);
  await within(client.connect(), BOUND, 'connect');
  return client;
}

function call<T = unknown>(client: MsgTransClient, pattern: string, data: unknown): Promise<T> {
  return within(lastValueFrom(client.send<T>(pattern, data)), BOUND * 3, `send ${pattern}`);
}

/** The server's only session (the test's one client), once the server has it. */
async function onlySession(running: Running) {
  await waitFor(() => running.server.sessions.size > 0, BOUND);
  const all = running.server.sessions.all();
  assert.equal(all.length, 1, 'one session on the server');
  return all[0];
}

/** A plain TCP peer that collects every packet it receives. */
class RawTcpPeer {
  readonly packets: InPacket[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    const splitter = new StreamSplitter((p) => this.packets.push(p));
    socket.on('data', (chunk: Buffer) => splitter.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => (this.closed = true));
  }

  static async open(url: string): Promise<RawTcpPeer> {
    const { hostname, port } = new URL(url);
    const socket = connect({ host: hostname, port: Number(port) });
    sockets.push(socket);
    await within(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      }),
      BOUND,
      'raw connect',
    );
    return new RawTcpPeer(socket);
  }

  write(...packets: Buffer[]): void {
    this.socket.write(Buffer.concat(packets));
  }

  packetsFor(id: number): InPacket[] {
    return this.packets.filter((p) => p.messageId === id);
  }
}

function jsonRequest(id: number, route: string, value: unknown): Buffer {
  return encode({ packetType: REQUEST, messageId: id, flags: HAS_ROUTE_TAG | CODEC, ext: `route:${route}`, payload: JSON.stringify(value) });
}

// ---------------------------------------------------------------------------
// on every protocol
// ---------------------------------------------------------------------------

for (const protocol of PROTOCOL_CASES) {
  describe(`session defects over ${protocol.name}`, () => {
    test('item 1: RpcException with a circular or BigInt cause: the caller gets an ERROR reply, the server keeps serving', async () => {
      const running = await startOn(protocol);
      const client = await clientOf(protocol, running.url);
      const uncaughtBefore = uncaught.length;
      const logged: string[] = [];
      (running.server as unknown as { logger: { error(m: unknown): void } }).logger.error = (m) => logged.push(String(m));
      const circ = await rejection(lastValueFrom(client.send('rpc.circular', {})), BOUND, 'rpc.circular');
      // what can be encoded of the error travels; the cycle stays home
      assert.deepEqual(circ, { message: 'upstream failed' });
      assert.equal(logged.length, 1, `the server logs it once: ${logged.join(' | ')}`);
      assert.match(logged[0], /rpc\.circular[\s\S]*encode/i);
      const big = await rejection(lastValueFrom(client.send('rpc.bigint', {})), BOUND, 'rpc.bigint');
      assert.deepEqual(big, { message: 'counted' });
      assert.equal(await call(client, 'echo', 'still serving'), 'still serving');
      const session = await onlySession(running);
      assert.equal(await call(client, 'echo', 'same session'), 'same session');
      assert.equal((await onlySession(running)), session);
      await sleep(50);
      assert.deepEqual(uncaught.slice(uncaughtBefore), [], 'nothing escaped into the process');
    });

    test('items 1 and 14: a streamed value that cannot be encoded ends the reply with an ERROR and stops the stream', async () => {
      const running = await startOn(protocol);
      const client = await clientOf(protocol, running.url);
      const finalizedBefore = counters.badStreamFinalized;
      const values: unknown[] = [];
      const error = await within(
        new Promise((resolve) =>
          client.send('stream.bad.async', {}).subscribe({ next: (v) => values.push(v), error: resolve, complete: () => resolve('completed') }),
        ),
        BOUND,
        'stream.bad.async',
      );
      assert.deepEqual(values, [0]);
      assert.deepEqual(error, { status: 'error', message: 'Internal server error', code: MsgTransErrorCode.ENCODE_FAILED });
      // the handler's stream was unsubscribed at the ERROR, not run to its end
      await waitFor(() => counters.badStreamFinalized === finalizedBefore + 1, 3000);
      assert.equal((await onlySession(running)).activeRequests, 0);
      assert.equal(await call(client, 'echo', 'after'), 'after');
    });

    test('item 1: client send and emit of a value that cannot be encoded fail with a typed error; the connection is unaffected', async () => {
      const running = await startOn(protocol);
      const client = await clientOf(protocol, running.url);
      let disconnects = 0;
      client.on('disconnect', () => disconnects++);
      const session = await onlySession(running);
      for (const bad of [{ n: 10n }, circular()]) {
        const sent = await rejection(lastValueFrom(client.send('echo', bad)), BOUND, 'send unencodable');
        assert.ok(sent instanceof MsgTransEncodeError, `send: expected MsgTransEncodeError, got ${String(sent)}`);
        assert.equal((sent as MsgTransError).code, MsgTransErrorCode.ENCODE_FAILED);
        const emitted = await rejection(lastValueFrom(client.emit('event', bad), { defaultValue: undefined }), BOUND, 'emit unencodable');
        assert.ok(emitted instanceof MsgTransEncodeError, `emit: expected MsgTransEncodeError, got ${String(emitted)}`);
        assert.equal((emitted as MsgTransError).code, MsgTransErrorCode.ENCODE_FAILED);
      }
      // and a server push of such a value: a typed error for that one event, the session stays open
      assert.throws(
        () => running.server.sessions.emitTo(session, 'push', { n: 10n }),
        (err: unknown) => err instanceof MsgTransEncodeError && err.code === MsgTransErrorCode.ENCODE_FAILED,
      );
      assert.equal(session.closed, false);
      assert.equal(await call(client, 'echo', 'fine'), 'fine');
      assert.equal((await onlySession(running)), session);
      assert.equal(disconnects, 0);
    });

    test('item 3: a handler streaming 24 x 1 MiB buffers reaches a reading client whole (maxSendBufferSize 1 MiB)', async () => {
      const running = await startOn(protocol, { maxSendBufferSize: MiB });
      const client = await clientOf(protocol, running.url, { maxSendBufferSize: MiB });
      const values = await within(
        lastValueFrom(client.send<Buffer>('stream.buffers', { n: 24, size: MiB }).pipe(toArray())),
        BOUND * 3,
        '24 x 1 MiB',
      );
      assert.equal(values.length, 24);
      values.forEach((v, i) => {
        assert.equal(v.length, MiB);
        assert.equal(v[0], i);
        assert.equal(v[MiB - 1], i);
      });
      assert.equal(await call(client, 'echo', 'after'), 'after');
    });

    // both ends at once: the client's calls wait in its session short of a full backlog, so it keeps
    // reading the replies while the server (its backlog full of them) stops reading calls
    test('item 3: 4,000 calls of 8 KiB issued at once all succeed (maxSendBufferSize 1 MiB)', async () => {
      const running = await startOn(protocol, { maxSendBufferSize: MiB });
      const client = await clientOf(protocol, running.url, { maxSendBufferSize: MiB, requestTimeout: 20_000 });
      const COUNT = 4000;
      const replies = await within(
        Promise.all(Array.from({ length: COUNT }, (_, i) => lastValueFrom(client.send<Buffer>('echo', Buffer.alloc(8192, i % 251))))),
        BOUND * 3,
        '4,000 calls',
      );
      assert.equal(replies.length, COUNT);
      replies.forEach((r, i) => {
        assert.equal(r.length, 8192);
        assert.equal(r[8191], i % 251);
      });
      assert.equal((await onlySession(running)).activeRequests, 0);
    });

    test('item 3: a stream that outruns the connection past maxStreamBacklog fails that reply alone, with a typed limit error', async () => {
      const running = await startOn(protocol, { maxSendBufferSize: 256 * 1024, maxStreamBacklog: 20 });
      const client = await clientOf(protocol, running.url);
      const values: unknown[] = [];
      const error = await within(
        new Promise((resolve) =>
          client
            .send('stream.buffers', { n: 400, size: 64 * 1024 })
            .subscribe({ next: (v) => values.push(v), error: resolve, complete: () => resolve('completed') }),
        ),
        BOUND * 3,
        'backlog',
      );
      assert.equal((error as { code?: string }).code, MsgTransErrorCode.STREAM_BACKLOG_FULL, `got ${JSON.stringify(error)}`);
      assert.ok(values.length < 400);
      assert.equal(await call(client, 'echo', 'after'), 'after');
      assert.equal((await onlySession(running)).activeRequests, 0);
    });

    test('item 5: a CANCEL that arrives before the handler has a result stops the reply when it starts', async () => {
      const running = await startOn(protocol);
      const client = await clientOf(protocol, running.url);
      const session = await onlySession(running);
      // subscribe-then-unsubscribe in one tick: REQUEST and CANCEL leave together
      const neverBefore = counters.neverFinalized;
      client.send('never.tracked', {}).subscribe().unsubscribe();
      await waitFor(() => counters.neverFinalized === neverBefore + 1, 3000);
      // an async handler: the CANCEL arrives while it awaits
      const lateBefore = counters.lateFinalized;
      const sub = client.send('late.never', {}).subscribe();
      await sleep(30);
      sub.unsubscribe();
      await waitFor(() => counters.lateFinalized === lateBefore + 1, 3000);
      await waitFor(() => session.activeRequests === 0, 3000);
      assert.equal(await call(client, 'echo', 'after'), 'after');
    });

    test('item 10: a call over maxPacketSize fails alone before anything is written', async () => {
      const running = await startOn(protocol);
      const client = await clientOf(protocol, running.url, { maxPacketSize: 64 * 1024 });
      let disconnects = 0;
      client.on('disconnect', () => disconnects++);
      const slow = call(client, 'slow', {});
      const err = await rejection(lastValueFrom(client.send('echo', Buffer.alloc(100 * 1024))), BOUND, 'oversized call');
      assert.ok(err instanceof MsgTransLimitError, `expected MsgTransLimitError, got ${String(err)}`);
      assert.equal((err as MsgTransError).code, MsgTransErrorCode.PACKET_TOO_LARGE);
      const emitted = await rejection(lastValueFrom(client.emit('event', 'y'.repeat(100 * 1024)), { defaultValue: undefined }), BOUND, 'oversized event');
      assert.equal((emitted as MsgTransError).code, MsgTransErrorCode.PACKET_TOO_LARGE);
      assert.equal(await slow, 'slow done');
      assert.equal(await call(client, 'echo', 'after'), 'after');
      assert.equal(disconnects, 0);
    });

    test('item 10: a reply over maxPacketSize becomes an ERROR reply; the connection and other calls are unaffected', async () => {
      const running = await startOn(protocol, { maxPacketSize: 64 * 1024 });
      const client = await clientOf(protocol, running.url, { maxPacketSize: 64 * 1024 });
      let disconnects = 0;
      client.on('disconnect', () => disconnects++);
      const slow = call(client, 'slow', {});
      const err = await rejection(lastValueFrom(client.send('repeat', 100 * 1024)), BOUND, 'oversized reply');
      assert.equal((err as { code?: string }).code, MsgTransErrorCode.PACKET_TOO_LARGE, `got ${JSON.stringify(err)}`);
      assert.equal((err as { status?: string }).status, 'error');
      assert.equal(await slow, 'slow done');
      assert.equal(await call(client, 'echo', 'after'), 'after');
      assert.equal(disconnects, 0);
    });

    test('item 11: a streamed value travels when produced, not when the next one is', async () => {
      const running = await startOn(protocol);
      const client = await clientOf(protocol, running.url);
      const arrivals: number[] = [];
      const values = await within(
        lastValueFrom(client.send('first.then.later', {}).pipe(map((v) => (arrivals.push(Date.now()), v)), toArray())),
        BOUND,
        'first.then.later',
      );
      assert.deepEqual(values, ['first', 'second']);
      // the second value is produced 900 ms after the first; held back, both would arrive together
      assert.ok(arrivals[1] - arrivals[0] >= 400, `first value arrived only ${arrivals[1] - arrivals[0]} ms before the second`);
    });

    test('item 11: a stream of one value per 700 ms does not time out a client whose requestTimeout is 1,000 ms', async () => {
      const running = await startOn(protocol);
      const client = await clientOf(protocol, running.url, { requestTimeout: 1000 });
      const values = await within(lastValueFrom(client.send('every700', {}).pipe(toArray())), BOUND, 'every700');
      assert.deepEqual(values, [0, 1, 2]);
    });
  });
}

// ---------------------------------------------------------------------------
// at the wire (raw TCP peer)
// ---------------------------------------------------------------------------

describe('session defects at the wire (raw TCP peer)', () => {
  test('item 11: a plain return, a Promise, of(x) and a one-value timer are each one plain response packet', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0' });
    const peer = await RawTcpPeer.open(running.url);
    const cases: Array<[number, string, unknown]> = [
      [1, 'echo', 'zero'],
      [2, 'single.of', 'one'],
      [3, 'single.promise', 'two'],
      [4, 'single.timer', 'three'],
    ];
    peer.write(...cases.map(([id, route]) => jsonRequest(id, route, 'zero')));
    await waitFor(() => cases.every(([id]) => peer.packetsFor(id).length >= 1), BOUND);
    await sleep(200);
    for (const [id, route, expected] of cases) {
      const packets = peer.packetsFor(id);
      assert.equal(packets.length, 1, `${route}: one packet`);
      assert.equal(packets[0].packetType, RESPONSE);
      assert.equal(packets[0].flags, CODEC, `${route}: a plain response (flags 0x${packets[0].flags.toString(16)})`);
      assert.deepEqual(JSON.parse(packets[0].payload.toString()), expected);
    }
  });

  test('item 14: nothing follows the ERROR that replaces a MORE value that cannot be encoded', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0' });
    const peer = await RawTcpPeer.open(running.url);
    peer.write(jsonRequest(7, 'stream.bad.sync', {}));
    await waitFor(() => peer.packetsFor(7).some((p) => p.flags & ERROR), BOUND);
    await sleep(300);
    const packets = peer.packetsFor(7);
    assert.deepEqual(
      packets.map((p) => p.flags & (MORE | ERROR | END)),
      [MORE, ERROR],
      'one MORE value, then the ERROR, then nothing',
    );
    assert.deepEqual(JSON.parse(packets[0].payload.toString()), 1);
    assert.deepEqual(JSON.parse(packets[1].payload.toString()), {
      status: 'error',
      message: 'Internal server error',
      code: MsgTransErrorCode.ENCODE_FAILED,
    });
  });

  test('item 3: events held by backpressure are delivered by a graceful close of the session', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0', maxSendBufferSize: 256 * 1024 });
    const peer = await RawTcpPeer.open(running.url);
    peer.socket.pause();
    const session = await onlySession(running);
    let pushed = 0;
    // the peer does not read: the kernel's buffers, then the connection's backlog fill up
    for (let i = 0; i < 2000 && !session.congested; i++) {
      running.server.sessions.emitTo(session, 'big.push', Buffer.alloc(64 * 1024, i % 251));
      pushed++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(session.congested, true);
    // two more wait in the session, then the session closes gracefully
    for (let i = 0; i < 2; i++) running.server.sessions.emitTo(session, 'big.push', Buffer.alloc(64 * 1024, pushed++ % 251));
    session.close();
    peer.socket.resume();
    await waitFor(() => peer.closed, BOUND);
    const events = peer.packets.filter((p) => p.packetType === ONE_WAY);
    assert.equal(events.length, pushed, 'every event pushed before the close was delivered');
    events.forEach((e, i) => assert.equal(e.payload[0], i % 251));
  });

  test('item 3: packets held by backpressure leave in the order they were produced', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0', maxSendBufferSize: 256 * 1024 });
    const peer = await RawTcpPeer.open(running.url);
    peer.socket.pause();
    const session = await onlySession(running);
    peer.write(jsonRequest(5, 'stream.buffers', { n: 80, size: 64 * 1024 }));
    await waitFor(() => session.congested, BOUND);
    // produced after the whole stream (values and END): must arrive after it
    running.server.sessions.emitTo(session, 'after.stream', 'late');
    peer.socket.resume();
    await waitFor(() => peer.packets.some((p) => p.packetType === ONE_WAY), BOUND);
    const order = peer.packets.map((p) => (p.packetType === ONE_WAY ? 'event' : p.flags & END ? 'end' : 'value'));
    assert.deepEqual(order, [...Array(80).fill('value'), 'end', 'event']);
    peer.packetsFor(5).slice(0, 80).forEach((p, i) => assert.equal(p.payload[0], i));
  });

  test('item 14: a held first value that cannot be encoded, then the stream\'s own error: one ERROR, nothing after', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0' });
    const peer = await RawTcpPeer.open(running.url);
    peer.write(jsonRequest(8, 'stream.bad.then.error', {}));
    await waitFor(() => peer.packetsFor(8).length >= 1, BOUND);
    await sleep(300);
    assert.deepEqual(peer.packetsFor(8).map((p) => p.flags & (MORE | ERROR | END)), [ERROR]);
    assert.equal((await onlySession(running)).activeRequests, 0);
    peer.write(jsonRequest(9, 'echo', 'next'));
    await waitFor(() => peer.packetsFor(9).length === 1, BOUND);
  });

  test('item 5: REQUEST and CANCEL together to an async handler: no reply at all, and the connection goes on', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0' });
    const peer = await RawTcpPeer.open(running.url);
    peer.write(jsonRequest(11, 'late.value', {}), encode({ packetType: ONE_WAY, messageId: 11, flags: CANCEL }));
    await sleep(500);
    assert.deepEqual(peer.packetsFor(11), [], 'a cancelled request is not answered');
    const session = await onlySession(running);
    assert.equal(session.activeRequests, 0);
    peer.write(jsonRequest(12, 'echo', 'next'));
    await waitFor(() => peer.packetsFor(12).length === 1, BOUND);
    assert.equal(peer.closed, false);
  });

  test('item 5: CANCELs for ids nobody answers are not remembered without bound', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0' });
    const peer = await RawTcpPeer.open(running.url);
    const cancels = Array.from({ length: 2000 }, (_, i) => encode({ packetType: ONE_WAY, messageId: 5000 + i, flags: CANCEL }));
    peer.write(jsonRequest(1, 'late.value', {}), ...cancels);
    await waitFor(() => peer.packetsFor(1).length === 1, BOUND);
    const session = (await onlySession(running)) as unknown as { cancelled: Set<number> | null };
    assert.equal(session.cancelled?.size ?? 0, 0);
    // the reply was not mistaken for a cancelled one
    assert.deepEqual(JSON.parse(peer.packetsFor(1)[0].payload.toString()), 'late');
  });

  /** A plain TCP server that records every packet a client sends it; resolves with its port. */
  async function recordingServer(received: InPacket[]): Promise<number> {
    const server = createServer((socket) => {
      const splitter = new StreamSplitter((p) => received.push(p));
      socket.on('data', (chunk: Buffer) => splitter.push(chunk));
      socket.on('error', () => undefined);
      sockets.push(socket);
    });
    netServers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as { port: number }).port;
  }

  test('item 17: END carries no payload even with a compression threshold of 0', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0', compression: { algorithm: 'zlib', threshold: 0 } });
    const peer = await RawTcpPeer.open(running.url);
    peer.write(jsonRequest(3, 'stream.two', {}));
    await waitFor(() => peer.packetsFor(3).some((p) => p.flags & END), BOUND);
    const end = peer.packetsFor(3).find((p) => p.flags & END)!;
    assert.equal(end.payload.length, 0, 'END payload');
    assert.equal(end.compression, NONE, 'END compression');
  });

  test('item 17: CANCEL carries no payload even with a compression threshold of 0', async () => {
    const received: InPacket[] = [];
    const port = await recordingServer(received);
    const client = new MsgTransClient({ url: `tcp://127.0.0.1:${port}`, reconnect: false, compression: { algorithm: 'zlib', threshold: 0 } });
    clients.push(client);
    await within(client.connect(), BOUND, 'connect');
    const sub = client.send('anything', {}).subscribe({ error: () => undefined });
    await waitFor(() => received.some((p) => p.packetType === REQUEST), BOUND);
    sub.unsubscribe();
    await waitFor(() => received.some((p) => p.flags & CANCEL), BOUND);
    const cancel = received.find((p) => p.flags & CANCEL)!;
    assert.equal(cancel.payload.length, 0, 'CANCEL payload');
    assert.equal(cancel.compression, NONE, 'CANCEL compression');
  });

  test('item 1: a call or event that cannot be encoded takes no message id: the ids on the wire still go up by one', async () => {
    const received: InPacket[] = [];
    const port = await recordingServer(received);
    const client = new MsgTransClient({ url: `tcp://127.0.0.1:${port}`, reconnect: false });
    clients.push(client);
    await within(client.connect(), BOUND, 'connect');
    await rejection(lastValueFrom(client.send('a', { n: 1n })), BOUND, 'bad send');
    client.send('a', 1).subscribe({ error: () => undefined });
    await rejection(lastValueFrom(client.emit('e', { n: 1n }), { defaultValue: undefined }), BOUND, 'bad emit');
    await lastValueFrom(client.emit('e', 2), { defaultValue: undefined });
    await waitFor(() => received.length === 2, BOUND);
    assert.deepEqual(received.map((p) => [p.packetType, p.messageId]), [[REQUEST, 1], [ONE_WAY, 2]]);
  });

  test('item 1: an Error that bypassed Nest\'s filters (a processing hook\'s) reaches the caller as Nest\'s generic error, not its message', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0' });
    running.server.setOnProcessingStartHook(() => {
      throw new Error('connect ECONNREFUSED 10.0.0.7:5432 (user=billing password=hunter2)');
    });
    const client = new MsgTransClient({ url: running.url, reconnect: false });
    clients.push(client);
    const err = await rejection(lastValueFrom(client.send('echo', 'x')), BOUND, 'hooked call');
    assert.deepEqual(err, { status: 'error', message: 'Internal server error' });
  });

  test('item 7: a payload for a route nobody handles is never decoded: the peer gets the no-handler error, not a closed connection', async () => {
    const running = await startServer({ listen: 'tcp://127.0.0.1:0' });
    const peer = await RawTcpPeer.open(running.url);
    const garbage = { flags: HAS_ROUTE_TAG | CODEC, payload: '{"not json' };
    peer.write(
      encode({ packetType: ONE_WAY, messageId: 1, ext: 'route:nobody.event', ...garbage }),
      encode({ packetType: REQUEST, messageId: 2, ext: 'route:nobody', ...garbage }),
    );
    await waitFor(() => peer.packetsFor(2).length === 1, BOUND);
    assert.equal(peer.packetsFor(2)[0].flags & ERROR, ERROR);
    assert.equal(
      JSON.parse(peer.packetsFor(2)[0].payload.toString()),
      'There is no matching message handler defined in the remote service.',
    );
    peer.write(jsonRequest(3, 'echo', 'still open'));
    await waitFor(() => peer.packetsFor(3).length === 1, BOUND);
    assert.equal(peer.closed, false);
  });

  test('item 7: a bad payload to a handled route still closes that connection only (BAD_PAYLOAD), also when held through authentication', async () => {
    const running = await startServer({
      listen: 'tcp://127.0.0.1:0',
      authenticate: async () => {
        await sleep(100);
        return { user: 'x' };
      },
    });
    const errors: MsgTransError[] = [];
    running.server.on('error', (err) => errors.push(err as MsgTransError));
    const uncaughtBefore = uncaught.length;
    const bystander = await RawTcpPeer.open(running.url);
    bystander.write(jsonRequest(1, 'echo', 'hi'));
    const peer = await RawTcpPeer.open(running.url);
    peer.write(encode({ packetType: ONE_WAY, messageId: 1, flags: HAS_ROUTE_TAG | CODEC, ext: 'route:event', payload: '{"not json' }));
    await waitFor(() => peer.closed, BOUND);
    assert.ok(errors.some((e) => e.code === MsgTransErrorCode.BAD_PAYLOAD), `errors: ${errors.map((e) => e.code).join(', ')}`);
    await waitFor(() => bystander.packetsFor(1).length === 1, BOUND);
    bystander.write(jsonRequest(2, 'echo', 'still here'));
    await waitFor(() => bystander.packetsFor(2).length === 1, BOUND);
    assert.equal(bystander.closed, false);
    await sleep(50);
    assert.deepEqual(uncaught.slice(uncaughtBefore), []);
  });
});
