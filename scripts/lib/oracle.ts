/**
 * The fuzzer's reference judgement: given the bytes sent on a connection,
 * what must a msgtrans v1 receiver (PROTOCOL.md) do with them? Written from
 * the protocol text, not from lib/, so that a disagreement between the two
 * is worth a look.
 *
 * Where PROTOCOL.md leaves a choice to the implementation (which of several
 * faults is reported, whether a response nobody waits for is decoded at
 * all, empty lines in the extension header, invalid UTF-8 inside a JSON
 * string, ...) the verdict is 'maybe' or lists every acceptable code, so
 * only real disagreements are flagged.
 */
import { isUtf8 } from 'node:buffer';
import {
  CANCEL,
  CODEC,
  Code,
  FRAGMENTED,
  HEADER,
  ONE_WAY,
  QUIC_MAX_FRAME,
  REQUEST,
  RESPONSE,
  ZLIB,
  ZSTD,
  NONE,
  boundedInflate,
} from '../../test/support/raw-wire.js';

export interface OracleLimits {
  maxPacketSize: number;
  maxExtHeaderSize: number;
  maxInFlight: number;
}

/** What the receiver does with an input. */
export type Outcome =
  /** Accepts it; the connection stays usable and is at a packet boundary. */
  | { kind: 'ok' }
  /** Must close the connection, reporting one of `codes`. */
  | { kind: 'close'; codes: string[] }
  /** Must wait for more bytes (a packet or frame is incomplete). */
  | { kind: 'stall' }
  /** Either is acceptable (the protocol leaves it open, or the oracle cannot tell cheaply). */
  | { kind: 'maybe'; reason: string };

/** A reply the receiver must send for a request it accepted. */
export interface ReplyExpectation {
  messageId: number;
  bizType: number;
  /** echo-json: CODEC reply whose JSON equals `json`; echo-raw: raw reply equal to `raw`; error: ERROR reply; any: some final reply. */
  kind: 'echo-json' | 'echo-raw' | 'error' | 'any';
  json?: string;
  raw?: Buffer;
}

export interface Judgement {
  outcome: Outcome;
  replies: ReplyExpectation[];
}

/** Per-connection state the oracle needs across inputs. */
export class OracleState {
  /** Requests to handlers that never answer ('never', 'ticker'): they stay in flight until the connection ends. */
  neverInFlight = 0;
}

/** zstd payloads the generator made and knows the inflated size (and content) of, by base64. */
export type ZstdKnowledge = Map<string, { size: number; content?: Buffer }>;

const NEVER_ROUTES = new Set(['never', 'ticker']);

/**
 * Routes the fuzzed app (test/support/test-app.ts) has a handler for,
 * message and event patterns alike. A receiver may leave the payload of any
 * other route undecoded (issue 9, item 7: decode only what will be handled),
 * so a bad payload there may or may not close the connection.
 */
const HANDLED_ROUTES = new Set([
  'echo', 'echo.async', 'ctx', '7', '10', '{"cmd":"sum","v":1}', 'stream', 'stream.fail', 'ticker', 'never',
  'fail.rpc', 'fail.rpc.object', 'fail.plain', 'fail.async', 'guarded', 'intercepted', 'filtered', 'bigint',
  'event', '12',
]);

/** In a list of acceptable codes: any code will do. */
export const ANY_CODE = '*';

function headerFaults(buf: Buffer, offset: number, limits: OracleLimits): { faults: string[]; total: number } {
  const faults: string[] = [];
  if (buf[offset] !== 1) faults.push(Code.BAD_VERSION);
  if (buf[offset + 1] > 2) faults.push(Code.BAD_COMPRESSION);
  if (buf[offset + 2] > 2) faults.push(Code.BAD_PACKET_TYPE);
  const flags = buf.readUInt16BE(offset + 14);
  if (flags & FRAGMENTED) faults.push(Code.FRAGMENTED);
  const extLen = buf.readUInt16BE(offset + 8);
  if (extLen > limits.maxExtHeaderSize) faults.push(Code.EXT_HEADER_TOO_LARGE);
  const total = HEADER + extLen + buf.readUInt32BE(offset + 10);
  if (total > limits.maxPacketSize) faults.push(Code.PACKET_TOO_LARGE);
  return { faults, total };
}

/**
 * Results for big payloads, by content: the generator reuses its bombs and
 * deep-JSON texts, and inflating a megabyte or failing to re-encode
 * 100,000 levels of JSON costs milliseconds each time.
 */
class ContentMemo<T> {
  private readonly entries = new Map<string, Array<{ bytes: Buffer; value: T }>>();
  constructor(
    private readonly minSize: number,
    private readonly limit = 32,
  ) {}

  get(bytes: Buffer, compute: () => T): T {
    if (bytes.length < this.minSize) return compute();
    const key = `${bytes.length}:${bytes.subarray(0, 32).toString('hex')}:${bytes.subarray(-32).toString('hex')}`;
    const list = this.entries.get(key);
    const hit = list?.find((e) => e.bytes.equals(bytes));
    if (hit) return hit.value;
    const value = compute();
    if (this.entries.size >= this.limit) this.entries.delete(this.entries.keys().next().value as string);
    const entry = { bytes: Buffer.from(bytes), value };
    if (list) list.push(entry);
    else this.entries.set(key, [entry]);
    return value;
  }
}

const inflateMemo = new ContentMemo<ReturnType<typeof boundedInflate>>(512);
type JsonResult = { ok: false } | { ok: true; json: string | undefined; deep: boolean; utf8: boolean };
const jsonMemo = new ContentMemo<JsonResult>(16 * 1024);

function decodeJson(plain: Buffer): JsonResult {
  try {
    const parsed = JSON.parse(plain.toString('utf8'));
    let json: string | undefined;
    let deep = false;
    try {
      json = JSON.stringify(parsed);
    } catch {
      deep = true; // too deep to re-encode: the reply must be an error
    }
    return { ok: true, json, deep, utf8: isUtf8(plain) };
  } catch {
    return { ok: false };
  }
}

interface Content {
  /** Definite protocol errors found in the content. */
  faults: string[];
  /** Of `faults`, those found in the payload (not the extension header). */
  payloadFaults: number;
  /** Something the protocol leaves open was found. */
  ambiguous: string | undefined;
  route: string | undefined;
  routeUncertain: boolean;
  /** Decoded data: a JSON text (canonical) / raw bytes / undefined for an empty CODEC payload. */
  data: { codec: true; json: string | undefined; deep: boolean } | { codec: false; raw: Buffer } | undefined;
}

function examineContent(p: Buffer, limits: OracleLimits, known: ZstdKnowledge | undefined): Content {
  const extLen = p.readUInt16BE(8);
  const ext = p.subarray(HEADER, HEADER + extLen);
  const payload = p.subarray(HEADER + extLen);
  const flags = p.readUInt16BE(14);
  const compression = p[1];
  const c: Content = { faults: [], payloadFaults: 0, ambiguous: undefined, route: undefined, routeUncertain: false, data: undefined };

  // extension header: UTF-8 `key:value` lines separated by \n
  if (ext.length > 0) {
    if (!isUtf8(ext)) {
      c.faults.push(Code.BAD_EXT_HEADER);
    } else {
      const lines = ext.toString('utf8').split('\n');
      let routes = 0;
      for (const line of lines) {
        if (line.length === 0) {
          c.ambiguous ??= 'empty line in the extension header';
          continue;
        }
        const colon = line.indexOf(':');
        if (colon < 0) {
          c.faults.push(Code.BAD_EXT_HEADER);
          break;
        }
        if (line.slice(0, colon) === 'route') {
          routes++;
          const value = line.slice(colon + 1);
          if (value.includes('%')) c.routeUncertain = true;
          c.route = value;
        }
      }
      if (routes > 1) c.routeUncertain = true;
    }
  }

  // payload: decompress (bounded), then decode under CODEC
  const extFaults = c.faults.length;
  let plain: Buffer | undefined;
  if (compression === NONE) {
    plain = payload;
  } else if (compression === ZLIB) {
    const r = inflateMemo.get(payload, () => boundedInflate(payload, limits.maxPacketSize));
    if (r.ok) plain = r.data;
    else c.faults.push(r.code);
  } else if (compression === ZSTD) {
    const k = known?.get(payload.toString('base64'));
    if (k === undefined) {
      c.ambiguous ??= 'zstd payload the generator does not know';
    } else if (k.size > limits.maxPacketSize) {
      c.faults.push(Code.DECOMPRESSED_TOO_LARGE);
    } else {
      plain = k.content;
      if (plain === undefined) c.ambiguous ??= 'zstd content unknown';
    }
  }
  if (plain !== undefined) {
    if (flags & CODEC) {
      if (plain.length === 0) {
        c.data = { codec: true, json: undefined, deep: false };
      } else {
        const r = jsonMemo.get(plain, () => decodeJson(plain));
        if (r.ok) {
          if (!r.utf8) c.ambiguous ??= 'JSON that is not valid UTF-8';
          c.data = { codec: true, json: r.json, deep: r.deep };
        } else {
          c.faults.push(Code.BAD_PAYLOAD);
        }
      }
    } else {
      c.data = { codec: false, raw: Buffer.from(plain) };
    }
  }
  c.payloadFaults = c.faults.length - extFaults;
  return c;
}

/**
 * Judges one complete packet (exactly its bytes). `state` is the
 * connection's, updated for requests that never end.
 */
export function judgePacket(p: Buffer, limits: OracleLimits, state: OracleState, known?: ZstdKnowledge): Judgement {
  const { faults } = headerFaults(p, 0, limits);
  if (faults.length > 0) return { outcome: { kind: 'close', codes: faults }, replies: [] };
  const type = p[2];
  const flags = p.readUInt16BE(14);
  const content = examineContent(p, limits, known);

  // A response to nothing, or a CANCEL: the receiver may drop it without looking inside.
  if (type === RESPONSE || (type === ONE_WAY && flags & CANCEL)) {
    if (content.faults.length > 0) return { outcome: { kind: 'maybe', reason: 'malformed response/CANCEL nobody waits for' }, replies: [] };
    return { outcome: { kind: 'ok' }, replies: [] };
  }
  if (content.faults.length > 0 && content.faults.length === content.payloadFaults) {
    const route = content.route ?? String(p[3]);
    if (content.routeUncertain || !HANDLED_ROUTES.has(route)) {
      return { outcome: { kind: 'maybe', reason: 'bad payload for a route without a handler (decoding it is optional)' }, replies: [] };
    }
  }
  if (content.faults.length > 0) {
    // several faults: any of them may be the one reported
    return { outcome: { kind: 'close', codes: [...new Set(content.faults)] }, replies: [] };
  }
  const replies: ReplyExpectation[] = [];
  if (type === REQUEST) {
    const route = content.route ?? String(p[3]);
    if (NEVER_ROUTES.has(route) || content.routeUncertain) {
      if (++state.neverInFlight > limits.maxInFlight) {
        return { outcome: { kind: 'close', codes: [Code.TOO_MANY_IN_FLIGHT] }, replies: [] };
      }
    } else if (content.data !== undefined && !content.ambiguous) {
      replies.push(expectedReply(p, route, content));
    }
  }
  if (content.ambiguous) return { outcome: { kind: 'maybe', reason: content.ambiguous }, replies };
  return { outcome: { kind: 'ok' }, replies };
}

function expectedReply(p: Buffer, route: string, content: Content): ReplyExpectation {
  const messageId = p.readUInt32BE(4);
  const bizType = p[3];
  const data = content.data!;
  if (route === 'echo') {
    if (data.codec) {
      if (data.deep) return { messageId, bizType, kind: 'error' };
      return { messageId, bizType, kind: 'echo-json', json: data.json };
    }
    return { messageId, bizType, kind: 'echo-raw', raw: data.raw };
  }
  return { messageId, bizType, kind: 'any' };
}

/** Combines per-packet judgements in order: the first that is not 'ok' decides. */
function combine(parts: Judgement[]): Judgement {
  const replies: ReplyExpectation[] = [];
  let maybe: Outcome | undefined;
  for (const part of parts) {
    replies.push(...part.replies);
    if (part.outcome.kind === 'close') {
      // What came before a fatal packet may or may not be answered before the close.
      // After a 'maybe' the connection still ends, but possibly for that earlier packet ('*': any code).
      return { outcome: { kind: 'close', codes: maybe ? [...part.outcome.codes, ANY_CODE] : part.outcome.codes }, replies: [] };
    }
    if (part.outcome.kind === 'stall') return { outcome: maybe ?? part.outcome, replies: [] };
    if (part.outcome.kind === 'maybe') maybe ??= part.outcome;
  }
  return { outcome: maybe ?? { kind: 'ok' }, replies: maybe ? [] : replies };
}

/**
 * TCP: packets back to back. An input starts at a packet boundary; a
 * header that declares more than is sent means the receiver waits.
 */
export function judgeStream(bytes: Buffer, limits: OracleLimits, state: OracleState, known?: ZstdKnowledge): Judgement {
  const parts: Judgement[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < HEADER) {
      // a partial header: faults in the bytes present are not knowable yet in general
      parts.push({ outcome: { kind: 'stall' }, replies: [] });
      break;
    }
    const { faults, total } = headerFaults(bytes, offset, limits);
    if (faults.length > 0) {
      parts.push({ outcome: { kind: 'close', codes: faults }, replies: [] });
      break;
    }
    if (bytes.length - offset < total) {
      parts.push({ outcome: { kind: 'stall' }, replies: [] });
      break;
    }
    const j = judgePacket(bytes.subarray(offset, offset + total), limits, state, known);
    parts.push(j);
    if (j.outcome.kind === 'close') break;
    offset += total;
  }
  return combine(parts);
}

/** WebSocket: one packet per binary message, whose length must match its header exactly. */
export function judgeMessage(message: Buffer, limits: OracleLimits, state: OracleState, known?: ZstdKnowledge): Judgement {
  if (message.length < HEADER) return { outcome: { kind: 'close', codes: [Code.BAD_LENGTH] }, replies: [] };
  const { faults, total } = headerFaults(message, 0, limits);
  if (total !== message.length) {
    return { outcome: { kind: 'close', codes: [...faults, Code.BAD_LENGTH] }, replies: [] };
  }
  if (message.length > limits.maxPacketSize) {
    // the WebSocket layer may refuse the message before msgtrans sees it
    return { outcome: { kind: 'close', codes: [...faults, Code.PACKET_TOO_LARGE] }, replies: [] };
  }
  return judgePacket(message, limits, state, known);
}

export function judgeMessages(messages: Buffer[], limits: OracleLimits, state: OracleState, known?: ZstdKnowledge): Judgement {
  const parts: Judgement[] = [];
  for (const m of messages) {
    const j = judgeMessage(m, limits, state, known);
    parts.push(j);
    if (j.outcome.kind === 'close') break;
  }
  return combine(parts);
}

/** QUIC: u32 length-prefixed frames, each exactly one packet; over min(limit, 16 MiB) ends the connection. */
export function judgeFrames(bytes: Buffer, limits: OracleLimits, state: OracleState, known?: ZstdKnowledge): Judgement {
  const parts: Judgement[] = [];
  const frameLimit = Math.min(limits.maxPacketSize, QUIC_MAX_FRAME);
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < 4) {
      parts.push({ outcome: { kind: 'stall' }, replies: [] });
      break;
    }
    const length = bytes.readUInt32BE(offset);
    if (length > frameLimit) {
      parts.push({ outcome: { kind: 'close', codes: [Code.PACKET_TOO_LARGE] }, replies: [] });
      break;
    }
    if (bytes.length - offset - 4 < length) {
      parts.push({ outcome: { kind: 'stall' }, replies: [] });
      break;
    }
    const j = judgeMessage(bytes.subarray(offset + 4, offset + 4 + length), limits, state, known);
    parts.push(j);
    if (j.outcome.kind === 'close') break;
    offset += 4 + length;
  }
  return combine(parts);
}
