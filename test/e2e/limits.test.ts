/**
 * The limits a server (and a client) enforces against peers: connections,
 * stalled partial packets, unread replies, requests in flight, packet size,
 * and the graceful drain of close(). Every check runs on real sockets over
 * loopback; the ones that need a misbehaving peer use a hand-written raw
 * peer (plain TCP or a plain `ws` WebSocket) that builds packets by hand.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom, type Subscription } from 'rxjs';
import { WebSocket } from 'ws';
import {
  MsgTransClient,
  MsgTransConnectionError,
  MsgTransErrorCode,
  MsgTransLimitError,
  MsgTransProtocolError,
  MsgTransServer,
  type MsgTransClientOptions,
  type MsgTransError,
  type MsgTransServerOptions,
  type MsgTransSession,
} from '../../lib/index.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { TestModule, waitFor } from '../support/test-app.js';
import { rejection, sleep, within } from '../support/async.js';

// ---------------------------------------------------------------------------
// a test module: the shared test controller plus a slow handler
// ---------------------------------------------------------------------------

const slowCalls = { started: 0, finished: 0 };

@Controller()
class LimitsController {
  /** Answers after 300 ms, long enough to be in flight when close() starts. */
  @MessagePattern('slow')
  async slow(@Payload() data: unknown) {
    slowCalls.started++;
    await new Promise((resolve) => setTimeout(resolve, 300));
    slowCalls.finished++;
    return { slow: data };
  }

  /** A reply of `size` bytes to a small request. */
  @MessagePattern('big')
  big(@Payload() size: number) {
    return Buffer.alloc(size, 7);
  }
}

@Module({ imports: [TestModule], controllers: [LimitsController] })
class LimitsModule {}

interface Running {
  app: INestMicroservice;
  server: MsgTransServer;
  url: string;
  /** Every `error` the server emitted, with the session it concerned. */
  errors: { error: Error; session: MsgTransSession | undefined }[];
  closed: boolean;
}

const apps: Running[] = [];
const clients: MsgTransClient[] = [];
const rawPeers: RawPeer[] = [];

after(async () => {
  for (const c of clients) c.close();
  for (const p of rawPeers) p.destroy();
  for (const r of apps) if (!r.closed) await r.app.close();
});

async function start(options: MsgTransServerOptions): Promise<Running> {
  const server = new MsgTransServer(options);
  const errors: Running['errors'] = [];
  server.on('error', (error, session) => errors.push({ error, session }));
  const app = await NestFactory.createMicroservice(LimitsModule, { strategy: server, logger: false });
  await app.listen();
  const running: Running = { app, server, url: server.addresses()[0].url, errors, closed: false };
  apps.push(running);
  return running;
}

async function stop(running: Running): Promise<void> {
  running.closed = true;
  await running.app.close();
}

function codesOf(running: Running): string[] {
  return running.errors.map((e) => (e.error as MsgTransError).code);
}




// ---------------------------------------------------------------------------
// msgtrans v1 by hand, for raw peers
// ---------------------------------------------------------------------------

const HEADER = 16;
const REQUEST = 1;
const RESPONSE = 2;
const HAS_ROUTE_TAG = 0x0004;
const ERROR = 0x0008;
const CODEC = 0x0020;

/** A request to a route: JSON payload unless `payload` is a Buffer (sent raw). */
function request(messageId: number, route: string, payload: unknown): Buffer {
  const ext = Buffer.from(`route:${route}`, 'utf8');
  const raw = Buffer.isBuffer(payload);
  const body = raw ? (payload as Buffer) : Buffer.from(JSON.stringify(payload), 'utf8');
  const header = Buffer.alloc(HEADER);
  header[0] = 1;
  header[2] = REQUEST;
  header.writeUInt32BE(messageId, 4);
  header.writeUInt16BE(ext.length, 8);
  header.writeUInt32BE(body.length, 10);
  header.writeUInt16BE(HAS_ROUTE_TAG | (raw ? 0 : CODEC), 14);
  return Buffer.concat([header, ext, body]);
}

interface InPacket {
  packetType: number;
  messageId: number;
  flags: number;
  payload: Buffer;
}

function parse(packet: Buffer): InPacket {
  const extLen = packet.readUInt16BE(8);
  const payloadLen = packet.readUInt32BE(10);
  return {
    packetType: packet[2],
    messageId: packet.readUInt32BE(4),
    flags: packet.readUInt16BE(14),
    payload: packet.subarray(HEADER + extLen, HEADER + extLen + payloadLen),
  };
}

/** A hand-written peer on a raw TCP socket or a plain WebSocket. */
interface RawPeer {
  readonly kind: 'tcp' | 'ws';
  /** Packets received, in order. */
  readonly received: InPacket[];
  readonly isClosed: boolean;
  /** Resolves when the connection has closed. */
  readonly closed: Promise<void>;
  /** The local port, to find this peer's session on the server. */
  readonly localPort: number;
  write(bytes: Buffer): void;
  pauseReading(): void;
  resumeReading(): void;
  destroy(): void;
}

async function tcpPeer(url: string): Promise<RawPeer> {
  const { hostname, port } = new URL(url);
  const socket: Socket = connect({ host: hostname, port: Number(port) });
  await within(new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject)), 3000, 'tcp connect');
  const received: InPacket[] = [];
  let buffered = Buffer.alloc(0);
  let isClosed = false;
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= HEADER) {
      const total = HEADER + buffered.readUInt16BE(8) + buffered.readUInt32BE(10);
      if (buffered.length < total) break;
      received.push(parse(Buffer.from(buffered.subarray(0, total))));
      buffered = buffered.subarray(total);
    }
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true;
      resolve();
    }),
  );
  const peer: RawPeer = {
    kind: 'tcp',
    received,
    get isClosed() {
      return isClosed;
    },
    closed,
    localPort: socket.localPort!,
    write: (bytes) => void socket.write(bytes),
    pauseReading: () => void socket.pause(),
    resumeReading: () => void socket.resume(),
    destroy: () => void socket.destroy(),
  };
  rawPeers.push(peer);
  return peer;
}

async function wsPeer(url: string): Promise<RawPeer> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await within(new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject)), 3000, 'ws connect');
  const received: InPacket[] = [];
  let isClosed = false;
  ws.on('message', (data) => received.push(parse(Buffer.from(data as Buffer))));
  ws.on('error', () => undefined);
  const closed = new Promise<void>((resolve) =>
    ws.once('close', () => {
      isClosed = true;
      resolve();
    }),
  );
  const socket = (ws as unknown as { _socket: Socket })._socket;
  const peer: RawPeer = {
    kind: 'ws',
    received,
    get isClosed() {
      return isClosed;
    },
    closed,
    localPort: socket.localPort!,
    write: (bytes) => ws.send(bytes, { binary: true }),
    pauseReading: () => ws.pause(),
    resumeReading: () => ws.resume(),
    destroy: () => ws.terminate(),
  };
  rawPeers.push(peer);
  return peer;
}

function sessionOf(running: Running, peer: RawPeer): MsgTransSession | undefined {
  return running.server.sessions.all().find((s) => s.connection.remotePort === peer.localPort);
}

/** Is the server-side connection of this session currently not reading? */
function serverIsPaused(session: MsgTransSession): boolean {
  const raw = session.connection.unwrap<Socket | WebSocket>();
  return raw instanceof WebSocket ? raw.isPaused : (raw as Socket).isPaused();
}

// ---------------------------------------------------------------------------
// protocols
// ---------------------------------------------------------------------------

const CASES = PROTOCOL_CASES.filter((p) => ['tcp', 'ws', 'quic'].includes(p.name));

async function serverOptions(name: string, extra: Partial<MsgTransServerOptions>): Promise<MsgTransServerOptions> {
  const protocol = CASES.find((p) => p.name === name)!;
  return { ...protocol.server(await testCertificates()), ...extra };
}

async function newClient(name: string, url: string, extra: Partial<MsgTransClientOptions> = {}): Promise<MsgTransClient> {
  const protocol = CASES.find((p) => p.name === name)!;
  const client = new MsgTransClient({ ...protocol.client(url, await testCertificates()), ...extra });
  clients.push(client);
  return client;
}

const echo = (client: MsgTransClient, value: unknown) => within(lastValueFrom(client.send('echo', value)), 5000, 'echo');

// ---------------------------------------------------------------------------
// protocol-independent limits, on tcp, ws and quic
// ---------------------------------------------------------------------------

for (const { name } of CASES) {
  describe(`limits over ${name}`, () => {
    test('maxConnections: the connection past the limit is refused, counted and reported; the others keep working', async () => {
      const running = await start(await serverOptions(name, { maxConnections: 2 }));
      const a = await newClient(name, running.url);
      const b = await newClient(name, running.url);
      assert.deepEqual(await echo(a, 'a'), 'a');
      assert.deepEqual(await echo(b, 'b'), 'b');
      await waitFor(() => running.server.sessions.size === 2);

      const c = await newClient(name, running.url, { reconnect: false });
      const err = await rejection(lastValueFrom(c.send('echo', 'c')), 5000, 'third client');
      assert.ok(err instanceof MsgTransConnectionError, `expected a MsgTransConnectionError, got ${String(err)}`);

      await waitFor(() => codesOf(running).includes(MsgTransErrorCode.TOO_MANY_CONNECTIONS), 3000);
      assert.ok((running.server.stats().violations[MsgTransErrorCode.TOO_MANY_CONNECTIONS] ?? 0) >= 1);
      const reported = running.errors.find((e) => (e.error as MsgTransError).code === MsgTransErrorCode.TOO_MANY_CONNECTIONS)!;
      assert.ok(reported.error instanceof MsgTransLimitError, 'the error event carries a typed MsgTransLimitError');
      assert.equal(running.server.sessions.size, 2, 'the refused connection never became a session');

      assert.deepEqual(await echo(a, 'a again'), 'a again');
      assert.deepEqual(await echo(b, 'b again'), 'b again');
      assert.equal(running.server.stats().sessions, 2);
    });

    // A refused connection (maxConnections, mTLS on tls/quic) first succeeds at the transport
    // level; the backoff must still grow rather than restart with every such connection.
    // Not on ws: a refusal there can land before the upgrade completes, so the client never
    // connects and never retries, and there is no backoff to observe.
    if (name !== 'ws') test('a client refused by maxConnections backs off exponentially while it retries', async () => {
      const running = await start(await serverOptions(name, { maxConnections: 1 }));
      const holder = await newClient(name, running.url);
      await holder.connect();
      const refused = await newClient(name, running.url, { reconnect: { initialDelay: 50, maxDelay: 5000, factor: 2, jitter: 0 } });
      const err = await rejection(lastValueFrom(refused.send('echo', 'x')), 5000, 'refused client');
      assert.ok(err instanceof MsgTransConnectionError);
      const counted = () => running.server.stats().violations[MsgTransErrorCode.TOO_MANY_CONNECTIONS] ?? 0;
      const began = counted();
      await sleep(1500);
      const retries = counted() - began;
      refused.close();
      // delays of 50, 100, 200, 400, 800 ms: about five attempts in 1.5 s (thirty without backoff)
      assert.ok(retries <= 8, `${retries} attempts in 1.5 s`);
    });

    test('maxInFlight: one request past the limit closes that connection only; its pending requests fail typed', async () => {
      const running = await start(await serverOptions(name, { maxInFlight: 10 }));
      const greedy = await newClient(name, running.url, { reconnect: false });
      const other = await newClient(name, running.url);
      await greedy.connect();
      assert.deepEqual(await echo(other, 'before'), 'before');

      const failures: unknown[] = [];
      const subscriptions: Subscription[] = [];
      const settled = Array.from(
        { length: 11 },
        () =>
          new Promise<void>((resolve) => {
            subscriptions.push(
              greedy.send('never', {}).subscribe({
                error: (err) => {
                  failures.push(err);
                  resolve();
                },
                complete: () => resolve(),
              }),
            );
          }),
      );
      try {
        await within(Promise.all(settled), 5000, 'the 11 never-ending requests');
      } finally {
        for (const s of subscriptions) s.unsubscribe();
      }
      assert.equal(failures.length, 11, 'every pending request failed');
      for (const err of failures) {
        assert.ok(err instanceof MsgTransConnectionError, `expected a MsgTransConnectionError, got ${String(err)}`);
        assert.equal((err as MsgTransError).code, MsgTransErrorCode.CONNECTION_CLOSED);
      }
      await waitFor(() => codesOf(running).includes(MsgTransErrorCode.TOO_MANY_IN_FLIGHT), 3000);
      assert.ok((running.server.stats().violations[MsgTransErrorCode.TOO_MANY_IN_FLIGHT] ?? 0) >= 1);
      assert.deepEqual(await echo(other, 'after'), 'after');
      assert.equal(running.server.sessions.size, 1);
    });

    test('maxInFlight: exactly the limit is fine', async () => {
      const running = await start(await serverOptions(name, { maxInFlight: 10 }));
      const client = await newClient(name, running.url, { reconnect: false });
      const replies = await within(
        Promise.all(Array.from({ length: 10 }, (_, i) => lastValueFrom(client.send('slow', i)))),
        5000,
        '10 slow requests',
      );
      assert.deepEqual(replies, Array.from({ length: 10 }, (_, i) => ({ slow: i })));
      assert.deepEqual(codesOf(running), []);
    });

    test('maxPacketSize on the client: a reply over it closes the client connection and fails the request', async () => {
      const running = await start(await serverOptions(name, {}));
      const client = await newClient(name, running.url, { maxPacketSize: 4096, reconnect: false });
      const clientErrors: Error[] = [];
      client.on('error', (err) => clientErrors.push(err));
      assert.deepEqual(await echo(client, 'small'), 'small');

      // the request is small (a request over the client's own limit is refused before it is sent)
      const err = await rejection(lastValueFrom(client.send('big', 8192)), 5000, 'oversized reply');
      assert.ok(err instanceof MsgTransConnectionError, `expected a MsgTransConnectionError, got ${String(err)}`);
      assert.equal((err as MsgTransError).code, MsgTransErrorCode.CONNECTION_CLOSED);
      const cause = (err as Error).cause;
      assert.ok(cause instanceof MsgTransProtocolError, `cause should be the protocol error, got ${String(cause)}`);
      assert.equal(cause.code, MsgTransErrorCode.PACKET_TOO_LARGE);
      assert.ok(
        clientErrors.some((e) => e instanceof MsgTransProtocolError && e.code === MsgTransErrorCode.PACKET_TOO_LARGE),
        'the client reports the protocol error',
      );
      // the server saw a peer go away, not a violation of its own limits
      await waitFor(() => running.server.sessions.size === 0, 3000);
    });

    test('graceful shutdown: a request in flight is answered, one sent during the drain is refused, close() resolves', async () => {
      const running = await start(await serverOptions(name, { shutdownTimeout: 2000 }));
      const client = await newClient(name, running.url, { reconnect: false });
      await client.connect();
      const startedBefore = slowCalls.started;
      const slow = lastValueFrom(client.send('slow', 'in flight'));
      slow.catch(() => undefined); // asserted below; never an unhandled rejection
      await waitFor(() => slowCalls.started === startedBefore + 1, 3000);

      const closing = stop(running);
      const refused = await rejection(lastValueFrom(client.send('echo', 'during drain')), 3000, 'request during drain');
      assert.equal((refused as { code?: string }).code, MsgTransErrorCode.SHUTTING_DOWN, `got ${JSON.stringify(refused)}`);
      assert.deepEqual(await within(slow, 3000, 'slow request'), { slow: 'in flight' });
      await within(closing, 5000, 'close()');
      assert.equal(running.server.sessions.size, 0);
    });

    test('graceful shutdown: a never-ending reply holds close() for shutdownTimeout, then its request fails', async () => {
      const running = await start(await serverOptions(name, { shutdownTimeout: 1000 }));
      const client = await newClient(name, running.url, { reconnect: false });
      const failed = new Promise<unknown>((resolve) =>
        client.send('never', {}).subscribe({ error: resolve, complete: () => resolve('completed') }),
      );
      await waitFor(() => running.server.sessions.all().some((s) => s.activeRequests > 0), 3000);
      const began = Date.now();
      await within(stop(running), 5000, 'close()');
      const took = Date.now() - began;
      assert.ok(took >= 900, `close() waited for the request in flight (took ${took} ms)`);
      const err = await within(failed, 3000, 'the never-ending request');
      assert.ok(err instanceof MsgTransConnectionError, `expected a MsgTransConnectionError, got ${String(err)}`);
    });
  });
}

// ---------------------------------------------------------------------------
// raw-peer limits: incomplete packets (tcp), send buffer (tcp, ws)
// ---------------------------------------------------------------------------

describe('incompleteMessageTimeout over tcp (raw peer)', () => {
  test('a peer that stalls in the middle of a header is dropped and reported', async () => {
    const running = await start(await serverOptions('tcp', { incompleteMessageTimeout: 200 }));
    const peer = await tcpPeer(running.url);
    peer.write(request(1, 'echo', 'x').subarray(0, 10));
    await within(peer.closed, 1500, 'the stalled peer being dropped');
    await waitFor(() => codesOf(running).includes(MsgTransErrorCode.INCOMPLETE_TIMEOUT), 1000);
    assert.ok(running.errors[0].error instanceof MsgTransLimitError);
    assert.equal(running.server.stats().violations[MsgTransErrorCode.INCOMPLETE_TIMEOUT], 1);
  });

  test('a peer that stalls in the middle of a payload is dropped too', async () => {
    const running = await start(await serverOptions('tcp', { incompleteMessageTimeout: 200 }));
    const peer = await tcpPeer(running.url);
    const whole = request(1, 'echo', 'x'.repeat(1000));
    peer.write(whole.subarray(0, whole.length - 5));
    await within(peer.closed, 1500, 'the stalled peer being dropped');
    await waitFor(() => codesOf(running).includes(MsgTransErrorCode.INCOMPLETE_TIMEOUT), 1000);
  });

  test('a packet sent slowly in several chunks within the time is fine', async () => {
    const running = await start(await serverOptions('tcp', { incompleteMessageTimeout: 200 }));
    const peer = await tcpPeer(running.url);
    const whole = request(1, 'echo', 'slowly but surely');
    for (const [from, to] of [
      [0, 5],
      [5, 16],
      [16, 25],
      [25, whole.length],
    ]) {
      peer.write(whole.subarray(from, to));
      await sleep(30);
    }
    await waitFor(() => peer.received.length === 1, 2000);
    assert.equal(peer.received[0].messageId, 1);
    assert.equal(JSON.parse(peer.received[0].payload.toString()), 'slowly but surely');
    // idle between packets is not "incomplete"
    await sleep(300);
    assert.equal(peer.isClosed, false);
    assert.deepEqual(codesOf(running), []);
  });

  test('a steady stream of packets, each complete within the time but with chunk ends inside packets, is fine', async () => {
    // Every packet takes at most two chunks (< 50 ms) to arrive, yet some
    // packet is always partly in at the end of a chunk for longer than the
    // timeout as a whole.
    const running = await start(await serverOptions('tcp', { incompleteMessageTimeout: 200 }));
    const peer = await tcpPeer(running.url);
    const packets = Buffer.concat(Array.from({ length: 20 }, (_, i) => request(i + 1, 'echo', `p${String(i).padStart(3, '0')}`)));
    const packetLength = packets.length / 20;
    const chunk = Math.ceil(packetLength * 0.7);
    for (let offset = 0; offset < packets.length; offset += chunk) {
      peer.write(packets.subarray(offset, offset + chunk));
      await sleep(25);
    }
    await waitFor(() => peer.received.length === 20 || peer.isClosed, 3000);
    assert.deepEqual(codesOf(running), [], 'the server reported no violation');
    assert.equal(peer.received.length, 20);
    assert.equal(peer.isClosed, false);
  });
});

for (const kind of ['tcp', 'ws'] as const) {
  describe(`maxSendBufferSize over ${kind} (raw peer)`, () => {
    const LIMIT = 256 * 1024;
    const BIG = 64 * 1024;
    const newPeer = (url: string) => (kind === 'tcp' ? tcpPeer(url) : wsPeer(url));

    test('a peer that never reads makes the server stop reading, then is dropped after sendStallTimeout; others are unaffected', async () => {
      const STALL = 1000;
      const running = await start(await serverOptions(kind, { maxSendBufferSize: LIMIT, sendStallTimeout: STALL }));
      const bystander = await newClient(kind, running.url);
      assert.deepEqual(await echo(bystander, 'hello'), 'hello');

      const peer = await newPeer(running.url);
      peer.pauseReading();
      await waitFor(() => sessionOf(running, peer) !== undefined, 2000);
      const session = sessionOf(running, peer)!;
      for (let i = 1; i <= 200; i++) peer.write(request(i, 'echo', Buffer.alloc(BIG, i)));

      // backpressure: the server stops reading the peer that does not read its replies
      await waitFor(() => serverIsPaused(session) || session.closed, 10_000);
      assert.deepEqual(await echo(bystander, 'still here'), 'still here');

      // its replies wait and it takes none of them: dropped once sendStallTimeout has passed
      const pausedAt = Date.now();
      await waitFor(() => session.closed, 10_000);
      assert.ok(Date.now() - pausedAt < 10_000);
      await waitFor(() => codesOf(running).includes(MsgTransErrorCode.SEND_BUFFER_FULL), 2000);
      const reported = running.errors.find((e) => (e.error as MsgTransError).code === MsgTransErrorCode.SEND_BUFFER_FULL)!;
      assert.equal(reported.session, session);
      assert.ok(reported.error instanceof MsgTransLimitError);
      assert.equal(running.server.stats().violations[MsgTransErrorCode.SEND_BUFFER_FULL], 1);
      assert.equal(running.server.sessions.size, 1);
      assert.deepEqual(await echo(bystander, 'unaffected'), 'unaffected');
      peer.destroy();
    });

    test('a slow but reading peer gets every reply, intact and in full', async () => {
      const running = await start(await serverOptions(kind, { maxSendBufferSize: LIMIT }));
      const peer = await newPeer(running.url);
      await waitFor(() => sessionOf(running, peer) !== undefined, 2000);
      const session = sessionOf(running, peer)!;
      const COUNT = 150;
      // start slow: the replies back up before the peer reads anything
      peer.pauseReading();
      for (let i = 1; i <= COUNT; i++) peer.write(request(i, 'echo', Buffer.alloc(BIG, i)));
      let pausedSeen = false;
      const watcher = setInterval(() => (pausedSeen ||= !session.closed && serverIsPaused(session)), 2);
      await waitFor(() => pausedSeen, 10_000).catch(() => undefined);
      // then read in bursts: 10 ms on, 30 ms off
      let phase = 0;
      const toggler = setInterval(() => {
        phase = (phase + 1) % 4;
        if (phase === 0) peer.resumeReading();
        else if (phase === 1) peer.pauseReading();
      }, 10);
      try {
        await waitFor(() => peer.received.length === COUNT || peer.isClosed, 25_000);
      } finally {
        clearInterval(toggler);
        clearInterval(watcher);
        peer.resumeReading();
      }
      assert.ok(pausedSeen, 'the replies backed up far enough for the server to stop reading');
      assert.equal(peer.isClosed, false, 'the slow reader was not dropped');
      assert.equal(peer.received.length, COUNT);
      const ids = new Set<number>();
      for (const p of peer.received) {
        assert.equal(p.packetType, RESPONSE);
        assert.equal(p.flags & ERROR, 0);
        assert.equal(p.payload.length, BIG);
        assert.ok(p.payload.every((byte) => byte === p.messageId % 256), `reply ${p.messageId} carries its own payload`);
        ids.add(p.messageId);
      }
      assert.equal(ids.size, COUNT, 'one reply per request');
      assert.deepEqual(codesOf(running), []);
    });
  });
}
