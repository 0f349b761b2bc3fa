/**
 * Parent side of server-child.ts: forks it, starts it, asks it things, and
 * notices when it dies.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ChildPorts, ChildStart } from './server-child.js';
import type { DisconnectReport } from './fuzz-runner.js';

const CHILD = fileURLToPath(new URL('./server-child.js', import.meta.url));

export interface ServerProcessEvents {
  onReports?: (list: DisconnectReport[]) => void;
  onUncaught?: (kind: string, error: string) => void;
  /** The process ended without being asked to (a crash, or our SIGKILL). */
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
}

export class ServerProcess {
  private readonly waiting = new Map<number, (msg: any) => void>();
  private nextId = 1;
  private expectedExit = false;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  ports: ChildPorts | undefined;
  private isAlive = true;

  private constructor(
    readonly child: ChildProcess,
    private readonly events: ServerProcessEvents,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.isAlive = false;
        for (const w of this.waiting.values()) w({ type: 'failed', error: `server process exited (${signal ?? code})` });
        this.waiting.clear();
        if (!this.expectedExit) events.onExit?.(code, signal);
        resolve({ code, signal });
      });
    });
    child.on('message', (msg: any) => {
      if (msg?.type === 'reports') events.onReports?.(msg.list);
      else if (msg?.type === 'uncaught') events.onUncaught?.(msg.kind, msg.error);
      else if (msg?.id !== undefined) {
        const w = this.waiting.get(msg.id);
        this.waiting.delete(msg.id);
        w?.(msg);
      }
    });
  }

  get alive(): boolean {
    return this.isAlive;
  }

  /** Forks and starts a server; resolves once it listens. */
  static async start(config: Omit<ChildStart, 'cmd'>, events: ServerProcessEvents = {}, startTimeoutMs = 20_000): Promise<ServerProcess> {
    // SERVER_NODE_ARGS: extra node flags for the server process, e.g. "--cpu-prof" to profile it
    const extra = (process.env.SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const child = fork(CHILD, [], { execArgv: ['--expose-gc', ...extra], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const sp = new ServerProcess(child, events);
    const ready = await new Promise<any>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('server process did not start in time')), startTimeoutMs);
      const onMessage = (msg: any) => {
        if (msg?.type === 'ready' || msg?.type === 'failed') {
          clearTimeout(timer);
          child.off('message', onMessage);
          if (msg.type === 'ready') resolve(msg);
          else reject(new Error(`server process failed to start: ${msg.error}`));
        }
      };
      child.on('message', onMessage);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`server process exited during start (${signal ?? code})`));
      });
      child.send({ cmd: 'start', ...config });
    }).catch((err) => {
      sp.expectedExit = true;
      child.kill('SIGKILL');
      throw err;
    });
    sp.ports = ready.ports;
    return sp;
  }

  private ask(message: Record<string, unknown>, timeoutMs: number): Promise<any> {
    if (!this.isAlive) return Promise.reject(new Error('server process is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`server process did not answer ${message.cmd} in time`));
      }, timeoutMs);
      this.waiting.set(id, (msg) => {
        clearTimeout(timer);
        if (msg.type === 'failed') reject(new Error(msg.error));
        else resolve(msg);
      });
      this.child.send({ ...message, id });
    });
  }

  /** server.stats() and heap in use (after full collections if `gc`). */
  async stats(gc = false): Promise<{
    stats: { sessions: number; violations: Record<string, number> };
    heapUsed: number;
    loopDelayMaxMs: number;
    loopDelayP99Ms: number;
    /** CPU time the server process has used (user + system), ms. */
    cpuMs: number;
  }> {
    const msg = await this.ask({ cmd: 'stats', gc }, 15_000);
    return { stats: msg.stats, heapUsed: msg.heapUsed, loopDelayMaxMs: msg.loopDelayMaxMs, loopDelayP99Ms: msg.loopDelayP99Ms, cpuMs: msg.cpuMs };
  }

  /** Graceful close, then the process exits. */
  async close(): Promise<void> {
    this.expectedExit = true;
    try {
      await this.ask({ cmd: 'close' }, 15_000);
    } catch {
      // fall through to the kill
    }
    const exited = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
    if (!exited) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGKILL, as a crash would end it. */
  async kill(): Promise<void> {
    this.expectedExit = true;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}
