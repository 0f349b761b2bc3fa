import * as net from 'node:net';
import { WebSocket } from 'ws';
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
import { WsConnection } from './ws-connection.js';
import { WsListener } from './ws-listener.js';

/** `ws://host:port/path` and `wss://…`: one packet per binary WebSocket message. */
export class WsProtocol implements MsgTransProtocol {
  readonly schemes = ['ws', 'wss'] as const;

  createListener(endpoint: MsgTransEndpoint, context: MsgTransListenContext): MsgTransListener {
    const secure = endpoint.protocol === 'wss';
    if (secure && !endpoint.httpServer && (!context.tls?.key || !context.tls.cert)) {
      throw new MsgTransConfigError(
        MsgTransErrorCode.INVALID_OPTION,
        `wss://${formatHostPort(endpoint.host, endpoint.port)} needs tls.key and tls.cert`,
      );
    }
    return new WsListener(endpoint, context.limits, secure ? context.tls : undefined, context.heartbeatInterval);
  }

  connect(endpoint: MsgTransEndpoint, context: MsgTransConnectContext): Promise<MsgTransConnection> {
    const t = context.tls ?? {};
    const url = `${endpoint.protocol}://${formatHostPort(endpoint.host, endpoint.port)}${endpoint.path}`;
    const ws = new WebSocket(url, {
      maxPayload: context.limits.maxPacketSize,
      perMessageDeflate: false,
      handshakeTimeout: context.connectTimeout,
      ca: t.ca,
      cert: t.cert,
      key: t.key,
      rejectUnauthorized: t.rejectUnauthorized ?? true,
      // passed through to tls.connect; SNI must not be an IP address (RFC 6066)
      ...({ servername: t.servername ?? (net.isIP(endpoint.host) ? '' : endpoint.host) } as object),
    });
    // the socket of the upgrade response is the one ws then runs on (its own field for it is private)
    let socket: net.Socket | undefined;
    ws.once('upgrade', (res) => {
      socket = res.socket as net.Socket;
    });
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        ws.off('open', onOpen);
        ws.terminate();
        reject(new MsgTransConnectionError(MsgTransErrorCode.CONNECT_FAILED, `Cannot connect to ${url}: ${err.message}`, { cause: err }));
      };
      const onOpen = () => {
        ws.off('error', fail);
        ws.off('unexpected-response', onUnexpected);
        resolve(new WsConnection(ws, socket!, true, endpoint.protocol, context.limits, context.heartbeatInterval));
      };
      const onUnexpected = (_req: unknown, res: { statusCode?: number }) => fail(new Error(`upgrade refused with HTTP ${res.statusCode}`));
      ws.once('open', onOpen);
      ws.once('error', fail);
      ws.once('unexpected-response', onUnexpected);
    });
  }
}
