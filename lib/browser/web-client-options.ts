import { MSGTRANS_DEFAULTS } from '../constants.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransWebError } from './msgtrans-web-error.js';
import { canCompress } from './web-compression.js';

/**
 * What the client needs of a WebSocket: the WHATWG API that browsers, Deno
 * and Node >= 22 have globally, and that the `ws` package implements.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  // any: the DOM's send() takes ArrayBuffer-backed views only, typed differently across TypeScript versions
  send(data: any): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `ws`'s `WebSocket` on Node 20. */
export type WebSocketConstructorLike = new (url: string) => WebSocketLike;

/** Reconnection after a connection that was up goes away; delays grow from `initialDelay` to `maxDelay`. */
export interface MsgTransWebReconnectOptions {
  /** ms before the first attempt. Default 100. */
  initialDelay?: number;
  /** Largest ms between attempts. Default 5000. */
  maxDelay?: number;
  /** Growth of the delay per attempt. Default 2. */
  factor?: number;
  /** Random spread of each delay, as a fraction (0.2 = ±20%). Default 0.2. */
  jitter?: number;
  /** Attempts before giving up (status `disconnected`; the next call connects again). Default: unlimited. */
  maxAttempts?: number;
}

/** Options of {@link MsgTransWebClient}. Defaults are the Node client's (`MSGTRANS_DEFAULTS`). */
export interface MsgTransWebClientOptions {
  /** ms a call waits for its reply (or a stream for its next value), including any wait for a connection. 0 disables. Default 30000. */
  requestTimeout?: number;
  /** ms to open the WebSocket and have the credentials accepted. Default 10000. */
  connectTimeout?: number;
  /** Sent first on every connection (a `msgtrans.auth` request) for the server's `authenticate` hook, e.g. `{ token }`. Default: none. */
  credentials?: unknown;
  /** Extension-header metadata sent with every call (a call's own `metadata` adds to it). Default: none. */
  metadata?: Record<string, string>;
  /** Reconnect automatically, with jittered exponential backoff, or `false`. Default: on (100 ms to 5000 ms). */
  reconnect?: MsgTransWebReconnectOptions | false;
  /** While reconnecting, calls `'wait'` (each within its own timeout) or `'fail'` at once with `ERR_MSGTRANS_CONNECTION_CLOSED`. Default `'wait'`. */
  whileDisconnected?: 'wait' | 'fail';
  /** Calls allowed to wait for a connection; more fail with `ERR_MSGTRANS_QUEUE_FULL`. Default 10000. */
  maxQueuedCalls?: number;
  /**
   * Compress outgoing payloads of at least `threshold` bytes (default 1024)
   * with zlib, where the runtime has `CompressionStream`. zstd has no web
   * API and is refused. Receiving zlib always works. Default: off.
   */
  compression?: { algorithm: 'zlib'; threshold?: number };
  /** Largest packet accepted, and largest inflated payload. Default 16 MiB. */
  maxPacketSize?: number;
  /** Largest extension header accepted. Default 16 KiB. */
  maxExtHeaderSize?: number;
  /** The WebSocket implementation. Default `globalThis.WebSocket`; on Node 20 pass `ws`'s `WebSocket`. */
  WebSocket?: WebSocketConstructorLike;
}

/** The options with defaults filled in and values checked. */
export interface ResolvedWebClientOptions {
  url: string;
  requestTimeout: number;
  connectTimeout: number;
  credentials: unknown;
  metadata: Record<string, string> | undefined;
  reconnect: Required<MsgTransWebReconnectOptions> | null;
  whileDisconnected: 'wait' | 'fail';
  maxQueuedCalls: number;
  /** Payload size from which to compress; Infinity: never. */
  compressThreshold: number;
  limits: { maxPacketSize: number; maxExtHeaderSize: number };
  WebSocket: WebSocketConstructorLike;
}

const KNOWN = [
  'requestTimeout',
  'connectTimeout',
  'credentials',
  'metadata',
  'reconnect',
  'whileDisconnected',
  'maxQueuedCalls',
  'compression',
  'maxPacketSize',
  'maxExtHeaderSize',
  'WebSocket',
];

/** The longest delay setTimeout honours; longer ones fire at once. */
export const MAX_TIMER_MS = 0x7fffffff;

export function invalidOption(message: string): MsgTransWebError {
  return new MsgTransWebError(MsgTransErrorCode.INVALID_OPTION, message);
}

function integer(name: string, value: unknown, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > max) {
    throw invalidOption(`${name} must be an integer from 0 to ${max}, got ${String(value)}`);
  }
  return value as number;
}

function resolveUrl(url: string | URL): string {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  let parsed: URL;
  try {
    // a page may name its own origin's endpoint by path: '/msgtrans'
    parsed = new URL(String(url), base);
  } catch {
    throw invalidOption(`Invalid URL ${String(url)}`);
  }
  if (parsed.protocol === 'http:' || parsed.protocol === 'https:') parsed.protocol = parsed.protocol === 'http:' ? 'ws:' : 'wss:';
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw invalidOption(`The web client speaks ws:// and wss:// only, got ${parsed.protocol}`);
  return parsed.href;
}

function resolveReconnect(reconnect: unknown): Required<MsgTransWebReconnectOptions> | null {
  if (reconnect === false) return null;
  if (reconnect !== undefined && (reconnect === null || typeof reconnect !== 'object')) throw invalidOption('reconnect must be an object or false');
  const policy: Record<string, number> = { ...MSGTRANS_DEFAULTS.reconnect };
  for (const [key, value] of Object.entries(reconnect ?? {})) {
    if (!(key in policy)) throw invalidOption(`Unknown reconnect option "${key}"`);
    if (typeof value !== 'number' || !(value >= 0)) throw invalidOption(`reconnect.${key} must be a number >= 0, got ${String(value)}`);
    policy[key] = value;
  }
  if (policy.factor < 1 || policy.jitter > 1) throw invalidOption('reconnect.factor must be >= 1 and reconnect.jitter at most 1');
  return policy as Required<MsgTransWebReconnectOptions>;
}

/** Checks the options and fills in defaults; throws `ERR_MSGTRANS_INVALID_OPTION`. */
export function resolveWebClientOptions(url: string | URL, options: MsgTransWebClientOptions): ResolvedWebClientOptions {
  if (options === null || typeof options !== 'object') throw invalidOption('options must be an object');
  for (const key of Object.keys(options)) {
    if (!KNOWN.includes(key)) throw invalidOption(`Unknown option "${key}" (known: ${KNOWN.join(', ')})`);
  }
  const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructorLike }).WebSocket;
  if (typeof WebSocket !== 'function') {
    throw invalidOption('This runtime has no global WebSocket: pass one as the WebSocket option (on Node 20, the ws package\'s)');
  }
  const whileDisconnected = options.whileDisconnected ?? 'wait';
  if (whileDisconnected !== 'wait' && whileDisconnected !== 'fail') throw invalidOption(`whileDisconnected must be 'wait' or 'fail'`);
  const metadata = options.metadata;
  if (metadata !== undefined && (metadata === null || typeof metadata !== 'object')) throw invalidOption('metadata must be an object');
  let compressThreshold = Infinity;
  const compression = options.compression;
  if (compression !== undefined) {
    if (compression?.algorithm !== 'zlib') {
      throw invalidOption(`compression.algorithm must be "zlib" (zstd has no web API), got ${String(compression?.algorithm)}`);
    }
    // without CompressionStream payloads go uncompressed, which every receiver accepts
    if (canCompress()) compressThreshold = integer('compression.threshold', compression.threshold, MSGTRANS_DEFAULTS.compressionThreshold);
  }
  return {
    url: resolveUrl(url),
    requestTimeout: integer('requestTimeout', options.requestTimeout, MSGTRANS_DEFAULTS.requestTimeout, MAX_TIMER_MS),
    connectTimeout: integer('connectTimeout', options.connectTimeout, MSGTRANS_DEFAULTS.connectTimeout, MAX_TIMER_MS),
    credentials: options.credentials,
    metadata,
    reconnect: resolveReconnect(options.reconnect),
    whileDisconnected,
    maxQueuedCalls: integer('maxQueuedCalls', options.maxQueuedCalls, MSGTRANS_DEFAULTS.maxQueuedCalls),
    compressThreshold,
    limits: {
      maxPacketSize: integer('maxPacketSize', options.maxPacketSize, MSGTRANS_DEFAULTS.maxPacketSize),
      maxExtHeaderSize: integer('maxExtHeaderSize', options.maxExtHeaderSize, MSGTRANS_DEFAULTS.maxExtHeaderSize, 0xffff),
    },
    WebSocket,
  };
}
