/**
 * What ships as `nestjs-msgtrans/browser`: one self-contained ES module
 * within the size budget, with nothing Node-only in it, and the package's
 * export map pointing at it and at its types.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

// dist/test/browser/ -> repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BUNDLE = `${ROOT}dist/browser/msgtrans-web.js`;
const MINIFIED = `${ROOT}dist/browser/msgtrans-web.min.js`;

/** socket.io's client is 12.9 KB; the issue's budget is 8 KB, minified and gzipped. */
const BUDGET_BYTES = 8 * 1024;

describe('browser bundle', () => {
  test(`the minified bundle is at most ${BUDGET_BYTES} bytes gzipped`, () => {
    const size = gzipSync(readFileSync(MINIFIED), { level: 9 }).length;
    assert.ok(size <= BUDGET_BYTES, `msgtrans-web.min.js is ${size} bytes gzipped, over the ${BUDGET_BYTES}-byte budget`);
  });

  for (const file of [BUNDLE, MINIFIED]) {
    test(`${file.slice(ROOT.length)} is self-contained: no imports, no Node built-ins, Buffer, rxjs or ws`, () => {
      const code = readFileSync(file, 'utf8');
      assert.doesNotMatch(code, /\bimport\s*[\s{*"'(]/, 'it imports something');
      assert.doesNotMatch(code, /\brequire\s*\(/);
      // a specifier, not prose: comments may mention node:cluster and the like
      assert.doesNotMatch(code, /["']node:/);
      assert.doesNotMatch(code, /\bBuffer\b/);
      assert.doesNotMatch(code, /\bprocess\./);
      assert.doesNotMatch(code, /rxjs|Observable|@nestjs/);
      assert.match(code, /export\s*{/, 'it is an ES module');
    });
  }

  test('package.json exports nestjs-msgtrans/browser with its types, and ships dist/browser', async () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8'));
    const entry = pkg.exports['./browser'];
    assert.equal(entry.types, './dist/browser/msgtrans-web.d.ts');
    assert.equal(entry.default, './dist/browser/msgtrans-web.js');
    assert.ok(pkg.files.includes('dist/browser'));
    assert.ok(existsSync(`${ROOT}dist/browser/msgtrans-web.d.ts`));
    assert.ok(existsSync(`${ROOT}dist/lib/browser/index.d.ts`), 'the types it re-exports');
    const exported = await import(`${ROOT}dist/browser/msgtrans-web.js`);
    assert.deepEqual(Object.keys(exported).sort(), ['MsgTransErrorCode', 'MsgTransWebClient', 'MsgTransWebError']);
    // the package resolves its own subpath export to the same module
    assert.equal(await import('nestjs-msgtrans/browser' as string), exported);
  });

  test('its types check in a browser project: DOM lib, no Node types, skipLibCheck off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'msgtrans-web-types-'));
    try {
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            target: 'es2022',
            module: 'nodenext',
            moduleResolution: 'nodenext',
            lib: ['es2022', 'dom', 'dom.iterable'],
            types: [],
            noEmit: true,
            skipLibCheck: false,
          },
          files: ['use.ts'],
        }),
      );
      writeFileSync(
        join(dir, 'use.ts'),
        `import { MsgTransWebClient, MsgTransWebError, MsgTransErrorCode, type MsgTransWebStatus } from ${JSON.stringify(`${ROOT}dist/browser/msgtrans-web.js`)};
const client = new MsgTransWebClient('wss://example.com/msgtrans', { WebSocket, reconnect: { initialDelay: 1 }, metadata: { a: 'b' } });
const status: MsgTransWebStatus = client.status;
export async function main(): Promise<unknown> {
  const n: number = await client.request<number>('x', 1, { timeout: 5 });
  for await (const v of client.stream<string>('s')) v.toUpperCase();
  client.on<{ text: string }>('chat', (m, info) => m.text + info.route);
  client.answer(7, async (d: unknown) => d);
  try {
    await client.emit(3, new Uint8Array(2));
  } catch (e) {
    if (e instanceof MsgTransWebError && e.code === MsgTransErrorCode.TIMEOUT) return e.payload;
  }
  return [n, status];
}
`,
      );
      const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      const result = await promisify(execFile)(process.execPath, [tsc, '-p', dir], { timeout: 60_000 }).catch((err) => err);
      assert.equal(result.code ?? 0, 0, `${result.stdout}${result.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
