import { isUtf8 } from 'node:buffer';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransError } from '../errors/msgtrans-error.js';
import { MsgTransProtocolError } from '../errors/msgtrans-protocol-error.js';

/** The extension header entry that carries the pattern. */
export const ROUTE_KEY = 'route';

/** What the extension header says: the route (if any) and every other entry as metadata. */
export interface ExtHeaderEntries {
  route: string | undefined;
  metadata: Record<string, string> | undefined;
}

const EMPTY = Buffer.alloc(0);
const ROUTE_ONLY = new Map<string, Buffer>();
// route plus one entry that repeats call after call (a client's time budget): the last one per route
const ROUTE_AND_ONE = new Map<string, { key: string; value: string; encoded: Buffer }>();
// patterns are few in practice; the bound keeps a caller with unbounded routes from growing memory
const ROUTE_CACHE_LIMIT = 1024;
// "route:" in UTF-8
const ROUTE_PREFIX = Buffer.from(`${ROUTE_KEY}:`);
const NEWLINE = 0x0a;
const PERCENT = 0x25;
const NEEDS_ESCAPE = /[%\n\r]/;
const ESCAPED = /%(25|0A|0D)/gi;

function escapeValue(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/%/g, '%25').replace(/\n/g, '%0A').replace(/\r/g, '%0D');
}

function unescapeValue(value: string): string {
  if (value.indexOf('%') < 0) return value;
  return value.replace(ESCAPED, (_, hex: string) =>
    hex === '25' ? '%' : hex.toUpperCase() === '0A' ? '\n' : '\r',
  );
}

function assertKey(key: string): void {
  if (key.length === 0 || key === ROUTE_KEY || /[:\n\r]/.test(key)) {
    throw new MsgTransError(
      MsgTransErrorCode.INVALID_METADATA,
      `Metadata key ${JSON.stringify(key)} cannot travel in the extension header`,
    );
  }
}

/**
 * Encodes `route:<route>` followed by one `key:value` line per metadata
 * entry, values escaped per PROTOCOL.md. Returns an empty buffer when there is
 * nothing to say.
 */
export function encodeExtHeader(route: string | undefined, metadata?: Record<string, string>): Buffer {
  if (metadata === undefined && route !== undefined) {
    // route-only headers repeat constantly (one per pattern): encode each once
    let cached = ROUTE_ONLY.get(route);
    if (cached === undefined) {
      cached = Buffer.from(`${ROUTE_KEY}:${escapeValue(route)}`, 'utf8');
      if (ROUTE_ONLY.size < ROUTE_CACHE_LIMIT) ROUTE_ONLY.set(route, cached);
    }
    return cached;
  }
  if (route !== undefined && metadata !== undefined) {
    const cached = encodeRouteAndOne(route, metadata);
    if (cached !== undefined) return cached;
  }
  let text = route === undefined ? '' : `${ROUTE_KEY}:${escapeValue(route)}`;
  if (metadata) {
    for (const key of Object.keys(metadata)) {
      assertKey(key);
      const line = `${key}:${escapeValue(String(metadata[key]))}`;
      text = text.length === 0 ? line : `${text}\n${line}`;
    }
  }
  return text.length === 0 ? EMPTY : Buffer.from(text, 'utf8');
}

/** A route and a single metadata entry, from the cache when the same as last time for that route. */
function encodeRouteAndOne(route: string, metadata: Record<string, string>): Buffer | undefined {
  let key: string | undefined;
  for (const k in metadata) {
    if (key !== undefined || !Object.hasOwn(metadata, k)) return undefined;
    key = k;
  }
  if (key === undefined) return undefined;
  const value = String(metadata[key]);
  const hit = ROUTE_AND_ONE.get(route);
  if (hit !== undefined && hit.key === key && hit.value === value) return hit.encoded;
  assertKey(key);
  const encoded = Buffer.from(`${ROUTE_KEY}:${escapeValue(route)}\n${key}:${escapeValue(value)}`, 'utf8');
  if (hit !== undefined || ROUTE_AND_ONE.size < ROUTE_CACHE_LIMIT) ROUTE_AND_ONE.set(route, { key, value, encoded });
  return encoded;
}

/**
 * The route of a header that holds nothing but a plain `route:` entry (the
 * common case), without the general parse; undefined for anything else (the
 * caller then parses it). A header already parsed that held a route alone
 * gives that route too, escapes resolved, as the parse would.
 */
export function routeOnly(buf: Buffer): string | undefined {
  const length = buf.length;
  const prefix = ROUTE_PREFIX.length;
  // short headers: one JS pass beats several native calls; ASCII only, the rest takes the general path
  if (length <= prefix || length > 256) return undefined;
  // a header seen before (one a sender repeats): its route again, without reading it
  const known = knownSlot(buf);
  if (known >= 0) return decodedEntries[known].length === 0 ? decodedRoutes[known] : undefined;
  for (let i = 0; i < prefix; i++) if (buf[i] !== ROUTE_PREFIX[i]) return undefined;
  for (let i = prefix; i < length; i++) {
    const byte = buf[i];
    if (byte === NEWLINE || byte === PERCENT || byte >= 0x80) return undefined;
  }
  const route = buf.toString('latin1', prefix, length);
  remember(buf, route, NO_ENTRIES);
  return route;
}

// Decoded short headers, by their bytes: a client sends the same route and time budget call
// after call, so most headers are one seen just before. Direct-mapped and small: a miss costs
// one comparison and one copy, and what is kept is bounded (16 headers of at most 128 bytes).
const DECODED_SLOTS = 16;
const DECODED_MAX_BYTES = 128;
const decodedBytes: (Buffer | null)[] = new Array<Buffer | null>(DECODED_SLOTS).fill(null);
const decodedRoutes: (string | undefined)[] = new Array<string | undefined>(DECODED_SLOTS).fill(undefined);
// the metadata entries as [key, value, key, value, …]; a fresh object is made from them per header
const decodedEntries: string[][] = Array.from({ length: DECODED_SLOTS }, () => []);
const NO_ENTRIES: string[] = [];

/** A header short enough that one JS pass beats a native call, and all ASCII (a route and a time budget, typically). */
function isShortAscii(buf: Buffer): boolean {
  const length = buf.length;
  if (length > 256) return false;
  for (let i = 0; i < length; i++) if (buf[i] >= 0x80) return false;
  return true;
}

function slotOf(buf: Buffer): number {
  return (buf.length ^ buf[buf.length - 1] ^ (buf[buf.length >> 1] << 1)) & (DECODED_SLOTS - 1);
}

/** The slot holding a decode of exactly these bytes, or -1. */
function knownSlot(buf: Buffer): number {
  if (buf.length > DECODED_MAX_BYTES) return -1;
  const slot = slotOf(buf);
  const known = decodedBytes[slot];
  return known !== null && sameBytes(known, buf) ? slot : -1;
}

/** Keeps a decoded header (short ones only); strings are immutable, so route and entries are shared by every hit. */
function remember(buf: Buffer, route: string | undefined, entries: string[]): void {
  if (buf.length > DECODED_MAX_BYTES) return;
  const slot = slotOf(buf);
  decodedBytes[slot] = Buffer.from(buf);
  decodedRoutes[slot] = route;
  decodedEntries[slot] = entries;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  const length = a.length;
  if (b.length !== length) return false;
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function setEntry(metadata: Record<string, string>, key: string, value: string): void {
  // defineProperty for "__proto__": it stays data, never the object's prototype
  if (key === '__proto__') Object.defineProperty(metadata, key, { value, enumerable: true, writable: true, configurable: true });
  else metadata[key] = value;
}

/**
 * Parses an extension header. Empty lines are tolerated; a line without `:`
 * or bytes that are not UTF-8 are a protocol error. Every call returns a
 * metadata object of its own (the receiver may change it).
 */
export function decodeExtHeader(buf: Buffer): ExtHeaderEntries {
  if (buf.length === 0) return { route: undefined, metadata: undefined };
  const known = knownSlot(buf);
  if (known >= 0) {
    const entries = decodedEntries[known];
    let metadata: Record<string, string> | undefined;
    if (entries.length > 0) {
      metadata = {};
      for (let i = 0; i < entries.length; i += 2) setEntry(metadata, entries[i], entries[i + 1]);
    }
    return { route: decodedRoutes[known], metadata };
  }
  let text: string;
  if (isShortAscii(buf)) {
    // ASCII is UTF-8 already: no validation pass, and the cheapest decode
    text = buf.toString('latin1');
  } else if (isUtf8(buf)) {
    text = buf.toString('utf8');
  } else {
    throw new MsgTransProtocolError(MsgTransErrorCode.BAD_EXT_HEADER, 'Extension header is not valid UTF-8');
  }
  let route: string | undefined;
  let metadata: Record<string, string> | undefined;
  const entries: string[] = [];
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    if (end > start) {
      const colon = text.indexOf(':', start);
      if (colon < 0 || colon >= end) {
        throw new MsgTransProtocolError(MsgTransErrorCode.BAD_EXT_HEADER, 'Extension header line without ":"');
      }
      const key = text.slice(start, colon);
      const value = unescapeValue(text.slice(colon + 1, end));
      if (key === ROUTE_KEY) route = value;
      else {
        setEntry((metadata ??= {}), key, value);
        entries.push(key, value);
      }
    }
    start = end + 1;
  }
  remember(buf, route, entries);
  return { route, metadata };
}
