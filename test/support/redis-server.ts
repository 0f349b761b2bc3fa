/**
 * A throwaway `redis-server` (Debian's, from .ci/run) on a free loopback
 * port, with no persistence, that a test can kill and start again on the
 * same port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './restartable-server.js';

const BINARY = process.env.REDIS_SERVER ?? 'redis-server';

export class RedisServer {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  output = '';

  private constructor(readonly port: number) {}

  /** Starts one on a free port. */
  static async start(): Promise<RedisServer> {
    const server = new RedisServer(await freePort());
    await server.start();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts (again) on the same port; resolves once it accepts connections. */
  async start(timeoutMs = 10_000): Promise<void> {
    if (this.child) throw new Error('redis-server already running');
    const child = spawn(BINARY, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', () => {
      if (this.child === child) this.child = null;
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`redis-server not ready in ${timeoutMs} ms:\n${this.output}`)), timeoutMs);
      const onData = (chunk: Buffer) => {
        this.output += chunk;
        if (this.output.includes('Ready to accept connections')) done();
      };
      const onError = (err: Error) => done(new Error(`cannot run ${BINARY}: ${err.message} (apt-get install redis-server)`));
      const onExit = () => done(new Error(`redis-server exited before it was ready:\n${this.output}`));
      const done = (error?: Error) => {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.off('error', onError);
        child.off('exit', onExit);
        child.stdout!.resume();
        if (error) {
          child.kill('SIGKILL');
          reject(error);
        } else resolve();
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (chunk) => (this.output += chunk));
      child.once('error', onError);
      child.once('exit', onExit);
    });
  }

  /** SIGKILL: gone at once, with everything it held. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    await this.kill();
  }
}
