/**
 * QUIC under packet loss, against TCP (run by `npm run bench`, or alone:
 * `node dist/bench/quic-loss.js [--quick]`).
 *
 * Creates a network namespace of its own, brings up its loopback, and drops
 * a random share of every packet sent in it with nftables
 * (`numgen random mod 100 < N drop` on the output hook): 0, 1 and 5 %.
 * Server and load client (bench/server.js, bench/client.js) run inside it
 * and talk over 127.0.0.1 there; nothing outside the namespace is touched,
 * and the namespace is deleted at the end. Without the permission to create
 * namespaces, or without `nft`, the rows are skipped with the reason.
 *
 * TCP's minimum retransmission timeout is 200 ms; QUIC's loss recovery
 * works from measured round trips, so on a lossy path its tail latency is
 * what this shows.
 */
import { execFileSync, spawn } from 'node:child_process';
import { BenchChild } from './bench-child.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevCertificates } from '../sample/dev-certs.js';
import { VARIANT_LABEL, median, type BenchCerts, type Variant } from './common.js';
import { MSGTRANS_DEFAULTS } from '../lib/constants.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const LOSSES = [0, 1, 5];
const VARIANTS: Variant[] = ['nest-tcp', 'mt-tcp', 'mt-quic'];

export interface LossOptions {
  quick: boolean;
  certs: BenchCerts;
  log(message: string): void;
}

interface Cell {
  rate: number;
  p50: number;
  p99: number;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Starts `script` (in dist/bench) inside the namespace; `ip netns exec` execs node, so the IPC descriptor is inherited as is. */
function startInNamespace(ns: string, script: string, variant: Variant): BenchChild {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, join(HERE, script), variant], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new BenchChild(`${script} ${variant}`, proc);
}

/** Creates the namespace, or says why it cannot. */
function createNamespace(name: string): string | undefined {
  try {
    run('nft', ['--version']);
  } catch {
    return '`nft` (nftables) is not installed';
  }
  try {
    run('ip', ['netns', 'add', name]);
  } catch (err) {
    return `cannot create a network namespace (${((err as { stderr?: string }).stderr ?? String(err)).trim()}); run as root or with CAP_NET_ADMIN`;
  }
  try {
    run('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
    run('ip', ['netns', 'exec', name, 'nft', 'add', 'table', 'inet', 'msgtrans_loss']);
    run('ip', ['netns', 'exec', name, 'nft', 'add', 'chain', 'inet', 'msgtrans_loss', 'out', '{ type filter hook output priority 0; policy accept; }']);
    return undefined;
  } catch (err) {
    deleteNamespace(name);
    return `cannot set up nftables in the namespace (${((err as { stderr?: string }).stderr ?? String(err)).trim()})`;
  }
}

function deleteNamespace(name: string): void {
  try {
    run('ip', ['netns', 'del', name]);
  } catch {
    // already gone
  }
}

/** Every packet sent in the namespace (both directions use lo's output) is dropped with probability `percent` %. */
function setLoss(ns: string, percent: number): void {
  run('ip', ['netns', 'exec', ns, 'nft', 'flush', 'chain', 'inet', 'msgtrans_loss', 'out']);
  if (percent > 0) run('ip', ['netns', 'exec', ns, 'nft', 'add', 'rule', 'inet', 'msgtrans_loss', 'out', 'numgen', 'random', 'mod', '100', '<', String(percent), 'drop']);
}

async function measure(ns: string, variant: Variant, options: LossOptions, loss: number): Promise<Record<string, Cell>> {
  const server = startInNamespace(ns, 'server.js', variant);
  const client = startInNamespace(ns, 'client.js', variant);
  const durationMs = options.quick ? 1000 : 4000;
  const warmupMs = options.quick ? 200 : 500;
  const bound = durationMs + warmupMs + 60_000;
  try {
    // connect and check payloads without loss: the rows measure steady state
    setLoss(ns, 0);
    // QUIC at the datagram size of a real path (the namespace's loopback would allow 64 KiB ones): loss is about real paths
    const quicDatagram = MSGTRANS_DEFAULTS.quic.maxDatagramSize;
    const ready = await server.call('init', { certs: options.certs, quicDatagram }, 30_000);
    await client.call('init', { port: ready.port, url: ready.url, certs: options.certs, quicDatagram }, 60_000);
    setLoss(ns, loss);
    const cells: Record<string, Cell> = {};
    for (const [key, inflight, payload] of [
      ['rr1', 1, 'small'],
      ['rr100', 100, 'small'],
      ['big', 4, 'big'],
    ] as const) {
      const r = await client.call('rr', { inflight, warmupMs, durationMs, payload }, bound);
      cells[key] = { rate: r.rate as number, p50: r.p50 as number, p99: r.p99 as number };
    }
    return cells;
  } finally {
    setLoss(ns, 0);
    await Promise.all([server.kill(), client.kill()]);
  }
}

const fmtMs = (ms: number) => (Number.isFinite(ms) ? (ms >= 10 ? ms.toFixed(0) : ms.toFixed(2)) + ' ms' : '–');
const fmtRate = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');

/**
 * Measures every variant at every loss level; returns a markdown section
 * (heading, method, table), or the section saying why the rows were skipped.
 */
export async function runLossBench(options: LossOptions): Promise<string[]> {
  const ns = `msgtrans-loss-${process.pid}`;
  const why = createNamespace(ns);
  const head = ['## Under packet loss', ''];
  if (why !== undefined) {
    options.log(`packet-loss rows skipped: ${why}`);
    return [...head, `Skipped: ${why}.`, ''];
  }
  const reps = options.quick ? 1 : 3;
  const results = new Map<string, Cell[]>();
  try {
    for (const loss of LOSSES) {
      for (let rep = 0; rep < reps; rep++) {
        // rotate the order so that no variant always runs first
        const order = VARIANTS.map((_, i) => VARIANTS[(i + rep) % VARIANTS.length]);
        for (const variant of order) {
          try {
            const cells = await measure(ns, variant, options, loss);
            for (const [key, cell] of Object.entries(cells)) {
              const list = results.get(`${loss}|${variant}|${key}`) ?? [];
              list.push(cell);
              results.set(`${loss}|${variant}|${key}`, list);
            }
            options.log(
              `loss ${loss}% ${VARIANT_LABEL[variant]}: @1 p50 ${fmtMs(cells.rr1.p50)} p99 ${fmtMs(cells.rr1.p99)}; @100 ${fmtRate(cells.rr100.rate)} msg/s p99 ${fmtMs(cells.rr100.p99)}; 1 MiB ${(cells.big.rate * 1.048576).toFixed(1)} MB/s`,
            );
          } catch (err) {
            options.log(`loss ${loss}% ${VARIANT_LABEL[variant]}: failed: ${(err as Error).message}`);
          }
        }
      }
    }
  } finally {
    deleteNamespace(ns);
  }
  const pick = (loss: number, variant: Variant, key: string, field: keyof Cell) =>
    median((results.get(`${loss}|${variant}|${key}`) ?? []).map((c) => c[field]));
  const rows = [
    '| loss | variant | @1 p50 | @1 p99 | @100 msg/s | @100 p99 | 1 MiB string @4, MB/s |',
    '|---:|---|---:|---:|---:|---:|---:|',
  ];
  for (const loss of LOSSES) {
    for (const variant of VARIANTS) {
      const mb = pick(loss, variant, 'big', 'rate') * 1.048576;
      rows.push(
        `| ${loss}% | ${VARIANT_LABEL[variant]} | ${fmtMs(pick(loss, variant, 'rr1', 'p50'))} | ${fmtMs(pick(loss, variant, 'rr1', 'p99'))} | ${fmtRate(pick(loss, variant, 'rr100', 'rate'))} | ${fmtMs(pick(loss, variant, 'rr100', 'p99'))} | ${Number.isFinite(mb) ? mb.toFixed(1) : '–'} |`,
      );
    }
  }
  return [
    ...head,
    `In a network namespace of the benchmark's own, over its loopback, nftables drops each packet with the given probability (\`numgen random mod 100 < N drop\` on the output hook, so both directions). Connections are set up without loss; then closed loops of ${options.quick ? 1 : 4} s (after a warm-up) at 1 and 100 requests in flight (64-character strings) and at 4 in flight with 1 MiB strings (JSON on every variant). Median of ${reps} run(s); QUIC at ${MSGTRANS_DEFAULTS.quic.maxDatagramSize}-byte datagrams (maxDatagramSize, its size toward other hosts; on one host it would use ${MSGTRANS_DEFAULTS.quic.loopbackDatagramSize}). Loopback MTU is 64 KiB, so TCP segments are large and few: a lost one costs TCP at least its 200 ms minimum retransmission timeout.`,
    '',
    ...rows,
    '',
  ];
}

// run alone: node dist/bench/quic-loss.js [--quick]
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dev = await createDevCertificates();
  const lines = await runLossBench({
    quick: process.argv.includes('--quick'),
    certs: { ca: dev.ca, serverKey: dev.serverKey, serverCert: dev.serverCert },
    log: (m) => process.stderr.write(`[quic-loss] ${m}\n`),
  });
  console.log(lines.join('\n'));
  process.exit(0);
}
