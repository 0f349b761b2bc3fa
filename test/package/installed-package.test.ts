/**
 * The package as a user gets it: `npm pack` (which runs `prepare`, the build
 * a git or path install runs), its file list checked, then unpacked into the
 * node_modules of two throwaway Nest apps outside the source tree, one
 * CommonJS (what `nest new` creates) and one ES module. Each app is compiled
 * by the repository's TypeScript with `--strict --skipLibCheck false` and no
 * DOM lib, then started: it serves a handler with MsgTransServer and calls it
 * with MsgTransClient over TCP.
 *
 * Install method: the tarball is extracted into `<tmp>/node_modules/nestjs-msgtrans`
 * and every other top-level package is a symlink into this repository's
 * node_modules (no network, a second or two), except `zstd-napi` (an optional
 * peer: the apps run without it, as after a plain `npm install`) and
 * `@types/*` other than `@types/node` (so published types that need
 * `@types/ws` fail the compile, as in a project that does not install it).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../../..');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  types: string;
  main: string;
};

interface PackResult {
  filename: string;
  files: { path: string }[];
}

const APP_SOURCE = `import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import {
  MsgTransClient,
  MsgTransConfigError,
  MsgTransErrorCode,
  MsgTransServer,
  type MsgTransClientOptions,
} from 'nestjs-msgtrans';

@Controller()
class MathController {
  @MessagePattern('math.sum')
  sum(@Payload() numbers: number[]): number {
    return numbers.reduce((a, b) => a + b, 0);
  }
}

@Module({ controllers: [MathController] })
class AppModule {}

function zstdWithoutBinding(url: string): string {
  const options: MsgTransClientOptions = { url, compression: { algorithm: 'zstd' } };
  try {
    new MsgTransClient(options).close();
    return 'accepted';
  } catch (err) {
    return err instanceof MsgTransConfigError && err.code === MsgTransErrorCode.ZSTD_UNAVAILABLE ? err.code : String(err);
  }
}

async function main(): Promise<void> {
  const server = new MsgTransServer({ listen: 'tcp://127.0.0.1:0' });
  const app = await NestFactory.createMicroservice(AppModule, { strategy: server, logger: false });
  await app.listen();
  const url = server.addresses()[0].url;
  const client = new MsgTransClient({ url });
  const zlib = new MsgTransClient({ url, compression: { algorithm: 'zlib', threshold: 1 } });
  try {
    const sum = await lastValueFrom(client.send<number, number[]>('math.sum', [1, 2, 3]));
    const zlibSum = await lastValueFrom(zlib.send<number, number[]>('math.sum', new Array<number>(600).fill(1)));
    const moduleSystem = typeof module === 'undefined' ? 'esm' : 'commonjs';
    console.log(JSON.stringify({ moduleSystem, sum, zlibSum, zstd: zstdWithoutBinding(url) }));
  } finally {
    client.close();
    zlib.close();
    await app.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
`;

function tsconfig(): string {
  return JSON.stringify(
    {
      compilerOptions: {
        // as \`nest new\` sets them, but strict, with library checking, and without the DOM lib
        module: 'nodenext',
        moduleResolution: 'nodenext',
        esModuleInterop: true,
        isolatedModules: true,
        emitDecoratorMetadata: true,
        experimentalDecorators: true,
        target: 'ES2023',
        lib: ['ES2023'],
        types: ['node'],
        outDir: './dist',
        rootDir: './src',
        strict: true,
        skipLibCheck: false,
      },
      include: ['src'],
    },
    null,
    2,
  );
}

/** node_modules for the apps: the unpacked package, everything else linked from this repository. */
async function linkDependencies(nodeModules: string): Promise<void> {
  const source = realpathSync(join(ROOT, 'node_modules'));
  await mkdir(join(nodeModules, '@types'), { recursive: true });
  await symlink(join(source, '@types/node'), join(nodeModules, '@types/node'), 'dir');
  for (const entry of readdirSync(source)) {
    if (['nestjs-msgtrans', 'zstd-napi', '@types', '.bin'].includes(entry) || entry.startsWith('.')) continue;
    await symlink(join(source, entry), join(nodeModules, entry), 'dir');
  }
}

async function makeApp(dir: string, type: 'commonjs' | 'module'): Promise<void> {
  await mkdir(join(dir, 'src'), { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${type}`, private: true, type }));
  await writeFile(join(dir, 'tsconfig.json'), tsconfig());
  await writeFile(join(dir, 'src/main.ts'), APP_SOURCE);
}

async function compile(dir: string): Promise<void> {
  try {
    await run(process.execPath, [TSC, '-p', join(dir, 'tsconfig.json')], { cwd: dir, timeout: 60_000 });
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    assert.fail(`the consumer does not type-check:\n${stdout ?? ''}${stderr ?? ''}`);
  }
}

async function start(dir: string): Promise<{ moduleSystem: string; sum: number; zlibSum: number; zstd: string }> {
  const { stdout } = await run(process.execPath, ['dist/main.js'], { cwd: dir, timeout: 30_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

describe('the packed package, installed in consumer projects', { timeout: 120_000 }, () => {
  let tmp: string;
  let pack: PackResult;
  let installed: string;
  let files: Set<string>;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'msgtrans-package-'));
    assert.ok(relative(ROOT, tmp).startsWith('..'), 'consumers live outside the source tree');
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', tmp], {
      cwd: ROOT,
      timeout: 90_000,
      env: { ...process.env, npm_config_loglevel: 'error', npm_config_update_notifier: 'false' },
    });
    // prepare's tsc output may precede the JSON
    pack = (JSON.parse(stdout.slice(stdout.indexOf('[\n'))) as PackResult[])[0];
    files = new Set(pack.files.map((f) => f.path));
    const nodeModules = join(tmp, 'node_modules');
    installed = join(nodeModules, 'nestjs-msgtrans');
    await mkdir(installed, { recursive: true });
    await run('tar', ['-xzf', join(tmp, pack.filename), '-C', installed, '--strip-components=1']);
    await linkDependencies(nodeModules);
    await Promise.all([makeApp(join(tmp, 'cjs-app'), 'commonjs'), makeApp(join(tmp, 'esm-app'), 'module')]);
  });

  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('ships the build, its sources, LICENSE and README, and no tests, samples or benchmarks code', () => {
    for (const path of ['package.json', 'README.md', 'LICENSE', PACKAGE.main.slice(2), PACKAGE.types.slice(2)]) {
      assert.ok(files.has(path), `${path} is in the package`);
    }
    assert.match(readFileSync(join(installed, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0/);
    for (const path of files) {
      assert.doesNotMatch(path, /^(test|sample|scripts|dist\/(test|sample|bench|scripts))\/|^bench\/.*\.ts$|node_modules/, path);
    }
  });

  it('every bin and export target is in the package', () => {
    const targets = [...Object.values(PACKAGE.bin)];
    for (const value of Object.values(PACKAGE.exports)) {
      targets.push(...(typeof value === 'string' ? [value] : Object.values(value)));
    }
    for (const target of targets) assert.ok(files.has(posix.normalize(target)), `${target} is in the package`);
  });

  it('every source map names sources that are shipped, and every map a script names is shipped', () => {
    const maps = [...files].filter((path) => path.endsWith('.map'));
    assert.ok(maps.length > 0);
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(join(installed, map), 'utf8')) as { sources: string[] };
      for (const source of sources) {
        const path = posix.normalize(posix.join(posix.dirname(map), source));
        assert.ok(files.has(path), `${map} names ${path}, which is not shipped`);
      }
    }
    for (const script of [...files].filter((path) => path.endsWith('.js'))) {
      const named = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(installed, script), 'utf8'))?.[1];
      if (named) assert.ok(files.has(posix.join(posix.dirname(script), named)), `${script} names a missing ${named}`);
    }
  });

  it('every file the README links to is shipped', () => {
    const readme = readFileSync(join(installed, 'README.md'), 'utf8');
    const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1].split('#')[0]);
    for (const link of links) {
      if (link === '' || /^[a-z][a-z0-9+.-]*:/i.test(link)) continue;
      assert.ok(files.has(posix.normalize(link)), `README links ${link}, which is not shipped`);
    }
  });

  it('a CommonJS and an ES module Nest app type-check against it with --strict --skipLibCheck false', async () => {
    await Promise.all([compile(join(tmp, 'cjs-app')), compile(join(tmp, 'esm-app'))]);
    // the CommonJS build really require()s the package
    assert.match(await readFile(join(tmp, 'cjs-app/dist/main.js'), 'utf8'), /require\("nestjs-msgtrans"\)/);
  });

  it('a CommonJS Nest app loads it with require() and serves and calls over TCP, without zstd-napi', async () => {
    assert.ok(existsSync(join(tmp, 'cjs-app/dist/main.js')), 'compiled by the previous test');
    const { stdout } = await run(process.execPath, ['-p', "require.resolve('nestjs-msgtrans')"], { cwd: join(tmp, 'cjs-app') });
    assert.equal(dirname(dirname(dirname(realpathSync(stdout.trim())))), realpathSync(installed));
    const result = await start(join(tmp, 'cjs-app'));
    assert.deepEqual(result, { moduleSystem: 'commonjs', sum: 6, zlibSum: 600, zstd: 'ERR_MSGTRANS_ZSTD_UNAVAILABLE' });
  });

  it('an ES module Nest app imports it and serves and calls over TCP, without zstd-napi', async () => {
    assert.ok(existsSync(join(tmp, 'esm-app/dist/main.js')), 'compiled by the previous test');
    const result = await start(join(tmp, 'esm-app'));
    assert.deepEqual(result, { moduleSystem: 'esm', sum: 6, zlibSum: 600, zstd: 'ERR_MSGTRANS_ZSTD_UNAVAILABLE' });
  });
});
