import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  Compression,
  HEADER_SIZE,
  PacketFlag,
  PacketStreamDecoder,
  PacketType,
  decodePacket,
  encodePacket,
  type MsgTransPacket,
  type PacketLimits,
} from '../../lib/codec/index.js';
import { MsgTransErrorCode } from '../../lib/errors/error-codes.js';
import { MsgTransProtocolError } from '../../lib/errors/msgtrans-protocol-error.js';
import { prng } from '../support/seeded-random.js';

const LIMITS: PacketLimits = { maxPacketSize: 16 * 1024 * 1024, maxExtHeaderSize: 0xffff };


function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

function packet(fields: Partial<MsgTransPacket>): MsgTransPacket {
  return {
    compression: Compression.NONE,
    packetType: PacketType.ONE_WAY,
    bizType: 0,
    messageId: 1,
    flags: 0,
    extHeader: Buffer.alloc(0),
    payload: Buffer.alloc(0),
    ...fields,
  };
}

/** A varied set: empty payloads, ext headers, every packet type, a 200 KB payload. */
function variedPackets(): MsgTransPacket[] {
  const rand = prng(0xc0dec);
  return [
    packet({}),
    packet({ packetType: PacketType.REQUEST, bizType: 10, messageId: 2, payload: Buffer.from('ping') }),
    packet({ extHeader: Buffer.from('route:math.sum\ntrace-id:4bf92f35'), flags: PacketFlag.HAS_ROUTE_TAG, messageId: 3 }),
    packet({
      packetType: PacketType.RESPONSE,
      messageId: 2,
      flags: PacketFlag.CODEC | PacketFlag.MORE,
      extHeader: Buffer.from('route:x'),
      payload: Buffer.from('{"a":1}'),
    }),
    packet({ messageId: 4, bizType: 255, payload: randomBytes(rand, 200 * 1024) }),
    packet({ messageId: 0xffffffff, flags: PacketFlag.HIGH_PRIORITY, payload: Buffer.from([0]) }),
    packet({ compression: Compression.ZLIB, messageId: 5, payload: randomBytes(rand, 1000) }),
    packet({ compression: Compression.ZSTD, messageId: 6, extHeader: randomBytes(rand, 300), payload: randomBytes(rand, 17) }),
    packet({ messageId: 7, extHeader: Buffer.from('k:v') }),
    packet({ packetType: PacketType.RESPONSE, messageId: 7, flags: PacketFlag.END }),
    packet({ messageId: 8, payload: randomBytes(rand, HEADER_SIZE) }),
    packet({ messageId: 9, payload: randomBytes(rand, 65536 + 3) }),
  ];
}

function assertSamePackets(actual: MsgTransPacket[], expected: MsgTransPacket[], context = ''): void {
  assert.equal(actual.length, expected.length, `${context}: packet count`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const where = `${context}: packet #${i}`;
    assert.deepEqual(
      [a.compression, a.packetType, a.bizType, a.messageId, a.flags],
      [e.compression, e.packetType, e.bizType, e.messageId, e.flags],
      `${where} header fields`,
    );
    assert.ok(Buffer.isBuffer(a.extHeader) && Buffer.isBuffer(a.payload), `${where}: buffers`);
    assert.equal(a.extHeader.length, e.extHeader.length, `${where} ext header length`);
    assert.ok(a.extHeader.equals(e.extHeader), `${where} ext header bytes`);
    assert.equal(a.payload.length, e.payload.length, `${where} payload length`);
    assert.ok(a.payload.equals(e.payload), `${where} payload bytes`);
  }
}

function collect(limits: PacketLimits = LIMITS): { decoder: PacketStreamDecoder; packets: MsgTransPacket[] } {
  const packets: MsgTransPacket[] = [];
  return { decoder: new PacketStreamDecoder(limits, (p) => packets.push(p)), packets };
}

/** A buffer with its own ArrayBuffer (not Node's shared pool), so `.buffer` identity means something. */
function ownBuffer(bytes: Buffer): Buffer {
  const b = Buffer.from(new ArrayBuffer(bytes.length));
  bytes.copy(b);
  return b;
}

function header(fields: {
  version?: number;
  compression?: number;
  packetType?: number;
  bizType?: number;
  messageId?: number;
  extLen?: number;
  payloadLen?: number;
  flags?: number;
}): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h[0] = fields.version ?? 1;
  h[1] = fields.compression ?? 0;
  h[2] = fields.packetType ?? 0;
  h[3] = fields.bizType ?? 0;
  h.writeUInt32BE(fields.messageId ?? 1, 4);
  h.writeUInt16BE(fields.extLen ?? 0, 8);
  h.writeUInt32BE(fields.payloadLen ?? 0, 10);
  h.writeUInt16BE(fields.flags ?? 0, 14);
  return h;
}

function isProtocolError(code: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof MsgTransProtocolError, `expected MsgTransProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

describe('PacketStreamDecoder: reassembly', () => {
  const expected = variedPackets();
  const stream = Buffer.concat(expected.map(encodePacket));

  test('the varied stream really contains the interesting cases', () => {
    assert.ok(expected.some((p) => p.payload.length === 0));
    assert.ok(expected.some((p) => p.extHeader.length > 0));
    assert.ok(expected.some((p) => p.payload.length >= 200 * 1024));
    assert.ok(stream.length > 200 * 1024);
  });

  test('(a) one byte per push, from a reused 1-byte scratch buffer', () => {
    const { decoder, packets } = collect();
    // Reusing the same chunk memory for every push proves split packets are copied, not aliased.
    const scratch = Buffer.alloc(1);
    for (let i = 0; i < stream.length; i++) {
      scratch[0] = stream[i];
      decoder.push(scratch);
    }
    assert.equal(decoder.pendingBytes, 0);
    assertSamePackets(packets, expected, 'byte by byte');
  });

  test('(b) the whole stream in one push', () => {
    const { decoder, packets } = collect();
    decoder.push(Buffer.from(stream));
    assert.equal(decoder.pendingBytes, 0);
    assertSamePackets(packets, expected, 'one push');
  });

  test('(c) random chunk boundaries (fixed seed, 300 iterations)', () => {
    const rand = prng(20240611);
    for (let iter = 0; iter < 300; iter++) {
      const { decoder, packets } = collect();
      let offset = 0;
      let pushes = 0;
      while (offset < stream.length) {
        const r = rand();
        // Mix tiny chunks (split headers), medium and large ones (several packets per chunk).
        const size = r < 0.4 ? 1 + Math.floor(rand() * 20) : r < 0.8 ? 1 + Math.floor(rand() * 4096) : 1 + Math.floor(rand() * 150_000);
        decoder.push(stream.subarray(offset, Math.min(stream.length, offset + size)));
        offset += size;
        pushes++;
      }
      assert.equal(decoder.pendingBytes, 0, `iteration ${iter}`);
      assertSamePackets(packets, expected, `iteration ${iter} (${pushes} pushes)`);
    }
  });

  test('(c) random chunk boundaries over small packets only (fixed seed, 1000 iterations)', () => {
    const rand = prng(7);
    const small = expected.filter((p) => p.payload.length < 2048);
    const smallStream = Buffer.concat(small.map(encodePacket));
    for (let iter = 0; iter < 1000; iter++) {
      const { decoder, packets } = collect();
      let offset = 0;
      while (offset < smallStream.length) {
        const size = 1 + Math.floor(rand() * 40);
        // Fresh copies: chunks must not need to stay alive or unchanged after push for split packets.
        const chunk = Buffer.from(smallStream.subarray(offset, offset + size));
        decoder.push(chunk);
        offset += size;
      }
      assertSamePackets(packets, small, `small iteration ${iter}`);
    }
  });

  test('empty chunks are harmless, in and between packets', () => {
    const { decoder, packets } = collect();
    const e = Buffer.alloc(0);
    decoder.push(e);
    for (let i = 0; i < stream.length; i += 5000) {
      decoder.push(stream.subarray(i, i + 7));
      decoder.push(e);
      decoder.push(stream.subarray(i + 7, i + 5000));
      decoder.push(e);
    }
    assertSamePackets(packets, expected, 'with empty chunks');
  });

  test('pendingBytes reports a partial packet until it completes', () => {
    const { decoder, packets } = collect();
    const p = encodePacket(packet({ payload: Buffer.from('0123456789') }));
    decoder.push(p.subarray(0, 5));
    assert.equal(decoder.pendingBytes, 5);
    decoder.push(p.subarray(5, 20));
    assert.equal(decoder.pendingBytes, 20);
    assert.equal(packets.length, 0);
    decoder.push(p.subarray(20));
    assert.equal(decoder.pendingBytes, 0);
    assert.equal(packets.length, 1);
    assert.equal(packets[0].payload.toString(), '0123456789');
  });
});

describe('PacketStreamDecoder: zero copy', () => {
  test('(d) packets wholly inside one chunk are views of that chunk', () => {
    const list = [
      packet({ payload: Buffer.from('first'), extHeader: Buffer.from('route:a') }),
      packet({ payload: Buffer.alloc(3000, 7), messageId: 2 }),
      packet({ payload: Buffer.from('third'), messageId: 3 }),
    ];
    const chunk = ownBuffer(Buffer.concat(list.map(encodePacket)));
    const { decoder, packets } = collect();
    decoder.push(chunk);
    assertSamePackets(packets, list, 'zero copy');
    let offset = 0;
    for (let i = 0; i < list.length; i++) {
      const p = packets[i];
      assert.equal(p.payload.buffer, chunk.buffer, `payload #${i} shares the chunk's ArrayBuffer`);
      // an empty extension header is a shared empty buffer, not a view (nothing to copy either way)
      if (list[i].extHeader.length > 0) {
        assert.equal(p.extHeader.buffer, chunk.buffer, `ext header #${i} shares the chunk's ArrayBuffer`);
      } else {
        assert.equal(p.extHeader.length, 0, `ext header #${i} is empty`);
      }
      const payloadOffset = offset + HEADER_SIZE + list[i].extHeader.length;
      assert.equal(p.payload.byteOffset, chunk.byteOffset + payloadOffset, `payload #${i} offset`);
      offset += HEADER_SIZE + list[i].extHeader.length + list[i].payload.length;
    }
    // A view, not a copy: writing the chunk shows through.
    chunk[HEADER_SIZE + 'route:a'.length] = 'F'.charCodeAt(0);
    assert.equal(packets[0].payload.toString(), 'First');
  });

  test('(d) after a split packet completes, the following whole packets are views of the new chunk', () => {
    const a = encodePacket(packet({ payload: Buffer.from('split-me'), messageId: 1 }));
    const b = encodePacket(packet({ payload: Buffer.from('whole-1'), messageId: 2 }));
    const c = encodePacket(packet({ payload: Buffer.from('whole-2'), messageId: 3 }));
    const first = ownBuffer(a.subarray(0, 10));
    const second = ownBuffer(Buffer.concat([a.subarray(10), b, c]));
    const { decoder, packets } = collect();
    decoder.push(first);
    decoder.push(second);
    assert.deepEqual(
      packets.map((p) => p.payload.toString()),
      ['split-me', 'whole-1', 'whole-2'],
    );
    assert.notEqual(packets[0].payload.buffer, first.buffer, 'a split packet is copied out of the first chunk');
    assert.notEqual(packets[0].payload.buffer, second.buffer, 'a split packet is copied out of the second chunk');
    assert.equal(packets[1].payload.buffer, second.buffer);
    assert.equal(packets[2].payload.buffer, second.buffer);
  });

  test('a 1 MiB packet in 64 KiB reads is copied once into one buffer of its declared size, with no Buffer.concat', () => {
    const big = packet({ payload: Buffer.alloc(1024 * 1024, 'y'), extHeader: Buffer.from('route:echo'), messageId: 9 });
    const after = packet({ payload: Buffer.from('next'), messageId: 10 });
    const wire = Buffer.concat([encodePacket(big), encodePacket(after)]);
    const chunks: Buffer[] = [];
    for (let at = 0; at < wire.length; at += 64 * 1024) chunks.push(ownBuffer(wire.subarray(at, at + 64 * 1024)));
    const { decoder, packets } = collect();
    const concat = Buffer.concat;
    let concats = 0;
    Buffer.concat = (...args: Parameters<typeof Buffer.concat>) => {
      concats++;
      return concat(...args);
    };
    try {
      for (const chunk of chunks) decoder.push(chunk);
    } finally {
      Buffer.concat = concat;
    }
    assertSamePackets(packets, [big, after], '1 MiB in 64 KiB reads');
    assert.equal(concats, 0, 'no Buffer.concat');
    const total = HEADER_SIZE + big.extHeader.length + big.payload.length;
    assert.equal(packets[0].payload.buffer.byteLength, total, 'one buffer of exactly the declared size');
    assert.equal(packets[0].extHeader.buffer, packets[0].payload.buffer, 'ext header and payload share it');
    for (const chunk of chunks) assert.notEqual(packets[0].payload.buffer, chunk.buffer);
    assert.equal(packets[1].payload.buffer, chunks[chunks.length - 1].buffer, 'the packet after it is a view of its chunk');
  });
});

describe('PacketStreamDecoder: rejections', () => {
  function pushThrows(chunks: Buffer[], code: string, limits: PacketLimits = LIMITS): MsgTransPacket[] {
    const { decoder, packets } = collect(limits);
    const last = chunks[chunks.length - 1];
    for (const c of chunks.slice(0, -1)) decoder.push(c);
    assert.throws(() => decoder.push(last), isProtocolError(code));
    return packets;
  }

  test('bad version', () => {
    for (const version of [0, 2, 0xff]) {
      pushThrows([header({ version })], MsgTransErrorCode.BAD_VERSION);
    }
  });

  test('compression 3 (and 255) is rejected; 0, 1 and 2 are accepted', () => {
    pushThrows([header({ compression: 3 })], MsgTransErrorCode.BAD_COMPRESSION);
    pushThrows([header({ compression: 0xff })], MsgTransErrorCode.BAD_COMPRESSION);
    const { decoder, packets } = collect();
    for (const compression of [0, 1, 2]) decoder.push(header({ compression }));
    assert.deepEqual(packets.map((p) => p.compression), [0, 1, 2]);
  });

  test('packet_type 3 (and 255) is rejected', () => {
    pushThrows([header({ packetType: 3 })], MsgTransErrorCode.BAD_PACKET_TYPE);
    pushThrows([header({ packetType: 0xff })], MsgTransErrorCode.BAD_PACKET_TYPE);
  });

  test('the FRAGMENTED flag 0x0001 is rejected, alone or with other bits', () => {
    pushThrows([header({ flags: 0x0001 })], MsgTransErrorCode.FRAGMENTED);
    pushThrows([header({ flags: 0x0001 | PacketFlag.HAS_ROUTE_TAG })], MsgTransErrorCode.FRAGMENTED);
    pushThrows([header({ flags: 0xffff })], MsgTransErrorCode.FRAGMENTED);
  });

  test('unknown flag bits are accepted and passed up unchanged', () => {
    const { decoder, packets } = collect();
    decoder.push(Buffer.concat([header({ flags: 0x8000 }), header({ flags: 0xfffe, messageId: 2 })]));
    assert.deepEqual(packets.map((p) => p.flags), [0x8000, 0xfffe]);
  });

  test('a total length over maxPacketSize is rejected; exactly the limit is accepted', () => {
    const limits: PacketLimits = { maxPacketSize: 1024, maxExtHeaderSize: 0xffff };
    pushThrows([header({ payloadLen: 1024 - HEADER_SIZE + 1 })], MsgTransErrorCode.PACKET_TOO_LARGE, limits);
    // ext header counts towards the total
    pushThrows([header({ extLen: 100, payloadLen: 1024 - HEADER_SIZE - 100 + 1 })], MsgTransErrorCode.PACKET_TOO_LARGE, limits);
    const { decoder, packets } = collect(limits);
    decoder.push(encodePacket(packet({ extHeader: Buffer.from('a:b'), payload: Buffer.alloc(1024 - HEADER_SIZE - 3) })));
    assert.equal(packets.length, 1);
  });

  test('payload_len 0xFFFFFFFF throws on the 16 header bytes alone, without allocating', () => {
    const bomb = header({ payloadLen: 0xffffffff });
    const sizes: number[] = [];
    const original = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow };
    const { decoder, packets } = collect();
    try {
      Buffer.alloc = ((size: number, ...rest: unknown[]) => {
        sizes.push(size);
        return (original.alloc as (...a: unknown[]) => Buffer)(size, ...rest);
      }) as typeof Buffer.alloc;
      Buffer.allocUnsafe = ((size: number) => {
        sizes.push(size);
        return original.allocUnsafe(size);
      }) as typeof Buffer.allocUnsafe;
      Buffer.allocUnsafeSlow = ((size: number) => {
        sizes.push(size);
        return original.allocUnsafeSlow(size);
      }) as typeof Buffer.allocUnsafeSlow;
      assert.throws(() => decoder.push(bomb), isProtocolError(MsgTransErrorCode.PACKET_TOO_LARGE));
    } finally {
      Buffer.alloc = original.alloc;
      Buffer.allocUnsafe = original.allocUnsafe;
      Buffer.allocUnsafeSlow = original.allocUnsafeSlow;
    }
    assert.equal(packets.length, 0);
    assert.ok(sizes.every((s) => s < 1024 * 1024), `allocations during push: ${sizes.join(', ')}`);
  });

  test('payload_len 0xFFFFFFFF split 7 + 9 throws when the header completes, not before', () => {
    const bomb = header({ payloadLen: 0xffffffff });
    const { decoder } = collect();
    decoder.push(bomb.subarray(0, 7));
    assert.throws(() => decoder.push(bomb.subarray(7)), isProtocolError(MsgTransErrorCode.PACKET_TOO_LARGE));
  });

  test('an oversized header behind a good packet in the same chunk throws after the good one is delivered', () => {
    const good = encodePacket(packet({ payload: Buffer.from('ok') }));
    const packets = pushThrows(
      [Buffer.concat([good, header({ payloadLen: 0xffffffff })])],
      MsgTransErrorCode.PACKET_TOO_LARGE,
    );
    assert.equal(packets.length, 1);
    assert.equal(packets[0].payload.toString(), 'ok');
  });

  test('ext header over maxExtHeaderSize is rejected; exactly the limit is accepted', () => {
    const limits: PacketLimits = { maxPacketSize: 1 << 20, maxExtHeaderSize: 8 };
    pushThrows([header({ extLen: 9 })], MsgTransErrorCode.EXT_HEADER_TOO_LARGE, limits);
    pushThrows([header({ extLen: 0xffff })], MsgTransErrorCode.EXT_HEADER_TOO_LARGE, limits);
    const { decoder, packets } = collect(limits);
    decoder.push(encodePacket(packet({ extHeader: Buffer.from('route:ab') })));
    assert.equal(packets.length, 1);
    assert.equal(packets[0].extHeader.toString(), 'route:ab');
  });

  test('a bad header split across pushes (7 then 9 bytes) is rejected when it completes', () => {
    const cases: [Buffer, string][] = [
      [header({ version: 2 }), MsgTransErrorCode.BAD_VERSION],
      [header({ compression: 3 }), MsgTransErrorCode.BAD_COMPRESSION],
      [header({ packetType: 3 }), MsgTransErrorCode.BAD_PACKET_TYPE],
      [header({ flags: PacketFlag.FRAGMENTED }), MsgTransErrorCode.FRAGMENTED],
      [header({ extLen: 0xffff }), MsgTransErrorCode.EXT_HEADER_TOO_LARGE],
    ];
    const limits: PacketLimits = { maxPacketSize: 1 << 20, maxExtHeaderSize: 1024 };
    for (const [h, code] of cases) {
      const { decoder, packets } = collect(limits);
      decoder.push(h.subarray(0, 7)); // incomplete: nothing to judge yet
      assert.throws(() => decoder.push(h.subarray(7)), isProtocolError(code));
      assert.equal(packets.length, 0);
    }
  });

  test('a bad header split byte by byte after a partial good packet is rejected at its 16th byte', () => {
    const good = encodePacket(packet({ payload: Buffer.from('hello') }));
    const bad = header({ packetType: 3 });
    const stream = Buffer.concat([good, bad]);
    const { decoder, packets } = collect();
    const lastIndex = stream.length - 1;
    for (let i = 0; i < lastIndex; i++) decoder.push(stream.subarray(i, i + 1));
    assert.equal(packets.length, 1);
    assert.throws(() => decoder.push(stream.subarray(lastIndex)), isProtocolError(MsgTransErrorCode.BAD_PACKET_TYPE));
  });
});

describe('PacketStreamDecoder: stop()', () => {
  test('stop() inside onPacket drops the rest of the chunk', () => {
    const chunk = Buffer.concat([1, 2, 3].map((messageId) => encodePacket(packet({ messageId }))));
    const seen: number[] = [];
    const decoder: PacketStreamDecoder = new PacketStreamDecoder(LIMITS, (p) => {
      seen.push(p.messageId);
      decoder.stop();
    });
    decoder.push(chunk);
    decoder.push(chunk);
    assert.deepEqual(seen, [1]);
  });

  test(
    'stop() while a header is partially buffered: later pushes deliver nothing',
    () => {
      const p = encodePacket(packet({ payload: Buffer.from('late') }));
      const { decoder, packets } = collect();
      decoder.push(p.subarray(0, 5));
      decoder.stop();
      decoder.push(p.subarray(5));
      assert.equal(packets.length, 0);
    },
  );
});

describe('decodePacket (one packet per buffer)', () => {
  test('decodes a whole packet as views of the buffer', () => {
    const buf = ownBuffer(encodePacket(packet({ extHeader: Buffer.from('route:r'), payload: Buffer.from('body'), messageId: 9 })));
    const p = decodePacket(buf, LIMITS);
    assert.equal(p.messageId, 9);
    assert.equal(p.extHeader.toString(), 'route:r');
    assert.equal(p.payload.toString(), 'body');
    assert.equal(p.payload.buffer, buf.buffer);
  });

  test('a buffer shorter than 16 bytes is ERR_MSGTRANS_BAD_LENGTH', () => {
    for (const n of [0, 1, 15]) {
      assert.throws(() => decodePacket(header({}).subarray(0, n), LIMITS), isProtocolError(MsgTransErrorCode.BAD_LENGTH));
    }
  });

  test('a buffer whose length disagrees with the header is ERR_MSGTRANS_BAD_LENGTH', () => {
    const full = encodePacket(packet({ extHeader: Buffer.from('a:b'), payload: Buffer.from('payload') }));
    assert.throws(() => decodePacket(full.subarray(0, full.length - 1), LIMITS), isProtocolError(MsgTransErrorCode.BAD_LENGTH));
    assert.throws(() => decodePacket(Buffer.concat([full, Buffer.from([0])]), LIMITS), isProtocolError(MsgTransErrorCode.BAD_LENGTH));
    // two packets in one message are not one packet
    assert.throws(() => decodePacket(Buffer.concat([full, full]), LIMITS), isProtocolError(MsgTransErrorCode.BAD_LENGTH));
    assert.throws(() => decodePacket(header({ payloadLen: 1 }), LIMITS), isProtocolError(MsgTransErrorCode.BAD_LENGTH));
    assert.equal(decodePacket(full, LIMITS).payload.toString(), 'payload');
  });

  test('applies the same header checks as the stream decoder', () => {
    assert.throws(() => decodePacket(header({ version: 0 }), LIMITS), isProtocolError(MsgTransErrorCode.BAD_VERSION));
    assert.throws(() => decodePacket(header({ compression: 3 }), LIMITS), isProtocolError(MsgTransErrorCode.BAD_COMPRESSION));
    assert.throws(() => decodePacket(header({ packetType: 3 }), LIMITS), isProtocolError(MsgTransErrorCode.BAD_PACKET_TYPE));
    assert.throws(() => decodePacket(header({ flags: 1 }), LIMITS), isProtocolError(MsgTransErrorCode.FRAGMENTED));
    assert.throws(
      () => decodePacket(header({ payloadLen: 0xffffffff }), LIMITS),
      isProtocolError(MsgTransErrorCode.PACKET_TOO_LARGE),
    );
    assert.throws(
      () => decodePacket(header({ extLen: 9 }), { maxPacketSize: 1 << 20, maxExtHeaderSize: 8 }),
      isProtocolError(MsgTransErrorCode.EXT_HEADER_TOO_LARGE),
    );
    assert.equal(decodePacket(header({ flags: 0x8000 }), LIMITS).flags, 0x8000);
  });
});
