/**
 * A `node:cluster` primary (forked by cluster.test.ts) whose workers run
 * test/support/adapter-node.ts: the workers share the TCP and WebSocket
 * ports in MSGTRANS_TEST_LISTEN. Relays IPC between the test and worker
 * number `worker` (0-based): test -> { worker, ...msg }, and back
 * { worker, ...reply }; { worker, type: 'exit', code } when one exits.
 *
 *   node dist/test/support/cluster-primary.js <workers>
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';

const count = Number(process.argv[2] ?? 2);
cluster.setupPrimary({ exec: fileURLToPath(new URL('./adapter-node.js', import.meta.url)), silent: false });
const workers: Worker[] = [];
const send = (message: unknown) => {
  if (process.connected) process.send!(message);
};
for (let i = 0; i < count; i++) {
  const worker = cluster.fork();
  workers.push(worker);
  worker.on('message', (msg: object) => send({ worker: i, ...msg }));
  worker.on('exit', (code) => send({ worker: i, type: 'exit', code }));
}
process.on('message', ({ worker, ...msg }: { worker: number }) => workers[worker]?.send(msg));
process.on('disconnect', () => {
  for (const w of workers) w.process.kill('SIGKILL');
  process.exit(0);
});
