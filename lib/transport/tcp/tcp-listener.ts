import * as net from 'node:net';
import * as tls from 'node:tls';
import { formatHostPort, type MsgTransEndpoint } from '../endpoint.js';
import type {
  MsgTransConnection,
  MsgTransListener,
  MsgTransListenerAddress,
} from '../msgtrans-connection.interface.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import type { MsgTransTlsOptions } from '../tls-options.interface.js';
import { TcpConnection } from './tcp-connection.js';

/** Listens on `tcp://` or, with TLS options, `tls://`. */
export class TcpListener implements MsgTransListener {
  readonly protocol: string;
  private server: net.Server | null = null;
  // Sockets still in the TLS handshake belong to nobody else yet; close() ends them.
  // Keyed by the peer's address and port: the TLS socket handed out after the
  // handshake is a different object than the raw socket seen on 'connection',
  // and only this pair of values links the two.
  private readonly handshaking = new Map<string, net.Socket>();

  constructor(
    private readonly endpoint: MsgTransEndpoint,
    private readonly limits: ConnectionLimits,
    private readonly tlsOptions: MsgTransTlsOptions | undefined,
    private readonly heartbeatInterval = 0,
  ) {
    this.protocol = tlsOptions ? 'tls' : 'tcp';
  }

  listen(
    onConnection: (connection: MsgTransConnection) => void,
    onError: (error: Error) => void = () => undefined,
  ): Promise<MsgTransListenerAddress> {
    const accept = (socket: net.Socket) => onConnection(new TcpConnection(socket, this.protocol, this.limits, this.heartbeatInterval));
    let server: net.Server;
    if (this.tlsOptions) {
      const t = this.tlsOptions;
      const tlsServer = tls.createServer(
        {
          key: t.key,
          cert: t.cert,
          ca: t.ca,
          requestCert: t.requestCert ?? false,
          rejectUnauthorized: t.requestCert ? (t.rejectUnauthorized ?? true) : false,
        },
        (socket) => {
          this.handshaking.delete(peerKey(socket));
          accept(socket);
        },
      );
      tlsServer.on('connection', (raw: net.Socket) => {
        const key = peerKey(raw);
        this.handshaking.set(key, raw);
        raw.once('close', () => {
          if (this.handshaking.get(key) === raw) this.handshaking.delete(key);
        });
      });
      // A failed handshake is that client's problem; the server keeps serving.
      tlsServer.on('tlsClientError', (_err, socket) => {
        this.handshaking.delete(peerKey(socket));
        socket.destroy();
      });
      server = tlsServer;
    } else {
      server = net.createServer(accept);
    }
    this.server = server;
    return new Promise((resolve, reject) => {
      const onBindError = (err: Error) => reject(err);
      server.once('error', onBindError);
      server.listen(this.endpoint.port, this.endpoint.host, () => {
        server.off('error', onBindError);
        server.on('error', onError);
        const address = server.address() as net.AddressInfo;
        resolve({
          protocol: this.protocol,
          host: address.address,
          port: address.port,
          url: `${this.protocol}://${formatHostPort(address.address, address.port)}`,
        });
      });
    });
  }

  close(): Promise<void> {
    const server = this.server;
    if (!server || !server.listening) return Promise.resolve();
    for (const socket of this.handshaking.values()) socket.destroy();
    this.handshaking.clear();
    // Accepting stops at once; open connections are closed by their sessions.
    server.close();
    return Promise.resolve();
  }

  unwrap<T = unknown>(): T {
    return this.server as T;
  }
}

function peerKey(socket: net.Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`;
}
