/**
 * Options of the QUIC protocol (`new QuicProtocol({...})` in `protocols`):
 * datagram size, Retry, ALPN, and their validation. Real sockets over
 * loopback with the shared test app.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { lastValueFrom } from 'rxjs';
import {
  MsgTransClient,
  MsgTransConfigError,
  MsgTransErrorCode,
  parseEndpoint,
  QuicProtocol,
  type MsgTransConnection,
  type QuicProtocolOptions,
} from '../../lib/index.js';
import { resolveSessionOptions } from '../../lib/common/resolve-options.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { testCertificates } from '../support/protocols.js';
import { startMsgTrans } from '../support/test-app.js';
import { rejection, within } from '../support/async.js';

let certs: DevCertificates;
before(async () => {
  certs = await testCertificates();
});

/** A server and a client with these QUIC options; runs `body`, then closes both. */
async function withPair(
  serverOptions: QuicProtocolOptions,
  clientOptions: QuicProtocolOptions,
  body: (client: MsgTransClient, sessions: () => number) => Promise<void>,
): Promise<void> {
  const running = await startMsgTrans({
    listen: 'quic://127.0.0.1:0',
    tls: { key: certs.serverKey, cert: certs.serverCert },
    protocols: [new QuicProtocol(serverOptions)],
  });
  const client = new MsgTransClient({ url: running.url, tls: { ca: certs.ca }, protocols: [new QuicProtocol(clientOptions)], reconnect: false });
  try {
    await body(client, () => running.server.sessions.size);
  } finally {
    client.close();
    await running.close();
  }
}

describe('QUIC options', () => {
  test('maxDatagramSize: large datagrams (loopback) carry a 1 MiB echo', async () => {
    await withPair({ maxDatagramSize: 65_000 }, { maxDatagramSize: 65_000 }, async (client) => {
      const big = 'z'.repeat(1024 * 1024);
      assert.equal(await within(lastValueFrom(client.send('echo', big)), 20_000, '1 MiB echo'), big);
    });
  });

  test('retry: false serves without address validation, one session per client', async () => {
    await withPair({ retry: false }, {}, async (client, sessions) => {
      for (let i = 0; i < 5; i++) assert.equal(await within(lastValueFrom(client.send('echo', i)), 10_000, 'echo'), i);
      assert.equal(sessions(), 1);
    });
  });

  test('a custom ALPN on both ends works; a mismatch fails saying so', async () => {
    await withPair({ alpn: 'acme/1' }, { alpn: 'acme/1' }, async (client) => {
      assert.equal(await within(lastValueFrom(client.send('echo', 'a')), 10_000, 'echo'), 'a');
    });
    await withPair({ alpn: 'acme/1' }, {}, async (client) => {
      const error = await rejection(client.connect(), 10_000, 'ALPN mismatch');
      assert.match((error as Error).message, /ALPN|application protocol/);
    });
  });

  test('invalid values are refused with ERR_MSGTRANS_INVALID_OPTION', () => {
    for (const options of [{ maxDatagramSize: 1000 }, { maxDatagramSize: 70_000 }, { alpn: '' }, { statelessResetKey: 'short' }, { handshakeTimeout: -1 }]) {
      assert.throws(
        () => new QuicProtocol(options),
        (err: unknown) => err instanceof MsgTransConfigError && err.code === MsgTransErrorCode.INVALID_OPTION,
        JSON.stringify(options),
      );
    }
  });
});

describe('QUIC connections count from their first packet', () => {
  test("with the server's maxConnections in the listen context, the listener holds at most that plus 64 (handshakes included)", async () => {
    const limits = resolveSessionOptions({}).limits;
    const quic = new QuicProtocol();
    const listener = quic.createListener(parseEndpoint('quic://127.0.0.1:0'), {
      limits,
      tls: { key: certs.serverKey, cert: certs.serverCert },
      heartbeatInterval: 15_000,
      maxConnections: 2,
    });
    const accepted: MsgTransConnection[] = [];
    const address = await listener.listen((c) => {
      accepted.push(c);
      c.open({ onPacket: () => undefined, onClose: () => undefined });
    });
    const dial = () =>
      quic.connect(parseEndpoint(address.url), { limits, tls: { ca: certs.ca }, connectTimeout: 1500, heartbeatInterval: 15_000 });
    const outcomes = await within(Promise.allSettled(Array.from({ length: 70 }, dial)), 20_000, '70 connects');
    const connected = outcomes.filter((o) => o.status === 'fulfilled').map((o) => (o as PromiseFulfilledResult<MsgTransConnection>).value);
    try {
      assert.equal(connected.length, 66, `${connected.length} of 70 connected`);
      for (const o of outcomes) {
        if (o.status === 'rejected') assert.match(String(o.reason), /did not complete|timed out/);
      }
    } finally {
      for (const c of connected) c.close();
      for (const c of accepted) c.close();
      await listener.close();
    }
  });
});
