/**
 * The web client's end-to-end suite, written once and run twice: inside a
 * Chromium page (browser-client.test.ts) and in Node with `ws` as the
 * WebSocket (web-client-node.test.ts). Each step is a function that runs
 * where the client lives: in the page it is sent as source text, so a step
 * may use only its parameters (the `web` helpers, a `state` object that
 * lives as long as the environment, and a JSON argument) and returns JSON.
 * The Node side drives the server between steps.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';
import { MsgTransErrorCode, NO_MESSAGE_HANDLER } from '../../lib/index.js';
import type * as WebModule from '../../lib/browser/index.js';
import { rejection, within } from '../support/async.js';
import { freePort } from '../support/restartable-server.js';
import { waitFor } from '../support/test-app.js';
import { GOOD_TOKEN, SERVER_COMPRESSION_THRESHOLD, startWebTestServer, type WebTestServer } from './web-test-server.js';

/** What a step gets as `web`: the bundle's exports plus environment helpers. */
export type WebLib = typeof WebModule & {
  /** The environment's WebSocket class (the page's, or ws's). */
  WebSocket: WebModule.WebSocketConstructorLike;
  /** A client with the environment's WebSocket. */
  newClient(url: string, options?: WebModule.MsgTransWebClientOptions): WebModule.MsgTransWebClient;
  /** Polls `check` every 10 ms until it is true; throws after `ms`. */
  until(check: () => boolean, ms?: number): Promise<void>;
  /** The error `promise` rejects with, as JSON. */
  errorOf(promise: Promise<unknown>): Promise<ErrorJson>;
};

export interface ErrorJson {
  name: string;
  code: string;
  message: string;
  payload: unknown;
  causeCode: string | undefined;
}

/** A step: runs where the client lives. */
export type Step<A, R> = (web: WebLib, state: any, arg: A) => Promise<R>;

/** Where the client lives: runs a step there. */
export interface WebEnvironment {
  run<A, R>(step: Step<A, R>, arg: A): Promise<R>;
}

/** The environment helpers, written to be sent to a page as source text too. */
export async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms: ${check.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export async function errorOf(promise: Promise<unknown>): Promise<ErrorJson> {
  try {
    await promise;
  } catch (err: any) {
    return { name: err?.name, code: err?.code, message: err?.message, payload: err?.payload ?? null, causeCode: err?.cause?.code };
  }
  throw new Error('expected a rejection');
}

const STEP_MS = 20_000;

/**
 * Defines the suite. `full: false` runs the core exchanges only (for the
 * second scheme of an environment, to keep the suite fast).
 */
export function defineWebClientSuite(name: string, scheme: 'ws' | 'wss', env: () => WebEnvironment, full = true): void {
  describe(name, () => {
    let served: WebTestServer;
    const run = <A, R>(step: Step<A, R>, arg: A): Promise<R> => within(env().run(step, arg), STEP_MS, step.name || 'step');

    before(async () => {
      served = await startWebTestServer(`${scheme}://127.0.0.1:0/msgtrans`);
    });

    after(async () => {
      await run(async (_web, state) => {
        for (const client of state.clients ?? []) await client.close();
        state.clients = [];
      }, null);
      await served?.close();
    });

    test('request/response carries objects, strings, numbers, null and Uint8Array', async () => {
      const got = await run(async (web, state, url: string) => {
        const client = web.newClient(url);
        (state.clients ??= []).push(client);
        const bytes = await client.request('echo', new Uint8Array([0, 1, 255]));
        return {
          object: await client.request('echo', { a: [1, { b: 'x' }], n: null }),
          text: await client.request('echo', 'héllo ✓ "quoted"'),
          number: await client.request('echo', 42.5),
          nil: await client.request('echo', null),
          async: await client.request('echo.async', [true, false]),
          bytes: Array.from(bytes),
          isUint8Array: bytes instanceof Uint8Array,
          seen: await client.request('web.bytes', new Uint8Array([7, 8, 9])),
          status: client.status,
        };
      }, served.url);
      assert.deepEqual(got, {
        object: { a: [1, { b: 'x' }], n: null },
        text: 'héllo ✓ "quoted"',
        number: 42.5,
        nil: null,
        async: [true, false],
        bytes: [0, 1, 255],
        isUint8Array: true,
        seen: { isBuffer: true, bytes: [7, 8, 9] },
        status: 'connected',
      });
    });

    test('a streamed reply arrives in order, and an early break cancels the server\'s stream', async () => {
      const before = served.observed.cancelled;
      const got = await run(async (web, state, url: string) => {
        const client = web.newClient(url);
        (state.clients ??= []).push(client);
        const three: number[] = [];
        for await (const n of client.stream<number>('stream', { n: 3 })) three.push(n);
        const none: number[] = [];
        for await (const n of client.stream<number>('stream', { n: 0 })) none.push(n);
        const ticks: number[] = [];
        for await (const tick of client.stream<number>('ticker')) {
          ticks.push(tick);
          if (ticks.length === 3) break;
        }
        const partial: number[] = [];
        const failed = await web.errorOf(
          (async () => {
            for await (const n of client.stream<number>('stream.fail')) partial.push(n);
          })(),
        );
        return { three, none, ticks, partial, failed, after: await client.request('echo', 'still fine') };
      }, served.url);
      assert.deepEqual(got.three, [1, 2, 3]);
      assert.deepEqual(got.none, []);
      assert.deepEqual(got.ticks, [0, 1, 2]);
      assert.deepEqual(got.partial, [1, 2]);
      assert.equal(got.failed.code, MsgTransErrorCode.REMOTE_ERROR);
      assert.equal(got.failed.message, 'mid-stream');
      assert.equal(got.after, 'still fine');
      // CANCEL reached the server: the ticker's Observable was unsubscribed
      await waitFor(() => served.observed.cancelled === before + 1, 5000);
    });

    test('server push to a room reaches on() listeners; off() stops them', async () => {
      const { sessionId } = await run(async (web, state, url: string) => {
        const client = web.newClient(url);
        (state.clients ??= []).push(client);
        state.pushClient = client;
        state.pushed = [];
        state.offChat = client.on('chat.message', (data, message) => state.pushed.push({ data, route: message.route, metadata: message.metadata ?? null }));
        client.on(42, (data, message) => state.pushed.push({ data, route: message.route, metadata: null }));
        client.on('marker', () => state.pushed.push({ data: 'marker', route: 'marker', metadata: null }));
        if ((await client.request('web.join', 'lobby')) !== true) throw new Error('join failed');
        return client.request<{ sessionId: string }>('web.whoami');
      }, served.url);
      assert.equal(served.sessions.emitToRoom('lobby', 'chat.message', { text: 'hi' }, { metadata: { from: 'server' } }), 1);
      assert.equal(served.sessions.emitTo(sessionId, 42, { biz: true }), true);
      const pushed = await run(async (web, state) => {
        await web.until(() => state.pushed.length === 2);
        state.offChat();
        return state.pushed.splice(0);
      }, null);
      assert.deepEqual(pushed, [
        { data: { text: 'hi' }, route: 'chat.message', metadata: { from: 'server' } },
        { data: { biz: true }, route: '42', metadata: null },
      ]);
      // after off(): a chat message and then a marker; only the marker is heard
      served.sessions.emitToRoom('lobby', 'chat.message', 'unheard');
      served.sessions.emitTo(sessionId, 'marker', null);
      const later = await run(async (web, state) => {
        await web.until(() => state.pushed.length >= 1);
        return state.pushed.map((p: { route: string }) => p.route);
      }, null);
      assert.deepEqual(later, ['marker']);
    });

    if (!full) return;

    test('biz_type, object patterns and metadata travel as the Node client sends them', async () => {
      const got = await run(async (web, state, url: string) => {
        const client = web.newClient(url, { metadata: { tenant: 'acme' } });
        (state.clients ??= []).push(client);
        const first = await client.request('ctx', {}, { metadata: { 'trace-id': 'a%b\nc' } });
        const second = await client.request('ctx', {});
        return {
          biz: await client.request(7, { x: 1 }),
          raw: Array.from(await client.request(10, new TextEncoder().encode('ping'))),
          sum: await client.request({ v: 1, cmd: 'sum' }, [1, 2, 3]),
          first: { messageId: first.messageId, metadata: first.metadata, pattern: first.pattern, protocol: first.protocol },
          second: { messageId: second.messageId, metadata: second.metadata },
        };
      }, served.url);
      assert.deepEqual(got.biz, { bizType: 7, pattern: '7', data: { x: 1 } });
      assert.deepEqual(got.raw, [...Buffer.from('pong')]);
      assert.equal(got.sum, 6);
      // message ids count from 1 on the connection
      assert.deepEqual(got.first, { messageId: 1, metadata: { tenant: 'acme', 'trace-id': 'a%b\nc' }, pattern: 'ctx', protocol: scheme });
      assert.deepEqual(got.second, { messageId: 2, metadata: { tenant: 'acme' } });
    });

    test('error replies reject with MsgTransWebError carrying the server\'s payload', async () => {
      const got = await run(async (web, state, url: string) => {
        const client = web.newClient(url);
        (state.clients ??= []).push(client);
        let isWebError = false;
        try {
          await client.request('fail.rpc', {});
        } catch (err) {
          isWebError = err instanceof web.MsgTransWebError;
        }
        return {
          isWebError,
          rpc: await web.errorOf(client.request('fail.rpc', {})),
          object: await web.errorOf(client.request('fail.rpc.object', {})),
          unknown: await web.errorOf(client.request('no.such.pattern', {})),
          after: await client.request('echo', 1),
        };
      }, served.url);
      assert.equal(got.isWebError, true);
      assert.deepEqual(got.rpc, {
        name: 'MsgTransWebError',
        code: MsgTransErrorCode.REMOTE_ERROR,
        message: 'bad input',
        payload: { status: 'error', message: 'bad input' },
        causeCode: undefined,
      });
      assert.deepEqual(got.object.payload, { code: 42, reason: 'nope' });
      assert.equal(got.unknown.payload, NO_MESSAGE_HANDLER);
      assert.equal(got.unknown.message, NO_MESSAGE_HANDLER);
      assert.equal(got.after, 1);
    });

    test('a request times out with ERR_MSGTRANS_TIMEOUT and the server stops producing', async () => {
      const before = served.observed.cancelled;
      const got = await run(async (web, state, url: string) => {
        const client = web.newClient(url, { requestTimeout: 30_000 });
        (state.clients ??= []).push(client);
        await client.connect();
        const started = Date.now();
        const error = await web.errorOf(client.request('never', {}, { timeout: 300 }));
        return { error, elapsed: Date.now() - started, after: await client.request('echo', 'ok') };
      }, served.url);
      assert.equal(got.error.code, MsgTransErrorCode.TIMEOUT);
      assert.ok(got.elapsed >= 250, `timed out after ${got.elapsed} ms`);
      assert.equal(got.after, 'ok');
      await waitFor(() => served.observed.cancelled === before + 1, 5000);
    });

    test('events reach @EventPattern handlers, by route and by biz_type', async () => {
      const marker = `m-${Date.now()}`;
      await run(async (web, state, arg: { url: string; marker: string }) => {
        const client = web.newClient(arg.url);
        (state.clients ??= []).push(client);
        await client.emit('event', { marker: arg.marker });
        await client.emit(12, new TextEncoder().encode(arg.marker));
      }, { url: served.url, marker });
      await waitFor(() => served.observed.events.length >= 2, 5000);
      assert.deepEqual(served.observed.events.slice(-2), [{ marker }, { biz12: marker }]);
    });

    test('server requests (sessions.sendTo) are answered by answer()', async () => {
      const { sessionId } = await run(async (web, state, url: string) => {
        const client = web.newClient(url);
        (state.clients ??= []).push(client);
        client.answer('client.status', async (data) => ({ ok: true, echo: data }));
        client.answer('client.count', async function* (n: number) {
          for (let i = 1; i <= n; i++) yield i;
        });
        client.answer('client.fail', () => {
          throw new Error('not today');
        });
        client.answer(99, (data) => data);
        state.endless = { produced: 0, stopped: false };
        client.answer('client.endless', async function* () {
          try {
            for (let i = 0; i < 100_000; i++) {
              state.endless.produced++;
              yield i;
              await new Promise((resolve) => setTimeout(resolve, 5));
            }
          } finally {
            state.endless.stopped = true;
          }
        });
        return client.request<{ sessionId: string }>('web.whoami');
      }, served.url);
      // the server takes one value and unsubscribes: its CANCEL stops the browser's generator
      assert.equal(await firstValueFrom(served.sessions.sendTo(sessionId, 'client.endless', null)), 0);
      const endless = await run(async (web, state) => {
        await web.until(() => state.endless.stopped);
        return state.endless;
      }, null);
      assert.equal(endless.stopped, true);
      assert.ok(endless.produced < 1000, `produced ${endless.produced} values after the CANCEL`);
      const ask = (pattern: unknown, data: unknown) => lastValueFrom(served.sessions.sendTo(sessionId, pattern, data).pipe(toArray()));
      assert.deepEqual(await ask('client.status', { q: 1 }), [{ ok: true, echo: { q: 1 } }]);
      assert.deepEqual(await ask('client.count', 3), [1, 2, 3]);
      assert.deepEqual(await ask(99, Buffer.from('raw')), [Buffer.from('raw')]);
      assert.deepEqual(await rejection(ask('client.fail', null), 5000, 'client.fail'), { status: 'error', message: 'not today' });
      assert.equal(await rejection(ask('client.unknown', null), 5000, 'client.unknown'), NO_MESSAGE_HANDLER);
      // and while the server handles the browser's own request
      const relayed = await run(async (web, state) => {
        const client = state.clients[state.clients.length - 1];
        return client.request('web.ask', { pattern: 'client.status', data: 'nested' });
      }, null);
      assert.deepEqual(relayed, { values: [{ ok: true, echo: 'nested' }] });
    });

    test('credentials are presented first: accepted, or refused with ERR_MSGTRANS_AUTH_FAILED', async () => {
      const got = await run(async (web, state, arg: { url: string; token: string }) => {
        const good = web.newClient(arg.url, { credentials: { token: arg.token } });
        const bad = web.newClient(arg.url, { credentials: { token: 'wrong' } });
        const anonymous = web.newClient(arg.url);
        (state.clients ??= []).push(good, bad, anonymous);
        const statuses: string[] = [];
        bad.onStatus((s) => statuses.push(s));
        await good.connect();
        return {
          good: await good.request('web.whoami'),
          anonymous: await anonymous.request('web.whoami'),
          refused: await web.errorOf(bad.connect()),
          refusedCall: await web.errorOf(bad.request('echo', 1)),
          statuses,
        };
      }, { url: served.url, token: GOOD_TOKEN });
      assert.equal(got.good.principal, 'user:good');
      assert.equal(got.anonymous.principal, 'anonymous');
      assert.equal(got.refused.code, MsgTransErrorCode.AUTH_FAILED);
      assert.deepEqual(got.refused.payload, { status: 'error', message: 'Authentication failed', code: MsgTransErrorCode.AUTH_FAILED });
      assert.equal(got.refusedCall.code, MsgTransErrorCode.AUTH_FAILED);
      assert.deepEqual(got.statuses, ['connecting', 'disconnected', 'connecting', 'disconnected']);
    });

    test('zlib-compressed payloads travel both ways', async () => {
      const got = await run(async (web, state, arg: { url: string; size: number }) => {
        const sent: number[] = [];
        const received: number[] = [];
        // records the compression byte of every packet each way
        class Spy extends (web.WebSocket as any) {
          constructor(url: string) {
            super(url);
            this.addEventListener('message', (event: { data: ArrayBuffer }) => received.push(new Uint8Array(event.data)[1]));
          }
          send(data: Uint8Array) {
            sent.push(data[1]);
            super.send(data);
          }
        }
        const client = web.newClient(arg.url, { WebSocket: Spy as any, compression: { algorithm: 'zlib', threshold: 256 } });
        (state.clients ??= []).push(client);
        const big = { text: 'compressible '.repeat(arg.size / 10), n: [1, 2, 3] };
        const echoed = await client.request('echo', big);
        const bytes = new Uint8Array(arg.size).map((_, i) => i % 7);
        const echoedBytes = await client.request('echo', bytes);
        const small = await client.request('echo', 'small');
        return {
          same: JSON.stringify(echoed) === JSON.stringify(big),
          sameBytes: echoedBytes.length === bytes.length && echoedBytes.every((b: number, i: number) => b === bytes[i]),
          small,
          sent,
          received,
        };
      }, { url: served.url, size: SERVER_COMPRESSION_THRESHOLD * 8 });
      assert.equal(got.same, true);
      assert.equal(got.sameBytes, true);
      assert.equal(got.small, 'small');
      // big request and big bytes compressed (2 = zlib), the small one not; the same for the replies
      assert.deepEqual(got.sent, [2, 2, 0]);
      assert.deepEqual(got.received, [2, 2, 0]);
    });

    test('reconnects after the server restarts: waiting calls complete, listeners survive, fail-fast calls fail', async () => {
      const port = await freePort();
      const listen = `${scheme}://127.0.0.1:${port}/msgtrans`;
      let restartable = await startWebTestServer(listen);
      try {
        await run(async (web, state, url: string) => {
          const options = { reconnect: { initialDelay: 50, maxDelay: 300 } };
          const client = web.newClient(url, options);
          const failFast = web.newClient(url, { ...options, whileDisconnected: 'fail' });
          const once = web.newClient(url, { reconnect: false });
          (state.clients ??= []).push(client, failFast, once);
          state.rc = { client, failFast, once, statuses: [], onceStatuses: [], pushed: [] };
          client.onStatus((s) => state.rc.statuses.push(s));
          once.onStatus((s) => state.rc.onceStatuses.push(s));
          client.on('news', (data) => state.rc.pushed.push(data));
          await Promise.all([client.request('echo', 1), failFast.request('echo', 1), once.request('echo', 1)]);
        }, restartable.url);
        await restartable.close();
        const during = await run(async (web, state) => {
          const { client, failFast, once } = state.rc;
          await web.until(() => client.status === 'reconnecting' && failFast.status === 'reconnecting' && once.status === 'disconnected');
          state.rc.waiting = client.request('echo', 'made while down', { timeout: 15_000 });
          state.rc.waiting.catch(() => undefined);
          return { failFast: await web.errorOf(failFast.request('echo', 1)) };
        }, null);
        assert.equal(during.failFast.code, MsgTransErrorCode.CONNECTION_CLOSED);
        restartable = await startWebTestServer(listen);
        const back = await run(async (web, state) => {
          const { client, once } = state.rc;
          return { waited: await state.rc.waiting, once: await once.request('echo', 'on demand'), status: client.status };
        }, null);
        assert.deepEqual(back, { waited: 'made while down', once: 'on demand', status: 'connected' });
        await waitFor(() => restartable.sessions.size >= 2, 5000);
        restartable.sessions.broadcast('news', 'after restart');
        const end = await run(async (web, state) => {
          await web.until(() => state.rc.pushed.length > 0);
          return { pushed: state.rc.pushed, statuses: state.rc.statuses, onceStatuses: state.rc.onceStatuses };
        }, null);
        assert.deepEqual(end.pushed, ['after restart']);
        assert.deepEqual(end.statuses.slice(0, 2), ['connecting', 'connected']);
        assert.equal(end.statuses.at(-1), 'connected');
        assert.ok(end.statuses.includes('reconnecting'), end.statuses.join());
        assert.deepEqual(end.onceStatuses, ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
      } finally {
        await restartable.close();
      }
    });

    test('close() fails pending calls with ERR_MSGTRANS_CLIENT_CLOSED and ends the session', async () => {
      const sessionsBefore = served.sessions.size;
      const got = await run(async (web, state, url: string) => {
        const client = web.newClient(url);
        await client.connect();
        const pending = web.errorOf(client.request('never', {}));
        const statuses: string[] = [];
        client.onStatus((s) => statuses.push(s));
        await client.close();
        return { pending: await pending, after: await web.errorOf(client.request('echo', 1)), statuses };
      }, served.url);
      assert.equal(got.pending.code, MsgTransErrorCode.CLIENT_CLOSED);
      assert.equal(got.after.code, MsgTransErrorCode.CLIENT_CLOSED);
      assert.deepEqual(got.statuses, ['closed']);
      await waitFor(() => served.sessions.size <= sessionsBefore, 5000);
    });
  });
}
