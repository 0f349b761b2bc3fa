import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** Runs the compiled sample (what `npm start` runs) and collects its output. */
function runSample(certDir: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'dist/sample/run.js')], {
      cwd: root,
      env: { ...process.env, MSGTRANS_CERT_DIR: certDir, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sample did not finish in time\n${stdout}\n${stderr}`));
    }, 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('the sample client calls every handler over tcp, ws and quic against the sample server', async () => {
  const certDir = await mkdtemp(join(tmpdir(), 'msgtrans-sample-'));
  try {
    const { code, stdout, stderr } = await runSample(certDir);
    assert.equal(code, 0, stderr);
    // certificates are made on first run
    assert.ok((await readdir(certDir)).includes('server.pem'));
    const sections = stdout.split('\n--- client over ').slice(1);
    assert.deepEqual(
      sections.map((s) => s.slice(0, s.indexOf(':'))),
      ['tcp', 'ws', 'quic'],
    );
    for (const section of sections) {
      const lines = section.split('\n').filter((line) => line.includes(' -> '));
      assert.deepEqual(lines, [
        'echo        -> {"hello":"msgtrans"}',
        'math.sum    -> 10',
        'math.count  -> [1,2,3,4,5]',
        'biz_type 1  -> pong: raw bytes',
        'audit.log   -> event sent',
        'error       -> {"status":"error","message":"math.sum expects an array of numbers"}',
        'chat.join   -> bob joined lobby, 2 members',
        'chat.say    -> delivered to 1',
        'bob hears   -> alice: hi bob',
        'bob hears   -> server: alice left',
        'chat.leave  -> bob left lobby',
      ]);
    }
  } finally {
    await rm(certDir, { recursive: true, force: true });
  }
});
