/**
 * Drives fuzz inputs into a server, many per connection: after an input the
 * server must accept, the next one goes on the same connection; after one
 * it must refuse, the fuzzer waits for the close and reconnects. Every so
 * often (and after every input that should close) a probe, an 'echo'
 * request, shows whether the connection is still alive and answering.
 *
 * What is checked, per connection:
 * - the server closes exactly when the oracle says it must (a probe answered
 *   after a fatal input, or a close after acceptable ones, is a mismatch);
 * - the close reports an acceptable violation code (matched against the
 *   server's own disconnect reports, by our port);
 * - every request the oracle expects an answer to gets exactly one correct
 *   final reply ('echo' replies are compared byte for byte / value for value);
 * - nothing hangs: a probe is answered or the connection closes in time.
 */
import { ANY_CODE, OracleState, judgeFrames, judgeMessages, judgeStream, type OracleLimits, type Outcome, type ReplyExpectation } from './oracle.js';
import { NO_VIOLATION, describeInput, type FuzzGenerator, type FuzzInput, type InputRecord, type Protocol } from './fuzz-inputs.js';
import { openRaw, type RawConn, type Targets } from './raw-peers.js';
import { CODEC, END, ERROR, HAS_ROUTE_TAG, MORE, REQUEST, RESPONSE, ZLIB, ZSTD, Code, encode, frame, zstdDecompress, type InPacket } from '../../test/support/raw-wire.js';
import * as zlib from 'node:zlib';
import { Prng } from './prng.js';

export interface Failure {
  type: string;
  protocol: Protocol;
  detail: string;
  /** Inputs that may have caused it, oldest first. */
  suspects: FuzzInput[];
}

export interface ProtocolStats {
  inputs: number;
  connections: number;
  closedByServer: number;
  closedByFuzzer: number;
  stalls: number;
  probes: number;
  hangs: number;
  connectFailures: number;
  repliesChecked: number;
  /** 'maybe' inputs after which the server neither answered nor closed within maybeTimeout (allowed). */
  maybeWaits: number;
  /** Time spent (ms, summed over connections) opening connections, waiting for probes, closing. */
  openMs: number;
  probeMs: number;
  destroyMs: number;
  byKind: Record<string, number>;
}

export function emptyStats(): ProtocolStats {
  return {
    inputs: 0,
    connections: 0,
    closedByServer: 0,
    closedByFuzzer: 0,
    stalls: 0,
    probes: 0,
    hangs: 0,
    connectFailures: 0,
    repliesChecked: 0,
    maybeWaits: 0,
    openMs: 0,
    probeMs: 0,
    destroyMs: 0,
    byKind: {},
  };
}

/** How one session ended, as the server reports it. */
export interface DisconnectReport {
  protocol: string;
  port: number | undefined;
  /** The violation code, or null for an end without a violation. */
  code: string | null;
  /** Set when the session ended with an error that is neither a violation nor the peer going away. */
  internal?: string;
}

type EndExpectation =
  | { type: 'codes'; codes: string[] }
  | { type: 'clean' }
  | { type: 'any' };

interface EndRecord {
  protocol: Protocol;
  port: number;
  expect: EndExpectation;
  suspects: FuzzInput[];
  at: number;
}

/**
 * Pairs how the fuzzer saw each connection end with how the server reports
 * it, per (protocol, port), in order. A port is reused only after its
 * connection is gone, so first-in first-out per port pairs them correctly.
 */
export class DisconnectMatcher {
  private readonly records = new Map<string, EndRecord[]>();
  private readonly reports = new Map<string, Array<DisconnectReport & { at: number }>>();
  readonly internal: DisconnectReport[] = [];
  matched = 0;

  constructor(
    private readonly onFailure: (f: Failure) => void,
    private readonly graceMs = 10_000,
  ) {}

  record(r: EndRecord): void {
    const key = `${r.protocol}:${r.port}`;
    const list = this.records.get(key) ?? [];
    list.push(r);
    this.records.set(key, list);
    this.pair(key);
  }

  report(r: DisconnectReport): void {
    if (r.internal) this.internal.push(r);
    if (r.port === undefined) return;
    const protocol = r.protocol === 'wss' ? 'ws' : r.protocol;
    const key = `${protocol}:${r.port}`;
    const list = this.reports.get(key) ?? [];
    list.push({ ...r, at: Date.now() });
    this.reports.set(key, list);
    this.pair(key);
  }

  private pair(key: string): void {
    const records = this.records.get(key);
    const reports = this.reports.get(key);
    while (records?.length && reports?.length) {
      const rec = records.shift()!;
      const rep = reports.shift()!;
      this.matched++;
      this.compare(rec, rep);
    }
    if (records?.length === 0) this.records.delete(key);
    if (reports?.length === 0) this.reports.delete(key);
  }

  private compare(rec: EndRecord, rep: DisconnectReport): void {
    const got = rep.code ?? NO_VIOLATION;
    const e = rec.expect;
    if (e.type === 'any') return;
    if (e.type === 'clean') {
      if (rep.code !== null) {
        this.onFailure({
          type: 'unexpected-violation',
          protocol: rec.protocol,
          detail: `server reported ${got} on a connection the fuzzer ended itself (nothing fatal sent)`,
          suspects: rec.suspects,
        });
      }
      return;
    }
    if (e.codes.includes(ANY_CODE) || e.codes.includes(got)) return;
    this.onFailure({
      type: 'wrong-violation-code',
      protocol: rec.protocol,
      detail: `server reported ${got}, expected one of ${e.codes.join(', ')}`,
      suspects: rec.suspects,
    });
  }

  /** Drops what can no longer be paired; an expected violation that never came is a failure. */
  sweep(now = Date.now(), grace = this.graceMs): void {
    for (const [key, list] of this.records) {
      while (list.length && now - list[0].at > grace) {
        const rec = list.shift()!;
        if (rec.expect.type === 'codes' && !rec.expect.codes.includes(ANY_CODE) && !rec.expect.codes.includes(NO_VIOLATION)) {
          this.onFailure({
            type: 'missing-violation',
            protocol: rec.protocol,
            detail: `server closed the connection but reported no session end (expected ${rec.expect.codes.join(', ')})`,
            suspects: rec.suspects,
          });
        }
      }
      if (list.length === 0) this.records.delete(key);
    }
    for (const [key, list] of this.reports) {
      while (list.length && now - list[0].at > grace) list.shift();
      if (list.length === 0) this.reports.delete(key);
    }
  }

  get pendingRecords(): number {
    let n = 0;
    for (const list of this.records.values()) n += list.length;
    return n;
  }
}

export interface RunnerOptions {
  limits: OracleLimits;
  targets: () => Targets;
  deadline: number;
  /** Probe after this many accepted inputs in a row. */
  probeEvery: number;
  /** ms a probe may take before the connection counts as hung. */
  probeTimeout: number;
  /**
   * ms to wait for a probe after a 'maybe' input: the server may legitimately
   * be waiting for more bytes then, so a short wait, after which we close.
   */
  maybeTimeout: number;
  /** Chance that, after a stalling input, the fuzzer waits for the server's incomplete-message timeout. */
  waitForStallChance: number;
  /** The server's incompleteMessageTimeout (ms), or 0 when it has none. */
  incompleteTimeout: number;
  stats: Record<Protocol, ProtocolStats>;
  matcher: DisconnectMatcher;
  onFailure: (f: Failure) => void;
  /** Inputs each worker has sent and not yet seen confirmed, for blaming a crash. */
  inFlight: Map<string, FuzzInput[]>;
  /** Set to stop all workers early. */
  stop?: { stopped: boolean };
}

const PROBE_ROUTE = 'echo';

/** One connection: sends inputs, tracks expected replies, probes. */
class FuzzConnection {
  readonly oracle = new OracleState();
  /** Inputs sent since the last answered probe. */
  unverified: FuzzInput[] = [];
  private readonly awaiting = new Map<number, { exp: ReplyExpectation; gen: number; input: FuzzInput | null }>();
  private readonly answered = new Set<number>();
  private probesSent = 0;
  private probeWaiter: { id: number; resolve: () => void } | null = null;

  constructor(
    readonly conn: RawConn,
    private readonly protocol: Protocol,
    private readonly rng: Prng,
    private readonly opts: RunnerOptions,
  ) {
    conn.onPacket = (p) => this.onPacket(p);
  }

  judge(input: FuzzInput): { outcome: Outcome; replies: ReplyExpectation[] } {
    if (input.fixed) {
      // raw WebSocket frames: fixed verdict; a legal fragmented message is judged as reassembled
      return { outcome: input.fixed, replies: [] };
    }
    const limits = this.opts.limits;
    switch (this.protocol) {
      case 'tcp':
        return judgeStream(Buffer.concat(input.chunks.map((c) => (c.type === 'text' ? Buffer.from(c.data) : c.data))), limits, this.oracle, input.known);
      case 'quic':
        return judgeFrames(Buffer.concat(input.chunks.map((c) => (c.type === 'text' ? Buffer.from(c.data) : c.data))), limits, this.oracle, input.known);
      case 'ws': {
        if (input.judgeAs) return judgeMessages(input.judgeAs, limits, this.oracle, input.known);
        const messages: Buffer[] = [];
        for (const c of input.chunks) {
          if (c.type === 'text') return { outcome: { kind: 'close', codes: [Code.UNSUPPORTED_MESSAGE] }, replies: [] };
          messages.push(c.data);
        }
        return judgeMessages(messages, limits, this.oracle, input.known);
      }
    }
  }

  expect(replies: ReplyExpectation[], input: FuzzInput): void {
    for (const exp of replies) {
      if (this.awaiting.has(exp.messageId) || this.answered.has(exp.messageId)) {
        // two requests with one id on one connection (a mutation can do that): no exact check possible
        this.awaiting.set(exp.messageId, { exp: { ...exp, kind: 'any' }, gen: this.probesSent, input });
        this.answered.delete(exp.messageId);
        continue;
      }
      this.awaiting.set(exp.messageId, { exp, gen: this.probesSent, input });
    }
  }

  private fail(type: string, detail: string, input: FuzzInput | null): void {
    this.opts.onFailure({ type, protocol: this.protocol, detail, suspects: input ? [input] : [...this.unverified] });
  }

  private onPacket(p: InPacket): void {
    if (p.packetType !== RESPONSE) {
      this.fail('unexpected-packet', `server sent packet_type ${p.packetType} (id ${p.messageId}) to a peer that never asked for pushes`, null);
      return;
    }
    const entry = this.awaiting.get(p.messageId);
    if (!entry) {
      if (this.answered.has(p.messageId)) this.fail('duplicate-reply', `a second final reply for id ${p.messageId} (flags 0x${p.flags.toString(16)})`, null);
      // otherwise: a reply to a request the oracle did not register (mutated, 'maybe'): fine
      return;
    }
    const { exp, input } = entry;
    const final = !(p.flags & MORE);
    if (p.bizType !== exp.bizType) this.fail('wrong-reply', `reply to id ${p.messageId} has biz_type ${p.bizType}, request had ${exp.bizType}`, input);
    if (exp.kind !== 'any') {
      const problem = checkReply(p, exp);
      this.opts.stats[this.protocol].repliesChecked++;
      if (problem) this.fail('wrong-reply', `reply to id ${p.messageId}: ${problem}`, input);
    }
    if (final) {
      this.awaiting.delete(p.messageId);
      this.answered.add(p.messageId);
      if (this.answered.size > 10_000) this.answered.clear();
      if (this.probeWaiter?.id === p.messageId) {
        const w = this.probeWaiter;
        this.probeWaiter = null;
        // replies to requests sent before the previous probe must all be in by now
        for (const [id, e] of this.awaiting) {
          if (e.gen < this.probesSent - 1) {
            this.awaiting.delete(id);
            this.fail('missing-reply', `no final reply to request id ${id} (${e.exp.kind}) although later requests were answered`, e.input);
          }
        }
        w.resolve();
      }
    }
  }

  /** Sends a probe; 'replied', 'closed' or 'timeout'. */
  async probe(timeoutMs = this.opts.probeTimeout): Promise<'replied' | 'closed' | 'timeout'> {
    if (this.conn.closed) return 'closed';
    const id = this.rng.id();
    const value = { probe: this.probesSent, r: this.rng.u32() };
    const packet = encode({ packetType: REQUEST, messageId: id, flags: HAS_ROUTE_TAG | CODEC, ext: `route:${PROBE_ROUTE}`, payload: JSON.stringify(value) });
    this.awaiting.set(id, { exp: { messageId: id, bizType: 0, kind: 'echo-json', json: JSON.stringify(value) }, gen: this.probesSent, input: null });
    this.probesSent++;
    this.opts.stats[this.protocol].probes++;
    const replied = new Promise<void>((resolve) => (this.probeWaiter = { id, resolve }));
    const started = performance.now();
    const chunk =
      this.protocol === 'tcp'
        ? { type: 'bytes' as const, data: packet }
        : this.protocol === 'quic'
          ? { type: 'bytes' as const, data: frame(packet) }
          : { type: 'binary' as const, data: packet };
    await this.conn.send(chunk);
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      replied.then(() => 'replied' as const),
      this.conn.waitClosed(timeoutMs).then((closed) => (closed ? ('closed' as const) : ('timeout' as const))),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs + 100);
      }),
    ]);
    clearTimeout(timer);
    this.opts.stats[this.protocol].probeMs += performance.now() - started;
    this.probeWaiter = null;
    if (result !== 'replied') this.awaiting.delete(id);
    // a close just after the reply arrived: the reply counts
    return result;
  }

  /** Forgets expectations: after a close, unanswered requests are not owed anything. */
  forget(): void {
    this.awaiting.clear();
  }
}

function checkReply(p: InPacket, exp: ReplyExpectation): string | undefined {
  let payload = p.payload;
  try {
    if (p.compression === ZLIB) payload = zlib.inflateSync(payload);
    else if (p.compression === ZSTD) payload = zstdDecompress(payload);
  } catch (err) {
    return `undecodable compressed reply: ${(err as Error).message}`;
  }
  const flags = p.flags;
  if (exp.kind === 'error') return flags & ERROR ? undefined : `expected an ERROR reply, got flags 0x${flags.toString(16)}`;
  if (flags & (ERROR | MORE | END)) return `expected a single value, got flags 0x${flags.toString(16)} payload ${payload.subarray(0, 80).toString()}`;
  if (exp.kind === 'echo-raw') {
    if (flags & CODEC) return 'expected a raw reply, got CODEC';
    return payload.equals(exp.raw!) ? undefined : `raw echo differs: sent ${exp.raw!.toString('hex').slice(0, 64)}, got ${payload.toString('hex').slice(0, 64)}`;
  }
  if (!(flags & CODEC)) return 'expected a CODEC reply';
  if (exp.json === undefined) return payload.length === 0 ? undefined : `expected an empty (undefined) reply, got ${payload.subarray(0, 80).toString()}`;
  let got: string;
  try {
    got = JSON.stringify(JSON.parse(payload.toString('utf8')));
  } catch {
    return `reply is not JSON: ${payload.subarray(0, 80).toString()}`;
  }
  return got === exp.json ? undefined : `echo differs: sent ${exp.json.slice(0, 80)}, got ${got.slice(0, 80)}`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `maxInputs` inputs (or until the deadline) from `gen` against the
 * server, reconnecting whenever a connection ends.
 */
export async function runWorker(workerId: string, gen: FuzzGenerator, maxInputs: number, opts: RunnerOptions): Promise<void> {
  const protocol = gen.protocol;
  const stats = opts.stats[protocol];
  const rng = new Prng(`${workerId}/probes`);
  let sent = 0;
  const background = new Set<Promise<void>>();
  const more = () => sent < maxInputs && Date.now() < opts.deadline && !opts.stop?.stopped;
  while (more()) {
    let conn: RawConn;
    const opening = performance.now();
    try {
      conn = await openRaw(protocol, opts.targets());
      stats.openMs += performance.now() - opening;
    } catch {
      stats.connectFailures++;
      await sleep(100);
      continue;
    }
    stats.connections++;
    const fc = new FuzzConnection(conn, protocol, rng, opts);
    opts.inFlight.set(workerId, fc.unverified);
    let expectEnd: EndExpectation = { type: 'clean' };
    let endedByServerAsExpected = false;
    let detached = false;
    while (!conn.closed && more()) {
      const input = gen.next();
      sent++;
      stats.inputs++;
      stats.byKind[input.kind.split(':')[0]] = (stats.byKind[input.kind.split(':')[0]] ?? 0) + 1;
      const verdict = fc.judge(input);
      fc.unverified.push(input);
      fc.expect(verdict.replies, input);
      for (const chunk of input.chunks) await conn.send(chunk);
      const outcome = verdict.outcome;
      if (outcome.kind === 'ok') {
        if (fc.unverified.length < opts.probeEvery) continue;
        const r = await fc.probe();
        if (r === 'replied') {
          fc.unverified.length = 0;
          continue;
        }
        if (r === 'closed') {
          opts.onFailure({
            type: 'unexpected-close',
            protocol,
            detail: `server closed the connection after inputs the oracle accepts${conn.closeCode !== undefined ? ` (close code ${conn.closeCode})` : ''}`,
            suspects: [...fc.unverified],
          });
          expectEnd = { type: 'any' };
        } else {
          stats.hangs++;
          opts.onFailure({ type: 'hang', protocol, detail: `probe not answered within ${opts.probeTimeout} ms after accepted inputs`, suspects: [...fc.unverified] });
          expectEnd = { type: 'any' };
        }
        break;
      }
      if (outcome.kind === 'close' || outcome.kind === 'maybe') {
        const r = await fc.probe(outcome.kind === 'maybe' ? opts.maybeTimeout : opts.probeTimeout);
        if (outcome.kind === 'maybe') {
          if (r === 'replied') {
            fc.unverified.length = 0;
            continue;
          }
          expectEnd = { type: 'any' };
          if (r === 'timeout') stats.maybeWaits++; // a 'maybe' may legitimately leave the server waiting
          break;
        }
        if (r === 'replied') {
          opts.onFailure({
            type: 'accepted-invalid',
            protocol,
            detail: `server kept the connection and answered after an input it must refuse (${outcome.codes.join('|')})`,
            suspects: [input],
          });
          expectEnd = { type: 'any' };
          break;
        }
        if (r === 'timeout') {
          stats.hangs++;
          opts.onFailure({ type: 'hang', protocol, detail: `no close within ${opts.probeTimeout} ms after an input that must close (${outcome.codes.join('|')})`, suspects: [input] });
          expectEnd = { type: 'any' };
          break;
        }
        expectEnd = { type: 'codes', codes: outcome.codes };
        endedByServerAsExpected = true;
        checkCloseCode(protocol, conn, outcome.codes, input, opts);
        break;
      }
      // stall: the server must wait for more; either we give up, or we let its incomplete-message timeout fire
      stats.stalls++;
      if (opts.incompleteTimeout > 0 && protocol !== 'ws' && rng.float() < opts.waitForStallChance) {
        // watched in the background: the worker goes on with a new connection meanwhile
        const suspects = [...fc.unverified];
        fc.forget();
        const watching: Promise<void> = watchStall(conn, input, suspects, opts).finally(() => background.delete(watching));
        background.add(watching);
        detached = true;
      }
      break;
    }
    if (detached) {
      opts.inFlight.delete(workerId);
      continue;
    }
    fc.forget();
    const closedByServer = conn.closed && conn.closedByServer;
    if (closedByServer) stats.closedByServer++;
    else stats.closedByFuzzer++;
    if (closedByServer && !endedByServerAsExpected && expectEnd.type === 'clean') {
      // closed while we were still sending acceptable inputs (seen before any probe)
      opts.onFailure({
        type: 'unexpected-close',
        protocol,
        detail: 'server closed the connection while only acceptable inputs were sent',
        suspects: [...fc.unverified],
      });
      expectEnd = { type: 'any' };
    }
    const port = conn.localPort;
    if (protocol === 'quic' && expectEnd.type === 'clean') {
      // A force-destroyed QUIC client may never get its CONNECTION_CLOSE out; the server then sees a
      // peer gone silent, and if that peer left a frame half sent, its incomplete-message timeout is right.
      expectEnd = { type: 'codes', codes: [NO_VIOLATION, Code.INCOMPLETE_TIMEOUT] };
    }
    const record = { protocol, port, expect: expectEnd, suspects: [...fc.unverified], at: Date.now() };
    opts.inFlight.delete(workerId);
    // released in the background (a QUIC client takes tens of ms to tear down); the worker goes on
    const destroying = performance.now();
    const releasing: Promise<void> = conn
      .destroy()
      .then(() => {
        stats.destroyMs += performance.now() - destroying;
        opts.matcher.record({ ...record, at: Date.now() });
      })
      .finally(() => background.delete(releasing));
    background.add(releasing);
    // but never more than a few per worker at once
    while (background.size > 8) await Promise.race(background);
  }
  await Promise.all(background);
}

/** Waits for the server's incomplete-message timeout to drop a connection left mid-packet. */
async function watchStall(conn: RawConn, input: FuzzInput, suspects: FuzzInput[], opts: RunnerOptions): Promise<void> {
  const protocol = conn.protocol;
  const stats = opts.stats[protocol];
  const limit = opts.incompleteTimeout * 3 + 1000;
  const closed = await conn.waitClosed(limit);
  let expectEnd: EndExpectation = { type: 'codes', codes: [Code.INCOMPLETE_TIMEOUT] };
  if (!closed) {
    stats.hangs++;
    opts.onFailure({ type: 'hang', protocol, detail: `a stalled packet was not dropped within ${limit} ms`, suspects: [input] });
    expectEnd = { type: 'any' };
  }
  if (conn.closedByServer) stats.closedByServer++;
  else stats.closedByFuzzer++;
  const port = conn.localPort;
  await conn.destroy();
  opts.matcher.record({ protocol, port, expect: expectEnd, suspects, at: Date.now() });
}

/** WebSocket close codes (RFC 6455) the server should use for each violation. */
function checkCloseCode(protocol: Protocol, conn: RawConn, codes: string[], input: FuzzInput, opts: RunnerOptions): void {
  if (codes.includes(ANY_CODE) || conn.closeCode === undefined) return;
  if (protocol === 'ws') {
    if (input.kind.startsWith('raw-frame')) return; // closed by the WebSocket layer itself, with its own codes
    const allowed = new Set<number>();
    for (const code of codes) {
      if (code === Code.UNSUPPORTED_MESSAGE) allowed.add(1003);
      else if (code === Code.PACKET_TOO_LARGE) allowed.add(1009);
      // limits: RFC 6455 suggests 1008 (policy violation); the library sends 1011 (internal error). Both pass.
      else if (code === Code.TOO_MANY_IN_FLIGHT || code === Code.INCOMPLETE_TIMEOUT) allowed.add(1008).add(1011);
      else if (code === NO_VIOLATION) allowed.add(1000);
      else allowed.add(1002);
    }
    // 1006: the socket went away without a close frame (allowed: the server may just drop a bad peer)
    if (!allowed.has(conn.closeCode) && conn.closeCode !== 1006) {
      opts.onFailure({
        type: 'wrong-close-code',
        protocol,
        detail: `WebSocket closed with ${conn.closeCode}, expected ${[...allowed].join('/')} for ${codes.join('|')}`,
        suspects: [input],
      });
    }
  }
  if (protocol === 'quic' && !codes.includes(NO_VIOLATION) && conn.closeCode === 0) {
    opts.onFailure({ type: 'wrong-close-code', protocol, detail: `QUIC closed with application code 0 (normal) after ${codes.join('|')}`, suspects: [input] });
  }
}

/** A failure as plain data (see InputRecord). */
export interface FailureRecord {
  type: string;
  protocol: Protocol;
  detail: string;
  suspects: InputRecord[];
}

/** A failure as text, with the inputs that may have caused it. */
export function describeFailure(f: Failure | FailureRecord): string {
  const lines = [`[${f.protocol}] ${f.type}: ${f.detail}`];
  for (const s of f.suspects.slice(-5)) lines.push(`    ${describeInput(s)}`);
  if (f.suspects.length > 5) lines.push(`    (${f.suspects.length - 5} earlier inputs on the same connection not shown)`);
  return lines.join('\n');
}

export interface CampaignOptions extends Omit<RunnerOptions, 'stats' | 'probeEvery'> {
  protocols: Protocol[];
  /** Inputs per protocol (shared among its workers). */
  inputs: Record<Protocol, number>;
  /** Concurrent fuzz connections per protocol. */
  workers: Record<Protocol, number>;
  seed: number | string;
  probeEvery: Record<Protocol, number>;
  /** Called with the stats object as soon as it exists (for progress output). */
  onStats?: (stats: Record<Protocol, ProtocolStats>) => void;
}

/** Runs every protocol's workers concurrently until their inputs are spent or the deadline passes. */
export async function runCampaign(o: CampaignOptions, makeGenerator: (protocol: Protocol, worker: number) => FuzzGenerator): Promise<Record<Protocol, ProtocolStats>> {
  const stats = { tcp: emptyStats(), ws: emptyStats(), quic: emptyStats() };
  o.onStats?.(stats);
  const sweeper = setInterval(() => o.matcher.sweep(), 1000);
  try {
    const runs: Promise<void>[] = [];
    for (const protocol of o.protocols) {
      const workers = Math.max(1, o.workers[protocol]);
      const total = o.inputs[protocol];
      for (let w = 0; w < workers; w++) {
        const share = Math.floor(total / workers) + (w < total % workers ? 1 : 0);
        if (share === 0) continue;
        const opts: RunnerOptions = { ...o, stats, probeEvery: o.probeEvery[protocol] };
        runs.push(runWorker(`${protocol}#${w}`, makeGenerator(protocol, w), share, opts));
      }
    }
    await Promise.all(runs);
  } finally {
    clearInterval(sweeper);
  }
  return stats;
}
