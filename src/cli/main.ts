#!/usr/bin/env node
// The comfy-gate command: the only place that reads argv, prints usage and sets the exit code.

import { createInterface } from 'node:readline';
import { ConfigError, SERVE_OPTIONS } from '../config/load.js';
import { UnsafeStoreError } from '../store/file/store-permissions.js';
import { StoreCorruptError } from '../store/types.js';
import { audit } from './commands/audit.js';
import { keys } from './commands/keys.js';
import { migrate } from './commands/migrate.js';
import { serve } from './commands/serve.js';
import { usage } from './commands/usage.js';
import { workflows } from './commands/workflows.js';
import type { CliContext } from './options.js';
import { printable } from './output.js';
import { CommandError, UsageError } from './usage-error.js';

const HELP = `comfy-gate: API keys, rate limits and usage accounting in front of ComfyUI.

Usage:
  comfy-gate [serve] [options]        Run the gateway (ComfyUI's port by default: 8188)
  comfy-gate [serve] [options] -- COMMAND ARGS...
                                      Run the gateway and ComfyUI as its child, restarted when it
                                      exits; {port} in ARGS is the loopback port it proxies to,
                                      e.g. -- python main.py --port {port} (not with --upstream)
  comfy-gate keys list                List the keys
  comfy-gate keys create [options]    Create a key and print it once
  comfy-gate keys show KEY_ID         One key and its usage over 30 days
  comfy-gate keys update KEY_ID ...   Change the name, rate limit, role or expiry
  comfy-gate keys disable KEY_ID      Refuse the key until enabled again
  comfy-gate keys enable KEY_ID       Accept a disabled key again
  comfy-gate keys rotate KEY_ID       New secret; --grace keeps the old one working a while
  comfy-gate keys delete KEY_ID       Delete a key (--yes without a terminal)
  comfy-gate workflows list           List the named workflows
  comfy-gate workflows show NAME      One workflow and its inputs
  comfy-gate workflows put NAME --file FILE
                                      Register or replace a workflow
  comfy-gate workflows delete NAME    Delete a workflow (--yes without a terminal)
  comfy-gate usage [options]          Usage per key and day: table, JSON or CSV for billing
  comfy-gate audit [options]          The audit trail of key changes and sign-ins
  comfy-gate migrate [options]        Copy a JSON-file store into PostgreSQL
  comfy-gate COMMAND --help           The options of a command
  comfy-gate --help

The commands work on the store directory (--user-directory DIR, env
COMFY_GATE_USER_DIRECTORY, default ./user), or with --database-url URL (env
COMFY_GATE_DATABASE_URL) on the gateway's PostgreSQL database, also while gateways
serve it; a gateway applies their changes within 2 seconds (on a database, at once).
Each takes --json.

Options of serve (each also read from the environment variable shown):
${SERVE_OPTIONS.map((o) => `  --${o.flag}${o.type === 'string' ? ' VALUE' : ''} `.padEnd(32) + `${o.help} [${o.env}]`).join('\n')}

Exit codes: 0 ok, 1 failure, 2 bad arguments or a store folder others can change.`;

const COMMANDS: Record<string, (args: string[], ctx: CliContext) => Promise<number>> = { keys, usage, audit, migrate, workflows };

async function main(argv: string[]): Promise<number | null> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === 'help') {
    console.log(HELP);
    return 0;
  }
  if (first !== undefined && Object.hasOwn(COMMANDS, first)) return COMMANDS[first]!(rest, context());
  if (first !== undefined && first !== 'serve' && !first.startsWith('-')) {
    throw new UsageError(`unknown command ${JSON.stringify(first)}; the commands are serve, ${Object.keys(COMMANDS).join(', ')}`);
  }
  await serve(first === 'serve' ? rest : argv, process.env);
  return null;
}

/** The environment, the clock, and a yes/no question when both stdin and stderr are a terminal. */
function context(): CliContext {
  const interactive = process.stdin.isTTY === true && process.stderr.isTTY === true;
  return { env: process.env, now: () => Date.now() / 1000, ...(interactive ? { confirm } : {}) };
}

/** Asks on the terminal; only `y` or `yes` is a yes. Ctrl-C or the end of input is a no. */
function confirm(question: string): Promise<boolean> {
  return new Promise((resolve) => {
    const terminal = createInterface({ input: process.stdin, output: process.stderr });
    let answer: string | null = null;
    terminal.on('SIGINT', () => terminal.close());
    terminal.on('close', () => {
      if (answer === null) process.stderr.write('\n');
      resolve(answer !== null && /^y(es)?$/i.test(answer.trim()));
    });
    terminal.question(question, (line) => {
      answer = line;
      terminal.close();
    });
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== null) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`comfy-gate: ${printable(error.message)}\nRun ${error.helpCommand} for the options.`);
      process.exit(2);
    }
    if (error instanceof ConfigError) {
      console.error(`comfy-gate: ${error.message}\nRun comfy-gate --help for the options.`);
      process.exit(2);
    }
    if (error instanceof UnsafeStoreError) {
      console.error(`comfy-gate: ${printable(error.message)}`);
      process.exit(2);
    }
    if (error instanceof StoreCorruptError || error instanceof CommandError) {
      console.error(`comfy-gate: ${printable(error.message)}`);
      process.exit(1);
    }
    const code = (error as NodeJS.ErrnoException).code;
    console.error(`comfy-gate: ${code === 'EADDRINUSE' ? 'the port is already in use' : printable((error as Error).message)}`);
    process.exit(1);
  },
);
