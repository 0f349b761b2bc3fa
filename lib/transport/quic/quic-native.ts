import quiche from '@matrixai/quic/native/quiche.js';
import type {
  Config as QuicheConfig,
  Connection as QuicheConnection,
  ConnectionError as QuicheConnectionError,
  RecvInfo as QuicheRecvInfo,
} from '@matrixai/quic/native/types.js';

/**
 * The native quiche binding shipped in `@matrixai/quic` (quiche + BoringSSL
 * through napi-rs). Only this binding is used, never the package's
 * JavaScript layer: the driver in this folder does its own socket I/O.
 * `test/e2e/quic-native-api.test.ts` fails loudly if a member used here
 * disappears in another version of the package.
 */
export { quiche };
export type { QuicheConfig, QuicheConnection, QuicheConnectionError, QuicheRecvInfo };

/** Every binding member the driver calls; checked by the API test. */
export const QUICHE_MEMBERS_USED = {
  module: ['MAX_CONN_ID_LEN', 'PROTOCOL_VERSION', 'CRYPTO_ERROR_START', 'CRYPTO_ERROR_STOP', 'Config', 'Connection', 'Header', 'negotiateVersion', 'retry', 'versionIsSupported'],
  config: [
    'setApplicationProtos',
    'setMaxIdleTimeout',
    'setMaxRecvUdpPayloadSize',
    'setMaxSendUdpPayloadSize',
    'setInitialMaxData',
    'setInitialMaxStreamDataBidiLocal',
    'setInitialMaxStreamDataBidiRemote',
    'setInitialMaxStreamDataUni',
    'setInitialMaxStreamsBidi',
    'setInitialMaxStreamsUni',
    'setDisableActiveMigration',
    'setMaxStreamWindow',
    'setMaxConnectionWindow',
    'setStatelessResetToken',
  ],
  connection: [
    'recv',
    'send',
    'streamRecv',
    'streamSend',
    'streamShutdown',
    'streamCapacity',
    'timeout',
    'onTimeout',
    'close',
    'peerCertChain',
    'isEstablished',
    'isClosed',
    'isDraining',
    'isTimedOut',
    'peerError',
    'localError',
    'sendAckEliciting',
    'stats',
  ],
} as const;
