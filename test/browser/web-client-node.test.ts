/**
 * The web client bundle (dist/browser/msgtrans-web.js) in Node, with `ws`
 * as its WebSocket (Node 20 has no global one): the same end-to-end suite
 * as in Chromium, then what only Node can check: the exact bytes it sends
 * (against lib/codec), its handling of bad input from a hand-written
 * server, option checks, and that it agrees with the library on routes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { deflateSync } from 'node:zlib';
import { WebSocketServer, WebSocket as WsWebSocket, type WebSocket as WsSocket } from 'ws';
import {
  AUTH_ROUTE,
  Compression,
  MsgTransErrorCode,
  NO_MESSAGE_HANDLER,
  PacketFlag,
  PacketType,
  decodePacket,
  dispatchRoute,
  encodeExtHeader,
  encodePacket,
  type MsgTransPacket,
} from '../../lib/index.js';
import type * as WebModule from '../../lib/browser/index.js';
import { WEB_AUTH_ROUTE } from '../../lib/browser/msgtrans-web-client.js';
import { resolveWebClientOptions } from '../../lib/browser/web-client-options.js';
import { WebConnection, webTarget } from '../../lib/browser/web-connection.js';
import { dispatchRouteOf } from '../../lib/browser/web-route.js';
import { testCertificates } from '../support/protocols.js';
import { within } from '../support/async.js';
import { defineWebClientSuite, errorOf, until, type WebEnvironment, type WebLib } from './web-client-suite.js';

// dist/test/browser/ -> dist/browser/
const BUNDLE_URL = new URL('../../browser/msgtrans-web.js', import.meta.url);
const web = (await import(BUNDLE_URL.href)) as typeof WebModule;
const { MsgTransWebClient } = web;

/** Runs steps in this process, with `WebSocket` as the client's WebSocket. */
function nodeEnvironment(WebSocket: WebModule.WebSocketConstructorLike): WebEnvironment {
  const lib: WebLib = {
    ...web,
    WebSocket,
    newClient: (url, options) => new MsgTransWebClient(url, { WebSocket, ...options }),
    until,
    errorOf,
  };
  const state = {};
  return { run: (step, arg) => step(lib, state, arg) };
}

const wsEnvironment = nodeEnvironment(WsWebSocket);
let wssEnvironment: WebEnvironment;

describe('web client in Node (ws as WebSocket)', () => {
  before(async () => {
    const { ca } = await testCertificates();
    // ws's WebSocket, trusting the test CA: what a browser does with a CA it knows
    class TrustingWebSocket extends WsWebSocket {
      constructor(url: string) {
        super(url, { ca });
      }
    }
    wssEnvironment = nodeEnvironment(TrustingWebSocket);
  });

  defineWebClientSuite('over ws://', 'ws', () => wsEnvironment);
  defineWebClientSuite('over wss://', 'wss', () => wssEnvironment, false);
});

/** A hand-written msgtrans server: sees every message, answers as the test says. */
interface FakeServer {
  url: string;
  received: Buffer[];
  close(): Promise<void>;
}

async function fakeServer(onMessage: (socket: WsSocket, data: Buffer) => void = () => undefined): Promise<FakeServer> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  const received: Buffer[] = [];
  server.on('connection', (socket) =>
    socket.on('message', (data: Buffer) => {
      received.push(data);
      onMessage(socket, data);
    }),
  );
  const { port } = server.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}/`,
    received,
    close: async () => {
      for (const client of server.clients) client.terminate();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const LIMITS = { maxPacketSize: 16 * 1024 * 1024, maxExtHeaderSize: 0xffff };

function packet(fields: Partial<MsgTransPacket>): Buffer {
  return encodePacket({
    compression: Compression.NONE,
    packetType: PacketType.RESPONSE,
    bizType: 0,
    messageId: 0,
    flags: 0,
    extHeader: Buffer.alloc(0),
    payload: Buffer.alloc(0),
    ...fields,
  });
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const newClient = (url: string, options: WebModule.MsgTransWebClientOptions = {}) =>
  new MsgTransWebClient(url, { WebSocket: WsWebSocket, ...options });

describe('web client wire format (against lib/codec)', () => {
  test('events, requests, raw data, metadata and CANCEL are byte for byte what the Node codec encodes', async () => {
    const server = await fakeServer((socket, data) => {
      const p = decodePacket(data, LIMITS);
      if (p.packetType !== PacketType.REQUEST) return;
      if (p.extHeader.toString().startsWith('route:count\n')) {
        socket.send(packet({ messageId: p.messageId, flags: PacketFlag.MORE | PacketFlag.CODEC, payload: json(1) }));
      } else {
        socket.send(packet({ messageId: p.messageId, flags: PacketFlag.CODEC, payload: json(6) }));
      }
    });
    const client = newClient(server.url, { metadata: { tenant: 'acme' } });
    try {
      await client.emit('audit.log', { a: 1 });
      await client.emit(12, new Uint8Array([1, 2]));
      assert.equal(await client.request('math.sum', [1, 2, 3], { metadata: { 'trace-id': 'x%y\nz' } }), 6);
      for await (const value of client.stream('count', 5)) {
        assert.equal(value, 1);
        break;
      }
      await until(() => server.received.length === 5);
      const route = PacketFlag.HAS_ROUTE_TAG | PacketFlag.CODEC;
      const expected = [
        packet({ packetType: PacketType.ONE_WAY, messageId: 1, flags: route, extHeader: encodeExtHeader('audit.log', { tenant: 'acme' }), payload: json({ a: 1 }) }),
        packet({ packetType: PacketType.ONE_WAY, bizType: 12, messageId: 2, extHeader: encodeExtHeader(undefined, { tenant: 'acme' }), payload: Buffer.from([1, 2]) }),
        packet({
          packetType: PacketType.REQUEST,
          messageId: 3,
          flags: route,
          extHeader: encodeExtHeader('math.sum', { tenant: 'acme', 'trace-id': 'x%y\nz' }),
          payload: json([1, 2, 3]),
        }),
        packet({ packetType: PacketType.REQUEST, messageId: 4, flags: route, extHeader: encodeExtHeader('count', { tenant: 'acme' }), payload: json(5) }),
        // CANCEL repeats the request's id and takes none of its own
        packet({ packetType: PacketType.ONE_WAY, messageId: 4, flags: PacketFlag.CANCEL }),
      ];
      assert.deepEqual(server.received.map((b) => b.toString('hex')), expected.map((b) => b.toString('hex')));
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('credentials go first, as a msgtrans.auth request with id 1; calls follow with id 2', async () => {
    const server = await fakeServer((socket, data) => {
      const p = decodePacket(data, LIMITS);
      const payload = p.extHeader.toString() === `route:${AUTH_ROUTE}` ? { authenticated: true } : 'hello';
      socket.send(packet({ messageId: p.messageId, flags: PacketFlag.CODEC, payload: json(payload) }));
    });
    const client = newClient(server.url, { credentials: { token: 't' } });
    try {
      assert.equal(await client.request('greet'), 'hello');
      const [auth, call] = server.received.map((b) => decodePacket(b, LIMITS));
      assert.equal(auth.messageId, 1);
      assert.equal(auth.packetType, PacketType.REQUEST);
      assert.equal(auth.flags, PacketFlag.HAS_ROUTE_TAG | PacketFlag.CODEC);
      assert.equal(auth.extHeader.toString(), 'route:msgtrans.auth');
      assert.deepEqual(JSON.parse(auth.payload.toString()), { token: 't' });
      assert.equal(call.messageId, 2);
      // no data at all travels as an empty CODEC payload: undefined
      assert.equal(call.payload.length, 0);
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('answers are framed as the server frames replies: one value plain, streams MORE…END, errors ERROR', async () => {
    let socket: WsSocket | undefined;
    const server = await fakeServer((s) => (socket = s));
    const client = newClient(server.url);
    client.answer('one', async function* () {
      yield 'only';
    });
    client.answer('many', async function* () {
      yield 1;
      yield 2;
    });
    client.answer('none', async function* () {});
    client.answer('value', () => ({ plain: true }));
    client.answer('bigint', async function* () {
      yield 1;
      yield 2n;
      yield 3;
    });
    client.answer('throws', () => {
      throw 10n;
    });
    client.answer('raw', () => new Uint8Array([5, 6]));
    try {
      await client.emit('hello');
      await until(() => socket !== undefined && server.received.length === 1);
      const patterns = ['one', 'many', 'none', 'value', 'bigint', 'throws', 'raw', 'missing'];
      patterns.forEach((pattern, i) =>
        socket!.send(packet({ packetType: PacketType.REQUEST, bizType: 9, messageId: 100 + i, flags: PacketFlag.HAS_ROUTE_TAG, extHeader: encodeExtHeader(pattern) })),
      );
      // one, many (3), none, value, bigint (2), throws, raw, missing
      await until(() => server.received.length === 1 + 11);
      const replies = server.received.slice(1).map((b) => decodePacket(b, LIMITS));
      const seen = replies.map((p) => ({
        id: p.messageId,
        bizType: p.bizType,
        flags: p.flags,
        payload: p.flags & PacketFlag.CODEC && p.payload.length > 0 ? JSON.parse(p.payload.toString()) : [...p.payload],
      }));
      const { CODEC, MORE, END, ERROR } = PacketFlag;
      const byId = (id: number) => seen.filter((r) => r.id === id).map(({ flags, payload, bizType }) => ({ flags, payload, bizType }));
      assert.deepEqual(byId(100), [{ flags: CODEC, payload: 'only', bizType: 9 }]);
      assert.deepEqual(byId(101), [
        { flags: MORE | CODEC, payload: 1, bizType: 9 },
        { flags: MORE | CODEC, payload: 2, bizType: 9 },
        { flags: END, payload: [], bizType: 9 },
      ]);
      assert.deepEqual(byId(102), [{ flags: END, payload: [], bizType: 9 }]);
      assert.deepEqual(byId(103), [{ flags: CODEC, payload: { plain: true }, bizType: 9 }]);
      assert.equal(byId(104).length, 2);
      assert.deepEqual(byId(104)[0], { flags: MORE | CODEC, payload: 1, bizType: 9 });
      assert.equal(byId(104)[1].flags, ERROR | CODEC);
      assert.equal(byId(105)[0].flags, ERROR | CODEC);
      assert.match(byId(105)[0].payload.message, /Unencodable error/);
      assert.deepEqual(byId(106), [{ flags: 0, payload: [5, 6], bizType: 9 }]);
      assert.deepEqual(byId(107), [{ flags: ERROR | CODEC, payload: NO_MESSAGE_HANDLER, bizType: 9 }]);
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('message ids wrap from 2^32-1 to 1, skipping 0 and ids still pending', () => {
    const sent: Uint8Array[] = [];
    const socket = { binaryType: 'arraybuffer', readyState: 1, onopen: null, onmessage: null, onclose: null, onerror: null, send: (d: Uint8Array) => sent.push(d), close: () => undefined };
    const owner = { onEvent: () => undefined, onRequest: () => undefined, onClose: () => undefined };
    const options = resolveWebClientOptions('ws://127.0.0.1:1/', { WebSocket: WsWebSocket });
    const connection = new WebConnection(socket, options, owner);
    const target = webTarget(0, 'r', undefined);
    const sink = { next: () => undefined, complete: () => undefined, error: () => undefined };
    assert.equal(connection.request(target, 1, sink), 1);
    // jump to the end of the id space: the request holding id 1 must not be given it again
    (connection as unknown as { nextId: number }).nextId = 0xffffffff;
    connection.emit(target, 2);
    assert.equal(connection.request(target, 3, sink), 2);
    assert.deepEqual(sent.map((bytes) => decodePacket(Buffer.from(bytes), LIMITS).messageId), [1, 0xffffffff, 2]);
  });

  test('routes agree with the library: biz_type 0-255, strings, Nest-normalised objects', () => {
    const patterns = [0, 7, 255, 256, -1, 1.5, 'math.sum', '', { cmd: 'sum', v: 2 }, { v: 2, cmd: 'sum' }, { b: { z: 1, a: 'q"\\' }, a: [1, 'x'] }, { a: true, n: null }, { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } }, Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, i]))];
    for (const pattern of patterns) assert.equal(dispatchRouteOf(pattern), dispatchRoute(pattern), JSON.stringify(pattern));
    assert.equal(WEB_AUTH_ROUTE, AUTH_ROUTE);
  });

  test('the error codes are the library\'s own object', () => {
    assert.deepEqual(web.MsgTransErrorCode, MsgTransErrorCode);
  });
});

describe('web client against bad input', () => {
  /** What a request fails with when the server answers it with `reply(id)`. */
  async function failureFor(
    reply: (id: number) => Buffer | string,
    options: WebModule.MsgTransWebClientOptions = {},
  ): Promise<{ code: string; causeCode: string | undefined; statuses: string[] }> {
    const server = await fakeServer((socket, data) => socket.send(reply(decodePacket(data, LIMITS).messageId)));
    const client = newClient(server.url, { reconnect: false, ...options });
    const statuses: string[] = [];
    client.onStatus((s) => statuses.push(s));
    try {
      const error = await within(errorOf(client.request('x', 1)), 5000, 'request');
      return { code: error.code, causeCode: error.causeCode, statuses: [...statuses] };
    } finally {
      await client.close();
      await server.close();
    }
  }

  const ok = (id: number) => packet({ messageId: id, flags: PacketFlag.CODEC, payload: json('fine') });
  const patch = (buf: Buffer, offset: number, value: number) => ((buf[offset] = value), buf);
  const cases: Array<[string, (id: number) => Buffer | string, WebModule.MsgTransWebClientOptions?]> = [
    [MsgTransErrorCode.BAD_VERSION, (id) => patch(ok(id), 0, 9)],
    [MsgTransErrorCode.BAD_COMPRESSION, (id) => patch(ok(id), 1, 3)],
    [MsgTransErrorCode.BAD_PACKET_TYPE, (id) => patch(ok(id), 2, 3)],
    [MsgTransErrorCode.FRAGMENTED, (id) => packet({ messageId: id, flags: PacketFlag.FRAGMENTED })],
    [MsgTransErrorCode.BAD_LENGTH, (id) => ok(id).subarray(0, -1)],
    [MsgTransErrorCode.BAD_LENGTH, () => Buffer.alloc(10, 1)],
    [MsgTransErrorCode.PACKET_TOO_LARGE, (id) => packet({ messageId: id, payload: Buffer.alloc(2000) }), { maxPacketSize: 1024 }],
    [MsgTransErrorCode.EXT_HEADER_TOO_LARGE, (id) => packet({ messageId: id, extHeader: Buffer.from(`a:${'x'.repeat(200)}`) }), { maxExtHeaderSize: 100 }],
    [MsgTransErrorCode.UNSUPPORTED_MESSAGE, () => 'a text message'],
    [MsgTransErrorCode.ZSTD_UNAVAILABLE, (id) => packet({ messageId: id, compression: Compression.ZSTD, payload: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]) })],
    [MsgTransErrorCode.DECOMPRESSION_FAILED, (id) => packet({ messageId: id, compression: Compression.ZLIB, payload: Buffer.from('not zlib at all') })],
    [
      MsgTransErrorCode.DECOMPRESSED_TOO_LARGE,
      (id) => packet({ messageId: id, compression: Compression.ZLIB, payload: deflateSync(Buffer.alloc(256 * 1024)) }),
      { maxPacketSize: 64 * 1024 },
    ],
    [MsgTransErrorCode.BAD_PAYLOAD, (id) => packet({ messageId: id, flags: PacketFlag.CODEC, payload: Buffer.from('{not json') })],
    [MsgTransErrorCode.BAD_EXT_HEADER, () => packet({ packetType: PacketType.ONE_WAY, messageId: 1, extHeader: Buffer.from('no colon') })],
    [MsgTransErrorCode.BAD_EXT_HEADER, () => packet({ packetType: PacketType.ONE_WAY, messageId: 1, extHeader: Buffer.from([0x72, 0x3a, 0xff]) })],
  ];
  for (const [code, reply, options] of cases) {
    test(`${code} closes the connection: the pending call fails with ERR_MSGTRANS_CONNECTION_CLOSED caused by it`, async () => {
      const got = await failureFor(reply, options);
      assert.deepEqual(got, { code: MsgTransErrorCode.CONNECTION_CLOSED, causeCode: code, statuses: ['connecting', 'connected', 'disconnected'] });
    });
  }

  test('a server that vanishes fails pending calls with ERR_MSGTRANS_CONNECTION_CLOSED, and the client reconnects', async () => {
    let connections = 0;
    const server = await fakeServer((socket, data) => {
      const id = decodePacket(data, LIMITS).messageId;
      // the first connection dies on its first request; later ones answer
      if (connections === 1) socket.terminate();
      else socket.send(packet({ messageId: id, flags: PacketFlag.CODEC, payload: json('again') }));
    });
    const client = newClient(server.url, { reconnect: { initialDelay: 10, maxDelay: 50 } });
    try {
      connections = 1;
      const error = await within(errorOf(client.request('x', 1)), 5000, 'first');
      assert.equal(error.code, MsgTransErrorCode.CONNECTION_CLOSED);
      connections = 2;
      assert.equal(await within(client.request('x', 2), 5000, 'second'), 'again');
    } finally {
      await client.close();
      await server.close();
    }
  });

  test('calls waiting for a connection are bounded by maxQueuedCalls and each by its own timeout', async () => {
    // a port nobody answers on within the test: connect through a server that never completes the upgrade
    const { createServer } = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    const client = newClient(`ws://127.0.0.1:${port}/`, { maxQueuedCalls: 2, connectTimeout: 5000 });
    try {
      const first = errorOf(client.request('a', 1, { timeout: 200 }));
      const second = errorOf(client.request('b', 1, { timeout: 5000 }));
      const third = await errorOf(client.request('c', 1));
      assert.equal(third.code, MsgTransErrorCode.QUEUE_FULL);
      assert.equal((await within(first, 3000, 'first')).code, MsgTransErrorCode.TIMEOUT);
      await client.close();
      assert.equal((await within(second, 3000, 'second')).code, MsgTransErrorCode.CLIENT_CLOSED);
    } finally {
      await client.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

describe('web client options', () => {
  const invalid = (fn: () => unknown) =>
    assert.throws(fn, (err: any) => err instanceof web.MsgTransWebError && err.code === MsgTransErrorCode.INVALID_OPTION);

  test('bad options are refused with ERR_MSGTRANS_INVALID_OPTION', () => {
    invalid(() => newClient('ws://127.0.0.1:1/', { requestTimout: 5 } as any));
    invalid(() => newClient('http-not-a-url'));
    invalid(() => newClient('tcp://127.0.0.1:1'));
    invalid(() => newClient('ws://127.0.0.1:1/', { compression: { algorithm: 'zstd' } as any }));
    invalid(() => newClient('ws://127.0.0.1:1/', { reconnect: { initialDelay: -1 } }));
    invalid(() => newClient('ws://127.0.0.1:1/', { reconnect: { tries: 3 } as any }));
    invalid(() => newClient('ws://127.0.0.1:1/', { whileDisconnected: 'queue' as any }));
    invalid(() => newClient('ws://127.0.0.1:1/', { maxExtHeaderSize: 70_000 }));
    invalid(() => newClient('ws://127.0.0.1:1/', { requestTimeout: 2 ** 31 }));
    // Node 20 has no global WebSocket: the error says what to pass
    if (typeof (globalThis as { WebSocket?: unknown }).WebSocket !== 'function') invalid(() => new MsgTransWebClient('ws://127.0.0.1:1/'));
  });

  test('a bad timeout or a missing pattern rejects the call', async () => {
    const client = newClient('ws://127.0.0.1:1/');
    assert.equal((await errorOf(client.request('x', 1, { timeout: -5 }))).code, MsgTransErrorCode.INVALID_OPTION);
    assert.equal((await errorOf(client.request('x', 1, { timeout: 2 ** 31 }))).code, MsgTransErrorCode.INVALID_OPTION);
    assert.equal((await errorOf(client.request(undefined, 1))).code, MsgTransErrorCode.INVALID_OPTION);
    assert.equal((await errorOf(client.emit('x', 1, { metadata: { route: 'no' } }))).code, MsgTransErrorCode.INVALID_METADATA);
    await client.close();
  });
});

describe('web client with the runtime\'s own WebSocket', () => {
  test('Node\'s global WebSocket (--experimental-websocket on Node 20, built in from 22) runs the bundle unchanged', async () => {
    const server = await fakeServer((socket, data) => {
      const p = decodePacket(data, LIMITS);
      socket.send(packet({ messageId: p.messageId, flags: PacketFlag.CODEC, payload: json({ echo: JSON.parse(p.payload.toString()) }) }));
    });
    try {
      const script = `
        const { MsgTransWebClient } = await import(${JSON.stringify(BUNDLE_URL.href)});
        const client = new MsgTransWebClient(${JSON.stringify(server.url)});
        console.log(JSON.stringify(await client.request('x', [1, 'two'])));
        await client.close();`;
      const flags = Number(process.versions.node.split('.')[0]) < 22 ? ['--experimental-websocket'] : [];
      const { stdout } = await promisify(execFile)(process.execPath, [...flags, '--no-warnings', '--input-type=module', '-e', script], {
        timeout: 15_000,
        cwd: fileURLToPath(new URL('.', import.meta.url)),
      });
      assert.deepEqual(JSON.parse(stdout), { echo: [1, 'two'] });
    } finally {
      await server.close();
    }
  });
});

