/**
 * One protocol's fuzz connections, in a process of their own (forked by
 * scripts/fuzz.ts): a single Node process cannot drive TCP, WebSocket and
 * QUIC fuzzing and also keep up with the server, so each protocol gets a
 * core's worth of event loop.
 *
 * IPC:
 *   parent -> worker  { cmd: 'run', phase, ...WorkerRun }   runs a campaign; answers { type: 'done', phase, stats, failures }
 *                     { cmd: 'reports', list }              the server's session ends for this protocol
 *                     { cmd: 'snapshot', id }               answers { type: 'snapshot', id, inputs } (inputs in flight)
 *   worker -> parent  { type: 'progress', stats }           every second
 */
import { FuzzGenerator, toRecord, type FuzzInput, type Protocol } from './fuzz-inputs.js';
import { DisconnectMatcher, runCampaign, type Failure, type FailureRecord, type ProtocolStats, type DisconnectReport } from './fuzz-runner.js';
import type { OracleLimits } from './oracle.js';
import { deriveSeed } from './prng.js';
import type { Targets } from './raw-peers.js';

export interface WorkerRun {
  phase: string;
  protocol: Protocol;
  inputs: number;
  workers: number;
  seed: string;
  limits: OracleLimits;
  /** ms from now. */
  seconds: number;
  targets: Targets;
  probeEvery: number;
  probeTimeout: number;
  maybeTimeout: number;
  waitForStallChance: number;
  incompleteTimeout: number;
}

const MAX_FAILURES_SENT = 200;

const send = (message: unknown) => {
  if (process.connected) process.send!(message);
};
process.on('disconnect', () => process.exit(0));

const failures: Failure[] = [];
const matcher = new DisconnectMatcher((f) => failures.push(f), 15_000);
const inFlight = new Map<string, FuzzInput[]>();
let currentStats: Record<Protocol, ProtocolStats> | undefined;
let protocol: Protocol | undefined;

setInterval(() => {
  if (currentStats && protocol) send({ type: 'progress', stats: currentStats[protocol] });
}, 1000).unref();

function record(f: Failure): FailureRecord {
  return { type: f.type, protocol: f.protocol, detail: f.detail, suspects: f.suspects.slice(-8).map(toRecord) };
}

async function run(r: WorkerRun): Promise<void> {
  protocol = r.protocol;
  const before = failures.length;
  const stats = await runCampaign(
    {
      protocols: [r.protocol],
      inputs: { tcp: r.inputs, ws: r.inputs, quic: r.inputs },
      workers: { tcp: r.workers, ws: r.workers, quic: r.workers },
      seed: r.seed,
      limits: r.limits,
      deadline: Date.now() + r.seconds * 1000,
      targets: () => r.targets,
      probeEvery: { tcp: r.probeEvery, ws: r.probeEvery, quic: r.probeEvery },
      probeTimeout: r.probeTimeout,
      maybeTimeout: r.maybeTimeout,
      waitForStallChance: r.waitForStallChance,
      incompleteTimeout: r.incompleteTimeout,
      matcher,
      onFailure: (f) => failures.push(f),
      inFlight,
      onStats: (s) => (currentStats = s),
    },
    (p, w) => new FuzzGenerator({ protocol: p, seed: deriveSeed(r.seed, p, w), limits: r.limits }),
  );
  // let the server's last reports arrive, then settle every connection's account
  const until = Date.now() + 3000;
  while (matcher.pendingRecords > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
  matcher.sweep(Date.now(), 0);
  const fresh = failures.slice(before);
  send({
    type: 'done',
    phase: r.phase,
    stats: stats[r.protocol],
    failureCount: fresh.length,
    failures: fresh.slice(0, MAX_FAILURES_SENT).map(record),
  });
}

process.on('message', (msg: { cmd: string; id?: number; list?: DisconnectReport[] } & Partial<WorkerRun>) => {
  if (msg.cmd === 'reports') {
    for (const r of msg.list ?? []) matcher.report(r);
  } else if (msg.cmd === 'snapshot') {
    const inputs = [...inFlight.values()].flatMap((list) => list.slice(-3)).map(toRecord);
    send({ type: 'snapshot', id: msg.id, inputs });
  } else if (msg.cmd === 'run') {
    run(msg as WorkerRun).catch((err) => {
      send({ type: 'error', error: String((err as Error)?.stack ?? err) });
    });
  }
});
send({ type: 'started' });
