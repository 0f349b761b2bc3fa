import type { MsgTransTlsOptions } from '../tls-options.interface.js';
import { quiche, type QuicheConfig } from './quic-native.js';
import { pemText, trustStore } from './quic-tls.js';

/**
 * Transport settings of one end. Flow-control windows are what bound the
 * memory a peer can make this end hold for one connection: the receiver
 * grants credit only as the application reads, so a slow reader slows the
 * writer instead of growing buffers.
 */
export interface QuicTransportSettings {
  alpn: string;
  /** Largest UDP payload sent and received. */
  maxDatagramSize: number;
  /** ms of silence after which quiche drops the connection; 0 disables. */
  idleTimeout: number;
}

/** An address of this host (127.0.0.0/8, ::1): its datagrams never cross a link with a smaller MTU. */
export function isLoopbackAddress(address: string): boolean {
  return address === '::1' || /^(::ffff:)?127\./i.test(address);
}

// Credit granted up front; quiche's autotuning may grow it up to the maxima.
const INITIAL_STREAM_WINDOW = 2 * 1024 * 1024;
const INITIAL_CONNECTION_WINDOW = 4 * 1024 * 1024;
const MAX_STREAM_WINDOW = 16 * 1024 * 1024;
const MAX_CONNECTION_WINDOW = 24 * 1024 * 1024;

function build(
  verifyPeer: boolean,
  allowFail: boolean,
  ca: Uint8Array | undefined,
  tls: MsgTransTlsOptions,
  settings: QuicTransportSettings,
  peerStreams: number,
): QuicheConfig {
  const key = pemText(tls.key);
  const cert = pemText(tls.cert);
  const config = quiche.Config.withBoringSslCtx(
    verifyPeer,
    allowFail,
    ca,
    key !== undefined && cert !== undefined ? [Buffer.from(key)] : undefined,
    key !== undefined && cert !== undefined ? [Buffer.from(cert)] : undefined,
    undefined,
  );
  config.setApplicationProtos([settings.alpn]);
  config.setMaxIdleTimeout(settings.idleTimeout);
  config.setMaxRecvUdpPayloadSize(settings.maxDatagramSize);
  config.setMaxSendUdpPayloadSize(settings.maxDatagramSize);
  config.setInitialMaxData(INITIAL_CONNECTION_WINDOW);
  config.setInitialMaxStreamDataBidiLocal(INITIAL_STREAM_WINDOW);
  config.setInitialMaxStreamDataBidiRemote(INITIAL_STREAM_WINDOW);
  config.setInitialMaxStreamDataUni(0);
  // PROTOCOL.md: one bidirectional stream, opened by the client. The limit
  // makes QUIC itself refuse any other (STREAM_LIMIT_ERROR).
  config.setInitialMaxStreamsBidi(peerStreams);
  config.setInitialMaxStreamsUni(0);
  config.setMaxStreamWindow(MAX_STREAM_WINDOW);
  config.setMaxConnectionWindow(MAX_CONNECTION_WINDOW);
  // one path per connection: a datagram from elsewhere is not a migration
  config.setDisableActiveMigration(true);
  return config;
}

/**
 * Server side: BoringSSL verifies client certificates against `tls.ca` when
 * `requestCert` is set (mutual TLS), and refuses clients without one unless
 * `rejectUnauthorized` is false.
 */
export function serverQuicheConfig(tls: MsgTransTlsOptions, settings: QuicTransportSettings): QuicheConfig {
  const mutual = tls.requestCert ?? false;
  const reject = tls.rejectUnauthorized ?? true;
  return build(mutual, mutual && !reject, mutual ? trustStore(tls.ca) : undefined, tls, settings, 1);
}

/**
 * Client side: BoringSSL verifies the server's chain against `tls.ca` (or
 * the bundled roots) including its purpose (serverAuth) and the CA flag of
 * every issuer; the dialled name is then checked on the leaf
 * ({@link hostMismatch}).
 */
export function clientQuicheConfig(tls: MsgTransTlsOptions, settings: QuicTransportSettings): QuicheConfig {
  const verify = tls.rejectUnauthorized ?? true;
  return build(verify, false, verify ? trustStore(tls.ca) : undefined, tls, settings, 0);
}
