/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): the functions with the
 * most self time, and self time grouped by where the code lives.
 *
 *   node dist/bench/profile-summary.js /tmp/msgtrans-prof/CPU.….cpuprofile [top]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function where(url: string): string {
  if (!url) return '';
  let path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const cwd = process.cwd() + '/';
  if (path.startsWith(cwd)) path = path.slice(cwd.length);
  return path;
}

/** Coarse bucket for a function's location. */
function area(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native / V8 builtins)';
  const path = where(url);
  if (path.startsWith('node:')) return 'node core (' + path.replace(/^node:(internal\/)?/, '').split('/')[0] + ')';
  const pkg = path.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (pkg) return pkg[1];
  if (path.startsWith('dist/lib/')) return 'nestjs-msgtrans ' + path.slice('dist/lib/'.length).split('/')[0] + '/';
  if (path.startsWith('dist/bench/')) return 'bench harness';
  return path;
}

export function summarizeProfile(file: string, top = 25): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const { samples, timeDeltas } = profile;
  // timeDeltas[i + 1] is the time spent in samples[i] (until the next sample)
  for (let i = 0; i < samples.length; i++) {
    const dt = i + 1 < timeDeltas.length ? timeDeltas[i + 1] : 0;
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, dt));
  }
  const total = profile.endTime - profile.startTime;
  const fns = new Map<string, { us: number; name: string; at: string; area: string }>();
  const areas = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    const at = url ? `${where(url)}:${lineNumber + 1}` : '';
    const key = `${name}|${at}`;
    const bucket = area(url, name);
    const entry = fns.get(key) ?? { us: 0, name, at, area: bucket };
    entry.us += us;
    fns.set(key, entry);
    areas.set(bucket, (areas.get(bucket) ?? 0) + us);
  }
  const pct = (us: number) => ((100 * us) / total).toFixed(1).padStart(5) + '%';
  const ms = (us: number) => (us / 1000).toFixed(0).padStart(7) + ' ms';
  const lines = [`profile ${file}: ${(total / 1e6).toFixed(1)} s, ${samples.length} samples`, '', `top ${top} functions by self time:`];
  for (const f of [...fns.values()].sort((a, b) => b.us - a.us).slice(0, top)) {
    lines.push(`${ms(f.us)} ${pct(f.us)}  ${f.name}  ${f.at}`);
  }
  // inclusive (self + callees) time of this library's functions, recursion counted once
  const totalUs = new Map<number, number>();
  const totalOf = (id: number): number => {
    const known = totalUs.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id)!;
    let sum = selfUs.get(id) ?? 0;
    for (const child of node.children ?? []) sum += totalOf(child);
    totalUs.set(id, sum);
    return sum;
  };
  const inclusive = new Map<string, { us: number; name: string; at: string }>();
  const onPath = new Set<string>();
  const walk = (id: number): void => {
    const node = byId.get(id)!;
    const { functionName, url, lineNumber } = node.callFrame;
    const ours = where(url).startsWith('dist/lib/');
    const key = ours ? `${functionName || '(anonymous)'}|${where(url)}:${lineNumber + 1}` : '';
    const add = ours && !onPath.has(key);
    if (add) {
      const entry = inclusive.get(key) ?? { us: 0, name: functionName || '(anonymous)', at: `${where(url)}:${lineNumber + 1}` };
      entry.us += totalOf(id);
      inclusive.set(key, entry);
      onPath.add(key);
    }
    for (const child of node.children ?? []) walk(child);
    if (add) onPath.delete(key);
  };
  const root = profile.nodes[0];
  if (root) walk(root.id);
  if (inclusive.size > 0) {
    lines.push('', 'nestjs-msgtrans functions by inclusive time (self + callees):');
    for (const f of [...inclusive.values()].sort((a, b) => b.us - a.us).slice(0, 15)) {
      lines.push(`${ms(f.us)} ${pct(f.us)}  ${f.name}  ${f.at}`);
    }
  }
  lines.push('', 'self time by area:');
  for (const [name, us] of [...areas.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
    lines.push(`${ms(us)} ${pct(us)}  ${name}`);
  }
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node dist/bench/profile-summary.js <file.cpuprofile> [top]');
    process.exit(2);
  }
  console.log(summarizeProfile(file, Number(process.argv[3] ?? 25)));
}
