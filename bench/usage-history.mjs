// Writes a user directory's api_usage.json with a day of past usage, so the gateway's usage compaction has a real file to rewrite.

import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';

/**
 * Writes `count` successful /prompt records of `keyId`, spread over the day that ended an hour ago (so
 * none counts toward the rate limit), in the gateway's layout: a header line with the daily totals,
 * then one record per line.
 */
export async function writeUsageHistory(directory, keyId, count) {
  const end = Date.now() / 1000 - 3600;
  const start = end - 86_400;
  const totals = {};
  const out = createWriteStream(join(directory, 'api_usage.json'), { mode: 0o600 });
  let body = '';
  for (let i = 0; i < count; i += 1) {
    const timestamp = start + ((end - start) * i) / count;
    const day = new Date(timestamp * 1000).toISOString().slice(0, 10);
    const bucket = (totals[day] ??= [0, 0, 0, 0, 0]);
    bucket[0] += 1;
    bucket[1] += 1;
    bucket[3] += 0.002;
    const record = { key_id: keyId, endpoint: '/prompt', timestamp, duration: 0.002, success: true, metadata: { method: 'POST', status: 200 } };
    body += `${i === 0 ? '' : ','}\n${JSON.stringify(record)}`;
  }
  const header = { version: 1, merged_journal: null, daily_totals: { [keyId]: totals }, recent: {} };
  out.write(`{"comfy_gate": ${JSON.stringify(header)},\n"records": [`);
  out.end(`${body}\n]}\n`);
  await once(out, 'finish');
}
