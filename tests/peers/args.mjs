// Command-line parsing shared by the peers: the chapter's flags only, and
// anything else is refused (a test that mistypes a flag should fail loudly,
// not run a peer wired differently from what it asked for).

/** Parses `--name value` pairs; `repeated` names may occur more than once. */
export function parseFlags(argv, single, repeated) {
  const out = { positional: [] };
  for (const name of repeated) out[name] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      out.positional.push(arg);
      continue;
    }
    const name = arg.slice(2);
    if (!single.includes(name) && !repeated.includes(name)) {
      fail(`unknown flag ${arg}`);
    }
    const value = argv[++i];
    if (value === undefined) fail(`${arg} needs a value`);
    if (repeated.includes(name)) out[name].push(value);
    else out[name] = value;
  }
  return out;
}

/** A TCP port from the command line, or exit 2 naming the bad value. */
export function port(value, what) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) fail(`${what}: not a port: ${value}`);
  return n;
}

export function fail(message) {
  process.stderr.write(`peer: ${message}\n`);
  process.exit(2);
}
