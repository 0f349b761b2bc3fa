/**
 * Idle connections at scale (run by `npm run bench` as the `idle100k` measure,
 * or alone: `node dist/bench/idle-scale.js [--count=N] [--variants=mt-tcp,mt-ws]
 * [--clients=P] [--snapshot-dir=DIR]`).
 *
 * One server (bench/server.js, run with --expose-gc) is asked to hold `count`
 * idle connections opened by several bench/idle-client.js processes at once,
 * each from source addresses of its own (127.0.<block>.2, .3, …: all of
 * 127.0.0.0/8 is loopback on Linux), so that neither one process's file
 * descriptors nor one address's ephemeral ports are the limit. Reported: how
 * many the server held, the time from the first connect until the server
 * counted them all, its RSS and heap growth per connection after GC, and the
 * p50/p99 of sequential requests from a further client connection while it
 * holds them.
 *
 * Each process's open-file limit is raised as far as its hard limit allows
 * (`ulimit -n`; raising the hard limit itself needs CAP_SYS_RESOURCE). When
 * the server's limit is below `count`, it holds as many as its limit allows
 * and `limitedBy` says so. No sysctl is changed: the ephemeral port range is
 * per source address, and fs.file-max / fs.nr_open are checked, not raised.
 *
 * With `snapshotDir`, V8 heap snapshots are written before and after the
 * connections are opened and their difference is printed by kind of object
 * (bench/heap-summary.ts); writing a snapshot grows the RSS, so RSS figures
 * of such a run are not comparable.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevCertificates } from '../sample/dev-certs.js';
import { BenchChild, launch } from './bench-child.js';
import { VARIANT_LABEL, isVariant, sleep, type BenchCerts, type Variant } from './common.js';
import { formatHeapGrowth, heapCensus, heapGrowth } from './heap-summary.js';

export interface IdleScaleOptions {
  /** Of nest-tcp, mt-tcp, mt-ws (raw sockets for TCP, `ws` clients for WS). */
  variants: Variant[];
  /** Connections asked for per variant. */
  count: number;
  certs: BenchCerts;
  /** Client processes (default 4; more when their fd limits need it). */
  clients?: number;
  /**
   * Connects outstanding in all client processes together (default 256): below
   * the listen backlog (511), so that a server slower to accept than the
   * clients connect does not overflow its accept queue (a handshake completed
   * on an overflowing queue is dropped by the server while the client, which
   * never sends, takes it as open).
   */
  concurrency?: number;
  /** Duration of the sequential-request probe (default 2000 ms, after 300 ms of warm-up). */
  probeMs?: number;
  /** Writes heap snapshots there and prints their difference. */
  snapshotDir?: string;
  log(message: string): void;
}

export interface IdleScaleResult {
  variant: Variant;
  requested: number;
  held: number;
  /** Why fewer than `requested` were asked for (a file-descriptor limit). */
  limitedBy?: string;
  failed: number;
  firstError?: string;
  /** From the first connect until the server counted every connection held. */
  acceptSeconds: number;
  /** Server growth per connection after GC, KiB. */
  rssKiB: number;
  /** Live objects (heapUsed). */
  heapKiB: number;
  /** Heap pages V8 holds (heapTotal): RSS minus this is memory outside the JS heap. */
  heapTotalKiB: number;
  externalKiB: number;
  probe?: { p50: number; p99: number; completed: number };
}

/** Descriptors a process keeps for itself (stdio, IPC, epoll, libuv, the listener). */
const FD_HEADROOM = 100;

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Ports the kernel hands out per source address (net.ipv4.ip_local_port_range), 28,232 by default. */
function ephemeralPorts(): number {
  const [low, high] = (readProc('/proc/sys/net/ipv4/ip_local_port_range') ?? '32768 60999').split(/\s+/).map(Number);
  return high - low + 1;
}

/** The system limits that bound the run, for the log. */
export function systemLimits(): string {
  return [
    `fs.nr_open ${readProc('/proc/sys/fs/nr_open') ?? '?'}`,
    `fs.file-max ${readProc('/proc/sys/fs/file-max') ?? '?'}`,
    `ip_local_port_range ${readProc('/proc/sys/net/ipv4/ip_local_port_range')?.replace(/\s+/, '–') ?? '?'}`,
  ].join(', ');
}

interface Memory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  connections: number;
}

async function memory(server: BenchChild): Promise<Memory> {
  const reply = await server.call('mem', { gc: true }, 60_000);
  return { ...(reply.mem as Omit<Memory, 'connections'>), connections: reply.connections as number };
}

async function runOne(variant: Variant, block: number, clients: BenchChild[], clientLimit: number, options: IdleScaleOptions): Promise<IdleScaleResult> {
  const { log, certs } = options;
  const label = VARIANT_LABEL[variant];
  const server = launch('server.js', [variant], { raiseFdLimit: options.count + 2 * FD_HEADROOM, execArgv: ['--expose-gc'] });
  let probe: BenchChild | null = null;
  try {
    const ready = await server.call('init', { certs, maxConnections: options.count + 1000 }, 30_000);
    const serverLimit = (ready.fdLimit as number | null) ?? Infinity;
    let count = options.count;
    let limitedBy: string | undefined;
    if (serverLimit - FD_HEADROOM < count) {
      count = serverLimit - FD_HEADROOM;
      limitedBy = `the server's open-file limit is ${serverLimit} (its hard limit, \`ulimit -Hn\`; raising it needs CAP_SYS_RESOURCE)`;
    }
    const perClient = clientLimit - FD_HEADROOM;
    if (perClient * clients.length < count) {
      count = perClient * clients.length;
      limitedBy = `${clients.length} client processes with ${clientLimit} descriptors each`;
    }
    if (limitedBy) log(`idle at scale ${label}: ${count.toLocaleString('en-US')} of ${options.count.toLocaleString('en-US')} connections: ${limitedBy}`);
    // source addresses: 80% of one address's ports at most, at least one address per client process
    const addressesPerClient = Math.max(1, Math.ceil(count / clients.length / (0.8 * ephemeralPorts())));
    const shares = clients.map((_, i) => Math.floor(count / clients.length) + (i < count % clients.length ? 1 : 0));

    const before = await memory(server);
    if (options.snapshotDir) await server.call('snapshot', { file: join(options.snapshotDir, `${variant}-before.heapsnapshot`) }, 300_000);
    const start = Date.now();
    const opened = await Promise.all(
      clients.map((client, i) =>
        client.call(
          'open',
          {
            variant,
            port: ready.port,
            url: ready.url,
            count: shares[i],
            concurrency: Math.ceil((options.concurrency ?? 256) / clients.length),
            localAddresses: Array.from({ length: addressesPerClient }, (_, k) => `127.0.${block}.${2 + i * addressesPerClient + k}`),
          },
          600_000,
        ),
      ),
    );
    const held = opened.reduce((sum, o) => sum + (o.held as number), 0);
    const failed = opened.reduce((sum, o) => sum + (o.failed as number), 0);
    const firstError = opened.find((o) => o.firstError)?.firstError as string | undefined;
    if (failed > 0) log(`idle at scale ${label}: ${failed} connects failed (${firstError})`);
    // until the server has counted every one the clients hold
    let seen = 0;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      seen = (await server.call('mem')).connections as number;
      if (seen >= held) break;
      await sleep(20);
    }
    const acceptSeconds = (Date.now() - start) / 1000;
    if (seen < held) log(`idle at scale ${label}: the clients hold ${held} connections, the server counted ${seen} after ${acceptSeconds.toFixed(0)} s`);
    await sleep(300);
    const after = await memory(server);
    const serverHeld = Math.min(held, after.connections);
    const per = Math.max(1, serverHeld) * 1024;
    const result: IdleScaleResult = {
      variant,
      requested: options.count,
      held: serverHeld,
      limitedBy,
      failed,
      firstError,
      acceptSeconds,
      rssKiB: (after.rss - before.rss) / per,
      heapKiB: (after.heapUsed - before.heapUsed) / per,
      heapTotalKiB: (after.heapTotal - before.heapTotal) / per,
      externalKiB: (after.external - before.external) / per,
    };
    log(
      `idle at scale ${label}: ${serverHeld.toLocaleString('en-US')} held (${clients.length} client processes, ${clients.length * addressesPerClient} source addresses), ` +
        `all accepted in ${acceptSeconds.toFixed(1)} s; after GC, per connection: RSS ${result.rssKiB.toFixed(2)} KiB, heap used ${result.heapKiB.toFixed(2)} KiB ` +
        `(heap total ${result.heapTotalKiB.toFixed(2)} KiB, so ${(result.rssKiB - result.heapTotalKiB).toFixed(2)} KiB of RSS outside the JS heap), ` +
        `external ${result.externalKiB.toFixed(2)} KiB (RSS ${(after.rss / 2 ** 20).toFixed(0)} MiB in all)`,
    );
    if (options.snapshotDir) {
      const beforeFile = join(options.snapshotDir, `${variant}-before.heapsnapshot`);
      const afterFile = (await server.call('snapshot', { file: join(options.snapshotDir, `${variant}-after.heapsnapshot`) }, 300_000)).file as string;
      log(`heap growth per connection, ${label} (self sizes, from ${beforeFile} to ${afterFile}):\n${formatHeapGrowth(heapGrowth(heapCensus(beforeFile), heapCensus(afterFile), Math.max(1, serverHeld), 30))}`);
    }
    // a further connection, not counted above: sequential requests while the server holds the rest
    probe = launch('client.js', [variant]);
    await probe.call('init', { port: ready.port, url: ready.url, certs }, 30_000);
    const r = await probe.call('rr', { inflight: 1, warmupMs: 300, durationMs: options.probeMs ?? 2000 }, 60_000);
    result.probe = { p50: r.p50 as number, p99: r.p99 as number, completed: r.completed as number };
    log(
      `idle at scale ${label}: while holding them, ${(r.completed as number).toLocaleString('en-US')} sequential requests: ` +
        `p50 ${(r.p50 as number).toFixed(3)} ms, p99 ${(r.p99 as number).toFixed(3)} ms`,
    );
    return result;
  } finally {
    await probe?.kill();
    // nothing to save from an idle server: no graceful shutdown of its sessions
    await server.kill();
    await Promise.all(clients.map((c) => c.call('close', {}, 60_000).catch(() => undefined)));
  }
}

export async function runIdleScale(options: IdleScaleOptions): Promise<IdleScaleResult[]> {
  const { log } = options;
  log(`idle at scale: ${options.count.toLocaleString('en-US')} connections per variant; ${systemLimits()}`);
  const want = options.clients ?? 4;
  const clients: BenchChild[] = [];
  const results: IdleScaleResult[] = [];
  try {
    const start = async (n: number) => {
      const more = Array.from({ length: n }, () => launch('idle-client.js', [], { raiseFdLimit: options.count + 2 * FD_HEADROOM }));
      clients.push(...more);
      const limits = await Promise.all(more.map((c) => c.call('limit', {}, 30_000)));
      return Math.min(...limits.map((l) => (l.fdLimit as number | null) ?? Infinity));
    };
    let clientLimit = await start(want);
    // enough processes for the descriptors (each holds one per connection), within reason
    const needed = Math.min(64, Math.ceil(options.count / Math.max(1, clientLimit - FD_HEADROOM)));
    if (needed > clients.length) clientLimit = Math.min(clientLimit, await start(needed - clients.length));
    for (const [i, variant] of options.variants.entries()) {
      try {
        // a block of source addresses per variant, so no port of the previous run's TIME_WAIT sockets is reused
        results.push(await runOne(variant, 1 + i, clients, clientLimit, options));
      } catch (err) {
        log(`idle at scale ${VARIANT_LABEL[variant]}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
  } finally {
    await Promise.all(clients.map((c) => c.stop(5000)));
  }
  return results;
}

// run alone: node dist/bench/idle-scale.js [--count=N] [--variants=a,b] [--clients=P] [--snapshot-dir=DIR]
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const dev = await createDevCertificates();
  const results = await runIdleScale({
    variants: (arg('variants') ?? 'mt-tcp,mt-ws').split(',').filter(isVariant),
    count: Number(arg('count') ?? 100_000),
    clients: arg('clients') === undefined ? undefined : Number(arg('clients')),
    snapshotDir: arg('snapshot-dir'),
    certs: { ca: dev.ca, serverKey: dev.serverKey, serverCert: dev.serverCert },
    log: (m) => process.stderr.write(`[idle-scale ${new Date().toISOString().slice(11, 19)}] ${m}\n`),
  });
  console.log(JSON.stringify(results, null, 2));
  process.exit(0);
}
