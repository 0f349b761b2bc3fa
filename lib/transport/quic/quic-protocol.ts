import * as net from 'node:net';
import { QUICClient, events } from '@matrixai/quic';
import { MsgTransErrorCode } from '../../errors/error-codes.js';
import { MsgTransConfigError } from '../../errors/msgtrans-config-error.js';
import { MsgTransConnectionError } from '../../errors/msgtrans-connection-error.js';
import { formatHostPort, type MsgTransEndpoint } from '../endpoint.js';
import type { MsgTransConnection, MsgTransListener } from '../msgtrans-connection.interface.js';
import type {
  MsgTransConnectContext,
  MsgTransListenContext,
  MsgTransProtocol,
} from '../msgtrans-protocol.interface.js';
import { quicTransportConfig } from './quic-config.js';
import { QuicConnection } from './quic-connection.js';
import { QuicListener } from './quic-listener.js';
import { quicLogger } from './quic-logger.js';
import { clientCrypto, pemList, verifyCallback } from './quic-tls.js';

/** The ALPN msgtrans uses over QUIC unless configured otherwise. */
export const MSGTRANS_ALPN = 'msgtrans';

// u32 length 16, then a one-way packet: flags CANCEL, message id 0, nothing else.
const STREAM_OPENER = Buffer.from([0, 0, 0, 16, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);

/** Options of the QUIC protocol. */
export interface QuicProtocolOptions {
  /** Application protocol (ALPN) offered and required. Default `msgtrans`. */
  alpn?: string;
}

/**
 * `quic://host:port` over `@matrixai/quic`: TLS 1.3 always, one bidirectional
 * stream per connection, packets framed with a u32 length prefix.
 */
export class QuicProtocol implements MsgTransProtocol {
  readonly schemes = ['quic'] as const;
  private readonly alpn: string;

  constructor(options: QuicProtocolOptions = {}) {
    this.alpn = options.alpn ?? MSGTRANS_ALPN;
  }

  createListener(endpoint: MsgTransEndpoint, context: MsgTransListenContext): MsgTransListener {
    if (!context.tls?.key || !context.tls.cert) {
      throw new MsgTransConfigError(
        MsgTransErrorCode.INVALID_OPTION,
        `quic://${formatHostPort(endpoint.host, endpoint.port)} needs tls.key and tls.cert (QUIC is always encrypted)`,
      );
    }
    return new QuicListener(endpoint, context.limits, context.tls, this.alpn, context.heartbeatInterval, 10_000);
  }

  async connect(endpoint: MsgTransEndpoint, context: MsgTransConnectContext): Promise<MsgTransConnection> {
    const t = context.tls ?? {};
    const verify = t.rejectUnauthorized ?? true;
    const target = `quic://${formatHostPort(endpoint.host, endpoint.port)}`;
    let client: QUICClient;
    try {
      client = await QUICClient.createQUICClient(
        {
          host: endpoint.host,
          port: endpoint.port,
          localHost: net.isIPv6(endpoint.host) ? '::' : '0.0.0.0',
          crypto: clientCrypto,
          logger: quicLogger('QuicClient'),
          config: {
            ...quicTransportConfig(context.heartbeatInterval),
            applicationProtos: [this.alpn],
            ca: pemList(t.ca),
            key: pemList(t.key),
            cert: pemList(t.cert),
            verifyPeer: verify,
            verifyCallback: verify ? verifyCallback(t.servername ?? endpoint.host) : undefined,
          },
        },
        { timer: context.connectTimeout },
      );
    } catch (err) {
      throw new MsgTransConnectionError(MsgTransErrorCode.CONNECT_FAILED, `Cannot connect to ${target}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    // PROTOCOL.md: the client opens the one stream right after the handshake.
    // A QUIC stream exists for the peer only once bytes flow on it, so a
    // client that only waits for pushes would stay invisible: announce the
    // stream with a CANCEL for message id 0, which no request ever has, so
    // every receiver ignores it.
    const stream = client.connection.newStream('bidi');
    const release = () => void client.destroy({ force: true }).catch(() => undefined);
    client.addEventListener(events.EventQUICClientError.name, () => undefined);
    const connection = new QuicConnection(client.connection, stream, context.limits, release);
    connection.writeFrames(STREAM_OPENER);
    return connection;
  }
}
