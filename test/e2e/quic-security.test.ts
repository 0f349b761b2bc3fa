/**
 * QUIC verifies certificates exactly as tls:// does (issue 9 item 2): the
 * chain is validated by BoringSSL against the configured CA (basic
 * constraints, key usage, purpose), then the dialled host or IP is checked
 * on the leaf. Mutual TLS on the server the same way. Failures name their
 * cause. Real sockets over loopback, at the protocol layer (no Nest app).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import {
  MsgTransErrorCode,
  parseEndpoint,
  QuicConnectionError,
  type MsgTransConnection,
  type MsgTransListener,
  type MsgTransTlsOptions,
} from '../../lib/index.js';
import { protocolFor, protocolTable, resolveSessionOptions } from '../../lib/common/resolve-options.js';
import { createTrickyCertificates, type KeyAndChain, type TrickyCertificates } from '../support/cert-chains.js';
import { within } from '../support/async.js';
import { testCertificates } from '../support/protocols.js';

const limits = resolveSessionOptions({}).limits;
const table = protocolTable();
const WAIT = 8000;

interface Served {
  url: string;
  accepted: MsgTransConnection[];
  listener: MsgTransListener;
}

async function serve(scheme: 'quic' | 'tls', tls: MsgTransTlsOptions): Promise<Served> {
  const endpoint = parseEndpoint(`${scheme}://127.0.0.1:0`);
  const listener = protocolFor(table, scheme).createListener(endpoint, { limits, tls, heartbeatInterval: 15_000 });
  const accepted: MsgTransConnection[] = [];
  const address = await listener.listen((c) => {
    accepted.push(c);
    c.open({ onPacket: () => undefined, onClose: () => undefined });
  });
  return { url: address.url, accepted, listener };
}

async function dial(url: string, tls: MsgTransTlsOptions): Promise<MsgTransConnection> {
  const endpoint = parseEndpoint(url);
  const connection = await protocolFor(table, endpoint.protocol).connect(endpoint, { limits, tls, connectTimeout: 5000, heartbeatInterval: 15_000 });
  connection.open({ onPacket: () => undefined, onClose: () => undefined });
  return connection;
}

/**
 * TLS 1.3: a client has finished its handshake before the server judges
 * its certificate, so a refusal arrives either as a failed connect or as
 * the connection closing with an error right after.
 */
async function refusal(url: string, tls: MsgTransTlsOptions): Promise<Error> {
  const endpoint = parseEndpoint(url);
  const closed = new Promise<Error | undefined>((resolve) => {
    void protocolFor(table, endpoint.protocol)
      .connect(endpoint, { limits, tls, connectTimeout: 5000, heartbeatInterval: 15_000 })
      .then(
        (c) => c.open({ onPacket: () => undefined, onClose: resolve }),
        resolve,
      );
  });
  const error = await within(closed, WAIT, 'refusal');
  assert.ok(error, 'the connection was not refused');
  return error;
}

async function stop(served: Served): Promise<void> {
  for (const c of served.accepted) c.close();
  await served.listener.close();
}

/** Connects with `tls` to a server presenting `server`; returns the client's error, or undefined when it connected. */
async function attempt(scheme: 'quic' | 'tls', server: KeyAndChain, tls: MsgTransTlsOptions): Promise<Error | undefined> {
  const served = await serve(scheme, { key: server.key, cert: server.cert });
  try {
    const connection = await within(dial(served.url, tls), WAIT, `${scheme} connect`).catch((err: Error) => err);
    if (connection instanceof Error) return connection;
    connection.close();
    return undefined;
  } finally {
    await stop(served);
  }
}

describe('QUIC certificate verification is BoringSSL against the configured CA, as on tls://', () => {
  let certs: TrickyCertificates;
  before(async () => {
    certs = await createTrickyCertificates();
  });

  for (const scheme of ['tls', 'quic'] as const) {
    test(`${scheme}: a proper server certificate from the CA is accepted (control)`, async () => {
      assert.equal(await attempt(scheme, certs.server, { ca: certs.ca }), undefined);
    });

    test(`${scheme}: a server certificate signed by a CA:false end-entity certificate of the CA is refused`, async () => {
      const error = await attempt(scheme, certs.serverViaEndEntity, { ca: certs.ca });
      assert.ok(error, 'the impostor was accepted');
    });

    test(`${scheme}: a server certificate whose extended key usage is clientAuth only is refused`, async () => {
      const error = await attempt(scheme, certs.serverClientAuthOnly, { ca: certs.ca });
      assert.ok(error, 'a client-only certificate was accepted as a server');
    });
  }

  test('quic: the refusals are typed and name the cause', async () => {
    const impostor = await attempt('quic', certs.serverViaEndEntity, { ca: certs.ca });
    assert.ok(impostor instanceof QuicConnectionError, String(impostor));
    assert.equal(impostor.code, MsgTransErrorCode.CONNECT_FAILED);
    assert.ok(impostor.quicErrorCode! >= 0x100 && impostor.quicErrorCode! <= 0x1ff, `a TLS error code, got ${impostor.quicErrorCode}`);
    assert.match(impostor.message, /TLS error/);

    const purpose = await attempt('quic', certs.serverClientAuthOnly, { ca: certs.ca });
    assert.ok(purpose instanceof QuicConnectionError);
    assert.match(purpose.message, /purpose|unsupported certificate|bad certificate/i);

    const noCa = await attempt('quic', certs.server, {});
    assert.ok(noCa instanceof QuicConnectionError);
    assert.match(noCa.message, /unknown CA/);
    assert.match(noCa.message, /no tls\.ca is configured/);

    const otherCa = await attempt('quic', certs.server, { ca: (await testCertificates()).ca });
    assert.ok(otherCa instanceof QuicConnectionError);
    assert.match(otherCa.message, /not trusted|unknown CA/);
    assert.doesNotMatch(otherCa.message, /no tls\.ca/);
  });

  test('quic: the dialled name is checked on the leaf (IP SAN for addresses, DNS name otherwise)', async () => {
    const wrongIp = await attempt('quic', certs.serverOtherName, { ca: certs.ca });
    assert.ok(wrongIp instanceof QuicConnectionError);
    assert.match(wrongIp.message, /host name mismatch.*IP address "127\.0\.0\.1"/);

    const wrongName = await attempt('quic', certs.server, { ca: certs.ca, servername: 'elsewhere.example' });
    assert.ok(wrongName instanceof QuicConnectionError);
    assert.match(wrongName.message, /host name mismatch.*host name "elsewhere\.example"/);

    assert.equal(await attempt('quic', certs.serverOtherName, { ca: certs.ca, servername: 'elsewhere.example' }), undefined);
    assert.equal(await attempt('quic', certs.server, { ca: certs.ca, servername: 'localhost' }), undefined);
  });

  test('quic: rejectUnauthorized: false connects to any certificate (development only)', async () => {
    assert.equal(await attempt('quic', certs.serverViaEndEntity, { rejectUnauthorized: false }), undefined);
  });

  describe('mutual TLS on the QUIC server', () => {
    let served: Served;
    before(async () => {
      served = await serve('quic', { key: certs.server.key, cert: certs.server.cert, ca: certs.ca, requestCert: true });
    });

    test('a client certificate from the CA is accepted and reaches the connection', async () => {
      const connection = await within(dial(served.url, { ca: certs.ca, ...certs.client }), WAIT, 'connect');
      try {
        const deadline = Date.now() + WAIT;
        while (served.accepted.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        const last = served.accepted[served.accepted.length - 1];
        assert.match(last.peerCertificate?.subject ?? '', /CN=good client/);
      } finally {
        connection.close();
      }
    });

    test('a client certificate signed by a CA:false end-entity certificate is refused', async () => {
      const before = served.accepted.length;
      const error = await refusal(served.url, { ca: certs.ca, ...certs.clientViaEndEntity });
      assert.ok(error instanceof QuicConnectionError, String(error));
      assert.match(error.message, /closed by the peer: TLS error/);
      assert.equal(served.accepted.length, before, 'the server accepted the impostor');
    });

    test('a client without a certificate is refused with a cause that says so', async () => {
      const error = await refusal(served.url, { ca: certs.ca });
      assert.ok(error instanceof QuicConnectionError);
      assert.match(error.message, /certificate is required|certificate/i);
    });

    test('close', async () => {
      await stop(served);
    });
  });
});
