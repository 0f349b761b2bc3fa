/** A small `--name value` / `--name=value` / `--flag` parser for the scripts. */
export function parseArgs(argv: string[], known: Record<string, 'string' | 'number' | 'boolean'>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    let [name, value] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const type = known[name];
    if (type === undefined) throw new Error(`unknown option --${name} (known: ${Object.keys(known).map((k) => `--${k}`).join(' ')})`);
    if (type === 'boolean') {
      out[name] = value === undefined ? true : value !== 'false';
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
    }
    if (type === 'number') {
      const n = Number(value.replace(/[_,]/g, ''));
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} needs a non-negative number, got ${value}`);
      out[name] = n;
    } else {
      out[name] = value;
    }
  }
  return out;
}
