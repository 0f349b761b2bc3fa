import { QUICServer, events, type QUICConnection, type QUICStream } from '@matrixai/quic';
import { formatHostPort, type MsgTransEndpoint } from '../endpoint.js';
import type {
  MsgTransConnection,
  MsgTransListener,
  MsgTransListenerAddress,
} from '../msgtrans-connection.interface.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import type { MsgTransTlsOptions } from '../tls-options.interface.js';
import { QuicConnection } from './quic-connection.js';
import { quicLogger } from './quic-logger.js';
import { quicTransportConfig } from './quic-config.js';
import { pemList, serverCrypto, verifyCallback } from './quic-tls.js';

/** Serves `quic://host:port`: one bidirectional stream per connection, opened by the client. */
export class QuicListener implements MsgTransListener {
  readonly protocol = 'quic';
  private server: QUICServer | null = null;
  private readonly waiting = new Map<QUICConnection, NodeJS.Timeout>();

  constructor(
    private readonly endpoint: MsgTransEndpoint,
    private readonly limits: ConnectionLimits,
    private readonly tls: MsgTransTlsOptions,
    private readonly alpn: string,
    private readonly heartbeatInterval: number,
    private readonly streamTimeout: number,
  ) {}

  async listen(
    onConnection: (connection: MsgTransConnection) => void,
    onError: (error: Error) => void = () => undefined,
  ): Promise<MsgTransListenerAddress> {
    const t = this.tls;
    const mutual = t.requestCert ?? false;
    const server = new QUICServer({
      crypto: await serverCrypto(),
      logger: quicLogger('QuicListener'),
      config: {
        ...quicTransportConfig(this.heartbeatInterval),
        key: pemList(t.key)!,
        cert: pemList(t.cert)!,
        ca: pemList(t.ca),
        applicationProtos: [this.alpn],
        verifyPeer: mutual,
        verifyCallback: mutual && (t.rejectUnauthorized ?? true) ? verifyCallback(undefined) : undefined,
      },
    });
    server.addEventListener(events.EventQUICServerError.name, (event: Event) => {
      onError((event as events.EventQUICServerError).detail as Error);
    });
    server.addEventListener(events.EventQUICServerConnection.name, (event: Event) => {
      this.accept((event as events.EventQUICServerConnection).detail, onConnection);
    });
    try {
      await server.start({ host: this.endpoint.host, port: this.endpoint.port });
    } catch (err) {
      // surface the socket's own error (EADDRINUSE, …) as TCP and ws do
      const cause = (err as { cause?: NodeJS.ErrnoException }).cause;
      throw cause?.code ? Object.assign(new Error(`quic://${formatHostPort(this.endpoint.host, this.endpoint.port)}: ${cause.message}`, { cause: err }), { code: cause.code }) : err;
    }
    this.server = server;
    const host = server.host as string;
    const port = server.port as number;
    return { protocol: 'quic', host, port, url: `quic://${formatHostPort(host, port)}` };
  }

  async close(): Promise<void> {
    for (const timer of this.waiting.values()) clearTimeout(timer);
    this.waiting.clear();
    const server = this.server;
    this.server = null;
    // connections handed out are closed by their sessions first; force ends any left
    await server?.stop({ isApp: true, errorCode: 0, force: true });
  }

  unwrap<T = unknown>(): T {
    return this.server as T;
  }

  private accept(connection: QUICConnection, onConnection: (connection: MsgTransConnection) => void): void {
    // A connection that never opens its stream would hold state forever.
    const timer = setTimeout(() => {
      this.waiting.delete(connection);
      void connection.stop({ isApp: true, errorCode: 1, reason: Buffer.from('no stream opened'), force: true }).catch(() => undefined);
    }, this.streamTimeout);
    timer.unref();
    this.waiting.set(connection, timer);
    let opened = false;
    connection.addEventListener(events.EventQUICConnectionStream.name, (event: Event) => {
      const stream = (event as events.EventQUICConnectionStream).detail as QUICStream;
      if (opened) {
        // PROTOCOL.md: exactly one stream carries the connection; others are refused
        void stream.cancel(new Error('msgtrans uses one stream per connection'));
        return;
      }
      opened = true;
      clearTimeout(timer);
      this.waiting.delete(connection);
      onConnection(new QuicConnection(connection, stream, this.limits));
    });
    connection.addEventListener(
      events.EventQUICConnectionClose.name,
      () => {
        clearTimeout(timer);
        this.waiting.delete(connection);
      },
      { once: true },
    );
  }
}
