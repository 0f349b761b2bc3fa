import * as net from 'node:net';
import * as tls from 'node:tls';
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
import { TcpConnection } from './tcp-connection.js';
import { TcpListener } from './tcp-listener.js';

/** `tcp://host:port` and `tls://host:port`: packets back to back on a byte stream. */
export class TcpProtocol implements MsgTransProtocol {
  readonly schemes = ['tcp', 'tls'] as const;

  createListener(endpoint: MsgTransEndpoint, context: MsgTransListenContext): MsgTransListener {
    if (endpoint.protocol !== 'tls') return new TcpListener(endpoint, context.limits, undefined, context.heartbeatInterval);
    if (!context.tls?.key || !context.tls.cert) {
      throw new MsgTransConfigError(
        MsgTransErrorCode.INVALID_OPTION,
        `tls://${formatHostPort(endpoint.host, endpoint.port)} needs tls.key and tls.cert`,
      );
    }
    return new TcpListener(endpoint, context.limits, context.tls, context.heartbeatInterval);
  }

  connect(endpoint: MsgTransEndpoint, context: MsgTransConnectContext): Promise<MsgTransConnection> {
    const useTls = endpoint.protocol === 'tls';
    const t = context.tls ?? {};
    const socket = useTls
      ? tls.connect({
          host: endpoint.host,
          port: endpoint.port,
          ca: t.ca,
          cert: t.cert,
          key: t.key,
          rejectUnauthorized: t.rejectUnauthorized ?? true,
          // SNI must not be an IP address (RFC 6066)
          servername: t.servername ?? (net.isIP(endpoint.host) ? undefined : endpoint.host),
        })
      : net.connect({ host: endpoint.host, port: endpoint.port });
    const readyEvent = useTls ? 'secureConnect' : 'connect';
    const target = `${endpoint.protocol}://${formatHostPort(endpoint.host, endpoint.port)}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new Error(`timed out after ${context.connectTimeout} ms`)),
        context.connectTimeout,
      );
      const cleanup = () => {
        clearTimeout(timer);
        socket.off('error', fail);
        socket.off(readyEvent, ready);
      };
      function fail(err: Error) {
        cleanup();
        socket.destroy();
        reject(
          new MsgTransConnectionError(MsgTransErrorCode.CONNECT_FAILED, `Cannot connect to ${target}: ${err.message}`, {
            cause: err,
          }),
        );
      }
      function ready() {
        cleanup();
        resolve(new TcpConnection(socket, endpoint.protocol, context.limits, context.heartbeatInterval));
      }
      socket.once('error', fail);
      socket.once(readyEvent, ready);
    });
  }
}
