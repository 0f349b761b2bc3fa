import { COMPRESSION_BY_NAME, isZstdAvailable } from '../codec/compression.js';
import { Compression } from '../codec/packet.js';
import { MSGTRANS_DEFAULTS } from '../constants.js';
import { JsonCodec } from '../envelope/json-codec.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import type {
  MsgTransClientOptions,
  MsgTransCommonOptions,
  MsgTransReconnectOptions,
} from '../interfaces/msgtrans-options.interface.js';
import type { MsgTransSessionOptions } from '../session/msgtrans-session.js';
import type { MsgTransHealthCheck } from '../health/msgtrans-health.js';
import type { MsgTransHeartbeatMode, MsgTransProtocol } from '../transport/msgtrans-protocol.interface.js';
import { TcpProtocol } from '../transport/tcp/tcp-protocol.js';
import { WsProtocol } from '../transport/ws/ws-protocol.js';
import { QuicProtocol } from '../transport/quic/quic-protocol.js';

function invalid(message: string): MsgTransConfigError {
  return new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, message);
}

/** An option that must be an integer from 0 to `max`, or its default when absent. */
export function positiveInteger(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0 || value > max) throw invalid(`${name} must be an integer from 0 to ${max}, got ${value}`);
  return value;
}

const COMMON_KEYS = [
  'maxPacketSize',
  'maxExtHeaderSize',
  'codec',
  'compression',
  'heartbeatInterval',
  'heartbeat',
  'protocols',
  'incompleteMessageTimeout',
  'maxSendBufferSize',
  'sendStallTimeout',
  'maxStreamBacklog',
  'maxInFlight',
  'telemetry',
];
const KNOWN_KEYS = {
  server: new Set([
    ...COMMON_KEYS,
    'listen',
    'tls',
    'maxConnections',
    'shutdownTimeout',
    'authenticate',
    'authTimeout',
    'maxPreAuthMessages',
    'maxPreAuthBytes',
    'requestTimeout',
    'adapter',
    'quicInClusterWorker',
    'healthChecks',
    'healthBeforeAuth',
  ]),
  client: new Set([
    ...COMMON_KEYS,
    'url',
    'tls',
    'requestTimeout',
    'connectTimeout',
    'reconnect',
    'whileDisconnected',
    'maxQueuedCalls',
    'credentials',
    'keepConnected',
    'loadBalancing',
    'retryOnConnectFailure',
    'idempotentPatterns',
    'dnsRefreshInterval',
  ]),
};

/**
 * Rejects options nobody reads: a misspelt `maxPaketSize` silently falling
 * back to the default is worse than a startup error.
 */
export function assertKnownOptions(options: object, kind: keyof typeof KNOWN_KEYS): void {
  if (options === null || typeof options !== 'object') throw invalid(`${kind} options must be an object`);
  for (const key of Object.keys(options)) {
    if (!KNOWN_KEYS[kind].has(key)) {
      throw invalid(`Unknown ${kind} option "${key}" (known: ${[...KNOWN_KEYS[kind]].join(', ')})`);
    }
  }
}

const RECONNECT_KEYS = new Set(Object.keys(MSGTRANS_DEFAULTS.reconnect));

/** The client's reconnection policy, checked; null when turned off. */
export function resolveReconnect(
  reconnect: MsgTransClientOptions['reconnect'],
): Required<MsgTransReconnectOptions> | null {
  if (reconnect === false) return null;
  if (reconnect !== undefined && (reconnect === null || typeof reconnect !== 'object')) {
    throw invalid('reconnect must be an object or false');
  }
  for (const key of Object.keys(reconnect ?? {})) {
    if (!RECONNECT_KEYS.has(key)) throw invalid(`Unknown reconnect option "${key}" (known: ${[...RECONNECT_KEYS].join(', ')})`);
  }
  const policy = { ...MSGTRANS_DEFAULTS.reconnect, ...reconnect };
  for (const [key, value] of Object.entries(policy)) {
    if (typeof value !== 'number' || Number.isNaN(value) || value < 0) throw invalid(`reconnect.${key} must be a number >= 0, got ${value}`);
  }
  if (policy.factor < 1) throw invalid(`reconnect.factor must be >= 1, got ${policy.factor}`);
  if (policy.jitter > 1) throw invalid(`reconnect.jitter must be from 0 to 1, got ${policy.jitter}`);
  return policy;
}

/** One of a fixed set of strings, or its default. */
export function oneOf<T extends string>(name: string, value: T | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!allowed.includes(value)) throw invalid(`${name} must be one of ${allowed.join(', ')}, got ${String(value)}`);
  return value;
}

/** A boolean option, or its default. */
export function flag(name: string, value: boolean | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalid(`${name} must be true or false, got ${String(value)}`);
  return value;
}

/** Session settings from server or client options, with defaults filled in and values checked. */
export function resolveSessionOptions(options: MsgTransCommonOptions, requestTimeout = 0): MsgTransSessionOptions {
  const maxPacketSize = positiveInteger('maxPacketSize', options.maxPacketSize, MSGTRANS_DEFAULTS.maxPacketSize);
  const maxExtHeaderSize = positiveInteger('maxExtHeaderSize', options.maxExtHeaderSize, MSGTRANS_DEFAULTS.maxExtHeaderSize, 0xffff);
  let compression: MsgTransSessionOptions['compression'];
  if (options.compression) {
    const algorithm = COMPRESSION_BY_NAME[options.compression.algorithm];
    if (algorithm === undefined) throw invalid(`compression.algorithm must be "zlib" or "zstd", got ${options.compression.algorithm}`);
    // Fail at startup rather than on the first large payload.
    if (algorithm === Compression.ZSTD && !isZstdAvailable()) {
      throw new MsgTransConfigError(
        MsgTransErrorCode.ZSTD_UNAVAILABLE,
        'compression.algorithm "zstd" needs Node >= 22.15 or the optional zstd-napi package (npm install zstd-napi)',
      );
    }
    compression = {
      algorithm,
      threshold: positiveInteger('compression.threshold', options.compression.threshold, MSGTRANS_DEFAULTS.compressionThreshold),
    };
  }
  return {
    limits: {
      maxPacketSize,
      maxExtHeaderSize,
      incompleteMessageTimeout: positiveInteger(
        'incompleteMessageTimeout',
        options.incompleteMessageTimeout,
        MSGTRANS_DEFAULTS.incompleteMessageTimeout,
      ),
      maxSendBufferSize: positiveInteger('maxSendBufferSize', options.maxSendBufferSize, MSGTRANS_DEFAULTS.maxSendBufferSize),
      sendStallTimeout: positiveInteger('sendStallTimeout', options.sendStallTimeout, MSGTRANS_DEFAULTS.sendStallTimeout),
      heartbeat: oneOf<MsgTransHeartbeatMode>('heartbeat', options.heartbeat, ['auto', 'always'], MSGTRANS_DEFAULTS.heartbeat),
    },
    maxInFlight: positiveInteger('maxInFlight', options.maxInFlight, MSGTRANS_DEFAULTS.maxInFlight),
    maxStreamBacklog: positiveInteger('maxStreamBacklog', options.maxStreamBacklog, MSGTRANS_DEFAULTS.maxStreamBacklog),
    codec: options.codec ?? new JsonCodec(),
    compression,
    requestTimeout: positiveInteger('requestTimeout', requestTimeout, 0),
  };
}

/** ms between liveness probes, checked. */
export function resolveHeartbeat(options: MsgTransCommonOptions): number {
  return positiveInteger('heartbeatInterval', options.heartbeatInterval, MSGTRANS_DEFAULTS.heartbeatInterval);
}

/** Built-in protocols plus the caller's, by URL scheme. */
export function protocolTable(extra: MsgTransProtocol[] = []): Map<string, MsgTransProtocol> {
  const table = new Map<string, MsgTransProtocol>();
  for (const protocol of [new TcpProtocol(), new WsProtocol(), new QuicProtocol(), ...extra]) {
    for (const scheme of protocol.schemes) table.set(scheme, protocol);
  }
  return table;
}

/** Looks a scheme up, with the error a user can act on. */
export function protocolFor(table: Map<string, MsgTransProtocol>, scheme: string): MsgTransProtocol {
  const protocol = table.get(scheme);
  if (!protocol) {
    throw new MsgTransConfigError(
      MsgTransErrorCode.UNKNOWN_PROTOCOL,
      `Unknown protocol "${scheme}" (known: ${[...table.keys()].join(', ')})`,
    );
  }
  return protocol;
}

/** The server's named health checks: an object of functions, keyed by non-empty service names. */
export function resolveHealthChecks(checks: Record<string, MsgTransHealthCheck> | undefined): Record<string, MsgTransHealthCheck> {
  if (checks === undefined) return {};
  if (typeof checks !== 'object' || checks === null) throw invalid('healthChecks must be an object of functions by service name');
  for (const [name, check] of Object.entries(checks)) {
    if (name === '' || typeof check !== 'function') {
      throw invalid(`healthChecks: ${JSON.stringify(name)} must be a non-empty service name with a function`);
    }
  }
  return { ...checks };
}
