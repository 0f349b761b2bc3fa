/**
 * Per-call options of the client (MsgTransRecord: metadata and timeout, on
 * send and emit), Nest's serializeResponse/serializeError overrides, and
 * typed errors of client methods used too early. Real sockets over loopback.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Logger } from '@nestjs/common';
import { lastValueFrom } from 'rxjs';
import {
  MsgTransClient,
  MsgTransConfigError,
  MsgTransError,
  MsgTransErrorCode,
  MsgTransRecord,
  MsgTransRecordBuilder,
  MsgTransTimeoutError,
  type MsgTransClientOptions,
  type MsgTransContext,
} from '../../lib/index.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { startMsgTrans, waitFor } from '../support/test-app.js';
import { rejection, within } from '../support/async.js';

const clients: MsgTransClient[] = [];
const closers: (() => Promise<void>)[] = [];

before(() => Logger.overrideLogger(false));
after(async () => {
  for (const c of clients) c.close();
  for (const close of closers) await close();
});

function newClient(options: MsgTransClientOptions): MsgTransClient {
  const client = new MsgTransClient(options);
  clients.push(client);
  return client;
}

for (const protocol of PROTOCOL_CASES) {
  describe(`MsgTransRecord over ${protocol.name}`, () => {
    let url: string;
    let client: MsgTransClient;
    let observed: { cancelled: number };
    const events: { data: unknown; metadata: unknown }[] = [];

    before(async () => {
      const certs = await testCertificates();
      const running = await startMsgTrans(protocol.server(certs));
      closers.push(() => running.close());
      running.server.addHandler(
        'meta.event',
        async (data: unknown, ctx: MsgTransContext) => {
          events.push({ data, metadata: ctx.getMetadata() ?? null });
        },
        true,
      );
      url = running.url;
      observed = running.observed;
      client = newClient({ ...protocol.client(url, certs), requestTimeout: 300 });
    });

    test('metadata reaches ctx.getMetadata(); the handler gets the data alone', async () => {
      const reply = await within(
        lastValueFrom(client.send('ctx', new MsgTransRecord({ q: 1 }, { metadata: { tenant: 'acme', 'trace-id': 't1' } }))),
        5000,
        'ctx',
      );
      assert.deepEqual(reply.metadata, { tenant: 'acme', 'trace-id': 't1' });
      const echoed = await within(lastValueFrom(client.send('echo', new MsgTransRecordBuilder({ a: 1 }).setMetadata({ k: 'v' }).build())), 5000, 'echo');
      assert.deepEqual(echoed, { a: 1 });
    });

    test('a record timeout overrides requestTimeout, shorter and longer, and cancels the handler', async () => {
      const cancelledBefore = observed.cancelled;
      let startedAt = Date.now();
      const longer = await rejection(lastValueFrom(client.send('never', new MsgTransRecord({}, { timeout: 1200 }))), 8000, 'longer');
      const tookLonger = Date.now() - startedAt;
      assert.ok(longer instanceof MsgTransTimeoutError, String(longer));
      assert.equal(longer.timeoutMs, 1200);
      assert.ok(tookLonger >= 1000, `a 1200 ms call timed out after ${tookLonger} ms (requestTimeout is 300)`);

      // a default call sent after a long one still times out on its own schedule
      startedAt = Date.now();
      const long = lastValueFrom(client.send('never', new MsgTransRecord({}, { timeout: 60_000 })));
      long.catch(() => undefined);
      const short = await rejection(lastValueFrom(client.send('never', {})), 5000, 'default timeout behind a long one');
      assert.ok(short instanceof MsgTransTimeoutError);
      assert.equal(short.timeoutMs, 300);
      assert.ok(Date.now() - startedAt < 3000);
      await waitFor(() => observed.cancelled >= cancelledBefore + 2, 3000);
    });

    test('emit carries the record metadata; the handler gets the data alone', async () => {
      await within(lastValueFrom(client.emit('meta.event', new MsgTransRecord({ e: 1 }, { metadata: { tenant: 'acme' } }))), 5000, 'emit');
      await waitFor(() => events.length === 1, 3000);
      assert.deepEqual(events[0], { data: { e: 1 }, metadata: { tenant: 'acme' } });
    });
  });
}

describe('MsgTransRecord', () => {
  test('merges its metadata over the dispatch hook, and checks its timeout', async () => {
    const certs = await testCertificates();
    const tcp = PROTOCOL_CASES[0];
    const running = await startMsgTrans(tcp.server(certs));
    closers.push(() => running.close());
    const client = newClient(tcp.client(running.url, certs));
    client.setOnDispatchHook((packet) => (packet.metadata = { trace: 'hook', tenant: 'hook' }));
    const reply = await within(lastValueFrom(client.send('ctx', new MsgTransRecord(1, { metadata: { tenant: 'record' } }))), 5000, 'ctx');
    assert.deepEqual(reply.metadata, { trace: 'hook', tenant: 'record' });
    assert.throws(
      () => new MsgTransRecord(1, { timeout: -1 }),
      (err: unknown) => err instanceof MsgTransConfigError && err.code === MsgTransErrorCode.INVALID_OPTION,
    );
  });
});

describe('serializeResponse / serializeError overrides (issue 9 item 21)', () => {
  class MappingClient extends MsgTransClient {
    protected override serializeResponse(response: unknown): unknown {
      return { mapped: response };
    }
    protected override serializeError(err: unknown): unknown {
      return { mappedError: (err as { message?: string })?.message ?? err };
    }
  }

  test('are applied to every value and error, as with Nest clients', async () => {
    const certs = await testCertificates();
    const tcp = PROTOCOL_CASES[0];
    const running = await startMsgTrans(tcp.server(certs));
    closers.push(() => running.close());
    const client = new MappingClient(tcp.client(running.url, certs));
    clients.push(client);
    assert.deepEqual(await within(lastValueFrom(client.send('echo', 'x')), 5000, 'echo'), { mapped: 'x' });
    const { toArray } = await import('rxjs');
    assert.deepEqual(await within(lastValueFrom(client.send('stream', { n: 2 }).pipe(toArray())), 5000, 'stream'), [
      { mapped: 1 },
      { mapped: 2 },
    ]);
    assert.deepEqual(await rejection(lastValueFrom(client.send('fail.rpc', {})), 5000, 'fail.rpc'), { mappedError: 'bad input' });
  });
});

describe('client methods used too early (issue 9 item 22)', () => {
  test('unwrap() before connect throws a typed ERR_MSGTRANS_NOT_CONNECTED', () => {
    const client = newClient({ url: 'tcp://127.0.0.1:1', reconnect: false });
    assert.throws(
      () => client.unwrap(),
      (err: unknown) =>
        err instanceof MsgTransError && err.code === MsgTransErrorCode.NOT_CONNECTED && /tcp:\/\/127\.0\.0\.1:1/.test(err.message),
    );
  });
});
