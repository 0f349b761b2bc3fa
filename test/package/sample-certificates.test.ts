import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createDevCertificates } from '../../lib/index.js';
import { loadOrCreateCertificates } from '../../sample/certs.js';
import { sleep } from '../support/async.js';

describe('the sample certificates (npm start)', () => {
  it('are made on first run and reused while valid', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'msgtrans-certs-'));
    try {
      const first = await loadOrCreateCertificates(dir);
      assert.equal(await readFile(join(dir, 'server.pem'), 'utf8'), first.serverCert);
      assert.deepEqual(await loadOrCreateCertificates(dir), first);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('are made afresh when the ones on disk have expired or are not certificates', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'msgtrans-certs-'));
    try {
      // valid for about a second, then expired
      const expired = await createDevCertificates({ validDays: 1 / 86_400 });
      await loadOrCreateCertificates(dir);
      await Promise.all([
        writeFile(join(dir, 'ca.pem'), expired.ca),
        writeFile(join(dir, 'server.pem'), expired.serverCert),
        writeFile(join(dir, 'server-key.pem'), expired.serverKey),
        writeFile(join(dir, 'client.pem'), expired.clientCert),
        writeFile(join(dir, 'client-key.pem'), expired.clientKey),
      ]);
      await sleep(1100);
      const renewed = await loadOrCreateCertificates(dir);
      assert.notEqual(renewed.serverCert, expired.serverCert);
      assert.equal(await readFile(join(dir, 'server.pem'), 'utf8'), renewed.serverCert);
      await writeFile(join(dir, 'ca.pem'), 'not a certificate');
      assert.notEqual((await loadOrCreateCertificates(dir)).ca, 'not a certificate');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
