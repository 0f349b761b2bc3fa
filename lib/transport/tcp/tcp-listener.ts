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
  private readonly handshaking = new Set<net.Socket>();

  constructor(
    private readonly endpoint: MsgTransEndpoint,
    private readonly limits: ConnectionLimits,
    private readonly tlsOptions: MsgTransTlsOptions | undefined,
  ) {
    this.protocol = tlsOptions ? 'tls' : 'tcp';
  }

  listen(
    onConnection: (connection: MsgTransConnection) => void,
    onError: (error: Error) => void = () => undefined,
  ): Promise<MsgTransListenerAddress> {
    const accept = (socket: net.Socket) => onConnection(new TcpConnection(socket, this.protocol, this.limits));
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
          this.handshaking.delete(socket);
          accept(socket);
        },
      );
      tlsServer.on('connection', (raw: net.Socket) => {
        this.handshaking.add(raw);
        raw.once('close', () => this.handshaking.delete(raw));
      });
      // A failed handshake is that client's problem; the server keeps serving.
      tlsServer.on('tlsClientError', (_err, socket) => socket.destroy());
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
    for (const socket of this.handshaking) socket.destroy();
    this.handshaking.clear();
    // Accepting stops at once; open connections are closed by their sessions.
    server.close();
    return Promise.resolve();
  }

  unwrap<T = unknown>(): T {
    return this.server as T;
  }
}
