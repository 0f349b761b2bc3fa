// Builds the web client (lib/browser) into one self-contained ES module:
//   dist/browser/msgtrans-web.js      readable
//   dist/browser/msgtrans-web.min.js  minified
//   dist/browser/msgtrans-web.d.ts    types (re-exports tsc's declarations from dist/lib/browser)
// platform 'neutral' makes any Node built-in an error: the bundle must run in a page.
// Run after tsc (npm run build does both).
import { build } from 'esbuild';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { version } = JSON.parse(await readFile(`${root}package.json`, 'utf8'));

const common = {
  entryPoints: [`${root}lib/browser/index.ts`],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  // browsers from 2020 on (Chrome 80, Firefox 80, Safari 14), Deno, Node >= 20
  target: ['es2020'],
  tsconfig: `${root}tsconfig.json`,
  banner: { js: `/*! nestjs-msgtrans web client ${version} | Apache-2.0 */` },
  legalComments: 'none',
  logLevel: 'warning',
};

await mkdir(`${root}dist/browser`, { recursive: true });
await Promise.all([
  build({ ...common, outfile: `${root}dist/browser/msgtrans-web.js` }),
  build({ ...common, outfile: `${root}dist/browser/msgtrans-web.min.js`, minify: true }),
]);
await writeFile(`${root}dist/browser/msgtrans-web.d.ts`, "export * from '../lib/browser/index.js';\n");
