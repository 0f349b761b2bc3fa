import { COMPRESSION_BY_NAME } from '../codec/compression.js';
import { MSGTRANS_DEFAULTS } from '../constants.js';
import { JsonCodec } from '../envelope/json-codec.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import type { MsgTransCommonOptions } from '../interfaces/msgtrans-options.interface.js';
import type { MsgTransSessionOptions } from '../session/msgtrans-session.js';
import type { MsgTransProtocol } from '../transport/msgtrans-protocol.interface.js';
import { TcpProtocol } from '../transport/tcp/tcp-protocol.js';
import { WsProtocol } from '../transport/ws/ws-protocol.js';
import { QuicProtocol } from '../transport/quic/quic-protocol.js';

function invalid(message: string): MsgTransConfigError {
  return new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, message);
}

function positiveInteger(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
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
  'protocols',
  'incompleteMessageTimeout',
  'maxSendBufferSize',
  'maxInFlight',
];
const KNOWN_KEYS = {
  server: new Set([...COMMON_KEYS, 'listen', 'tls', 'maxConnections', 'shutdownTimeout', 'authenticate', 'authTimeout']),
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

/** Session settings from server or client options, with defaults filled in and values checked. */
export function resolveSessionOptions(options: MsgTransCommonOptions, requestTimeout = 0): MsgTransSessionOptions {
  const maxPacketSize = positiveInteger('maxPacketSize', options.maxPacketSize, MSGTRANS_DEFAULTS.maxPacketSize);
  const maxExtHeaderSize = positiveInteger('maxExtHeaderSize', options.maxExtHeaderSize, MSGTRANS_DEFAULTS.maxExtHeaderSize, 0xffff);
  let compression: MsgTransSessionOptions['compression'];
  if (options.compression) {
    const algorithm = COMPRESSION_BY_NAME[options.compression.algorithm];
    if (algorithm === undefined) throw invalid(`compression.algorithm must be "zlib" or "zstd", got ${options.compression.algorithm}`);
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
    },
    maxInFlight: positiveInteger('maxInFlight', options.maxInFlight, MSGTRANS_DEFAULTS.maxInFlight),
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
