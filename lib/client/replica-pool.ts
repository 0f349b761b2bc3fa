import { lookup } from 'node:dns/promises';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConnectionError } from '../errors/msgtrans-connection-error.js';
import { MsgTransError } from '../errors/msgtrans-error.js';
import { MsgTransConnectionState } from '../interfaces/msgtrans-events.interface.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';
import type { MsgTransEndpoint } from '../transport/endpoint.js';
import type { ConnectionPolicy } from './connection-state-machine.js';
import { LoadBalancer, type MsgTransLoadBalancing } from './load-balancer.js';
import { Replica, type ReplicaHost } from './replica.js';

const { IDLE, CONNECTING, AUTHENTICATING, CONNECTED, RECONNECTING, CLOSED } = MsgTransConnectionState;
const NOTHING_TO_WITHDRAW = (): void => undefined;

/** URL scheme of a name resolved to every address it has: `dns://` (tcp) or `dns+<scheme>://`. */
export const DNS_SCHEME = 'dns';

/** How the pool spreads calls and follows DNS names. */
export interface ReplicaPoolOptions {
  loadBalancing: MsgTransLoadBalancing;
  /** A call whose connection failed before its request was written tries another replica. */
  retryOnConnectFailure: boolean;
  /** ms between resolutions of `dns://` names. */
  dnsRefreshInterval: number;
}

/** Is `endpoint` a `dns://` name rather than an address? */
export function isDnsEndpoint(endpoint: MsgTransEndpoint): boolean {
  return endpoint.protocol === DNS_SCHEME || endpoint.protocol.startsWith(`${DNS_SCHEME}+`);
}

/** The protocol a `dns://` / `dns+ws://` name is reached with. */
export function dnsTargetProtocol(endpoint: MsgTransEndpoint): string {
  return endpoint.protocol === DNS_SCHEME ? 'tcp' : endpoint.protocol.slice(DNS_SCHEME.length + 1);
}

/**
 * The replicas of a service, each with its own connection state machine,
 * seen by the client as one connection: `state` is the best of theirs
 * (connected while any replica is), and {@link acquire} hands a call the
 * session of one connected replica chosen by the load balancer. Replicas
 * that are down are skipped and reconnected in the background with the
 * usual backoff; a replica that drops fails only the calls it carried.
 *
 * `dns://name:port` entries become one replica per A/AAAA address of the
 * name, resolved on first use and every `dnsRefreshInterval` ms after
 * (the Kubernetes headless-service pattern): new addresses are added,
 * vanished ones closed once nothing waits on them.
 */
export class ReplicaPool {
  private replicas: Replica[] = [];
  private readonly balancer: LoadBalancer;
  private readonly dnsNames: MsgTransEndpoint[];
  private aggregate: MsgTransConnectionState = IDLE;
  // true from the first use to close(): replicas reconnect in the background meanwhile
  private inUse = false;
  private resolving: Promise<void> | null = null;
  private refreshTimer: NodeJS.Timeout | null = null;
  private readonly connectedScratch: MsgTransSession[] = [];

  constructor(
    endpoints: MsgTransEndpoint[],
    private readonly host: ReplicaHost & { poolTransition(from: MsgTransConnectionState, to: MsgTransConnectionState): void },
    private readonly policy: ConnectionPolicy,
    private readonly options: ReplicaPoolOptions,
  ) {
    this.balancer = new LoadBalancer(options.loadBalancing);
    this.dnsNames = endpoints.filter(isDnsEndpoint);
    for (const endpoint of endpoints) if (!isDnsEndpoint(endpoint)) this.replicas.push(this.createReplica(endpoint));
  }

  /** The pool's state: connected while any replica is, else the most hopeful of theirs. */
  get state(): MsgTransConnectionState {
    return this.aggregate;
  }

  /** Every replica now known (DNS names resolved so far). */
  get members(): readonly Replica[] {
    return this.replicas;
  }

  /** The session the next call would go to, when a replica is connected; else null. */
  get connected(): MsgTransSession | null {
    if (this.replicas.length === 1 && this.dnsNames.length === 0) return this.replicas[0].connection.connected;
    const sessions = this.connectedSessions(undefined);
    return sessions.length === 0 ? null : this.balancer.pick(sessions);
  }

  /**
   * Hands a call the session of one replica (see
   * `ConnectionStateMachine.acquire`). With several replicas and none
   * connected, see `acquireWaiting`. `avoid` is left out while another is connected.
   */
  acquire(
    timeoutMs: number,
    ready: (session: MsgTransSession) => void,
    fail: (error: Error) => void,
    avoid?: MsgTransSession,
  ): () => void {
    if (this.replicas.length === 1 && this.dnsNames.length === 0) return this.replicas[0].connection.acquire(timeoutMs, ready, fail);
    this.use();
    if (this.replicas.length === 0) return this.acquireAfterResolving(timeoutMs, ready, fail);
    const sessions = this.connectedSessions(avoid);
    if (sessions.length > 0) {
      ready(this.balancer.pick(sessions));
      return NOTHING_TO_WITHDRAW;
    }
    return this.acquireWaiting(timeoutMs, ready, fail);
  }

  /** Starts connecting every replica that is not (a push subscriber appeared). */
  wake(): void {
    if (this.replicas.length === 1 && this.dnsNames.length === 0) {
      this.replicas[0].connection.wake();
      return;
    }
    this.use();
    for (const replica of this.replicas) replica.connection.wake();
  }

  /** Closes every replica; waiting calls fail with `ERR_MSGTRANS_CLIENT_CLOSED`. A later call starts again. */
  close(): void {
    this.inUse = false;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = null;
    for (const replica of this.replicas) replica.connection.close();
    if (this.dnsNames.length > 0) {
      // addresses are resolved afresh on the next use
      this.replicas = [];
      this.setAggregate(CLOSED);
    }
  }

  /** The client's session callback: routes a closed session to its replica. Returns the replica. */
  sessionClosed(session: MsgTransSession): Replica | undefined {
    for (const replica of this.replicas) {
      if (replica.connection.connected === session) {
        replica.connection.sessionClosed(session);
        return replica;
      }
    }
    return undefined;
  }

  /** The replica whose connected session this is. */
  replicaOf(session: MsgTransSession): Replica | undefined {
    for (const replica of this.replicas) if (replica.connection.connected === session) return replica;
    return undefined;
  }

  /** Where the pool connects, for messages. */
  describe(): string {
    const names = [...this.replicas.map((r) => r.name), ...this.dnsNames.map((d) => `${d.protocol}://${d.host}:${d.port}`)];
    return names.length === 1 ? names[0] : `[${names.join(', ')}]`;
  }

  /** @internal a replica changed state: the pool's state follows. */
  replicaTransition(): void {
    this.setAggregate(this.computeState());
  }

  /** True for a multi-replica pool in use: replicas then reconnect without waiting for a call. */
  wantsConnection(): boolean {
    return this.inUse && (this.replicas.length > 1 || this.dnsNames.length > 0);
  }

  private use(): void {
    if (this.inUse) return;
    this.inUse = true;
    if (this.dnsNames.length > 0) {
      void this.resolve();
      this.refreshTimer = setInterval(() => void this.resolve(), this.options.dnsRefreshInterval);
      this.refreshTimer.unref();
    }
  }

  private connectedSessions(avoid: MsgTransSession | undefined): MsgTransSession[] {
    const sessions = this.connectedScratch;
    sessions.length = 0;
    for (const replica of this.replicas) {
      const session = replica.connection.connected;
      if (session && session !== avoid && !replica.retired) sessions.push(session);
    }
    if (sessions.length === 0 && avoid && !avoid.closed) sessions.push(avoid);
    return sessions;
  }

  /**
   * No replica is connected: the call waits on every replica at once (each
   * trying to connect) and goes to the first that connects; a failure
   * before the request was written only ends the call once every replica
   * has failed. Without `retryOnConnectFailure`, it waits on one replica
   * (one that has not just failed, if any) and shares its fate.
   */
  private acquireWaiting(timeoutMs: number, ready: (session: MsgTransSession) => void, fail: (error: Error) => void): () => void {
    for (const replica of this.replicas) replica.connection.wake();
    const candidates = this.options.retryOnConnectFailure
      ? this.replicas
      : [this.replicas.find((r) => !r.connection.failing) ?? this.replicas[0]];
    let settled = false;
    let remaining = candidates.length;
    const withdraws: (() => void)[] = [];
    const withdrawAll = () => {
      settled = true;
      for (const withdraw of withdraws) withdraw();
    };
    for (const replica of candidates) {
      withdraws.push(
        replica.connection.acquire(
          timeoutMs,
          (session) => {
            if (settled) return;
            withdrawAll();
            ready(session);
          },
          (error) => {
            if (settled) return;
            if (--remaining > 0 && isConnectFailure(error)) return;
            withdrawAll();
            fail(error);
          },
        ),
      );
    }
    return withdrawAll;
  }

  private acquireAfterResolving(timeoutMs: number, ready: (session: MsgTransSession) => void, fail: (error: Error) => void): () => void {
    let withdrawn = false;
    let inner = NOTHING_TO_WITHDRAW;
    const startedAt = Date.now();
    (this.resolving ?? this.resolve()).then(() => {
      if (withdrawn) return;
      if (this.replicas.length === 0) {
        fail(this.noReplica());
        return;
      }
      const remaining = timeoutMs === 0 ? 0 : Math.max(1, timeoutMs - (Date.now() - startedAt));
      inner = this.acquire(remaining, ready, fail);
    });
    return () => {
      withdrawn = true;
      inner();
    };
  }

  /** Resolves every DNS name; the replica set follows. A failed lookup keeps the addresses known before. */
  private resolve(): Promise<void> {
    if (this.resolving) return this.resolving;
    this.resolving = Promise.all(this.dnsNames.map((name) => resolveName(name)))
      .then((results) => {
        if (!this.inUse) return;
        const wanted = new Map<string, MsgTransEndpoint>();
        for (const [i, endpoints] of results.entries()) {
          if (endpoints === null) {
            // keep what this name resolved to before
            for (const r of this.replicas) if (r.source === this.dnsNames[i]) wanted.set(r.name, r.endpoint);
            continue;
          }
          for (const endpoint of endpoints) wanted.set(keyOf(endpoint), endpoint);
        }
        this.lastLookupFailed = results.some((r) => r === null);
        this.applyResolution(wanted, results);
      })
      .finally(() => {
        this.resolving = null;
      });
    return this.resolving;
  }

  private lastLookupFailed = false;

  private applyResolution(wanted: Map<string, MsgTransEndpoint>, _results: unknown[]): void {
    const kept: Replica[] = [];
    for (const replica of this.replicas) {
      if (!replica.source || wanted.has(replica.name)) {
        kept.push(replica);
        wanted.delete(replica.name);
      } else {
        // gone from DNS: no new calls; its connection ends (what it carries fails, as a drop would)
        retire(replica);
      }
    }
    for (const endpoint of wanted.values()) {
      const replica = this.createReplica(endpoint, (endpoint as DnsResolved).source);
      kept.push(replica);
      replica.connection.wake();
    }
    this.replicas = kept;
    this.setAggregate(this.computeState());
  }

  private createReplica(endpoint: MsgTransEndpoint, source?: MsgTransEndpoint): Replica {
    const replica = new Replica(
      endpoint,
      {
        dial: (e) => this.host.dial(e),
        authenticate: (session, where) => this.host.authenticate(session, where),
        wantsConnection: () => this.host.wantsConnection() || this.wantsConnection(),
        transition: (r, from, to, error) => {
          // the client's status first, then its events, as with a single connection
          this.replicaTransition();
          this.host.transition(r, from, to, error);
        },
      },
      this.policy,
    );
    replica.source = source;
    return replica;
  }

  private computeState(): MsgTransConnectionState {
    let best: MsgTransConnectionState = this.replicas.length === 0 ? (this.inUse ? CONNECTING : this.aggregate) : CLOSED;
    for (const replica of this.replicas) {
      const state = replica.connection.state;
      if (RANK[state] > RANK[best]) best = state;
    }
    return best;
  }

  private setAggregate(to: MsgTransConnectionState): void {
    const from = this.aggregate;
    if (from === to) return;
    this.aggregate = to;
    this.host.poolTransition(from, to);
  }

  private noReplica(): MsgTransConnectionError {
    const why = this.lastLookupFailed ? ' (DNS lookup failed)' : '';
    return new MsgTransConnectionError(MsgTransErrorCode.CONNECT_FAILED, `No replica of ${this.describe()} to connect to${why}`);
  }
}

// the pool reports the most hopeful state of its replicas
const RANK: Record<MsgTransConnectionState, number> = {
  [CLOSED]: 0,
  [IDLE]: 1,
  [RECONNECTING]: 2,
  [CONNECTING]: 3,
  [AUTHENTICATING]: 4,
  [CONNECTED]: 5,
};

/** An endpoint a DNS name resolved to, with the name it came from. */
interface DnsResolved extends MsgTransEndpoint {
  source: MsgTransEndpoint;
}

function keyOf(endpoint: MsgTransEndpoint): string {
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  return `${endpoint.protocol}://${host}:${endpoint.port}`;
}

/** Every address of a DNS name as endpoints of its target protocol; null when the lookup failed. */
async function resolveName(name: MsgTransEndpoint): Promise<DnsResolved[] | null> {
  let addresses: { address: string }[];
  try {
    // getaddrinfo: A and AAAA records, and /etc/hosts, as every other client on the host sees them
    addresses = await lookup(name.host, { all: true });
  } catch {
    return null;
  }
  const protocol = dnsTargetProtocol(name);
  const unique = [...new Set(addresses.map((a) => a.address))];
  return unique.map((address) => ({ ...name, protocol, host: address, source: name }));
}

/** TLS settings to reach `endpoint`: a DNS-found address is checked against the service name, not its IP. */
export function replicaTls<T extends { servername?: string }>(endpoint: MsgTransEndpoint, fallback: T | undefined): T | undefined {
  const tls = (endpoint.tls as T | undefined) ?? fallback;
  const source = (endpoint as Partial<DnsResolved>).source;
  if (!source || !tls || tls.servername !== undefined) return tls;
  return { ...tls, servername: source.host };
}

// a replica gone from DNS finishes what it carries (bounded), then closes
const RETIRE_POLL_MS = 1000;
const RETIRE_MAX_POLLS = 60;

function retire(replica: Replica): void {
  replica.retired = true;
  let polls = 0;
  const timer = setInterval(() => {
    const session = replica.connection.connected;
    if (!session || session.pendingRequests === 0 || ++polls >= RETIRE_MAX_POLLS) {
      clearInterval(timer);
      replica.connection.close();
    }
  }, RETIRE_POLL_MS);
  timer.unref();
}

function isConnectFailure(error: Error): boolean {
  return (
    error instanceof MsgTransError &&
    (error.code === MsgTransErrorCode.CONNECT_FAILED || error.code === MsgTransErrorCode.CONNECTION_CLOSED)
  );
}
