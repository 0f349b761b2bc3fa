import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A byte-for-byte TCP relay on 127.0.0.1 in front of a local port, for
 * network faults a test stages. Works for every TCP-based protocol (tcp, tls,
 * ws, wss) since it never looks at the bytes:
 * - {@link cutAll} destroys every relayed connection, as when a path breaks;
 * - {@link freeze} makes the connections open so far forward nothing more in
 *   either direction and close nothing, like a peer whose host vanished.
 * Connections made afterwards are relayed normally.
 */
export class TcpProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly live = new Set<{ frozen: boolean }>();
  /** Connections relayed so far. */
  connections = 0;
  /** The relay's own port, once started. */
  port = 0;

  constructor(private readonly targetPort: number) {}

  /** Starts relaying; resolves with the relay's port. */
  async start(): Promise<number> {
    const server = createServer((inbound) => {
      this.connections++;
      const outbound = connect(this.targetPort, '127.0.0.1');
      this.track(inbound);
      this.track(outbound);
      const state = { frozen: false };
      this.live.add(state);
      this.relay(inbound, outbound, state);
      this.relay(outbound, inbound, state);
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  /** Destroys every relayed connection, both sides. */
  cutAll(): void {
    for (const socket of [...this.sockets]) socket.destroy();
  }

  /** Stops forwarding on every connection open now, both ways, without closing any. */
  freeze(): void {
    for (const state of this.live) state.frozen = true;
    this.live.clear();
  }

  /** Relayed connections open now (both sides of one count once). */
  get open(): number {
    return this.sockets.size / 2;
  }

  async close(): Promise<void> {
    this.cutAll();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private relay(from: Socket, to: Socket, state: { frozen: boolean }): void {
    from.on('data', (chunk) => {
      if (!state.frozen) to.write(chunk);
    });
    from.once('end', () => {
      if (!state.frozen) to.end();
    });
    from.once('close', () => {
      this.live.delete(state);
      if (!state.frozen) to.destroy();
    });
  }
}
