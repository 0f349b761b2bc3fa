/**
 * The web client in a real browser: Debian's Chromium (/usr/bin/chromium,
 * apt package `chromium`; MSGTRANS_CHROMIUM names another binary) driven by
 * playwright-core loads the built, minified bundle from a local HTTP server
 * and runs the shared suite inside the page against a Nest app on ws:// and
 * wss:// (the browser is told to ignore certificate errors, for the test CA).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { firstValueFrom, filter, timeout } from 'rxjs';
import { within } from '../support/async.js';
import { defineWebClientSuite, errorOf, until, type Step, type WebEnvironment } from './web-client-suite.js';
import { startWebTestServer } from './web-test-server.js';

const CHROMIUM = process.env.MSGTRANS_CHROMIUM ?? '/usr/bin/chromium';
// dist/test/browser/ -> dist/browser/
const BUNDLE = fileURLToPath(new URL('../../browser/msgtrans-web.min.js', import.meta.url));

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>msgtrans web client test</title>
<script type="module">
  import * as msgtrans from '/msgtrans-web.min.js';
  window.web = {
    ...msgtrans,
    WebSocket,
    newClient: (url, options) => new msgtrans.MsgTransWebClient(url, options),
    until: ${until.toString()},
    errorOf: ${errorOf.toString()},
  };
  window.state = {};
  window.ready = true;
</script>`;

/** Serves the test page and the bundle on 127.0.0.1; resolves with its origin. */
async function serveTestPage(): Promise<{ server: Server; origin: string }> {
  const bundle = await readFile(BUNDLE);
  const server = createServer((req, res) => {
    if (req.url === '/msgtrans-web.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(bundle);
    } else if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    } else if (req.url === '/favicon.ico') {
      res.writeHead(204).end();
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, origin: `http://127.0.0.1:${port}` };
}

/** Opens the test page and waits until the bundle has loaded. */
async function openTestPage(browser: Browser, origin: string, problems: string[]): Promise<Page> {
  const page = await browser.newPage();
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => (globalThis as any).ready === true, null, { timeout: 10_000 });
  return page;
}

/** Runs a step inside the page: sent as source text with a JSON argument. */
function pageEnvironment(page: () => Page): WebEnvironment {
  return {
    run: <A, R>(step: Step<A, R>, arg: A) =>
      page().evaluate(`(${step.toString()})(window.web, window.state, ${JSON.stringify(arg) ?? 'undefined'})`) as Promise<R>,
  };
}

describe('web client in Chromium', () => {
  let browser: Browser;
  let page: Page;
  let http: Server;
  let origin: string;
  const problems: string[] = [];
  const env = pageEnvironment(() => page);

  before(async () => {
    // never skipped: a machine without the browser fails here with the fix (.ci/run installs it)
    assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium`);
    ({ server: http, origin } = await serveTestPage());
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // wss:// uses the test CA, which this browser does not know
      // containers often have a tiny /dev/shm
      args: ['--ignore-certificate-errors', '--disable-dev-shm-usage'],
    });
    page = await openTestPage(browser, origin, problems);
  });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => http?.close(resolve));
    // uncaught errors in the page are bugs even when every assertion held
    assert.deepEqual(problems.filter((p) => !p.includes('WebSocket connection to')), []);
  });

  defineWebClientSuite('over ws://', 'ws', () => env);
  defineWebClientSuite('over wss://', 'wss', () => env, false);

  describe('page lifecycle', () => {
    test('going offline drops the connection; coming back online reconnects at once', async () => {
      const served = await startWebTestServer('ws://127.0.0.1:0/msgtrans');
      try {
        await env.run(async (web, state, url: string) => {
          // a long backoff: only the 'online' event can bring it back in time
          const client = web.newClient(url, { reconnect: { initialDelay: 20_000, maxDelay: 20_000 } });
          (state.clients ??= []).push(client);
          state.offline = { client, statuses: [] };
          client.onStatus((s) => state.offline.statuses.push(s));
          await client.request('echo', 1);
        }, served.url);
        await page.context().setOffline(true);
        await env.run(async (web, state) => web.until(() => state.offline.client.status === 'reconnecting'), null);
        await page.context().setOffline(false);
        const got = await env.run(async (web, state) => {
          const { client, statuses } = state.offline;
          const echoed = await client.request('echo', 'back online', { timeout: 5000 });
          await client.close();
          return { echoed, statuses };
        }, null);
        assert.deepEqual(got, { echoed: 'back online', statuses: ['connecting', 'connected', 'reconnecting', 'connected', 'closed'] });
      } finally {
        await served.close();
      }
    });

    test('closing the tab closes the socket cleanly', async () => {
      const served = await startWebTestServer('ws://127.0.0.1:0/msgtrans');
      const tab = await openTestPage(browser, origin, problems);
      try {
        const { sessionId } = await pageEnvironment(() => tab).run(async (web, state, url: string) => {
          state.client = web.newClient(url);
          return state.client.request('web.whoami');
        }, served.url);
        const closed = firstValueFrom(served.sessions.closed$.pipe(filter((c) => c.session.id === sessionId), timeout(10_000)));
        await tab.close({ runBeforeUnload: true });
        const { error } = await within(closed, 10_000, 'session closed');
        assert.equal(error, undefined, `the server saw ${error?.message}`);
      } finally {
        await served.close();
      }
    });
  });
});
