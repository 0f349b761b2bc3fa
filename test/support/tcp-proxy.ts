import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A byte-for-byte TCP forwarder on 127.0.0.1 in front of a local port, that a
 * test can cut: every proxied connection is destroyed at once, as when a
 * network path breaks. Works for every TCP-based protocol (tcp, tls, ws,
 * wss), since it never looks at the bytes.
 */
export class TcpProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  /** Connections accepted so far. */
  accepted = 0;
  port = 0;

  constructor(private readonly targetPort: number) {}

  async start(): Promise<number> {
    const server = createServer((client) => {
      this.accepted++;
      const upstream = connect(this.targetPort, '127.0.0.1');
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          this.sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  /** Destroys every proxied connection, both sides. */
  cutAll(): void {
    for (const socket of [...this.sockets]) socket.destroy();
  }

  /** Proxied connections open now (client side and upstream side count once together). */
  get open(): number {
    return this.sockets.size / 2;
  }

  async close(): Promise<void> {
    this.cutAll();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
