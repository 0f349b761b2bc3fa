/**
 * The web client's Uint8Array codec (lib/browser/web-packet.ts) against the
 * reference implementation's golden packets and against the library's
 * Buffer codec: same bytes out, same fields and same errors in.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  HEADER_SIZE,
  decodeExtHeader,
  decodePacket,
  encodeExtHeader,
  encodePacket,
  type MsgTransError,
  type MsgTransPacket,
} from '../../lib/index.js';
import {
  decodeExtHeader as decodeWebExtHeader,
  decodeWebPacket,
  encodeExtHeader as encodeWebExtHeader,
  encodeWebPacket,
  type WebPacket,
} from '../../lib/browser/web-packet.js';
import { prng } from '../support/seeded-random.js';

// dist/test/browser/ -> repository root
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/msgtrans-v1/', import.meta.url));
const LIMITS = { maxPacketSize: 16 * 1024 * 1024, maxExtHeaderSize: 0xffff };

const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

/** The error code `fn` throws, or 'none'. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'none';
  } catch (err) {
    return (err as MsgTransError).code ?? String(err);
  }
}

describe('web codec', () => {
  const names = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.bin'))
    .map((f) => f.slice(0, -4))
    .sort();

  test('the golden packets are all there', () => {
    assert.equal(names.length, 8);
  });

  for (const name of names) {
    test(`golden packet ${name}: encoded byte for byte, decoded field for field`, () => {
      const bin = readFileSync(join(FIXTURES, `${name}.bin`));
      const json = JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8'));
      const packet: WebPacket = {
        compression: json.compression,
        packetType: json.packet_type,
        bizType: json.biz_type,
        messageId: json.message_id,
        flags: json.reserved,
        extHeader: Buffer.from(json.ext_header_hex, 'hex'),
        payload: Buffer.from(json.payload_hex, 'hex'),
      };
      assert.equal(hex(encodeWebPacket(packet)), bin.toString('hex'));
      const decoded = decodeWebPacket(new Uint8Array(bin), LIMITS);
      assert.deepEqual(
        { ...decoded, extHeader: hex(decoded.extHeader), payload: hex(decoded.payload) },
        { ...packet, extHeader: json.ext_header_hex, payload: json.payload_hex },
      );
    });
  }

  test('random packets and random corruptions: the same bytes and the same verdicts as lib/codec', () => {
    const random = prng(12);
    const int = (n: number) => Math.floor(random() * n);
    for (let i = 0; i < 2000; i++) {
      const packet: MsgTransPacket = {
        compression: int(3) as MsgTransPacket['compression'],
        packetType: int(3) as MsgTransPacket['packetType'],
        bizType: int(256),
        messageId: int(2 ** 32),
        flags: int(2 ** 16) & ~1,
        extHeader: Buffer.from(Array.from({ length: int(40) }, () => int(256))),
        payload: Buffer.from(Array.from({ length: int(60) }, () => int(256))),
      };
      const bytes = encodePacket(packet);
      assert.equal(hex(encodeWebPacket(packet)), bytes.toString('hex'));
      // flip one header byte, or cut the packet short, and both decoders must agree
      const bad = Buffer.from(bytes);
      if (random() < 0.8) bad[int(HEADER_SIZE)] = int(256);
      const input = random() < 0.2 ? bad.subarray(0, int(bad.length)) : bad;
      const limits = { maxPacketSize: 16 + int(120), maxExtHeaderSize: int(50) };
      assert.equal(codeOf(() => decodeWebPacket(new Uint8Array(input), limits)), codeOf(() => decodePacket(input, limits)), `case ${i}`);
    }
  });

  test('extension headers: the same bytes out and the same entries in as lib/codec', () => {
    const cases: Array<[string | undefined, Record<string, string> | undefined]> = [
      [undefined, undefined],
      ['math.sum', undefined],
      ['a%b\nc\rd', { 'trace-id': '4bf92f35', tenant: 'ac%me\n' }],
      [undefined, { only: 'metadata' }],
      ['{"cmd":"sum"}', { 'x-ünï': 'välue ✓' }],
    ];
    for (const [route, metadata] of cases) {
      const bytes = encodeExtHeader(route, metadata);
      assert.equal(hex(encodeWebExtHeader(route, metadata)), bytes.toString('hex'));
      assert.deepEqual(decodeWebExtHeader(bytes), decodeExtHeader(bytes));
    }
    for (const key of ['', 'route', 'a:b', 'a\nb']) {
      assert.equal(codeOf(() => encodeWebExtHeader('r', { [key]: 'v' })), codeOf(() => encodeExtHeader('r', { [key]: 'v' })));
    }
    for (const text of ['no colon', 'a:b\n\nc:d', 'route:x\nroute:y', '__proto__:polluted', ':empty key']) {
      const bytes = Buffer.from(text);
      assert.equal(codeOf(() => decodeWebExtHeader(bytes)), codeOf(() => decodeExtHeader(bytes)), text);
      if (codeOf(() => decodeExtHeader(bytes)) === 'none') assert.deepEqual(decodeWebExtHeader(bytes), decodeExtHeader(bytes), text);
    }
    const notUtf8 = Buffer.from([0x72, 0x3a, 0xc3, 0x28]);
    assert.equal(codeOf(() => decodeWebExtHeader(notUtf8)), codeOf(() => decodeExtHeader(notUtf8)));
  });
});
