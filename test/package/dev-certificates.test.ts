import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { describe, it } from 'node:test';
import { MsgTransConfigError, MsgTransErrorCode, createDevCertificates } from '../../lib/index.js';

describe('createDevCertificates', () => {
  it('issues a CA, a server certificate for localhost and loopback, and a client certificate it signed', async () => {
    const certs = await createDevCertificates();
    const ca = new X509Certificate(certs.ca);
    const server = new X509Certificate(certs.serverCert);
    const client = new X509Certificate(certs.clientCert);
    assert.equal(ca.ca, true);
    assert.equal(ca.verify(ca.publicKey), true);
    assert.equal(server.ca, false);
    assert.equal(server.verify(ca.publicKey), true);
    assert.equal(client.verify(ca.publicKey), true);
    assert.ok(server.checkIssued(ca));
    assert.equal(server.checkHost('localhost'), 'localhost');
    assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(server.checkIP('::1'), '::1');
    assert.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.deepEqual(client.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.equal(server.checkPrivateKey(createPrivateKey(certs.serverKey)), true);
    assert.equal(client.checkPrivateKey(createPrivateKey(certs.clientKey)), true);
    assert.ok(new Date(server.validTo).getTime() > Date.now() + 29 * 24 * 3600_000);
  });

  it('takes the host names and lifetime to issue for', async () => {
    const certs = await createDevCertificates({ hosts: ['orders.internal', '10.1.2.3', 'fd00::1:2'], validDays: 2 });
    const server = new X509Certificate(certs.serverCert);
    assert.equal(server.subject, 'CN=orders.internal');
    assert.equal(server.checkHost('orders.internal'), 'orders.internal');
    assert.equal(server.checkHost('localhost'), undefined);
    assert.equal(server.checkIP('10.1.2.3'), '10.1.2.3');
    assert.equal(server.checkIP('fd00::1:2'), 'fd00::1:2');
    assert.ok(new Date(server.validTo).getTime() < Date.now() + 3 * 24 * 3600_000);
  });

  it('refuses options it cannot honour with a typed error', async () => {
    for (const options of [{ hosts: [] }, { hosts: [''] }, { validDays: 0 }, { validDays: Number.NaN }]) {
      await assert.rejects(createDevCertificates(options), (err: unknown) => {
        assert.ok(err instanceof MsgTransConfigError);
        assert.equal(err.code, MsgTransErrorCode.INVALID_OPTION);
        return true;
      });
    }
  });
});
