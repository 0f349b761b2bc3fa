/**
 * Every core with node:cluster (issue 13): workers share the TCP and
 * WebSocket ports, connections spread over them, and with the Redis
 * adapter rooms span workers. QUIC in a worker: refused with a clear error
 * when workers would share its UDP port, served when each has its own.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Logger } from '@nestjs/common';
import { firstValueFrom } from 'rxjs';
import { MsgTransClient, MsgTransConfigError, MsgTransErrorCode, MsgTransServer, type MsgTransClientOptions } from '../../lib/index.js';
import { assertQuicClusterLayout } from '../../lib/server/cluster-layout.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { sleep, within } from '../support/async.js';
import { testCertificates } from '../support/protocols.js';
import { RedisServer } from '../support/redis-server.js';
import { freePort } from '../support/restartable-server.js';
import { waitFor } from '../support/test-app.js';

const PRIMARY = fileURLToPath(new URL('../support/cluster-primary.js', import.meta.url));

type Reply = { worker: number; id?: number; type?: string; result?: unknown; error?: { code?: string; message: string }; code?: string; pid?: number; urls?: string[]; message?: string };

/** A cluster primary in a child process, its workers driven through it. */
class ClusterUnderTest {
  readonly events: Reply[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  output = '';

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (c) => (this.output += c));
    child.stderr?.on('data', (c) => (this.output += c));
    child.on('message', (msg: Reply) => {
      if (msg.id !== undefined) {
        this.waiting.get(msg.id)?.(msg);
        this.waiting.delete(msg.id);
      } else this.events.push(msg);
    });
  }

  static start(workers: number, env: Record<string, string>): ClusterUnderTest {
    const child = fork(PRIMARY, [String(workers)], { env: { ...process.env, ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    return new ClusterUnderTest(child);
  }

  async settled(workers: number): Promise<Reply[]> {
    await waitFor(() => this.events.filter((e) => e.type === 'ready' || e.type === 'failed').length === workers, 30_000).catch(() => {
      throw new Error(`workers did not start:\n${this.output}`);
    });
    return this.events.filter((e) => e.type === 'ready' || e.type === 'failed').sort((a, b) => a.worker - b.worker);
  }

  call<T>(worker: number, op: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return within(
      new Promise<T>((resolve, reject) => {
        this.waiting.set(id, (r) => (r.error ? reject(new Error(r.error.message)) : resolve(r.result as T)));
        this.child.send({ worker, id, op, args });
      }),
      15_000,
      `${op} on worker ${worker}`,
    );
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    // the primary kills its workers when its parent goes away
    this.child.disconnect();
    await within(exited, 10_000, 'cluster primary exit').catch(() => this.child.kill('SIGKILL'));
  }
}

let certs: DevCertificates;
let redis: RedisServer;
const clusters: ClusterUnderTest[] = [];
const clients: MsgTransClient[] = [];

before(async () => {
  certs = await testCertificates();
  Logger.overrideLogger(false);
  redis = await RedisServer.start();
});

after(async () => {
  for (const c of clients) c.close();
  for (const c of clusters) await c.stop();
  await redis?.stop();
});

function tlsEnv(): Record<string, string> {
  return { MSGTRANS_TEST_TLS_KEY: certs.serverKey, MSGTRANS_TEST_TLS_CERT: certs.serverCert };
}

function client(options: MsgTransClientOptions): MsgTransClient {
  const c = new MsgTransClient(options);
  clients.push(c);
  return c;
}

describe('node:cluster', () => {
  test('workers share the TCP and WebSocket ports; with the Redis adapter, rooms span workers', async () => {
    const [tcpPort, wsPort] = [await freePort(), await freePort()];
    const under = ClusterUnderTest.start(2, {
      ...tlsEnv(),
      MSGTRANS_TEST_LISTEN: JSON.stringify([`tcp://127.0.0.1:${tcpPort}`, `ws://127.0.0.1:${wsPort}/msgtrans`]),
      MSGTRANS_TEST_REDIS_URL: redis.url,
      MSGTRANS_TEST_PREFIX: `cluster-${process.pid}`,
    });
    clusters.push(under);
    const ready = await under.settled(2);
    assert.deepEqual(ready.map((r) => r.type), ['ready', 'ready'], under.output);
    const pids = ready.map((r) => r.pid!);
    assert.notEqual(pids[0], pids[1]);

    const byPid = new Map<number, { c: MsgTransClient; id: string; got: unknown[] }[]>();
    for (const url of [`tcp://127.0.0.1:${tcpPort}`, `ws://127.0.0.1:${wsPort}/msgtrans`]) {
      const seen = new Set<number>();
      // the primary hands connections to workers in turn: a few connections reach both
      for (let i = 0; i < 8 && seen.size < 2; i++) {
        const c = client({ url });
        const got: unknown[] = [];
        c.incoming('news').subscribe((v) => got.push(v));
        const pid = await within(firstValueFrom(c.send<number>('pid', {})), 15_000, `pid over ${url}`);
        const { sessionId } = await firstValueFrom(c.send<{ sessionId: string }>('ctx', {}));
        seen.add(pid);
        byPid.set(pid, [...(byPid.get(pid) ?? []), { c, id: sessionId, got }]);
      }
      assert.deepEqual([...seen].sort(), [...pids].sort(), `connections over ${url} reach both workers`);
    }
    // every worker sees the other through Redis
    await within(
      (async () => {
        while ((await under.call<string[]>(0, 'peers')).length < 1 || (await under.call<string[]>(1, 'peers')).length < 1) await sleep(50);
      })(),
      15_000,
      'workers see each other',
    );
    const first = byPid.get(pids[0])![0];
    const second = byPid.get(pids[1])![0];
    // worker 0 puts a session of each worker in a room; worker 1 pushes to it
    assert.equal(await under.call(0, 'join', first.id, 'room'), true);
    assert.equal(await under.call(0, 'join', second.id, 'room'), true);
    await sleep(500);
    await under.call(1, 'emitToRoom', 'room', 'news', { hello: 'workers' });
    await waitFor(() => first.got.length === 1 && second.got.length === 1, 10_000);
    await sleep(200);
    assert.deepEqual([first.got, second.got], [[{ hello: 'workers' }], [{ hello: 'workers' }]]);
  });

  test('a QUIC endpoint on one port in cluster workers is refused with ERR_MSGTRANS_QUIC_CLUSTER_PORT', async () => {
    const port = await freePort('udp');
    const under = ClusterUnderTest.start(2, { ...tlsEnv(), MSGTRANS_TEST_LISTEN: JSON.stringify([`quic://127.0.0.1:${port}`]) });
    clusters.push(under);
    const results = await under.settled(2);
    for (const r of results) {
      assert.equal(r.type, 'failed');
      assert.equal(r.code, MsgTransErrorCode.QUIC_CLUSTER_PORT);
      assert.match(r.message!, /own port/);
    }
  });

  test("quicInClusterWorker: 'own-port' serves QUIC from each worker on its own port", async () => {
    const ports = [await freePort('udp'), await freePort('udp')];
    const under = ClusterUnderTest.start(2, {
      ...tlsEnv(),
      // worker ids start at 1
      MSGTRANS_TEST_LISTEN: JSON.stringify({ 1: [`quic://127.0.0.1:${ports[0]}`], 2: [`quic://127.0.0.1:${ports[1]}`] }),
      MSGTRANS_TEST_SERVER_OPTIONS: JSON.stringify({ quicInClusterWorker: 'own-port' }),
    });
    clusters.push(under);
    const ready = await under.settled(2);
    assert.deepEqual(ready.map((r) => r.type), ['ready', 'ready'], under.output);
    // one client over both ports: a replica per worker
    const c = client({ url: ports.map((p) => `quic://127.0.0.1:${p}`), tls: { ca: certs.ca } });
    const seen = new Set<number>();
    for (let i = 0; i < 6; i++) seen.add(await within(firstValueFrom(c.send<number>('pid', {})), 15_000, 'quic call'));
    assert.deepEqual([...seen].sort(), ready.map((r) => r.pid!).sort());
  });

  test('the layout check: outside a worker anything goes; in a worker, port 0 is refused even with own-port', () => {
    assert.doesNotThrow(() => assertQuicClusterLayout({ listen: 'quic://127.0.0.1:4433' }, false));
    assert.doesNotThrow(() => assertQuicClusterLayout({ listen: ['tcp://127.0.0.1:1', 'ws://127.0.0.1:2/x'] }, true));
    const refused = (options: ConstructorParameters<typeof MsgTransServer>[0]) =>
      assert.throws(() => assertQuicClusterLayout(options, true), (e: MsgTransConfigError) => e.code === MsgTransErrorCode.QUIC_CLUSTER_PORT);
    refused({ listen: 'quic://127.0.0.1:4433' });
    refused({ listen: 'quic://127.0.0.1:0', quicInClusterWorker: 'own-port' });
    assert.doesNotThrow(() => assertQuicClusterLayout({ listen: 'quic://127.0.0.1:4433', quicInClusterWorker: 'own-port' }, true));
    assert.throws(
      () => assertQuicClusterLayout({ listen: 'quic://127.0.0.1:4433', quicInClusterWorker: 'yes' as never }, true),
      (e: MsgTransConfigError) => e.code === MsgTransErrorCode.INVALID_OPTION,
    );
  });
});
