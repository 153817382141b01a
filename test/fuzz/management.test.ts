// Fuzzing the management API: generated key bodies, key ids and usage queries; no 5xx, answers as docs/api.md says, refusals change nothing.

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { after, before, describe, test } from 'node:test';
import type { Answer } from '../fault/keep-alive-client.js';
import { managementOp, percentEncode, usageQuery, type KeyTarget, type ManagementOp } from './arbitraries.js';
import { batchOf, fuzzRuns, startFuzzGateway, UPSTREAM_BODY, UPSTREAM_STATUS, type FuzzGateway, type ListedKey } from './fuzz-gateway.js';
import { parseRequestTarget } from '../../src/server/request-target.js';
import { bothOf, fieldsOf, judgeBy, judgeDays, judgeKeyBody, type Verdict } from './model.js';

const BATCH = 50;
/** A path segment the gateway routes as a key_id (anything else under /api/keys/ goes to ComfyUI). */
const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;
const COMPARED: Array<keyof ListedKey> = [
  'key_id',
  'name',
  'rate_limit',
  'metadata',
  'role',
  'is_active',
  'expires_at',
  'max_queued',
  'max_running',
  'daily_execution_seconds',
];

/** A key's compared fields, through JSON (so -0 and 0 compare equal, as they do once stored). */
function comparable(key: Partial<ListedKey>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(Object.fromEntries(COMPARED.map((field) => [field, key[field]])))) as Record<string, unknown>;
}

/** Whether the gateway refuses this target for being readable two ways. */
function isAmbiguousTarget(target: string): boolean {
  try {
    parseRequestTarget(target);
    return false;
  } catch {
    return true;
  }
}

/** No answer is a 5xx; a gateway error is JSON with error and error_code. */
function assertSane(answer: Answer, what: string): void {
  assert.ok(answer.status < 500, `${what}: ${answer.status} ${answer.text.slice(0, 300)}`);
  if (answer.status >= 400 && answer.status !== UPSTREAM_STATUS) {
    const body = answer.json<{ error?: unknown; error_code?: unknown }>();
    assert.equal(typeof body.error, 'string', `${what}: ${answer.text}`);
    assert.equal(typeof body.error_code, 'string', `${what}: ${answer.text}`);
  }
}

/** The statuses a verdict allows: `ok` for a valid input, 400 for an invalid one, either for an undecided one. */
function allowedStatuses(verdict: Verdict, ok: number): number[] {
  return verdict === 'valid' ? [ok] : verdict === 'invalid' ? [400] : [ok, 400];
}

/** A management request resolved against the keys that exist: its method, path and what docs/api.md says of it. */
interface Planned {
  op: ManagementOp;
  method: string;
  path: string;
  /** The key_id it names, when the path is a key route. */
  keyId?: string;
  exists: boolean;
}

/** Names distinct existing keys for the `existing` targets of a batch (so no two requests race on one key). */
function plan(ops: ManagementOp[], existing: string[]): Planned[] {
  const free = [...existing];
  const segmentOf = (target: KeyTarget): string => {
    if (target.kind === 'path') return target.segment;
    if (free.length === 0) return `no-such-key-${target.index}`;
    return free.splice(target.index % free.length, 1)[0]!;
  };
  return ops.map((op) => {
    if (op.op === 'create') return { op, method: 'POST', path: '/api/keys', exists: false };
    const segment = segmentOf(op.target);
    const routed = KEY_ID.test(segment);
    return {
      op,
      method: op.op === 'update' ? 'PATCH' : 'DELETE',
      path: `/api/keys/${segment}`,
      ...(routed ? { keyId: segment } : {}),
      exists: existing.includes(segment),
    };
  });
}

function perform(fz: FuzzGateway, planned: Planned): Promise<Answer> {
  const { op } = planned;
  const headers = op.op !== 'delete' && op.contentType ? { 'content-type': op.contentType } : {};
  return fz.client.send(planned.path, { method: planned.method, headers, ...(op.op !== 'delete' ? { body: op.body } : {}) });
}

/**
 * Checks one answer against docs/api.md and returns its effect on the keys: a created or updated
 * record, a deletion, or nothing.
 */
function judge(planned: Planned, answer: Answer): { put?: Record<string, unknown>; deleted?: string } {
  const { op } = planned;
  const what = `${planned.method} ${planned.path} ${op.op === 'delete' ? '' : JSON.stringify(op.body.slice(0, 200))}`;
  assertSane(answer, what);
  if (op.op !== 'create' && planned.keyId === undefined) {
    if (isAmbiguousTarget(planned.path)) {
      // The one reading of a request target (its own differential test) refuses it before any route.
      assert.deepEqual([answer.status, answer.json().error_code], [400, 'INVALID_REQUEST'], `${what}: a target that could be read two ways`);
      return {};
    }
    assert.deepEqual([answer.status, answer.text], [UPSTREAM_STATUS, UPSTREAM_BODY], `${what}: not a key route, so ComfyUI answers`);
    return {};
  }
  if (op.op === 'delete') {
    assert.equal(answer.status, planned.exists ? 200 : 404, `${what}: ${answer.text}`);
    return planned.exists ? { deleted: planned.keyId! } : {};
  }
  const verdict = judgeKeyBody(op.body, op.op);
  const expected = op.op === 'update' && !planned.exists ? (verdict === 'valid' ? [404] : [400, 404]) : allowedStatuses(verdict, 200);
  assert.ok(
    expected.includes(answer.status),
    `${what}: docs/api.md verdict ${verdict}, expected ${expected.join(' or ')}, got ${answer.status} ${answer.text.slice(0, 300)}`,
  );
  if (answer.status === 400) assert.equal(answer.json().error_code, 'INVALID_REQUEST');
  if (answer.status !== 200) return {};
  const fields = fieldsOf(op.body, op.op);
  if (op.op === 'create') {
    const created = answer.json<ListedKey & { api_key: string }>();
    assert.match(created.api_key, /^comfy_[A-Za-z0-9_-]{43}$/);
    return { put: { ...fields, key_id: created.key_id } };
  }
  return { put: { ...fields, key_id: planned.keyId } };
}

describe('the management API under generated input', () => {
  let fz: FuzzGateway;
  let sent = 0;

  before(async () => {
    fz = await startFuzzGateway(['--enable-api-auth']);
  });
  after(async () => {
    await fz?.close();
  });

  test('refused requests leave the key store and the audit trail byte for byte unchanged', async () => {
    const refused = managementOp.filter((op) => (op.op === 'delete' ? op.target.kind === 'path' : judgeKeyBody(op.body, op.op) === 'invalid'));
    await fc.assert(
      fc.asyncProperty(batchOf(refused, BATCH), async (ops) => {
        const existing = [...(await fz.listing()).keys()];
        const bytesBefore = fz.storeBytes();
        const planned = plan(ops, existing);
        const answers = await Promise.all(planned.map((p) => perform(fz, p)));
        sent += ops.length;
        planned.forEach((p, i) => judge(p, answers[i]!));
        assert.equal(fz.storeBytes(), bytesBefore, 'a refused request changed the store');
      }),
      fuzzRuns(80),
    );
    await fz.assertAlive();
  });

  test('creations, updates and deletions: answers follow docs/api.md, and the store holds exactly what was answered 200', async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(managementOp, BATCH), async (ops) => {
        const before = await fz.listing();
        const expected = new Map([...before].map(([id, key]) => [id, comparable(key)]));
        const planned = plan(ops, [...before.keys()]);
        const answers = await Promise.all(planned.map((p) => perform(fz, p)));
        sent += ops.length;
        planned.forEach((p, i) => {
          const { put, deleted } = judge(p, answers[i]!);
          if (deleted) expected.delete(deleted);
          if (put) expected.set(put.key_id as string, comparable({ ...expected.get(put.key_id as string), ...put }));
        });
        const after = new Map([...(await fz.listing())].map(([id, key]) => [id, comparable(key)]));
        assert.deepEqual(after, expected, 'the store holds exactly the changes answered 200');
      }),
      fuzzRuns(140),
    );
    await fz.assertAlive();
  });

  test('GET /api/usage?days=: a whole number from 1 to 365 is answered with usage, anything else with 400', async () => {
    const created = await fz.client.send('/api/keys', { method: 'POST', body: { name: 'usage reader', rate_limit: 10_000_000 } });
    const key = created.json<{ api_key: string }>().api_key;
    await fc.assert(
      fc.asyncProperty(batchOf(usageQuery, BATCH), async (queries) => {
        const targets = queries.map(({ days, byDay, noise }) =>
          [
            ...days.map((d) => `days=${percentEncode(d)}`),
            ...(byDay ? ['by=day'] : []),
            ...noise.map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`),
          ].join('&'),
        );
        const answers = await Promise.all(targets.map((query) => fz.client.send(`/api/usage?${query}`, { headers: { 'x-api-key': key } })));
        sent += queries.length;
        answers.forEach((answer, i) => {
          const params = new URLSearchParams(targets[i]);
          // Noise may name `days` or `by` too: both are judged as the gateway reads them.
          const verdict = bothOf(judgeDays(params.getAll('days')), judgeBy(params.getAll('by')));
          assertSane(answer, `GET /api/usage?${targets[i]}`);
          assert.ok(
            allowedStatuses(verdict, 200).includes(answer.status),
            `?${targets[i]}: verdict ${verdict}, got ${answer.status} ${answer.text.slice(0, 200)}`,
          );
          if (answer.status === 400) return assert.equal(answer.json().error_code, 'INVALID_REQUEST');
          const body = answer.json<{ usage_stats: Record<string, unknown>; daily?: unknown[] }>();
          for (const field of ['total_requests', 'successful_requests', 'failed_requests', 'total_duration', 'average_duration', 'rate_limited_requests']) {
            assert.equal(typeof body.usage_stats[field], 'number', `${field} in ${answer.text.slice(0, 200)}`);
          }
          if (verdict === 'valid' && params.getAll('by').join() === 'day') {
            assert.equal(body.daily?.length, Number(params.get('days') ?? 30), 'by=day gives one entry per day, gap-free');
          }
        });
      }),
      fuzzRuns(90),
    );
    await fz.assertAlive();
  });

  test('enough generated requests were sent', (t) => {
    t.diagnostic(`${sent} generated management requests`);
    assert.ok(sent >= 6000, `only ${sent}`);
  });
});
