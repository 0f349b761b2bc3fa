import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Injectable, Inject, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxy, ClientsModule, Transport } from '@nestjs/microservices';
import { firstValueFrom, lastValueFrom, take, toArray } from 'rxjs';
import {
  MsgTransClient,
  MsgTransConnectionError,
  MsgTransErrorCode,
  MsgTransTimeoutError,
  NO_MESSAGE_HANDLER,
  type MsgTransServer,
  type MsgTransContext,
} from '../../lib/index.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { startApp, startMsgTrans, waitFor, type RunningApp } from '../support/test-app.js';

for (const protocol of PROTOCOL_CASES) {
  describe(`Nest over msgtrans/${protocol.name}`, () => {
    let running: RunningApp & { server: MsgTransServer; url: string };
    let client: MsgTransClient;
    const clients: MsgTransClient[] = [];
    const newClient = async (extra: Partial<ConstructorParameters<typeof MsgTransClient>[0]> = {}) => {
      const c = new MsgTransClient({ ...protocol.client(running.url, await testCertificates()), ...extra });
      clients.push(c);
      return c;
    };

    before(async () => {
      running = await startMsgTrans(protocol.server(await testCertificates()));
      client = await newClient();
    });

    after(async () => {
      for (const c of clients) c.close();
      await running.close();
    });

    test('reports its bound address with the protocol and a real port', () => {
      const [address] = running.server.addresses();
      assert.equal(address.protocol, protocol.name);
      assert.ok(address.port > 0);
      assert.ok(running.url.startsWith(`${protocol.name}://`));
    });

    test('request/response with objects, strings, numbers and booleans', async () => {
      for (const value of [{ a: 1, nested: { b: [1, 'two', null] } }, 'hello', '', 42, -1.5, 0, true, false, [1, 2]]) {
        assert.deepEqual(await lastValueFrom(client.send('echo', value)), value);
      }
      assert.deepEqual(await lastValueFrom(client.send('echo.async', { later: true })), { later: true });
    });

    test('raw Buffers travel raw, including empty ones', async () => {
      const bytes = Buffer.from([0, 1, 2, 250, 255]);
      const back = await lastValueFrom(client.send<Buffer>('echo', bytes));
      assert.ok(Buffer.isBuffer(back));
      assert.deepEqual([...back], [...bytes]);
      const empty = await lastValueFrom(client.send<Buffer>('echo', Buffer.alloc(0)));
      assert.ok(Buffer.isBuffer(empty));
      assert.equal(empty.length, 0);
      const u8 = await lastValueFrom(client.send<Buffer>('echo', new Uint8Array([9, 8, 7])));
      assert.deepEqual([...u8], [9, 8, 7]);
    });

    test('an integer pattern travels as biz_type; other patterns as a route', async () => {
      assert.deepEqual(await lastValueFrom(client.send(7, 'x')), { bizType: 7, pattern: '7', data: 'x' });
      const ctx = await lastValueFrom(client.send('ctx', {}));
      assert.equal(ctx.bizType, 0);
      assert.equal(ctx.pattern, 'ctx');
      assert.equal(await lastValueFrom(client.send({ v: 1, cmd: 'sum' }, [1, 2, 3])), 6);
    });

    test('the context reports session, protocol, message id and peer', async () => {
      const a = await lastValueFrom(client.send('ctx', {}));
      const b = await lastValueFrom(client.send('ctx', {}));
      assert.equal(a.protocol, protocol.name);
      assert.equal(a.sessionId, b.sessionId);
      assert.ok(b.messageId > a.messageId && a.messageId > 0);
      assert.equal(a.remoteAddress, '127.0.0.1');
      assert.equal(a.metadata, null);
    });

    test('metadata from the dispatch hook reaches ctx.getMetadata()', async () => {
      const traced = await newClient();
      traced.setOnDispatchHook((packet) => {
        packet.metadata = { 'trace-id': '4bf92f35', odd: 'a%b\nc\rd:e' };
      });
      const ctx = await lastValueFrom(traced.send('ctx', {}));
      assert.deepEqual(ctx.metadata, { 'trace-id': '4bf92f35', odd: 'a%b\nc\rd:e' });
    });

    test('events reach @EventPattern handlers, by route and by biz_type', async () => {
      const before = running.observed.events.length;
      client.emit('event', { n: 1 });
      client.emit(12, Buffer.from('raw-event'));
      await lastValueFrom(client.emit('event', { n: 2 }));
      await waitFor(() => running.observed.events.length >= before + 3);
      assert.deepEqual(running.observed.events.slice(before), [{ n: 1 }, { biz12: 'raw-event' }, { n: 2 }]);
    });

    test('streamed replies of 0, 1 and many values', async () => {
      assert.deepEqual(await lastValueFrom(client.send('stream', { n: 0 }).pipe(toArray())), []);
      assert.deepEqual(await lastValueFrom(client.send('stream', { n: 1 }).pipe(toArray())), [1]);
      assert.deepEqual(await lastValueFrom(client.send('stream', { n: 50 }).pipe(toArray())), Array.from({ length: 50 }, (_, i) => i + 1));
    });

    test('a stream that fails midway delivers its values, then the error', async () => {
      const seen: unknown[] = [];
      const error = await new Promise((resolve) =>
        client.send('stream.fail', {}).subscribe({ next: (v) => seen.push(v), error: resolve, complete: () => resolve('completed') }),
      );
      assert.deepEqual(seen, [1, 2]);
      assert.deepEqual(error, { status: 'error', message: 'mid-stream' });
    });

    test('an unknown pattern gets an error reply, as with Nest TCP', async () => {
      await assert.rejects(lastValueFrom(client.send('no.such.pattern', {})), (err) => err === NO_MESSAGE_HANDLER);
    });

    test('early unsubscribe cancels the server-side stream', async () => {
      const cancelledBefore = running.observed.cancelled;
      const firstTwo = await lastValueFrom(client.send('ticker', {}).pipe(take(2), toArray()));
      assert.deepEqual(firstTwo, [0, 1]);
      await waitFor(() => running.observed.cancelled === cancelledBefore + 1);
      const ticks = running.observed.ticks;
      await new Promise((resolve) => setTimeout(resolve, 60));
      assert.equal(running.observed.ticks, ticks, 'the ticker kept running after CANCEL');
    });

    test('1,000 concurrent requests on one client are all answered correctly', async () => {
      const replies = await Promise.all(
        Array.from({ length: 1000 }, (_, i) => lastValueFrom(client.send(i % 2 ? 'echo' : 'echo.async', { i }))),
      );
      replies.forEach((reply, i) => assert.deepEqual(reply, { i }));
    });

    test('guards, interceptors and exception filters apply', async () => {
      assert.deepEqual(await lastValueFrom(client.send('guarded', { ok: 1 })), { allowed: { ok: 1 } });
      await assert.rejects(lastValueFrom(client.send('guarded', { deny: true })), (err: any) => err.message === 'Forbidden resource');
      assert.equal(await lastValueFrom(client.send('intercepted', 20)), 42);
      await assert.rejects(lastValueFrom(client.send('filtered', {})), (err) => {
        assert.deepEqual(err, { teapot: true });
        return true;
      });
    });

    test('a reply that cannot be encoded becomes an error, not silence', async () => {
      // the codec's own message (internals) stays on the server: the caller gets Nest's generic error and the code
      await assert.rejects(lastValueFrom(client.send('bigint', {})), (err: any) => {
        assert.deepEqual(err, { status: 'error', message: 'Internal server error', code: MsgTransErrorCode.ENCODE_FAILED });
        return true;
      });
    });

    test('the request timeout rejects with a typed error and cancels the handler', async () => {
      const impatient = await newClient({ requestTimeout: 80 });
      const cancelledBefore = running.observed.cancelled;
      await assert.rejects(lastValueFrom(impatient.send('never', {})), (err) => {
        assert.ok(err instanceof MsgTransTimeoutError);
        assert.equal(err.code, MsgTransErrorCode.TIMEOUT);
        return true;
      });
      await waitFor(() => running.observed.cancelled === cancelledBefore + 1);
      // the connection is still good
      assert.equal(await lastValueFrom(impatient.send('echo', 1)), 1);
    });

    test('close() fails pending requests at once with a clear error', async () => {
      const closing = await newClient();
      await closing.connect();
      const pending = lastValueFrom(closing.send('never', {}));
      await new Promise((resolve) => setTimeout(resolve, 20));
      closing.close();
      await assert.rejects(pending, (err) => {
        assert.ok(err instanceof MsgTransConnectionError);
        assert.equal(err.code, MsgTransErrorCode.CLIENT_CLOSED);
        return true;
      });
    });

    test('a dropped connection fails pending requests and the next call reconnects', async () => {
      const victim = await newClient();
      const { sessionId } = await lastValueFrom(victim.send('ctx', {}));
      const pending = lastValueFrom(victim.send('never', {}));
      await new Promise((resolve) => setTimeout(resolve, 20));
      // the server drops this client's session
      const serverSide = running.server.getSessions().get(sessionId);
      assert.ok(serverSide, 'server-side session found');
      serverSide.close();
      await assert.rejects(pending, (err) => {
        assert.ok(err instanceof MsgTransConnectionError);
        assert.equal(err.code, MsgTransErrorCode.CONNECTION_CLOSED);
        return true;
      });
      assert.equal(await lastValueFrom(victim.send('echo', 'again')), 'again');
    });

    test('server status and connection events', async () => {
      const statuses: string[] = [];
      const sub = running.server.status.subscribe((s) => statuses.push(s));
      assert.deepEqual(statuses, ['connected']);
      sub.unsubscribe();
      const connected: string[] = [];
      const disconnected: string[] = [];
      running.server.on('connect', (s) => connected.push(s.id));
      running.server.on('disconnect', (s) => disconnected.push(s.id));
      const c = await newClient();
      await lastValueFrom(c.send('echo', 1));
      await waitFor(() => connected.length === 1);
      c.close();
      await waitFor(() => disconnected.length === 1);
      assert.equal(connected[0], disconnected[0]);
    });

    test('works through ClientsModule.register({ customClass })', async () => {
      @Injectable()
      class Caller {
        constructor(@Inject('MATH') readonly client: ClientProxy) {}
      }
      @Module({
        imports: [
          ClientsModule.register([
            { name: 'MATH', customClass: MsgTransClient, options: protocol.client(running.url, await testCertificates()) },
          ]),
        ],
        providers: [Caller],
      })
      class CallerModule {}
      const app = await NestFactory.createApplicationContext(CallerModule, { logger: false });
      const caller = app.get(Caller);
      assert.ok(caller.client instanceof MsgTransClient);
      assert.equal(await firstValueFrom(caller.client.send({ cmd: 'sum', v: 1 }, [4, 5])), 9);
      await app.close();
    });
  });
}

describe('error shapes match Nest TCP', () => {
  let nestTcp: RunningApp;
  let msgtrans: RunningApp & { url: string };
  let nestClient: { send: ClientProxy["send"]; close(): unknown };
  let client: MsgTransClient;

  before(async () => {
    nestTcp = await startApp({ transport: Transport.TCP, options: { host: '127.0.0.1', port: 0 } } as any);
    const port = (nestTcp.app as any).serverInstance?.server?.address()?.port ??
      ((nestTcp.app as any).server?.server?.address()?.port);
    assert.ok(port, 'Nest TCP port found');
    const { ClientTCP } = await import('@nestjs/microservices');
    nestClient = new ClientTCP({ host: '127.0.0.1', port });
    msgtrans = await startMsgTrans({ listen: 'tcp://127.0.0.1:0' });
    client = new MsgTransClient({ url: msgtrans.url });
  });

  after(async () => {
    nestClient.close();
    client.close();
    await nestTcp.close();
    await msgtrans.close();
  });

  for (const pattern of ['fail.rpc', 'fail.rpc.object', 'fail.plain', 'fail.async', 'no.such.pattern']) {
    test(pattern, async () => {
      const fromNest = await lastValueFrom(nestClient.send(pattern, {})).then(
        () => assert.fail('Nest TCP did not fail'),
        (err) => err,
      );
      const fromMsgTrans = await lastValueFrom(client.send(pattern, {})).then(
        () => assert.fail('msgtrans did not fail'),
        (err) => err,
      );
      assert.deepEqual(fromMsgTrans, fromNest);
    });
  }
});

describe('processing hooks (Nest 12 instrumentation)', () => {
  let running: RunningApp & { server: MsgTransServer; url: string };
  let client: MsgTransClient;
  const started: string[] = [];
  const ended: string[] = [];

  before(async () => {
    running = await startMsgTrans({ listen: 'tcp://127.0.0.1:0' });
    running.server.setOnProcessingStartHook((_transport, context, done) => {
      started.push((context as MsgTransContext).getPattern());
      return done();
    });
    running.server.setOnProcessingEndHook((_transport, context) => {
      ended.push((context as MsgTransContext).getPattern());
    });
    client = new MsgTransClient({ url: running.url });
  });

  after(async () => {
    client.close();
    await running.close();
  });

  test('wrap every request, stream and event exactly once, and replies still arrive', async () => {
    assert.equal(await lastValueFrom(client.send('echo', 1)), 1);
    assert.deepEqual(await lastValueFrom(client.send('stream', { n: 3 }).pipe(toArray())), [1, 2, 3]);
    await assert.rejects(lastValueFrom(client.send('fail.rpc', {})));
    await lastValueFrom(client.emit('event', 'hooked'));
    await waitFor(() => ended.length === 4);
    assert.deepEqual(started.sort(), ['echo', 'event', 'fail.rpc', 'stream']);
    assert.deepEqual(ended.sort(), ['echo', 'event', 'fail.rpc', 'stream']);
  });
});
