import cluster from 'node:cluster';
import { MSGTRANS_DEFAULTS } from '../constants.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import type { MsgTransServerOptions } from '../interfaces/msgtrans-options.interface.js';
import { parseEndpoint } from '../transport/endpoint.js';

const QUIC_SCHEMES = new Set(['quic']);

/**
 * Refuses a QUIC endpoint in a `node:cluster` worker unless each worker has
 * its own port. Workers share TCP and WebSocket ports safely (the kernel or
 * the primary hands each connection to one worker), but a UDP port bound
 * by several workers gets its datagrams spread among them, and QUIC
 * connections break as their packets reach a worker that does not hold
 * them (Node 20 has no connection-id routing). Port 0 is no way out: in a
 * worker it means one random port shared by every worker.
 */
export function assertQuicClusterLayout(options: MsgTransServerOptions, isWorker = cluster.isWorker): void {
  if (!isWorker) return;
  const inputs = Array.isArray(options.listen) ? options.listen : [options.listen];
  const perWorker = (options.quicInClusterWorker ?? MSGTRANS_DEFAULTS.quicInClusterWorker) === 'own-port';
  if (options.quicInClusterWorker !== undefined && options.quicInClusterWorker !== 'own-port' && options.quicInClusterWorker !== 'refuse') {
    throw new MsgTransConfigError(
      MsgTransErrorCode.INVALID_OPTION,
      `quicInClusterWorker must be 'refuse' or 'own-port', got ${String(options.quicInClusterWorker)}`,
    );
  }
  for (const input of inputs) {
    if (typeof input !== 'string' && (typeof input !== 'object' || input === null || 'listen' in input)) continue;
    const endpoint = parseEndpoint(input);
    if (!QUIC_SCHEMES.has(endpoint.protocol)) continue;
    if (perWorker && endpoint.port !== 0) continue;
    throw new MsgTransConfigError(
      MsgTransErrorCode.QUIC_CLUSTER_PORT,
      perWorker
        ? `quic://${endpoint.host}:0 in a cluster worker: port 0 is one random port shared by every worker; give each worker its own port`
        : `quic://${endpoint.host}:${endpoint.port} in a cluster worker: workers cannot share a UDP port (QUIC packets would reach the wrong worker). ` +
          `Serve QUIC from one process (the primary, or a worker of its own), or give each worker its own port and set quicInClusterWorker: 'own-port'`,
    );
  }
}
