/**
 * The msgtrans v1 packet over plain `Uint8Array`/`DataView` (no `Buffer`), for
 * runtimes without Node's built-ins. Constants come from `lib/codec/packet.ts`
 * so both codecs read one definition of the wire; the checks mirror
 * `lib/codec/packet-decoder.ts` and `lib/codec/ext-header.ts` rule for rule.
 */
import { HEADER_SIZE, MAX_EXT_HEADER_LEN, PROTOCOL_VERSION, PacketFlag } from '../codec/packet.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransWebError } from './msgtrans-web-error.js';

/** One packet; `extHeader` and `payload` may be views into the received message. */
export interface WebPacket {
  compression: number;
  packetType: number;
  bizType: number;
  messageId: number;
  flags: number;
  extHeader: Uint8Array;
  payload: Uint8Array;
}

/** Limits checked from the header before anything else (lib/codec's PacketLimits, without its Buffer-typed module). */
export interface WebPacketLimits {
  maxPacketSize: number;
  maxExtHeaderSize: number;
}

/** What the extension header says: the route (if any) and every other entry as metadata. */
export interface WebExtHeader {
  route: string | undefined;
  metadata: Record<string, string> | undefined;
}

const ROUTE_KEY = 'route';
export const EMPTY_BYTES = new Uint8Array(0);
const utf8Encoder = new TextEncoder();
// fatal: bytes that are not UTF-8 are a protocol error, as in the Node codec
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

export const encodeUtf8 = (text: string): Uint8Array => utf8Encoder.encode(text);

/** UTF-8 bytes to text; throws a TypeError on bytes that are not UTF-8. */
export const decodeUtf8 = (bytes: Uint8Array): string => utf8Decoder.decode(bytes);

function protocolError(code: MsgTransErrorCode, message: string): MsgTransWebError {
  return new MsgTransWebError(code, message);
}

/** Writes one packet into a fresh buffer. */
export function encodeWebPacket(packet: WebPacket): Uint8Array {
  const { extHeader, payload } = packet;
  const out = new Uint8Array(HEADER_SIZE + extHeader.length + payload.length);
  const view = new DataView(out.buffer);
  out[0] = PROTOCOL_VERSION;
  out[1] = packet.compression;
  out[2] = packet.packetType;
  out[3] = packet.bizType;
  view.setUint32(4, packet.messageId >>> 0);
  view.setUint16(8, extHeader.length);
  view.setUint32(10, payload.length);
  view.setUint16(14, packet.flags);
  out.set(extHeader, HEADER_SIZE);
  out.set(payload, HEADER_SIZE + extHeader.length);
  return out;
}

/**
 * Reads one packet from a WebSocket message, which must hold exactly one.
 * Everything the header makes unacceptable is rejected before any view is
 * taken: a bad packet closes the connection.
 */
export function decodeWebPacket(bytes: Uint8Array, limits: WebPacketLimits): WebPacket {
  if (bytes.length < HEADER_SIZE) {
    throw protocolError(MsgTransErrorCode.BAD_LENGTH, `Packet of ${bytes.length} bytes is shorter than the header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] !== PROTOCOL_VERSION) {
    throw protocolError(MsgTransErrorCode.BAD_VERSION, `Unsupported msgtrans version ${bytes[0]}`);
  }
  const compression = bytes[1];
  if (compression > 2) throw protocolError(MsgTransErrorCode.BAD_COMPRESSION, `Unknown compression ${compression}`);
  const packetType = bytes[2];
  if (packetType > 2) throw protocolError(MsgTransErrorCode.BAD_PACKET_TYPE, `Unknown packet type ${packetType}`);
  const flags = view.getUint16(14);
  if (flags & PacketFlag.FRAGMENTED) {
    throw protocolError(MsgTransErrorCode.FRAGMENTED, 'FRAGMENTED packets are not part of msgtrans v1');
  }
  const extLength = view.getUint16(8);
  if (extLength > limits.maxExtHeaderSize) {
    throw protocolError(
      MsgTransErrorCode.EXT_HEADER_TOO_LARGE,
      `Extension header of ${extLength} bytes exceeds the limit of ${limits.maxExtHeaderSize}`,
    );
  }
  const total = HEADER_SIZE + extLength + view.getUint32(10);
  if (total > limits.maxPacketSize) {
    throw protocolError(
      MsgTransErrorCode.PACKET_TOO_LARGE,
      `Packet of ${total} bytes exceeds the limit of ${limits.maxPacketSize}`,
    );
  }
  if (total !== bytes.length) {
    throw protocolError(MsgTransErrorCode.BAD_LENGTH, `Header declares ${total} bytes but the message holds ${bytes.length}`);
  }
  const payloadStart = HEADER_SIZE + extLength;
  return {
    compression,
    packetType,
    bizType: bytes[3],
    messageId: view.getUint32(4),
    flags,
    extHeader: bytes.subarray(HEADER_SIZE, payloadStart),
    payload: bytes.subarray(payloadStart),
  };
}

const escapeValue = (value: string): string =>
  value.replace(/%/g, '%25').replace(/\n/g, '%0A').replace(/\r/g, '%0D');

const unescapeValue = (value: string): string =>
  value.replace(/%(25|0A|0D)/gi, (_, hex: string) => (hex === '25' ? '%' : hex.toUpperCase() === '0A' ? '\n' : '\r'));

/**
 * Encodes `route:<route>` and one `key:value` line per metadata entry, values
 * %-escaped (PROTOCOL.md Part B). Empty when there is nothing to say.
 */
export function encodeExtHeader(route: string | undefined, metadata: Record<string, string> | undefined): Uint8Array {
  const lines: string[] = route === undefined ? [] : [`${ROUTE_KEY}:${escapeValue(route)}`];
  if (metadata) {
    for (const key of Object.keys(metadata)) {
      if (key.length === 0 || key === ROUTE_KEY || /[:\n\r]/.test(key)) {
        throw new MsgTransWebError(
          MsgTransErrorCode.INVALID_METADATA,
          `Metadata key ${JSON.stringify(key)} cannot travel in the extension header`,
        );
      }
      lines.push(`${key}:${escapeValue(String(metadata[key]))}`);
    }
  }
  if (lines.length === 0) return EMPTY_BYTES;
  const bytes = encodeUtf8(lines.join('\n'));
  if (bytes.length > MAX_EXT_HEADER_LEN) {
    throw new MsgTransWebError(MsgTransErrorCode.INVALID_METADATA, `Route and metadata take ${bytes.length} bytes, over 65535`);
  }
  return bytes;
}

/** Parses an extension header; a line without `:` or bytes that are not UTF-8 are a protocol error. */
export function decodeExtHeader(bytes: Uint8Array): WebExtHeader {
  let route: string | undefined;
  let metadata: Record<string, string> | undefined;
  if (bytes.length === 0) return { route, metadata };
  let text: string;
  try {
    text = decodeUtf8(bytes);
  } catch {
    throw protocolError(MsgTransErrorCode.BAD_EXT_HEADER, 'Extension header is not valid UTF-8');
  }
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    const colon = line.indexOf(':');
    if (colon < 0) throw protocolError(MsgTransErrorCode.BAD_EXT_HEADER, 'Extension header line without ":"');
    const key = line.slice(0, colon);
    const value = unescapeValue(line.slice(colon + 1));
    if (key === ROUTE_KEY) route = value;
    // defineProperty: a key such as "__proto__" stays data, never the object's prototype
    else Object.defineProperty((metadata ??= {}), key, { value, enumerable: true, writable: true, configurable: true });
  }
  return { route, metadata };
}
