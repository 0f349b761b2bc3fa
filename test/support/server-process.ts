/**
 * Entry point of a child process that serves the test controller
 * (test-app.ts) with a MsgTransServer, so a test can kill it outright
 * (SIGKILL) and start it again on the same port.
 *
 *   node dist/test/support/server-process.js <listen-url>
 *
 * Environment: MSGTRANS_TEST_TLS_KEY / MSGTRANS_TEST_TLS_CERT (PEM) for TLS
 * endpoints such as quic://; MSGTRANS_TEST_SERVER_OPTIONS, JSON of further
 * server options. Prints `ready <url>` on stdout once listening. Stops
 * gracefully on SIGTERM, and exits when its parent goes away.
 */
import type { MsgTransServerOptions } from '../../lib/index.js';
import { startMsgTrans } from './test-app.js';

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: server-process.js <listen-url>\n');
  process.exit(2);
}

const key = process.env.MSGTRANS_TEST_TLS_KEY;
const cert = process.env.MSGTRANS_TEST_TLS_CERT;
const extra = JSON.parse(process.env.MSGTRANS_TEST_SERVER_OPTIONS ?? '{}') as Partial<MsgTransServerOptions>;

const running = await startMsgTrans({ ...extra, listen: url, ...(key && cert ? { tls: { key, cert } } : {}) });

let stopping = false;
const stop = (code: number) => {
  if (stopping) return;
  stopping = true;
  running
    .close()
    .catch(() => undefined)
    .finally(() => process.exit(code));
};
process.on('SIGTERM', () => stop(0));
// started with an IPC channel (fork): never outlive the test process
process.on('disconnect', () => stop(0));

process.stdout.write(`ready ${running.url}\n`);
