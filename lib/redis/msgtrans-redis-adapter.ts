import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { createClient, type RedisClientOptions } from 'redis';
import { Observable, type Subscription } from 'rxjs';
import { positiveInteger } from '../common/resolve-options.js';
import { MSGTRANS_DEFAULTS } from '../constants.js';
import type { WireRoute } from '../envelope/route.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import { MsgTransError } from '../errors/msgtrans-error.js';
import { MsgTransTimeoutError } from '../errors/msgtrans-timeout-error.js';
import type {
  MsgTransAdapter,
  MsgTransAdapterHost,
  MsgTransPush,
  MsgTransPushTarget,
  MsgTransSessionInfo,
} from '../server/msgtrans-adapter.interface.js';
import { decodeAdapterMessage, encodeAdapterMessage } from './adapter-message.js';

/** Options of {@link MsgTransRedisAdapter}. */
export interface MsgTransRedisAdapterOptions {
  /** Redis to meet the other instances at. Default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Prefix of every channel: instances sharing it form one cluster. Default `msgtrans`. */
  keyPrefix?: string;
  /** This instance's id in the cluster. Default: random. */
  nodeId?: string;
  /** ms between heartbeats; an instance silent for 3 of them is taken as gone. Default 5000. */
  heartbeatInterval?: number;
  /** ms a cluster query (`fetchSessions`), or each value of a `sendTo` relayed to another instance, may take. Default 30000. */
  requestTimeout?: number;
  /** Further node-redis client options (TLS, password, …); `url` above wins. */
  redis?: RedisClientOptions;
}

/** Header of every message between instances: `t` its type, `n` the sending instance. */
interface Header {
  t: 'push' | 'join' | 'leave' | 'req' | 'res' | 'cancel' | 'fetch' | 'list' | 'hb' | 'hello' | 'conn' | 'closed' | 'bye';
  n: string;
  // push
  to?: MsgTransPushTarget;
  w?: WireRoute;
  m?: Record<string, string>;
  x?: string;
  // join/leave/req/conn/closed: a session; join/leave: a room
  s?: string;
  r?: string;
  // req/res/cancel/fetch/list: request id
  id?: number;
  // res: next | error | complete
  e?: 'next' | 'error' | 'complete';
  // hello: answer with a hello
  a?: boolean;
  // conn/closed: the session's protocol and address
  p?: string;
  ra?: string;
  // list: the sessions of the sender
  l?: MsgTransSessionInfo[];
}

interface PendingRequest {
  node: string;
  timer: NodeJS.Timeout | null;
  next(header: Header, data: unknown): void;
  fail(error: Error): void;
}

type RedisClient = ReturnType<typeof createClient>;

const HEARTBEATS_MISSED = 3;
// a Redis that comes back is found within a second
const RECONNECT_MAX_DELAY_MS = 1000;
// a single instance must not queue cross-instance pushes without bound while Redis is away
const FIRST_CONNECT_WAIT_MS = 3000;

/**
 * Rooms, pushes, `sendTo` and presence across every server instance that
 * meets at the same Redis with the same `keyPrefix` (node-redis, an
 * optional peer dependency: `npm install redis`).
 *
 * ```ts
 * new MsgTransServer({ listen, adapter: new MsgTransRedisAdapter({ url: 'redis://127.0.0.1:6379' }) })
 * ```
 *
 * Design (after socket.io's Redis adapter and what its issues taught):
 * - one Pub/Sub channel per room, subscribed only while the instance has a
 *   member in it, so an instance does not receive every room push of the
 *   cluster; a channel for broadcasts, one per instance for what is
 *   addressed to it (a session's pushes, joins, requests and replies), and
 *   a presence channel (heartbeats, sessions coming and going);
 * - payloads travel as bytes in one Buffer message: binary data is not base64'd;
 * - requests between instances carry an id and a timeout; an instance
 *   silent for three heartbeats is taken as gone: its sessions leave the
 *   cluster view and requests to it fail with `ERR_MSGTRANS_TIMEOUT`;
 * - delivery is at most once: a push published while Redis is unreachable
 *   is dropped (never queued without bound), pushes to this instance's own
 *   sessions are delivered locally whatever Redis does, and when Redis is
 *   back (node-redis reconnects with backoff) the instances re-announce
 *   themselves and cross-instance delivery resumes by itself.
 */
export class MsgTransRedisAdapter implements MsgTransAdapter {
  readonly nodeId: string;
  private readonly logger = new Logger(MsgTransRedisAdapter.name);
  private readonly prefix: string;
  private readonly heartbeatInterval: number;
  private readonly requestTimeout: number;
  private readonly clientOptions: RedisClientOptions;
  private pub: RedisClient | null = null;
  private sub: RedisClient | null = null;
  private host: MsgTransAdapterHost | null = null;
  // sessions on other instances: id -> its info (rooms not tracked)
  private readonly directory = new Map<string, Omit<MsgTransSessionInfo, 'rooms'>>();
  // other instances: id -> when last heard from
  private readonly nodes = new Map<string, number>();
  private readonly pending = new Map<number, PendingRequest>();
  // requests from other instances being answered here: `${node}:${id}`
  private readonly serving = new Map<string, Subscription>();
  private nextId = 1;
  private heartbeat: NodeJS.Timeout | null = null;
  private helloTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly counters = { published: 0, dropped: 0, received: 0, malformed: 0 };
  private readonly onMessage = (raw: Buffer): void => this.receive(raw);

  constructor(options: MsgTransRedisAdapterOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, 'MsgTransRedisAdapter options must be an object');
    }
    this.prefix = options.keyPrefix ?? 'msgtrans';
    if (typeof this.prefix !== 'string' || this.prefix === '') {
      throw new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, 'keyPrefix must be a non-empty string');
    }
    this.nodeId = options.nodeId ?? randomBytes(8).toString('hex');
    this.heartbeatInterval = Math.max(
      1,
      positiveInteger('heartbeatInterval', options.heartbeatInterval, MSGTRANS_DEFAULTS.adapterHeartbeatInterval),
    );
    this.requestTimeout = positiveInteger('requestTimeout', options.requestTimeout, MSGTRANS_DEFAULTS.adapterRequestTimeout);
    this.clientOptions = {
      ...options.redis,
      url: options.url ?? options.redis?.url ?? 'redis://127.0.0.1:6379',
      socket: {
        ...options.redis?.socket,
        // never give up: cross-instance delivery resumes by itself once Redis is back
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 6), RECONNECT_MAX_DELAY_MS),
      } as RedisClientOptions['socket'],
    };
  }

  /** Messages published, dropped (Redis unreachable), received, and ignored as malformed, since start. */
  stats(): { published: number; dropped: number; received: number; malformed: number; nodes: number; remoteSessions: number } {
    return { ...this.counters, nodes: this.nodes.size, remoteSessions: this.directory.size };
  }

  /** Other instances heard from within the last three heartbeats. */
  peers(): string[] {
    return [...this.nodes.keys()];
  }

  async attach(host: MsgTransAdapterHost): Promise<void> {
    this.host = host;
    this.closed = false;
    // publishes fail at once while Redis is away (at most once, bounded memory); subscriptions wait for it
    this.pub = this.client('publish', { disableOfflineQueue: true });
    this.sub = this.client('subscribe', {});
    const statics = [this.channel('presence'), this.channel('all'), this.nodeChannel(this.nodeId)];
    const ready = Promise.all([
      this.pub.connect(),
      this.sub.connect().then(() => this.sub!.subscribe(statics, this.onMessage, true)),
    ]);
    ready.catch(() => undefined);
    this.heartbeat = setInterval(() => this.beat(), this.heartbeatInterval);
    this.heartbeat.unref();
    // a server starts even when Redis does not answer: local delivery works, the cluster joins later
    const connected = await Promise.race([ready.then(() => true), sleep(FIRST_CONNECT_WAIT_MS).then(() => false)]);
    if (connected) this.hello(true);
    else this.logger.warn(`Redis at ${this.clientOptions.url} not reachable yet: serving this instance alone until it is`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.heartbeat = this.helloTimer = null;
    this.send(this.channel('presence'), { t: 'bye', n: this.nodeId });
    for (const request of this.pending.values()) request.fail(this.gone('this instance is closing'));
    this.pending.clear();
    for (const served of this.serving.values()) served.unsubscribe();
    this.serving.clear();
    const clients = [this.pub, this.sub];
    this.pub = this.sub = null;
    await Promise.all(
      clients.map(async (client) => {
        if (!client) return;
        // a graceful close lets the goodbye out; a client that is not connected is destroyed
        if (client.isReady) await client.close().catch(() => client.destroy());
        else client.destroy();
      }),
    );
    this.directory.clear();
    this.nodes.clear();
  }

  sessionAdded(info: MsgTransSessionInfo): void {
    this.send(this.channel('presence'), { t: 'conn', n: this.nodeId, s: info.id, p: info.protocol, ra: info.remoteAddress });
  }

  sessionRemoved(info: MsgTransSessionInfo): void {
    this.send(this.channel('presence'), { t: 'closed', n: this.nodeId, s: info.id, p: info.protocol, ra: info.remoteAddress });
  }

  roomJoined(_sessionId: string, room: string, firstLocalMember: boolean): void {
    if (firstLocalMember) this.sub?.subscribe(this.roomChannel(room), this.onMessage, true).catch(() => undefined);
  }

  roomLeft(_sessionId: string, room: string, lastLocalMember: boolean): void {
    if (lastLocalMember) this.sub?.unsubscribe(this.roomChannel(room), this.onMessage, true).catch(() => undefined);
  }

  isRemote(sessionId: string): boolean {
    return this.directory.has(sessionId);
  }

  join(sessionId: string, room: string): void {
    const node = this.directory.get(sessionId)?.node;
    if (node) this.send(this.nodeChannel(node), { t: 'join', n: this.nodeId, s: sessionId, r: room });
  }

  leave(sessionId: string, room: string): void {
    const node = this.directory.get(sessionId)?.node;
    if (node) this.send(this.nodeChannel(node), { t: 'leave', n: this.nodeId, s: sessionId, r: room });
  }

  publish(target: MsgTransPushTarget, push: MsgTransPush): void {
    let channel: string;
    if ('room' in target) channel = this.roomChannel(target.room);
    else if ('session' in target) {
      const node = this.directory.get(target.session)?.node;
      if (!node) return;
      channel = this.nodeChannel(node);
    } else channel = this.channel('all');
    this.send(channel, { t: 'push', n: this.nodeId, to: target, w: push.wire, m: push.metadata, x: push.except }, push.data);
  }

  sendTo<T>(sessionId: string, wire: WireRoute, data: unknown, metadata: Record<string, string> | undefined): Observable<T> {
    return new Observable<T>((subscriber) => {
      const node = this.directory.get(sessionId)?.node;
      if (!node) {
        subscriber.error(new MsgTransError(MsgTransErrorCode.CONNECTION_CLOSED, `Session ${sessionId} is not open`));
        return;
      }
      const id = this.nextId++;
      const request: PendingRequest = {
        node,
        timer: null,
        next: (header, value) => {
          if (header.e === 'next') {
            this.arm(id, request);
            subscriber.next(value as T);
          } else if (header.e === 'complete') {
            this.settle(id);
            subscriber.complete();
          } else {
            this.settle(id);
            subscriber.error(reviveError(value));
          }
        },
        fail: (error) => {
          this.settle(id);
          subscriber.error(error);
        },
      };
      this.pending.set(id, request);
      this.arm(id, request);
      this.send(this.nodeChannel(node), { t: 'req', n: this.nodeId, id, s: sessionId, w: wire, m: metadata }, data);
      return () => {
        if (!this.pending.has(id)) return;
        this.settle(id);
        this.send(this.nodeChannel(node), { t: 'cancel', n: this.nodeId, id });
      };
    });
  }

  fetchSessions(): Promise<MsgTransSessionInfo[]> {
    const local = this.host!.localSessions().map((s) => ({ ...s, node: this.nodeId }));
    const nodes = [...this.nodes.keys()];
    if (nodes.length === 0) return Promise.resolve(local);
    return new Promise((resolve) => {
      const lists: MsgTransSessionInfo[][] = [local];
      let waiting = nodes.length;
      for (const node of nodes) {
        this.query(node, (list) => {
          if (list) lists.push(list);
          if (--waiting === 0) resolve(lists.flat());
        });
      }
    });
  }

  /** Asks `node` for its sessions; `done(null)` when it does not answer in time. */
  private query(node: string, done: (list: MsgTransSessionInfo[] | null) => void): void {
    const id = this.nextId++;
    const request: PendingRequest = {
      node,
      timer: null,
      next: (header) => {
        this.settle(id);
        done(header.l ?? []);
      },
      fail: () => {
        this.settle(id);
        done(null);
      },
    };
    this.pending.set(id, request);
    this.arm(id, request);
    if (!this.send(this.nodeChannel(node), { t: 'fetch', n: this.nodeId, id })) request.fail(this.gone('Redis is unreachable'));
  }

  private receive(raw: Buffer): void {
    const host = this.host;
    if (!host || this.closed) return;
    let header: Header;
    let data: unknown;
    try {
      ({ header, data } = decodeAdapterMessage<Header>(raw, host.codec));
      if (typeof header?.n !== 'string' || typeof header.t !== 'string') throw new Error('no sender or type');
    } catch {
      this.counters.malformed++;
      return;
    }
    // our own broadcasts and room pushes come back: our sessions have them already
    if (header.n === this.nodeId) return;
    this.counters.received++;
    this.heard(header.n, header.t);
    switch (header.t) {
      case 'push':
        if (header.to && header.w) host.deliverLocal(header.to, { wire: header.w, data, metadata: header.m, except: header.x });
        return;
      case 'join':
        if (header.s && header.r !== undefined) host.joinLocal(header.s, header.r);
        return;
      case 'leave':
        if (header.s && header.r !== undefined) host.leaveLocal(header.s, header.r);
        return;
      case 'req':
        this.serve(header, data);
        return;
      case 'res':
      case 'list':
        if (header.id !== undefined) this.pending.get(header.id)?.next(header, data);
        return;
      case 'cancel':
        this.serving.get(`${header.n}:${header.id}`)?.unsubscribe();
        this.serving.delete(`${header.n}:${header.id}`);
        return;
      case 'fetch':
        this.send(this.nodeChannel(header.n), {
          t: 'list',
          n: this.nodeId,
          id: header.id,
          l: host.localSessions().map((s) => ({ ...s, node: this.nodeId })),
        });
        return;
      case 'hello':
        this.sync(header.n);
        if (header.a) this.hello(false);
        return;
      case 'conn':
        if (header.s) this.remoteSession('connected', { id: header.s, node: header.n, protocol: header.p ?? '', remoteAddress: header.ra });
        return;
      case 'closed':
        if (header.s) this.remoteSession('closed', { id: header.s, node: header.n, protocol: header.p ?? '', remoteAddress: header.ra });
        return;
      case 'bye':
        this.nodeGone(header.n, 'it closed');
        return;
      case 'hb':
        return;
    }
  }

  /** Answers a request from another instance by sending it to our session, relaying each reply value. */
  private serve(header: Header, data: unknown): void {
    const from = header.n;
    const key = `${from}:${header.id}`;
    const reply = (e: 'next' | 'error' | 'complete', value?: unknown) =>
      this.send(this.nodeChannel(from), { t: 'res', n: this.nodeId, id: header.id, e }, value);
    if (!header.s || !header.w || !this.host!.isLocal(header.s)) {
      reply('error', { name: 'MsgTransError', code: MsgTransErrorCode.CONNECTION_CLOSED, message: `Session ${header.s} is not open` });
      return;
    }
    const subscription = this.host!.sendToLocal(header.s, header.w, data, header.m).subscribe({
      next: (value) => reply('next', value),
      error: (err: unknown) => {
        this.serving.delete(key);
        reply('error', err instanceof Error ? describeError(err) : err);
      },
      complete: () => {
        this.serving.delete(key);
        reply('complete');
      },
    });
    if (!subscription.closed) this.serving.set(key, subscription);
  }

  /** Replaces what we know of `node`'s sessions with what it says it has. */
  private sync(node: string): void {
    this.query(node, (list) => {
      if (!list) return;
      const now = new Set(list.map((s) => s.id));
      for (const [id, info] of this.directory) if (info.node === node && !now.has(id)) this.remoteSession('closed', info);
      for (const s of list) {
        if (!this.directory.has(s.id)) this.remoteSession('connected', { id: s.id, node, protocol: s.protocol, remoteAddress: s.remoteAddress });
      }
    });
  }

  private remoteSession(type: 'connected' | 'closed', info: Omit<MsgTransSessionInfo, 'rooms'>): void {
    if (type === 'connected') {
      if (this.directory.has(info.id)) return;
      this.directory.set(info.id, info);
    } else if (!this.directory.delete(info.id)) return;
    this.host?.remotePresence({ type, session: info, local: false });
  }

  private heard(node: string, type: Header['t']): void {
    const known = this.nodes.has(node);
    this.nodes.set(node, Date.now());
    // an instance we did not know (it started, or we lost it for a while): learn its sessions (a hello does so itself)
    if (!known && type !== 'hello' && type !== 'bye') this.sync(node);
  }

  private beat(): void {
    this.send(this.channel('presence'), { t: 'hb', n: this.nodeId });
    const deadline = Date.now() - HEARTBEATS_MISSED * this.heartbeatInterval;
    for (const [node, seen] of this.nodes) if (seen < deadline) this.nodeGone(node, `no heartbeat for ${HEARTBEATS_MISSED} intervals`);
  }

  private nodeGone(node: string, why: string): void {
    if (!this.nodes.delete(node)) return;
    this.logger.warn(`Instance ${node} left the cluster: ${why}`);
    for (const info of [...this.directory.values()]) if (info.node === node) this.remoteSession('closed', info);
    for (const request of [...this.pending.values()]) if (request.node === node) request.fail(this.gone(`instance ${node} is gone (${why})`));
    for (const [key, served] of this.serving) {
      if (key.startsWith(`${node}:`)) {
        served.unsubscribe();
        this.serving.delete(key);
      }
    }
  }

  private hello(answer: boolean): void {
    this.send(this.channel('presence'), { t: 'hello', n: this.nodeId, a: answer });
  }

  /** Publishes; false (and counted as dropped) when Redis is unreachable. Never throws. */
  private send(channel: string, header: Header, data?: unknown): boolean {
    const pub = this.pub;
    if (!pub?.isReady || !this.host) {
      this.counters.dropped++;
      return false;
    }
    let message: Buffer;
    try {
      message = encodeAdapterMessage(header, data, this.host.codec);
    } catch (err) {
      this.logger.error(`Cannot carry a ${header.t} to other instances: ${(err as Error).message}`);
      return false;
    }
    this.counters.published++;
    pub.publish(channel, message).catch(() => this.counters.dropped++);
    return true;
  }

  private arm(id: number, request: PendingRequest): void {
    if (request.timer) clearTimeout(request.timer);
    if (this.requestTimeout === 0) return;
    request.timer = setTimeout(() => request.fail(new MsgTransTimeoutError(this.requestTimeout)), this.requestTimeout);
    request.timer.unref();
  }

  private settle(id: number): void {
    const request = this.pending.get(id);
    if (!request) return;
    if (request.timer) clearTimeout(request.timer);
    this.pending.delete(id);
  }

  private gone(why: string): MsgTransTimeoutError {
    const error = new MsgTransTimeoutError(this.requestTimeout);
    error.message = `No reply: ${why}`;
    return error;
  }

  private client(role: string, extra: Partial<RedisClientOptions>): RedisClient {
    const client = createClient({ ...this.clientOptions, ...extra });
    let down = false;
    // node-redis emits 'error' on every failed (re)connection: an unhandled one would crash the process
    client.on('error', (err: Error) => {
      if (down) return;
      down = true;
      this.logger.warn(`Redis ${role} connection: ${err.message} (reconnecting; cross-instance pushes are dropped meanwhile)`);
    });
    client.on('ready', () => {
      if (!down) return;
      down = false;
      this.logger.log(`Redis ${role} connection is back`);
      // Redis may have restarted empty: announce ourselves so the others learn our sessions again, and we theirs
      this.scheduleHello();
    });
    return client as RedisClient;
  }

  private scheduleHello(): void {
    if (this.helloTimer || this.closed) return;
    const retry = () => {
      this.helloTimer = null;
      if (this.closed) return;
      if (this.pub?.isReady && this.sub?.isReady) this.hello(true);
      else this.helloTimer = setTimeout(retry, 100).unref();
    };
    this.helloTimer = setTimeout(retry, 50).unref();
  }

  private channel(name: string): string {
    return `${this.prefix}#${name}`;
  }

  private nodeChannel(node: string): string {
    return `${this.prefix}#node#${node}`;
  }

  private roomChannel(room: string): string {
    return `${this.prefix}#room#${room}`;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** An Error as data another instance can rebuild. */
function describeError(err: Error): { name: string; code?: string; message: string; __msgtransError: true } {
  return { name: err.name, code: (err as { code?: string }).code, message: err.message, __msgtransError: true };
}

/** A relayed error reply: a MsgTransError again when it was one; the client's own error value as it sent it. */
function reviveError(value: unknown): unknown {
  const v = value as { __msgtransError?: boolean; code?: string; message?: string; name?: string } | null;
  if (!v || typeof v !== 'object') return value;
  if (v.__msgtransError || (v.name === 'MsgTransError' && typeof v.code === 'string')) {
    if (v.code === MsgTransErrorCode.TIMEOUT) {
      const error = new MsgTransTimeoutError(0);
      error.message = v.message ?? error.message;
      return error;
    }
    if (typeof v.code === 'string' && v.code.startsWith('ERR_MSGTRANS_')) return new MsgTransError(v.code as MsgTransErrorCode, v.message ?? '');
    return Object.assign(new Error(v.message), { name: v.name });
  }
  return value;
}
