/**
 * Benchmark orchestrator: `npm run bench` (full, writes bench/RESULTS.md) or
 * `npm run bench:quick` (under a minute, prints only).
 *
 * Every server and every load generator is its own process (server.js,
 * client.js, idle-client.js), talking to this one over IPC; this process
 * only sequences the runs and does no work while they measure. Variants are
 * interleaved (A B C …, then B C … A, rotated each run), each cell starts once
 * the benchmark processes are idle, and each figure is the median of its runs.
 *
 * Options:
 *   --quick                 fewer, shorter runs; fewer idle connections
 *   --reps=N                runs per cell (default 5, idle cells 3; quick 1)
 *   --only=a,b              variants (nest-tcp, mt-tcp, mt-ws, mt-quic, raw)
 *   --measures=a,b          any of rr, events, big, idle, idle100k, loss (default: all;
 *                           idle100k: bench/idle-scale.ts; loss: bench/quic-loss.ts)
 *   --skip-idle             no idle-connection measurement (neither idle nor idle100k)
 *   --no-write              do not write bench/RESULTS.md
 *   --profile=VARIANT       instead of the suite: run one variant's server (or, with
 *                           --profile-side=client|both, its client) under `node --cpu-prof`
 *                           running --profile-measure=rr|events|big|bigbuf (rr) at
 *                           --inflight=N (100) for --seconds=S (10), write the
 *                           profile under --profile-dir (/tmp/msgtrans-prof) and summarise it
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevCertificates } from '../sample/dev-certs.js';
import { MSGTRANS_DEFAULTS } from '../lib/constants.js';
import {
  VARIANTS,
  VARIANT_LABEL,
  isVariant,
  median,
  sleep,
  type BenchCerts,
  type IpcReply,
  type Variant,
} from './common.js';
import { summarizeProfile } from './profile-summary.js';
import { runLossBench } from './quic-loss.js';
import { BenchChild as Child, killChildren, launch } from './bench-child.js';
import { runIdleScale } from './idle-scale.js';

const HERE = dirname(fileURLToPath(import.meta.url));
// dist/bench → the source folder bench/ (for RESULTS.md)
const SOURCE_DIR = join(HERE, '..', '..', 'bench');

// ---------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
function option(name: string): string | undefined {
  const hit = argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (hit === undefined) return undefined;
  const eq = hit.indexOf('=');
  return eq < 0 ? '' : hit.slice(eq + 1);
}
const known = ['quick', 'reps', 'only', 'measures', 'skip-idle', 'no-write', 'profile', 'profile-side', 'profile-measure', 'inflight', 'seconds', 'profile-dir'];
for (const a of argv) {
  const name = a.replace(/^--/, '').split('=')[0];
  if (!a.startsWith('--') || !known.includes(name)) {
    console.error(`unknown argument ${a} (known: ${known.map((k) => '--' + k).join(' ')})`);
    process.exit(2);
  }
}

const QUICK = option('quick') !== undefined;
// throughput cells are the noisy ones: 5 runs; idle memory is steady (±5%): 3
const REPS = Number(option('reps') ?? (QUICK ? 1 : 5));
const IDLE_REPS = Number(option('reps') ?? (QUICK ? 1 : 3));
const ONLY = option('only');
const SELECTED: Variant[] = ONLY ? ONLY.split(',').filter(isVariant) : [...VARIANTS];
const MEASURES = new Set((option('measures') || 'rr,events,big,idle,idle100k,loss').split(','));
if (option('skip-idle') !== undefined) {
  MEASURES.delete('idle');
  MEASURES.delete('idle100k');
}
const WRITE_RESULTS = !QUICK && option('no-write') === undefined && !ONLY && option('measures') === undefined && MEASURES.has('idle');

const CONFIG = QUICK
  ? {
      warmAllMs: 250,
      rrWarmupMs: 150,
      rrDurationMs: 300,
      quiesceMaxMs: 1000,
      events: 20_000,
      eventsWarmup: 2_000,
      eventsTimeoutMs: 10_000,
      bigInflight: 4,
      bigWarmupMs: 100,
      bigDurationMs: 300,
      idle: 2_000,
      idleQuic: 500,
      idleScale: 10_000,
      idleScaleProbeMs: 1_000,
      watchdogMs: 110_000,
    }
  : {
      warmAllMs: 1_500,
      quiesceMaxMs: 3000,
      rrWarmupMs: 500,
      rrDurationMs: 2_000,
      events: 100_000,
      eventsWarmup: 10_000,
      eventsTimeoutMs: 30_000,
      bigInflight: 4,
      bigWarmupMs: 500,
      bigDurationMs: 2_000,
      idle: 10_000,
      idleQuic: 5_000,
      idleScale: 100_000,
      idleScaleProbeMs: 2_000,
      watchdogMs: 25 * 60_000,
    };
const INFLIGHTS = [1, 100, 1000];


// ---------------------------------------------------------------------------
// Results

/** Cell values, one per run: `${measure}|${variant}` → numbers. */
const cells = new Map<string, number[]>();
const notes = new Map<string, string>();

function record(measure: string, variant: Variant, value: number): void {
  const key = `${measure}|${variant}`;
  const list = cells.get(key) ?? [];
  list.push(value);
  cells.set(key, list);
}

function value(measure: string, variant: Variant): number {
  return median(cells.get(`${measure}|${variant}`) ?? []);
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---------------------------------------------------------------------------
// Throughput and latency


/** CPU time (clock ticks) a process has used, from /proc; 0 where there is no /proc. */
function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return 0;
  }
}

/**
 * Waits (at most CONFIG.quiesceMaxMs) until the benchmark's own processes are idle
 * (under ~2 ticks of CPU in 200 ms together), so that work left over from
 * one cell (GC, a QUIC stack finishing its sends) does not slow the next.
 * Returns true if they were still busy when it gave up.
 */
async function quiesce(pids: number[]): Promise<boolean> {
  const until = Date.now() + CONFIG.quiesceMaxMs;
  let before = pids.reduce((sum, pid) => sum + cpuTicks(pid), 0);
  for (;;) {
    await sleep(200);
    const now = pids.reduce((sum, pid) => sum + cpuTicks(pid), 0);
    if (now - before <= 2) return false;
    if (Date.now() >= until) return true;
    before = now;
  }
}

interface Pair {
  variant: Variant;
  server: Child;
  client: Child;
}

// QUIC is measured at the datagram size a real network path gets (maxDatagramSize, 1350),
// not at the larger one the library picks when both ends are on one host
// (loopbackDatagramSize): the QUIC targets are about the former. The 1 MiB
// figure at the loopback default is measured once more beside it.
const QUIC_DATAGRAM = MSGTRANS_DEFAULTS.quic.maxDatagramSize;

async function startPair(
  variant: Variant,
  certs: BenchCerts,
  serverExecArgv: string[] = [],
  clientExecArgv: string[] = [],
  quicDatagram: number | undefined = QUIC_DATAGRAM,
): Promise<Pair> {
  const server = launch('server.js', [variant], { execArgv: serverExecArgv });
  const client = launch('client.js', [variant], { execArgv: clientExecArgv });
  try {
    const ready = await server.call('init', { certs, quicDatagram }, 20_000);
    await client.call('init', { port: ready.port, url: ready.url, certs, quicDatagram }, 20_000);
    return { variant, server, client };
  } catch (err) {
    await Promise.all([server.stop(500), client.stop(500)]);
    throw err;
  }
}

async function runThroughput(certs: BenchCerts): Promise<void> {
  const started = await Promise.all(
    SELECTED.map((variant) =>
      startPair(variant, certs).then(
        (pair) => pair,
        (err: Error) => {
          log(`${VARIANT_LABEL[variant]} failed to start: ${err.message}`);
          return null;
        },
      ),
    ),
  );
  const pairs = started.filter((p): p is Pair => p !== null);
  log(`started: ${pairs.map((p) => VARIANT_LABEL[p.variant]).join(', ')}; warming up`);
  // Warm-up of every code path (all pairs at once: only the JIT's state matters here),
  // so that the first measured cell does not run on cold code.
  await Promise.all(
    pairs.map(async ({ variant, client }) => {
      try {
        for (const inflight of [100, 1]) {
          await client.call('rr', { inflight, warmupMs: 0, durationMs: CONFIG.warmAllMs }, CONFIG.warmAllMs + 30_000);
        }
        await client.call('events', { count: CONFIG.eventsWarmup, timeoutMs: CONFIG.eventsTimeoutMs }, CONFIG.eventsTimeoutMs + 20_000);
        for (const payload of QUICK ? ['big'] : ['big', 'bigbuf']) {
          await client.call('rr', { inflight: 2, warmupMs: 0, durationMs: CONFIG.warmAllMs / 2, payload }, CONFIG.warmAllMs + 60_000);
        }
      } catch (err) {
        log(`warm-up ${VARIANT_LABEL[variant]}: ${(err as Error).message.split('\n')[0]}`);
      }
    }),
  );
  const rrTimeout = CONFIG.rrWarmupMs + CONFIG.rrDurationMs + 30_000;
  const pids = pairs.flatMap((p) => [p.server.proc.pid, p.client.proc.pid]).filter((pid): pid is number => pid !== undefined);
  const each = async (label: string, run: (pair: Pair) => Promise<void>) => {
    for (let rep = 1; rep <= REPS; rep++) {
      // interleaved, and rotated each run so that no variant always follows the same one
      const order = pairs.map((_, i) => pairs[(i + rep - 1) % pairs.length]);
      for (const pair of order) {
        try {
          const waitStart = Date.now();
          const busy = await quiesce(pids);
          if (busy) log(`${label}: benchmark processes still busy after ${CONFIG.quiesceMaxMs} ms, measuring anyway`);
          else if (Date.now() - waitStart > 1000) log(`${label}: waited ${Date.now() - waitStart} ms for the benchmark processes to go idle`);
          await run(pair);
        } catch (err) {
          log(`${label} ${VARIANT_LABEL[pair.variant]} run ${rep}: ${(err as Error).message.split('\n')[0]}`);
        }
      }
    }
  };
  for (const inflight of MEASURES.has('rr') ? INFLIGHTS : []) {
    await each(`req/resp @${inflight}`, async ({ variant, client }) => {
      const r = await client.call('rr', { inflight, warmupMs: CONFIG.rrWarmupMs, durationMs: CONFIG.rrDurationMs }, rrTimeout);
      if ((r.errors as number) > 0) log(`${VARIANT_LABEL[variant]} @${inflight}: ${r.errors} errors (${r.firstError})`);
      record(`rr${inflight}.rate`, variant, r.rate as number);
      record(`rr${inflight}.p50`, variant, r.p50 as number);
      record(`rr${inflight}.p99`, variant, r.p99 as number);
      log(
        `req/resp @${inflight} ${VARIANT_LABEL[variant]}: ${fmtInt(r.rate as number)} msg/s, p50 ${fmtMs(r.p50 as number)}, p99 ${fmtMs(r.p99 as number)}`,
      );
    });
  }
  if (MEASURES.has('events')) await each('events', async ({ variant, client }) => {
    await client.call('events', { count: CONFIG.eventsWarmup, timeoutMs: CONFIG.eventsTimeoutMs }, CONFIG.eventsTimeoutMs + 20_000);
    const r = await client.call('events', { count: CONFIG.events, timeoutMs: CONFIG.eventsTimeoutMs }, CONFIG.eventsTimeoutMs + 20_000);
    if (!r.complete) {
      log(`events ${VARIANT_LABEL[variant]}: only ${r.arrived} of ${CONFIG.events} arrived within ${CONFIG.eventsTimeoutMs} ms`);
      record('events.rate', variant, (r.arrived as number) / (r.seconds as number));
      notes.set(`events|${variant}`, 'incomplete');
      return;
    }
    record('events.rate', variant, r.rate as number);
    log(
      `events ${VARIANT_LABEL[variant]}: ${fmtInt(r.rate as number)} msg/s (${CONFIG.events} in ${(r.seconds as number).toFixed(2)} s, emitting took ${(r.sendSeconds as number).toFixed(2)} s)`,
    );
  });
  // the Buffer row is informational (no target): full runs only
  for (const payload of MEASURES.has('big') ? (QUICK ? (['big'] as const) : (['big', 'bigbuf'] as const)) : []) {
    await each(`1 MiB ${payload}`, async ({ variant, client }) => {
      const { mbps, p50 } = await bigEcho(client, payload);
      record(`${payload}.rate`, variant, mbps);
      record(`${payload}.p50`, variant, p50);
      log(
        `1 MiB ${payload === 'big' ? 'string' : 'Buffer'} @${CONFIG.bigInflight} ${VARIANT_LABEL[variant]}: ${mbps.toFixed(1)} MB/s, p50 ${fmtMs(p50)}`,
      );
    });
  }
  // nothing to save (no profile in a suite run): no graceful shutdown
  await Promise.all(pairs.flatMap((p) => [p.client.kill(), p.server.kill()]));
  if (MEASURES.has('big') && SELECTED.includes('mt-quic')) await runQuicLoopbackBig(certs);
}

/** One measured closed loop of 1 MiB echoes: MB/s of payload one way (10^6 bytes) and the p50. */
async function bigEcho(client: Child, payload: 'big' | 'bigbuf'): Promise<{ mbps: number; p50: number }> {
  const r = await client.call(
    'rr',
    { inflight: CONFIG.bigInflight, warmupMs: CONFIG.bigWarmupMs, durationMs: CONFIG.bigDurationMs, payload },
    CONFIG.bigWarmupMs + CONFIG.bigDurationMs + 60_000,
  );
  return { mbps: ((r.rate as number) * 1024 * 1024) / 1e6, p50: r.p50 as number };
}

/** 1 MiB strings over QUIC at the library's default for ends on one host (loopbackDatagramSize), after the interleaved cells. */
async function runQuicLoopbackBig(certs: BenchCerts): Promise<void> {
  let pair: Pair;
  try {
    pair = await startPair('mt-quic', certs, [], [], undefined);
  } catch (err) {
    log(`QUIC at the loopback datagram size failed to start: ${(err as Error).message}`);
    return;
  }
  try {
    await pair.client.call('rr', { inflight: 2, warmupMs: 0, durationMs: CONFIG.warmAllMs / 2, payload: 'big' }, CONFIG.warmAllMs + 60_000);
    for (let rep = 1; rep <= REPS; rep++) {
      const { mbps } = await bigEcho(pair.client, 'big');
      record('bigloop.rate', 'mt-quic', mbps);
      log(`1 MiB string @${CONFIG.bigInflight} QUIC at ${MSGTRANS_DEFAULTS.quic.loopbackDatagramSize}-byte datagrams: ${mbps.toFixed(1)} MB/s`);
    }
  } catch (err) {
    log(`QUIC at the loopback datagram size: ${(err as Error).message.split('\n')[0]}`);
  } finally {
    await Promise.all([pair.client.kill(), pair.server.kill()]);
  }
}

// ---------------------------------------------------------------------------
// Idle connections

async function runIdle(certs: BenchCerts): Promise<void> {
  const holder = launch('idle-client.js', [], { raiseFdLimit: true });
  const holderReady = holder.call('limit');
  for (let rep = 1; rep <= IDLE_REPS; rep++) {
    // fresh servers, booted together (booting is the slow part), measured one at a time
    const servers = SELECTED.map((variant) => {
      const server = launch('server.js', [variant], { raiseFdLimit: true, execArgv: ['--expose-gc'] });
      return { variant, server, ready: server.call('init', { certs }, 30_000) };
    });
    for (const { variant, server, ready: readyPromise } of servers) {
      const target = variant === 'mt-quic' ? CONFIG.idleQuic : CONFIG.idle;
      try {
        const ready = await readyPromise;
        const holderLimit = ((await holderReady).fdLimit as number | null) ?? Infinity;
        const serverLimit = (ready.fdLimit as number | null) ?? Infinity;
        // headroom for the process's own descriptors (and the UDP socket per QUIC client)
        const count = Math.max(0, Math.min(target, serverLimit - 200, (holderLimit - 200) / (variant === 'mt-quic' ? 2 : 1)));
        if (count < target) log(`idle ${VARIANT_LABEL[variant]}: fd limits allow ${count} of ${target} connections`);
        const before = await server.call('mem', { gc: true });
        const opened = await holder.call(
          'open',
          { variant, port: ready.port, url: ready.url, count, concurrency: variant === 'mt-quic' ? 16 : 200, certs },
          180_000,
        );
        const held = opened.held as number;
        if ((opened.failed as number) > 0) log(`idle ${VARIANT_LABEL[variant]}: ${opened.failed} failed (${opened.firstError})`);
        // wait until the server has accepted every one
        const deadline = Date.now() + 20_000;
        let seen = 0;
        while (Date.now() < deadline) {
          seen = (await server.call('mem')).connections as number;
          if (seen >= held) break;
          await sleep(100);
        }
        await sleep(300);
        const after = await server.call('mem', { gc: true });
        const serverHeld = Math.min(held, after.connections as number);
        const b = before.mem as { rss: number; heapUsed: number };
        const a = after.mem as { rss: number; heapUsed: number };
        const per = Math.max(1, serverHeld);
        record('idle.held', variant, serverHeld);
        record('idle.rss', variant, (a.rss - b.rss) / per / 1024);
        record('idle.heap', variant, (a.heapUsed - b.heapUsed) / per / 1024);
        log(
          `idle ${VARIANT_LABEL[variant]}: ${serverHeld} held (opened in ${(opened.seconds as number).toFixed(1)} s), ` +
            `RSS ${((a.rss - b.rss) / per / 1024).toFixed(2)} KiB/conn, heap ${((a.heapUsed - b.heapUsed) / per / 1024).toFixed(2)} KiB/conn`,
        );
      } catch (err) {
        log(`idle ${VARIANT_LABEL[variant]} run ${rep}: ${(err as Error).message.split('\n')[0]}`);
      } finally {
        await holder.call('close', {}, 30_000).catch(() => undefined);
        // nothing to save from an idle server: no graceful shutdown of 10,000 sessions
        await server.kill();
      }
    }
  }
  await holder.stop();
}

/** Why a variant held fewer connections at scale than asked for (a descriptor limit). */
const scaleLimits = new Map<Variant, string>();

/** Once, not repeated: one server per variant holding CONFIG.idleScale connections (bench/idle-scale.ts). */
async function runScale(certs: BenchCerts): Promise<void> {
  // Nest TCP for comparison in full runs only (--quick stays short)
  const variants = SELECTED.filter((v) => v === 'mt-tcp' || v === 'mt-ws' || (v === 'nest-tcp' && !QUICK));
  // the two targets first, Nest TCP (for comparison) last
  variants.sort((a, b) => Number(a === 'nest-tcp') - Number(b === 'nest-tcp'));
  if (variants.length === 0) return;
  const results = await runIdleScale({ variants, count: CONFIG.idleScale, certs, probeMs: CONFIG.idleScaleProbeMs, log });
  for (const r of results) {
    record('idle100k.held', r.variant, r.held);
    record('idle100k.accept', r.variant, r.acceptSeconds);
    record('idle100k.rss', r.variant, r.rssKiB);
    record('idle100k.heap', r.variant, r.heapKiB);
    if (r.probe) {
      record('idle100k.p50', r.variant, r.probe.p50);
      record('idle100k.p99', r.variant, r.probe.p99);
    }
    if (r.limitedBy) scaleLimits.set(r.variant, r.limitedBy);
  }
}

// ---------------------------------------------------------------------------
// Report

function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}
function fmtMs(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  return n >= 100 ? `${n.toFixed(0)} ms` : n >= 10 ? `${n.toFixed(1)} ms` : n >= 1 ? `${n.toFixed(2)} ms` : `${n.toFixed(3)} ms`;
}

interface Row {
  measure: string;
  label: string;
  format: (n: number) => string;
  /** Ratios make sense for this row. */
  ratios: boolean;
}

function rows(): Row[] {
  const list: Row[] = [];
  for (const n of INFLIGHTS) {
    list.push({ measure: `rr${n}.rate`, label: `req/resp @${n} in flight, msg/s`, format: (v) => `${fmtInt(v)} msg/s`, ratios: true });
    list.push({ measure: `rr${n}.p50`, label: `req/resp @${n} p50 (lower is better)`, format: fmtMs, ratios: true });
    list.push({ measure: `rr${n}.p99`, label: `req/resp @${n} p99 (lower is better)`, format: fmtMs, ratios: true });
  }
  list.push({ measure: 'events.rate', label: 'events (emit until all counted), msg/s', format: (v) => `${fmtInt(v)} msg/s`, ratios: true });
  for (const [payload, what] of [
    ['big', 'string'],
    ['bigbuf', 'Buffer'],
  ] as const) {
    list.push({
      measure: `${payload}.rate`,
      label: `1 MiB ${what} echo @${CONFIG.bigInflight} in flight, MB/s`,
      format: (v) => `${v.toFixed(1)} MB/s`,
      ratios: true,
    });
    list.push({ measure: `${payload}.p50`, label: `1 MiB ${what} echo p50 (lower is better)`, format: fmtMs, ratios: true });
  }
  list.push({
    measure: 'bigloop.rate',
    label: `1 MiB string echo, QUIC at ${fmtInt(MSGTRANS_DEFAULTS.quic.loopbackDatagramSize)}-byte datagrams (its default when both ends are on one host), MB/s`,
    format: (v) => `${v.toFixed(1)} MB/s`,
    ratios: false,
  });
  list.push({ measure: 'idle.held', label: 'idle connections held', format: fmtInt, ratios: false });
  list.push({ measure: 'idle.rss', label: 'idle RSS per connection (lower is better)', format: (v) => `${v.toFixed(2)} KiB`, ratios: true });
  list.push({ measure: 'idle.heap', label: 'idle heap per connection (lower is better)', format: (v) => `${v.toFixed(2)} KiB`, ratios: true });
  const asked = fmtInt(CONFIG.idleScale);
  list.push({ measure: 'idle100k.held', label: `idle at scale (${asked} asked): connections held`, format: fmtInt, ratios: false });
  list.push({ measure: 'idle100k.accept', label: 'idle at scale: seconds to accept them all', format: (v) => `${v.toFixed(1)} s`, ratios: false });
  list.push({ measure: 'idle100k.rss', label: 'idle at scale: RSS per connection (lower is better)', format: (v) => `${v.toFixed(2)} KiB`, ratios: true });
  list.push({ measure: 'idle100k.heap', label: 'idle at scale: heap per connection (lower is better)', format: (v) => `${v.toFixed(2)} KiB`, ratios: true });
  list.push({ measure: 'idle100k.p50', label: 'idle at scale: p50 of sequential requests meanwhile', format: fmtMs, ratios: false });
  list.push({ measure: 'idle100k.p99', label: 'idle at scale: p99 of sequential requests meanwhile', format: fmtMs, ratios: false });
  return list;
}

function ratio(v: number, ref: number): string {
  if (!Number.isFinite(v) || !Number.isFinite(ref) || ref === 0) return '–';
  return `${(v / ref).toFixed(2)}×`;
}

function spread(values: number[] | undefined): string {
  if (!values || values.length === 0) return '';
  if (values.length === 1) return 'n=1';
  const m = median(values);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return `n=${values.length}, ±${((50 * (hi - lo)) / Math.abs(m || 1)).toFixed(0)}%`;
}

function table(): string {
  const header = ['measure', 'variant', 'value', '×Nest TCP', '×raw', 'runs (spread)'];
  const body: string[][] = [];
  for (const row of rows()) {
    const nest = value(row.measure, 'nest-tcp');
    const raw = value(row.measure, 'raw');
    for (const variant of SELECTED) {
      const values = cells.get(`${row.measure}|${variant}`);
      if (!values) continue;
      const v = median(values);
      let text = row.format(v);
      if (row.measure.startsWith('idle') && variant === 'mt-quic') text += ` (at ${fmtInt(value('idle.held', 'mt-quic'))} conns)`;
      if (notes.has(`${row.measure.split('.')[0]}|${variant}`)) text += ` (${notes.get(`${row.measure.split('.')[0]}|${variant}`)})`;
      body.push([
        row.label,
        VARIANT_LABEL[variant],
        text,
        row.ratios ? ratio(v, nest) : '–',
        row.ratios ? ratio(v, raw) : '–',
        spread(values),
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cols: string[]) => `| ${cols.map((c, i) => (i >= 2 && i <= 4 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i >= 2 && i <= 4 ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), sep, ...body.map(line)].join('\n');
}

function targets(): string[] {
  const out: string[] = [];
  const check = (name: string, ok: boolean | undefined, detail: string) => {
    out.push(`${ok === undefined ? '[n/a]    ' : ok ? '[met]    ' : '[NOT met]'} ${name}: ${detail}`);
  };
  const have = (...vs: number[]) => vs.every((v) => Number.isFinite(v));
  const times = (a: number, b: number) => (have(a, b) && b !== 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
  const atLeast = (name: string, measure: string, variant: Variant, factor: number, unit: (v: number) => string) => {
    const v = value(measure, variant);
    const nest = value(measure, 'nest-tcp');
    if (!have(v, nest)) return check(name, undefined, 'not measured');
    check(name, v >= factor * nest, `${times(v, nest)} (${unit(v)} vs Nest TCP ${unit(nest)})`);
  };
  const rate = (v: number) => `${fmtInt(v)} msg/s`;
  atLeast('TCP req/resp @100 ≥ 5× Nest TCP', 'rr100.rate', 'mt-tcp', 5, rate);
  atLeast('TCP req/resp @1000 ≥ 6× Nest TCP', 'rr1000.rate', 'mt-tcp', 6, rate);
  {
    const v = value('rr1.p50', 'mt-tcp');
    const nest = value('rr1.p50', 'nest-tcp');
    const raw = value('rr1.p50', 'raw');
    check('TCP @1 p50 ≤ Nest TCP p50', have(v, nest) ? v <= nest : undefined, `${fmtMs(v)} vs ${fmtMs(nest)} (${times(v, nest)})`);
    check('TCP @1 p50 ≤ 1.25× raw p50', have(v, raw) ? v <= 1.25 * raw : undefined, `${fmtMs(v)} vs ${fmtMs(raw)} (${times(v, raw)})`);
  }
  atLeast('events TCP ≥ 10× Nest TCP emit', 'events.rate', 'mt-tcp', 10, rate);
  atLeast('WS req/resp @100 ≥ 3.5× Nest TCP', 'rr100.rate', 'mt-ws', 3.5, rate);
  // TCP, WS and 1 MiB targets above: the hot-path issue (15); QUIC targets of the lean-driver work (issue 10) (default 1350-byte datagrams)
  atLeast('QUIC req/resp @100 ≥ 2× Nest TCP', 'rr100.rate', 'mt-quic', 2, rate);
  atLeast('QUIC req/resp @1000 ≥ 4× Nest TCP', 'rr1000.rate', 'mt-quic', 4, rate);
  {
    const p50 = value('rr1.p50', 'mt-quic');
    const p99 = value('rr1.p99', 'mt-quic');
    check('QUIC @1 p50 ≤ 0.25 ms', have(p50) ? p50 <= 0.25 : undefined, fmtMs(p50));
    check('QUIC @1 p99 ≤ 1 ms', have(p99) ? p99 <= 1 : undefined, fmtMs(p99));
  }
  atLeast(`QUIC 1 MiB ≥ 0.5× Nest TCP MB/s (string payload on both, ${QUIC_DATAGRAM}-byte datagrams)`, 'big.rate', 'mt-quic', 0.5, (v) => `${v.toFixed(1)} MB/s`);
  {
    const v = value('bigloop.rate', 'mt-quic');
    const nest = value('big.rate', 'nest-tcp');
    if (have(v, nest)) {
      out.push(
        `(info)    1 MiB QUIC at ${MSGTRANS_DEFAULTS.quic.loopbackDatagramSize}-byte datagrams (loopbackDatagramSize, the default between ends on one host): ${times(v, nest)} Nest TCP (${v.toFixed(1)} vs ${nest.toFixed(1)} MB/s)`,
      );
    }
  }
  {
    const v = value('idle.rss', 'mt-quic');
    check('QUIC idle RSS/conn ≤ 20 KiB', have(v) ? v <= 20 : undefined, `${v.toFixed(2)} KiB`);
  }
  atLeast('1 MiB TCP ≥ 1.5× Nest TCP MB/s (string payload on both)', 'big.rate', 'mt-tcp', 1.5, (v) => `${v.toFixed(1)} MB/s`);
  atLeast('1 MiB WS ≥ 1× Nest TCP MB/s (string payload on both)', 'big.rate', 'mt-ws', 1, (v) => `${v.toFixed(1)} MB/s`);
  {
    const v = value('bigbuf.rate', 'mt-tcp');
    const nest = value('big.rate', 'nest-tcp');
    if (have(v, nest)) {
      out.push(
        `(info)    1 MiB TCP with a Buffer payload (raw bytes, no JSON) vs Nest TCP's string: ${times(v, nest)} (${v.toFixed(1)} vs ${nest.toFixed(1)} MB/s)`,
      );
    }
  }
  {
    const held = value('idle.held', 'mt-tcp');
    if (!have(held)) check('10,000 idle TCP connections held', undefined, 'not measured');
    else if (CONFIG.idle < 10_000) check('10,000 idle TCP connections held', undefined, `--quick holds ${fmtInt(held)} only`);
    else check('10,000 idle TCP connections held', held >= 10_000, `${fmtInt(held)} held`);
    const v = value('idle.rss', 'mt-tcp');
    const nest = value('idle.rss', 'nest-tcp');
    check(
      'idle TCP RSS/conn ≤ Nest TCP',
      have(v, nest) ? v <= nest : undefined,
      `${v.toFixed(2)} KiB vs ${nest.toFixed(2)} KiB (${times(v, nest)})`,
    );
  }
  for (const [variant, kib] of [
    ['mt-tcp', 2],
    ['mt-ws', 4],
  ] as const) {
    const name = variant === 'mt-tcp' ? 'TCP' : 'WS';
    const held = value('idle100k.held', variant);
    const asked = `${fmtInt(CONFIG.idleScale)} idle ${name} connections on one server`;
    if (!have(held)) {
      check(asked, undefined, 'not measured');
      continue;
    }
    const limit = scaleLimits.get(variant);
    const accept = `accepted in ${value('idle100k.accept', variant).toFixed(1)} s`;
    check(asked, held >= CONFIG.idleScale, `${fmtInt(held)} held, ${accept}${limit ? `; fewer because ${limit}` : ''}`);
    const rss = value('idle100k.rss', variant);
    const heap = value('idle100k.heap', variant);
    check(
      `idle ${name} at scale ≤ ${kib} KiB RSS/conn after GC`,
      have(rss) ? rss <= kib : undefined,
      `${rss.toFixed(2)} KiB (heap ${heap.toFixed(2)} KiB) at ${fmtInt(held)} connections`,
    );
    const p50 = value('idle100k.p50', variant);
    check(
      `${name} request p50 < 1 ms while holding them`,
      have(p50) ? p50 < 1 : undefined,
      `p50 ${fmtMs(p50)}, p99 ${fmtMs(value('idle100k.p99', variant))} (sequential, one further connection)`,
    );
  }
  {
    // not a target of its own; shown beside the TCP one
    const held = value('idle.held', 'mt-ws');
    const v = value('idle.rss', 'mt-ws');
    const nest = value('idle.rss', 'nest-tcp');
    if (have(held, v, nest)) {
      out.push(`(info)    WS idle: ${fmtInt(held)} held, ${v.toFixed(2)} KiB RSS/conn (${times(v, nest)} Nest TCP)`);
    }
  }
  return out;
}

function machine(): string[] {
  let cpu = 'unknown';
  try {
    cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ?? cpu;
  } catch {
    cpu = os.cpus()[0]?.model ?? cpu;
  }
  let commit = 'unknown';
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: join(HERE, '..', '..'), encoding: 'utf8' }).trim();
    commit = git('rev-parse', '--short', 'HEAD') + (git('status', '--porcelain', '--', 'lib') ? ' (lib/ has uncommitted changes)' : '');
  } catch {
    // not a git checkout
  }
  return [
    `- code: commit ${commit}`,
    `- CPU: ${cpu}, ${os.cpus().length} cores (os.cpus)`,
    `- memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- OS: ${os.type()} ${os.release()} (${os.arch()})`,
    `- Node ${process.version}`,
    `- load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  ];
}

// ---------------------------------------------------------------------------
// Profile mode

async function profile(variant: Variant, certs: BenchCerts): Promise<void> {
  const dir = option('profile-dir') || '/tmp/msgtrans-prof';
  const inflight = Number(option('inflight') || 100);
  const seconds = Number(option('seconds') || 10);
  mkdirSync(dir, { recursive: true });
  const startedAt = Date.now();
  const side = option('profile-side') || 'server';
  const measure = option('profile-measure') || 'rr';
  if (!['rr', 'events', 'big', 'bigbuf'].includes(measure)) throw new Error('--profile-measure is rr, events, big or bigbuf');
  if (!['server', 'client', 'both'].includes(side)) throw new Error('--profile-side is server, client or both');
  const prof = ['--cpu-prof', `--cpu-prof-dir=${dir}`];
  const pair = await startPair(variant, certs, side === 'client' ? [] : prof, side === 'server' ? [] : prof);
  log(`profiling the ${VARIANT_LABEL[variant]} ${side === 'both' ? 'server and client' : side}: ${measure}${measure === 'events' ? '' : ` at ${inflight} in flight`} for ${seconds} s`);
  if (measure === 'events') {
    const until = Date.now() + seconds * 1000;
    const rates: number[] = [];
    while (Date.now() < until) {
      const r = await pair.client.call('events', { count: 50_000, timeoutMs: 30_000 }, 60_000);
      rates.push(r.rate as number);
    }
    log(`events: ${rates.length} runs of 50,000, median ${fmtInt(median(rates))} msg/s`);
  } else {
    const r = await pair.client.call(
      'rr',
      { inflight, warmupMs: 1000, durationMs: seconds * 1000, payload: measure === 'rr' ? 'small' : measure },
      seconds * 1000 + 60_000,
    );
    log(`${fmtInt(r.rate as number)} msg/s, p50 ${fmtMs(r.p50 as number)}, p99 ${fmtMs(r.p99 as number)}`);
  }
  await pair.client.stop();
  await pair.server.stop(10_000);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).mtimeMs >= startedAt)
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (files.length === 0) throw new Error(`no .cpuprofile written in ${dir}`);
  // newest first; with --profile-side=both the server stops last, so its profile is first
  for (const file of files.slice(0, side === 'both' ? 2 : 1)) console.log(summarizeProfile(file, 30) + '\n');
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const watchdog = setTimeout(() => {
    log(`watchdog: still running after ${CONFIG.watchdogMs / 1000} s, giving up`);
    killChildren();
    process.exit(1);
  }, CONFIG.watchdogMs);
  watchdog.unref();
  const started = Date.now();
  const dev = await createDevCertificates();
  const certs: BenchCerts = { ca: dev.ca, serverKey: dev.serverKey, serverCert: dev.serverCert };

  const profiled = option('profile');
  if (profiled !== undefined) {
    if (!isVariant(profiled)) throw new Error(`--profile needs one of ${VARIANTS.join(', ')}`);
    await profile(profiled, certs);
    return;
  }

  const machineLines = machine();
  log(`${QUICK ? 'quick' : 'full'} run: ${SELECTED.map((v) => VARIANT_LABEL[v]).join(', ')}; ${REPS} run(s) per cell (idle: ${IDLE_REPS})`);
  if (['rr', 'events', 'big'].some((m) => MEASURES.has(m))) await runThroughput(certs);
  if (MEASURES.has('idle')) await runIdle(certs);
  if (MEASURES.has('idle100k')) await runScale(certs);
  const lossSection = MEASURES.has('loss') && !ONLY ? await runLossBench({ quick: QUICK, certs, log }) : [];
  const elapsed = (Date.now() - started) / 1000;

  const method = [
    `Server and client are separate processes on 127.0.0.1; one client connection per variant; payloads are a 64-character string (1 MiB rows: a 1 MiB string, JSON on every Nest variant, and a 1 MiB Buffer, raw bytes on msgtrans but a JSON array of numbers on Nest TCP), echoed by a Nest @MessagePattern('echo') handler (raw: echoed by node:net, no Nest). Before measuring, every pair runs a warm-up of each measure.`,
    `req/resp: fixed-duration closed loop (${CONFIG.rrWarmupMs} ms warm-up, ${CONFIG.rrDurationMs} ms measured) keeping N requests outstanding. events: ${fmtInt(CONFIG.events)} emits, then count.get polled until all arrived. 1 MiB: closed loop at ${CONFIG.bigInflight} in flight; MB/s = echoed payload bytes per second, one way (10^6 bytes). idle: server RSS/heap after GC, before and after ${fmtInt(CONFIG.idle)} idle connections (QUIC: ${fmtInt(CONFIG.idleQuic)}: each QUIC client has its own UDP socket and handshake), divided by the connections the server held. idle at scale (once, not repeated): one server asked to hold ${fmtInt(CONFIG.idleScale)} idle connections opened by several client processes at once from source addresses of their own (127.0.N.M), each process's open-file limit raised to its hard limit at most (no sysctl changed); time from the first connect until the server counted them all; RSS/heap growth after GC per connection; then ${fmtInt(CONFIG.idleScaleProbeMs)} ms of sequential requests (1 in flight) from a further client connection.`,
    `QUIC runs at ${QUIC_DATAGRAM}-byte datagrams (maxDatagramSize, what a real network path gets), not at the ${fmtInt(MSGTRANS_DEFAULTS.quic.loopbackDatagramSize)} bytes the library uses by default when both ends are on one host (loopbackDatagramSize); the 1 MiB string echo at that size is one extra row, measured after the interleaved cells.`,
    `Variants interleaved (A B C … then B C … A …, rotated each run), after waiting for the benchmark processes to go idle; each value is the median of ${REPS} run(s) (idle: ${IDLE_REPS}); ratios are to Nest TCP and to raw node:net from the same run (for latency and memory, lower is better).`,
  ];
  const report = [table(), '', 'targets:', ...targets()].join('\n');
  console.log('');
  console.log(report);
  console.log('');
  console.log(`(${QUICK ? 'quick' : 'full'} run, ${elapsed.toFixed(0)} s)`);

  if (WRITE_RESULTS) {
    const file = join(SOURCE_DIR, 'RESULTS.md');
    if (!existsSync(SOURCE_DIR)) mkdirSync(SOURCE_DIR, { recursive: true });
    const md = [
      '# Benchmark results',
      '',
      `Written by \`npm run bench\` on ${new Date().toISOString()} (${elapsed.toFixed(0)} s).`,
      '',
      '## Machine',
      '',
      ...machineLines,
      `- load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (the machine is shared: other work may have run alongside)`,
      '',
      '## Method',
      '',
      ...method.map((m) => `- ${m}`),
      '',
      '## Results',
      '',
      table(),
      '',
      '## Targets',
      '',
      '```',
      ...targets(),
      '```',
      '',
      ...lossSection,
    ].join('\n');
    writeFileSync(file, md);
    log(`wrote ${file}`);
  }
}

main().then(
  () => {
    killChildren();
    process.exit(0);
  },
  (err) => {
    console.error(err);
    killChildren();
    process.exit(1);
  },
);
