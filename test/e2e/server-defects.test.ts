/**
 * Regression tests for defects of the Nest server layer (issue 9): handler
 * errors that cannot be encoded, hand-registered handlers, the handler-lookup
 * cache, listen() after close(), the hybrid app's address, plain errors, and
 * what an unauthenticated peer can make the server hold. Real sockets on
 * loopback, on every protocol where the defect can appear.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Controller, Module, type INestMicroservice, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, EventPattern, MessagePattern, Payload, RpcException, type MessageHandler } from '@nestjs/microservices';
import { lastValueFrom, of } from 'rxjs';
import {
  MsgTransClient,
  MsgTransError,
  MsgTransErrorCode,
  MsgTransServer,
  MsgTransSession,
  MsgTransSessions,
  AUTH_ROUTE,
  parseEndpoint,
  type MsgTransAuthRequest,
  type MsgTransClientOptions,
  type MsgTransContext,
  type MsgTransServerOptions,
} from '../../lib/index.js';
import { protocolFor, protocolTable, resolveSessionOptions } from '../../lib/common/resolve-options.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { rejection, sleep, within } from '../support/async.js';
import { waitFor } from '../support/test-app.js';
import { CODEC, HAS_ROUTE_TAG, REQUEST, RESPONSE, ERROR, StreamSplitter, encode, parsePacket } from '../support/raw-wire.js';

// process-wide failures: none of these tests may produce one
const processFailures: unknown[] = [];
const onProcessFailure = (err: unknown) => processFailures.push(err);
process.on('uncaughtException', onProcessFailure);
process.on('unhandledRejection', onProcessFailure);
after(() => {
  process.off('uncaughtException', onProcessFailure);
  process.off('unhandledRejection', onProcessFailure);
});

const INTERNAL_ERROR = { status: 'error', message: 'Internal server error' };

/** Nest's logger output, kept for assertions instead of printed. */
class CapturingLogger implements LoggerService {
  readonly errors: string[] = [];
  readonly logs: string[] = [];
  log(message: unknown): void {
    this.logs.push(String(message));
  }
  warn(): void {}
  debug(): void {}
  verbose(): void {}
  error(message: unknown, ...rest: unknown[]): void {
    const text = (value: unknown) => (value instanceof Error ? `${value.message}\n${value.stack}` : String(value));
    this.errors.push([message, ...rest].map(text).join(' '));
  }
}

function circular(): Record<string, unknown> {
  // what an axios error looks like to JSON: request and response point at each other
  const request: Record<string, unknown> = { method: 'GET' };
  const response: Record<string, unknown> = { status: 502, request };
  request.response = response;
  return { name: 'AxiosError', config: { url: 'http://internal:8080/secret' }, request, response };
}

@Controller()
class DefectsController {
  constructor(private readonly sessions: MsgTransSessions) {}

  @MessagePattern('echo')
  echo(@Payload() data: unknown) {
    return data;
  }

  @MessagePattern({ cmd: 'sum', v: 1 })
  sum(@Payload() data: number[]) {
    return data.reduce((a, b) => a + b, 0);
  }

  @MessagePattern('whoami')
  whoami(@Payload() _data: unknown, @Ctx() ctx: MsgTransContext) {
    return ctx.getPrincipal() ?? null;
  }

  @EventPattern('note')
  note(@Payload() _data: unknown) {
    notes.count++;
  }

  @MessagePattern('session')
  session(@Payload() _data: unknown, @Ctx() ctx: MsgTransContext) {
    return ctx.getSessionId();
  }

  @MessagePattern('throw.circular')
  throwCircular() {
    throw new RpcException({ message: 'upstream failed', cause: circular() });
  }

  @MessagePattern('throw.bigint')
  throwBigint() {
    throw new RpcException({ message: 'too big', cause: { n: 10n } });
  }

  @MessagePattern('reply.circular')
  replyCircular() {
    return circular();
  }

  @MessagePattern('stream.bigint')
  streamBigint() {
    return of(1, 2n, 3);
  }

  @MessagePattern('push.bigint')
  pushBigint(@Payload() _data: unknown, @Ctx() ctx: MsgTransContext) {
    this.sessions.emitTo(ctx.getSessionId(), 'pushed', { n: 1n });
    return 'pushed';
  }
}

const notes = { count: 0 };

@Module({ controllers: [DefectsController], providers: [{ provide: MsgTransSessions, useFactory: () => sessionsRef }] })
class DefectsModule {}
// the controller's MsgTransSessions is the running server's (set before the app is created)
let sessionsRef: MsgTransSessions;

interface Running {
  app: INestMicroservice;
  server: MsgTransServer;
  url: string;
  logger: CapturingLogger;
  disconnects: number;
}

const apps: INestMicroservice[] = [];
const clients: MsgTransClient[] = [];
const sockets: Socket[] = [];
after(async () => {
  for (const c of clients) c.close();
  for (const s of sockets) s.destroy();
  for (const app of apps) await app.close().catch(() => undefined);
});

async function start(options: MsgTransServerOptions): Promise<Running> {
  const server = new MsgTransServer(options);
  sessionsRef = server.sessions;
  const logger = new CapturingLogger();
  const app = await NestFactory.createMicroservice(DefectsModule, { strategy: server, logger });
  await app.listen();
  apps.push(app);
  const running: Running = { app, server, url: server.addresses()[0].url, logger, disconnects: 0 };
  server.on('disconnect', () => running.disconnects++);
  return running;
}

function newClient(options: MsgTransClientOptions): MsgTransClient {
  const client = new MsgTransClient({ requestTimeout: 5000, ...options });
  clients.push(client);
  return client;
}

const call = <T = unknown>(client: MsgTransClient, pattern: string, data: unknown = {}): Promise<T> =>
  within(lastValueFrom(client.send<T>(pattern, data)), 6000, `call ${pattern}`);

let certs: DevCertificates;
before(async () => {
  certs = await testCertificates();
});

// ---------------------------------------------------------------------------
// handler errors and values that cannot be encoded, hand-registered handlers
// ---------------------------------------------------------------------------

for (const protocol of PROTOCOL_CASES) {
  describe(`server robustness over ${protocol.name}`, () => {
    let running: Running;
    let client: MsgTransClient;
    const syncEvents: unknown[] = [];

    before(async () => {
      running = await start(protocol.server(certs));
      // hand-registered handlers: Nest's exception filters do not wrap these
      const server = running.server;
      server.addHandler('sync.event', ((data: unknown) => void syncEvents.push(data)) as unknown as MessageHandler, true);
      server.addHandler(
        'sync.event.throws',
        (() => {
          throw new Error('event handler bug');
        }) as unknown as MessageHandler,
        true,
      );
      server.addHandler('raw.throw', (() => {
        throw new Error('password=hunter2 rejected by db');
      }) as unknown as MessageHandler);
      server.addHandler('raw.reject.circular', async () => {
        throw circular();
      });
      client = newClient(protocol.client(running.url, certs));
      await within(client.connect(), 5000, 'connect');
    });

    test('an RpcException whose cause is circular or holds a BigInt gets the caller an error; the process survives', async () => {
      const failuresBefore = processFailures.length;
      const sessionBefore = await call(client, 'session');
      for (const pattern of ['throw.circular', 'throw.bigint']) {
        const logsBefore = running.logger.errors.length;
        const error = await rejection(lastValueFrom(client.send(pattern, {})), 6000, pattern);
        // an ERROR reply from the server, not a timeout or a dropped connection on the client
        assert.ok(!(error instanceof Error), `${pattern}: an error reply, got ${String(error)}`);
        // what can be encoded of the RpcException's object, or Nest's "Internal server error"
        assert.equal(typeof (error as { message?: string }).message, 'string', `${pattern}: with a message: ${JSON.stringify(error)}`);
        await sleep(20);
        const logged = running.logger.errors.slice(logsBefore);
        assert.equal(logged.length, 1, `${pattern}: the server logged it once: ${JSON.stringify(logged)}`);
      }
      await sleep(50);
      assert.equal(processFailures.length, failuresBefore, `no uncaught exception: ${processFailures.slice(failuresBefore).join('; ')}`);
      assert.equal(await call(client, 'session'), sessionBefore, 'same connection, still serving');
    });

    test('a value, a streamed value and a pushed event that cannot be encoded: an error for that message only', async () => {
      const failuresBefore = processFailures.length;
      const sessionBefore = await call(client, 'session');
      await rejection(lastValueFrom(client.send('reply.circular', {})), 6000, 'reply.circular');
      await rejection(lastValueFrom(client.send('stream.bigint', {})), 6000, 'stream.bigint');
      // the push fails, so the handler fails or answers: either way the caller hears back
      await within(
        lastValueFrom(client.send('push.bigint', {})).catch(() => 'failed'),
        6000,
        'push.bigint',
      );
      await sleep(50);
      assert.equal(processFailures.length, failuresBefore, `no uncaught exception: ${processFailures.slice(failuresBefore).join('; ')}`);
      assert.equal(await call(client, 'session'), sessionBefore, 'same connection, still serving');
    });

    test('errors that bypass the exception filters reach the caller as Nest\'s "Internal server error", logged once', async () => {
      const failuresBefore = processFailures.length;
      for (const pattern of ['raw.throw', 'raw.reject.circular']) {
        const logsBefore = running.logger.errors.length;
        const error = await rejection(lastValueFrom(client.send(pattern, {})), 6000, pattern);
        assert.deepEqual(error, INTERNAL_ERROR, `${pattern}: no internals leak to the peer`);
        await sleep(20);
        const logged = running.logger.errors.slice(logsBefore);
        assert.equal(logged.length, 1, `${pattern}: logged once, got ${JSON.stringify(logged)}`);
      }
      assert.match(running.logger.errors.join('\n'), /password=hunter2/, 'the real error is in the server log');
      assert.equal(processFailures.length, failuresBefore);
    });

    test('a synchronous hand-registered event handler does not close the connection', async () => {
      const sessionBefore = await call(client, 'session');
      const disconnectsBefore = running.disconnects;
      client.emit('sync.event', { n: 1 }).subscribe();
      client.emit('sync.event.throws', { n: 2 }).subscribe({ error: () => undefined });
      client.emit('sync.event', { n: 3 }).subscribe();
      await waitFor(() => syncEvents.length === 2, 3000);
      assert.deepEqual(syncEvents, [{ n: 1 }, { n: 3 }]);
      assert.equal(await call(client, 'session'), sessionBefore, 'same connection');
      assert.equal(running.disconnects, disconnectsBefore, 'no session closed');
      assert.ok(running.logger.errors.some((e) => e.includes('event handler bug')), 'the throwing handler was logged');
    });
  });
}

test('an error thrown by a processing hook reaches the caller as Nest\'s "Internal server error", logged once', async () => {
  const running = await start({ listen: 'tcp://127.0.0.1:0' });
  running.server.setOnProcessingStartHook((_transport, context, done) => {
    if ((context as MsgTransContext).getPattern() === 'session') throw new Error('tracer exploded: token=abc123');
    void done();
  });
  const client = newClient({ url: running.url, reconnect: false });
  assert.deepEqual(await call(client, 'echo', 1), 1, 'the hook lets other requests through');
  const logsBefore = running.logger.errors.length;
  const error = await rejection(lastValueFrom(client.send('session', {})), 6000, 'hooked request');
  assert.deepEqual(error, INTERNAL_ERROR, 'no internals leak to the peer');
  await sleep(20);
  const logged = running.logger.errors.slice(logsBefore);
  assert.equal(logged.length, 1, `logged once: ${JSON.stringify(logged)}`);
  assert.match(logged[0], /tracer exploded/);
});

// ---------------------------------------------------------------------------
// what a peer that is not authenticated yet can make the server do
// ---------------------------------------------------------------------------

/** A bare session over a fresh connection to `url`: it sends whatever it is asked, at once. */
async function bareSession(
  protocol: (typeof PROTOCOL_CASES)[number],
  url: string,
  options: Parameters<typeof resolveSessionOptions>[0] = {},
): Promise<MsgTransSession> {
  const resolved = resolveSessionOptions(options);
  const endpoint = parseEndpoint(url);
  const connection = await protocolFor(protocolTable(), endpoint.protocol).connect(endpoint, {
    limits: resolved.limits,
    tls: protocol.client(url, certs).tls,
    connectTimeout: 5000,
    heartbeatInterval: 0,
  });
  const session = new MsgTransSession(connection, resolved, {
    onRequest: (s, m) => s.replyError(m, 'no'),
    onEvent: () => undefined,
    onClose: () => undefined,
  });
  cleanups.push(() => session.close());
  return session;
}
const cleanups: (() => void)[] = [];
after(() => {
  for (const cleanup of cleanups) cleanup();
});

/** A request on a bare session: resolves with its last value, rejects with its error. */
function requestOn(session: MsgTransSession, route: string, data: unknown): Promise<unknown> {
  return within(
    new Promise<unknown>((resolve, reject) => {
      let last: unknown;
      session.request(0, route, data, undefined, { next: (value) => (last = value), error: reject, complete: () => resolve(last) });
    }),
    6000,
    `request ${route}`,
  );
}

/** A promise the hook waits on, opened by the test (or after 10 s, so nothing hangs). */
function hookGate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
    setTimeout(resolve, 10_000).unref();
  });
  return { opened, open };
}

for (const protocol of PROTOCOL_CASES) {
  describe(`before authentication over ${protocol.name}`, () => {
    let running: Running;
    const hookCalls: MsgTransAuthRequest[] = [];
    let gate = hookGate();
    const errors: string[] = [];

    before(async () => {
      running = await start({
        ...protocol.server(certs),
        authenticate: async (request) => {
          hookCalls.push(request);
          const token = (request.credentials as { token?: string } | undefined)?.token;
          if (token === 'good') return { user: 'alice' };
          if (token === 'bad') return false;
          if (token === 'gated') return gate.opened.then(() => ({ user: 'gated' }));
          // no credentials: anonymous, after a while
          await sleep(300);
          return { anonymous: true };
        },
      });
      running.server.on('error', (error) => errors.push((error as MsgTransError).code));
    });

    test('a slow authenticate: large compressed packets are held undecoded and bounded in bytes, then the peer is closed', async () => {
      gate = hookGate();
      const session = await bareSession(protocol, running.url, { compression: { algorithm: 'zlib', threshold: 1024 } });
      const auth = requestOn(session, AUTH_ROUTE, { token: 'gated' });
      auth.catch(() => undefined);
      await waitFor(() => hookCalls.some((c) => (c.credentials as { token?: string })?.token === 'gated'), 3000);
      // 4 MiB of JSON each that compresses to about 4 KiB: 40 of them are 160 KiB on the wire
      const large = 'a'.repeat(4 * 1024 * 1024);
      const baseline = heapAfterGc();
      for (let i = 0; i < 40; i++) session.emit(0, 'note', large, undefined);
      await sleep(500);
      const grown = heapAfterGc() - baseline;
      assert.equal(session.closed, false, 'within the bound: still connected');
      // decoded, they would be 160 MiB
      assert.ok(grown < 48 * 1024 * 1024, `the server holds ${(grown / 1048576).toFixed(1)} MiB for a peer nobody accepted`);

      // then more than maxPreAuthBytes (1 MiB by default) on the wire
      const incompressible = Buffer.alloc(256 * 1024);
      for (let i = 0; i < incompressible.length; i += 4) incompressible.writeUInt32LE((Math.random() * 0x100000000) >>> 0, i);
      for (let i = 0; i < 6 && !session.closed; i++) session.emit(0, 'note', incompressible, undefined);
      await within(waitFor(() => session.closed, 5000), 6000, 'the server closes the connection');
      await waitFor(() => errors.includes(MsgTransErrorCode.PRE_AUTH_LIMIT), 2000);
      assert.ok((running.server.stats().violations[MsgTransErrorCode.PRE_AUTH_LIMIT] ?? 0) >= 1, 'counted by code');
      gate.open();
      await sleep(100);
      assert.equal(notes.count, 0, 'nothing the closed peer sent reached a handler');
    });

    test('a msgtrans.auth request that arrives after another packet reaches the hook', async () => {
      const session = await bareSession(protocol, running.url);
      const hooksBefore = hookCalls.length;
      const first = requestOn(session, 'whoami', 1);
      const auth = requestOn(session, AUTH_ROUTE, { token: 'good' });
      // the first packet is handled once the hook accepted the connection without credentials
      assert.ok((await first) !== null, 'the first request was served');
      assert.deepEqual(await auth, { authenticated: true }, 'the late credentials were answered');
      assert.deepEqual(
        hookCalls.slice(hooksBefore).map((c) => c.credentials ?? null),
        [null, { token: 'good' }],
        'the hook ran without credentials, then with the late ones',
      );
      assert.deepEqual(await requestOn(session, 'whoami', 2), { user: 'alice' }, 'their principal applies from then on');

      const refused = await bareSession(protocol, running.url);
      requestOn(refused, 'whoami', 1).catch(() => undefined);
      const badAuth = requestOn(refused, AUTH_ROUTE, { token: 'bad' });
      const error = (await rejection(badAuth, 6000, 'late bad credentials')) as { code?: string };
      assert.equal(error.code, MsgTransErrorCode.AUTH_FAILED, `a clear auth error, got ${JSON.stringify(error)}`);
      await within(waitFor(() => refused.closed, 3000), 4000, 'refused: closed');
    });
  });
}

test('maxPreAuthMessages and maxPreAuthBytes are checked like every option', () => {
  for (const bad of [{ maxPreAuthBytes: -1 }, { maxPreAuthBytes: 1.5 }, { maxPreAuthMessages: -1 }, { maxPreAuthMessages: NaN }]) {
    assert.throws(
      () => new MsgTransServer({ listen: 'tcp://127.0.0.1:0', ...bad }),
      (err: unknown) => err instanceof MsgTransError && err.code === MsgTransErrorCode.INVALID_OPTION,
      JSON.stringify(bad),
    );
  }
  assert.ok(new MsgTransServer({ listen: 'tcp://127.0.0.1:0', maxPreAuthBytes: 4096, maxPreAuthMessages: 8 }));
});

// ---------------------------------------------------------------------------
// the handler-lookup cache against invented routes
// ---------------------------------------------------------------------------

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Heap in use after a full collection. */
function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** A raw TCP peer: sends bytes, counts the packets it gets back by type. */
async function rawTcpPeer(url: string): Promise<{ socket: Socket; replies: { errors: number; values: number } }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  sockets.push(socket);
  await within(new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject)), 3000, 'raw connect');
  const replies = { errors: 0, values: 0 };
  const splitter = new StreamSplitter((p) => {
    if (p.packetType !== RESPONSE) return;
    if (p.flags & ERROR) replies.errors++;
    else replies.values++;
  });
  socket.on('data', (chunk: Buffer) => splitter.push(chunk));
  socket.on('error', () => undefined);
  return { socket, replies };
}

function rawRequest(messageId: number, route: string, value: unknown): Buffer {
  return encode({ packetType: REQUEST, messageId, flags: HAS_ROUTE_TAG | CODEC, ext: `route:${route}`, payload: JSON.stringify(value) });
}

test('routes a peer invents (10,000 of 16 KiB, unknown or padded variants of a known one) are not kept by the server', async () => {
  const running = await start({ listen: 'tcp://127.0.0.1:0' });
  const { socket, replies } = await rawTcpPeer(running.url);
  const ROUTES = 10_000;
  const ROUTE_CHARS = 16_000;
  const baseline = heapAfterGc();
  const BATCH = 500;
  for (let sent = 0; sent < ROUTES; sent += BATCH) {
    const packets: Buffer[] = [];
    for (let i = sent; i < sent + BATCH; i++) {
      // even: a route nobody serves; odd: the known { cmd: 'sum', v: 1 } padded with whitespace, each one different
      const route =
        i % 2 === 0
          ? `unknown.${i}.${'x'.repeat(ROUTE_CHARS - 20)}`
          : `{"cmd":"sum",${' '.repeat(ROUTE_CHARS - 30 - (i % 1000))}"v":1}`;
      packets.push(rawRequest(i + 1, route, [1, 2]));
    }
    socket.write(Buffer.concat(packets));
    await within(waitFor(() => replies.errors + replies.values >= sent + BATCH, 10_000), 12_000, `replies to ${sent + BATCH}`);
  }
  assert.equal(replies.errors, ROUTES / 2, 'unknown routes: no handler');
  assert.equal(replies.values, ROUTES / 2, 'padded variants reach the handler');
  socket.destroy();
  await sleep(50);
  const grown = heapAfterGc() - baseline;
  // every route kept would be 16 KB: 10,000 of them 160 MB
  assert.ok(grown < 24 * 1024 * 1024, `the server kept ${(grown / 1048576).toFixed(1)} MiB of routes after the peer left`);
});

// ---------------------------------------------------------------------------
// listen() again after close()
// ---------------------------------------------------------------------------

for (const protocol of PROTOCOL_CASES) {
  test(`listen() after close() serves again over ${protocol.name}`, async () => {
    const server = new MsgTransServer(protocol.server(certs));
    server.addHandler('echo', async (data: unknown) => data);
    const listen = () =>
      within(new Promise<void>((resolve, reject) => void server.listen((err) => (err ? reject(err) : resolve()))), 5000, 'listen');
    try {
      for (const round of [1, 2, 3]) {
        await listen();
        const client = newClient({ ...protocol.client(server.addresses()[0].url, certs), reconnect: false });
        assert.deepEqual(await call(client, 'echo', { round }), { round }, `round ${round}`);
        client.close();
        await within(server.close(), 8000, 'close');
      }
    } finally {
      await server.close();
    }
  });
}

// ---------------------------------------------------------------------------
// a WebSocket endpoint on an HTTP server that listens later (hybrid app)
// ---------------------------------------------------------------------------

test('a ws endpoint attached to an HTTP server logs and reports the address it serves once that server listens', async () => {
  const httpServer = http.createServer((_req, res) => res.end('http'));
  try {
    // as in a hybrid app: the microservice starts before the HTTP server listens
    const running = await start({ listen: [{ protocol: 'ws', path: '/msgtrans', httpServer }] });
    const listening = () => running.logger.logs.filter((l) => l.startsWith('Listening on'));
    assert.deepEqual(
      listening().filter((l) => /:0\//.test(l)),
      [],
      `no made-up port is logged: ${JSON.stringify(listening())}`,
    );
    await new Promise<void>((resolve, reject) => httpServer.once('error', reject).listen(0, '127.0.0.1', resolve));
    const port = (httpServer.address() as { port: number }).port;
    const url = `ws://127.0.0.1:${port}/msgtrans`;
    await waitFor(() => listening().length > 0, 2000);
    assert.deepEqual(listening(), [`Listening on ${url}`], 'logged once, with the real port');
    assert.equal(running.server.addresses()[0].url, url);
    const client = newClient({ url: running.server.addresses()[0].url, reconnect: false });
    assert.deepEqual(await call(client, 'echo', { hybrid: true }), { hybrid: true });
    client.close();
  } finally {
    httpServer.closeAllConnections();
    await new Promise((resolve) => httpServer.close(resolve));
  }
});

// ---------------------------------------------------------------------------
// plain errors from lib/server
// ---------------------------------------------------------------------------

test('sessions.sendTo with an unknown session id fails with a MsgTransError and a stable code', async () => {
  const sessions = new MsgTransSessions();
  const error = await rejection(lastValueFrom(sessions.sendTo('no-such-session', 'x', {})), 2000, 'sendTo');
  assert.ok(error instanceof MsgTransError, `a MsgTransError, got ${String(error)}`);
  assert.equal(error.code, MsgTransErrorCode.UNKNOWN_SESSION);
  assert.match(error.message, /no-such-session/);
});
