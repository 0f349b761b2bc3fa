import { hkdfSync, randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { MSGTRANS_DEFAULTS } from '../../constants.js';
import { MsgTransErrorCode } from '../../errors/error-codes.js';
import { MsgTransConfigError } from '../../errors/msgtrans-config-error.js';
import { formatHostPort, type MsgTransEndpoint } from '../endpoint.js';
import type { MsgTransConnection, MsgTransListener } from '../msgtrans-connection.interface.js';
import type {
  MsgTransConnectContext,
  MsgTransListenContext,
  MsgTransProtocol,
} from '../msgtrans-protocol.interface.js';
import type { MsgTransTlsOptions } from '../tls-options.interface.js';
import { clientQuicheConfig, isLoopbackAddress, type QuicTransportSettings } from './quic-config.js';
import { QuicConnection } from './quic-connection.js';
import { QuicConnectionError } from './quic-connection-error.js';
import { QuicListener } from './quic-listener.js';
import { quiche, type QuicheConfig, type QuicheConnection } from './quic-native.js';
import { hostMismatch, pemText } from './quic-tls.js';
import { QuicUdpSocket } from './quic-udp-socket.js';

/** The ALPN msgtrans uses over QUIC unless configured otherwise. */
export const MSGTRANS_ALPN = MSGTRANS_DEFAULTS.quic.alpn;

/** Defaults of {@link QuicProtocolOptions} (from MSGTRANS_DEFAULTS.quic), plus the listener's own cap. */
export const QUIC_DEFAULTS = {
  ...MSGTRANS_DEFAULTS.quic,
  /** Server: connections held at once, including ones still handshaking; more are ignored. */
  maxConnections: 100_000,
} as const;

// One-way packet: flags CANCEL, message id 0. No request has id 0, so every
// receiver ignores it; it only makes the stream exist for the server.
const STREAM_OPENER = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);

// Connections past the server's maxConnections that still get its typed refusal.
const QUIC_REFUSAL_SLACK = 64;

// one object for "no TLS options", so that its BoringSSL context (the bundled roots) is built once
const NO_TLS_OPTIONS: MsgTransTlsOptions = {};

/** Options of the QUIC protocol; pass `new QuicProtocol({...})` in `protocols` to change them. */
export interface QuicProtocolOptions {
  /** Application protocol (ALPN) offered and required. Default `msgtrans`. */
  alpn?: string;
  /**
   * Largest UDP payload sent and accepted, 1200 to 65527. Default 1350,
   * safe on any real path; raise it on loopback or jumbo-frame networks
   * (fewer datagrams per byte, so more throughput for large payloads).
   */
  maxDatagramSize?: number;
  /**
   * Server: validate a client's address with a Retry before keeping any
   * state for it, so a spoofed source cannot make the server amplify.
   * Costs one round trip per connection. Default `true`.
   */
  retry?: boolean;
  /**
   * Server: secret (at least 16 bytes) that stateless-reset and Retry
   * tokens derive from. It must be the same across restarts so that
   * clients of the previous process learn at once that their connection is
   * gone. Default: derived (HKDF-SHA256) from the server's TLS key.
   */
  statelessResetKey?: Buffer | string;
  /** Server: ms a client has to complete the handshake and open its stream. Default 10,000. */
  handshakeTimeout?: number;
  /**
   * Largest UDP payload, 1200 to 65527, used instead of `maxDatagramSize`
   * when both ends are on this host: a client dialling a loopback address
   * (127.0.0.0/8, ::1), a server listening on one. Loopback has a 64 KiB
   * MTU, so nothing is fragmented, and each datagram costs a system call
   * and a pass through quiche whatever its size: large ones carry the same
   * bytes with far fewer. Default 65527; set it to `maxDatagramSize` to use
   * one size everywhere.
   */
  loopbackDatagramSize?: number;
}

function invalid(message: string): MsgTransConfigError {
  return new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, message);
}

function datagramSize(name: string, size: number): number {
  if (!Number.isInteger(size) || size < 1200 || size > 65527) throw invalid(`quic ${name} must be an integer from 1200 to 65527, got ${size}`);
  return size;
}

/**
 * `quic://host:port`, driven directly over quiche (the native binding of
 * `@matrixai/quic`): TLS 1.3 always, one bidirectional stream per
 * connection, packets framed with a u32 length prefix.
 */
export class QuicProtocol implements MsgTransProtocol {
  readonly schemes = ['quic'] as const;
  private readonly options: Required<Omit<QuicProtocolOptions, 'statelessResetKey'>> & { statelessResetKey?: Buffer };
  private readonly clientConfigs = new WeakMap<MsgTransTlsOptions, Map<string, QuicheConfig>>();

  constructor(options: QuicProtocolOptions = {}) {
    const size = datagramSize('maxDatagramSize', options.maxDatagramSize ?? QUIC_DEFAULTS.maxDatagramSize);
    const loopbackSize = datagramSize('loopbackDatagramSize', options.loopbackDatagramSize ?? QUIC_DEFAULTS.loopbackDatagramSize);
    const handshakeTimeout = options.handshakeTimeout ?? QUIC_DEFAULTS.handshakeTimeout;
    if (!Number.isInteger(handshakeTimeout) || handshakeTimeout < 0) throw invalid(`quic handshakeTimeout must be an integer >= 0, got ${handshakeTimeout}`);
    const alpn = options.alpn ?? QUIC_DEFAULTS.alpn;
    if (typeof alpn !== 'string' || alpn.length === 0 || Buffer.byteLength(alpn) > 255) throw invalid('quic alpn must be a string of 1 to 255 bytes');
    const key = options.statelessResetKey === undefined ? undefined : Buffer.from(options.statelessResetKey);
    if (key !== undefined && key.length < 16) throw invalid('quic statelessResetKey must be at least 16 bytes');
    this.options = {
      alpn,
      maxDatagramSize: size,
      retry: options.retry ?? QUIC_DEFAULTS.retry,
      handshakeTimeout,
      statelessResetKey: key,
      loopbackDatagramSize: loopbackSize,
    };
  }

  createListener(endpoint: MsgTransEndpoint, context: MsgTransListenContext): MsgTransListener {
    if (!context.tls?.key || !context.tls.cert) {
      throw new MsgTransConfigError(
        MsgTransErrorCode.INVALID_OPTION,
        `quic://${formatHostPort(endpoint.host, endpoint.port)} needs tls.key and tls.cert (QUIC is always encrypted)`,
      );
    }
    const resetKey =
      this.options.statelessResetKey ??
      Buffer.from(hkdfSync('sha256', pemText(context.tls.key)!, 'msgtrans', 'quic stateless reset key', 32));
    return new QuicListener(endpoint, context.limits, context.tls, {
      ...this.settings(context.heartbeatInterval),
      heartbeatInterval: context.heartbeatInterval,
      handshakeTimeout: this.options.handshakeTimeout,
      loopbackDatagramSize: this.options.loopbackDatagramSize,
      retry: this.options.retry,
      statelessResetKey: resetKey,
      // counted from the first packet; the slack lets the server refuse the next few with a reason
      maxConnections: context.maxConnections !== undefined ? context.maxConnections + QUIC_REFUSAL_SLACK : QUIC_DEFAULTS.maxConnections,
    });
  }

  async connect(endpoint: MsgTransEndpoint, context: MsgTransConnectContext): Promise<MsgTransConnection> {
    const tls = context.tls ?? NO_TLS_OPTIONS;
    const verify = tls.rejectUnauthorized ?? true;
    const target = `quic://${formatHostPort(endpoint.host, endpoint.port)}`;
    const failed = (message: string, cause?: unknown) =>
      new QuicConnectionError(MsgTransErrorCode.CONNECT_FAILED, `Cannot connect to ${target}: ${message}`, undefined, undefined, { cause });
    let address = endpoint.host;
    if (!isIP(address)) {
      try {
        address = (await lookup(address)).address;
      } catch (err) {
        throw failed(`cannot resolve ${endpoint.host} (${(err as Error).message})`, err);
      }
    }
    const datagram = isLoopbackAddress(address) ? this.options.loopbackDatagramSize : this.options.maxDatagramSize;
    const config = this.clientConfig(tls, context.heartbeatInterval, datagram);
    const socket = dgram.createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, () => socket.connect(endpoint.port, address, () => resolve()));
      });
    } catch (err) {
      socket.close();
      throw failed((err as Error).message, err);
    }
    socket.removeAllListeners('error');
    const io = new QuicUdpSocket(socket, datagram);
    io.raiseBuffers();
    const bound = socket.address();
    const local = { host: bound.address, port: bound.port };
    const remote = { host: address, port: endpoint.port };
    const servername = tls.servername ?? endpoint.host;
    let conn: QuicheConnection;
    try {
      conn = quiche.Connection.connect(
        // No server name for quiche: it would have BoringSSL match it too and
        // fail with a bare "bad certificate". The name is checked below, on
        // the leaf BoringSSL validated, with an error that says what differs.
        null,
        randomBytes(quiche.MAX_CONN_ID_LEN),
        local,
        remote,
        config,
      );
    } catch (err) {
      socket.close();
      throw failed((err as Error).message, err);
    }
    return new Promise<MsgTransConnection>((resolve, reject) => {
      let settled = false;
      const connection = new QuicConnection({
        io,
        conn,
        isServer: false,
        host: address,
        port: endpoint.port,
        recvInfo: { from: remote, to: local },
        limits: context.limits,
        heartbeatInterval: context.heartbeatInterval,
        handshakeTimeout: context.connectTimeout,
        caConfigured: tls.ca !== undefined,
        owner: {
          ready: (c) => {
            const mismatch = verify ? hostMismatch(c.peerCertificate?.raw, servername) : undefined;
            settled = true;
            if (mismatch !== undefined) {
              const error = failed(`host name mismatch: ${mismatch}`);
              c.close(error);
              reject(error);
              return;
            }
            // PROTOCOL.md: the client's first packet goes out at once, so the stream exists for the server
            c.send(STREAM_OPENER);
            resolve(c);
          },
          done: (_c, error) => {
            socket.close();
            if (settled) return;
            settled = true;
            const reason = error?.message.replace(/^QUIC connection closed by /, 'closed by ') ?? 'the connection closed during the handshake';
            reject(
              new QuicConnectionError(
                MsgTransErrorCode.CONNECT_FAILED,
                `Cannot connect to ${target}: ${reason}`,
                (error as QuicConnectionError | undefined)?.quicErrorCode,
                (error as QuicConnectionError | undefined)?.isApplicationError,
                { cause: error },
              ),
            );
          },
        },
      });
      socket.on('message', (msg: Buffer) => connection.receive(msg));
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED') connection.refused();
      });
      io.schedule(connection);
    });
  }

  private settings(heartbeatInterval: number, maxDatagramSize = this.options.maxDatagramSize): QuicTransportSettings {
    return {
      alpn: this.options.alpn,
      maxDatagramSize,
      // keep-alive PINGs every interval; two silent intervals mean the peer is gone
      idleTimeout: heartbeatInterval > 0 ? heartbeatInterval * 2 : 0,
    };
  }

  /** One BoringSSL context per TLS options object: building one parses the whole CA bundle. */
  private clientConfig(tls: MsgTransTlsOptions, heartbeatInterval: number, maxDatagramSize: number): QuicheConfig {
    let bySettings = this.clientConfigs.get(tls);
    if (!bySettings) this.clientConfigs.set(tls, (bySettings = new Map()));
    const key = `${heartbeatInterval}/${maxDatagramSize}`;
    let config = bySettings.get(key);
    if (!config) bySettings.set(key, (config = clientQuicheConfig(tls, this.settings(heartbeatInterval, maxDatagramSize))));
    return config;
  }
}
