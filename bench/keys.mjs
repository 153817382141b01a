// Writes a user directory's api_keys.json directly: `count` user keys (and an admin key when asked), streamed one per line; returns one of them.

import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';

/** Rate limit of every bench key: the highest allowed, so no bench run is ever refused. */
const RATE_LIMIT = 10_000_000;

/**
 * Creates `dir` and its api_keys.json with `count` user keys in the gateway's own layout (`{`, one
 * `"id": {record},` line per key, `}`), and one admin key after them when `admin` is set. Resolves
 * {apiKey, keyId} of the key in the middle of the file, with `admin: {apiKey, keyId}` when asked.
 */
export async function writeKeysFile(dir, count, { admin = false } = {}) {
  mkdirSync(dir, { recursive: true });
  const out = createWriteStream(join(dir, 'api_keys.json'), { mode: 0o600 });
  const benchIndex = Math.floor(count / 2);
  const createdAt = Date.now() / 1000;
  let benchKey = null;
  let batch = '{';
  let random = Buffer.alloc(0);
  for (let i = 0; i < count; i += 1) {
    // One large random read per 4096 keys: 32 bytes of key and 16 of key_id each.
    if (i % 4096 === 0) random = randomBytes(48 * 4096);
    const at = (i % 4096) * 48;
    const plaintext = `comfy_${random.toString('base64url', at, at + 32)}`;
    const record = keyRecord(random.toString('base64url', at + 32, at + 48), `bench key ${i}`, plaintext, createdAt);
    if (i === benchIndex) benchKey = { apiKey: plaintext, keyId: record.key_id };
    batch += `${i === 0 ? '' : ','}\n${JSON.stringify(record.key_id)}: ${JSON.stringify(record)}`;
    if (batch.length > 1 << 20) {
      if (!out.write(batch)) await once(out, 'drain');
      batch = '';
    }
  }
  let adminKey = null;
  if (admin) {
    const random = randomBytes(48);
    const plaintext = `comfy_${random.toString('base64url', 0, 32)}`;
    const record = keyRecord(random.toString('base64url', 32, 48), 'bench admin key', plaintext, createdAt, 'admin');
    adminKey = { apiKey: plaintext, keyId: record.key_id };
    batch += `${count === 0 ? '' : ','}\n${JSON.stringify(record.key_id)}: ${JSON.stringify(record)}`;
  }
  out.end(`${batch}\n}\n`);
  await once(out, 'finish');
  return adminKey ? { ...benchKey, admin: adminKey } : benchKey;
}

function keyRecord(keyId, name, plaintext, createdAt, role = 'user') {
  return {
    key_id: keyId,
    name,
    key_hash: createHash('sha256').update(plaintext).digest('hex'),
    created_at: createdAt,
    last_used: null,
    rate_limit: RATE_LIMIT,
    is_active: true,
    metadata: {},
    role,
  };
}
