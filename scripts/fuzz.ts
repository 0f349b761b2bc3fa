/**
 * npm run fuzz -- [--protocol tcp|ws|quic|all] [--inputs N] [--seed S] [--seconds T]
 *                 [--workers N] [--quic-workers N] [--max-packet BYTES]
 *
 * The long version of test/e2e/fuzz.test.ts, with three kinds of process:
 * - the server (scripts/lib/server-child.ts): the test suite's app on tcp,
 *   ws and quic. A crash there is counted instead of ending the run, and it
 *   is restarted on the same ports;
 * - one fuzz worker per protocol (scripts/lib/fuzz-worker.ts), each with
 *   --workers connections at a time, sending seeded inputs
 *   (scripts/lib/fuzz-inputs.ts) and checking the server against an oracle
 *   written from PROTOCOL.md (scripts/lib/oracle.ts, fuzz-runner.ts);
 * - this one: a well-behaved client per protocol sending 'echo' requests
 *   throughout, and the bookkeeping.
 *
 * Bounded: stops after --inputs per protocol or --seconds, whichever comes
 * first. Exits 1 if anything crashed or disagreed with the oracle; the
 * offending inputs are written to a JSON file (hex) for reproduction.
 */
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevCertificates } from '../sample/dev-certs.js';
import { parseArgs } from './lib/args.js';
import { PROTOCOLS, describeInput, type InputRecord, type Protocol } from './lib/fuzz-inputs.js';
import { describeFailure, emptyStats, type DisconnectReport, type FailureRecord, type ProtocolStats } from './lib/fuzz-runner.js';
import type { WorkerRun } from './lib/fuzz-worker.js';
import { GoodClient } from './lib/good-client.js';
import { mb } from './lib/heap.js';
import type { Targets } from './lib/raw-peers.js';
import { ServerProcess } from './lib/server-process.js';

// Defaults, lowered from the 1,000,000 per protocol first asked for, so that a
// default run ends within about seven minutes on a 2-core machine: measured
// there, TCP does ~1,300-3,000 inputs/s and WebSocket ~1,100-2,000 (most inputs
// end their connection, so this is mostly connections per second), while QUIC
// does ~80-130: its library spends about a millisecond of CPU per UDP datagram,
// so nearly every QUIC input pays for a new TLS handshake (~10 ms of CPU).
// --seconds bounds the run whatever the machine: each protocol gets its share.
const DEFAULT_INPUTS: Record<Protocol, number> = { tcp: 300_000, ws: 200_000, quic: 10_000 };
const DEFAULTS_REASON =
  'defaults lowered from 1,000,000 per protocol to fit ~7 minutes on 2 cores: most inputs end their connection, so a run is bounded ' +
  'by connections per second (TCP ~1,300-3,000, WebSocket ~1,100-2,000 inputs/s); QUIC is far lower (~80-130 inputs/s) because its ' +
  'library costs ~1 ms of CPU per datagram and nearly every input pays a new TLS handshake';

const args = parseArgs(process.argv.slice(2), {
  protocol: 'string',
  inputs: 'number',
  seed: 'string',
  seconds: 'number',
  workers: 'number',
  'quic-workers': 'number',
  'max-packet': 'number',
  help: 'boolean',
});
if (args.help) {
  console.log('usage: node dist/scripts/fuzz.js [--protocol tcp|ws|quic|all] [--inputs N] [--seed S] [--seconds T] [--workers N] [--quic-workers N] [--max-packet BYTES]');
  process.exit(0);
}
const protocolArg = String(args.protocol ?? 'all');
if (protocolArg !== 'all' && !PROTOCOLS.includes(protocolArg as Protocol)) {
  console.error(`--protocol must be tcp, ws, quic or all (got ${protocolArg})`);
  process.exit(2);
}
const protocols: Protocol[] = protocolArg === 'all' ? [...PROTOCOLS] : [protocolArg as Protocol];
const inputs: Record<Protocol, number> = { ...DEFAULT_INPUTS };
if (args.inputs !== undefined) for (const p of PROTOCOLS) inputs[p] = Number(args.inputs);
const seed = String(args.seed ?? '1');
const seconds = Number(args.seconds ?? 420);
const workers: Record<Protocol, number> = {
  tcp: Number(args.workers ?? 32),
  ws: Number(args.workers ?? 32),
  quic: Number(args['quic-workers'] ?? 6),
};
const maxPacketSize = Number(args['max-packet'] ?? 1024 * 1024);
const limits = { maxPacketSize, maxExtHeaderSize: 16 * 1024, maxInFlight: 4096 };
// Generous: under fuzz load the server's event loop lags by hundreds of ms, and a
// timer that runs late fires before the bytes already waiting in the socket are read.
const INCOMPLETE_MS = 2000;
// A force-destroyed QUIC client sends its CONNECTION_CLOSE once; if that datagram is
// dropped the server learns only at the idle timeout (two heartbeats): keep it short.
const HEARTBEAT_MS = 2500;
const WORKER = fileURLToPath(new URL('./lib/fuzz-worker.js', import.meta.url));

interface Crash {
  what: string;
  detail: string;
  suspects: InputRecord[];
}

/** Parent side of one fuzz worker process. */
class FuzzWorker {
  readonly child: ChildProcess;
  stats: ProtocolStats = emptyStats();
  private waiters = new Map<string, (msg: any) => void>();
  private snapshots = new Map<number, (inputs: InputRecord[]) => void>();
  private nextId = 1;
  error: string | undefined;

  constructor(readonly protocol: Protocol) {
    // FUZZ_WORKER_NODE_ARGS: extra node flags for the fuzz workers, e.g. "--cpu-prof"
    const extra = (process.env.FUZZ_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
    this.child = fork(WORKER, [], { execArgv: extra, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (msg: any) => {
      if (msg.type === 'progress') this.stats = msg.stats;
      else if (msg.type === 'done') this.waiters.get(msg.phase)?.(msg);
      else if (msg.type === 'snapshot') this.snapshots.get(msg.id)?.(msg.inputs);
      else if (msg.type === 'error') {
        this.error = msg.error;
        for (const w of this.waiters.values()) w({ type: 'done', stats: this.stats, failures: [], failureCount: 0, error: msg.error });
      }
    });
    this.child.once('exit', (code, signal) => {
      this.error ??= `fuzz worker exited (${signal ?? code})`;
      for (const w of this.waiters.values()) w({ type: 'done', stats: this.stats, failures: [], failureCount: 0, error: this.error });
      for (const s of this.snapshots.values()) s([]);
    });
  }

  ready(): Promise<void> {
    return new Promise((resolve) => this.child.once('message', () => resolve()));
  }

  run(r: WorkerRun): Promise<{ stats: ProtocolStats; failures: FailureRecord[]; failureCount: number; error?: string }> {
    return new Promise((resolve) => {
      this.waiters.set(r.phase, (msg) => {
        this.waiters.delete(r.phase);
        resolve(msg);
      });
      this.child.send({ cmd: 'run', ...r });
    });
  }

  reports(list: DisconnectReport[]): void {
    if (this.child.connected) this.child.send({ cmd: 'reports', list });
  }

  snapshot(): Promise<InputRecord[]> {
    if (!this.child.connected) return Promise.resolve([]);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done([]), 2000);
      const done = (inputs: InputRecord[]) => {
        clearTimeout(timer);
        this.snapshots.delete(id);
        resolve(inputs);
      };
      this.snapshots.set(id, done);
      this.child.send({ cmd: 'snapshot', id });
    });
  }

  stop(): void {
    if (this.child.connected) this.child.disconnect();
    setTimeout(() => this.child.kill('SIGKILL'), 2000).unref();
  }
}

async function main(): Promise<number> {
  const startedAt = Date.now();
  // clients log every lost connection; here they are lost on purpose
  Logger.overrideLogger(false);
  const certs = await createDevCertificates();
  const crashes: Crash[] = [];
  const fuzzers = new Map<Protocol, FuzzWorker>(protocols.map((p) => [p, new FuzzWorker(p)]));
  await Promise.all([...fuzzers.values()].map((f) => f.ready()));
  const blame = (crash: Crash) => {
    crashes.push(crash);
    // the inputs in flight when it was noticed: approximate, the server is another process
    void Promise.all([...fuzzers.values()].map((f) => f.snapshot())).then((lists) => crash.suspects.push(...lists.flat()));
  };
  // violation counts of server processes that died (lost with them otherwise)
  const deadViolations: Record<string, number> = {};
  let lastViolations: Record<string, number> = {};
  let server!: ServerProcess;
  let targets: Targets | undefined;
  let restarting: Promise<void> | null = null;
  let restarts = 0;

  const startServer = async (): Promise<void> => {
    server = await ServerProcess.start(
      {
        mode: 'fuzz',
        // a restart after a crash takes the same ports, so every client finds it again
        ports: targets ? { tcp: targets.tcp.port, ws: Number(new URL(targets.ws).port), quic: targets.quic.port } : { tcp: 0, ws: 0, quic: 0 },
        tls: { key: certs.serverKey, cert: certs.serverCert },
        options: { maxPacketSize, incompleteMessageTimeout: INCOMPLETE_MS, maxInFlight: limits.maxInFlight, heartbeatInterval: HEARTBEAT_MS },
        reports: true,
      },
      {
        onReports: (list) => {
          const byProtocol = new Map<string, DisconnectReport[]>();
          for (const r of list) {
            if (r.internal) crashes.push({ what: 'a session ended by an internal server error', detail: r.internal, suspects: [] });
            const p = r.protocol === 'wss' ? 'ws' : r.protocol;
            byProtocol.set(p, [...(byProtocol.get(p) ?? []), r]);
          }
          for (const [p, l] of byProtocol) fuzzers.get(p as Protocol)?.reports(l);
        },
        onUncaught: (kind, error) => blame({ what: `server ${kind}`, detail: error, suspects: [] }),
        onExit: (code, signal) => {
          blame({ what: 'server process died', detail: `exit ${signal ?? code}`, suspects: [] });
          for (const [k, v] of Object.entries(lastViolations)) deadViolations[k] = (deadViolations[k] ?? 0) + v;
          lastViolations = {};
          restarts++;
          restarting ??= startServer().finally(() => (restarting = null));
        },
      },
    );
    const ports = server.ports!;
    targets = {
      tcp: { host: '127.0.0.1', port: ports.tcp },
      ws: `ws://127.0.0.1:${ports.ws}/msgtrans`,
      quic: { host: '127.0.0.1', port: ports.quic },
      ca: certs.ca,
    };
  };
  await startServer();

  const t = targets!;
  const goodClients = protocols.map((p) =>
    p === 'tcp'
      ? new GoodClient('good-tcp', { url: `tcp://127.0.0.1:${t.tcp.port}` })
      : p === 'ws'
        ? new GoodClient('good-ws', { url: t.ws })
        : new GoodClient('good-quic', { url: `quic://127.0.0.1:${t.quic.port}`, tls: { ca: certs.ca } }, 1, 5),
  );
  await Promise.all(goodClients.map((c) => c.connect()));
  for (const c of goodClients) c.start();

  const runOne = (p: Protocol, phase: string, runSeed: string, count: number, runSeconds: number) =>
    fuzzers.get(p)!.run({
      phase,
      protocol: p,
      inputs: count,
      workers: workers[p],
      seed: runSeed,
      limits,
      seconds: runSeconds,
      targets: t,
      probeEvery: p === 'quic' ? 16 : 32,
      probeTimeout: 10_000,
      maybeTimeout: 500,
      waitForStallChance: 0.01,
      incompleteTimeout: INCOMPLETE_MS,
    });
  const runAll = (phase: string, runSeed: string, counts: Record<Protocol, number>, runSeconds: number) =>
    Promise.all(protocols.map((p) => runOne(p, phase, runSeed, counts[p], runSeconds)));

  // warm-up with another seed (JIT, caches, the zstd binding), then the baseline heap
  const warm = await runAll('warm-up', 'warm-up', { tcp: 300, ws: 300, quic: 6 }, 60);
  await waitForSessions(() => server, goodClients.length);
  const before = await server.stats(true);
  const heapBefore = before.heapUsed;
  const violationsAtStart = { ...before.stats.violations };

  console.log(
    `fuzzing ${protocols.join(', ')} with seed ${seed}: ${protocols.map((p) => `${p} ${inputs[p].toLocaleString('en')} inputs (${workers[p]} connections at a time)`).join(', ')}; ` +
      `at most ${seconds} s; maxPacketSize ${maxPacketSize}`,
  );
  if (args.inputs === undefined) console.log(`(${DEFAULTS_REASON})`);
  // a last resort: whatever happens, the run ends
  setTimeout(() => {
    console.error('fuzz: hard time limit reached, exiting');
    process.exit(3);
  }, (seconds + 180) * 1000).unref();

  const t0 = Date.now();
  let lastCpu = { at: Date.now(), ms: before.cpuMs };
  const progress = setInterval(async () => {
    let cpu = '';
    try {
      const now = await server.stats();
      lastViolations = now.stats.violations;
      cpu = `; server CPU ${Math.round(((now.cpuMs - lastCpu.ms) / (Date.now() - lastCpu.at)) * 100)}%`;
      lastCpu = { at: Date.now(), ms: now.cpuMs };
    } catch {
      // restarting
    }
    console.log(
      `  ${((Date.now() - t0) / 1000).toFixed(0)}s: ${protocols.map((p) => `${p} ${fuzzers.get(p)!.stats.inputs.toLocaleString('en')}`).join(', ')}; ` +
        `crashes ${crashes.length}${cpu}`,
    );
  }, 15_000);
  // One protocol after another: they share the server's single event loop, where a
  // QUIC datagram costs about a millisecond, so together each would mostly wait.
  // The good clients of every protocol run throughout. Each phase gets the time
  // left divided by the phases left, so time a phase does not need carries over.
  const results: Awaited<ReturnType<typeof runOne>>[] = [];
  const phaseSeconds = new Map<Protocol, number>();
  for (const [i, p] of protocols.entries()) {
    const left = seconds - (Date.now() - t0) / 1000;
    const share = Math.max(1, left / (protocols.length - i));
    const started = Date.now();
    results.push(await runOne(p, 'main', seed, inputs[p], share));
    phaseSeconds.set(p, (Date.now() - started) / 1000);
  }
  const fuzzSeconds = (Date.now() - t0) / 1000;
  clearInterval(progress);
  if (restarting) await restarting;

  await Promise.all(goodClients.map((c) => c.stop()));
  const settled = await waitForSessions(() => server, goodClients.length);
  const after = await server.stats(true);
  const heapAfter = after.heapUsed;
  const violations: Record<string, number> = { ...deadViolations };
  for (const [k, v] of Object.entries(after.stats.violations)) violations[k] = (violations[k] ?? 0) + v - (violationsAtStart[k] ?? 0);
  for (const c of goodClients) {
    if (c.wrong + c.failed > 0) crashes.push({ what: `${c.name} failed`, detail: `${c.summary()}\n${c.problems.join('\n')}`, suspects: [] });
  }
  const failures: FailureRecord[] = [];
  let failureCount = 0;
  for (const [i, r] of [...warm, ...results].entries()) {
    failures.push(...r.failures);
    failureCount += r.failureCount;
    if (r.error) crashes.push({ what: `fuzz worker (${protocols[i % protocols.length]}) failed`, detail: r.error, suspects: [] });
  }

  // ---- report
  const stats = new Map(protocols.map((p, i) => [p, results[i].stats]));
  console.log('');
  console.log(`fuzz run, seed ${seed}, ${fuzzSeconds.toFixed(0)} s of fuzzing (protocols one after another; limit ${seconds} s)`);
  for (const p of protocols) {
    const s = stats.get(p)!;
    const note = s.inputs < inputs[p] ? ` (of ${inputs[p].toLocaleString('en')} asked: time share used up)` : '';
    const secs = phaseSeconds.get(p)!;
    console.log(
      `  ${p.padEnd(4)}: ${s.inputs.toLocaleString('en')} inputs${note} on ${s.connections.toLocaleString('en')} connections ` +
        `in ${secs.toFixed(0)} s (${Math.round(s.inputs / secs).toLocaleString('en')} inputs/s); ` +
        `${s.closedByServer.toLocaleString('en')} closed by the server, ${s.closedByFuzzer.toLocaleString('en')} by the fuzzer; ` +
        `${s.probes.toLocaleString('en')} probes, ${s.repliesChecked.toLocaleString('en')} replies checked, ${s.stalls.toLocaleString('en')} stalls, ` +
        `${s.hangs} hangs, ${s.connectFailures} connect failures; ` +
        `mean ms: open ${(s.openMs / s.connections).toFixed(1)}, probe ${(s.probeMs / s.probes).toFixed(1)}, close ${(s.destroyMs / s.connections).toFixed(1)}`,
    );
  }
  for (const p of protocols) {
    const kinds = Object.entries(stats.get(p)!.byKind).sort((a, b) => b[1] - a[1]);
    console.log(`  ${p} inputs by kind: ${kinds.map(([k, n]) => `${k} ${n.toLocaleString('en')}`).join(', ')}`);
  }
  if (args.inputs === undefined) console.log(`  (${DEFAULTS_REASON})`);
  for (const c of goodClients) console.log(`  ${c.summary()}`);
  console.log('  violations by code:');
  for (const [code, n] of Object.entries(violations).sort((a, b) => b[1] - a[1])) console.log(`    ${code.padEnd(40)} ${n.toLocaleString('en')}`);
  console.log(`  server sessions after the run: ${after.stats.sessions} (good clients: ${goodClients.length})${settled ? '' : ' — NOT back to the good clients'}`);
  console.log(`  server event loop delay: p99 ${after.loopDelayP99Ms.toFixed(0)} ms, max ${after.loopDelayMaxMs.toFixed(0)} ms`);
  console.log(`  server heap: ${mb(heapBefore)} before, ${mb(heapAfter)} after (${heapAfter >= heapBefore ? '+' : ''}${mb(heapAfter - heapBefore)})`);
  console.log(`  crashes (uncaught exception/rejection, good client failing, server process dying, internal errors): ${crashes.length}${restarts ? ` (server restarted ${restarts} times)` : ''}`);
  console.log(`  oracle disagreements and hangs: ${failureCount}`);

  for (const c of crashes.slice(0, 10)) {
    console.log(`  CRASH ${c.what}: ${c.detail.split('\n').slice(0, 8).join('\n    ')}`);
    for (const s of c.suspects.slice(0, 5)) console.log(`    suspect ${describeInput(s)}`);
  }
  const byType = new Map<string, number>();
  for (const f of failures) byType.set(`${f.protocol} ${f.type}`, (byType.get(`${f.protocol} ${f.type}`) ?? 0) + 1);
  for (const [type, n] of byType) console.log(`  ${type}: ${n}`);
  for (const f of failures.slice(0, 10)) console.log(`  ${describeFailure(f).split('\n').join('\n  ')}`);

  if (crashes.length + failureCount > 0) {
    const dir = path.join(os.tmpdir(), 'msgtrans-fuzz');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `fuzz-seed-${seed}-${Date.now()}.json`);
    fs.writeFileSync(file, JSON.stringify({ seed, crashes, failures }, null, 1));
    console.log(`  offending inputs written to ${file}`);
  }

  for (const c of goodClients) c.close();
  for (const f of fuzzers.values()) f.stop();
  await server.close();
  console.log(`  total ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
  return crashes.length + failureCount > 0 ? 1 : 0;
}

/** Polls until the server holds exactly `n` sessions (the good clients); false if it never does. */
async function waitForSessions(server: () => ServerProcess, n: number, timeoutMs = 15_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      if ((await server().stats()).stats.sessions === n) return true;
    } catch {
      // restarting
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
