/**
 * npm run soak -- [--seconds T] [--clients N] [--seed S]
 *                 [--restart-min S] [--restart-max S] [--disconnect-min S] [--disconnect-max S]
 *
 * Clients on tcp, ws and quic send requests ('echo' with unique payloads,
 * sometimes 'stream') and events for --seconds, while
 * - each client is now and then disconnected: either closed and replaced
 *   by a new client, or its socket destroyed under it (client.unwrap()),
 *   after which it reconnects by itself;
 * - the server (scripts/lib/server-child.ts, the test suite's app) is killed
 *   with SIGKILL at random intervals and restarted on the same ports.
 *
 * Checked:
 * - every acknowledged request (one whose reply arrived) got exactly one
 *   correct reply: 'echo' exactly its own payload once, 'stream' {n}
 *   exactly 1..n; a request that failed failed with a typed MsgTransError;
 * - every event sent on a live connection was handled, exactly once.
 *
 * "Sent on a live connection" is defined so that it can be known from the
 * client side: an event E counts when client.emit() was called while the
 * client had a session that was open (status 'connected', session not
 * closed), so emit() handed the packet to that session synchronously, AND
 * a request R that was subscribed later on the same session, while it was
 * still open, got its complete reply. R's packet went out after E's on the
 * same connection (one ordered stream per connection, one write queue per
 * session); the server handles a connection's packets in order and runs
 * the 'soak.event' handler synchronously when it dispatches E, so R's reply
 * proves that E reached the handler. An event for which no such R exists
 * (its connection was lost first) may legitimately be lost; those are
 * counted as "unconfirmed" and not checked.
 *
 * The server logs each handled event to a file with a synchronous write
 * before the handler returns, so the count survives SIGKILL; the logs of
 * every server incarnation are read at the end.
 *
 * Bounded: stops at --seconds (plus the time to wind down, at most a
 * minute); exits 1 if any check failed.
 */
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Socket } from 'node:net';
import { lastValueFrom, toArray } from 'rxjs';
import type { WebSocket } from 'ws';
import type { QUICConnection } from '@matrixai/quic';
import { MsgTransClient, MsgTransError, type MsgTransClientOptions, type MsgTransSession } from '../lib/index.js';
import { createDevCertificates, type DevCertificates } from '../sample/dev-certs.js';
import { parseArgs } from './lib/args.js';
import { mb, settledHeapUsed } from './lib/heap.js';
import { Prng } from './lib/prng.js';
import { ServerProcess } from './lib/server-process.js';
import type { ChildPorts } from './lib/server-child.js';

type Protocol = 'tcp' | 'ws' | 'quic';
const PROTOCOLS: Protocol[] = ['tcp', 'ws', 'quic'];

const args = parseArgs(process.argv.slice(2), {
  seconds: 'number',
  clients: 'number',
  seed: 'string',
  'restart-min': 'number',
  'restart-max': 'number',
  'disconnect-min': 'number',
  'disconnect-max': 'number',
  help: 'boolean',
});
if (args.help) {
  console.log('usage: node dist/scripts/soak.js [--seconds T] [--clients N] [--seed S] [--restart-min S] [--restart-max S] [--disconnect-min S] [--disconnect-max S]');
  process.exit(0);
}
const SECONDS = Number(args.seconds ?? 120);
const CLIENTS_PER_PROTOCOL = Number(args.clients ?? 2);
const SLOTS_PER_CLIENT = 3;
const RESTART = [Number(args['restart-min'] ?? 5), Number(args['restart-max'] ?? 15)] as const;
const DISCONNECT = [Number(args['disconnect-min'] ?? 3), Number(args['disconnect-max'] ?? 10)] as const;
const REQUEST_TIMEOUT = 4000;
const rng = new Prng(String(args.seed ?? `soak-${Date.now()}`));

// ---------------------------------------------------------------------------
// counters
// ---------------------------------------------------------------------------

const counts = {
  requestsSent: 0,
  acknowledged: 0,
  failedTyped: 0,
  failedUntyped: 0,
  duplicates: 0,
  wrong: 0,
  eventsSent: 0,
  eventsWhileDown: 0,
  eventEmitErrors: 0,
  serverRestarts: 0,
  clientReplacements: 0,
  socketDrops: 0,
};
const failedByCode = new Map<string, number>();
const problems: string[] = [];
function problem(text: string): void {
  if (problems.length < 30) problems.push(text);
}

// ---------------------------------------------------------------------------
// a soak client
// ---------------------------------------------------------------------------

/** One event as the client saw it when emitting. */
interface EventRecord {
  seq: number;
  /** Index of the session it was handed to, or -1 if there was no open session. */
  session: number;
}

let nextClientId = 1;

class SoakClient {
  readonly id = nextClientId++;
  readonly client: MsgTransClient;
  private session: MsgTransSession | null = null;
  private readonly sessionIndex = new Map<MsgTransSession, number>();
  /** Per session: the highest seq of a request subscribed on it that got its complete reply. */
  readonly confirmedUpTo: number[] = [];
  readonly events: EventRecord[] = [];
  private seq = 0;
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    readonly protocol: Protocol,
    options: MsgTransClientOptions,
  ) {
    this.client = new MsgTransClient(options);
    this.client.on('connect', (session) => {
      this.session = session;
      if (!this.sessionIndex.has(session)) {
        this.sessionIndex.set(session, this.confirmedUpTo.length);
        this.confirmedUpTo.push(-1);
      }
    });
    this.client.on('disconnect', () => {
      this.session = null;
    });
    // errors are expected here (the server is killed on purpose); the calls report them
    this.client.on('error', () => undefined);
  }

  /** The session a call made right now goes out on synchronously, as its index; -1 if none. */
  private liveSessionIndex(): number {
    const s = this.session;
    return s !== null && !s.closed ? this.sessionIndex.get(s)! : -1;
  }

  start(): void {
    this.running = true;
    for (let i = 0; i < SLOTS_PER_CLIENT; i++) this.loops.push(this.loop(i));
  }

  /** Stops making calls and waits for the ones under way. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  close(): void {
    this.client.close();
  }

  /** Destroys the connection under the client; it reconnects by itself. */
  dropSocket(): boolean {
    try {
      if (this.protocol === 'tcp') this.client.unwrap<Socket>().destroy();
      else if (this.protocol === 'ws') this.client.unwrap<WebSocket>().terminate();
      else void this.client.unwrap<QUICConnection>().stop({ isApp: true, errorCode: 2, force: true }).catch(() => undefined);
      return true;
    } catch {
      return false; // not connected right now
    }
  }

  private async loop(slot: number): Promise<void> {
    // small random pauses keep the load steady rather than flat out
    while (this.running) {
      const op = rng.float();
      if (op < 0.3) this.emitEvent();
      else await this.request(op < 0.38 ? 'stream' : 'echo', slot);
      if (rng.chance(0.5)) await new Promise((resolve) => setTimeout(resolve, rng.int(3)));
      else await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private emitEvent(): void {
    const seq = this.seq++;
    const session = this.liveSessionIndex();
    this.events.push({ seq, session });
    counts.eventsSent++;
    if (session < 0) counts.eventsWhileDown++;
    // hot: sent now if connected, else once (re)connected
    this.client.emit('soak.event', { c: this.id, n: seq }).subscribe({
      error: () => counts.eventEmitErrors++,
    });
  }

  private async request(kind: 'echo' | 'stream', slot: number): Promise<void> {
    const seq = this.seq++;
    const session = this.liveSessionIndex();
    const n = rng.int(5);
    const payload = kind === 'echo' ? { c: this.id, n: seq, slot, pad: 'p'.repeat(rng.int(200)) } : { n };
    const expected = kind === 'echo' ? [payload] : Array.from({ length: n }, (_, i) => i + 1);
    counts.requestsSent++;
    let values: unknown[];
    try {
      values = await lastValueFrom(this.client.send(kind, payload).pipe(toArray()));
    } catch (err) {
      if (err instanceof MsgTransError) {
        counts.failedTyped++;
        failedByCode.set(err.code, (failedByCode.get(err.code) ?? 0) + 1);
      } else {
        counts.failedUntyped++;
        problem(`${this.protocol} client ${this.id}: ${kind} #${seq} failed with an untyped error: ${(err as Error)?.stack ?? JSON.stringify(err)}`);
      }
      return;
    }
    counts.acknowledged++;
    if (isDeepStrictEqual(values, expected)) {
      if (session >= 0 && seq > this.confirmedUpTo[session]) this.confirmedUpTo[session] = seq;
      return;
    }
    const prefix = values.length > expected.length && isDeepStrictEqual(values.slice(0, expected.length), expected);
    if (prefix || (kind === 'echo' && values.length > 1 && values.every((v) => isDeepStrictEqual(v, payload)))) {
      counts.duplicates++;
      problem(`${this.protocol} client ${this.id}: ${kind} #${seq} got ${values.length} replies: ${JSON.stringify(values).slice(0, 200)}`);
    } else {
      counts.wrong++;
      problem(`${this.protocol} client ${this.id}: ${kind} #${seq} expected ${JSON.stringify(expected).slice(0, 120)}, got ${JSON.stringify(values).slice(0, 200)}`);
    }
  }
}

function clientOptions(protocol: Protocol, ports: ChildPorts, certs: DevCertificates): MsgTransClientOptions {
  const common: Partial<MsgTransClientOptions> = {
    requestTimeout: REQUEST_TIMEOUT,
    connectTimeout: 3000,
    // liveness every second: a QUIC client notices a killed server after two silent seconds
    heartbeatInterval: 1000,
    reconnect: { initialDelay: 50, maxDelay: 500 },
  };
  if (protocol === 'tcp') return { ...common, url: `tcp://127.0.0.1:${ports.tcp}` };
  if (protocol === 'ws') return { ...common, url: `ws://127.0.0.1:${ports.ws}/msgtrans` };
  return { ...common, url: `quic://127.0.0.1:${ports.quic}`, tls: { ca: certs.ca } };
}

// ---------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const between = ([min, max]: readonly [number, number]) => (min + rng.float() * Math.max(0, max - min)) * 1000;

async function main(): Promise<number> {
  const startedAt = Date.now();
  // clients log every lost connection; here they are lost on purpose
  Logger.overrideLogger(false);
  const certs = await createDevCertificates();
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'msgtrans-soak-'));
  const logs: string[] = [];
  const uncaught: string[] = [];
  let ports: ChildPorts = { tcp: 0, ws: 0, quic: 0 };

  const startServer = async (): Promise<ServerProcess> => {
    const eventLog = path.join(logDir, `events-${logs.length}.log`);
    logs.push(eventLog);
    const sp = await ServerProcess.start(
      {
        mode: 'soak',
        ports,
        tls: { key: certs.serverKey, cert: certs.serverCert },
        options: { heartbeatInterval: 1000 },
        eventLog,
      },
      {
        onUncaught: (kind, error) => uncaught.push(`${kind}: ${error}`),
        onExit: (code, signal) => uncaught.push(`server process died by itself (${signal ?? code})`),
      },
    );
    ports = sp.ports!;
    try {
      serverHeapAtStart = (await sp.stats(true)).heapUsed;
    } catch {
      // killed already
    }
    return sp;
  };
  let serverHeapAtStart = 0;
  let server = await startServer();

  const clients: SoakClient[] = [];
  const retired: SoakClient[] = [];
  const addClient = (protocol: Protocol) => {
    const c = new SoakClient(protocol, clientOptions(protocol, ports, certs));
    clients.push(c);
    c.start();
    return c;
  };
  for (const p of PROTOCOLS) for (let i = 0; i < CLIENTS_PER_PROTOCOL; i++) addClient(p);
  await sleep(500);
  const heapBefore = await settledHeapUsed();

  console.log(
    `soak: ${SECONDS} s, ${CLIENTS_PER_PROTOCOL} clients per protocol (tcp, ws, quic), server SIGKILLed every ${RESTART[0]}-${RESTART[1]} s, ` +
      `each client disconnected every ${DISCONNECT[0]}-${DISCONNECT[1]} s`,
  );
  const deadline = Date.now() + SECONDS * 1000;
  setTimeout(() => {
    console.error('soak: hard time limit reached, exiting');
    process.exit(3);
  }, (SECONDS + 90) * 1000).unref();

  // server restarts
  let chaos = true;
  let restarting: Promise<void> = Promise.resolve();
  const restarter = (async () => {
    while (chaos) {
      await sleep(Math.min(between(RESTART), Math.max(0, deadline - Date.now())));
      if (!chaos || Date.now() >= deadline) break;
      restarting = (async () => {
        await server.kill();
        counts.serverRestarts++;
        await sleep(rng.int(800));
        server = await startServer();
      })();
      await restarting;
    }
  })();

  // client disconnects
  const disconnecters = PROTOCOLS.flatMap((protocol) =>
    Array.from({ length: CLIENTS_PER_PROTOCOL }, (_, slot) =>
      (async () => {
        while (chaos) {
          await sleep(Math.min(between(DISCONNECT), Math.max(0, deadline - Date.now())));
          if (!chaos || Date.now() >= deadline) break;
          const mine = clients.filter((c) => c.protocol === protocol);
          const victim = mine[slot % mine.length];
          if (!victim) continue;
          if (rng.chance(0.5)) {
            if (victim.dropSocket()) counts.socketDrops++;
          } else {
            clients.splice(clients.indexOf(victim), 1);
            retired.push(victim);
            addClient(protocol);
            counts.clientReplacements++;
            // closing fails its calls under way with ERR_MSGTRANS_CLIENT_CLOSED; its loops end
            const stopping = victim.stop();
            victim.close();
            await stopping;
          }
        }
      })(),
    ),
  );

  const progress = setInterval(() => {
    console.log(
      `  ${((Date.now() - startedAt) / 1000).toFixed(0)}s: requests ${counts.requestsSent} (acknowledged ${counts.acknowledged}, failed ${counts.failedTyped + counts.failedUntyped}), ` +
        `events ${counts.eventsSent}, server restarts ${counts.serverRestarts}`,
    );
  }, 15_000);

  await sleep(Math.max(0, deadline - Date.now()));
  chaos = false;
  await restarter;
  await Promise.all(disconnecters);
  await restarting;
  clearInterval(progress);

  // wind down: calls under way finish (or time out), then everything closes
  await Promise.all(clients.map((c) => c.stop()));
  for (const c of clients) c.close();
  const all = [...retired, ...clients];
  let serverHeapAtEnd: number | undefined;
  try {
    serverHeapAtEnd = (await server.stats(true)).heapUsed;
  } catch {
    // it may have just been restarted; the figure is then missing
  }
  await server.close();

  // events the server handled, over every incarnation
  const handled = new Map<string, number>();
  for (const file of logs) {
    if (!fs.existsSync(file)) continue;
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (line) handled.set(line, (handled.get(line) ?? 0) + 1);
    }
  }
  let confirmed = 0;
  let lost = 0;
  let eventDuplicates = 0;
  let unconfirmed = 0;
  let unconfirmedHandled = 0;
  let handledTotal = 0;
  const sent = new Set<string>();
  for (const c of all) {
    for (const e of c.events) {
      const key = `${c.id} ${e.seq}`;
      sent.add(key);
      const n = handled.get(key) ?? 0;
      handledTotal += n > 0 ? 1 : 0;
      if (n > 1) {
        eventDuplicates++;
        problem(`event ${key} was handled ${n} times`);
      }
      if (e.session >= 0 && c.confirmedUpTo[e.session] > e.seq) {
        confirmed++;
        if (n === 0) {
          lost++;
          problem(`${c.protocol} client ${c.id}: event #${e.seq} was sent on a live connection (a later request on it was answered) but never handled`);
        }
      } else {
        unconfirmed++;
        if (n > 0) unconfirmedHandled++;
      }
    }
  }
  let phantom = 0;
  for (const key of handled.keys()) {
    if (!sent.has(key)) {
      phantom++;
      problem(`the server handled an event nobody sent: ${key}`);
    }
  }
  // drop the bookkeeping before measuring what the clients leave behind
  const clientCount = all.length;
  all.length = 0;
  clients.length = 0;
  retired.length = 0;
  handled.clear();
  sent.clear();
  await sleep(300);
  const heapAfter = await settledHeapUsed();
  fs.rmSync(logDir, { recursive: true, force: true });

  const failedCodes = [...failedByCode].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k.replace('ERR_MSGTRANS_', '')} ${v}`).join(', ');
  const failed =
    counts.failedUntyped + counts.duplicates + counts.wrong + lost + eventDuplicates + phantom + uncaught.length > 0 || counts.acknowledged === 0;
  console.log('');
  for (const p of problems) console.log(`  PROBLEM ${p}`);
  for (const u of uncaught) console.log(`  SERVER ${u.split('\n').slice(0, 6).join('\n    ')}`);
  console.log(
    `soak ${failed ? 'FAILED' : 'ok'}: ${SECONDS} s, ${clientCount} clients (${counts.clientReplacements} replaced, ${counts.socketDrops} sockets dropped), ` +
      `${counts.serverRestarts} server kills+restarts | requests sent ${counts.requestsSent}, acknowledged ${counts.acknowledged}, ` +
      `failed with a typed error ${counts.failedTyped} (${failedCodes || 'none'}), untyped ${counts.failedUntyped}, ` +
      `duplicates ${counts.duplicates}, wrong replies ${counts.wrong} | events sent ${counts.eventsSent} ` +
      `(on a live connection and confirmed ${confirmed}, unconfirmed ${unconfirmed} of which ${unconfirmedHandled} handled, ${counts.eventsWhileDown} emitted while disconnected), ` +
      `handled ${handledTotal}, lost ${lost}, handled twice ${eventDuplicates}, phantom ${phantom} | ` +
      `client heap ${mb(heapBefore)} -> ${mb(heapAfter)}, last server ${mb(serverHeapAtStart)} at start -> ${serverHeapAtEnd === undefined ? 'n/a' : mb(serverHeapAtEnd)} at end`,
  );
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    // anything still open is a leak, but the run must end: report and go
    setTimeout(() => process.exit(code), 200).unref();
    process.exitCode = code;
  },
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
