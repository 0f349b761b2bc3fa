/**
 * A server instance of a cluster in its own process (forked by
 * redis-adapter.test.ts): the test controller on tcp, ws and quic with the
 * Redis adapter, its `MsgTransSessions` driven over IPC.
 *
 *   parent -> child  { id, op, args }       see OPS below
 *   child -> parent  { type: 'ready', urls, nodeId } once listening
 *                    { id, result } | { id, error: { code, message } }
 *
 * Environment: MSGTRANS_TEST_REDIS_URL (none: no adapter), MSGTRANS_TEST_PREFIX,
 * MSGTRANS_TEST_HEARTBEAT (ms), MSGTRANS_TEST_TLS_KEY / _CERT (for quic),
 * MSGTRANS_TEST_LISTEN (JSON list of URLs, or lists by cluster worker id),
 * MSGTRANS_TEST_SERVER_OPTIONS (JSON of further options).
 * Also runs as a `node:cluster` worker (test/support/cluster-primary.ts);
 * a server that fails to start reports { type: 'failed', code, message }.
 */
import cluster from 'node:cluster';
import { Logger } from '@nestjs/common';
import { firstValueFrom } from 'rxjs';
import type { MsgTransPresenceEvent } from '../../lib/index.js';
import { MsgTransRedisAdapter } from '../../lib/redis/index.js';
import { startMsgTrans } from './test-app.js';

Logger.overrideLogger(false);
const send = (message: unknown) => {
  if (process.connected) process.send!(message);
};
process.on('disconnect', () => process.exit(0));
process.on('uncaughtException', (err) => {
  process.stderr.write(`uncaught: ${err.stack}\n`);
  process.exit(70);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`unhandled rejection: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(71);
});

const adapter = process.env.MSGTRANS_TEST_REDIS_URL
  ? new MsgTransRedisAdapter({
      url: process.env.MSGTRANS_TEST_REDIS_URL,
      keyPrefix: process.env.MSGTRANS_TEST_PREFIX,
      heartbeatInterval: Number(process.env.MSGTRANS_TEST_HEARTBEAT ?? 200),
      requestTimeout: 10_000,
    })
  : undefined;
// a list for every worker, or lists by cluster worker id (1, 2, …)
const listenOption = JSON.parse(process.env.MSGTRANS_TEST_LISTEN ?? 'null') as string[] | Record<string, string[]> | null;
const listen = (Array.isArray(listenOption) ? listenOption : listenOption?.[String(cluster.worker?.id)]) ?? [
  'tcp://127.0.0.1:0',
  'ws://127.0.0.1:0/msgtrans',
  'quic://127.0.0.1:0',
];
let running: Awaited<ReturnType<typeof startMsgTrans>>;
try {
  running = await startMsgTrans({
    ...JSON.parse(process.env.MSGTRANS_TEST_SERVER_OPTIONS ?? '{}'),
    listen,
    tls: { key: process.env.MSGTRANS_TEST_TLS_KEY!, cert: process.env.MSGTRANS_TEST_TLS_CERT! },
    adapter,
  });
} catch (err) {
  send({ type: 'failed', code: (err as { code?: string }).code, message: (err as Error).message });
  await new Promise((resolve) => setTimeout(resolve, 100));
  process.exit(1);
}
const sessions = running.server.sessions;
const presence: MsgTransPresenceEvent[] = [];
sessions.presence$.subscribe((event) => presence.push(event));

const decode = (data: unknown) => ((data as { hex?: string })?.hex !== undefined ? Buffer.from((data as { hex: string }).hex, 'hex') : data);

const OPS: Record<string, (...args: any[]) => unknown> = {
  join: (s: string, room: string) => sessions.join(s, room),
  leave: (s: string, room: string) => sessions.leave(s, room),
  emitToRoom: (room: string, pattern: string, data: unknown, except?: string) => sessions.emitToRoom(room, pattern, decode(data), { except }),
  broadcast: (pattern: string, data: unknown) => sessions.broadcast(pattern, decode(data)),
  emitTo: (s: string, pattern: string, data: unknown) => sessions.emitTo(s, pattern, decode(data)),
  sendTo: (s: string, pattern: string, data: unknown) => firstValueFrom(sessions.sendTo(s, pattern, data)),
  fetchSessions: () => sessions.fetchSessions(),
  presence: () => presence.splice(0),
  stats: () => adapter?.stats(),
  peers: () => adapter?.peers() ?? [],
  // pushes to a room every `everyMs` for `count` times; resolves when done
  pushLoop: async (room: string, count: number, everyMs: number) => {
    for (let i = 0; i < count; i++) {
      sessions.emitToRoom(room, 'tick', { i, at: Date.now(), from: adapter?.nodeId });
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    return count;
  },
  close: async () => {
    await running.close();
    setImmediate(() => process.exit(0));
    return true;
  },
};

process.on('message', (msg: { id: number; op: string; args: unknown[] }) => {
  Promise.resolve()
    .then(() => OPS[msg.op](...(msg.args ?? [])))
    .then(
      (result) => send({ id: msg.id, result }),
      (err: { code?: string; message?: string }) => send({ id: msg.id, error: { code: err?.code, message: err?.message ?? String(err) } }),
    );
});

send({ type: 'ready', urls: running.server.addresses().map((a) => a.url), nodeId: adapter?.nodeId ?? String(process.pid), pid: process.pid });
