// The admin usage report with 100,000 keys: paged by key_id with every key once and the right totals, streamed with a bounded body, and other requests answered meanwhile.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';

const KEYS = 100_000;
/** Keys deleted since, whose usage is still in the usage file. */
const DELETED_KEYS = 50;
const DAY = 86_400;
const MiB = 1024 * 1024;
/** How much the gateway's resident memory may grow while it answers every report in this file. */
const RSS_GROWTH_BOUND = 256 * MiB;

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
const ADMIN = { key_id: 'zz-admin', api_key: `comfy_${'a'.repeat(43)}` };
const USER = { key_id: 'zz-user', api_key: `comfy_${'u'.repeat(43)}` };

type Bucket = [number, number, number, number, number];

interface UsageStatsBody {
  total_requests: number;
  requests_last_24h: number;
}

interface ReportPage {
  usage_stats: Record<string, UsageStatsBody>;
  daily?: Record<string, Array<{ date: string; requests: number }>>;
  daily_total?: Array<{ date: string; requests: number }>;
  total_stats: UsageStatsBody;
  next_cursor: string | null;
}

/** A seeded key's id: 22 URL-safe characters like generated ones, all sorting before the admin and user keys. */
const seededId = (i: number): string => `k${createHash('sha256').update(String(i)).digest('base64url').slice(0, 21)}`;

function keyRecord(keyId: string, secret: string, role: 'user' | 'admin', rateLimit: number): Record<string, unknown> {
  return {
    key_id: keyId,
    name: `Key ${keyId}`,
    created_at: 1_714_000_000,
    last_used: null,
    rate_limit: rateLimit,
    is_active: true,
    metadata: { team: 'scale' },
    role,
    expires_at: null,
    key_prefix: null,
    key_hash: sha256(secret),
    previous_key_hash: null,
    previous_key_valid_until: null,
    max_queued: null,
    max_running: null,
    daily_execution_seconds: null,
  };
}

/**
 * Writes `api_keys.json` a key per line (large enough to be loaded as a compact index) and an `api_usage.json`
 * whose header holds each seeded key's daily totals. Resolves the requests per key over the last 365 days.
 */
async function seedStore(directory: string): Promise<Map<string, number>> {
  const records = [keyRecord(ADMIN.key_id, ADMIN.api_key, 'admin', 1_000_000), keyRecord(USER.key_id, USER.api_key, 'user', 1_000_000)];
  const ids: string[] = [];
  for (let i = 0; i < KEYS; i += 1) {
    const id = seededId(i);
    ids.push(id);
    records.push(keyRecord(id, `secret-${i}`, 'user', 100));
  }
  await writeFile(
    join(directory, 'api_keys.json'),
    `{\n${records.map((record) => `${JSON.stringify(record.key_id)}: ${JSON.stringify(record)}`).join(',\n')}\n}\n`,
  );

  const now = Date.now() / 1000;
  const dailyTotals: Record<string, Record<string, Bucket>> = {};
  const hourly: Record<string, Record<string, number>> = {};
  const expected = new Map<string, number>();
  for (let i = 0; i < DELETED_KEYS; i += 1) ids.push(`kdeleted-${i}`);
  ids.forEach((id, i) => {
    const requests = 1 + (i % 5);
    const failures = i % 2;
    const day = new Date((now - (i % 300) * DAY) * 1000).toISOString().slice(0, 10);
    dailyTotals[id] = { [day]: [requests, requests - failures, failures, requests * 0.5, i % 3] };
    if (i % 10 === 0) hourly[id] = { [String(Math.floor(now / 3600))]: 2 };
    expected.set(id, requests);
  });
  const header = { version: 1, merged_journal: null, daily_totals: dailyTotals, hourly_requests: hourly };
  await writeFile(join(directory, 'api_usage.json'), `{"comfy_gate": ${JSON.stringify(header)},\n"records": [\n]}\n`);
  return expected;
}

/** The process's resident memory in bytes, from /proc. */
async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)![1]) * 1024;
}

describe('the usage report with 100,000 keys', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let directory: Awaited<ReturnType<typeof tempUserDirectory>>;
  let expected: Map<string, number>;
  let rssAtStart: number;
  let rssMost = 0;

  /** Fetches a report page as the admin, noting the gateway's memory after it. */
  async function reportPage(query: string): Promise<{ page: ReportPage; bytes: number }> {
    const res = await send(gateway.url, `/api/usage/all?${query}`, { key: ADMIN.api_key });
    assert.equal(res.status, 200, res.text.slice(0, 300));
    rssMost = Math.max(rssMost, await residentBytes(gateway.pid));
    return { page: res.json<ReportPage>(), bytes: Buffer.byteLength(res.text) };
  }

  before(async () => {
    comfy = await startFakeComfyUI();
    directory = await tempUserDirectory();
    expected = await seedStore(directory.path);
    gateway = await startGateway({ upstream: comfy.url, userDirectory: directory.path, args: ['--require-api-auth'] });
    rssAtStart = await residentBytes(gateway.pid);
  });
  after(async () => {
    await gateway?.stop();
    await comfy.close();
    await directory.remove();
    if (rssMost > 0) assert.ok(rssMost - rssAtStart < RSS_GROWTH_BOUND, `resident memory grew by ${Math.round((rssMost - rssAtStart) / MiB)} MiB`);
  });

  test('paging by key_id lists every key once, in order, with its usage; the totals cover every key', async () => {
    const seen = new Map<string, number>();
    let after: string | null = null;
    let pages = 0;
    let last = '';
    for (; pages < 1000; pages += 1) {
      const { page } = await reportPage(`days=365&limit=1000${after === null ? '' : `&after=${encodeURIComponent(after)}`}`);
      const ids = Object.keys(page.usage_stats);
      assert.ok(ids.length <= 1000);
      for (const id of ids) {
        assert.ok(id > last, `${id} comes after ${last}`);
        last = id;
        assert.equal(seen.has(id), false, `${id} appears once`);
        seen.set(id, page.usage_stats[id]!.total_requests);
      }
      if (page.next_cursor === null) break;
      assert.equal(page.next_cursor, ids.at(-1));
      after = page.next_cursor;
    }
    assert.equal(pages + 1, Math.ceil((KEYS + DELETED_KEYS + 2) / 1000));
    assert.equal(seen.size, KEYS + DELETED_KEYS + 2, 'every key, the deleted ones with usage included');
    for (const [id, requests] of expected) assert.equal(seen.get(id), requests, `the requests of ${id}`);

    // The admin and user keys sort last: one page holds both, with totals taken at the same moment.
    const lastSeeded = [...expected.keys()].sort().at(-1)!;
    const { page } = await reportPage(`days=365&limit=2&after=${encodeURIComponent(lastSeeded)}`);
    assert.deepEqual(Object.keys(page.usage_stats), [ADMIN.key_id, USER.key_id]);
    const seededTotal = [...expected.values()].reduce((a, b) => a + b, 0);
    const liveTotal = page.usage_stats[ADMIN.key_id]!.total_requests + page.usage_stats[USER.key_id]!.total_requests;
    assert.equal(page.total_stats.total_requests, seededTotal + liveTotal);
    const seededLast24h = Math.ceil((KEYS + DELETED_KEYS) / 10) * 2;
    assert.equal(
      page.total_stats.requests_last_24h,
      seededLast24h + page.usage_stats[ADMIN.key_id]!.requests_last_24h + page.usage_stats[USER.key_id]!.requests_last_24h,
    );
  });

  test('a page of 100 keys over 365 days stays small, with or without the daily series', async () => {
    const plain = await reportPage('days=365');
    assert.equal(Object.keys(plain.page.usage_stats).length, 100, '100 keys by default');
    assert.ok(plain.bytes < 2 * MiB, `${plain.bytes} bytes`);
    const byDay = await reportPage('days=365&by=day&limit=100');
    assert.equal(Object.keys(byDay.page.daily!).length, 100);
    assert.equal(byDay.page.daily_total!.length, 365);
    assert.equal(byDay.page.daily_total!.at(-1)!.date, new Date().toISOString().slice(0, 10));
    // Each day of each key is one object of ten figures (about 150 bytes): the page grows with its key-days, nothing else.
    assert.ok(byDay.bytes < 101 * 365 * 180, `${byDay.bytes} bytes`);
  });

  test('while a large page is being sent, another key is answered', async () => {
    const url = new URL(`${gateway.url}/api/usage/all?days=365&by=day&limit=1000`);
    let ended = false;
    const chunks: Buffer[] = [];
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(
        { host: url.hostname, port: url.port, path: url.pathname + url.search, headers: { 'x-api-key': ADMIN.api_key }, agent: false },
        resolve,
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(response.statusCode, 200);
    // Not read for now: the gateway must wait for this client without holding up anyone else.
    response.pause();
    const body = new Promise<void>((resolve, reject) => {
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        ended = true;
        resolve();
      });
      response.on('error', reject);
    });
    const other = await send(gateway.url, '/api/usage?days=1', { key: USER.api_key });
    assert.equal(other.status, 200);
    assert.equal(other.json().key_id, USER.key_id);
    assert.equal(ended, false, 'the large page is still being sent');
    rssMost = Math.max(rssMost, await residentBytes(gateway.pid));
    response.resume();
    await body;
    const page = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ReportPage;
    assert.equal(Object.keys(page.daily!).length, 1000);
    assert.ok(Object.values(page.daily!).every((series) => series.length === 365));
    rssMost = Math.max(rssMost, await residentBytes(gateway.pid));
  });
});
