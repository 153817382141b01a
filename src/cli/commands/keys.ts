// `comfy-gate keys …`: key management from the shell, safe to run beside a gateway on the same directory.

import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createdKeyBody, newKey } from '../../auth/new-key.js';
import { DEFAULTS } from '../../config/schema.js';
import { parseCreateKey } from '../../server/key-input.js';
import { FileAuditStore } from '../../store/file/file-audit-store.js';
import { FileKeyStore } from '../../store/file/file-key-store.js';
import { createUsageFileIfMissing } from '../../store/file/file-usage-store.js';
import { UsageError } from '../usage-error.js';

export const KEYS_HELP = `Usage: comfy-gate keys create [options]

Creates an API key and prints it once. Safe while a gateway runs on the same
directory: the running gateway accepts the new key within 2 seconds.

Options:
  --user-directory DIR  Folder of api_keys.json (default ${DEFAULTS.userDirectory}, env COMFY_GATE_USER_DIRECTORY)
  --name NAME           The key's name (default "Unnamed Key")
  --rate-limit N        Requests per hour (default 100)
  --admin               Make an admin key (may manage keys and read all usage)
  --json                Print the same JSON object as POST /api/keys`;

/** Runs a `keys` subcommand; returns the process exit code. */
export async function keys(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [subcommand, ...rest] = args;
  if (subcommand === undefined || subcommand === '--help' || subcommand === '-h') {
    console.log(KEYS_HELP);
    return subcommand === undefined ? 2 : 0;
  }
  if (subcommand !== 'create') throw new UsageError(`unknown keys command ${JSON.stringify(subcommand)}; see comfy-gate keys --help`);
  return createKey(rest, env);
}

async function createKey(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        'user-directory': { type: 'string' },
        name: { type: 'string' },
        'rate-limit': { type: 'string' },
        admin: { type: 'boolean' },
        json: { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const rateLimit = values['rate-limit'];
  if (rateLimit !== undefined && !/^\d+$/.test(rateLimit)) throw new UsageError(`--rate-limit must be a whole number, not ${JSON.stringify(rateLimit)}`);
  let input;
  try {
    input = parseCreateKey({
      ...(values.name !== undefined ? { name: values.name } : {}),
      ...(rateLimit !== undefined ? { rate_limit: Number(rateLimit) } : {}),
      role: values.admin ? 'admin' : 'user',
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const directory = resolve(values['user-directory'] ?? env.COMFY_GATE_USER_DIRECTORY ?? DEFAULTS.userDirectory);
  await mkdir(directory, { recursive: true });
  const store = new FileKeyStore({ directory });
  await store.open();
  try {
    const { record, apiKey } = newKey(input, Date.now() / 1000);
    await store.create(record);
    await createUsageFileIfMissing(join(directory, 'api_usage.json'));
    await new FileAuditStore({ directory }).append({ ts: record.created_at, actor: 'cli', action: 'key.create', key_id: record.key_id, details: { name: record.name, role: record.role, rate_limit: record.rate_limit } });
    if (values.json) {
      console.log(JSON.stringify(createdKeyBody(record, apiKey), null, 2));
    } else {
      console.log(`Created ${record.role} key "${record.name}" (key_id ${record.key_id}, ${record.rate_limit} requests/hour) in ${store.keysPath}`);
      console.log(`API key (shown only this once, save it now): ${apiKey}`);
    }
  } finally {
    await store.close();
  }
  return 0;
}
