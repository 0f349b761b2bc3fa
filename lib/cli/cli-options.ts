import { readFileSync } from 'node:fs';
import type { ParseArgsConfig } from 'node:util';
import type { MsgTransClientOptions } from '../interfaces/msgtrans-options.interface.js';
import type { MsgTransTlsOptions } from '../transport/tls-options.interface.js';
import { UsageError } from './exit-code.js';

/** Default of `--timeout`: for connecting and for each reply. */
export const CLI_DEFAULT_TIMEOUT = 10_000;

/** Flags every command that connects takes. */
export const CONNECTION_FLAGS = {
  header: { type: 'string', short: 'H', multiple: true },
  timeout: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  servername: { type: 'string' },
  insecure: { type: 'boolean' },
  credentials: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** Flags of commands that send data. */
export const DATA_FLAGS = {
  raw: { type: 'boolean' },
  'biz-type': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export interface ConnectionValues {
  header?: string[];
  timeout?: string;
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  insecure?: boolean;
  credentials?: string;
}

export interface DataValues {
  raw?: boolean;
  'biz-type'?: string;
}

/** Runs a parseArgs call, turning its errors (unknown flag, missing value) into usage errors. */
export function usageErrors<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${what} is not JSON: ${(err as Error).message}`);
  }
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

/** A positive integer flag. */
export function integerFlag(value: string | undefined, name: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${value}`);
  return n;
}

/** A positive number flag (fractions allowed). */
export function numberFlag(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a positive number, got ${value}`);
  return n;
}

/** `-H key:value` flags as metadata. */
export function metadataOf(values: ConnectionValues): Record<string, string> | undefined {
  if (!values.header?.length) return undefined;
  const metadata: Record<string, string> = {};
  for (const header of values.header) {
    const colon = header.indexOf(':');
    if (colon <= 0) throw new UsageError(`-H takes key:value, got ${JSON.stringify(header)}`);
    metadata[header.slice(0, colon).trim()] = header.slice(colon + 1).trim();
  }
  return metadata;
}

/** Client options from the connection flags: no reconnection, one timeout for connecting and for each reply. */
export function clientOptionsOf(url: string, values: ConnectionValues): MsgTransClientOptions {
  const timeout = integerFlag(values.timeout, 'timeout', CLI_DEFAULT_TIMEOUT);
  const tls: MsgTransTlsOptions = {};
  if (values.ca) tls.ca = readText(values.ca, 'CA file');
  if (values.cert || values.key) {
    if (!values.cert || !values.key) throw new UsageError('--cert and --key go together');
    tls.cert = readText(values.cert, 'certificate file');
    tls.key = readText(values.key, 'key file');
  }
  if (values.servername) tls.servername = values.servername;
  if (values.insecure) tls.rejectUnauthorized = false;
  return {
    url,
    requestTimeout: timeout,
    connectTimeout: timeout,
    reconnect: false,
    whileDisconnected: 'fail',
    ...(Object.keys(tls).length > 0 ? { tls } : {}),
    ...(values.credentials !== undefined ? { credentials: parseJson(values.credentials, '--credentials') } : {}),
  };
}

/**
 * The pattern and data of a call or event: `<pattern> [json-data]`, or with
 * `--biz-type n` only `[data]`. With `--raw` the data is hex or `@file` bytes.
 */
export function messageOf(positionals: string[], values: DataValues): { pattern: string | number; data: unknown } {
  let pattern: string | number;
  let rest: string[];
  if (values['biz-type'] !== undefined) {
    pattern = integerFlag(values['biz-type'], 'biz-type', 0, 0, 255);
    rest = positionals;
  } else {
    if (positionals.length === 0) throw new UsageError('missing <pattern>');
    [pattern, ...rest] = positionals;
  }
  if (rest.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(rest[1])}`);
  const text = rest[0];
  if (values.raw) return { pattern, data: rawBytes(text ?? '') };
  return { pattern, data: text === undefined ? {} : parseJson(text, 'data') };
}

function rawBytes(text: string): Buffer {
  if (text.startsWith('@')) {
    try {
      return readFileSync(text.slice(1));
    } catch (err) {
      throw new UsageError(`cannot read ${text.slice(1)}: ${(err as Error).message}`);
    }
  }
  const hex = text.replace(/\s+/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new UsageError('--raw data must be hex bytes or @file');
  return Buffer.from(hex, 'hex');
}

/** A reply value as one output line: bytes as hex, anything else as JSON. */
export function formatValue(value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString('hex');
  return JSON.stringify(value ?? null);
}
