// JobIndex against a plain model: random creates, status changes (some to another backend or upstream id), renames and batch deletes; every read agrees with a sort of all jobs.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JobIndex } from '../../src/store/job-index.js';
import { JOB_STATUSES } from '../../src/store/job-record.js';
import { ACTIVE_JOB_STATUSES, type AdmissionPlace, type JobRecord, type JobStatus } from '../../src/store/types.js';

/** A small seeded generator (mulberry32), so a failure replays. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function newestFirst(jobs: Iterable<JobRecord>, keyId: string | undefined, statuses: readonly JobStatus[] | undefined): JobRecord[] {
  return [...jobs]
    .filter((j) => (keyId === undefined || j.key_id === keyId) && (statuses === undefined || statuses.includes(j.status)))
    .sort((a, b) => b.admitted_at - a.admitted_at);
}

describe('JobIndex', () => {
  for (const seed of [1, 2, 3]) {
    test(`agrees with a plain model over 3,000 random changes (seed ${seed})`, () => {
      const next = random(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
      const index = new JobIndex();
      const model = new Map<string, JobRecord>();
      const keys = ['alice', 'bob', 'carol', 'dave'];
      let created = 0;
      let heldPlace: AdmissionPlace | undefined;
      let heldPlaceId: string | undefined;
      for (let step = 0; step < 3000; step += 1) {
        const roll = next();
        const ids = [...model.keys()];
        if (roll < 0.4 || ids.length === 0) {
          const id = `j${created++}`;
          const status = pick(JOB_STATUSES);
          const admitted = 1000 + next() * 1000;
          const job: JobRecord = {
            id,
            key_id: pick(keys),
            client_id: null,
            backend: pick(['default', 'b2']),
            upstream_id: next() < 0.5 ? `u${created}` : null,
            status,
            admitted_at: admitted,
            forwarded_at: null,
            started_at: null,
            finished_at: ACTIVE_JOB_STATUSES.includes(status) ? null : admitted + next() * 500,
            execution_seconds: null,
            outputs: [],
            error: null,
            request: null,
            front: false,
            webhook: null,
          };
          model.set(id, job);
          index.set(job);
        } else if (roll < 0.75) {
          const current = model.get(pick(ids))!;
          const status = pick(JOB_STATUSES);
          // Most changes keep the job's backend and upstream id; some send it elsewhere, or take it back (held again).
          const moved = next();
          const upstream =
            moved < 0.7 ? {} : moved < 0.8 ? { upstream_id: null } : moved < 0.9 ? { upstream_id: `u${++created}` } : { backend: pick(['default', 'b2']) };
          const updated = { ...current, status, finished_at: ACTIVE_JOB_STATUSES.includes(status) ? null : current.admitted_at + next() * 500, ...upstream };
          model.set(current.id, updated);
          index.set(updated);
        } else if (roll < 0.85) {
          const current = model.get(pick(ids))!;
          const renamed = { ...current, id: `r${created++}`, upstream_id: `u${created}` };
          model.delete(current.id);
          model.set(renamed.id, renamed);
          index.delete(current.id);
          index.set(renamed);
        } else {
          const gone = ids.filter(() => next() < 0.05);
          for (const id of gone) model.delete(id);
          index.deleteMany(gone);
        }
        if (step % 50 !== 0) continue;
        assert.equal(index.size, model.size);
        for (const keyId of [undefined, ...keys]) {
          for (const statuses of [undefined, ['success'], ['held', 'queued', 'running'], ['error', 'held'], JOB_STATUSES] as const) {
            const expected = newestFirst(model.values(), keyId, statuses);
            assert.equal(index.count({ keyId, ...(statuses ? { statuses } : {}) }), expected.length);
            const offset = Math.floor(next() * 10);
            assert.deepEqual(
              index.list({ keyId, ...(statuses ? { statuses } : {}), offset, limit: 7 }).map((j) => j.id),
              expected.slice(offset, offset + 7).map((j) => j.id),
              `step ${step}, key ${keyId}, statuses ${statuses?.join(',')}, offset ${offset}`,
            );
          }
        }
        assert.deepEqual(
          index.active().map((j) => j.id),
          newestFirst(model.values(), undefined, ACTIVE_JOB_STATUSES)
            .reverse()
            .map((j) => j.id),
        );
        for (const statuses of [['held'], ['queued', 'running'], ['running', 'success']] as const) {
          assert.deepEqual(
            index.active(statuses).map((j) => j.id),
            newestFirst(model.values(), undefined, statuses)
              .filter((j) => ACTIVE_JOB_STATUSES.includes(j.status))
              .reverse()
              .map((j) => j.id),
            `active jobs of ${statuses.join(',')}`,
          );
        }
        // Read a page at a time, the held list comes out whole; a page taken after changes reads on from where the last ended.
        const pageSize = 1 + Math.floor(next() * 4);
        const paged: string[] = [];
        let page = index.heldPage(undefined, pageSize);
        for (; page.jobs.length > 0; page = index.heldPage(page.end, pageSize)) paged.push(...page.jobs.map((j) => j.id));
        assert.deepEqual(
          paged,
          index.active(['held']).map((j) => j.id),
          'held jobs a page at a time',
        );
        // A place kept from the last check, with 50 steps of changes since: the page reads on after it. A
        // job renamed since (the only way to share an admission time) is indexed anew, after the place.
        const heldAfterPlace = newestFirst(model.values(), undefined, ['held'])
          .reverse()
          .filter((j) => heldPlace === undefined || j.admitted_at > heldPlace.admittedAt || (j.admitted_at === heldPlace.admittedAt && j.id !== heldPlaceId));
        const onward = index.heldPage(heldPlace, pageSize);
        assert.deepEqual(
          onward.jobs.map((j) => j.id),
          heldAfterPlace.slice(0, pageSize).map((j) => j.id),
          `held jobs after ${heldPlace?.admittedAt}`,
        );
        heldPlace = onward.jobs.length > 0 ? onward.end : undefined;
        heldPlaceId = onward.jobs[onward.jobs.length - 1]?.id;
        const cutoff = 1000 + next() * 1500;
        const expired = [...model.values()].filter((j) => !ACTIVE_JOB_STATUSES.includes(j.status) && j.finished_at! < cutoff).map((j) => j.id);
        assert.deepEqual(index.expired(cutoff, 1_000_000).sort(), expired.sort());
        assert.equal(index.expired(cutoff, 3).length, Math.min(3, expired.length), 'at most the batch');
        const held = new Set<string>();
        for (const job of model.values()) {
          if (job.upstream_id !== null) {
            assert.equal(index.byUpstreamId(job.backend, job.upstream_id)?.id, job.id);
            held.add(`${job.backend} ${job.upstream_id}`);
          }
          assert.equal(index.get(job.id), job);
        }
        for (const backend of ['default', 'b2']) {
          const sent = [...model.values()].filter((j) => j.backend === backend && (j.status === 'queued' || j.status === 'running'));
          assert.equal(index.sentTo(backend), sent.length, `jobs sent to ${backend}`);
        }
        // An upstream id no job holds now (renamed or deleted, or on the other backend) finds nothing.
        for (let n = 0; n <= created; n += 1) {
          for (const backend of ['default', 'b2']) {
            if (!held.has(`${backend} u${n}`)) assert.equal(index.byUpstreamId(backend, `u${n}`), undefined, `${backend} u${n}`);
          }
        }
      }
    });
  }
});
