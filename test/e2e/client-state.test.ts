/**
 * What the client's connection state machine fixes, on real sockets over
 * loopback (its transitions: client-state-machine.test.ts): authentication cut by a dropped connection
 * (issue 9 item 8), the wait queue (15), close() while authenticating (16),
 * a call's timeout bounding its wait for a connection and failing fast while
 * refused, a first connection that fails and is retried for push subscribers,
 * and error reasons.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Logger } from '@nestjs/common';
import { firstValueFrom, lastValueFrom, type Subscription } from 'rxjs';
import {
  MsgTransClient,
  MsgTransConnectionError,
  MsgTransConnectionState,
  MsgTransError,
  MsgTransErrorCode,
  MsgTransRecord,
  type MsgTransClientOptions,
  type MsgTransServerOptions,
  type MsgTransSession,
} from '../../lib/index.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { PROTOCOL_CASES, testCertificates, type ProtocolCase } from '../support/protocols.js';
import { freePort } from '../support/restartable-server.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { startMsgTrans, waitFor, type RunningApp } from '../support/test-app.js';
import { rejection, sleep, within } from '../support/async.js';

const { CONNECTING, CONNECTED, RECONNECTING, CLOSED } = MsgTransConnectionState;

function assertCode(err: unknown, code: string, what: string): void {
  assert.ok(err instanceof MsgTransError, `${what}: expected a MsgTransError, got ${String(err)}`);
  assert.equal((err as MsgTransError).code, code, `${what}: ${(err as Error).message}`);
}

// ---------------------------------------------------------------------------
// on real sockets
// ---------------------------------------------------------------------------

let certs: DevCertificates;
const clients: MsgTransClient[] = [];
const apps: RunningApp[] = [];
const cleanups: (() => unknown)[] = [];

before(async () => {
  certs = await testCertificates();
  // clients log every lost connection through Nest's logger; expected here
  Logger.overrideLogger(false);
});

after(async () => {
  for (const c of clients) c.close();
  for (const cleanup of cleanups) await cleanup();
  for (const app of apps) await app.close().catch(() => undefined);
});

function newClient(options: MsgTransClientOptions): MsgTransClient {
  const client = new MsgTransClient(options);
  clients.push(client);
  return client;
}

const TCP_BASED = PROTOCOL_CASES.filter((p) => p.name !== 'quic');
const byName = (name: string) => PROTOCOL_CASES.find((p) => p.name === name)!;

/** The protocol's server on a given port (0: any). */
async function serve(protocol: ProtocolCase, port = 0, extra: Partial<MsgTransServerOptions> = {}) {
  const options = protocol.server(certs);
  const running = await startMsgTrans({ ...options, listen: options.listen.replace(':0', `:${port}`), ...extra });
  apps.push(running);
  return running;
}

/** The protocol's URL at another port (a proxy, a port nobody listens on). */
function urlAt(protocol: ProtocolCase, port: number): string {
  return protocol.server(certs).listen.replace(':0', `:${port}`);
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

function trackStatus(client: MsgTransClient): { seen: string[]; sub: Subscription } {
  const seen: string[] = [];
  return { seen, sub: client.status.subscribe((s) => seen.push(s)) };
}

/** A gate the authenticate hook waits on. */
function gate() {
  let open!: (accept: boolean) => void;
  const opened = new Promise<boolean>((resolve) => (open = resolve));
  return { opened, open };
}

for (const protocol of TCP_BASED) {
  describe(`authentication cut by a dropped connection over ${protocol.name} (issue 9 item 8)`, () => {
    test('is a connection failure: retried with backoff until connected, never AUTH_FAILED', async () => {
      let held: ReturnType<typeof gate> | null = null;
      let hookCalls = 0;
      const running = await serve(protocol, 0, {
        authenticate: async (request) => {
          hookCalls++;
          if (held) await held.opened;
          return (request.credentials as { token?: string })?.token === 'good' ? { user: 'u' } : false;
        },
      });
      const proxy = new TcpProxy(portOf(running.url));
      await proxy.start();
      cleanups.push(() => proxy.close());
      const url = urlAt(protocol, proxy.port);
      const tls = protocol.client(url, certs).tls;

      // a first connect() whose authentication is cut fails as a connection failure
      held = gate();
      const once = newClient({ url, tls, credentials: { token: 'good' }, reconnect: false });
      const onceConnect = once.connect();
      await waitFor(() => hookCalls === 1, 5000);
      proxy.cutAll();
      const cut = await rejection(onceConnect, 5000, 'connect() cut while authenticating');
      assertCode(cut, MsgTransErrorCode.CONNECT_FAILED, 'a dropped connection while authenticating');
      held.open(false);
      held = null;

      // a reconnection whose authentication is cut keeps reconnecting
      const client = newClient({ url, tls, credentials: { token: 'good' }, reconnect: { initialDelay: 20, maxDelay: 200 } });
      const errors: Error[] = [];
      client.on('error', (err) => errors.push(err));
      const status = trackStatus(client);
      cleanups.push(() => status.sub.unsubscribe());
      await within(client.connect(), 5000, 'first connect');
      const callsBefore = hookCalls;
      held = gate();
      proxy.cutAll();
      await waitFor(() => hookCalls === callsBefore + 1, 5000);
      const seenBefore = status.seen.length;
      proxy.cutAll();
      await sleep(100);
      const gated = held;
      held = null;
      gated.open(false);
      await waitFor(() => status.seen.slice(seenBefore).includes('connected'), 10_000);
      assert.equal(client.state, CONNECTED);
      assert.deepEqual(await within(lastValueFrom(client.send('echo', 'back')), 5000, 'echo'), 'back');
      assert.ok(
        !errors.some((e) => (e as MsgTransError).code === MsgTransErrorCode.AUTH_FAILED),
        `no AUTH_FAILED: ${errors.map((e) => e.message).join('; ')}`,
      );
      assert.equal(status.seen.at(-1), 'connected');
    });
  });
}

describe('authentication outcomes other than an answer (issue 9 item 8)', () => {
  test('an authentication reply that times out is a connection failure, retried until accepted', async () => {
    let hookCalls = 0;
    const running = await serve(byName('tcp'), 0, {
      authenticate: async () => {
        if (++hookCalls === 1) await sleep(1500);
        return { user: 'u' };
      },
    });
    const client = newClient({ url: running.url, credentials: { token: 't' }, requestTimeout: 300, keepConnected: true, reconnect: { initialDelay: 20, maxDelay: 200 } });
    const err = await rejection(client.connect(), 5000, 'connect() whose authentication times out');
    assertCode(err, MsgTransErrorCode.CONNECT_FAILED, 'authentication timed out');
    assert.match((err as Error).message, /presenting credentials: No reply within 300 ms/);
    await waitFor(() => client.state === CONNECTED, 10_000);
    assert.equal(await within(lastValueFrom(client.send('echo', 'in')), 5000, 'echo'), 'in');
  });

  test('credentials that cannot be encoded fail with AUTH_FAILED and are not retried', async () => {
    const running = await serve(byName('tcp'));
    const client = newClient({ url: running.url, credentials: { n: 1n }, keepConnected: true, reconnect: { initialDelay: 20, maxDelay: 200 } });
    const err = await rejection(client.connect(), 5000, 'connect() with BigInt credentials');
    assertCode(err, MsgTransErrorCode.AUTH_FAILED, 'unencodable credentials');
    assert.match((err as Error).message, /Cannot present the credentials/);
    await sleep(200);
    assert.equal(client.state, MsgTransConnectionState.IDLE, 'not retried');
  });
});

for (const protocol of PROTOCOL_CASES) {
  describe(`close() while authenticating over ${protocol.name} (issue 9 item 16)`, () => {
    test('settles connect() with CLIENT_CLOSED at once and closes the connection', async () => {
      const held = gate();
      let hookCalls = 0;
      const running = await serve(protocol, 0, {
        authenticate: async () => {
          hookCalls++;
          return (await held.opened) ? { user: 'late' } : false;
        },
      });
      const client = newClient({ ...protocol.client(running.url, certs), credentials: { token: 't' } });
      const connecting = client.connect();
      await waitFor(() => hookCalls === 1, 5000);
      client.close();
      assertCode(await rejection(connecting, 2000, 'connect() closed while authenticating'), MsgTransErrorCode.CLIENT_CLOSED, 'connect()');
      assert.equal(client.state, CLOSED);
      // accepting now must not leave a session behind: the connection is gone
      held.open(true);
      await sleep(300);
      assert.equal(running.server.sessions.size, 0, 'no session for a client closed while authenticating');
    });
  });
}

for (const protocol of [byName('tcp'), byName('ws')]) {
  describe(`calls while the service is down over ${protocol.name}`, () => {
    test('a call fails fast with the cause while connections are refused, and works again once the service is back', async () => {
      const running = await serve(protocol);
      const port = portOf(running.url);
      const client = newClient({ ...protocol.client(running.url, certs), requestTimeout: 1000, reconnect: { initialDelay: 20, maxDelay: 200 } });
      const status = trackStatus(client);
      cleanups.push(() => status.sub.unsubscribe());
      assert.equal(await within(lastValueFrom(client.send('echo', 'up')), 5000, 'echo'), 'up');
      await running.close();
      await waitFor(() => status.seen.at(-1) === 'reconnecting', 5000);
      const startedAt = Date.now();
      const err = await rejection(lastValueFrom(client.send('echo', 'down')), 5000, 'call while down');
      assertCode(err, MsgTransErrorCode.CONNECT_FAILED, 'call while down');
      assert.ok(Date.now() - startedAt < 3000, `failed after ${Date.now() - startedAt} ms`);
      assert.match((err as Error).message, /ECONNREFUSED/);
      assert.ok((err as Error).cause, 'the cause is attached');
      // the service comes back on the same port: calls work again
      await serve(protocol, port);
      await waitFor(() => status.seen.at(-1) === 'connected', 10_000);
      assert.equal(await within(lastValueFrom(client.send('echo', 'again')), 5000, 'echo again'), 'again');
    });

    test("whileDisconnected 'wait': the call's own timeout bounds the wait, not connectTimeout", async () => {
      const running = await serve(protocol);
      const client = newClient({
        ...protocol.client(running.url, certs),
        requestTimeout: 1000,
        connectTimeout: 10_000,
        whileDisconnected: 'wait',
        reconnect: { initialDelay: 20, maxDelay: 200 },
      });
      const status = trackStatus(client);
      cleanups.push(() => status.sub.unsubscribe());
      await within(client.connect(), 5000, 'connect');
      await running.close();
      await waitFor(() => status.seen.at(-1) === 'reconnecting', 5000);
      const startedAt = Date.now();
      const err = await rejection(lastValueFrom(client.send('echo', 'down')), 8000, 'waiting call');
      const took = Date.now() - startedAt;
      assertCode(err, MsgTransErrorCode.CONNECT_FAILED, 'waiting call');
      assert.ok(took >= 800 && took < 5000, `failed after ${took} ms, expected about the 1000 ms call timeout`);
      assert.match((err as Error).message, /1000 ms/);
    });

    test('calls that timed out waiting for a connection free their place in the queue (issue 9 item 15)', async () => {
      const running = await serve(protocol);
      const client = newClient({
        ...protocol.client(running.url, certs),
        requestTimeout: 300,
        connectTimeout: 300,
        whileDisconnected: 'wait',
        maxQueuedCalls: 1,
        reconnect: { initialDelay: 20, maxDelay: 100 },
      });
      const status = trackStatus(client);
      cleanups.push(() => status.sub.unsubscribe());
      await within(client.connect(), 5000, 'connect');
      await running.close();
      await waitFor(() => status.seen.at(-1) === 'reconnecting', 5000);
      for (let i = 0; i < 3; i++) {
        const err = await rejection(lastValueFrom(client.send('echo', i)), 5000, `waiting call ${i}`);
        assert.notEqual((err as MsgTransError).code, MsgTransErrorCode.QUEUE_FULL, `call ${i}: ${(err as Error).message}`);
        assertCode(err, MsgTransErrorCode.CONNECT_FAILED, `call ${i}`);
      }
    });
  });
}

describe("a call's timeout bounds its wait for a connection that does not answer", () => {
  // accepts TCP connections and never says a word: TLS handshakes and WebSocket upgrades hang
  let silent: Server;
  const held: Socket[] = [];
  before(async () => {
    silent = createServer((socket) => held.push(socket.on('error', () => undefined)));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => {
      for (const s of held) s.destroy();
      return new Promise<void>((resolve) => silent.close(() => resolve()));
    });
  });

  for (const scheme of ['tls', 'ws']) {
    test(`${scheme}: requestTimeout and a record's timeout, not connectTimeout`, async () => {
      const port = (silent.address() as { port: number }).port;
      const url = scheme === 'ws' ? `ws://127.0.0.1:${port}/msgtrans` : `tls://127.0.0.1:${port}`;
      const client = newClient({ url, tls: { ca: certs.ca }, requestTimeout: 500, connectTimeout: 20_000 });
      let startedAt = Date.now();
      const err = await rejection(lastValueFrom(client.send('echo', 1)), 5000, 'call to a silent peer');
      assertCode(err, MsgTransErrorCode.CONNECT_FAILED, 'call to a silent peer');
      assert.ok(Date.now() - startedAt < 4000);
      const own = newClient({ url, tls: { ca: certs.ca }, connectTimeout: 20_000 });
      startedAt = Date.now();
      const ownErr = await rejection(lastValueFrom(own.send('echo', new MsgTransRecord(1, { timeout: 400 }))), 5000, 'record timeout');
      assertCode(ownErr, MsgTransErrorCode.CONNECT_FAILED, 'record timeout');
      assert.ok(Date.now() - startedAt < 4000);
      assert.match((ownErr as Error).message, /400 ms/);
    });
  }
});

for (const protocol of PROTOCOL_CASES) {
  describe(`a first connection that fails is retried over ${protocol.name}`, () => {
    test('a client subscribed to incoming() before the server exists receives a push once it starts', async () => {
      const port = await freePort(protocol.name === 'quic' ? 'udp' : 'tcp');
      const url = urlAt(protocol, port);
      const client = newClient({
        ...protocol.client(url, certs),
        connectTimeout: 1000,
        reconnect: { initialDelay: 50, maxDelay: 300 },
      });
      const status = trackStatus(client);
      cleanups.push(() => status.sub.unsubscribe());
      const received = firstValueFrom(client.incoming<{ n: number }>('news'));
      received.catch(() => undefined);
      await waitFor(() => status.seen.includes('reconnecting'), 8000);
      const running = await serve(protocol, port);
      await waitFor(() => running.server.sessions.size === 1, 15_000);
      running.server.sessions.broadcast('news', { n: 1 });
      assert.deepEqual(await within(received, 5000, 'push'), { n: 1 });
      assert.equal(status.seen.at(-1), 'connected');
    });

    if (protocol.name === 'tcp' || protocol.name === 'ws') {
      test('keepConnected: connect() reports the failure, and the client connects once the server starts', async () => {
        const port = await freePort('tcp');
        const url = urlAt(protocol, port);
        const client = newClient({ ...protocol.client(url, certs), keepConnected: true, reconnect: { initialDelay: 50, maxDelay: 300 } });
        assertCode(await rejection(client.connect(), 5000, 'connect() before the server'), MsgTransErrorCode.CONNECT_FAILED, 'connect()');
        await waitFor(() => client.state === RECONNECTING || client.state === CONNECTING, 2000);
        await serve(protocol, port);
        await waitFor(() => client.state === CONNECTED, 10_000);
        assert.equal(await within(lastValueFrom(client.send('echo', 'hi')), 5000, 'echo'), 'hi');
      });
    }
  });
}

describe('error reasons name their cause', () => {
  for (const scheme of ['tcp', 'ws']) {
    test(`${scheme}: a refused connection`, async () => {
      const port = await freePort('tcp');
      const url = scheme === 'ws' ? `ws://127.0.0.1:${port}/msgtrans` : `tcp://127.0.0.1:${port}`;
      const client = newClient({ url, reconnect: false });
      for (const attempt of [lastValueFrom(client.send('echo', 1)), client.connect()]) {
        const err = await rejection(attempt, 5000, 'refused');
        assertCode(err, MsgTransErrorCode.CONNECT_FAILED, 'refused');
        const message = (err as Error).message;
        assert.match(message, new RegExp(`^Cannot connect to ${scheme}://127\\.0\\.0\\.1:${port}.*: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}$`));
        assert.doesNotMatch(message, /: $|: :/);
        assert.equal(((err as Error).cause as { code?: string }).code, 'ECONNREFUSED');
      }
    });
  }
});
