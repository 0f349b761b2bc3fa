/**
 * A server instance of a cluster in its own process (forked by
 * redis-adapter.test.ts): the test controller on tcp, ws and quic with the
 * Redis adapter, its `MsgTransSessions` driven over IPC.
 *
 *   parent -> child  { id, op, args }       see OPS below
 *   child -> parent  { type: 'ready', urls, nodeId } once listening
 *                    { id, result } | { id, error: { code, message } }
 *
 * Environment: MSGTRANS_TEST_REDIS_URL, MSGTRANS_TEST_PREFIX,
 * MSGTRANS_TEST_HEARTBEAT (ms), MSGTRANS_TEST_TLS_KEY / _CERT (for quic).
 */
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

const adapter = new MsgTransRedisAdapter({
  url: process.env.MSGTRANS_TEST_REDIS_URL,
  keyPrefix: process.env.MSGTRANS_TEST_PREFIX,
  heartbeatInterval: Number(process.env.MSGTRANS_TEST_HEARTBEAT ?? 200),
  requestTimeout: 10_000,
});
const running = await startMsgTrans({
  listen: ['tcp://127.0.0.1:0', 'ws://127.0.0.1:0/msgtrans', 'quic://127.0.0.1:0'],
  tls: { key: process.env.MSGTRANS_TEST_TLS_KEY!, cert: process.env.MSGTRANS_TEST_TLS_CERT! },
  adapter,
});
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
  stats: () => adapter.stats(),
  peers: () => adapter.peers(),
  // pushes to a room every `everyMs` for `count` times; resolves when done
  pushLoop: async (room: string, count: number, everyMs: number) => {
    for (let i = 0; i < count; i++) {
      sessions.emitToRoom(room, 'tick', { i, at: Date.now(), from: adapter.nodeId });
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

send({ type: 'ready', urls: running.server.addresses().map((a) => a.url), nodeId: adapter.nodeId });
