import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { MessageIdCounter, decodePacket, encodePacket, Compression, PacketType } from '../../lib/codec/index.js';

const MAX = 0xffffffff;

describe('MessageIdCounter', () => {
  test('starts at 1 and goes up by one', () => {
    const c = new MessageIdCounter();
    const ids = Array.from({ length: 1000 }, () => c.next());
    assert.deepEqual(ids, Array.from({ length: 1000 }, (_, i) => i + 1));
  });

  test('wraps from 0xFFFFFFFF to 1, skipping 0', () => {
    const c = new MessageIdCounter(MAX - 2);
    assert.deepEqual([c.next(), c.next(), c.next(), c.next(), c.next()], [MAX - 2, MAX - 1, MAX, 1, 2]);
  });

  test('a counter started at 0xFFFFFFFF yields it, then 1', () => {
    const c = new MessageIdCounter(MAX);
    assert.equal(c.next(), MAX);
    assert.equal(c.next(), 1);
  });

  test('never yields 0, and every id is a u32, across several wraps', () => {
    const c = new MessageIdCounter(MAX - 10);
    let wraps = 0;
    let prev = 0;
    for (let i = 0; i < 100; i++) {
      const id = c.next();
      assert.notEqual(id, 0);
      assert.ok(Number.isInteger(id) && id >= 1 && id <= MAX, `id ${id}`);
      if (prev !== 0) {
        if (prev === MAX) {
          assert.equal(id, 1);
          wraps++;
        } else {
          assert.equal(id, prev + 1);
        }
      }
      prev = id;
    }
    assert.equal(wraps, 1);
  });

  test('counters are independent (one per connection and sender)', () => {
    const a = new MessageIdCounter();
    const b = new MessageIdCounter();
    assert.equal(a.next(), 1);
    assert.equal(a.next(), 2);
    assert.equal(b.next(), 1);
    assert.equal(a.next(), 3);
  });

  test('ids near the top survive the wire as unsigned 32-bit', () => {
    const c = new MessageIdCounter(MAX);
    for (const messageId of [c.next(), c.next()]) {
      const wire = encodePacket({
        compression: Compression.NONE,
        packetType: PacketType.REQUEST,
        bizType: 0,
        messageId,
        flags: 0,
        extHeader: Buffer.alloc(0),
        payload: Buffer.alloc(0),
      });
      assert.equal(wire.readUInt32BE(4), messageId);
      assert.equal(decodePacket(wire, { maxPacketSize: 1024, maxExtHeaderSize: 1024 }).messageId, messageId);
    }
  });
});
