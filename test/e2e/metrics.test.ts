import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Logger } from '@nestjs/common';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { lastValueFrom } from 'rxjs';
import { MsgTransClient } from '../../lib/index.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { startMsgTrans, waitFor } from '../support/test-app.js';
import { rejection, within } from '../support/async.js';

before(() => Logger.overrideLogger(false));

describe('metrics', () => {
  let exporter: PrometheusExporter;
  let provider: MeterProvider;
  let metricsUrl: string;

  before(async () => {
    exporter = new PrometheusExporter({ host: '127.0.0.1', port: 0, preventServerStart: true });
    await exporter.startServer();
    const address = (exporter as unknown as { _server: import('node:http').Server })._server.address() as import('node:net').AddressInfo;
    metricsUrl = `http://127.0.0.1:${address.port}/metrics`;
    provider = new MeterProvider({ readers: [exporter] });
  });

  after(async () => {
    await provider.shutdown();
  });

  it('call durations, sessions and traffic in one Prometheus scrape', async () => {
    const running = await startMsgTrans({ listen: 'tcp://127.0.0.1:0', telemetry: { meterProvider: provider } });
    const client = new MsgTransClient({ url: running.url, telemetry: { meterProvider: provider } });
    try {
      for (let i = 0; i < 3; i++) assert.equal(await within(lastValueFrom(client.send('echo', i)), 5000, 'echo'), i);
      await rejection(lastValueFrom(client.send('fail.rpc', {})), 5000, 'fail');
      const text = await within(
        fetch(metricsUrl).then((r) => r.text()),
        5000,
        'scrape',
      );
      const line = (pattern: RegExp) => assert.match(text, pattern, `${pattern} in\n${text}`);
      line(/^rpc_server_call_duration(?:_seconds)?_bucket\{[^}]*rpc_method="echo"[^}]*rpc_response_status_code="OK"[^}]*le="\+Inf"\} 3$/m);
      line(/^rpc_client_call_duration(?:_seconds)?_bucket\{[^}]*rpc_method="echo"[^}]*le="\+Inf"\} 3$/m);
      line(/^rpc_server_call_duration(?:_seconds)?_count\{[^}]*rpc_method="fail\.rpc"[^}]*error_type="[^"]+"[^}]*\} 1$/m);
      line(/^rpc_client_call_duration(?:_seconds)?_sum\{[^}]*rpc_method="echo"/m);
      line(/^msgtrans_sessions\{[^}]*msgtrans_role="server",network_protocol_name="tcp"[^}]*\} 1$/m);
      line(/^msgtrans_sessions\{[^}]*msgtrans_role="client",network_protocol_name="tcp"[^}]*\} 1$/m);
      line(/^msgtrans_messages_received(_total)?\{[^}]*network_protocol_name="tcp"[^}]*\} \d+/m);
      line(/^msgtrans_bytes_sent(_bytes)?(_total)?\{[^}]*network_protocol_name="tcp"[^}]*\} \d+/m);
    } finally {
      client.close();
      await running.close();
    }
  });
});

for (const protocol of PROTOCOL_CASES) {
  describe(`stats() over ${protocol.name}, without OpenTelemetry`, () => {
    it('sessions, messages and bytes per protocol on both ends; violations by code', async () => {
      const certs = await testCertificates();
      const running = await startMsgTrans(protocol.server(certs));
      const client = new MsgTransClient(protocol.client(running.url, certs));
      try {
        for (let i = 0; i < 5; i++) await within(lastValueFrom(client.send('echo', 'x'.repeat(100))), 5000, 'echo');
        await waitFor(() => (running.server.stats().protocols[protocol.name]?.messagesOut ?? 0) >= 5, 5000);
        const server = running.server.stats();
        assert.equal(server.sessions, 1);
        const mine = server.protocols[protocol.name];
        assert.equal(mine.sessions, 1);
        assert.ok(mine.messagesIn >= 5 && mine.messagesOut >= 5, JSON.stringify(mine));
        assert.ok(mine.bytesIn >= 5 * 100 && mine.bytesOut >= 5 * 100, JSON.stringify(mine));
        const own = client.stats();
        assert.equal(own.sessions, 1);
        // five requests out, five replies in (a QUIC stream's opening packet is the connection's, not counted here)
        assert.equal(own.protocols[protocol.name].messagesOut, 5);
        assert.equal(own.protocols[protocol.name].messagesIn, 5);
        assert.ok(own.protocols[protocol.name].bytesOut >= 500);
        if (protocol.name === 'tcp') {
          // a peer that sends garbage: one violation, counted by code, in both figures
          const url = new URL(running.url);
          const raw = connect(Number(url.port), url.hostname);
          raw.on('error', () => undefined);
          raw.write(Buffer.alloc(64, 0xff));
          await waitFor(() => Object.keys(running.server.stats().violations).length === 1, 5000);
          await waitFor(() => Object.keys(running.server.stats().protocols.tcp.errors).length === 1, 5000);
          const after = running.server.stats();
          assert.deepEqual(Object.keys(after.protocols.tcp.errors), Object.keys(after.violations));
          raw.destroy();
        }
      } finally {
        client.close();
        await running.close();
      }
    });
  });
}
