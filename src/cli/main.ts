#!/usr/bin/env node
// The comfy-gate command: the only place that reads argv, prints usage and sets the exit code.

import { ConfigError, SERVE_OPTIONS } from '../config/load.js';
import { StoreCorruptError } from '../store/types.js';
import { keys } from './commands/keys.js';
import { serve } from './commands/serve.js';
import { UsageError } from './usage-error.js';

const HELP = `comfy-gate: API keys, rate limits and usage accounting in front of ComfyUI.

Usage:
  comfy-gate [serve] [options]   Run the gateway (ComfyUI's port by default: 8188)
  comfy-gate keys create ...     Create a key from the shell (comfy-gate keys --help)
  comfy-gate --help

Options of serve (each also read from the environment variable shown):
${SERVE_OPTIONS.map((o) => `  --${o.flag}${o.type === 'string' ? ' VALUE' : ''}`.padEnd(32) + `${o.help} [${o.env}]`).join('\n')}

Exit codes: 0 ok, 1 failure, 2 bad arguments.`;

async function main(argv: string[]): Promise<number | null> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === 'help') {
    console.log(HELP);
    return 0;
  }
  if (first === 'keys') return keys(rest, process.env);
  await serve(first === 'serve' ? rest : argv, process.env);
  return null;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== null) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof UsageError) {
      console.error(`comfy-gate: ${error.message}\nRun comfy-gate --help for the options.`);
      process.exit(2);
    }
    if (error instanceof StoreCorruptError) {
      console.error(`comfy-gate: ${error.message}`);
      process.exit(1);
    }
    const code = (error as NodeJS.ErrnoException).code;
    console.error(`comfy-gate: ${code === 'EADDRINUSE' ? 'the port is already in use' : (error as Error).message}`);
    process.exit(1);
  },
);
