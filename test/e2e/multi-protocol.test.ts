/**
 * One MsgTransServer serving several protocols at once: TCP and QUIC on the
 * same port number, WebSocket beside them; per-endpoint TLS; a bind failure
 * that must release what was bound; config errors at construction; and
 * close() giving every port back.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { NestFactory } from '@nestjs/core';
import type { INestMicroservice } from '@nestjs/common';
import { lastValueFrom, toArray } from 'rxjs';
import {
  MsgTransClient,
  MsgTransErrorCode,
  MsgTransServer,
  type MsgTransClientOptions,
  type MsgTransListener,
  type MsgTransListenerAddress,
  type MsgTransServerOptions,
} from '../../lib/index.js';
import { createDevCertificates, type DevCertificates } from '../../sample/dev-certs.js';
import { testCertificates } from '../support/protocols.js';
import { startApp, TestModule, waitFor, type RunningApp } from '../support/test-app.js';
import { within } from '../support/async.js';

const WAIT_MS = 5000;

/** Rejects if `promise` does not settle within `ms` (the shared helper, with this file's argument order). */
const withTimeout = <T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> => within(promise, ms, what);

/** Binds a TCP server; resolves with it, or rejects with the bind error. */
function bindTcp(port: number, host = '127.0.0.1'): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => socket.destroy());
    server.once('error', reject);
    server.listen({ port, host, exclusive: true }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** Binds a UDP socket; resolves with it, or rejects with the bind error. */
function bindUdp(port: number, host = '127.0.0.1'): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    socket.once('error', (err) => {
      socket.close();
      reject(err);
    });
    socket.bind({ port, address: host, exclusive: true }, () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

const closeTcp = (server: net.Server) => new Promise<void>((resolve) => server.close(() => resolve()));
const closeUdp = (socket: dgram.Socket) => new Promise<void>((resolve) => socket.close(() => resolve()));

/** A port number free for both TCP and UDP on 127.0.0.1 right now. */
async function freeTcpAndUdpPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const tcp = await bindTcp(0);
    const port = (tcp.address() as net.AddressInfo).port;
    await closeTcp(tcp);
    try {
      await closeUdp(await bindUdp(port));
      return port;
    } catch {
      // taken on UDP: try another
    }
  }
  throw new Error('no port free on both TCP and UDP');
}

/** True if nothing accepts TCP connections on the port (connection refused). */
function tcpRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, 2000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code === 'ECONNREFUSED');
    });
  });
}

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? `no code: ${(err as Error).message}`;
  }
  return undefined;
};

const clients: MsgTransClient[] = [];
function newClient(options: MsgTransClientOptions): MsgTransClient {
  const c = new MsgTransClient({ requestTimeout: WAIT_MS, connectTimeout: 3000, ...options });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

after(() => {
  for (const c of clients) c.close();
});

// ---------------------------------------------------------------------------

describe('one server on tcp, ws and quic at once (TCP and QUIC on the same port number)', () => {
  let certs: DevCertificates;
  let port: number;
  let server: MsgTransServer;
  let running: RunningApp | undefined;
  let addresses: MsgTransListenerAddress[];
  const statuses: string[] = [];
  const connected: Array<{ id: string; protocol: string }> = [];
  const byProtocol = new Map<string, MsgTransClient>();
  let wsPort: number;

  before(async () => {
    certs = await testCertificates();
    port = await freeTcpAndUdpPort();
    server = new MsgTransServer({
      listen: [`tcp://127.0.0.1:${port}`, 'ws://127.0.0.1:0/msgtrans', `quic://127.0.0.1:${port}`],
      tls: { key: certs.serverKey, cert: certs.serverCert },
    });
    server.status.subscribe((s) => statuses.push(s));
    server.on('connect', (session) => connected.push({ id: session.id, protocol: session.protocol }));
    running = await startApp({ strategy: server });
    addresses = server.addresses();
  });

  after(async () => {
    await running?.close();
  });

  test('addresses(): three endpoints, tcp and quic on the same port', () => {
    assert.deepEqual(
      addresses.map((a) => a.protocol),
      ['tcp', 'ws', 'quic'],
    );
    const [tcp, ws, quic] = addresses;
    assert.equal(tcp.port, port);
    assert.equal(quic.port, port);
    assert.equal(tcp.port, quic.port);
    assert.ok(ws.port > 0 && ws.port !== port);
    wsPort = ws.port;
    assert.equal(tcp.url, `tcp://127.0.0.1:${port}`);
    assert.equal(quic.url, `quic://127.0.0.1:${port}`);
    assert.equal(ws.url, `ws://127.0.0.1:${ws.port}/msgtrans`);
    assert.deepEqual(statuses, ['connected']);
  });

  test('three clients, one per protocol, use the same handlers concurrently', async () => {
    for (const address of addresses) {
      byProtocol.set(address.protocol, newClient({ url: address.url, tls: address.protocol === 'quic' ? { ca: certs.ca } : undefined }));
    }
    const eventsBefore = running!.observed.events.length;
    const work = [...byProtocol].map(async ([protocol, client]) => {
      const echoes = Array.from({ length: 200 }, (_, i) => ({ protocol, i, text: `${protocol}-${i}` }));
      const [answers, stream, ctx] = await Promise.all([
        Promise.all(echoes.map((value) => lastValueFrom(client.send('echo', value)))),
        lastValueFrom(client.send('stream', { n: 5 }).pipe(toArray())),
        lastValueFrom(client.send('ctx', {})),
        lastValueFrom(client.emit('event', { from: protocol })),
      ]);
      return { protocol, echoes, answers, stream, ctx };
    });
    const results = await withTimeout(Promise.all(work), 'concurrent calls', 15_000);
    for (const r of results) {
      assert.deepEqual(r.answers, r.echoes, `${r.protocol}: every echo answered with its own payload`);
      assert.deepEqual(r.stream, [1, 2, 3, 4, 5], `${r.protocol}: stream`);
      assert.equal(r.ctx.protocol, r.protocol, `${r.protocol}: ctx.protocol`);
      assert.equal(r.ctx.remoteAddress, '127.0.0.1');
    }
    await waitFor(() => running!.observed.events.length >= eventsBefore + 3, WAIT_MS);
    assert.deepEqual(
      running!.observed.events
        .slice(eventsBefore)
        .map((e) => (e as { from: string }).from)
        .sort(),
      ['quic', 'tcp', 'ws'],
    );
  });

  test("server 'connect' fired once per session with the session's protocol", async () => {
    await waitFor(() => connected.length >= 3, WAIT_MS);
    assert.deepEqual(connected.map((c) => c.protocol).sort(), ['quic', 'tcp', 'ws']);
    assert.equal(new Set(connected.map((c) => c.id)).size, 3);
    const sessions = [...server.getSessions().values()];
    assert.deepEqual(sessions.map((s) => s.protocol).sort(), ['quic', 'tcp', 'ws']);
  });

  test('close(): every port is free again and no client can connect', async () => {
    const app = running!;
    running = undefined;
    const dropped = new Set<string>();
    for (const [protocol, client] of byProtocol) client.on('disconnect', () => dropped.add(protocol));
    await withTimeout(app.close(), 'app.close()');
    assert.equal(statuses.at(-1), 'disconnected');
    assert.equal(server.getSessions().size, 0);
    // the server closed the open sessions: every connected client hears of it
    await waitFor(() => dropped.size === 3, WAIT_MS);

    // new clients and the old ones (which would reconnect) all fail to connect
    const attempts: MsgTransClient[] = [
      ...byProtocol.values(),
      newClient({ url: `tcp://127.0.0.1:${port}` }),
      newClient({ url: `ws://127.0.0.1:${wsPort}/msgtrans` }),
      newClient({ url: `quic://127.0.0.1:${port}`, tls: { ca: certs.ca }, connectTimeout: 1500 }),
    ];
    const outcomes = await withTimeout(
      Promise.allSettled(attempts.map((c) => lastValueFrom(c.send('echo', 'after close')))),
      'requests after close',
      8000,
    );
    for (const [i, o] of outcomes.entries()) {
      assert.equal(o.status, 'rejected', `client ${i} must not reach a closed server`);
      assert.equal((o as PromiseRejectedResult).reason.code, MsgTransErrorCode.CONNECT_FAILED, `client ${i}: ${(o as PromiseRejectedResult).reason}`);
    }
    assert.ok(await tcpRefused(port), 'tcp port refuses connections');
    assert.ok(await tcpRefused(wsPort), 'ws port refuses connections');

    // and the ports can be bound again: TCP, UDP (the QUIC socket), and the WebSocket server's
    const tcp = await bindTcp(port);
    const udp = await bindUdp(port);
    const ws = await bindTcp(wsPort);
    await Promise.all([closeTcp(tcp), closeUdp(udp), closeTcp(ws)]);
  });
});

describe('per-endpoint TLS overrides the server-wide tls', () => {
  let first: DevCertificates;
  let second: DevCertificates;
  let running: RunningApp & { server: MsgTransServer };
  let tlsUrl: string;
  let wssUrl: string;

  before(async () => {
    first = await testCertificates();
    second = await createDevCertificates();
    const server = new MsgTransServer({
      listen: ['tls://127.0.0.1:0', { url: 'wss://127.0.0.1:0/x', tls: { key: second.serverKey, cert: second.serverCert } }],
      tls: { key: first.serverKey, cert: first.serverCert },
    });
    running = { ...(await startApp({ strategy: server })), server };
    [tlsUrl, wssUrl] = server.addresses().map((a) => a.url);
  });

  after(async () => {
    await running?.close();
  });

  test('the endpoints bound as tls and wss', () => {
    assert.match(tlsUrl, /^tls:\/\/127\.0\.0\.1:\d+$/);
    assert.match(wssUrl, /^wss:\/\/127\.0\.0\.1:\d+\/x$/);
  });

  test('the tls endpoint serves the server-wide certificate (first CA only)', async () => {
    const good = newClient({ url: tlsUrl, tls: { ca: first.ca } });
    const ctx = await lastValueFrom(good.send('ctx', {}));
    assert.equal(ctx.protocol, 'tls');
    const wrong = newClient({ url: tlsUrl, tls: { ca: second.ca } });
    await assert.rejects(lastValueFrom(wrong.send('echo', 1)), (err: { code?: string }) => err.code === MsgTransErrorCode.CONNECT_FAILED);
  });

  test("the wss endpoint serves its own certificate (second CA only)", async () => {
    const good = newClient({ url: wssUrl, tls: { ca: second.ca } });
    const ctx = await lastValueFrom(good.send('ctx', {}));
    assert.equal(ctx.protocol, 'wss');
    assert.deepEqual(await lastValueFrom(good.send('echo', { over: 'wss' })), { over: 'wss' });
    const wrong = newClient({ url: wssUrl, tls: { ca: first.ca } });
    await assert.rejects(lastValueFrom(wrong.send('echo', 1)), (err: { code?: string }) => err.code === MsgTransErrorCode.CONNECT_FAILED);
  });
});

/** Starts a MsgTransServer through Nest, recording what each listener bound and the status; listen() is expected to fail. */
async function startFailing(options: MsgTransServerOptions) {
  const server = new MsgTransServer(options);
  const statuses: string[] = [];
  server.status.subscribe((s) => statuses.push(s));
  const listening: unknown[] = [];
  server.on('listening', (a) => listening.push(a));
  // a spy on each listener: the real listen runs unchanged, its bound address is recorded
  const bound: MsgTransListenerAddress[] = [];
  const listeners = server.unwrap<MsgTransListener[]>();
  for (const listener of listeners) {
    const real = listener.listen.bind(listener);
    listener.listen = async (onConnection) => {
      const address = await real(onConnection);
      bound.push(address);
      return address;
    };
  }
  const app = await NestFactory.createMicroservice(TestModule, { strategy: server, logger: false });
  const error = await withTimeout(app.listen(), 'app.listen()').then(
    () => undefined,
    (err: NodeJS.ErrnoException) => err,
  );
  return { server, app, error, statuses, listening, bound, listeners };
}

describe('a failing bind fails listen() and releases the endpoints already bound', () => {
  const apps: INestMicroservice[] = [];
  const blockers: Array<() => Promise<void>> = [];

  after(async () => {
    for (const app of apps) await app.close();
    for (const release of blockers) await release();
  });

  test('ws + occupied tcp: listen rejects with EADDRINUSE, the ws port is released, status ends disconnected', async () => {
    const blocker = await bindTcp(0);
    blockers.push(() => closeTcp(blocker));
    const occupied = (blocker.address() as net.AddressInfo).port;
    const r = await startFailing({ listen: ['ws://127.0.0.1:0/msgtrans', `tcp://127.0.0.1:${occupied}`] });
    apps.push(r.app);
    assert.ok(r.error, 'listen() must reject');
    assert.equal(r.error.code, 'EADDRINUSE', String(r.error));

    // the ws listener did bind before the failure was known: that is what must be released
    assert.deepEqual(
      r.bound.map((a) => a.protocol),
      ['ws'],
    );
    const wsPort = r.bound[0].port;
    assert.ok(wsPort > 0);
    assert.ok(await tcpRefused(wsPort), 'nothing accepts on the port the ws listener had bound');
    await closeTcp(await bindTcp(wsPort));
    // the TCP listener's own server is not listening either
    assert.ok(!r.listeners[1].unwrap<net.Server | null>()?.listening, 'tcp listener not listening');

    assert.deepEqual(r.server.addresses(), [], 'no addresses reported');
    assert.deepEqual(r.listening, [], "no 'listening' event");
    assert.equal(r.statuses.at(-1), 'disconnected');
    assert.ok(!r.statuses.includes('connected'), `status never said connected: ${r.statuses.join(',')}`);
    assert.equal(blocker.listening, true, 'the blocker itself is untouched');
  });

  test('ws + quic + occupied tcp: the QUIC socket is released too', async () => {
    const certs = await testCertificates();
    const blocker = await bindTcp(0);
    blockers.push(() => closeTcp(blocker));
    const occupied = (blocker.address() as net.AddressInfo).port;
    const r = await startFailing({
      listen: ['ws://127.0.0.1:0/msgtrans', 'quic://127.0.0.1:0', `tcp://127.0.0.1:${occupied}`],
      tls: { key: certs.serverKey, cert: certs.serverCert },
    });
    apps.push(r.app);
    assert.equal(r.error?.code, 'EADDRINUSE', String(r.error));
    assert.deepEqual(r.bound.map((a) => a.protocol).sort(), ['quic', 'ws']);
    const quicPort = r.bound.find((a) => a.protocol === 'quic')!.port;
    const wsPort = r.bound.find((a) => a.protocol === 'ws')!.port;
    // a client cannot reach the QUIC endpoint, and its UDP port can be bound again
    const client = newClient({ url: `quic://127.0.0.1:${quicPort}`, tls: { ca: certs.ca }, connectTimeout: 1500 });
    await assert.rejects(lastValueFrom(client.send('echo', 1)), (err: { code?: string }) => err.code === MsgTransErrorCode.CONNECT_FAILED);
    await closeUdp(await bindUdp(quicPort));
    await closeTcp(await bindTcp(wsPort));
    assert.equal(r.statuses.at(-1), 'disconnected');
  });

  test('tcp + quic on an occupied UDP port: listen rejects and the tcp port is released', async () => {
    const certs = await testCertificates();
    const blocker = await bindUdp(0);
    blockers.push(() => closeUdp(blocker));
    const occupied = blocker.address().port;
    const r = await startFailing({
      listen: ['tcp://127.0.0.1:0', `quic://127.0.0.1:${occupied}`],
      tls: { key: certs.serverKey, cert: certs.serverCert },
    });
    apps.push(r.app);
    assert.ok(r.error, 'listen() must reject when the UDP port is taken');
    // the QUIC library wraps the socket error; EADDRINUSE is on it or on its cause
    const cause = (r.error as Error & { cause?: NodeJS.ErrnoException }).cause;
    assert.equal(r.error.code ?? cause?.code, 'EADDRINUSE', `${r.error.name}: ${r.error.message}`);
    assert.deepEqual(
      r.bound.map((a) => a.protocol),
      ['tcp'],
    );
    const tcpPort = r.bound[0].port;
    assert.ok(await tcpRefused(tcpPort), 'nothing accepts on the port the tcp listener had bound');
    await closeTcp(await bindTcp(tcpPort));
    assert.deepEqual(r.listening, []);
    assert.equal(r.statuses.at(-1), 'disconnected');
  });
});

describe('config errors at construction', () => {
  const cases: Array<{ name: string; options: MsgTransServerOptions; code: string }> = [
    { name: 'quic without tls', options: { listen: 'quic://127.0.0.1:0' }, code: MsgTransErrorCode.INVALID_OPTION },
    { name: 'wss without tls', options: { listen: 'wss://127.0.0.1:0/msgtrans' }, code: MsgTransErrorCode.INVALID_OPTION },
    { name: 'tls without tls', options: { listen: 'tls://127.0.0.1:0' }, code: MsgTransErrorCode.INVALID_OPTION },
    {
      name: 'quic with tls lacking a key',
      options: { listen: 'quic://127.0.0.1:0', tls: { cert: 'x' } },
      code: MsgTransErrorCode.INVALID_OPTION,
    },
    {
      name: 'a valid endpoint beside one missing tls',
      options: { listen: ['tcp://127.0.0.1:0', 'quic://127.0.0.1:0'] },
      code: MsgTransErrorCode.INVALID_OPTION,
    },
    { name: 'an unknown scheme', options: { listen: 'carrier-pigeon://127.0.0.1:1' }, code: MsgTransErrorCode.UNKNOWN_PROTOCOL },
    { name: 'port 70000 in the URL', options: { listen: 'tcp://127.0.0.1:70000' }, code: MsgTransErrorCode.INVALID_OPTION },
    { name: 'port 70000 in an endpoint object', options: { listen: { protocol: 'tcp', port: 70000 } }, code: MsgTransErrorCode.INVALID_OPTION },
    { name: 'port 70000 on quic', options: { listen: 'quic://127.0.0.1:70000' }, code: MsgTransErrorCode.INVALID_OPTION },
  ];
  for (const c of cases) {
    test(`${c.name} throws ${c.code}`, () => {
      assert.equal(
        codeOf(() => new MsgTransServer(c.options)),
        c.code,
      );
    });
  }

  test('with the certificates present the same endpoints construct fine', async () => {
    const certs = await testCertificates();
    const tls = { key: certs.serverKey, cert: certs.serverCert };
    for (const listen of ['quic://127.0.0.1:0', 'wss://127.0.0.1:0/msgtrans', 'tls://127.0.0.1:0']) {
      assert.equal(
        codeOf(() => new MsgTransServer({ listen, tls })),
        undefined,
        listen,
      );
      // or with the endpoint's own tls only
      assert.equal(
        codeOf(() => new MsgTransServer({ listen: { url: listen, tls } })),
        undefined,
        `${listen} (endpoint tls)`,
      );
    }
  });
});
