import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IpcReply } from './common.js';

const HERE = dirname(fileURLToPath(import.meta.url));

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

/**
 * Starts `script` (in dist/bench) with an IPC channel. With `raiseFdLimit`
 * (true: 65536, or a number of descriptors) it runs under
 * `bash -c 'ulimit -n N …; exec node …'`, falling back to the hard limit
 * when N is not allowed (raising the hard limit needs CAP_SYS_RESOURCE): the
 * process is still node, so its pid and IPC channel are the ones we hold.
 */
export function launch(script: string, args: string[], opts: { raiseFdLimit?: boolean | number; execArgv?: string[] } = {}): BenchChild {
  const nodeArgs = [...(opts.execArgv ?? []), join(HERE, script), ...args];
  const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc'];
  const fds = opts.raiseFdLimit === true ? 65536 : opts.raiseFdLimit || 0;
  const proc =
    fds > 0
      ? spawn(
          'bash',
          ['-c', `ulimit -n ${fds} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"`, process.execPath, ...nodeArgs],
          { stdio },
        )
      : spawn(process.execPath, nodeArgs, { stdio });
  return new BenchChild(`${script} ${args.join(' ')}`.trim(), proc);
}
