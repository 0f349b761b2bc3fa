import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { formatHostPort, type HttpServer, type MsgTransEndpoint } from '../endpoint.js';
import type {
  MsgTransConnection,
  MsgTransListener,
  MsgTransListenerAddress,
} from '../msgtrans-connection.interface.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import type { MsgTransTlsOptions } from '../tls-options.interface.js';
import { WsConnection } from './ws-connection.js';

/**
 * Serves `ws://host:port/path` or `wss://…` on its own HTTP(S) server, or on
 * an existing one (`httpServer`), answering upgrades for `path` only.
 */
export class WsListener implements MsgTransListener {
  readonly protocol: string;
  private wss: WebSocketServer;
  private httpServer: HttpServer | null = null;
  private readonly ownsServer: boolean;
  private onUpgrade: ((req: http.IncomingMessage, socket: Socket, head: Buffer) => void) | null = null;

  constructor(
    private readonly endpoint: MsgTransEndpoint,
    private readonly limits: ConnectionLimits,
    private readonly tlsOptions: MsgTransTlsOptions | undefined,
    private readonly heartbeatInterval: number,
  ) {
    this.protocol = endpoint.protocol;
    this.ownsServer = endpoint.httpServer === undefined;
    this.wss = this.createWebSocketServer();
  }

  listen(
    onConnection: (connection: MsgTransConnection) => void,
    onError: (error: Error) => void = () => undefined,
  ): Promise<MsgTransListenerAddress> {
    const server = this.endpoint.httpServer ?? this.createServer();
    this.httpServer = server;
    const path = this.endpoint.path;
    this.onUpgrade = (req, socket, head) => {
      const pathname = new URL(req.url ?? '/', 'http://x').pathname;
      if (pathname !== path) {
        // other upgrade handlers on a shared server may own this path
        if (this.ownsServer || server.listenerCount('upgrade') === 1) {
          socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        }
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
        const peerCertificate = (req.socket as TLSSocket).getPeerX509Certificate?.() ?? undefined;
        onConnection(
          new WsConnection(ws, socket, false, this.protocol, this.limits, this.heartbeatInterval, req.headers, peerCertificate),
        );
      });
    };
    server.on('upgrade', this.onUpgrade);
    if (!this.ownsServer) {
      const address = this.addressOf(server);
      // A Nest hybrid app starts its microservices before the HTTP server listens:
      // report the real port once it is known (the same object is handed out).
      if (!server.listening) server.once('listening', () => Object.assign(address, this.addressOf(server)));
      return Promise.resolve(address);
    }
    return new Promise((resolve, reject) => {
      const onBindError = (err: Error) => {
        server.off('upgrade', this.onUpgrade!);
        reject(err);
      };
      server.once('error', onBindError);
      server.listen(this.endpoint.port, this.endpoint.host, () => {
        server.off('error', onBindError);
        server.on('error', onError);
        resolve(this.addressOf(server));
      });
    });
  }

  close(): Promise<void> {
    const server = this.httpServer;
    if (!server) return Promise.resolve();
    if (this.onUpgrade) server.off('upgrade', this.onUpgrade);
    this.onUpgrade = null;
    this.wss.close();
    // a closed WebSocketServer answers every upgrade with 503: the next listen() needs a fresh one
    this.wss = this.createWebSocketServer();
    if (this.ownsServer && server.listening) {
      server.close();
      // keep-alive HTTP connections would hold the port open
      server.closeAllConnections?.();
    }
    return Promise.resolve();
  }

  unwrap<T = unknown>(): T {
    return this.wss as T;
  }

  private createWebSocketServer(): WebSocketServer {
    return new WebSocketServer({
      noServer: true,
      maxPayload: this.limits.maxPacketSize,
      // payloads carry their own compression flag; permessage-deflate would compress twice
      perMessageDeflate: false,
      // the session tracks its connections: a second set of every socket only costs memory
      clientTracking: false,
    });
  }

  private createServer(): HttpServer {
    const reject = (_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(426, { Connection: 'close', 'Content-Type': 'text/plain' }).end('msgtrans over WebSocket only\n');
    };
    const t = this.tlsOptions;
    if (!t) return http.createServer(reject);
    return https.createServer(
      {
        key: t.key,
        cert: t.cert,
        ca: t.ca,
        requestCert: t.requestCert ?? false,
        rejectUnauthorized: t.requestCert ? (t.rejectUnauthorized ?? true) : false,
      },
      reject,
    ) as unknown as HttpServer;
  }

  private addressOf(server: HttpServer): MsgTransListenerAddress {
    const address = server.address() as AddressInfo | null;
    const host = address?.address ?? this.endpoint.host;
    const port = address?.port ?? this.endpoint.port;
    return { protocol: this.protocol, host, port, url: `${this.protocol}://${formatHostPort(host, port)}${this.endpoint.path}` };
  }
}
