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
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
      edge_fields: string[];
      edge_types: [string[], ...unknown[]];
    };
  };
  nodes: number[];
  edges: number[];
  locations?: number[];
  strings: string[];
}

/** Kind → [count, self bytes]. */
export type HeapCensus = Map<string, [number, number]>;

/**
 * Counts every node of a snapshot by kind. Plain objects are told apart by
 * their first property names (`Object {a,b,c}`), anonymous closures by where
 * they are defined (`(closure) @file:line`), so that what a connection
 * allocates can be traced back to the code.
 */
export function heapCensus(file: string): HeapCensus {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const meta = snap.snapshot.meta;
  const types = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const width = meta.node_fields.length;
  const typeAt = meta.node_fields.indexOf('type');
  const nameAt = meta.node_fields.indexOf('name');
  const sizeAt = meta.node_fields.indexOf('self_size');
  const edgeCountAt = meta.node_fields.indexOf('edge_count');
  const edgeWidth = meta.edge_fields.length;
  const edgeTypeAt = meta.edge_fields.indexOf('type');
  const edgeNameAt = meta.edge_fields.indexOf('name_or_index');
  const edgeToAt = meta.edge_fields.indexOf('to_node');
  const { nodes, edges, strings } = snap;
  const count = nodes.length / width;
  const firstEdge = new Uint32Array(count + 1);
  for (let n = 0, e = 0; n < count; n++) {
    firstEdge[n] = e;
    e += nodes[n * width + edgeCountAt] * edgeWidth;
    firstEdge[n + 1] = e;
  }
  const edgeName = (e: number) => {
    const type = edgeTypes[edges[e + edgeTypeAt]];
    return type === 'element' || type === 'hidden' ? null : strings[edges[e + edgeNameAt]];
  };
  const target = (n: number, name: string) => {
    for (let e = firstEdge[n]; e < firstEdge[n + 1]; e += edgeWidth) {
      if (edgeName(e) === name) return edges[e + edgeToAt] / width;
    }
    return -1;
  };
  const scriptName = (n: number) => {
    const shared = target(n, 'shared');
    let script = shared < 0 ? -1 : target(shared, 'script_or_debug_info');
    if (script < 0 && shared >= 0) script = target(shared, 'script');
    return script < 0 ? '?' : strings[nodes[script * width + nameAt]].replace(/^.*\/(?=[^/]+\/[^/]+$)/, '');
  };
  const lines = new Map<number, string>();
  const locations = snap.locations ?? [];
  for (let i = 0; i + 3 < locations.length; i += 4) lines.set(locations[i] / width, `${locations[i + 2] + 1}`);
  const census: HeapCensus = new Map();
  for (let n = 0; n < count; n++) {
    const i = n * width;
    const type = types[nodes[i + typeAt]];
    const name = strings[nodes[i + nameAt]];
    let kind = kindOf(type, name);
    if (type === 'object' && name === 'Object') {
      const props: string[] = [];
      for (let e = firstEdge[n]; e < firstEdge[n + 1] && props.length < 4; e += edgeWidth) {
        const prop = edgeTypes[edges[e + edgeTypeAt]] === 'property' ? strings[edges[e + edgeNameAt]] : null;
        if (prop !== null && prop !== '__proto__' && prop !== 'map') props.push(prop);
      }
      kind = `Object {${props.join(',')}}`;
    } else if (type === 'closure') {
      kind = `(closure) ${name || '(anonymous)'} @${scriptName(n)}:${lines.get(n) ?? '?'}`;
    }
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
