// The webhook delivery outbox in `webhook-deliveries.json` (+ journal), written by the gateway process alone.

import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { parseDelivery } from '../delivery-record.js';
import { takeTurns } from '../claim-turns.js';
import { JobSweeper } from '../job-retention.js';
import type { ClaimShares, DeliveryAttempt, DeliveryClaim, DeliveryState, WebhookDelivery, WebhookDeliveryStore } from '../types.js';
import { JournaledTable } from './journaled-table.js';

export interface FileWebhookStoreOptions {
  directory: string;
  /** Seconds a delivered or failed delivery is kept after it was created. */
  retentionSeconds: number;
  /** How often old deliveries are looked for, in milliseconds (default 60 s). */
  sweepIntervalMs?: number;
  /** Told how long each durable append took, in seconds (for metrics). */
  onWrite?(seconds: number): void;
}

/**
 * Deliveries in a journaled table keyed by delivery id; a change resolves once its append is fsynced.
 * Leases live in memory: one process writes the folder, and after a restart every pending delivery is
 * free to be tried again. Pending and failed deliveries are indexed by state, every delivery by job
 * and in creation order, so a page costs about its own size.
 */
export class FileWebhookStore implements WebhookDeliveryStore {
  private readonly table: JournaledTable<WebhookDelivery>;
  private readonly sweeper: JobSweeper;
  /** Delivery ids in the order they were created. */
  private order: string[] = [];
  private readonly byJob = new Map<string, Set<string>>();
  private readonly byState: Record<Exclude<DeliveryState, 'delivered'>, Set<string>> = { pending: new Set(), failed: new Set() };
  private readonly leases = new Map<string, { token: string; until: number }>();

  constructor(options: FileWebhookStoreOptions) {
    this.table = new JournaledTable<WebhookDelivery>({
      snapshotPath: join(options.directory, 'webhook-deliveries.json'),
      journalPath: join(options.directory, 'webhook-deliveries.journal'),
      lockPath: join(options.directory, '.webhook-deliveries.lock'),
      writers: 'this-process',
      ...(options.onWrite ? { onWrite: options.onWrite } : {}),
      parse: parseDelivery,
      onChange: (id, before, after) => this.indexChange(id, before, after),
    });
    this.sweeper = new JobSweeper(
      { retentionSeconds: options.retentionSeconds, ...(options.sweepIntervalMs ? { sweepIntervalMs: options.sweepIntervalMs } : {}) },
      (cutoff, limit) => this.forgetBatch(cutoff, limit),
    );
  }

  async open(): Promise<void> {
    await this.table.open();
    this.sweeper.start();
  }

  enqueue(delivery: WebhookDelivery): Promise<boolean> {
    return this.table.change(() =>
      this.table.get(delivery.id) ? { ops: [], result: false } : { ops: [{ op: 'put', id: delivery.id, value: delivery }], result: true },
    );
  }

  existing(ids: readonly string[]): Promise<Set<string>> {
    return Promise.resolve(new Set(ids.filter((id) => this.table.get(id) !== undefined)));
  }

  claimDue(now: number, limit: number, leaseSeconds: number, shares?: ClaimShares): Promise<DeliveryClaim[]> {
    const due: WebhookDelivery[] = [];
    for (const id of this.byState.pending) {
      const delivery = this.table.get(id);
      const lease = this.leases.get(id);
      if (delivery && (delivery.next_attempt_at ?? 0) <= now && (!lease || lease.until <= now)) due.push(delivery);
    }
    return Promise.resolve(
      takeTurns(due, limit, shares).map((delivery) => {
        const token = randomUUID();
        this.leases.set(delivery.id, { token, until: now + leaseSeconds });
        return { delivery, token };
      }),
    );
  }

  async recordAttempt(claim: DeliveryClaim, attempt: DeliveryAttempt, next: { state: DeliveryState; next_attempt_at: number | null }): Promise<boolean> {
    const id = claim.delivery.id;
    const recorded = await this.table.change(() => {
      const current = this.table.get(id);
      if (!current || this.leases.get(id)?.token !== claim.token) return { ops: [], result: false };
      const value: WebhookDelivery = { ...current, state: next.state, next_attempt_at: next.next_attempt_at, attempts: [...current.attempts, attempt] };
      return { ops: [{ op: 'put', id, value }], result: true };
    });
    if (this.leases.get(id)?.token === claim.token) this.leases.delete(id);
    return recorded;
  }

  releaseClaim(claim: DeliveryClaim): Promise<void> {
    if (this.leases.get(claim.delivery.id)?.token === claim.token) this.leases.delete(claim.delivery.id);
    return Promise.resolve();
  }

  get(id: string): Promise<WebhookDelivery | undefined> {
    return Promise.resolve(this.table.get(id));
  }

  list(options: { jobId?: string; state?: DeliveryState; offset: number; limit: number }): Promise<{ deliveries: WebhookDelivery[]; hasMore: boolean }> {
    const wanted = options.offset + options.limit + 1;
    const found: WebhookDelivery[] = [];
    for (const id of this.newestFirst(options)) {
      const delivery = this.table.get(id);
      if (!delivery || (options.state !== undefined && delivery.state !== options.state)) continue;
      found.push(delivery);
      if (found.length >= wanted) break;
    }
    const page = found.slice(options.offset, options.offset + options.limit);
    return Promise.resolve({ deliveries: page, hasMore: found.length > options.offset + options.limit });
  }

  async close(): Promise<void> {
    await this.sweeper.stop();
    await this.table.close();
  }

  /** The ids to look through for a listing, newest first: the job's, the (small) pending or failed set, or all. */
  private *newestFirst(options: { jobId?: string; state?: DeliveryState }): Iterable<string> {
    const small =
      options.jobId !== undefined ? this.byJob.get(options.jobId) : options.state && options.state !== 'delivered' ? this.byState[options.state] : null;
    if (small !== null) {
      const sorted = [...(small ?? [])].map((id) => this.table.get(id)!).filter(Boolean);
      sorted.sort((a, b) => b.created_at - a.created_at || (b.id < a.id ? -1 : 1));
      for (const delivery of sorted) yield delivery.id;
      return;
    }
    for (let i = this.order.length - 1; i >= 0; i -= 1) yield this.order[i]!;
  }

  private indexChange(id: string, before: WebhookDelivery | undefined, after: WebhookDelivery | undefined): void {
    if (before) {
      if (before.state !== 'delivered') this.byState[before.state].delete(id);
      if (!after) {
        const ofJob = this.byJob.get(before.job_id);
        ofJob?.delete(id);
        if (ofJob?.size === 0) this.byJob.delete(before.job_id);
      }
    } else if (after) {
      this.order.push(id);
    }
    if (after) {
      if (after.state !== 'delivered') this.byState[after.state].add(id);
      const ofJob = this.byJob.get(after.job_id) ?? new Set<string>();
      ofJob.add(id);
      this.byJob.set(after.job_id, ofJob);
    }
  }

  /** Forgets delivered and failed deliveries created before `cutoff`, oldest first; pending ones stay. */
  private async forgetBatch(cutoff: number, limit: number): Promise<number> {
    const ids: string[] = [];
    for (const id of this.order) {
      const delivery = this.table.get(id);
      if (!delivery) continue;
      if (delivery.created_at >= cutoff || ids.length >= limit) break;
      if (delivery.state !== 'pending') ids.push(id);
    }
    if (ids.length === 0) return 0;
    await this.table.change(() => ({ ops: ids.map((id) => ({ op: 'delete' as const, id })), result: undefined }));
    const gone = new Set(ids);
    this.order = this.order.filter((id) => !gone.has(id));
    return ids.length;
  }
}
