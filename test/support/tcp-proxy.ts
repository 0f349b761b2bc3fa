import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP relay on loopback whose connections can go silent: after freeze()
 * the connections open so far forward nothing more in either direction and
 * close nothing, like a peer whose host vanished or a network path that
 * black-holes. Connections made afterwards are relayed normally.
 */
export class TcpProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly live = new Set<{ frozen: boolean }>();
  /** Connections relayed so far. */
  connections = 0;

  constructor(private readonly targetPort: number) {}

  /** Starts relaying; resolves with the proxy's port. */
  listen(): Promise<number> {
    const server = createServer((inbound) => {
      this.track(inbound);
      this.connections++;
      const outbound = connect(this.targetPort, '127.0.0.1');
      this.track(outbound);
      const state = { frozen: false };
      this.live.add(state);
      this.relay(inbound, outbound, state);
      this.relay(outbound, inbound, state);
    });
    this.server = server;
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
  }

  /** Stops forwarding on every connection open now, both ways, without closing any. */
  freeze(): void {
    for (const state of this.live) state.frozen = true;
    this.live.clear();
  }

  close(): void {
    this.server?.close();
    for (const socket of this.sockets) socket.destroy();
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
