/**
 * Regression tests for transport defects of issue 9 (items 3, 4, 6, 9, 12):
 * backpressure and the send-stall rule, packets that arrive with the
 * WebSocket upgrade response, graceful close over TLS, liveness of silent
 * peers on every stream protocol, and stalled WebSocket fragments. Real
 * sockets on loopback throughout; the silent peer is a TCP relay that stops
 * forwarding (test/support/tcp-proxy.ts).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { connect as tcpConnect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Controller, Logger, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom, type Subscription } from 'rxjs';
import { WebSocket } from 'ws';
import {
  MsgTransClient,
  MsgTransErrorCode,
  MsgTransServer,
  type MsgTransClientOptions,
  type MsgTransError,
  type MsgTransServerOptions,
} from '../../lib/index.js';
import { parseEndpoint } from '../../lib/transport/endpoint.js';
import type { MsgTransConnection, MsgTransListener } from '../../lib/transport/msgtrans-connection.interface.js';
import type { ConnectionLimits, MsgTransProtocol } from '../../lib/transport/msgtrans-protocol.interface.js';
import { TcpProtocol } from '../../lib/transport/tcp/tcp-protocol.js';
import { WsProtocol } from '../../lib/transport/ws/ws-protocol.js';
import { rejection, sleep, within } from '../support/async.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { encode, parsePacket, REQUEST, StreamSplitter, type InPacket } from '../support/raw-wire.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { TestModule, waitFor } from '../support/test-app.js';

const STREAM_CASES = PROTOCOL_CASES.filter((p) => ['tcp', 'tls', 'ws', 'wss'].includes(p.name));

let certs: DevCertificates;
before(async () => {
  certs = await testCertificates();
  // clients log lost connections through Nest's logger; expected here
  Logger.overrideLogger(false);
});

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

// ---------------------------------------------------------------------------
// a Nest app with a slow handler
// ---------------------------------------------------------------------------

const slow = { started: 0 };

@Controller()
class SlowController {
  /** Answers after 300 ms: in flight when close() starts. */
  @MessagePattern('slow')
  async slow(@Payload() data: unknown) {
    slow.started++;
    await sleep(300);
    return { slow: data };
  }
}

@Module({ imports: [TestModule], controllers: [SlowController] })
class DefectsModule {}

interface Running {
  app: INestMicroservice;
  server: MsgTransServer;
  url: string;
  port: number;
  closed: boolean;
}

async function startServer(options: MsgTransServerOptions): Promise<Running> {
  const server = new MsgTransServer(options);
  server.on('error', () => undefined);
  const app = await NestFactory.createMicroservice(DefectsModule, { strategy: server, logger: false });
  await app.listen();
  const address = server.addresses()[0];
  const running: Running = { app, server, url: address.url, port: address.port, closed: false };
  cleanups.push(() => (running.closed ? undefined : app.close()));
  return running;
}

function serverOptions(name: string, extra: Partial<MsgTransServerOptions> = {}): MsgTransServerOptions {
  return { ...STREAM_CASES.find((p) => p.name === name)!.server(certs), ...extra };
}

function newClient(name: string, url: string, extra: Partial<MsgTransClientOptions> = {}): MsgTransClient {
  const client = new MsgTransClient({ ...STREAM_CASES.find((p) => p.name === name)!.client(url, certs), ...extra });
  cleanups.push(() => client.close());
  return client;
}

/** The URL of `url`'s endpoint reached through a relay on `proxyPort`. */
function viaProxy(url: string, proxyPort: number): string {
  const u = new URL(url);
  u.port = String(proxyPort);
  return u.toString().replace(/\/$/, u.pathname === '/' ? '' : '/');
}

async function startProxy(targetPort: number): Promise<{ proxy: TcpProxy; port: number }> {
  const proxy = new TcpProxy(targetPort);
  const port = await proxy.start();
  cleanups.push(() => proxy.close());
  return { proxy, port };
}

function codeOf(error: unknown): string | undefined {
  return (error as MsgTransError | undefined)?.code;
}

// ---------------------------------------------------------------------------
// item 3: backpressure; only a peer that takes nothing for sendStallTimeout is dropped
// ---------------------------------------------------------------------------

const LIMITS: ConnectionLimits = {
  maxPacketSize: 16 * 1024 * 1024,
  maxExtHeaderSize: 16 * 1024,
  incompleteMessageTimeout: 30_000,
  maxSendBufferSize: 256 * 1024,
  sendStallTimeout: 500,
};

interface Pair {
  server: MsgTransConnection;
  client: MsgTransConnection;
  serverClosed: { error?: Error; closed: boolean };
  clientPackets: number;
  drains: number;
}

async function connectionPairs(name: string, count: number): Promise<Pair[]> {
  const protocol: MsgTransProtocol = name.startsWith('ws') ? new WsProtocol() : new TcpProtocol();
  const secure = name === 'tls' || name === 'wss';
  const tls = secure ? { key: certs.serverKey, cert: certs.serverCert, ca: certs.ca } : undefined;
  const path = name.startsWith('ws') ? '/msgtrans' : '';
  const listener: MsgTransListener = protocol.createListener(parseEndpoint(`${name}://127.0.0.1:0${path}`), {
    limits: LIMITS,
    tls,
    heartbeatInterval: 0,
  });
  const accepted: MsgTransConnection[] = [];
  const address = await listener.listen((c) => accepted.push(c));
  cleanups.push(() => listener.close());
  const pairs: Pair[] = [];
  for (let i = 0; i < count; i++) {
    const client = await protocol.connect(parseEndpoint(address.url), {
      limits: LIMITS,
      tls: secure ? { ca: certs.ca } : undefined,
      connectTimeout: 5000,
      heartbeatInterval: 0,
    });
    await waitFor(() => accepted.length > i, 5000);
    const pair: Pair = { server: accepted[i], client, serverClosed: { closed: false }, clientPackets: 0, drains: 0 };
    pair.server.open({
      onPacket: () => undefined,
      onClose: (error) => Object.assign(pair.serverClosed, { error, closed: true }),
      onDrain: () => pair.drains++,
    });
    client.open({ onPacket: () => pair.clientPackets++, onClose: () => undefined });
    cleanups.push(() => client.close(new Error('test over')), () => pair.server.close(new Error('test over')));
    pairs.push(pair);
  }
  return pairs;
}

/** Pauses or resumes reading on the client side of a pair, below msgtrans. */
function setReading(connection: MsgTransConnection, reading: boolean): void {
  const raw = connection.unwrap<Socket | WebSocket>();
  if (reading) raw.resume();
  else raw.pause();
}

const packet = (id: number, size: number) =>
  encode({ packetType: 0, bizType: 1, messageId: id, payload: Buffer.alloc(size, id % 256) });

for (const { name } of STREAM_CASES) {
  describe(`backpressure over ${name} (item 3)`, () => {
    test('a peer that reads slowly but steadily is never dropped, however far the backlog exceeds maxSendBufferSize; onDrain follows a full send()', async () => {
      const [pair] = await connectionPairs(name, 1);
      const COUNT = 160;
      const SIZE = 64 * 1024; // 10 MiB in all: 40 x maxSendBufferSize
      let full = 0;
      for (let i = 1; i <= COUNT; i++) if (!pair.server.send(packet(i, SIZE))) full++;
      assert.ok(full > 0, 'send() reports a full backlog');
      assert.ok(pair.server.bufferedAmount >= LIMITS.maxSendBufferSize);
      // read 50 ms, pause 250 ms: never silent for sendStallTimeout (500 ms)
      let reading = false;
      const toggler = setInterval(() => {
        reading = !reading;
        setReading(pair.client, reading);
      }, 150);
      try {
        await waitFor(() => pair.clientPackets === COUNT || pair.serverClosed.closed, 60_000);
      } finally {
        clearInterval(toggler);
        setReading(pair.client, true);
      }
      assert.equal(pair.serverClosed.closed, false, `not dropped (${codeOf(pair.serverClosed.error)})`);
      assert.equal(pair.clientPackets, COUNT);
      await waitFor(() => pair.drains > 0, 2000);
      assert.equal(pair.server.bufferedAmount, 0);
    });

    test('a steady flow of small packets to a reading peer is never taken for a stall', async () => {
      const [pair] = await connectionPairs(name, 1);
      let sent = 0;
      const until = Date.now() + 4 * LIMITS.sendStallTimeout;
      while (Date.now() < until && !pair.serverClosed.closed) {
        for (let i = 0; i < 20; i++) pair.server.send(packet(++sent, 512));
        await sleep(2);
      }
      await waitFor(() => pair.clientPackets === sent || pair.serverClosed.closed, 10_000);
      assert.equal(pair.serverClosed.closed, false, `not dropped (${codeOf(pair.serverClosed.error)})`);
      assert.equal(pair.clientPackets, sent);
    });

    test('a peer that stops reading is dropped after sendStallTimeout with SEND_BUFFER_FULL; other connections are unaffected', async () => {
      const [stalled, other] = await connectionPairs(name, 2);
      setReading(stalled.client, false);
      const started = Date.now();
      for (let i = 1; i <= 400; i++) stalled.server.send(packet(i, 64 * 1024));
      for (let i = 1; i <= 10; i++) other.server.send(packet(i, 1024));
      await waitFor(() => other.clientPackets === 10, 5000);
      await waitFor(() => stalled.serverClosed.closed, 10_000);
      const elapsed = Date.now() - started;
      assert.equal(codeOf(stalled.serverClosed.error), MsgTransErrorCode.SEND_BUFFER_FULL);
      assert.ok(elapsed >= LIMITS.sendStallTimeout, `dropped after ${elapsed} ms, not before sendStallTimeout`);
      other.server.send(packet(11, 1024));
      await waitFor(() => other.clientPackets === 11, 5000);
      assert.equal(other.serverClosed.closed, false);
    });
  });
}

// ---------------------------------------------------------------------------
// item 4: packets that arrive with the WebSocket upgrade response
// ---------------------------------------------------------------------------

for (const { name } of STREAM_CASES) {
  describe(`packets sent by the server at connect time over ${name} (item 4)`, () => {
    test('10 of 10 clients get a welcome push sent on connect', async () => {
      const running = await startServer(serverOptions(name));
      running.server.on('connect', (session) => running.server.sessions.emitTo(session, 'welcome', { hello: session.id }));
      const received: unknown[] = [];
      const subscriptions: Subscription[] = [];
      for (let i = 0; i < 10; i++) {
        const client = newClient(name, running.url);
        subscriptions.push(client.incoming('welcome').subscribe((data) => received.push(data)));
        await within(client.connect(), 5000, 'connect');
      }
      try {
        await waitFor(() => received.length === 10, 3000).catch(() => undefined);
        assert.equal(received.length, 10, `${received.length} of 10 welcome pushes arrived`);
      } finally {
        for (const s of subscriptions) s.unsubscribe();
      }
    });

    test('a request the server sends on connect is answered', async () => {
      const running = await startServer(serverOptions(name));
      const answers: Promise<unknown>[] = [];
      running.server.on('connect', (session) => {
        answers.push(lastValueFrom(running.server.sessions.sendTo(session, 'hello', 41)));
      });
      for (let i = 0; i < 5; i++) {
        const client = newClient(name, running.url);
        client.answer('hello', (data) => (data as number) + 1);
        await within(client.connect(), 5000, 'connect');
      }
      await waitFor(() => answers.length === 5, 3000);
      assert.deepEqual(await within(Promise.all(answers), 5000, 'answers to requests sent on connect'), [42, 42, 42, 42, 42]);
    });
  });
}

// ---------------------------------------------------------------------------
// item 6: graceful close delivers in-flight replies and queued events
// ---------------------------------------------------------------------------

for (const { name } of STREAM_CASES) {
  describe(`graceful close over ${name} (item 6)`, () => {
    test('a reply in flight when close() starts reaches its caller', async () => {
      const running = await startServer(serverOptions(name, { shutdownTimeout: 5000 }));
      const client = newClient(name, running.url);
      await client.connect();
      const before = slow.started;
      const reply = lastValueFrom(client.send('slow', 'x'));
      await waitFor(() => slow.started > before, 3000);
      const closing = running.server.close();
      assert.deepEqual(await within(reply, 5000, 'reply in flight'), { slow: 'x' });
      await within(closing, 6000, 'close()');
    });

    test('3 events of 512 KiB emitted just before close() all arrive', async () => {
      const running = await startServer(serverOptions(name, { shutdownTimeout: 5000 }));
      const client = newClient(name, running.url);
      const sizes: number[] = [];
      const subscription = client.incoming<Buffer>('big').subscribe((data) => sizes.push(data.length));
      cleanups.push(() => subscription.unsubscribe());
      await client.connect();
      await waitFor(() => running.server.sessions.size === 1, 3000);
      const [session] = running.server.sessions.all();
      for (let i = 0; i < 3; i++) running.server.sessions.emitTo(session, 'big', Buffer.alloc(512 * 1024, i));
      await within(running.server.close(), 6000, 'close()');
      await waitFor(() => sizes.length === 3, 5000).catch(() => undefined);
      assert.deepEqual(sizes, [524288, 524288, 524288]);
    });
  });
}

// ---------------------------------------------------------------------------
// item 9: silent peers are noticed within about two heartbeat intervals
// ---------------------------------------------------------------------------

const HEARTBEAT = 300;

for (const { name } of STREAM_CASES) {
  describe(`liveness over ${name} (item 9)`, () => {
    test('a client whose connection stops passing bytes fails its pending call, then reconnects', async () => {
      const running = await startServer(serverOptions(name, { heartbeatInterval: HEARTBEAT }));
      const { proxy, port } = await startProxy(running.port);
      const client = newClient(name, viaProxy(running.url, port), { heartbeatInterval: HEARTBEAT, requestTimeout: 30_000 });
      assert.equal(await within(lastValueFrom(client.send('echo', 'before')), 5000, 'echo'), 'before');
      await sleep(2 * HEARTBEAT);
      proxy.freeze();
      const started = Date.now();
      const error = await rejection(lastValueFrom(client.send('echo', 'lost')), 5000, 'call over a silent connection');
      const elapsed = Date.now() - started;
      assert.ok(
        [MsgTransErrorCode.CONNECTION_CLOSED, MsgTransErrorCode.HEARTBEAT_TIMEOUT].includes(codeOf(error) as never),
        `failed with ${codeOf(error)}: ${(error as Error).message}`,
      );
      assert.ok(elapsed < 10 * HEARTBEAT, `noticed after ${elapsed} ms`);
      // the relay forwards new connections: the client comes back on its own
      assert.equal(await within(lastValueFrom(client.send('echo', 'after')), 10_000, 'echo after reconnecting'), 'after');
      assert.ok(proxy.connections >= 2, 'over a new connection');
    });

    test('the server drops the session of a client that vanished, freeing its place under maxConnections', async () => {
      const running = await startServer(serverOptions(name, { heartbeatInterval: HEARTBEAT, maxConnections: 1 }));
      const { proxy, port } = await startProxy(running.port);
      const vanishing = newClient(name, viaProxy(running.url, port), { heartbeatInterval: HEARTBEAT, reconnect: false });
      assert.equal(await within(lastValueFrom(vanishing.send('echo', 1)), 5000, 'echo'), 1);
      assert.equal(running.server.sessions.size, 1);
      proxy.freeze();
      vanishing.close();
      const started = Date.now();
      await waitFor(() => running.server.sessions.size === 0, 10 * HEARTBEAT);
      assert.ok(Date.now() - started < 10 * HEARTBEAT);
      const next = newClient(name, running.url, { heartbeatInterval: HEARTBEAT });
      assert.equal(await within(lastValueFrom(next.send('echo', 2)), 5000, 'echo after the slot was freed'), 2);
    });
  });
}

for (const name of ['tcp', 'tls'] as const) {
  describe(`heartbeat between two Part B peers over ${name} (item 9)`, () => {
    test('idle peers that each learn the other speaks Part B stay connected, in one session, for many intervals', async () => {
      const running = await startServer(serverOptions(name, { heartbeatInterval: 150 }));
      const client = newClient(name, running.url, { heartbeatInterval: 150 });
      const disconnects: unknown[] = [];
      client.on('disconnect', (error) => disconnects.push(error));
      // a raw request (no Part B flag) answered with JSON (CODEC): only the client
      // learns at first; the server learns from the client's first heartbeat
      const first = await lastValueFrom(client.send('ctx', Buffer.alloc(1)));
      await sleep(15 * 150);
      const second = await lastValueFrom(client.send('ctx', Buffer.alloc(1)));
      assert.equal(second.sessionId, first.sessionId, 'same session: nobody was dropped');
      assert.deepEqual(disconnects, []);
      assert.equal(running.server.sessions.size, 1);
    });
  });
}

describe('the heartbeat option', () => {
  test("heartbeat: 'always' sends heartbeats (CANCEL for id 0) even to a peer that never set a Part B flag", async () => {
    const running = await startServer(serverOptions('tcp', { heartbeatInterval: 150, heartbeat: 'always' }));
    const socket = tcpConnect(running.port, '127.0.0.1');
    cleanups.push(() => socket.destroy());
    const received: InPacket[] = [];
    const splitter = new StreamSplitter((p) => received.push(p));
    socket.on('data', (chunk) => splitter.push(chunk));
    await waitFor(() => received.length >= 2, 3000);
    for (const p of received) {
      assert.deepEqual(
        { type: p.packetType, id: p.messageId, flags: p.flags, ext: p.ext.length, payload: p.payload.length },
        { type: 0, id: 0, flags: 0x0080, ext: 0, payload: 0 },
      );
    }
  });

  test('an unknown heartbeat mode is refused with INVALID_OPTION', () => {
    assert.throws(
      () => new MsgTransServer({ listen: 'tcp://127.0.0.1:0', heartbeat: 'sometimes' as never }),
      (error: MsgTransError) => error.code === MsgTransErrorCode.INVALID_OPTION,
    );
  });
});

describe('liveness toward a plain msgtrans peer over tcp (item 9)', () => {
  test('a peer that never sets a Part B flag gets no heartbeat packet from the server, and stays connected', async () => {
    const running = await startServer(serverOptions('tcp', { heartbeatInterval: 150 }));
    const socket = tcpConnect(running.port, '127.0.0.1');
    cleanups.push(() => socket.destroy());
    const received: InPacket[] = [];
    const splitter = new StreamSplitter((p) => received.push(p));
    socket.on('data', (chunk) => splitter.push(chunk));
    let closed = false;
    socket.on('close', () => (closed = true));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(encode({ packetType: REQUEST, bizType: 10, messageId: 1, payload: Buffer.from('ping') }));
    await waitFor(() => received.length === 1, 3000);
    await sleep(10 * 150);
    assert.equal(closed, false, 'not dropped: it relies on SO_KEEPALIVE');
    assert.equal(received.length, 1, `nothing but the reply arrived (${received.map((p) => p.flags).join(', ')})`);
    socket.write(encode({ packetType: REQUEST, bizType: 10, messageId: 2, payload: Buffer.from('ping') }));
    await waitFor(() => received.length === 2, 3000);
    assert.equal(received[1].payload.toString(), 'pong');
  });

  test('a client talking to a plain server sends it no heartbeat packet and stays connected', async () => {
    const { createServer } = await import('node:net');
    const seen: InPacket[] = [];
    const server = createServer((socket) => {
      const splitter = new StreamSplitter((p) => {
        seen.push(p);
        // a plain peer: answers with flags 0 and biz_type 0, as the reference does
        if (p.packetType === REQUEST) socket.write(encode({ packetType: 2, bizType: 0, messageId: p.messageId, payload: Buffer.from('ok') }));
      });
      socket.on('data', (chunk) => splitter.push(chunk));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => server.close());
    const port = (server.address() as { port: number }).port;
    const client = newClient('tcp', `tcp://127.0.0.1:${port}`, { heartbeatInterval: 150 });
    const disconnects: unknown[] = [];
    client.on('disconnect', (error) => disconnects.push(error));
    assert.equal((await lastValueFrom(client.send(7, Buffer.from('x')))).toString(), 'ok');
    await sleep(10 * 150);
    assert.equal(seen.length, 1, `only the request arrived (flags ${seen.map((p) => p.flags).join(', ')})`);
    assert.deepEqual(disconnects, []);
  });
});

// ---------------------------------------------------------------------------
// item 12: a stalled WebSocket message after a complete non-final fragment
// ---------------------------------------------------------------------------

for (const name of ['ws', 'wss'] as const) {
  describe(`incompleteMessageTimeout and fragments over ${name} (item 12)`, () => {
    test('a message whose first fragment arrived whole, then nothing, is dropped within the timeout', async () => {
      const running = await startServer(serverOptions(name, { incompleteMessageTimeout: 500 }));
      const ws = new WebSocket(running.url, { ca: certs.ca });
      cleanups.push(() => ws.terminate());
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      await waitFor(() => running.server.sessions.size === 1, 3000);
      const errors: string[] = [];
      running.server.on('error', (error) => errors.push(codeOf(error) ?? error.message));
      const request = encode({ packetType: REQUEST, bizType: 10, messageId: 1, payload: Buffer.from('ping') });
      ws.send(request.subarray(0, 10), { binary: true, fin: false });
      const closed = new Promise<number>((resolve) => ws.once('close', resolve));
      const started = Date.now();
      await within(closed, 5000, 'the server closes the stalled connection');
      assert.ok(Date.now() - started >= 400, 'not before the timeout');
      await waitFor(() => errors.includes(MsgTransErrorCode.INCOMPLETE_TIMEOUT), 2000);
    });

    test('a fragmented message completed in time, with pings between fragments, is answered', async () => {
      const running = await startServer(serverOptions(name, { incompleteMessageTimeout: 1000 }));
      const ws = new WebSocket(running.url, { ca: certs.ca });
      cleanups.push(() => ws.terminate());
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const replies: Buffer[] = [];
      ws.on('message', (data) => replies.push(data as Buffer));
      const request = encode({ packetType: REQUEST, bizType: 10, messageId: 1, payload: Buffer.from('ping') });
      ws.send(request.subarray(0, 10), { binary: true, fin: false });
      await sleep(200);
      ws.ping();
      await sleep(200);
      ws.send(request.subarray(10), { binary: true, fin: true });
      await waitFor(() => replies.length === 1, 3000);
      assert.equal(parsePacket(replies[0]).payload.toString(), 'pong');
      // whole messages, one after another, never trip it
      for (let i = 2; i < 8; i++) {
        ws.send(encode({ packetType: REQUEST, bizType: 10, messageId: i, payload: Buffer.from('ping') }));
        await sleep(250);
      }
      await waitFor(() => replies.length === 7, 3000);
      assert.equal(ws.readyState, WebSocket.OPEN);
    });
  });
}
