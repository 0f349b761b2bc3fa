/**
 * The QUIC driver uses only the native quiche binding of @matrixai/quic
 * (pinned to an exact version in package.json). If another version renames
 * or drops a member the driver calls, this fails loudly here rather than
 * as an obscure TypeError inside a connection.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { quiche, QUICHE_MEMBERS_USED } from '../../lib/transport/quic/quic-native.js';
import { QUIC_DEFAULTS } from '../../lib/index.js';

describe('the native quiche binding offers every member the QUIC driver uses', () => {
  test('module constants, constructors and functions', () => {
    const missing = QUICHE_MEMBERS_USED.module.filter((name) => (quiche as unknown as Record<string, unknown>)[name] === undefined);
    assert.deepEqual(missing, [], `missing from the binding: ${missing.join(', ')}`);
    assert.equal(quiche.MAX_CONN_ID_LEN, 20);
    assert.equal(quiche.PROTOCOL_VERSION, 1);
    assert.equal(quiche.CRYPTO_ERROR_START, 0x100);
    assert.equal(quiche.Type.Initial, 0);
    assert.equal(typeof quiche.Config.withBoringSslCtx, 'function');
    assert.equal(typeof quiche.Connection.accept, 'function');
    assert.equal(typeof quiche.Connection.connect, 'function');
    assert.equal(typeof quiche.Header.fromSlice, 'function');
  });

  test('Config methods', () => {
    const config = quiche.Config.withBoringSslCtx(false, false, undefined, undefined, undefined, undefined);
    const missing = QUICHE_MEMBERS_USED.config.filter((name) => typeof (config as unknown as Record<string, unknown>)[name] !== 'function');
    assert.deepEqual(missing, [], `Config lacks: ${missing.join(', ')}`);
  });

  test('Connection methods, on a real client connection object', () => {
    const config = quiche.Config.withBoringSslCtx(false, false, undefined, undefined, undefined, undefined);
    config.setApplicationProtos(['msgtrans']);
    const conn = quiche.Connection.connect(null, Buffer.alloc(20, 1), { host: '127.0.0.1', port: 1 }, { host: '127.0.0.1', port: 2 }, config);
    const missing = QUICHE_MEMBERS_USED.connection.filter((name) => typeof (conn as unknown as Record<string, unknown>)[name] !== 'function');
    assert.deepEqual(missing, [], `Connection lacks: ${missing.join(', ')}`);
    // shapes the driver relies on: send() gives [length, info] into the caller's buffer, timeout() ms or null
    const out = Buffer.alloc(QUIC_DEFAULTS.maxDatagramSize);
    const sent = conn.send(out);
    assert.ok(Array.isArray(sent) && typeof sent[0] === 'number' && sent[0] >= 1200, 'send() returns [length, info] with a padded Initial');
    assert.equal(typeof conn.timeout(), 'number');
    const header = quiche.Header.fromSlice(out.subarray(0, sent[0]), 20);
    assert.equal(header.ty, quiche.Type.Initial);
    assert.equal(Buffer.from(header.scid).length, 20);
  });
});
