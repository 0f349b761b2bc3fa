/**
 * Deterministic fuzz inputs for msgtrans v1 over TCP, WebSocket and QUIC.
 * The same (seed, protocol, limits) always yields the same sequence.
 *
 * An input is what one fuzz step sends on a connection: stream bytes (TCP,
 * QUIC), WebSocket messages, or raw bytes under the WebSocket layer. What
 * the server must do with it is decided separately by the oracle
 * (oracle.ts), except for raw WebSocket frames, whose verdict is fixed here
 * by construction.
 */
import { Prng } from './prng.js';
import {
  CANCEL,
  CODEC,
  Code,
  END,
  ERROR,
  FRAGMENTED,
  HAS_ROUTE_TAG,
  HEADER,
  HIGH_PRIORITY,
  MORE,
  NONE,
  ONE_WAY,
  QUIC_MAX_FRAME,
  REQUEST,
  RESPONSE,
  ZLIB,
  ZSTD,
  encode,
  frame,
  wsFrame,
  zlibCompress,
  zstdCompress,
  zstdRleBomb,
  type PacketSpec,
} from '../../test/support/raw-wire.js';
import type { OracleLimits, Outcome, ZstdKnowledge } from './oracle.js';

export type Protocol = 'tcp' | 'ws' | 'quic';
export const PROTOCOLS: readonly Protocol[] = ['tcp', 'ws', 'quic'];

export type Chunk =
  /** Stream bytes (TCP, QUIC); `cuts` splits them into separate writes at these offsets. */
  | { type: 'bytes'; data: Buffer; cuts?: number[] }
  /** One binary WebSocket message. */
  | { type: 'binary'; data: Buffer }
  /** One text WebSocket message. */
  | { type: 'text'; data: string }
  /** Bytes written straight to the socket under a WebSocket (hand-made frames). */
  | { type: 'raw'; data: Buffer };

export interface FuzzInput {
  /** Position in this generator's sequence (0-based). */
  seq: number;
  protocol: Protocol;
  kind: string;
  chunks: Chunk[];
  /** Verdict fixed by construction (raw WebSocket frames), instead of the oracle's. */
  fixed?: Outcome;
  /** WebSocket messages the oracle judges instead of `chunks` (a message sent as hand-made fragments). */
  judgeAs?: Buffer[];
  /** zstd payloads in this input whose inflated size the generator knows. */
  known: ZstdKnowledge;
}

/** Verdict meaning: the connection ends, with no violation reported (e.g. a clean WebSocket close). */
export const NO_VIOLATION = 'none';

const ROUTES = [
  'echo',
  'echo',
  'echo',
  'echo.async',
  'stream',
  'ctx',
  'fail.rpc',
  'fail.rpc.object',
  'fail.plain',
  'fail.async',
  'bigint',
  'guarded',
  'intercepted',
  'filtered',
  'nope',
  '{"cmd":"sum","v":1}',
  'msgtrans.auth',
  '__proto__',
  'constructor',
  'toString',
  '',
];
const EVENT_ROUTES = ['event', 'fuzz.none', '__proto__', 'event'];
/** Events the test app has no handler for (safe for big payloads: nothing is kept). */
const NO_HANDLER_EVENT = 'fuzz.none';

// Bombs depend only on the packet limit: made once per limit, reused.
interface Bomb {
  name: string;
  compression: number;
  payload: Buffer;
  inflated: number;
}
const bombCache = new Map<number, Bomb[]>();

function bombsFor(max: number): Bomb[] {
  let bombs = bombCache.get(max);
  if (bombs) return bombs;
  const zeros = (n: number) => Buffer.alloc(n);
  const big = 64 * 1024 * 1024;
  bombs = [
    { name: 'zlib-limit+1', compression: ZLIB, payload: zlibCompress(zeros(max + 1)), inflated: max + 1 },
    { name: 'zlib-4x', compression: ZLIB, payload: zlibCompress(zeros(4 * max)), inflated: 4 * max },
    { name: 'zlib-64MiB', compression: ZLIB, payload: zlibCompress(zeros(big)), inflated: big },
    { name: 'zstd-limit+1', compression: ZSTD, payload: zstdCompress(zeros(max + 1)), inflated: max + 1 },
    { name: 'zstd-16x', compression: ZSTD, payload: zstdCompress(zeros(16 * max)), inflated: 16 * max },
    { name: 'zstd-rle-64MiB', compression: ZSTD, payload: zstdRleBomb(big), inflated: big },
    { name: 'zstd-rle-1GiB', compression: ZSTD, payload: zstdRleBomb(1024 * 1024 * 1024), inflated: 1024 * 1024 * 1024 },
    // exactly at the limit: must be accepted
    { name: 'zlib-fits', compression: ZLIB, payload: zlibCompress(zeros(max)), inflated: max },
    { name: 'zstd-fits', compression: ZSTD, payload: zstdCompress(zeros(max)), inflated: max },
  ];
  bombCache.set(max, bombs);
  return bombs;
}

const BAD_JSON = [
  '{',
  '[1,',
  'undefined',
  'NaN',
  "'single'",
  '\ufeff{}',
  '{"a":}',
  '"unterminated',
  '01',
  '1e',
  '-',
  '.5',
  '\u0000',
  'tru',
  '[1,]',
  '{"a" 1}',
  '/*c*/1',
  '{"a":1}}',
  '\u00a01',
];

const BAD_UTF8 = [
  Buffer.from([0xff]),
  Buffer.from([0xc0, 0xaf]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xe2, 0x82]),
  Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  Buffer.from([0x80]),
];

export interface GeneratorOptions {
  protocol: Protocol;
  seed: number;
  limits: OracleLimits;
}

/**
 * Yields fuzz inputs for one protocol. Cheap per input (bombs are built once
 * per limit), so a million inputs cost seconds of generation.
 */
export class FuzzGenerator {
  private readonly rng: Prng;
  private seq = 0;
  private known: ZstdKnowledge = new Map();
  private readonly bombs: Bomb[];
  readonly protocol: Protocol;
  private readonly limits: OracleLimits;
  private readonly weights: Record<string, number>;

  constructor(options: GeneratorOptions) {
    this.protocol = options.protocol;
    this.limits = options.limits;
    this.rng = new Prng(options.seed);
    this.bombs = bombsFor(options.limits.maxPacketSize);
    const common: Record<string, number> = {
      valid: 22,
      'random-bytes': 6,
      truncated: 6,
      'bit-flip': 8,
      'byte-change': 8,
      'absurd-length': 6,
      'bad-version': 3,
      'bad-flags': 4,
      'bad-compression': 3,
      'bad-packet-type': 3,
      bomb: 4,
      'bad-ext-header': 6,
      'bad-json': 6,
      'deep-json': 0.5,
      mixed: 5,
      flood: 0.03,
      'max-size': 0.03,
    };
    const specific: Record<Protocol, Record<string, number>> = {
      tcp: { 'split-writes': 4, 'partial-header': 2 },
      ws: { text: 4, 'length-mismatch': 5, 'empty-message': 1, 'raw-frame': 8 },
      quic: { 'bad-prefix': 10, 'split-writes': 3 },
    };
    this.weights = { ...common, ...specific[this.protocol] };
  }

  next(): FuzzInput {
    this.known = new Map();
    const kind = this.rng.weighted(this.weights);
    const seq = this.seq++;
    const built = this.build(kind);
    return {
      seq,
      protocol: this.protocol,
      kind: built.kind ?? kind,
      chunks: built.chunks,
      fixed: built.fixed,
      judgeAs: built.judgeAs,
      known: this.known,
    };
  }

  // -------------------------------------------------------------------------
  // building blocks
  // -------------------------------------------------------------------------

  private json(depth = 0): unknown {
    const r = this.rng;
    const k = r.int(depth > 2 ? 6 : 9);
    switch (k) {
      case 0:
        return r.range(-1000, 1000);
      case 1:
        return r.pick([0, -0, 1e308, -1e-308, 3.14159, 2 ** 53, -(2 ** 31)]);
      case 2:
        return r.word(0, 16);
      case 3:
        return r.pick(['ünïcødé', '\u{1F600}', 'a"b\\c', '\n\t', '\u2028', '']);
      case 4:
        return r.chance(0.5);
      case 5:
        return null;
      case 6:
        return Array.from({ length: r.int(4) }, () => this.json(depth + 1));
      default: {
        const o: Record<string, unknown> = {};
        const n = r.int(4);
        for (let i = 0; i < n; i++) {
          const key = r.chance(0.1) ? r.pick(['__proto__', 'constructor', 'then', 'pattern', 'data']) : r.word(1, 6);
          Object.defineProperty(o, key, { value: this.json(depth + 1), enumerable: true, writable: true, configurable: true });
        }
        return o;
      }
    }
  }

  private routeExt(route: string): string {
    // sometimes with metadata entries around the route
    const r = this.rng;
    if (r.chance(0.8)) return `route:${route}`;
    const meta = [`trace-id:${r.word(8, 16)}`, `tenant:${r.word()}`, `${r.word()}:`];
    const lines = [`route:${route}`, ...meta.slice(0, r.range(1, 3))];
    return r.chance(0.5) ? lines.join('\n') : lines.reverse().join('\n');
  }

  /** A packet a correct peer could send. */
  private validSpec(): PacketSpec {
    const r = this.rng;
    const kind = r.weighted({
      'echo-json': 10,
      'echo-raw': 4,
      'echo-zlib': 2,
      'echo-zstd': 2,
      'echo-biz': 1,
      event: 5,
      'event-biz': 1,
      request: 5,
      ping: 2,
      stream: 2,
      cancel: 3,
      response: 3,
    });
    const messageId = r.id();
    const priority = r.chance(0.1) ? HIGH_PRIORITY : 0;
    switch (kind) {
      case 'echo-json':
        return {
          packetType: REQUEST,
          messageId,
          flags: HAS_ROUTE_TAG | CODEC | priority,
          ext: this.routeExt('echo'),
          payload: r.chance(0.05) ? '' : JSON.stringify({ seq: this.seq, v: this.json() }),
        };
      case 'echo-raw':
        return { packetType: REQUEST, messageId, flags: HAS_ROUTE_TAG | priority, ext: 'route:echo', payload: r.bytes(r.int(64)) };
      case 'echo-zlib':
      case 'echo-zstd': {
        const body = Buffer.from(JSON.stringify({ seq: this.seq, pad: 'x'.repeat(r.int(3000)), v: this.json() }));
        const zstd = kind === 'echo-zstd';
        const payload = zstd ? zstdCompress(body) : zlibCompress(body);
        if (zstd) this.known.set(payload.toString('base64'), { size: body.length, content: body });
        return { packetType: REQUEST, compression: zstd ? ZSTD : ZLIB, messageId, flags: HAS_ROUTE_TAG | CODEC, ext: 'route:echo', payload };
      }
      case 'echo-biz':
        // route entry without the flag: the entry still wins (PROTOCOL.md)
        return { packetType: REQUEST, messageId, bizType: r.int(256), flags: CODEC, ext: 'route:echo', payload: JSON.stringify(this.json()) };
      case 'event':
        return {
          packetType: ONE_WAY,
          messageId,
          flags: HAS_ROUTE_TAG | CODEC | priority,
          ext: this.routeExt(r.pick(EVENT_ROUTES)),
          payload: JSON.stringify(this.json()),
        };
      case 'event-biz':
        return { packetType: ONE_WAY, messageId, bizType: r.pick([12, 13, 200]), payload: r.bytes(r.int(32)) };
      case 'request': {
        const route = r.pick(ROUTES);
        return { packetType: REQUEST, messageId, flags: HAS_ROUTE_TAG | CODEC, ext: `route:${route}`, payload: JSON.stringify(this.json()) };
      }
      case 'ping':
        return { packetType: REQUEST, messageId, bizType: r.pick([10, 7, 99]), payload: r.chance(0.7) ? 'ping' : r.bytes(r.int(8)) };
      case 'stream':
        return {
          packetType: REQUEST,
          messageId,
          flags: HAS_ROUTE_TAG | CODEC,
          ext: 'route:stream',
          payload: JSON.stringify({ n: r.int(5) }),
        };
      case 'cancel':
        return { packetType: ONE_WAY, messageId: r.chance(0.1) ? 0 : r.id(), flags: CANCEL };
      default: {
        // a response to a request that was never sent, with any Part B flags
        const flags = r.pick([0, CODEC, MORE | CODEC, END, ERROR | CODEC, r.u32() & 0xfffe]);
        return {
          packetType: RESPONSE,
          messageId: r.id(),
          bizType: r.int(256),
          flags,
          payload: flags & CODEC ? JSON.stringify(this.json()) : r.bytes(r.int(16)),
        };
      }
    }
  }

  private valid(): Buffer {
    return encode(this.validSpec());
  }

  /** A valid request or event whose payload is exactly `payload` (with `flags`). */
  private carrier(payload: Buffer | string, flags: number, compression = NONE): Buffer {
    const r = this.rng;
    const request = r.chance(0.6);
    return encode({
      packetType: request ? REQUEST : ONE_WAY,
      compression,
      messageId: r.id(),
      flags: HAS_ROUTE_TAG | flags,
      ext: request ? 'route:echo' : `route:${r.pick(EVENT_ROUTES)}`,
      payload,
    });
  }

  private mutateBits(p: Buffer): Buffer {
    const r = this.rng;
    const out = Buffer.from(p);
    const n = r.range(1, 4);
    for (let i = 0; i < n; i++) {
      // mostly in the header, where the decisions are
      const at = r.chance(0.7) || out.length <= HEADER ? r.int(Math.min(HEADER, out.length)) : r.range(HEADER, out.length - 1);
      out[at] ^= 1 << r.int(8);
    }
    return out;
  }

  private changeHeaderByte(p: Buffer): Buffer {
    const r = this.rng;
    const out = Buffer.from(p);
    const at = r.int(HEADER);
    out[at] = r.chance(0.3) ? r.pick([0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff]) : r.int(256);
    return out;
  }

  private absurd(): Buffer {
    const r = this.rng;
    const max = this.limits.maxPacketSize;
    const p = Buffer.from(this.valid());
    const which = r.int(8);
    switch (which) {
      case 0:
        p.writeUInt32BE(0xffffffff, 10);
        break;
      case 1:
        p.writeUInt32BE(0x80000000, 10);
        break;
      case 2:
        p.writeUInt32BE(max - HEADER - p.readUInt16BE(8) + 1, 10); // one past the limit
        break;
      case 3:
        p.writeUInt16BE(0xffff, 8);
        break;
      case 4:
        p.writeUInt16BE(this.limits.maxExtHeaderSize + 1, 8);
        break;
      case 5:
        p.writeUInt32BE(r.u32(), 10);
        p.writeUInt16BE(r.int(0x10000), 8);
        break;
      case 6:
        // within the limit, but far more than is sent: the receiver has to wait (and may time out)
        p.writeUInt32BE(max - HEADER - p.readUInt16BE(8), 10);
        break;
      default:
        // lengths that claim less than is there
        p.writeUInt32BE(0, 10);
        p.writeUInt16BE(0, 8);
        break;
    }
    return p;
  }

  private badExtHeader(): Buffer {
    const r = this.rng;
    const variants = [
      () => Buffer.from('route'),
      () => Buffer.from('route:echo\nno-colon-here'),
      () => Buffer.from('\r'),
      () => Buffer.concat([Buffer.from('route:'), r.pick(BAD_UTF8)]),
      () => Buffer.concat([r.pick(BAD_UTF8), Buffer.from(':x')]),
      () => Buffer.concat([Buffer.from('k:'), r.bytes(r.range(1, 40))]),
      () => Buffer.alloc(this.limits.maxExtHeaderSize + 1 + r.int(64), 'a'),
      () => Buffer.alloc(Math.min(0xffff, this.limits.maxExtHeaderSize + 1024), 'b'),
      // acceptable ones, so the neighbours of the errors get exercised too
      () => Buffer.from(`k:${'v'.repeat(this.limits.maxExtHeaderSize - 2)}`),
      () => Buffer.from(':empty-key'),
      () => Buffer.from('__proto__:polluted\nconstructor:x\nroute:echo'),
      () => Buffer.from('route:echo%0Aecho%25%0D'),
      () => Buffer.from('route:echo\n\nk:v\n'),
      () => Buffer.from(Array.from({ length: 200 }, (_, i) => `k${i}:${i}`).join('\n')),
    ];
    const ext = r.pick(variants)();
    const request = r.chance(0.6);
    return encode({
      packetType: request ? REQUEST : ONE_WAY,
      messageId: r.id(),
      flags: HAS_ROUTE_TAG | CODEC,
      ext,
      payload: JSON.stringify({ ext: true }),
    });
  }

  private badJson(): Buffer {
    const r = this.rng;
    const text = r.chance(0.8) ? r.pick(BAD_JSON) : undefined;
    const payload = text !== undefined ? Buffer.from(text) : r.chance(0.5) ? r.bytes(r.range(1, 24)) : Buffer.concat([Buffer.from('"'), r.pick(BAD_UTF8), Buffer.from('"')]);
    const compressed = r.chance(0.15);
    if (!compressed) return this.carrier(payload, CODEC);
    const zstd = r.chance(0.5);
    const z = zstd ? zstdCompress(payload) : zlibCompress(payload);
    if (zstd) this.known.set(z.toString('base64'), { size: payload.length, content: payload });
    return this.carrier(z, CODEC, zstd ? ZSTD : ZLIB);
  }

  private bomb(): { packet: Buffer; name: string } {
    const r = this.rng;
    const b = r.pick(this.bombs);
    let payload = b.payload;
    let name = b.name;
    if (r.chance(0.1)) {
      payload = Buffer.from(payload);
      for (let i = r.range(1, 4); i > 0; i--) payload[r.int(payload.length)] ^= 1 << r.int(8);
      name += '-mutated';
    } else if (b.compression === ZSTD) {
      this.known.set(payload.toString('base64'), { size: b.inflated, content: b.inflated <= this.limits.maxPacketSize ? Buffer.alloc(b.inflated) : undefined });
    }
    if (b.inflated <= this.limits.maxPacketSize) {
      // fits: send it where nothing keeps or echoes a megabyte
      const packet = encode({ packetType: ONE_WAY, compression: b.compression, messageId: r.id(), flags: HAS_ROUTE_TAG, ext: `route:${NO_HANDLER_EVENT}`, payload });
      return { packet, name };
    }
    return { packet: this.carrier(payload, r.chance(0.5) ? CODEC : 0, b.compression), name };
  }

  private deepJson(): Buffer {
    const depth = this.rng.pick([1000, 10_000, 100_000]);
    const text = '['.repeat(depth) + ']'.repeat(depth);
    return encode({ packetType: REQUEST, messageId: this.rng.id(), flags: HAS_ROUTE_TAG | CODEC, ext: 'route:echo', payload: text });
  }

  /** One malformed packet of any packet-level kind. */
  private malformed(): Buffer {
    const r = this.rng;
    const k = r.int(7);
    if (k === 0) return this.mutateBits(this.valid());
    if (k === 1) return this.changeHeaderByte(this.valid());
    if (k === 2) return this.absurd();
    if (k === 3) return this.badExtHeader();
    if (k === 4) return this.badJson();
    if (k === 5) return r.bytes(r.range(HEADER, 64));
    const p = Buffer.from(this.valid());
    p[0] = r.pick([0, 2, 255]);
    return p;
  }

  // -------------------------------------------------------------------------
  // inputs
  // -------------------------------------------------------------------------

  private build(kind: string): { chunks: Chunk[]; fixed?: Outcome; kind?: string; judgeAs?: Buffer[] } {
    const r = this.rng;
    const packets = (list: Buffer[]) => this.frameAll(list);
    switch (kind) {
      case 'valid':
        return packets(Array.from({ length: r.range(1, 4) }, () => this.valid()));
      case 'random-bytes': {
        const bytes = r.bytes(r.range(1, 256));
        if (r.chance(0.3)) bytes[0] = 1; // get past the version check sometimes
        return this.rawStream(bytes);
      }
      case 'truncated': {
        const p = this.valid();
        const cut = r.int(p.length);
        if (this.protocol === 'quic' && r.chance(0.5)) {
          // the frame declares the whole packet, but only part of it arrives
          return { chunks: [{ type: 'bytes', data: frame(p.subarray(0, cut), p.length) }] };
        }
        return packets([p.subarray(0, cut)]);
      }
      case 'bit-flip':
        return packets([this.mutateBits(this.valid())]);
      case 'byte-change':
        return packets([this.changeHeaderByte(this.valid())]);
      case 'absurd-length':
        return packets([this.absurd()]);
      case 'bad-version': {
        const p = Buffer.from(this.valid());
        p[0] = r.chance(0.5) ? r.pick([0, 2, 0xff]) : r.range(2, 255);
        return packets([p]);
      }
      case 'bad-flags': {
        const p = Buffer.from(this.valid());
        const flags = r.chance(0.6) ? FRAGMENTED | (r.u32() & 0xffff) : r.u32() & 0xfffe;
        p.writeUInt16BE(flags, 14);
        return packets([p]);
      }
      case 'bad-compression': {
        const p = Buffer.from(this.valid());
        p[1] = r.range(3, 255);
        return packets([p]);
      }
      case 'bad-packet-type': {
        const p = Buffer.from(this.valid());
        p[2] = r.range(3, 255);
        return packets([p]);
      }
      case 'bomb': {
        const b = this.bomb();
        return { ...packets([b.packet]), kind: `bomb:${b.name}` };
      }
      case 'bad-ext-header':
        return packets([this.badExtHeader()]);
      case 'bad-json':
        return packets([this.badJson()]);
      case 'deep-json':
        return packets([this.deepJson()]);
      case 'mixed': {
        // valid packets interleaved with one bad one
        const list = Array.from({ length: r.range(1, 4) }, () => this.valid());
        list.splice(r.int(list.length + 1), 0, this.malformed());
        return packets(list);
      }
      case 'flood': {
        // one more request than may be in flight, to a handler that never answers
        const n = this.limits.maxInFlight + 4;
        const list = Array.from({ length: n }, () =>
          encode({ packetType: REQUEST, messageId: r.id(), flags: HAS_ROUTE_TAG, ext: 'route:never' }),
        );
        return packets(list);
      }
      case 'max-size': {
        // exactly the largest packet allowed, to an event nobody handles
        const ext = `route:${NO_HANDLER_EVENT}`;
        const payload = Buffer.alloc(this.limits.maxPacketSize - HEADER - ext.length, 0x61);
        return packets([encode({ packetType: ONE_WAY, messageId: r.id(), flags: HAS_ROUTE_TAG, ext, payload })]);
      }
      case 'split-writes': {
        const list = Array.from({ length: r.range(1, 3) }, () => this.valid());
        const built = packets(list);
        const chunk = built.chunks[0] as { type: 'bytes'; data: Buffer; cuts?: number[] };
        const len = chunk.data.length;
        const cuts = [...new Set(Array.from({ length: r.range(1, 4) }, () => r.range(1, Math.max(1, len - 1))))].sort((a, b) => a - b);
        chunk.cuts = cuts.filter((c) => c > 0 && c < len);
        return built;
      }
      case 'partial-header': {
        const p = this.valid();
        return { chunks: [{ type: 'bytes', data: p.subarray(0, r.range(1, HEADER - 1)) }] };
      }
      case 'text':
        return {
          chunks: [{ type: 'text', data: r.chance(0.5) ? JSON.stringify({ pattern: 'echo', data: 1 }) : r.word(0, 40) }],
          fixed: { kind: 'close', codes: [Code.UNSUPPORTED_MESSAGE] },
        };
      case 'length-mismatch': {
        const p = this.valid();
        const msg = r.chance(0.5) ? Buffer.concat([p, r.bytes(r.range(1, 8))]) : p.subarray(0, Math.max(0, p.length - r.range(1, 8)));
        return { chunks: [{ type: 'binary', data: msg }] };
      }
      case 'empty-message':
        return { chunks: [{ type: 'binary', data: Buffer.alloc(0) }] };
      case 'raw-frame':
        return this.rawWsFrame();
      case 'bad-prefix':
        return this.badPrefix();
      default:
        throw new Error(`unknown input kind ${kind}`);
    }
  }

  /** Frames a list of packets as the protocol carries them. */
  private frameAll(list: Buffer[]): { chunks: Chunk[] } {
    switch (this.protocol) {
      case 'tcp':
        return { chunks: [{ type: 'bytes', data: Buffer.concat(list) }] };
      case 'ws':
        return { chunks: list.map((data) => ({ type: 'binary' as const, data })) };
      case 'quic':
        return { chunks: [{ type: 'bytes', data: Buffer.concat(list.map((p) => frame(p))) }] };
    }
  }

  /** Arbitrary bytes on the connection, below any packet framing. */
  private rawStream(bytes: Buffer): { chunks: Chunk[]; fixed?: Outcome } {
    if (this.protocol === 'ws') return { chunks: [{ type: 'binary', data: bytes }] };
    return { chunks: [{ type: 'bytes', data: bytes }] };
  }

  private badPrefix(): { chunks: Chunk[] } {
    const r = this.rng;
    const p = this.valid();
    const limit = Math.min(this.limits.maxPacketSize, QUIC_MAX_FRAME);
    const which = r.int(8);
    switch (which) {
      case 0:
        return { chunks: [{ type: 'bytes', data: Buffer.concat([frame(Buffer.alloc(0), QUIC_MAX_FRAME + 1), r.bytes(r.int(64))]) }] };
      case 1:
        return { chunks: [{ type: 'bytes', data: Buffer.concat([frame(Buffer.alloc(0), 0xffffffff), p]) }] };
      case 2:
        return { chunks: [{ type: 'bytes', data: Buffer.concat([frame(Buffer.alloc(0), r.range(limit + 1, QUIC_MAX_FRAME)), p]) }] };
      case 3:
        // shorter than the packet
        return { chunks: [{ type: 'bytes', data: frame(p, r.range(0, p.length - 1)) }] };
      case 4:
        // longer than the packet, with bytes after it
        return { chunks: [{ type: 'bytes', data: frame(Buffer.concat([p, r.bytes(r.range(1, 8))])) }] };
      case 5:
        // longer than the packet, and nothing more arrives
        return { chunks: [{ type: 'bytes', data: frame(p, p.length + r.range(1, 100)) }] };
      case 6:
        return { chunks: [{ type: 'bytes', data: frame(Buffer.alloc(0)) }] };
      default:
        // a prefix split across writes, then a good frame
        return { chunks: [{ type: 'bytes', data: frame(p), cuts: [r.range(1, 3)] }] };
    }
  }

  /**
   * Hand-made WebSocket frames written under the ws client. The verdicts
   * are RFC 6455's: the server's WebSocket layer must refuse broken frames
   * (reported as ERR_MSGTRANS_BAD_FRAME, or PACKET_TOO_LARGE for a length
   * over the limit), and accept legal fragmentation and control frames.
   */
  private rawWsFrame(): { chunks: Chunk[]; fixed?: Outcome; kind: string; judgeAs?: Buffer[] } {
    const r = this.rng;
    const p = this.valid();
    const close = (codes: string[]): Outcome => ({ kind: 'close', codes });
    const BAD = [Code.BAD_FRAME];
    const variants: Array<() => { data: Buffer; fixed?: Outcome; name: string; judgeAs?: Buffer[] }> = [
      () => ({ name: 'unmasked', data: wsFrame({ opcode: 2, payload: p, masked: false }), fixed: close(BAD) }),
      () => ({ name: 'rsv1', data: wsFrame({ opcode: 2, payload: p, rsv: 4 }), fixed: close(BAD) }),
      () => ({ name: 'rsv23', data: wsFrame({ opcode: 2, payload: p, rsv: r.pick([1, 2, 3]) }), fixed: close(BAD) }),
      () => ({ name: 'bad-opcode', data: wsFrame({ opcode: r.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]), payload: p }), fixed: close(BAD) }),
      () => ({ name: 'lone-continuation', data: wsFrame({ opcode: 0, payload: p }), fixed: close(BAD) }),
      () => ({ name: 'fragmented-ping', data: wsFrame({ opcode: 9, fin: false, payload: Buffer.from('x') }), fixed: close(BAD) }),
      () => ({ name: 'long-ping', data: wsFrame({ opcode: 9, payload: Buffer.alloc(126) }), fixed: close(BAD) }),
      () => ({ name: 'len-msb', data: wsFrame({ opcode: 2, payload: Buffer.alloc(0), declaredLength: 1n << 63n }), fixed: close(BAD) }),
      () => ({
        name: 'len-over-limit',
        data: wsFrame({ opcode: 2, payload: Buffer.alloc(0), declaredLength: this.limits.maxPacketSize + 1 + r.int(1000) }),
        fixed: close([Code.PACKET_TOO_LARGE]),
      }),
      () => ({ name: 'bad-utf8-text', data: wsFrame({ opcode: 1, payload: r.pick(BAD_UTF8) }), fixed: close(BAD) }),
      () => ({ name: 'text', data: wsFrame({ opcode: 1, payload: Buffer.from('hello') }), fixed: close([Code.UNSUPPORTED_MESSAGE]) }),
      () => ({ name: 'close-1-byte', data: wsFrame({ opcode: 8, payload: Buffer.from([3]) }), fixed: close(BAD) }),
      () => ({ name: 'close-bad-code', data: wsFrame({ opcode: 8, payload: Buffer.from([0x03, r.pick([0xe7, 0xed, 0xee])]) }), fixed: close(BAD) }),
      () => ({ name: 'close-normal', data: wsFrame({ opcode: 8, payload: Buffer.from([0x03, 0xe8]) }), fixed: close([NO_VIOLATION]) }),
      () => ({ name: 'binary-then-binary', data: Buffer.concat([wsFrame({ opcode: 2, fin: false, payload: p.subarray(0, 4) }), wsFrame({ opcode: 2, payload: p })]), fixed: close(BAD) }),
      () => {
        // legal: a message in fragments, with a ping between them; judged as the reassembled packet
        const cut = r.range(1, p.length - 1);
        const data = Buffer.concat([
          wsFrame({ opcode: 2, fin: false, payload: p.subarray(0, cut) }),
          wsFrame({ opcode: 9, payload: Buffer.from('hi') }),
          wsFrame({ opcode: 0, fin: true, payload: p.subarray(cut) }),
        ]);
        return { name: 'fragmented', data, judgeAs: [p] };
      },
      () => ({ name: 'ping', data: wsFrame({ opcode: 9, payload: r.bytes(r.int(126)) }), fixed: { kind: 'ok' } }),
      () => ({ name: 'partial', data: wsFrame({ opcode: 2, payload: p }).subarray(0, r.range(1, 6)), fixed: { kind: 'stall' } }),
      () => ({ name: 'random', data: r.bytes(r.range(1, 64)), fixed: { kind: 'maybe', reason: 'random bytes under WebSocket' } }),
    ];
    const v = r.pick(variants)();
    return { kind: `raw-frame:${v.name}`, chunks: [{ type: 'raw', data: v.data }], fixed: v.fixed, judgeAs: v.judgeAs };
  }
}

/** An input as plain data (hex), to cross process boundaries and to be saved for reproduction. */
export interface InputRecord {
  protocol: Protocol;
  seq: number;
  kind: string;
  chunks: Array<{ type: Chunk['type']; hex?: string; text?: string; cuts?: number[] }>;
}

export function toRecord(input: FuzzInput): InputRecord {
  return {
    protocol: input.protocol,
    seq: input.seq,
    kind: input.kind,
    chunks: input.chunks.map((c) =>
      c.type === 'text' ? { type: c.type, text: c.data } : { type: c.type, hex: c.data.toString('hex'), ...(c.type === 'bytes' && c.cuts ? { cuts: c.cuts } : {}) },
    ),
  };
}

/** The chunks of a record, as sendable chunks again (for replaying a saved input). */
export function fromRecord(record: InputRecord): Chunk[] {
  return record.chunks.map((c) => {
    if (c.type === 'text') return { type: 'text', data: c.text ?? '' };
    const data = Buffer.from(c.hex ?? '', 'hex');
    return c.type === 'bytes' ? { type: 'bytes', data, cuts: c.cuts } : { type: c.type, data };
  });
}

/** A one-line description of an input, for reports. */
export function describeInput(input: FuzzInput | InputRecord): string {
  const chunks = 'known' in input ? input.chunks : fromRecord(input);
  const parts = chunks.slice(0, 4).map((c) => {
    if (c.type === 'text') return `text(${JSON.stringify(c.data.slice(0, 40))})`;
    const hex = c.data.subarray(0, 48).toString('hex');
    return `${c.type}[${c.data.length}](${hex}${c.data.length > 48 ? '…' : ''})${'cuts' in c && c.cuts ? ` cuts=${c.cuts}` : ''}`;
  });
  const more = chunks.length > 4 ? ` (+${chunks.length - 4} more messages)` : '';
  return `${input.protocol} #${input.seq} ${input.kind}: ${parts.join(' ')}${more}`;
}
