import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import type { MsgTransTlsOptions } from './tls-options.interface.js';

/** An endpoint given as an object instead of a URL. */
export interface MsgTransEndpointOptions {
  /** A URL such as `tcp://127.0.0.1:8001`; the fields below override its parts. */
  url?: string;
  /** URL scheme: `tcp`, `tls`, or one a registered protocol handles. */
  protocol?: string;
  /** Host to bind or connect to. Default `127.0.0.1`. */
  host?: string;
  /** Port; 0 lets a server pick one. */
  port?: number;
  /** Path, for protocols that have one. Default `/`. */
  path?: string;
  /** TLS for this endpoint, overriding the server-wide/client-wide `tls`. */
  tls?: MsgTransTlsOptions;
  /**
   * `ws`/`wss` servers only: attach to this existing HTTP(S) server (for
   * example a Nest hybrid app's `app.getHttpServer()`) instead of binding a
   * port, and serve msgtrans on `path` beside its HTTP routes.
   */
  httpServer?: HttpServer;
}

/** An HTTP or HTTPS server from `node:http` / `node:https`. */
export type HttpServer = import('node:http').Server;

/** A fully resolved endpoint. */
export interface MsgTransEndpoint {
  protocol: string;
  host: string;
  port: number;
  path: string;
  tls: MsgTransTlsOptions | undefined;
  httpServer: HttpServer | undefined;
}

const DEFAULT_HOST = '127.0.0.1';
const ENDPOINT_KEYS = new Set(['url', 'protocol', 'host', 'port', 'path', 'tls', 'httpServer']);
const TLS_KEYS = new Set(['key', 'cert', 'ca', 'requestCert', 'rejectUnauthorized', 'servername']);

/** Rejects misspelt TLS settings (a silently ignored `ca` would disable nothing, but confuse everyone). */
export function assertTlsOptions(tls: MsgTransTlsOptions | undefined, where: string): void {
  if (tls === undefined) return;
  if (tls === null || typeof tls !== 'object') throw invalid(`${where} tls must be an object`);
  for (const key of Object.keys(tls)) {
    if (!TLS_KEYS.has(key)) throw invalid(`Unknown ${where} tls option "${key}" (known: ${[...TLS_KEYS].join(', ')})`);
  }
}

function invalid(message: string): MsgTransConfigError {
  return new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, message);
}

/** Parses a URL string or endpoint object; throws {@link MsgTransConfigError} on nonsense. */
export function parseEndpoint(input: string | MsgTransEndpointOptions): MsgTransEndpoint {
  if (input === undefined || input === null || (typeof input !== 'string' && typeof input !== 'object')) {
    throw invalid('An endpoint URL (e.g. tcp://127.0.0.1:8001) or endpoint object is required');
  }
  const options: MsgTransEndpointOptions = typeof input === 'string' ? { url: input } : input;
  for (const key of Object.keys(options)) {
    if (!ENDPOINT_KEYS.has(key)) throw invalid(`Unknown endpoint option "${key}" (known: ${[...ENDPOINT_KEYS].join(', ')})`);
  }
  assertTlsOptions(options.tls, 'endpoint');
  let protocol = options.protocol;
  let host = options.host;
  let port = options.port;
  let path = options.path;
  if (options.url !== undefined) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      const port = /:(\d+)(?:\/|$)/.exec(options.url)?.[1];
      const hint = port !== undefined && Number(port) > 65535 ? ` (port ${port} is not from 0 to 65535)` : '';
      throw invalid(`Invalid endpoint URL "${options.url}"${hint}`);
    }
    protocol ??= url.protocol.replace(/:$/, '');
    // URL keeps IPv6 brackets in hostname; sockets want the bare address
    host ??= url.hostname.replace(/^\[(.*)\]$/, '$1') || undefined;
    if (port === undefined && url.port !== '') port = Number(url.port);
    path ??= url.pathname || undefined;
  }
  if (!protocol) throw invalid('Endpoint has no protocol (expected a URL such as tcp://127.0.0.1:8001)');
  if (port === undefined && options.httpServer) port = 0;
  if (port === undefined) throw invalid(`Endpoint ${protocol}://${host ?? DEFAULT_HOST} has no port`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw invalid(`Endpoint port ${port} is not an integer from 0 to 65535`);
  }
  return {
    protocol: protocol.toLowerCase(),
    host: host ?? DEFAULT_HOST,
    port,
    path: path ?? '/',
    tls: options.tls,
    httpServer: options.httpServer,
  };
}

/** Formats host and port for a URL, bracketing IPv6 addresses. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
