/**
 * The server under test, in its own process (forked by scripts/fuzz.ts and
 * scripts/soak.ts), so that a crash is observed instead of taking the
 * driver down, and so that it can be SIGKILLed and restarted.
 *
 * It runs the test suite's app (test/support/test-app.ts: 'echo', 'stream',
 * ...) on tcp, ws and quic, and talks to its parent over IPC:
 *   parent -> child  { cmd: 'start', ... }   start listening; answers { type: 'ready', ports }
 *                    { cmd: 'stats', id, gc } answers { type: 'stats', id, stats, heapUsed }
 *                    { cmd: 'close', id }     closes the server, answers, exits
 *   child -> parent  { type: 'reports', list }    session ends (batched), see server-reports.ts
 *                    { type: 'uncaught', kind, error }  an uncaughtException / unhandledRejection
 *
 * Soak mode also handles the event 'soak.event': each one is appended to
 * an event log file with a synchronous write before the handler returns,
 * so the count survives a SIGKILL: the write is in the kernel before any
 * later reply on the same connection is even queued.
 */
import 'reflect-metadata';
import * as fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { MsgTransServer, type MsgTransServerOptions } from '../../lib/index.js';
import { startApp, type RunningApp } from '../../test/support/test-app.js';
import { reportDisconnects } from './server-reports.js';
import type { DisconnectReport } from './fuzz-runner.js';
import { getGc } from './heap.js';

export interface ChildStart {
  cmd: 'start';
  mode: 'fuzz' | 'soak';
  ports: { tcp: number; ws: number; quic: number };
  tls: { key: string; cert: string };
  options: Pick<MsgTransServerOptions, 'maxPacketSize' | 'incompleteMessageTimeout' | 'heartbeatInterval' | 'maxInFlight'>;
  /** Soak: file each handled 'soak.event' is appended to. */
  eventLog?: string;
  /** Send disconnect reports (fuzz). */
  reports?: boolean;
}

export interface ChildPorts {
  tcp: number;
  ws: number;
  quic: number;
}

const send = (message: unknown) => {
  if (process.connected) process.send!(message);
};

process.on('uncaughtException', (err) => send({ type: 'uncaught', kind: 'uncaughtException', error: String(err?.stack ?? err) }));
process.on('unhandledRejection', (err) => send({ type: 'uncaught', kind: 'unhandledRejection', error: String((err as Error)?.stack ?? err) }));
// the parent is gone: so are we
process.on('disconnect', () => process.exit(0));

let running: (RunningApp & { server: MsgTransServer }) | undefined;
// how late the event loop runs: a server that lags past a timeout fires it before reading what has arrived
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

async function start(msg: ChildStart): Promise<void> {
  const server = new MsgTransServer({
    listen: [`tcp://127.0.0.1:${msg.ports.tcp}`, `ws://127.0.0.1:${msg.ports.ws}/msgtrans`, `quic://127.0.0.1:${msg.ports.quic}`],
    tls: msg.tls,
    ...msg.options,
  });
  if (msg.eventLog) {
    // registered before anything listens: after a restart, clients reconnect the moment a port opens
    const fd = fs.openSync(msg.eventLog, 'a');
    server.addHandler(
      'soak.event',
      async (data: { c: number; n: number }) => {
        fs.writeSync(fd, `${data.c} ${data.n}\n`);
      },
      true,
    );
  }
  if (msg.reports) {
    let batch: DisconnectReport[] = [];
    let timer: NodeJS.Timeout | null = null;
    reportDisconnects(server, (r) => {
      batch.push(r);
      timer ??= setTimeout(() => {
        timer = null;
        const list = batch;
        batch = [];
        send({ type: 'reports', list });
      }, 10);
    });
  }
  running = { ...(await startApp({ strategy: server })), server };
  // the app's 'event' handler keeps what it gets; the fuzzer sends many
  setInterval(() => {
    if (running) running.observed.events.length = 0;
  }, 500).unref();
  const ports: ChildPorts = { tcp: 0, ws: 0, quic: 0 };
  for (const a of server.addresses()) {
    if (a.protocol === 'tcp') ports.tcp = a.port;
    else if (a.protocol === 'ws') ports.ws = a.port;
    else if (a.protocol === 'quic') ports.quic = a.port;
  }
  send({ type: 'ready', ports, pid: process.pid });
}

process.on('message', (msg: { cmd: string; id?: number; gc?: boolean } & Partial<ChildStart>) => {
  void (async () => {
    try {
      if (msg.cmd === 'start') {
        await start(msg as ChildStart);
      } else if (msg.cmd === 'stats') {
        if (running) running.observed.events.length = 0;
        if (msg.gc) {
          const gc = getGc();
          for (let i = 0; i < 4; i++) {
            gc();
            await new Promise((resolve) => setTimeout(resolve, 30));
          }
        }
        send({
          type: 'stats',
          id: msg.id,
          stats: running?.server.stats(),
          heapUsed: process.memoryUsage().heapUsed,
          loopDelayMaxMs: loopDelay.max / 1e6,
          loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
          cpuMs: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
        });
      } else if (msg.cmd === 'close') {
        await running?.close();
        send({ type: 'closed', id: msg.id });
        setTimeout(() => process.exit(0), 50);
      }
    } catch (err) {
      send({ type: 'failed', id: msg.id, error: String((err as Error)?.stack ?? err) });
      if (msg.cmd === 'start') setTimeout(() => process.exit(1), 50);
    }
  })();
});
