/**
 * Conformance against the reference implementation's golden packets
 * (PROTOCOL.md: "An encoder must produce the .bin from the .json byte for byte,
 * and a decoder the .json fields from the .bin").
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  HEADER_SIZE,
  PROTOCOL_VERSION,
  PacketStreamDecoder,
  decodePacket,
  encodePacket,
  type Compression,
  type MsgTransPacket,
  type PacketLimits,
  type PacketType,
} from '../../lib/codec/index.js';

// dist/test/codec/conformance.test.js -> repo root is three levels up.
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIXTURE_DIR = join(REPO_ROOT, 'test', 'fixtures', 'msgtrans-v1');
const SHARED_DIR = join(REPO_ROOT, '..', 'shared', 'conformance', 'msgtrans-v1');

const EXPECTED_PAIRS = 8;
const FIXTURE_NAME = /^(\d\d_[A-Za-z0-9_]+)\.(bin|json)$/;

const LIMITS: PacketLimits = { maxPacketSize: 16 * 1024 * 1024, maxExtHeaderSize: 0xffff };

interface FixtureFields {
  version: number;
  compression: number;
  packet_type: number;
  biz_type: number;
  message_id: number;
  ext_header_hex: string;
  payload_hex: string;
  reserved: number;
}

const FIELD_NAMES: readonly (keyof FixtureFields)[] = [
  'version',
  'compression',
  'packet_type',
  'biz_type',
  'message_id',
  'ext_header_hex',
  'payload_hex',
  'reserved',
];

interface Fixture {
  name: string;
  bin: Buffer;
  json: FixtureFields;
}

function listFixtureFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => FIXTURE_NAME.test(f))
    .sort();
}

function loadFixtures(): Fixture[] {
  if (!existsSync(FIXTURE_DIR)) return [];
  const files = listFixtureFiles(FIXTURE_DIR);
  const names = [...new Set(files.map((f) => (FIXTURE_NAME.exec(f) as RegExpExecArray)[1]))].sort();
  const out: Fixture[] = [];
  for (const name of names) {
    const binPath = join(FIXTURE_DIR, `${name}.bin`);
    const jsonPath = join(FIXTURE_DIR, `${name}.json`);
    if (!existsSync(binPath) || !existsSync(jsonPath)) continue; // incomplete pairs are caught by the count test
    out.push({
      name,
      bin: readFileSync(binPath),
      json: JSON.parse(readFileSync(jsonPath, 'utf8')) as FixtureFields,
    });
  }
  return out;
}

const fixtures = loadFixtures();

/** The packet the json describes, as the library models it. */
function packetFromJson(json: FixtureFields): MsgTransPacket {
  return {
    compression: json.compression as Compression,
    packetType: json.packet_type as PacketType,
    bizType: json.biz_type,
    messageId: json.message_id,
    flags: json.reserved,
    extHeader: Buffer.from(json.ext_header_hex, 'hex'),
    payload: Buffer.from(json.payload_hex, 'hex'),
  };
}

/** The json fields a decoded packet stands for. `version` is the byte the decoder accepted. */
function jsonFromPacket(packet: MsgTransPacket, versionByte: number): FixtureFields {
  return {
    version: versionByte,
    compression: packet.compression,
    packet_type: packet.packetType,
    biz_type: packet.bizType,
    message_id: packet.messageId,
    ext_header_hex: packet.extHeader.toString('hex'),
    payload_hex: packet.payload.toString('hex'),
    reserved: packet.flags,
  };
}

function streamDecode(chunks: Buffer[]): MsgTransPacket[] {
  const out: MsgTransPacket[] = [];
  const decoder = new PacketStreamDecoder(LIMITS, (p) => out.push(p));
  for (const c of chunks) decoder.push(c);
  assert.equal(decoder.pendingBytes, 0, 'no bytes may be left over after whole packets');
  return out;
}

describe('msgtrans v1 golden packets', () => {
  test(`the local fixture set is complete: exactly ${EXPECTED_PAIRS} .bin/.json pairs`, () => {
    assert.ok(existsSync(FIXTURE_DIR), `fixture folder missing: ${FIXTURE_DIR}`);
    const files = listFixtureFiles(FIXTURE_DIR);
    const bins = files.filter((f) => f.endsWith('.bin'));
    const jsons = files.filter((f) => f.endsWith('.json'));
    assert.equal(bins.length, EXPECTED_PAIRS, `expected ${EXPECTED_PAIRS} .bin files, found ${bins.join(', ')}`);
    assert.equal(jsons.length, EXPECTED_PAIRS, `expected ${EXPECTED_PAIRS} .json files, found ${jsons.join(', ')}`);
    assert.deepEqual(
      bins.map((f) => f.slice(0, -'.bin'.length)),
      jsons.map((f) => f.slice(0, -'.json'.length)),
      'every .bin must have its .json and vice versa',
    );
    assert.equal(fixtures.length, EXPECTED_PAIRS, 'every pair must load');
    for (const f of fixtures) {
      assert.deepEqual(Object.keys(f.json).sort(), [...FIELD_NAMES].sort(), `${f.name}.json has unexpected fields`);
      assert.ok(f.bin.length >= HEADER_SIZE, `${f.name}.bin is shorter than a header`);
    }
  });

  test('the local fixtures are byte-identical to the shared conformance set (or complete when it is absent)', () => {
    const localFiles = listFixtureFiles(FIXTURE_DIR);
    assert.equal(localFiles.length, 2 * EXPECTED_PAIRS, `local fixture files: ${localFiles.join(', ')}`);
    if (!existsSync(SHARED_DIR)) {
      // No shared copy to compare with: the local set must at least be whole.
      for (const f of localFiles) assert.ok(statSync(join(FIXTURE_DIR, f)).size > 0, `${f} is empty`);
      return;
    }
    const sharedFiles = listFixtureFiles(SHARED_DIR);
    assert.deepEqual(localFiles, sharedFiles, 'local and shared fixture sets must name the same files');
    for (const f of sharedFiles) {
      const local = readFileSync(join(FIXTURE_DIR, f));
      const shared = readFileSync(join(SHARED_DIR, f));
      assert.ok(local.equals(shared), `${f} differs from the shared copy`);
    }
  });

  for (const { name, bin, json } of fixtures) {
    describe(name, () => {
      test('header length fields agree with the .bin size', () => {
        assert.equal(json.version, PROTOCOL_VERSION);
        assert.equal(bin[0], json.version);
        assert.equal(bin.length, HEADER_SIZE + json.ext_header_hex.length / 2 + json.payload_hex.length / 2);
      });

      test('encodePacket(json) equals the .bin byte for byte', () => {
        const encoded = encodePacket(packetFromJson(json));
        assert.equal(encoded.toString('hex'), bin.toString('hex'));
      });

      test('decodePacket(.bin) gives back exactly the json fields', () => {
        const packet = decodePacket(bin, LIMITS);
        assert.deepEqual(jsonFromPacket(packet, bin[0]), json);
      });

      test('PacketStreamDecoder yields the json fields (one push, and one byte per push)', () => {
        const whole = streamDecode([Buffer.from(bin)]);
        assert.equal(whole.length, 1);
        assert.deepEqual(jsonFromPacket(whole[0], bin[0]), json);

        const bytes: Buffer[] = [];
        for (let i = 0; i < bin.length; i++) bytes.push(bin.subarray(i, i + 1));
        const split = streamDecode(bytes);
        assert.equal(split.length, 1);
        assert.deepEqual(jsonFromPacket(split[0], bin[0]), json);
      });

      test('encode(decode(.bin)) is the identity', () => {
        assert.ok(encodePacket(decodePacket(bin, LIMITS)).equals(bin));
      });
    });
  }

  test('all golden packets back to back on one stream come out in order', () => {
    assert.equal(fixtures.length, EXPECTED_PAIRS);
    const stream = Buffer.concat(fixtures.map((f) => f.bin));
    for (const chunkSize of [1, 3, 7, 16, 17, stream.length]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < stream.length; i += chunkSize) chunks.push(stream.subarray(i, i + chunkSize));
      const packets = streamDecode(chunks);
      assert.deepEqual(
        packets.map((p) => jsonFromPacket(p, PROTOCOL_VERSION)),
        fixtures.map((f) => f.json),
        `chunk size ${chunkSize}`,
      );
    }
  });
});
