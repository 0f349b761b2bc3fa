import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonCodec } from '../../lib/envelope/json-codec.js';
import {
  Compression,
  PacketFlag,
  PacketType,
  decodePacket,
  encodeExtHeader,
  encodePacket,
  encodeTextPacket,
} from '../../lib/codec/index.js';

const LIMITS = { maxPacketSize: 16 * 1024 * 1024, maxExtHeaderSize: 64 * 1024 };

describe('encodeTextPacket', () => {
  test('is byte for byte what encodePacket makes of the same UTF-8 payload', () => {
    const ext = encodeExtHeader('orders.get', { 'msgtrans-timeout': '5000' });
    const large = 'c'.repeat(300_000);
    // past the slab: ASCII, non-ASCII from the start, and non-ASCII only at the very end
    for (const text of ['', 'x', '{"a":1}', 'é€😀'.repeat(50), 'a'.repeat(1024), 'b'.repeat(1025), 'é'.repeat(5000), large + '😀', '€' + large]) {
      const fields = { compression: Compression.NONE, packetType: PacketType.REQUEST, bizType: 7, messageId: 0xfedcba98, flags: PacketFlag.CODEC | PacketFlag.HAS_ROUTE_TAG };
      const text_ = encodeTextPacket(fields.compression, fields.packetType, fields.bizType, fields.messageId, fields.flags, ext, text);
      const plain = encodePacket({ ...fields, extHeader: ext, payload: Buffer.from(text, 'utf8') });
      assert.deepEqual(text_, plain, `payload of ${text.length} chars`);
    }
  });

  test('packets stay intact after the shared buffer they were written into is replaced, many times over', () => {
    const made: { text: string; packet: Buffer }[] = [];
    // ~3,000 packets of up to 1,000 chars of 1–4-byte characters: well past several 16 KiB slabs
    for (let i = 0; i < 3000; i++) {
      const text = `${i}:` + '€a😀'.repeat(i % 250);
      made.push({ text, packet: encodeTextPacket(0, PacketType.RESPONSE, 0, i + 1, PacketFlag.CODEC, Buffer.alloc(0), text) });
    }
    for (const [i, { text, packet }] of made.entries()) {
      const decoded = decodePacket(packet, LIMITS);
      assert.equal(decoded.messageId, i + 1);
      assert.equal(decoded.payload.toString('utf8'), text);
    }
  });
});

describe('JsonCodec', () => {
  test('decodes small and large, ASCII and non-ASCII payloads alike', () => {
    const codec = new JsonCodec();
    const values = ['a', 'é', { s: 'x'.repeat(600) }, { s: 'x'.repeat(600) + 'é€😀' }, 'y'.repeat(100_000), ['ü'.repeat(1000), 1, null]];
    for (const value of values) {
      assert.deepEqual(codec.decode(Buffer.from(codec.encode(value), 'utf8')), value);
    }
    assert.equal(codec.decode(Buffer.alloc(0)), undefined);
  });
});
