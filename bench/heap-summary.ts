/**
 * Where a process's JavaScript heap grew between two V8 heap snapshots
 * (`v8.writeHeapSnapshot`): self size and count by kind of object, per unit
 * (e.g. per connection opened between the two), largest first.
 *
 *   node dist/bench/heap-summary.js before.heapsnapshot after.heapsnapshot [units] [top]
 *
 * Kinds: an object by its constructor name, a closure by its function name,
 * V8's internal arrays and hidden objects by their snapshot names ("(object
 * properties)", "system / Context", …), every string as "(string)". Self
 * sizes add up to the heap; retained sizes would count shared objects more
 * than once, so they are not summed here.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Kind → [count, self bytes]. */
export type HeapCensus = Map<string, [number, number]>;

export function heapCensus(file: string): HeapCensus {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const census: HeapCensus = new Map();
  const { nodes, strings } = snap;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]];
    const name = strings[nodes[i + nameAt]];
    const kind = kindOf(type, name);
    const entry = census.get(kind);
    if (entry) {
      entry[0]++;
      entry[1] += nodes[i + sizeAt];
    } else census.set(kind, [1, nodes[i + sizeAt]]);
  }
  return census;
}

function kindOf(type: string, name: string): string {
  switch (type) {
    case 'object':
      return name.length > 60 ? name.slice(0, 57) + '…' : name;
    case 'string':
    case 'concatenated string':
    case 'sliced string':
      return '(string)';
    case 'code':
      return '(code)';
    case 'number':
    case 'bigint':
      return `(${type})`;
    default:
      return `(${type}) ${name.length > 50 ? name.slice(0, 47) + '…' : name}`;
  }
}

export interface HeapGrowth {
  kind: string;
  /** Objects more per unit. */
  count: number;
  /** Self bytes more per unit. */
  bytes: number;
}

/** Growth from `before` to `after`, per unit, largest first; `rest` sums what is past `top`. */
export function heapGrowth(before: HeapCensus, after: HeapCensus, units: number, top = 25): { rows: HeapGrowth[]; rest: number; total: number } {
  const rows: HeapGrowth[] = [];
  for (const [kind, [count, bytes]] of after) {
    const [count0, bytes0] = before.get(kind) ?? [0, 0];
    rows.push({ kind, count: (count - count0) / units, bytes: (bytes - bytes0) / units });
  }
  for (const [kind, [count0, bytes0]] of before) {
    if (!after.has(kind)) rows.push({ kind, count: -count0 / units, bytes: -bytes0 / units });
  }
  rows.sort((a, b) => b.bytes - a.bytes);
  const total = rows.reduce((sum, r) => sum + r.bytes, 0);
  const shown = rows.slice(0, top);
  return { rows: shown, rest: total - shown.reduce((sum, r) => sum + r.bytes, 0), total };
}

export function formatHeapGrowth(growth: ReturnType<typeof heapGrowth>, unit = 'conn'): string {
  const lines = [`| kind | objects/${unit} | bytes/${unit} |`, '|---|---:|---:|'];
  for (const r of growth.rows) lines.push(`| ${r.kind.replace(/\|/g, '\\|')} | ${r.count.toFixed(2)} | ${r.bytes.toFixed(0)} |`);
  lines.push(`| (the rest) | | ${growth.rest.toFixed(0)} |`);
  lines.push(`| **total** | | **${growth.total.toFixed(0)}** |`);
  return lines.join('\n');
}

// run alone: node dist/bench/heap-summary.js before.heapsnapshot after.heapsnapshot [units] [top]
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [before, after, units = '1', top = '25'] = process.argv.slice(2);
  if (!before || !after) {
    console.error('usage: heap-summary.js before.heapsnapshot after.heapsnapshot [units] [top]');
    process.exit(2);
  }
  console.log(formatHeapGrowth(heapGrowth(heapCensus(before), heapCensus(after), Number(units), Number(top))));
}
