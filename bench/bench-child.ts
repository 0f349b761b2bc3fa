import type { ChildProcess } from 'node:child_process';
import type { IpcReply } from './common.js';

// Every child still running is killed when the benchmark exits or is interrupted.
const children = new Set<ChildProcess>();

export function killChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
}
process.on('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    killChildren();
    process.exit(130);
  });
}

/** A benchmark child process reached over IPC (commands and replies carry a `seq`). */
export class BenchChild {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (r: IpcReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    children.add(proc);
    proc.on('message', (reply: IpcReply) => {
      const entry = this.waiting.get(reply.seq);
      if (!entry) return;
      this.waiting.delete(reply.seq);
      clearTimeout(entry.timer);
      if (reply.ok) entry.resolve(reply);
      else entry.reject(new Error(`${name}: ${reply.error}`));
    });
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        children.delete(proc);
        const err = new Error(`${name} exited (code ${code}, signal ${signal})`);
        for (const entry of this.waiting.values()) {
          clearTimeout(entry.timer);
          entry.reject(err);
        }
        this.waiting.clear();
        resolve();
      });
    });
  }

  call(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<IpcReply> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        reject(new Error(`${this.name}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(seq, { resolve, reject, timer });
      try {
        this.proc.send({ ...args, seq, cmd });
      } catch (err) {
        clearTimeout(timer);
        this.waiting.delete(seq);
        reject(err as Error);
      }
    });
  }

  /** Kills the child at once and waits until it is gone. */
  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** Asks the child to exit (so profiles get written); kills it if it does not within `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await this.call('exit', {}, graceMs).catch(() => undefined);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
