import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { lastValueFrom, toArray } from 'rxjs';
import {
  MsgTransClient,
  MsgTransConfigError,
  MsgTransErrorCode,
  decodePacket,
  type MsgTransConnection,
  type MsgTransConnectionSink,
  type MsgTransEndpoint,
  type MsgTransListener,
  type MsgTransListenerAddress,
  type MsgTransProtocol,
  type PacketLimits,
} from '../../lib/index.js';
import { startMsgTrans, waitFor, type RunningApp } from '../support/test-app.js';
import type { MsgTransServer } from '../../lib/index.js';

/**
 * A protocol that never leaves the process: each side hands encoded packets
 * to the other on the next turn of the event loop. It shows the whole
 * contract a user implements to add a protocol.
 */
class MemConnection implements MsgTransConnection {
  readonly protocol = 'mem';
  readonly remoteAddress = 'in-process';
  readonly remotePort = undefined;
  peer: MemConnection | null = null;
  private sink: MsgTransConnectionSink | null = null;
  private isClosed = false;
  sent = 0;

  constructor(private readonly limits: PacketLimits) {}

  get closed(): boolean {
    return this.isClosed;
  }

  open(sink: MsgTransConnectionSink): void {
    this.sink = sink;
  }

  readonly bufferedAmount = 0;

  send(packet: Buffer): boolean {
    if (this.isClosed) return true;
    this.sent++;
    const peer = this.peer;
    setImmediate(() => peer?.receive(packet));
    return true;
  }

  close(error?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    setImmediate(() => {
      this.sink?.onClose(error);
      this.peer?.close();
    });
  }

  unwrap<T>(): T {
    return this as unknown as T;
  }

  private receive(packet: Buffer): void {
    if (this.isClosed) return;
    try {
      this.sink?.onPacket(decodePacket(packet, this.limits));
    } catch (err) {
      this.close(err as Error);
    }
  }
}

class MemListener implements MsgTransListener {
  readonly protocol = 'mem';
  onConnection: ((connection: MsgTransConnection) => void) | null = null;

  constructor(
    private readonly registry: Map<number, MemListener>,
    private readonly port: number,
  ) {}

  async listen(onConnection: (connection: MsgTransConnection) => void): Promise<MsgTransListenerAddress> {
    if (this.registry.has(this.port)) throw new Error(`mem port ${this.port} in use`);
    this.registry.set(this.port, this);
    this.onConnection = onConnection;
    return { protocol: 'mem', host: 'local', port: this.port, url: `mem://local:${this.port}` };
  }

  async close(): Promise<void> {
    if (this.registry.get(this.port) === this) this.registry.delete(this.port);
  }

  unwrap<T>(): T {
    return this as unknown as T;
  }
}

class MemProtocol implements MsgTransProtocol {
  readonly schemes = ['mem'];
  readonly registry = new Map<number, MemListener>();

  createListener(endpoint: MsgTransEndpoint): MsgTransListener {
    return new MemListener(this.registry, endpoint.port);
  }

  async connect(endpoint: MsgTransEndpoint, context: { limits: PacketLimits }): Promise<MsgTransConnection> {
    const listener = this.registry.get(endpoint.port);
    if (!listener?.onConnection) throw new Error(`nothing listens on mem port ${endpoint.port}`);
    const client = new MemConnection(context.limits);
    const server = new MemConnection(context.limits);
    client.peer = server;
    server.peer = client;
    listener.onConnection(server);
    return client;
  }
}

describe('a protocol added by the user', () => {
  const mem = new MemProtocol();
  let running: RunningApp & { server: MsgTransServer; url: string };
  let client: MsgTransClient;

  before(async () => {
    running = await startMsgTrans({ listen: 'mem://local:7', protocols: [mem] });
    client = new MsgTransClient({ url: running.url, protocols: [mem] });
  });

  after(async () => {
    client.close();
    await running.close();
  });

  test('serves the same handlers: request, stream, event, errors, context', async () => {
    assert.equal(running.url, 'mem://local:7');
    assert.deepEqual(await lastValueFrom(client.send('echo', { over: 'mem' })), { over: 'mem' });
    assert.deepEqual(await lastValueFrom(client.send('stream', { n: 3 }).pipe(toArray())), [1, 2, 3]);
    assert.deepEqual(await lastValueFrom(client.send(7, 'biz')), { bizType: 7, pattern: '7', data: 'biz' });
    const ctx = await lastValueFrom(client.send('ctx', {}));
    assert.equal(ctx.protocol, 'mem');
    assert.equal(ctx.remoteAddress, 'in-process');
    await assert.rejects(lastValueFrom(client.send('fail.rpc', {})), (err: any) => err.message === 'bad input');
    const before = running.observed.events.length;
    client.emit('event', 'mem-event');
    await waitFor(() => running.observed.events.length > before);
    assert.equal(running.observed.events.at(-1), 'mem-event');
    // the bytes really went through the user's connection
    assert.ok(client.unwrap<MemConnection>().sent >= 5);
  });

  test('a listener instance can be passed to listen directly', async () => {
    const direct = new MemProtocol();
    const other = await startMsgTrans({ listen: [new MemListener(direct.registry, 9)] });
    const c = new MsgTransClient({ url: 'mem://local:9', protocols: [direct] });
    try {
      assert.equal(await lastValueFrom(c.send('echo', 'direct')), 'direct');
    } finally {
      c.close();
      await other.close();
    }
  });

  test('an unknown scheme is a config error that names the known ones', () => {
    assert.throws(
      () => new MsgTransClient({ url: 'carrier-pigeon://local:1' }),
      (err) => err instanceof MsgTransConfigError && err.code === MsgTransErrorCode.UNKNOWN_PROTOCOL && /tcp/.test(err.message),
    );
  });
});
