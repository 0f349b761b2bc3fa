/**
 * QUIC `loopbackDatagramSize`: between two ends on this host (a client
 * dialling a loopback address, a server listening on one) datagrams may be
 * as large as loopback's 64 KiB MTU allows, instead of the 1,350 bytes that
 * are safe on real paths; the option is validated, and setting it to
 * `maxDatagramSize` keeps one size everywhere. Datagram sizes are read on
 * the server's own UDP socket.
 */
import assert from 'node:assert/strict';
import type * as dgram from 'node:dgram';
import { before, describe, test } from 'node:test';
import { MsgTransConfigError, MsgTransErrorCode, parseEndpoint, QuicProtocol, type MsgTransConnection, type QuicProtocolOptions } from '../../lib/index.js';
import { resolveSessionOptions } from '../../lib/common/resolve-options.js';
import { isLoopbackAddress } from '../../lib/transport/quic/quic-config.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { encode, ONE_WAY } from '../support/raw-wire.js';
import { testCertificates } from '../support/protocols.js';
import { within } from '../support/async.js';

let certs: DevCertificates;
before(async () => {
  certs = await testCertificates();
});

const PAYLOAD = 256 * 1024;

/**
 * Sends one 256 KiB packet each way between a listener and a client with
 * these options; resolves with the largest datagram the server received
 * and the largest it sent.
 */
async function largestDatagrams(serverOptions: QuicProtocolOptions, clientOptions: QuicProtocolOptions, url = 'quic://127.0.0.1:0'): Promise<{ received: number; sent: number }> {
  const limits = resolveSessionOptions({}).limits;
  const listener = new QuicProtocol(serverOptions).createListener(parseEndpoint(url), {
    limits,
    tls: { key: certs.serverKey, cert: certs.serverCert },
    heartbeatInterval: 15_000,
  });
  const packet = encode({ packetType: ONE_WAY, messageId: 0, payload: Buffer.alloc(PAYLOAD, 7) });
  let serverGot!: () => void;
  const serverDone = new Promise<void>((resolve) => (serverGot = resolve));
  const accepted: MsgTransConnection[] = [];
  const address = await listener.listen((connection) => {
    accepted.push(connection);
    connection.open({
      onPacket: (p) => {
        if (p.payload.length !== PAYLOAD) return;
        serverGot();
        connection.send(packet);
      },
      onClose: () => undefined,
    });
  });
  const socket = listener.unwrap<dgram.Socket>();
  let received = 0;
  let sent = 0;
  socket.on('message', (msg) => (received = Math.max(received, msg.length)));
  const send = socket.send;
  socket.send = function (this: dgram.Socket, ...args: unknown[]) {
    sent = Math.max(sent, typeof args[2] === 'number' ? args[2] : (args[0] as Buffer).length);
    return (send as (...a: unknown[]) => void).apply(this, args);
  } as typeof socket.send;
  const client = await within(
    new QuicProtocol(clientOptions).connect(parseEndpoint(address.url), { limits, tls: { ca: certs.ca }, connectTimeout: 5_000, heartbeatInterval: 15_000 }),
    10_000,
    'connect',
  );
  try {
    let clientGot!: () => void;
    const clientDone = new Promise<void>((resolve) => (clientGot = resolve));
    client.open({ onPacket: (p) => p.payload.length === PAYLOAD && clientGot(), onClose: () => undefined });
    client.send(packet);
    await within(serverDone, 10_000, 'server received 256 KiB');
    await within(clientDone, 10_000, 'client received 256 KiB');
    return { received, sent };
  } finally {
    client.close();
    for (const c of accepted) c.close();
    await listener.close();
  }
}

describe('QUIC loopbackDatagramSize', () => {
  test('by default, datagrams between ends on this host exceed maxDatagramSize (1,350) both ways', async () => {
    const { received, sent } = await largestDatagrams({}, {});
    assert.ok(received > 1350 && received <= 65527, `largest datagram received by the server: ${received}`);
    assert.ok(sent > 1350 && sent <= 65527, `largest datagram sent by the server: ${sent}`);
  });

  test('over IPv6 loopback too', async () => {
    const { received, sent } = await largestDatagrams({}, {}, 'quic://[::1]:0');
    assert.ok(received > 1350 && sent > 1350, `largest datagrams: received ${received}, sent ${sent}`);
  });

  test('loopbackDatagramSize equal to maxDatagramSize keeps every datagram within it', async () => {
    const options = { maxDatagramSize: 1350, loopbackDatagramSize: 1350 };
    const { received, sent } = await largestDatagrams(options, options);
    assert.ok(received <= 1350, `largest datagram received by the server: ${received}`);
    assert.ok(sent <= 1350, `largest datagram sent by the server: ${sent}`);
  });

  test('the smaller of the two ends wins: a client limited to 1,350 bytes gets nothing larger', async () => {
    const { received, sent } = await largestDatagrams({}, { loopbackDatagramSize: 1350 });
    assert.ok(received <= 1350, `largest datagram received by the server: ${received}`);
    assert.ok(sent <= 1350, `largest datagram sent by the server: ${sent}`);
  });

  test('invalid values are refused with ERR_MSGTRANS_INVALID_OPTION', () => {
    for (const loopbackDatagramSize of [1000, 70_000, 1500.5, Number.NaN]) {
      assert.throws(
        () => new QuicProtocol({ loopbackDatagramSize }),
        (err: unknown) => err instanceof MsgTransConfigError && err.code === MsgTransErrorCode.INVALID_OPTION && /loopbackDatagramSize/.test(err.message),
        String(loopbackDatagramSize),
      );
    }
  });

  test('only addresses of this host count as loopback', () => {
    for (const address of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopbackAddress(address), true, address);
    for (const address of ['10.0.0.1', '192.168.1.127', '0.0.0.0', '::', '::2', 'fe80::1', '::ffff:10.0.0.1', '1.127.0.0']) {
      assert.equal(isLoopbackAddress(address), false, address);
    }
  });
});
