/**
 * Who may talk to handlers: mutual TLS and certificate verification on every
 * TLS protocol (tls://, wss://, quic://), and the server's `authenticate`
 * hook with client credentials, addresses, WebSocket upgrade headers and
 * client certificates. Real sockets over loopback.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { WebSocket } from 'ws';
import {
  AUTH_ROUTE,
  MsgTransClient,
  MsgTransConnectionError,
  MsgTransErrorCode,
  MsgTransServer,
  MsgTransSession,
  parseEndpoint,
  type MsgTransAuthRequest,
  type MsgTransClientOptions,
  type MsgTransContext,
  type MsgTransError,
  type MsgTransServerOptions,
} from '../../lib/index.js';
import { protocolFor, protocolTable, resolveSessionOptions } from '../../lib/common/resolve-options.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { testCertificates } from '../support/protocols.js';
import { waitFor } from '../support/test-app.js';
import { rejection, sleep, within } from '../support/async.js';

// ---------------------------------------------------------------------------
// handlers that say who is calling, and count their calls
// ---------------------------------------------------------------------------

/** Order in which handlers ran and sessions were announced, for every server. */
const journal: string[] = [];
const calls = { whoami: 0, note: 0 };

@Controller()
class AuthController {
  @MessagePattern('whoami')
  whoami(@Payload() data: unknown, @Ctx() ctx: MsgTransContext) {
    calls.whoami++;
    journal.push(`whoami:${ctx.getSessionId()}`);
    return {
      data,
      protocol: ctx.getProtocol(),
      principal: ctx.getPrincipal() ?? null,
      subject: ctx.getPeerCertificate()?.subject ?? null,
    };
  }

  @EventPattern('note')
  note(@Payload() _data: unknown) {
    calls.note++;
  }
}

@Module({ controllers: [AuthController] })
class AuthModule {}

interface Running {
  app: INestMicroservice;
  server: MsgTransServer;
  url: string;
  errors: Error[];
  connects: number;
}

const apps: Running[] = [];
const clients: MsgTransClient[] = [];
const cleanups: (() => void)[] = [];

after(async () => {
  for (const c of clients) c.close();
  for (const cleanup of cleanups) cleanup();
  for (const r of apps) await r.app.close();
});

async function start(options: MsgTransServerOptions): Promise<Running> {
  const server = new MsgTransServer(options);
  const running: Running = { app: undefined as unknown as INestMicroservice, server, url: '', errors: [], connects: 0 };
  server.on('error', (error) => running.errors.push(error));
  server.on('connect', (session) => {
    running.connects++;
    journal.push(`connect:${session.id}`);
  });
  running.app = await NestFactory.createMicroservice(AuthModule, { strategy: server, logger: false });
  await running.app.listen();
  running.url = server.addresses()[0].url;
  apps.push(running);
  return running;
}

function newClient(options: MsgTransClientOptions): MsgTransClient {
  const client = new MsgTransClient(options);
  clients.push(client);
  return client;
}



const whoami = (client: MsgTransClient, data: unknown = {}) => within(lastValueFrom(client.send('whoami', data)), 5000, 'whoami');

function assertConnectionError(err: unknown, codes: string[], what: string): void {
  assert.ok(err instanceof MsgTransConnectionError, `${what}: expected a MsgTransConnectionError, got ${String(err)}`);
  assert.ok(codes.includes((err as MsgTransError).code), `${what}: code ${(err as MsgTransError).code} not in ${codes.join(', ')}`);
}

let certs: DevCertificates;
before(async () => {
  certs = await testCertificates();
});

// ---------------------------------------------------------------------------
// mutual TLS and certificate verification, on every TLS protocol
// ---------------------------------------------------------------------------

const TLS_URLS = {
  tls: 'tls://127.0.0.1:0',
  wss: 'wss://127.0.0.1:0/msgtrans',
  quic: 'quic://127.0.0.1:0',
} as const;

/**
 * What a client without an acceptable certificate sees when the server
 * requires one. tls:// and quic:// (TLS 1.3): the client's side of the
 * handshake completes before the server checks the certificate, so the
 * connection is made and then dropped, failing the request sent on it.
 * wss://: the server refuses during the HTTPS handshake, before the upgrade.
 */
const NO_CERT_CODES: Record<keyof typeof TLS_URLS, string[]> = {
  tls: [MsgTransErrorCode.CONNECTION_CLOSED],
  wss: [MsgTransErrorCode.CONNECT_FAILED],
  quic: [MsgTransErrorCode.CONNECTION_CLOSED],
};

for (const name of Object.keys(TLS_URLS) as (keyof typeof TLS_URLS)[]) {
  describe(`mutual TLS over ${name}`, () => {
    let running: Running;
    const hookCalls: MsgTransAuthRequest[] = [];

    before(async () => {
      running = await start({
        listen: TLS_URLS[name],
        tls: { key: certs.serverKey, cert: certs.serverCert, ca: certs.ca, requestCert: true },
        authenticate: (request) => {
          hookCalls.push(request);
          return request.peerCertificate ? { subject: request.peerCertificate.subject } : false;
        },
      });
    });

    test('a client with a certificate signed by the CA is served; handlers and the hook see its subject', async () => {
      const client = newClient({ url: running.url, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } });
      const reply = await whoami(client, 'mtls');
      assert.equal(reply.protocol, name);
      assert.ok(String(reply.subject).includes('CN=msgtrans-client'), `ctx.getPeerCertificate().subject: ${reply.subject}`);
      assert.ok(String(reply.principal?.subject).includes('CN=msgtrans-client'), `principal: ${JSON.stringify(reply.principal)}`);
      assert.ok(hookCalls.length >= 1);
      assert.ok(hookCalls.at(-1)!.peerCertificate?.subject.includes('CN=msgtrans-client'));
      assert.equal(hookCalls.at(-1)!.protocol, name);
    });

    test('a client without a certificate is refused with a typed connection error', async () => {
      const before = calls.whoami;
      const client = newClient({ url: running.url, tls: { ca: certs.ca }, reconnect: false, connectTimeout: 3000 });
      const err = await rejection(lastValueFrom(client.send('whoami', 'no cert')), 6000, 'client without certificate');
      assertConnectionError(err, NO_CERT_CODES[name], name);
      assert.equal(calls.whoami, before, 'no handler ran');
    });

    test('a client with a certificate from another CA is refused', async () => {
      const { createDevCertificates } = await import('../../sample/dev-certs.js');
      const stranger = await createDevCertificates();
      const client = newClient({
        url: running.url,
        tls: { ca: certs.ca, cert: stranger.clientCert, key: stranger.clientKey },
        reconnect: false,
        connectTimeout: 3000,
      });
      const err = await rejection(lastValueFrom(client.send('whoami', 'stranger')), 6000, 'client with a foreign certificate');
      assertConnectionError(err, NO_CERT_CODES[name], name);
    });
  });

  describe(`certificate verification over ${name}`, () => {
    let running: Running;

    before(async () => {
      running = await start({ listen: TLS_URLS[name], tls: { key: certs.serverKey, cert: certs.serverCert } });
    });

    test('is on by default: a client that does not trust the CA cannot connect', async () => {
      const client = newClient({ url: running.url, reconnect: false, connectTimeout: 3000 });
      const err = await rejection(client.connect(), 6000, 'connect without ca');
      assertConnectionError(err, [MsgTransErrorCode.CONNECT_FAILED], name);
      const viaSend = await rejection(lastValueFrom(client.send('whoami', {})), 6000, 'send without ca');
      assertConnectionError(viaSend, [MsgTransErrorCode.CONNECT_FAILED], name);
    });

    test('a client that trusts the CA connects', async () => {
      const client = newClient({ url: running.url, tls: { ca: certs.ca } });
      assert.equal((await whoami(client)).protocol, name);
    });

    test('rejectUnauthorized: false connects without the CA', async () => {
      const client = newClient({ url: running.url, tls: { rejectUnauthorized: false } });
      const reply = await whoami(client, 'insecure');
      assert.equal(reply.protocol, name);
      assert.equal(reply.subject, null, 'no client certificate was requested');
    });
  });
}

// ---------------------------------------------------------------------------
// the authenticate hook with credentials, on tcp, ws and quic
// ---------------------------------------------------------------------------

const AUTH_CASES = [
  { name: 'tcp', listen: 'tcp://127.0.0.1:0', secure: false },
  { name: 'ws', listen: 'ws://127.0.0.1:0/msgtrans', secure: false },
  { name: 'quic', listen: 'quic://127.0.0.1:0', secure: true },
] as const;

/** A gate the hook waits on, opened by the test. */
function gate(): { opened: Promise<boolean>; open(accept: boolean): void } {
  let open!: (accept: boolean) => void;
  const opened = new Promise<boolean>((resolve) => (open = resolve));
  return { opened, open };
}

for (const protocol of AUTH_CASES) {
  describe(`authenticate hook over ${protocol.name}`, () => {
    let running: Running;
    const hookCalls: MsgTransAuthRequest[] = [];
    let gated: ReturnType<typeof gate> | null = null;
    const tlsClient = () => (protocol.secure ? { tls: { ca: certs.ca } } : {});

    before(async () => {
      running = await start({
        listen: protocol.listen,
        ...(protocol.secure ? { tls: { key: certs.serverKey, cert: certs.serverCert } } : {}),
        authenticate: async (request) => {
          hookCalls.push(request);
          const credentials = request.credentials as { token?: string } | undefined;
          if (credentials?.token === 'good') return { user: 'alice' };
          if (credentials?.token === 'slow-good') return sleep(200).then(() => ({ user: 'slow' }));
          if (credentials?.token === 'gated') return (await gated!.opened) ? { user: 'gated' } : false;
          if (credentials?.token === 'throws') throw new Error('token revoked');
          if (credentials === undefined && request.headers?.authorization === 'Bearer x') return { bearer: 'x' };
          if (credentials === undefined && request.remoteAddress === '127.0.0.1') return { anonymousFrom: request.remoteAddress };
          return false;
        },
      });
    });

    test('good credentials are accepted and the principal reaches ctx.getPrincipal()', async () => {
      const hookBefore = hookCalls.length;
      const client = newClient({ url: running.url, ...tlsClient(), credentials: { token: 'good' } });
      await within(client.connect(), 5000, 'connect');
      const reply = await whoami(client, 1);
      assert.deepEqual(reply.principal, { user: 'alice' });
      assert.equal(hookCalls.length, hookBefore + 1, 'the hook ran once for the connection');
      const seen = hookCalls[hookBefore];
      assert.deepEqual(seen.credentials, { token: 'good' });
      assert.equal(seen.protocol, protocol.name);
      assert.equal(seen.remoteAddress, '127.0.0.1');
      assert.equal(typeof seen.remotePort, 'number');
      assert.equal(seen.peerCertificate, undefined, 'no client certificate');
      if (protocol.name === 'ws') assert.equal(typeof seen.headers?.host, 'string');
      else assert.equal(seen.headers, undefined);
      // the principal stays with the session
      assert.deepEqual((await whoami(client, 2)).principal, { user: 'alice' });
    });

    test('bad credentials: connect() and send() fail with ERR_MSGTRANS_AUTH_FAILED and no handler runs', async () => {
      const before = { ...calls };
      const connectsBefore = running.connects;
      const sessionsBefore = running.server.sessions.size;
      const violationsBefore = running.server.stats().violations[MsgTransErrorCode.AUTH_FAILED] ?? 0;
      const client = newClient({ url: running.url, ...tlsClient(), credentials: { token: 'bad' } });
      const onConnect = await rejection(client.connect(), 5000, 'connect with a bad token');
      assertConnectionError(onConnect, [MsgTransErrorCode.AUTH_FAILED], 'connect()');
      const onSend = await rejection(lastValueFrom(client.send('whoami', 'sneaky')), 5000, 'send with a bad token');
      assertConnectionError(onSend, [MsgTransErrorCode.AUTH_FAILED], 'send()');
      client.emit('note', 'sneaky').subscribe({ error: () => undefined });

      const thrower = newClient({ url: running.url, ...tlsClient(), credentials: { token: 'throws' } });
      const thrown = await rejection(thrower.connect(), 5000, 'connect with a revoked token');
      assertConnectionError(thrown, [MsgTransErrorCode.AUTH_FAILED], 'connect() refused by a throwing hook');

      await sleep(100);
      assert.deepEqual(calls, before, 'no handler ran');
      assert.equal(running.connects, connectsBefore, 'no refused connection was announced');
      assert.equal(running.server.sessions.size, sessionsBefore);
      assert.ok((running.server.stats().violations[MsgTransErrorCode.AUTH_FAILED] ?? 0) >= violationsBefore + 3);
      assert.ok(running.errors.some((e) => (e as MsgTransError).code === MsgTransErrorCode.AUTH_FAILED));
    });

    test('a client without credentials is decided on its first packet, here by its address', async () => {
      const hookBefore = hookCalls.length;
      const connectsBefore = running.connects;
      const sessionsBefore = running.server.sessions.size;
      const client = newClient({ url: running.url, ...tlsClient() });
      await within(client.connect(), 5000, 'connect');
      // connected, but silent: not decided, not a session yet
      await sleep(150);
      assert.equal(hookCalls.length, hookBefore, 'the hook waits for a first packet');
      assert.equal(running.connects, connectsBefore);
      assert.equal(running.server.sessions.size, sessionsBefore);

      const reply = await whoami(client, 'first');
      assert.deepEqual(reply.principal, { anonymousFrom: '127.0.0.1' });
      assert.equal(hookCalls.length, hookBefore + 1);
      assert.equal(hookCalls[hookBefore].credentials, undefined);
      assert.equal(running.connects, connectsBefore + 1);
      assert.equal(running.server.sessions.size, sessionsBefore + 1);
    });

    test('packets sent before acceptance never reach handlers; the session appears only once accepted', async () => {
      const limits = resolveSessionOptions({});
      const endpoint = parseEndpoint(running.url);
      const transport = protocolFor(protocolTable(), endpoint.protocol);
      /** A bare session over a fresh connection: it sends whatever we ask, at once. */
      const bareSession = async () => {
        const connection = await transport.connect(endpoint, {
          limits: limits.limits,
          tls: protocol.secure ? { ca: certs.ca } : undefined,
          connectTimeout: 5000,
          heartbeatInterval: 0,
        });
        const session = new MsgTransSession(connection, limits, {
          onRequest: (s, m) => s.replyError(m, 'no'),
          onEvent: () => undefined,
          onClose: () => undefined,
        });
        cleanups.push(() => session.close());
        return session;
      };
      const gatedCalls = () => hookCalls.filter((c) => (c.credentials as { token?: string } | undefined)?.token === 'gated').length;
      const requestOn = (session: MsgTransSession, route: string, data: unknown) =>
        new Promise<unknown>((resolve, reject) => {
          let last: unknown;
          session.request(0, route, data, undefined, {
            next: (value) => (last = value),
            error: reject,
            complete: () => resolve(last),
          });
        });

      for (const accept of [false, true]) {
        gated = gate();
        const before = { ...calls };
        const connectsBefore = running.connects;
        const sessionsBefore = running.server.sessions.size;
        const journalBefore = journal.length;
        const gatedBefore = gatedCalls();
        const session = await bareSession();
        const auth = requestOn(session, AUTH_ROUTE, { token: 'gated' });
        const early = requestOn(session, 'whoami', 'early');
        auth.catch(() => undefined);
        early.catch(() => undefined);
        session.emit(0, 'note', 'early', undefined);
        await waitFor(() => gatedCalls() === gatedBefore + 1, 3000);

        await sleep(150);
        assert.deepEqual(calls, before, 'nothing reached a handler while the hook was deciding');
        assert.equal(running.connects, connectsBefore, 'no connect event before acceptance');
        assert.equal(running.server.sessions.size, sessionsBefore, 'not in server.sessions before acceptance');

        gated.open(accept);
        if (!accept) {
          const refusedAuth = await rejection(auth, 3000, 'refused auth request');
          assert.equal((refusedAuth as { code?: string }).code, MsgTransErrorCode.AUTH_FAILED);
          const refusedEarly = await rejection(early, 3000, 'request queued before refusal');
          assert.equal((refusedEarly as { code?: string }).code, MsgTransErrorCode.AUTH_FAILED);
          await waitFor(() => session.closed, 3000);
          await sleep(50);
          assert.deepEqual(calls, before, 'a refused connection never reaches a handler');
          assert.equal(running.connects, connectsBefore);
          assert.equal(running.server.sessions.size, sessionsBefore);
        } else {
          assert.deepEqual(await within(auth, 3000, 'accepted auth request'), { authenticated: true });
          const reply = (await within(early, 3000, 'request queued before acceptance')) as { principal: unknown };
          assert.deepEqual(reply.principal, { user: 'gated' });
          await waitFor(() => calls.note === before.note + 1, 2000);
          assert.equal(calls.whoami, before.whoami + 1);
          assert.equal(running.connects, connectsBefore + 1);
          assert.equal(running.server.sessions.size, sessionsBefore + 1);
          const entries = journal.slice(journalBefore);
          const connectAt = entries.findIndex((e) => e.startsWith('connect:'));
          const handledAt = entries.findIndex((e) => e.startsWith('whoami:'));
          assert.ok(connectAt >= 0 && handledAt > connectAt, `connect is announced before any handler runs: ${entries.join(', ')}`);
          session.close();
        }
      }
    });

    // Calls made while a reconnection presents its credentials must wait for it, not open
    // a second connection.
    test('a reconnection that presents credentials makes one connection, even with calls made meanwhile', async () => {
      const client = newClient({
        url: running.url,
        ...tlsClient(),
        credentials: { token: 'slow-good' },
        reconnect: { initialDelay: 20, maxDelay: 100 },
      });
      const slowCalls = () => hookCalls.filter((c) => (c.credentials as { token?: string } | undefined)?.token === 'slow-good').length;
      const sessionsOfClient = () => running.server.sessions.all().filter((s) => (s.principal as { user?: string })?.user === 'slow');
      await within(client.connect(), 5000, 'connect');
      await waitFor(() => sessionsOfClient().length === 1, 2000);
      const callsBefore = slowCalls();
      sessionsOfClient()[0].close();
      // the client reconnects by itself; while the server checks its credentials, calls come in
      await waitFor(() => slowCalls() === callsBefore + 1, 3000);
      const replies = await within(Promise.all([1, 2, 3].map((i) => lastValueFrom(client.send('whoami', i)))), 5000, 'calls');
      assert.deepEqual(replies.map((r) => r.principal), [{ user: 'slow' }, { user: 'slow' }, { user: 'slow' }]);
      await sleep(400);
      assert.equal(slowCalls(), callsBefore + 1, 'one reconnection, authenticated once');
      assert.equal(sessionsOfClient().length, 1, 'one session for the client');
      client.close();
      await waitFor(() => sessionsOfClient().length === 0, 3000).catch(() => undefined);
      assert.equal(sessionsOfClient().length, 0, 'client.close() leaves no session behind');
    });

    if (protocol.name === 'ws') {
      test('the hook sees the WebSocket upgrade headers (raw ws peer with Authorization)', async () => {
        const hookBefore = hookCalls.length;
        const ws = new WebSocket(running.url, { headers: { authorization: 'Bearer x' }, perMessageDeflate: false });
        cleanups.push(() => ws.terminate());
        await within(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), 3000, 'ws open');
        const reply = new Promise<Buffer>((resolve) => ws.once('message', (data) => resolve(Buffer.from(data as Buffer))));
        ws.send(jsonRequest(77, 'whoami', 'raw'), { binary: true });
        const packet = await within(reply, 3000, 'raw reply');
        assert.equal(packet[2], 2, 'a response');
        assert.equal(packet.readUInt32BE(4), 77, 'to our message id');
        const extLen = packet.readUInt16BE(8);
        const body = JSON.parse(packet.subarray(16 + extLen).toString('utf8'));
        assert.deepEqual(body.principal, { bearer: 'x' });
        assert.equal(body.data, 'raw');
        assert.equal(hookCalls.length, hookBefore + 1);
        assert.equal(hookCalls[hookBefore].headers?.authorization, 'Bearer x');
        assert.equal(hookCalls[hookBefore].credentials, undefined);
        ws.terminate();
      });
    }
  });
}

/** A JSON request to a route, built by hand (PROTOCOL.md). */
function jsonRequest(messageId: number, route: string, value: unknown): Buffer {
  const ext = Buffer.from(`route:${route}`, 'utf8');
  const payload = Buffer.from(JSON.stringify(value), 'utf8');
  const header = Buffer.alloc(16);
  header[0] = 1;
  header[2] = 1;
  header.writeUInt32BE(messageId, 4);
  header.writeUInt16BE(ext.length, 8);
  header.writeUInt32BE(payload.length, 10);
  header.writeUInt16BE(0x0004 | 0x0020, 14);
  return Buffer.concat([header, ext, payload]);
}

// ---------------------------------------------------------------------------
// credentials against a server without a hook
// ---------------------------------------------------------------------------

// Without `authenticate` everyone is accepted, including a client that presents credentials.
test('a client with credentials is served by a server that has no authenticate hook', async () => {
  const running = await start({ listen: 'tcp://127.0.0.1:0' });
  const client = newClient({ url: running.url, credentials: { token: 'anything' }, reconnect: false });
  const reply = await whoami(client, 'open door');
  assert.equal(reply.data, 'open door');
  assert.equal(reply.principal, null);
});
