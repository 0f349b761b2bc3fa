/**
 * A bounded fuzz run, part of the suite: one MsgTransServer on tcp, ws and
 * quic (maxPacketSize lowered to 1 MiB so compression bombs are cheap to
 * catch), a well-behaved client per protocol sending 'echo' requests the
 * whole time, and fuzz connections sending a fixed-seed stream of malformed
 * and valid inputs (scripts/lib/fuzz-inputs.ts). `npm run fuzz` is the long
 * version of the same thing.
 *
 * Checked: nothing is thrown or rejected unhandled, the good clients get
 * every answer right, the server closes exactly the connections it must
 * (with the right violation code) and answers everything else, the server
 * reaches its validation code (violations are counted), and afterwards its
 * sessions and heap are back where they started.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { MsgTransServer } from '../../lib/index.js';
import { FuzzGenerator, type FuzzInput, type Protocol } from '../../scripts/lib/fuzz-inputs.js';
import { DisconnectMatcher, describeFailure, runCampaign, type Failure, type ProtocolStats } from '../../scripts/lib/fuzz-runner.js';
import { GoodClient } from '../../scripts/lib/good-client.js';
import { mb, settledHeapUsed } from '../../scripts/lib/heap.js';
import { deriveSeed } from '../../scripts/lib/prng.js';
import { reportDisconnects } from '../../scripts/lib/server-reports.js';
import type { Targets } from '../../scripts/lib/raw-peers.js';
import { testCertificates } from '../support/protocols.js';
import { startMsgTrans, waitFor, type RunningApp } from '../support/test-app.js';

const SEED = 20240611;
const MAX_PACKET = 1024 * 1024;
const MAX_EXT = 16 * 1024;
const MAX_IN_FLIGHT = 4096;
const INCOMPLETE_MS = 1000;
/**
 * A QUIC client the fuzzer force-destroys sends its CONNECTION_CLOSE once; if
 * that datagram is dropped, the server only learns at the idle timeout (two
 * heartbeats), so a short heartbeat keeps such sessions from lingering.
 */
const HEARTBEAT_MS = 2500;
const LIMITS = { maxPacketSize: MAX_PACKET, maxExtHeaderSize: MAX_EXT, maxInFlight: MAX_IN_FLIGHT };
/** Bounded by count (a few seconds); the time limit only guards against a hang. */
const INPUTS: Record<Protocol, number> = { tcp: 1000, ws: 600, quic: 24 };
const WORKERS: Record<Protocol, number> = { tcp: 4, ws: 4, quic: 2 };
const FUZZ_SECONDS = 60;
const HEAP_MARGIN = 20 * 1024 * 1024;

describe('fuzzing the server (tcp, ws, quic) with a fixed seed', () => {
  let running: RunningApp & { server: MsgTransServer; url: string };
  let targets: Targets;
  const uncaught: Array<{ kind: string; error: unknown }> = [];
  const onUncaught = (error: unknown) => uncaught.push({ kind: 'uncaughtException', error });
  const onRejection = (error: unknown) => uncaught.push({ kind: 'unhandledRejection', error });
  const goodClients: GoodClient[] = [];

  before(async () => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onRejection);
    const certs = await testCertificates();
    running = await startMsgTrans({
      listen: ['tcp://127.0.0.1:0', 'ws://127.0.0.1:0/msgtrans', 'quic://127.0.0.1:0'],
      tls: { key: certs.serverKey, cert: certs.serverCert },
      maxPacketSize: MAX_PACKET,
      maxExtHeaderSize: MAX_EXT,
      maxInFlight: MAX_IN_FLIGHT,
      incompleteMessageTimeout: INCOMPLETE_MS,
      heartbeatInterval: HEARTBEAT_MS,
    });
    const port = (protocol: string) => running.server.addresses().find((a) => a.protocol === protocol)!.port;
    targets = {
      tcp: { host: '127.0.0.1', port: port('tcp') },
      ws: `ws://127.0.0.1:${port('ws')}/msgtrans`,
      quic: { host: '127.0.0.1', port: port('quic') },
      ca: certs.ca,
    };
    goodClients.push(
      new GoodClient('tcp', { url: `tcp://127.0.0.1:${targets.tcp.port}` }),
      new GoodClient('ws', { url: targets.ws }),
      new GoodClient('quic', { url: `quic://127.0.0.1:${targets.quic.port}`, tls: { ca: certs.ca } }),
    );
    await Promise.all(goodClients.map((c) => c.connect()));
  });

  after(async () => {
    for (const c of goodClients) c.close();
    await running?.close();
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onRejection);
  });

  test('malformed input closes only the offending connection, with the right code; nothing crashes, leaks or disturbs good clients', async (t) => {
    const server = running.server;
    const failures: Failure[] = [];
    const matcher = new DisconnectMatcher((f) => failures.push(f), 3000);
    reportDisconnects(server, (r) => matcher.report(r));
    const inFlight = new Map<string, FuzzInput[]>();
    const campaign = (inputs: Record<Protocol, number>, seed: number | string, seconds: number) =>
      runCampaign(
        {
          protocols: ['tcp', 'ws', 'quic'],
          inputs,
          workers: WORKERS,
          seed,
          limits: LIMITS,
          deadline: Date.now() + seconds * 1000,
          targets: () => targets,
          probeEvery: { tcp: 16, ws: 16, quic: 8 },
          probeTimeout: 4000,
          maybeTimeout: 300,
          waitForStallChance: 0.05,
          incompleteTimeout: INCOMPLETE_MS,
          matcher,
          onFailure: (f) => failures.push(f),
          inFlight,
        },
        (protocol, worker) => new FuzzGenerator({ protocol, seed: deriveSeed(seed, protocol, worker), limits: LIMITS }),
      );

    for (const c of goodClients) c.start();
    // warm up (JIT, route cache, lazily loaded zstd binding) with another seed, then take the baseline
    await campaign({ tcp: 100, ws: 100, quic: 4 }, 'warm-up', 10);
    await waitFor(() => server.stats().sessions === goodClients.length, 4 * HEARTBEAT_MS);
    const heapBefore = await settledHeapUsed();
    const violationsBefore = server.stats().violations;

    const stats: Record<Protocol, ProtocolStats> = await campaign(INPUTS, SEED, FUZZ_SECONDS);

    await Promise.all(goodClients.map((c) => c.stop()));
    // every fuzz connection is gone; only the good clients' sessions remain
    await waitFor(() => server.stats().sessions === goodClients.length, 4 * HEARTBEAT_MS);
    await new Promise((resolve) => setTimeout(resolve, 200));
    matcher.sweep(Date.now(), 0);
    const heapAfter = await settledHeapUsed();
    const violations = server.stats().violations;

    const summary = [
      ...(['tcp', 'ws', 'quic'] as const).map(
        (p) =>
          `${p}: ${stats[p].inputs} inputs on ${stats[p].connections} connections (${stats[p].closedByServer} closed by the server), ` +
          `${stats[p].probes} probes, ${stats[p].repliesChecked} replies checked, ${stats[p].stalls} stalls, ${stats[p].maybeWaits} maybe-waits, ` +
          `${stats[p].connectFailures} connect failures`,
      ),
      ...goodClients.map((c) => c.summary()),
      `violations: ${JSON.stringify(violations)}`,
      `heap: ${mb(heapBefore)} -> ${mb(heapAfter)}`,
    ].join('\n');

    for (const line of summary.split('\n')) t.diagnostic(line);

    assert.deepEqual(uncaught, [], `uncaught errors:\n${uncaught.map((u) => `${u.kind}: ${String((u.error as Error)?.stack ?? u.error)}`).join('\n')}`);
    assert.deepEqual(failures.map(describeFailure), [], `fuzz failures:\n${failures.map(describeFailure).join('\n')}\n${summary}`);
    assert.deepEqual(matcher.internal, [], 'sessions ended by internal errors');
    for (const c of goodClients) {
      assert.ok(c.ok > 20, `${c.summary()}`);
      assert.equal(c.wrong + c.failed, 0, `${c.summary()}\n${c.problems.join('\n')}`);
      assert.equal(c.ok, c.sent, c.summary());
    }
    for (const p of ['tcp', 'ws', 'quic'] as const) {
      assert.equal(stats[p].inputs, INPUTS[p], `${p} did not run all its inputs in ${FUZZ_SECONDS} s\n${summary}`);
      assert.ok(stats[p].closedByServer > 0, `the server closed no ${p} fuzz connection\n${summary}`);
    }
    // the validation code was reached: each of these can only come from rejecting input
    const fresh = (code: string) => (violations[code] ?? 0) - (violationsBefore[code] ?? 0);
    for (const code of [
      'ERR_MSGTRANS_BAD_VERSION',
      'ERR_MSGTRANS_BAD_COMPRESSION',
      'ERR_MSGTRANS_BAD_PACKET_TYPE',
      'ERR_MSGTRANS_FRAGMENTED',
      'ERR_MSGTRANS_PACKET_TOO_LARGE',
      'ERR_MSGTRANS_EXT_HEADER_TOO_LARGE',
      'ERR_MSGTRANS_BAD_LENGTH',
      'ERR_MSGTRANS_BAD_EXT_HEADER',
      'ERR_MSGTRANS_BAD_PAYLOAD',
      'ERR_MSGTRANS_DECOMPRESSED_TOO_LARGE',
      'ERR_MSGTRANS_UNSUPPORTED_MESSAGE',
      'ERR_MSGTRANS_BAD_FRAME',
    ]) {
      assert.ok(fresh(code) > 0, `no ${code} violation was reported\n${summary}`);
    }
    assert.equal(server.stats().sessions, goodClients.length);
    assert.ok(heapAfter - heapBefore < HEAP_MARGIN, `server heap grew by ${mb(heapAfter - heapBefore)}\n${summary}`);
  });
});
