/**
 * Scaling out, measured (issue 13). Not a test: `npm run build && node dist/bench/cluster.js`.
 *
 * 1. Throughput with 1 and with 2 `node:cluster` workers sharing one TCP
 *    port (a Nest microservice, `echo` handler), the load generator in its
 *    own process: C connections (the primary hands them to workers in
 *    turn), each with K calls in flight, for S seconds; msg/s, p50, p99.
 * 2. With a real redis-server: push latency across instances (instance A
 *    pushes to a room, measured at a client of instance B) against local
 *    delivery (a client of A), and how long cross-instance pushes take to
 *    resume after Redis is killed and started again.
 *
 * Options: --seconds=S (default 8) --connections=C (8) --inflight=K (50 per connection) --reps=N (3)
 *          --skip-redis
 */
import 'reflect-metadata';
import cluster from 'node:cluster';
import { fork, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Controller, Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { firstValueFrom } from 'rxjs';
import { MsgTransClient, MsgTransServer, type MsgTransContext } from '../lib/index.js';
import { MsgTransRedisAdapter } from '../lib/redis/index.js';
import { RedisServer } from '../test/support/redis-server.js';
import { freePort } from '../test/support/restartable-server.js';

const SELF = fileURLToPath(import.meta.url);
const arg = (name: string, fallback: number) => {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`));
  return found ? Number(found.split('=')[1]) : fallback;
};

@Controller()
class EchoController {
  @MessagePattern('echo')
  echo(@Payload() data: unknown) {
    return data;
  }

  @MessagePattern('whoami')
  whoami(@Payload() _data: unknown, @Ctx() ctx: MsgTransContext) {
    return ctx.getSessionId();
  }
}

@Module({ controllers: [EchoController] })
class EchoModule {}

async function serve(options: ConstructorParameters<typeof MsgTransServer>[0]): Promise<MsgTransServer> {
  const strategy = new MsgTransServer(options);
  const app = await NestFactory.createMicroservice(EchoModule, { strategy, logger: false });
  await app.listen();
  return strategy;
}

function send(message: unknown): void {
  if (process.connected) process.send!(message);
}

function once<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { type?: string }) => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      resolve(m as T);
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before ${type}`)));
  });
}

// ---------------------------------------------------------------------------
// roles
// ---------------------------------------------------------------------------

/** cluster primary: forks N workers on one port, says ready when all listen. */
async function primary(workers: number, port: number): Promise<void> {
  cluster.setupPrimary({ exec: SELF, args: ['worker', String(port)] });
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', (m: { type?: string }) => {
      if (m.type === 'listening' && ++ready === workers) send({ type: 'ready' });
    });
  }
  process.on('disconnect', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    process.exit(0);
  });
}

async function worker(port: number): Promise<void> {
  await serve({ listen: `tcp://127.0.0.1:${port}` });
  send({ type: 'listening' });
}

/** load generator: closed loop of calls over C connections. */
async function load(url: string, connections: number, inflight: number, seconds: number): Promise<void> {
  const clients = Array.from({ length: connections }, () => new MsgTransClient({ url }));
  await Promise.all(clients.map((c) => c.connect()));
  const payload = { hello: 'world', n: 42 };
  // a warm-up second, then the measured window
  const latencies: number[] = [];
  let done = 0;
  let measuring = false;
  let stop = false;
  const loop = async (client: MsgTransClient) => {
    while (!stop) {
      const t0 = performance.now();
      await firstValueFrom(client.send('echo', payload));
      if (measuring) {
        done++;
        if (latencies.length < 200_000) latencies.push(performance.now() - t0);
      }
    }
  };
  const loops = clients.flatMap((c) => Array.from({ length: inflight }, () => loop(c)));
  await new Promise((r) => setTimeout(r, 1000));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const elapsed = (performance.now() - t0) / 1000;
  measuring = false;
  stop = true;
  await Promise.all(loops);
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  send({ type: 'result', rate: done / elapsed, p50: q(0.5), p99: q(0.99) });
  for (const c of clients) c.close();
  process.exit(0);
}

/** cluster instance with the Redis adapter, single process: pushes on request. */
async function instance(redisUrl: string, prefix: string): Promise<void> {
  const adapter = new MsgTransRedisAdapter({ url: redisUrl, keyPrefix: prefix, heartbeatInterval: 500 });
  const server = await serve({ listen: 'tcp://127.0.0.1:0', adapter });
  process.on('message', async (m: { op: string; args: any[] }) => {
    if (m.op === 'join') send({ type: 'joined', ok: server.sessions.join(m.args[0], m.args[1]) });
    if (m.op === 'peers') send({ type: 'peers', peers: adapter.peers() });
    if (m.op === 'push') {
      const [room, count, every] = m.args as [string, number, number];
      for (let i = 0; i < count; i++) {
        // wall-clock ms with sub-ms precision: the processes share the host clock
        server.sessions.emitToRoom(room, 'tick', { i, hr: performance.timeOrigin + performance.now() });
        await new Promise((r) => setTimeout(r, every));
      }
      send({ type: 'pushed' });
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', url: server.addresses()[0].url });
}

// ---------------------------------------------------------------------------
// driver
// ---------------------------------------------------------------------------

async function throughput(workers: number, reps: number): Promise<{ rate: number; p50: number; p99: number }[]> {
  const results = [];
  for (let rep = 0; rep < reps; rep++) {
    const port = await freePort();
    const server = fork(SELF, ['primary', String(workers), String(port)]);
    await once(server, 'ready');
    const client = fork(SELF, [
      'load',
      `tcp://127.0.0.1:${port}`,
      String(arg('connections', 8)),
      String(arg('inflight', 50)),
      String(arg('seconds', 8)),
    ]);
    results.push(await once<{ rate: number; p50: number; p99: number }>(client, 'result'));
    server.disconnect();
    await new Promise((r) => server.once('exit', r));
  }
  return results;
}

async function crossInstance(): Promise<void> {
  const redis = await RedisServer.start();
  const prefix = `bench-${process.pid}`;
  const [a, b] = [fork(SELF, ['instance', redis.url, prefix]), fork(SELF, ['instance', redis.url, prefix])];
  try {
    const [ua, ub] = await Promise.all([once<{ url: string }>(a, 'ready'), once<{ url: string }>(b, 'ready')]);
    const member = async (url: string) => {
      const client = new MsgTransClient({ url });
      const got: { i: number; hr: number; lat: number; arrived: number }[] = [];
      client.incoming<{ i: number; hr: number }>('tick').subscribe((v) => got.push({ ...v, lat: performance.timeOrigin + performance.now() - v.hr, arrived: Date.now() }));
      const id = await firstValueFrom(client.send<string>('whoami', {}));
      return { client, got, id };
    };
    const local = await member(ua.url);
    const remote = await member(ub.url);
    for (;;) {
      a.send({ op: 'peers' });
      if ((await once<{ peers: string[] }>(a, 'peers')).peers.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const m of [local, remote]) {
      a.send({ op: 'join', args: [m.id, 'feed'] });
      await once(a, 'joined');
    }
    await new Promise((r) => setTimeout(r, 500));
    const count = 1000;
    a.send({ op: 'push', args: ['feed', count, 5] });
    await once(a, 'pushed');
    await new Promise((r) => setTimeout(r, 500));
    const stats = (xs: number[]) => {
      const s = [...xs].sort((x, y) => x - y);
      return `p50 ${s[Math.floor(s.length / 2)].toFixed(2)} ms, p99 ${s[Math.floor(s.length * 0.99)].toFixed(2)} ms (${s.length} of ${count})`;
    };
    console.log(`push latency, same instance (local delivery): ${stats(local.got.map((g) => g.lat))}`);
    console.log(`push latency, across instances (via Redis):  ${stats(remote.got.map((g) => g.lat))}`);

    // recovery: Redis killed for 2 s while A pushes every 20 ms
    const before = remote.got.length;
    a.send({ op: 'push', args: ['feed', 400, 20] });
    await new Promise((r) => setTimeout(r, 1000));
    await redis.kill();
    await new Promise((r) => setTimeout(r, 2000));
    await redis.start();
    const restartedAt = Date.now();
    const gotAtRestart = remote.got.length;
    while (remote.got.length === gotAtRestart && Date.now() - restartedAt < 30_000) await new Promise((r) => setTimeout(r, 5));
    const resumed = remote.got[gotAtRestart]?.arrived;
    await once(a, 'pushed');
    console.log(
      `Redis restart: cross-instance pushes resumed ${resumed ? resumed - restartedAt : 'never (30 s)'} ms after redis-server was ready again; ` +
        `lost while down: ${400 - (remote.got.length - before)} of 400 cross-instance pushes (at most once); local member got ${local.got.length - count} of 400`,
    );
    local.client.close();
    remote.client.close();
  } finally {
    a.kill('SIGKILL');
    b.kill('SIGKILL');
    await redis.stop();
  }
}

async function driver(): Promise<void> {
  Logger.overrideLogger(false);
  const reps = arg('reps', 3);
  console.log(`node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model}), load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(
    `throughput: ${arg('connections', 8)} tcp connections x ${arg('inflight', 50)} in flight, ${arg('seconds', 8)} s per run, ${reps} runs, load generator in its own process`,
  );
  // interleaved (1, 2, 1, 2, …) so that load from elsewhere on the host hits both alike
  const runs: Record<number, { rate: number; p50: number; p99: number }[]> = { 1: [], 2: [] };
  for (let rep = 0; rep < reps; rep++) for (const workers of [1, 2]) runs[workers].push(...(await throughput(workers, 1)));
  for (const workers of [1, 2]) {
    const rates = runs[workers].map((r) => Math.round(r.rate));
    const sorted = [...runs[workers]].sort((x, y) => x.rate - y.rate);
    const median = sorted[Math.floor(sorted.length / 2)];
    console.log(
      `  ${workers} worker${workers > 1 ? 's' : ' '}: median ${Math.round(median.rate)} msg/s (p50 ${median.p50.toFixed(2)} ms, p99 ${median.p99.toFixed(2)} ms); runs ${rates.join(' / ')}`,
    );
  }
  if (!process.argv.includes('--skip-redis')) await crossInstance();
}

const role = process.argv[2];
if (role === 'primary') await primary(Number(process.argv[3]), Number(process.argv[4]));
else if (role === 'worker') {
  Logger.overrideLogger(false);
  await worker(Number(process.argv[3]));
} else if (role === 'load') await load(process.argv[3], Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6]));
else if (role === 'instance') {
  Logger.overrideLogger(false);
  await instance(process.argv[3], process.argv[4]);
} else await driver();
