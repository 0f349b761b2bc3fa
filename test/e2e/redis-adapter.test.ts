/**
 * MsgTransSessions across instances through the Redis adapter (issue 13):
 * a real redis-server, two server instances in their own processes, and
 * clients on tcp, ws and quic. Room membership and pushes (once per
 * member), broadcast, emitTo and sendTo across instances, presence and
 * fetchSessions, an instance that dies, and Redis killed and restarted
 * mid-traffic.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Logger, Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { createServer as createNetServer } from 'node:net';
import { EMPTY, firstValueFrom } from 'rxjs';
import {
  MsgTransClient,
  MsgTransErrorCode,
  MsgTransModule,
  MsgTransServer,
  MsgTransSessions,
  type MsgTransClientOptions,
  type MsgTransSessionInfo,
} from '../../lib/index.js';
import { MsgTransRedisAdapter } from '../../lib/redis/index.js';
import { createClient } from 'redis';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { sleep, within } from '../support/async.js';
import { testCertificates } from '../support/protocols.js';
import { RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/test-app.js';

const NODE_ENTRY = fileURLToPath(new URL('../support/adapter-node.js', import.meta.url));
// the time a room subscription takes to reach Redis, generously
const SUBSCRIBED = 500;

/** A server instance in a child process, driven over IPC. */
class AdapterNode {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  urls: string[] = [];
  nodeId = '';
  output = '';
  exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdout!.on('data', (c) => (this.output += c));
    child.stderr!.on('data', (c) => (this.output += c));
    child.on('message', (msg: { id?: number; result?: unknown; error?: { code?: string; message: string } }) => {
      if (msg.id === undefined) return;
      const w = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      if (msg.error) w?.reject(Object.assign(new Error(msg.error.message), { code: msg.error.code }));
      else w?.resolve(msg.result);
    });
  }

  static async start(redisUrl: string, prefix: string, certs: DevCertificates): Promise<AdapterNode> {
    const child = fork(NODE_ENTRY, [], {
      env: {
        ...process.env,
        MSGTRANS_TEST_REDIS_URL: redisUrl,
        MSGTRANS_TEST_PREFIX: prefix,
        MSGTRANS_TEST_HEARTBEAT: '200',
        MSGTRANS_TEST_TLS_KEY: certs.serverKey,
        MSGTRANS_TEST_TLS_CERT: certs.serverCert,
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const node = new AdapterNode(child);
    const ready = await within(
      new Promise<{ urls: string[]; nodeId: string }>((resolve, reject) => {
        child.on('message', (m: { type?: string; urls: string[]; nodeId: string }) => m.type === 'ready' && resolve(m));
        child.once('exit', (code) => reject(new Error(`adapter node exited (${code}):\n${node.output}`)));
      }),
      20_000,
      'adapter node start',
    );
    node.urls = ready.urls;
    node.nodeId = ready.nodeId;
    return node;
  }

  url(protocol: string): string {
    return this.urls.find((u) => u.startsWith(`${protocol}://`))!;
  }

  call<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return within(
      new Promise<T>((resolve, reject) => {
        this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
        this.child.send({ id, op, args });
      }),
      20_000,
      `${op} on ${this.nodeId}`,
    );
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async kill(): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

let certs: DevCertificates;
let redis: RedisServer;
const nodes: AdapterNode[] = [];
const clients: MsgTransClient[] = [];
let prefixes = 0;

before(async () => {
  certs = await testCertificates();
  Logger.overrideLogger(false);
  redis = await RedisServer.start();
});

after(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.kill();
  await redis?.stop();
});

let lastPrefix = '';

async function cluster(count = 2): Promise<AdapterNode[]> {
  const prefix = (lastPrefix = `t${process.pid}-${prefixes++}`);
  const started = await Promise.all(Array.from({ length: count }, () => AdapterNode.start(redis.url, prefix, certs)));
  nodes.push(...started);
  // every instance knows the others (heartbeats)
  await within(
    (async () => {
      for (;;) {
        const peers = await Promise.all(started.map((n) => n.call<string[]>('peers')));
        if (peers.every((p) => p.length === count - 1)) return;
        await sleep(50);
      }
    })(),
    10_000,
    'instances see each other',
  );
  return started;
}

/** A client of `node` over `protocol`, collecting pushes of `pattern`, and its session id there. */
async function member(node: AdapterNode, protocol: string, pattern = 'room.msg') {
  const options: MsgTransClientOptions = { url: node.url(protocol), ...(protocol === 'quic' ? { tls: { ca: certs.ca } } : {}) };
  const client = new MsgTransClient(options);
  clients.push(client);
  const got: unknown[] = [];
  client.incoming(pattern).subscribe((v) => got.push(v));
  const { sessionId } = await within(firstValueFrom(client.send<{ sessionId: string }>('ctx', {})), 15_000, `${protocol} client`);
  return { client, got, id: sessionId };
}

describe('Redis adapter: sessions across instances', () => {
  test('room membership and pushes across instances, once per member, for tcp, ws and quic clients', async () => {
    const [a, b] = await cluster();
    const onA = await member(a, 'tcp');
    const wsOnB = await member(b, 'ws');
    const quicOnB = await member(b, 'quic');
    const outsider = await member(a, 'tcp');
    // joined from instance A, wherever the session lives
    assert.equal(await a.call('join', onA.id, 'lobby'), true);
    assert.equal(await a.call('join', wsOnB.id, 'lobby'), true, 'a session on B joins from A');
    assert.equal(await a.call('join', quicOnB.id, 'lobby'), true);
    assert.equal(await a.call('join', 'no-such-session', 'lobby'), false);
    await sleep(SUBSCRIBED);

    await a.call('emitToRoom', 'lobby', 'room.msg', { n: 1 }, onA.id);
    await b.call('emitToRoom', 'lobby', 'room.msg', { n: 2 });
    await a.call('broadcast', 'room.msg', { n: 3 });
    await b.call('emitTo', onA.id, 'room.msg', { n: 4 });
    await a.call('emitToRoom', 'lobby', 'room.msg', { hex: '00ff10' });
    await waitFor(() => wsOnB.got.length === 4 && quicOnB.got.length === 4 && onA.got.length === 4 && outsider.got.length === 1, 10_000);
    await sleep(300);
    // pushes from different instances may interleave in any order: compare what arrived, each once
    const received = (got: unknown[]) =>
      got.map((v) => (Buffer.isBuffer(v) ? `bytes:${v.toString('hex')}` : `n:${(v as { n: number }).n}`)).sort();
    assert.deepEqual(received(onA.got), ['bytes:00ff10', 'n:2', 'n:3', 'n:4'], 'except left A out of n:1; binary data arrives as bytes');
    assert.deepEqual(received(wsOnB.got), ['bytes:00ff10', 'n:1', 'n:2', 'n:3']);
    assert.deepEqual(received(quicOnB.got), ['bytes:00ff10', 'n:1', 'n:2', 'n:3']);
    assert.deepEqual(outsider.got, [{ n: 3 }], 'only the broadcast reached the session outside the room');

    // leaving from the other instance
    await b.call('leave', onA.id, 'lobby');
    await a.call('leave', quicOnB.id, 'lobby');
    await sleep(SUBSCRIBED);
    await b.call('emitToRoom', 'lobby', 'room.msg', { n: 5 });
    await waitFor(() => wsOnB.got.length === 5, 10_000);
    await sleep(300);
    assert.equal(onA.got.length, 4);
    assert.equal(quicOnB.got.length, 4);
    const stats = await a.call<{ malformed: number }>('stats');
    assert.equal(stats.malformed, 0);
  });

  test('sendTo a session on another instance: the reply comes back; an error reply too; a dead instance times out', async () => {
    const [a, b] = await cluster();
    const onB = await member(b, 'ws');
    onB.client.answer('client.ping', (data: { x: number }) => ({ pong: data.x + 1 }));
    onB.client.answer('client.slow', () => new Promise(() => undefined));
    await sleep(200);
    assert.deepEqual(await a.call('sendTo', onB.id, 'client.ping', { x: 41 }), { pong: 42 });
    const unknown = await a.call('sendTo', onB.id, 'client.nothing', {}).catch((e: Error) => e);
    assert.ok(unknown instanceof Error, 'no handler: an error reply');
    assert.match(unknown.message, /no matching message handler/i);
    const startedAt = Date.now();
    const slow = a.call('sendTo', onB.id, 'client.slow', {}).catch((e: Error & { code?: string }) => e);
    await sleep(200);
    await b.kill();
    const gone = (await slow) as Error & { code?: string };
    assert.ok(gone instanceof Error);
    assert.equal(gone.code, MsgTransErrorCode.TIMEOUT, gone.message);
    assert.ok(Date.now() - startedAt < 9_000, 'failed on the lost heartbeat, before the request timeout');
  });

  test('presence and fetchSessions span the cluster (id, node, protocol, address, rooms)', async () => {
    const [a, b] = await cluster();
    await a.call('presence');
    const onB = await member(b, 'quic');
    const onA = await member(a, 'tcp');
    await a.call('join', onB.id, 'r1');
    await a.call('join', onA.id, 'r2');
    let events: { type: string; local: boolean; session: { id: string; node: string; protocol: string } }[] = [];
    await within(
      (async () => {
        for (;;) {
          events.push(...(await a.call<typeof events>('presence')));
          if (events.length >= 2) return;
          await sleep(50);
        }
      })(),
      10_000,
      'presence on A',
    );
    const remote = events.find((e) => e.session.id === onB.id)!;
    assert.deepEqual({ type: remote.type, local: remote.local, node: remote.session.node, protocol: remote.session.protocol }, {
      type: 'connected',
      local: false,
      node: b.nodeId,
      protocol: 'quic',
    });
    assert.equal(events.find((e) => e.session.id === onA.id)?.local, true);
    await sleep(SUBSCRIBED);
    const all = await b.call<MsgTransSessionInfo[]>('fetchSessions');
    const byId = new Map(all.map((s) => [s.id, s]));
    assert.deepEqual(
      { node: byId.get(onB.id)?.node, protocol: byId.get(onB.id)?.protocol, rooms: byId.get(onB.id)?.rooms },
      { node: b.nodeId, protocol: 'quic', rooms: ['r1'] },
    );
    assert.deepEqual(
      { node: byId.get(onA.id)?.node, protocol: byId.get(onA.id)?.protocol, rooms: byId.get(onA.id)?.rooms },
      { node: a.nodeId, protocol: 'tcp', rooms: ['r2'] },
    );
    assert.match(byId.get(onA.id)?.remoteAddress ?? '', /127\.0\.0\.1/);
    // a session closing on B is seen on A
    onB.client.close();
    events = [];
    await within(
      (async () => {
        for (;;) {
          events.push(...(await a.call<typeof events>('presence')));
          if (events.some((e) => e.type === 'closed' && e.session.id === onB.id)) return;
          await sleep(50);
        }
      })(),
      10_000,
      'closed seen on A',
    );
  });

  test('Redis killed and restarted mid-traffic: local pushes go on, cross-instance pushes resume, nothing crashes', async (t) => {
    const [a, b] = await cluster();
    const onA = await member(a, 'tcp', 'tick');
    const onB = await member(b, 'ws', 'tick');
    await a.call('join', onA.id, 'feed');
    await a.call('join', onB.id, 'feed');
    await sleep(SUBSCRIBED);
    // A pushes to the room every 20 ms: A's member gets it locally, B's through Redis
    const loop = a.call<number>('pushLoop', 'feed', 400, 20);
    await waitFor(() => onB.got.length > 10, 10_000);
    await redis.kill();
    const killedAt = Date.now();
    const aBefore = onA.got.length;
    const bBefore = onB.got.length;
    await sleep(1000);
    assert.ok(onA.got.length > aBefore + 10, `local delivery went on without Redis (${onA.got.length - aBefore} pushes in 1 s)`);
    assert.ok(onB.got.length <= bBefore + 3, 'cross-instance pushes stop while Redis is away');
    await redis.start();
    const restartedAt = Date.now();
    const bAtRestart = onB.got.length;
    await waitFor(() => onB.got.length > bAtRestart + 5, 15_000);
    const recovery = Date.now() - restartedAt;
    t.diagnostic(`cross-instance pushes resumed ${recovery} ms after Redis restarted (down ${restartedAt - killedAt} ms)`);
    await loop;
    assert.ok(a.alive && b.alive, `instances alive:\n${a.output}\n${b.output}`);
    // the cluster knows itself again: B's pushes reach A's member, requests cross again
    await within(
      (async () => {
        for (;;) {
          const peers = await a.call<string[]>('peers');
          if (peers.includes(b.nodeId)) return;
          await sleep(100);
        }
      })(),
      15_000,
      'A sees B again',
    );
    const before = onA.got.length;
    await b.call('emitToRoom', 'feed', 'tick', { i: -1 });
    await waitFor(() => onA.got.length === before + 1, 10_000);
    // each push arrived once: no duplicates among A's member's ticks
    const seen = (onA.got as { i: number }[]).map((x) => x.i).filter((i) => i >= 0);
    assert.equal(new Set(seen).size, seen.length, 'no duplicates');
    assert.equal(seen.length, 400, 'every local push arrived');
  });

  test('garbage on the cluster channels is ignored and counted; the instances go on', async () => {
    const [a, b] = await cluster();
    const onB = await member(b, 'tcp');
    const raw = createClient({ url: redis.url });
    raw.on('error', () => undefined);
    await raw.connect();
    try {
      for (const message of [Buffer.from([1, 255, 255, 255, 255]), Buffer.from('not json'), Buffer.from([1, 0, 0, 0, 2, 0x7b, 0x7d])]) {
        await raw.publish(`${lastPrefix}#all`, message);
        await raw.publish(`${lastPrefix}#node#${a.nodeId}`, message);
      }
      // well framed, but a header without a type
      await raw.publish(`${lastPrefix}#all`, Buffer.concat([Buffer.from([1, 0, 0, 0, 10]), Buffer.from('{"n":"zz"}'), Buffer.from([0])]));
    } finally {
      await raw.close();
    }
    await within(
      (async () => {
        while ((await a.call<{ malformed: number }>('stats')).malformed < 7) await sleep(50);
      })(),
      10_000,
      'malformed messages counted',
    );
    await a.call('broadcast', 'room.msg', { still: 'working' });
    await waitFor(() => onB.got.length === 1, 10_000);
    assert.ok(a.alive && b.alive);
    assert.deepEqual(await a.call('peers'), [b.nodeId], 'no instance made up from garbage');
  });

  test('a server whose listen() fails closes its adapter (no Redis connection keeps the process alive)', async () => {
    const blocker = createNetServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    const calls: string[] = [];
    const adapter = {
      nodeId: 'fake',
      attach: async () => void calls.push('attach'),
      close: async () => void calls.push('close'),
      sessionAdded() {},
      sessionRemoved() {},
      roomJoined() {},
      roomLeft() {},
      isRemote: () => false,
      join() {},
      leave() {},
      publish() {},
      sendTo: () => EMPTY,
      fetchSessions: async () => [],
    };
    try {
      const server = new MsgTransServer({ listen: `tcp://127.0.0.1:${port}`, adapter });
      const error = await new Promise((resolve) => server.listen(resolve));
      assert.ok(error, 'the port is taken');
      assert.deepEqual(calls, ['attach', 'close']);
    } finally {
      blocker.close();
    }
  });

  test('an adapter whose Redis is unreachable lets the server start and serve locally', async () => {
    const down = await RedisServer.start();
    await down.stop();
    const server = new MsgTransServer({
      listen: 'tcp://127.0.0.1:0',
      adapter: new MsgTransRedisAdapter({ url: down.url, keyPrefix: 'unreachable', heartbeatInterval: 100 }),
    });
    await within(new Promise<void>((resolve, reject) => server.listen((err) => (err ? reject(err) : resolve()))), 10_000, 'listen');
    try {
      assert.equal(server.sessions.broadcast('x', {}), 0);
      assert.deepEqual(await server.sessions.fetchSessions(), []);
    } finally {
      await server.close();
    }
  });

  test('MsgTransModule.forRoot({ server: { adapter } }) and forRootAsync: two apps share rooms', async () => {
    const prefix = `module-${process.pid}`;
    const adapter = () => new MsgTransRedisAdapter({ url: redis.url, keyPrefix: prefix, heartbeatInterval: 200 });
    const serve = async (imports: DynamicModule) => {
      @Module({ imports: [imports] })
      class AppModule {}
      const app = await NestFactory.createMicroservice(AppModule, { ...MsgTransModule.microservice(), logger: false });
      await app.listen();
      return app;
    };
    const one = await serve(MsgTransModule.forRoot({ server: { listen: 'tcp://127.0.0.1:0', adapter: adapter() } }));
    const two = await serve(
      MsgTransModule.forRootAsync({ useFactory: async () => ({ server: { listen: 'tcp://127.0.0.1:0', adapter: adapter() } }) }),
    );
    try {
      const [s1, s2] = [one.get(MsgTransSessions), two.get(MsgTransSessions)];
      const client = new MsgTransClient({ url: two.get(MsgTransServer).addresses()[0].url });
      clients.push(client);
      const got: unknown[] = [];
      client.incoming('hello').subscribe((v) => got.push(v));
      await waitFor(() => s2.size === 1, 10_000);
      await within(
        (async () => {
          while (!s1.join(s2.all()[0].id, 'everyone')) await sleep(50);
        })(),
        10_000,
        'the session on app two is known to app one',
      );
      await sleep(SUBSCRIBED);
      s1.emitToRoom('everyone', 'hello', { from: 'one' });
      await waitFor(() => got.length === 1, 10_000);
      assert.deepEqual(got, [{ from: 'one' }]);
    } finally {
      await one.close();
      await two.close();
    }
  });
});
