/**
 * A MsgTransServer in a child process on a fixed port, which a test can kill
 * (SIGKILL: no goodbye to any peer) and start again on the same port.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { MsgTransServerOptions } from '../../lib/index.js';

const ENTRY = fileURLToPath(new URL('./server-process.js', import.meta.url));

/** A port that is free right now on 127.0.0.1, for TCP or for UDP (QUIC). */
export async function freePort(kind: 'tcp' | 'udp' = 'tcp'): Promise<number> {
  if (kind === 'udp') {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => socket.once('error', reject).bind(0, '127.0.0.1', resolve));
    const { port } = socket.address();
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    return port;
  }
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface RestartableServerOptions {
  /** Where the child listens, with a fixed port, e.g. `tcp://127.0.0.1:40123`. */
  url: string;
  /** Certificate and key (PEM) for TLS endpoints such as quic://. */
  tls?: { key: string; cert: string };
  /** Further server options; must survive JSON. */
  server?: Partial<Omit<MsgTransServerOptions, 'listen' | 'tls'>>;
  /** ms to wait for the child to listen. Default 15000. */
  startTimeout?: number;
}

/** The server child: start(), kill(), start() again, stop(). */
export class RestartableServer {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  /** stdout and stderr of every run, for failure messages. */
  output = '';
  /** How many times the child has been started. */
  starts = 0;

  constructor(private readonly options: RestartableServerOptions) {}

  get url(): string {
    return this.options.url;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /** Starts the child and resolves once it listens (it printed `ready`). */
  async start(): Promise<void> {
    if (this.child) throw new Error('already running');
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    if (this.options.tls) {
      env.MSGTRANS_TEST_TLS_KEY = this.options.tls.key;
      env.MSGTRANS_TEST_TLS_CERT = this.options.tls.cert;
    }
    env.MSGTRANS_TEST_SERVER_OPTIONS = JSON.stringify(this.options.server ?? {});
    const child = fork(ENTRY, [this.options.url], { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    this.child = child;
    this.starts++;
    this.exited = new Promise((resolve) =>
      child.once('exit', () => {
        if (this.child === child) this.child = null;
        resolve();
      }),
    );
    child.stderr!.on('data', (chunk) => (this.output += chunk));
    const timeoutMs = this.options.startTimeout ?? 15_000;
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => finish(new Error(`server child did not get ready in ${timeoutMs} ms:\n${this.output}`)), timeoutMs);
      const onData = (chunk: Buffer) => {
        seen += chunk;
        this.output += chunk;
        if (/^ready /m.test(seen)) finish();
      };
      const onExit = (code: number | null, signal: string | null) =>
        finish(new Error(`server child exited (${code ?? signal}) before it was ready:\n${this.output}`));
      const finish = (error?: Error) => {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.off('exit', onExit);
        child.stdout!.on('data', (more) => (this.output += more));
        if (error) {
          child.kill('SIGKILL');
          reject(error);
        } else {
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', onExit);
    });
  }

  /**
   * SIGSTOP: the process stays alive but stops answering, so requests sent
   * now are certain to be pending when it is killed. kill() ends it as is.
   */
  freeze(): void {
    this.child?.kill('SIGSTOP');
  }

  /** SIGKILL: the process dies without closing anything itself. Resolves once it is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  /** Kills the child if it runs (for after()). */
  async stop(): Promise<void> {
    await this.kill();
  }
}
