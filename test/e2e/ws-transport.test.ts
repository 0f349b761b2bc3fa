/**
 * The WebSocket transport (ws:// and wss://) seen from outside: raw `ws`
 * sockets sending msgtrans v1 packets built by hand from PROTOCOL.md (one
 * packet per binary message, no length prefix), plus the project's own
 * MsgTransClient for the paths, shared HTTP servers, heartbeats and TLS.
 * Nothing from lib/codec or lib/session is used to build or parse packets.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { lastValueFrom } from 'rxjs';
import { WebSocket, type ClientOptions } from 'ws';
import {
  MsgTransClient,
  MsgTransConnectionError,
  MsgTransErrorCode,
  type MsgTransClientOptions,
  type MsgTransServer,
  type MsgTransServerOptions,
  type MsgTransSession,
} from '../../lib/index.js';
import { testCertificates } from '../support/protocols.js';
import { startMsgTrans, waitFor, type RunningApp } from '../support/test-app.js';
import {
  CODEC,
  END,
  ERROR,
  HAS_ROUTE_TAG,
  HEADER,
  MORE,
  ONE_WAY,
  REQUEST,
  RESPONSE,
  encode,
  parsePacket,
  type InPacket,
} from '../support/raw-wire.js';
import { within } from '../support/async.js';

// ---------------------------------------------------------------------------
// msgtrans v1 by hand (PROTOCOL.md Part A + the Part B flags)
// ---------------------------------------------------------------------------

const WAIT_MS = 2000;
const SILENCE_MS = 100;

function jsonRequest(messageId: number, route: string, value: unknown): Buffer {
  return encode({
    packetType: REQUEST,
    messageId,
    flags: HAS_ROUTE_TAG | CODEC,
    ext: `route:${route}`,
    payload: JSON.stringify(value),
  });
}

function pingRequest(messageId: number): Buffer {
  return encode({ packetType: REQUEST, bizType: 10, messageId, payload: 'ping' });
}

/** Parses one binary WebSocket message, which must hold exactly one packet. */
function decodeMessage(msg: Buffer): InPacket {
  assert.ok(msg.length >= HEADER, `message of ${msg.length} bytes is shorter than a header`);
  const extLen = msg.readUInt16BE(8);
  const payloadLen = msg.readUInt32BE(10);
  assert.equal(msg.length, HEADER + extLen + payloadLen, 'one WebSocket message = exactly one packet, no prefix');
  return parsePacket(msg);
}

function json(p: InPacket): unknown {
  assert.ok(p.flags & CODEC, `expected the CODEC flag, got flags ${hex(p.flags)}`);
  return p.payload.length === 0 ? undefined : JSON.parse(p.payload.toString('utf8'));
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(4, '0')}`;
}

function assertResponseHeader(p: InPacket, messageId: number, bizType = 0): void {
  assert.equal(p.version, 1, 'version');
  assert.equal(p.compression, 0, 'compression');
  assert.equal(p.packetType, RESPONSE, 'packet_type must be response (2)');
  assert.equal(p.messageId, messageId, 'a response repeats the request id');
  assert.equal(p.bizType, bizType, 'biz_type echoed');
}

/** Rejects if `promise` does not settle within `ms` (the shared helper, with this file's argument order). */
const withTimeout = <T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> => within(promise, ms, what);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// a raw `ws` peer
// ---------------------------------------------------------------------------

interface CloseInfo {
  code: number;
  reason: string;
}

const openSockets: WebSocket[] = [];

/** A `ws` client socket that collects packets, text messages, pings and the close. */
class WsPeer {
  private readonly packets: InPacket[] = [];
  private waiters: Array<() => void> = [];
  readonly texts: string[] = [];
  readonly badMessages: Error[] = [];
  readonly errors: Error[] = [];
  pings = 0;
  closeInfo: CloseInfo | undefined;
  readonly closed: Promise<CloseInfo>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const buf = data as Buffer;
      if (!isBinary) {
        this.texts.push(buf.toString());
        return;
      }
      try {
        this.packets.push(decodeMessage(buf));
      } catch (err) {
        this.badMessages.push(err as Error);
      }
      this.notify();
    });
    ws.on('ping', () => this.pings++);
    ws.on('error', (err) => this.errors.push(err));
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.notify();
        resolve(this.closeInfo);
      }),
    );
  }

  static async open(url: string, options: ClientOptions = {}): Promise<WsPeer> {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    openSockets.push(ws);
    const peer = new WsPeer(ws);
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
        ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
      }),
      `open ${url}`,
    );
    peer.localPort = (ws as unknown as { _socket: { localPort: number } })._socket.localPort;
    assert.ok(peer.localPort > 0);
    return peer;
  }

  /** The local port (the server session's remote port), kept after the socket is gone. */
  localPort = 0;

  get queued(): number {
    return this.packets.length;
  }

  send(bytes: Buffer): void {
    this.ws.send(bytes, { binary: true });
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  async tryNext(timeoutMs: number): Promise<InPacket | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.packets.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0 || this.closeInfo) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.push(done);
      });
    }
    assert.deepEqual(this.badMessages.map((e) => e.message), [], 'every binary message holds exactly one packet');
    return this.packets.shift();
  }

  async next(timeoutMs = WAIT_MS): Promise<InPacket> {
    const packet = await this.tryNext(timeoutMs);
    if (!packet) throw new Error(this.closeInfo ? `closed (${this.closeInfo.code}) while waiting for a packet` : `no packet within ${timeoutMs} ms`);
    return packet;
  }

  async expectSilence(ms = SILENCE_MS): Promise<void> {
    const extra = await this.tryNext(ms);
    assert.equal(extra, undefined, extra && `unexpected packet: id ${extra.messageId} flags ${hex(extra.flags)}`);
    assert.deepEqual(this.texts, [], 'the server never sends text messages');
  }

  waitClosed(timeoutMs = WAIT_MS): Promise<CloseInfo> {
    return withTimeout(this.closed, 'waiting for the server to close the WebSocket', timeoutMs);
  }

  /** A request/response round trip proving the connection still works. */
  async assertEcho(messageId: number, value: unknown): Promise<void> {
    this.send(jsonRequest(messageId, 'echo', value));
    const reply = await this.next();
    assertResponseHeader(reply, messageId);
    assert.equal(reply.flags, CODEC, `got ${hex(reply.flags)}`);
    assert.deepEqual(json(reply), value);
  }
}

/** How a ws upgrade attempt ended when it was not supposed to open. */
function refusedUpgrade(url: string, options: ClientOptions = {}): Promise<{ status?: number; error?: Error; opened: boolean }> {
  const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
  openSockets.push(ws);
  return withTimeout(
    new Promise((resolve) => {
      ws.once('open', () => resolve({ opened: true }));
      ws.once('unexpected-response', (req, res) => {
        resolve({ status: res.statusCode, opened: false });
        res.resume();
        req.destroy();
      });
      ws.on('error', (error) => resolve({ error, opened: false }));
    }),
    `upgrade to ${url}`,
  );
}

/** A plain HTTP GET (no keep-alive): status and body. */
function httpGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = http.get(url, { agent: false, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      });
      req.on('error', reject);
    }),
    `GET ${url}`,
  );
}

// ---------------------------------------------------------------------------
// servers
// ---------------------------------------------------------------------------

type Running = RunningApp & { server: MsgTransServer; url: string };

interface Recorded {
  errors: Array<{ error: Error & { code?: string }; session: MsgTransSession | undefined }>;
  disconnects: Array<{ session: MsgTransSession; error: (Error & { code?: string }) | undefined }>;
}

const apps: Running[] = [];
const clients: MsgTransClient[] = [];
const httpServers: http.Server[] = [];

async function start(options: MsgTransServerOptions): Promise<Running & Recorded> {
  const running = await startMsgTrans(options);
  apps.push(running);
  const recorded: Recorded = { errors: [], disconnects: [] };
  running.server.on('error', (error, session) => recorded.errors.push({ error, session }));
  running.server.on('disconnect', (session, error) => recorded.disconnects.push({ session, error }));
  return Object.assign(running, recorded);
}

function newClient(options: MsgTransClientOptions): MsgTransClient {
  const client = new MsgTransClient({ connectTimeout: WAIT_MS, requestTimeout: WAIT_MS, ...options });
  clients.push(client);
  return client;
}

/** Waits for exactly one new server 'error' and returns its code. */
async function nextServerErrorCode(running: Recorded, before: number): Promise<string | undefined> {
  await waitFor(() => running.errors.length > before, WAIT_MS);
  await sleep(20); // a second error would be a bug too
  const fresh = running.errors.slice(before);
  assert.equal(fresh.length, 1, `exactly one error, got ${fresh.map((e) => e.error.code).join(', ')}`);
  assert.ok(fresh[0].session, 'the error names the session it closed');
  return fresh[0].error.code;
}

after(async () => {
  for (const c of clients) c.close();
  for (const ws of openSockets) ws.terminate();
  for (const app of apps) await app.close().catch(() => undefined);
  for (const s of httpServers) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

describe('msgtrans over WebSocket (raw ws peer)', () => {
  let running: Running & Recorded;

  before(async () => {
    running = await start({ listen: 'ws://127.0.0.1:0/msgtrans' });
    assert.match(running.url, /^ws:\/\/127\.0\.0\.1:\d+\/msgtrans$/);
  });

  test('hand-built binary messages reach handlers by route and by biz_type', async () => {
    const peer = await WsPeer.open(running.url);
    const eventsBefore = running.observed.events.length;

    peer.send(jsonRequest(41, 'echo', { hello: 'ws', n: [1, 2, 3] }));
    const reply = await peer.next();
    assertResponseHeader(reply, 41, 0);
    assert.equal(reply.flags, CODEC, `a single JSON value: flags exactly CODEC, got ${hex(reply.flags)}`);
    assert.equal(reply.flags & (ERROR | MORE | END), 0);
    assert.deepEqual(json(reply), { hello: 'ws', n: [1, 2, 3] });
    await peer.expectSilence();

    peer.send(pingRequest(42));
    const pong = await peer.next();
    assertResponseHeader(pong, 42, 10);
    assert.equal(pong.flags, 0, `a raw reply has no flags, got ${hex(pong.flags)}`);
    assert.equal(pong.payload.toString(), 'pong');
    await peer.expectSilence();

    // ids may repeat across connections and the server echoes whatever it got
    peer.send(jsonRequest(0xffffffff, 'echo', 'max id'));
    const maxId = await peer.next();
    assertResponseHeader(maxId, 0xffffffff);
    assert.equal(json(maxId), 'max id');

    // a one-way packet over ws lands in its @EventPattern and gets no reply
    peer.send(encode({ packetType: ONE_WAY, bizType: 12, messageId: 43, payload: 'ws-event' }));
    await waitFor(() => running.observed.events.length > eventsBefore, WAIT_MS);
    assert.deepEqual(running.observed.events.slice(eventsBefore), [{ biz12: 'ws-event' }]);
    await peer.expectSilence();

    // a streamed reply: one WebSocket message per packet
    peer.send(jsonRequest(44, 'stream', { n: 2 }));
    const stream = [await peer.next(), await peer.next(), await peer.next()];
    assert.deepEqual(
      stream.map((p) => [p.messageId, p.flags & (MORE | END | ERROR)]),
      [
        [44, MORE],
        [44, MORE],
        [44, END],
      ],
    );
    assert.deepEqual(stream.slice(0, 2).map(json), [1, 2]);
    await peer.expectSilence();
    assert.equal(peer.closeInfo, undefined, 'the connection is still open');
    assert.equal(running.errors.length, 0, 'no server errors for well-formed packets');
  });

  test('a text message closes that connection with 1003 and ERR_MSGTRANS_UNSUPPORTED_MESSAGE; others keep working', async () => {
    const other = await WsPeer.open(running.url);
    await other.assertEcho(100, 'before');

    const peer = await WsPeer.open(running.url);
    await peer.assertEcho(101, 'me too');
    const eventsBefore = running.observed.events.length;
    const errorsBefore = running.errors.length;
    // text that even looks like a valid packet must not be treated as one
    peer.ws.send(pingRequest(102).toString('latin1'));
    const close = await peer.waitClosed();
    assert.equal(close.code, 1003);
    assert.equal(peer.queued, 0, 'the text is not answered as a packet');
    assert.equal(await nextServerErrorCode(running, errorsBefore), MsgTransErrorCode.UNSUPPORTED_MESSAGE);
    const culprit = running.errors[errorsBefore].session!;
    assert.equal(culprit.connection.remotePort, peer.localPort);
    assert.equal(running.observed.events.length, eventsBefore);

    assert.equal(other.closeInfo, undefined);
    await other.assertEcho(103, { after: 'text' });
    other.send(pingRequest(104));
    assert.equal((await other.next()).payload.toString(), 'pong');
  });

  const badLengthCases: Array<{ name: string; bytes: () => Buffer }> = [
    {
      name: 'header declares payload 10, message carries 3',
      bytes: () => encode({ packetType: REQUEST, bizType: 10, messageId: 1, payload: 'pin', payloadLen: 10 }),
    },
    {
      name: 'header declares payload 4, message carries 4 + 5 trailing bytes',
      bytes: () => Buffer.concat([pingRequest(1), Buffer.from('extra')]),
    },
    {
      name: 'message shorter than a header',
      bytes: () => pingRequest(1).subarray(0, 10),
    },
    {
      name: 'two packets in one message',
      bytes: () => Buffer.concat([pingRequest(1), pingRequest(2)]),
    },
  ];

  for (const c of badLengthCases) {
    test(`a binary message whose length disagrees with its header (${c.name}) closes with 1002 and ERR_MSGTRANS_BAD_LENGTH`, async () => {
      const other = await WsPeer.open(running.url);
      const peer = await WsPeer.open(running.url);
      const errorsBefore = running.errors.length;
      peer.send(c.bytes());
      const close = await peer.waitClosed();
      assert.equal(close.code, 1002);
      assert.equal(peer.queued, 0, 'nothing but a close');
      assert.equal(await nextServerErrorCode(running, errorsBefore), MsgTransErrorCode.BAD_LENGTH);
      await other.assertEcho(200, c.name);
    });
  }

  test('an upgrade to another path is refused with 404; a MsgTransClient on a wrong path gets ERR_MSGTRANS_CONNECT_FAILED', async () => {
    const port = new URL(running.url).port;
    const sessionsBefore = running.server.getSessions().size;

    for (const path of ['/other', '/', '/msgtrans/x', '/msgtrans2']) {
      const outcome = await refusedUpgrade(`ws://127.0.0.1:${port}${path}`);
      assert.equal(outcome.opened, false, `${path} must not open`);
      assert.equal(outcome.status, 404, `${path}: ${outcome.error?.message ?? ''}`);
    }

    const wrong = newClient({ url: `ws://127.0.0.1:${port}/wrong` });
    await assert.rejects(withTimeout(wrong.connect(), 'client connect to a wrong path'), (err: unknown) => {
      assert.ok(err instanceof MsgTransConnectionError, `got ${String(err)}`);
      assert.equal(err.code, MsgTransErrorCode.CONNECT_FAILED);
      return true;
    });
    // a send() on it fails the same way rather than hanging
    await assert.rejects(withTimeout(lastValueFrom(wrong.send('echo', 1)), 'send on a wrong path'), (err: unknown) => {
      assert.ok(err instanceof MsgTransConnectionError);
      assert.equal(err.code, MsgTransErrorCode.CONNECT_FAILED);
      return true;
    });
    assert.equal(running.server.getSessions().size, sessionsBefore, 'refused upgrades create no session');

    // a query string does not change the path
    const withQuery = await WsPeer.open(`${running.url}?token=abc`);
    await withQuery.assertEcho(300, 'query ok');

    const good = newClient({ url: running.url });
    assert.equal(await lastValueFrom(good.send('echo', 'right path')), 'right path');
  });

  test('a plain HTTP GET to the server port gets 426 and the server keeps serving', async () => {
    const port = new URL(running.url).port;
    for (const path of ['/msgtrans', '/']) {
      const res = await httpGet(`http://127.0.0.1:${port}${path}`);
      assert.notEqual(res.status, 101);
      assert.equal(res.status, 426, `${path}`);
    }
    const peer = await WsPeer.open(running.url);
    await peer.assertEcho(400, 'still serving');
    const client = newClient({ url: running.url });
    assert.deepEqual(await lastValueFrom(client.send('echo', { after: 'http' })), { after: 'http' });
  });
});

describe('msgtrans over WebSocket with maxPacketSize 4096', () => {
  let running: Running & Recorded;

  before(async () => {
    running = await start({ listen: 'ws://127.0.0.1:0/msgtrans', maxPacketSize: 4096 });
  });

  test('a packet just under the limit is answered', async () => {
    const peer = await WsPeer.open(running.url);
    const value = 'x'.repeat(4096 - HEADER - 'route:echo'.length - 2);
    const bytes = jsonRequest(1, 'echo', value);
    assert.equal(bytes.length, 4096);
    peer.send(bytes);
    const reply = await peer.next();
    assertResponseHeader(reply, 1);
    assert.equal(json(reply), value);
  });

  test('an 8 KiB message closes with 1009 and ERR_MSGTRANS_PACKET_TOO_LARGE', async () => {
    const other = await WsPeer.open(running.url);
    const peer = await WsPeer.open(running.url);
    const errorsBefore = running.errors.length;
    const bytes = encode({ packetType: REQUEST, bizType: 10, messageId: 1, payload: Buffer.alloc(8192 - HEADER, 0x61) });
    assert.equal(bytes.length, 8192);
    peer.send(bytes);
    const close = await peer.waitClosed();
    assert.equal(close.code, 1009);
    assert.equal(peer.queued, 0);
    assert.equal(await nextServerErrorCode(running, errorsBefore), MsgTransErrorCode.PACKET_TOO_LARGE);
    await other.assertEcho(2, 'unaffected');
  });

  test('a small message whose header declares more than the limit closes with 1009 and ERR_MSGTRANS_PACKET_TOO_LARGE', async () => {
    const peer = await WsPeer.open(running.url);
    const errorsBefore = running.errors.length;
    peer.send(encode({ packetType: REQUEST, bizType: 10, messageId: 1, payload: 'ping', payloadLen: 0xffffffff }));
    const close = await peer.waitClosed();
    assert.equal(close.code, 1009);
    assert.equal(await nextServerErrorCode(running, errorsBefore), MsgTransErrorCode.PACKET_TOO_LARGE);
  });
});

describe('msgtrans over WebSocket attached to an existing HTTP server', () => {
  let httpServer: http.Server;
  let port: number;
  let running: Running & Recorded;

  before(async () => {
    httpServer = http.createServer((_req, res) => res.end('hello http'));
    httpServers.push(httpServer);
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(0, '127.0.0.1', resolve);
    });
    port = (httpServer.address() as AddressInfo).port;
    running = await start({ listen: [{ protocol: 'ws', path: '/msgtrans', httpServer }] });
  });

  test('HTTP routes keep working and msgtrans is served on the path', async () => {
    assert.equal(running.url, `ws://127.0.0.1:${port}/msgtrans`, 'the bound address is the HTTP server’s');
    const get = await httpGet(`http://127.0.0.1:${port}/`);
    assert.equal(get.status, 200);
    assert.equal(get.body, 'hello http');
    // a non-upgrade request on the msgtrans path belongs to the HTTP app too
    const onPath = await httpGet(`http://127.0.0.1:${port}/msgtrans`);
    assert.equal(onPath.body, 'hello http');

    const client = newClient({ url: `ws://127.0.0.1:${port}/msgtrans` });
    assert.deepEqual(await lastValueFrom(client.send('echo', { shared: true })), { shared: true });
    assert.equal(await lastValueFrom(client.send('echo', 'again')), 'again');

    const peer = await WsPeer.open(`ws://127.0.0.1:${port}/msgtrans`);
    peer.send(pingRequest(5));
    const pong = await peer.next();
    assertResponseHeader(pong, 5, 10);
    assert.equal(pong.payload.toString(), 'pong');

    // the only upgrade handler on the server refuses other paths
    const other = await refusedUpgrade(`ws://127.0.0.1:${port}/other`);
    assert.equal(other.opened, false);
    assert.equal(other.status, 404);

    assert.equal((await httpGet(`http://127.0.0.1:${port}/after`)).body, 'hello http');
  });

  test('closing the app leaves the HTTP server it does not own running', async () => {
    const peer = await WsPeer.open(running.url);
    await peer.assertEcho(6, 'before close');
    await running.close();
    apps.splice(apps.indexOf(running), 1);

    // the app's sessions are gone...
    const close = await peer.waitClosed();
    assert.equal(typeof close.code, 'number');
    // ...but the HTTP server is not
    assert.equal(httpServer.listening, true);
    const get = await httpGet(`http://127.0.0.1:${port}/`);
    assert.equal(get.status, 200);
    assert.equal(get.body, 'hello http');
    // and msgtrans is no longer served on it
    const outcome = await refusedUpgrade(`ws://127.0.0.1:${port}/msgtrans`);
    assert.equal(outcome.opened, false);

    httpServers.splice(httpServers.indexOf(httpServer), 1);
    httpServer.closeAllConnections();
    await withTimeout(new Promise<void>((resolve, reject) => httpServer.close((err) => (err ? reject(err) : resolve()))), 'http close');
    assert.equal(httpServer.listening, false);
  });
});

describe('WebSocket heartbeat (heartbeatInterval 100)', () => {
  let running: Running & Recorded;

  before(async () => {
    running = await start({ listen: 'ws://127.0.0.1:0/msgtrans', heartbeatInterval: 100 });
  });

  test('a peer that never answers pings is dropped within ~500 ms and reported as disconnected', async () => {
    const eventsBefore = running.observed.events.length;
    const started = Date.now();
    const mute = await WsPeer.open(running.url, { autoPong: false });
    const port = mute.localPort;
    const close = await mute.waitClosed(1500);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 600, `dropped after ${elapsed} ms`);
    assert.ok(mute.pings >= 1, 'the server pinged before giving up');
    assert.notEqual(close.code, 1000, 'a missed heartbeat is not a normal close');

    await waitFor(() => running.disconnects.some((d) => d.session.connection.remotePort === port), WAIT_MS);
    const gone = running.disconnects.find((d) => d.session.connection.remotePort === port)!;
    assert.ok(gone.error, 'the disconnect says why');
    assert.equal(gone.error.code, MsgTransErrorCode.HEARTBEAT_TIMEOUT);
    assert.equal(running.server.getSessions().has(gone.session.id), false);
    assert.equal(running.observed.events.length, eventsBefore, 'pings never reach handlers');
  });

  test('peers that answer pings stay connected and keep getting replies', async () => {
    const eventsBefore = running.observed.events.length;
    const disconnectsBefore = running.disconnects.length;

    const peer = await WsPeer.open(running.url);
    await peer.assertEcho(1, 'first');

    const client = newClient({ url: running.url, heartbeatInterval: 100 });
    const clientDisconnects: Array<Error | undefined> = [];
    client.on('disconnect', (err) => clientDisconnects.push(err));
    const ctxBefore = await lastValueFrom(client.send('ctx', {}));

    await sleep(550);

    assert.equal(peer.closeInfo, undefined, 'the answering ws peer is still connected');
    assert.ok(peer.pings >= 3, `the server kept pinging (${peer.pings} pings)`);
    await peer.assertEcho(2, 'after 550 ms');
    peer.send(pingRequest(3));
    const pong = await peer.next();
    assertResponseHeader(pong, 3, 10);
    assert.equal(pong.payload.toString(), 'pong');
    await peer.expectSilence();

    assert.deepEqual(clientDisconnects, []);
    const ctxAfter = await lastValueFrom(client.send('ctx', {}));
    assert.equal(ctxAfter.sessionId, ctxBefore.sessionId, 'same session, no reconnect');
    assert.equal(ctxAfter.protocol, 'ws');
    assert.equal(await lastValueFrom(client.send('echo', 'alive')), 'alive');

    assert.equal(running.disconnects.length, disconnectsBefore, 'nobody was dropped');
    assert.equal(running.observed.events.length, eventsBefore, 'pings never reach handlers');
    assert.deepEqual(running.errors.map((e) => e.error.code), []);
  });
});

describe('msgtrans over wss', () => {
  let running: Running & Recorded;
  let ca: string;

  before(async () => {
    const c = await testCertificates();
    ca = c.ca;
    running = await start({ listen: 'wss://127.0.0.1:0/msgtrans', tls: { key: c.serverKey, cert: c.serverCert } });
    assert.match(running.url, /^wss:\/\/127\.0\.0\.1:\d+\/msgtrans$/);
  });

  test('the client verifies the certificate by default: no CA means ERR_MSGTRANS_CONNECT_FAILED', async () => {
    const untrusting = newClient({ url: running.url });
    await assert.rejects(withTimeout(untrusting.connect(), 'wss connect without CA'), (err: unknown) => {
      assert.ok(err instanceof MsgTransConnectionError, `got ${String(err)}`);
      assert.equal(err.code, MsgTransErrorCode.CONNECT_FAILED);
      return true;
    });
    assert.equal(running.server.getSessions().size, 0, 'no session came of it');
  });

  test('with tls.ca the client works, and so does a raw wss peer', async () => {
    const client = newClient({ url: running.url, tls: { ca } });
    assert.deepEqual(await lastValueFrom(client.send('echo', { secure: true })), { secure: true });
    const ctx = await lastValueFrom(client.send('ctx', {}));
    assert.equal(ctx.protocol, 'wss');

    const peer = await WsPeer.open(running.url, { ca });
    peer.send(pingRequest(9));
    const pong = await peer.next();
    assertResponseHeader(pong, 9, 10);
    assert.equal(pong.payload.toString(), 'pong');
  });
});

describe('msgtrans over WebSocket: a stalled partial frame', () => {
  test('a peer that sends part of a frame and stalls is dropped with ERR_MSGTRANS_INCOMPLETE_TIMEOUT; others keep working', async () => {
    const running = await start({ listen: 'ws://127.0.0.1:0/msgtrans', incompleteMessageTimeout: 200 });
    const staller = await WsPeer.open(running.url);
    const bystander = await WsPeer.open(running.url);
    const before = running.errors.length;
    // FIN + binary, masked with a 16-bit length (as a client must send it), then nothing more
    const socket = (staller.ws as unknown as { _socket: import('node:net').Socket })._socket;
    socket.write(Buffer.from([0x82, 0xfe, 0x01]));
    assert.equal(await nextServerErrorCode(running, before), 'ERR_MSGTRANS_INCOMPLETE_TIMEOUT');
    const info = await withTimeout(staller.closed, 'the staller is closed');
    assert.equal(info.code, 1008);
    bystander.ws.send(pingRequest(5));
    const reply = await withTimeout(
      new Promise<InPacket>((resolve) => bystander.ws.once('message', (data) => resolve(decodeMessage(data as Buffer)))),
      'bystander reply',
    );
    assert.equal(reply.messageId, 5);
    assert.equal(reply.payload.toString(), 'pong');
  });

  test('a steady stream of whole messages never trips the timeout', async () => {
    const running = await start({ listen: 'ws://127.0.0.1:0/msgtrans', incompleteMessageTimeout: 150 });
    const peer = await WsPeer.open(running.url);
    const before = running.errors.length;
    let replies = 0;
    peer.ws.on('message', () => replies++);
    for (let i = 1; i <= 20; i++) {
      peer.ws.send(pingRequest(i));
      await sleep(25);
    }
    await waitFor(() => replies === 20, WAIT_MS);
    assert.equal(running.errors.length, before, 'no violation was reported');
    assert.equal(peer.closeInfo, undefined, 'the peer is still connected');
  });
});
