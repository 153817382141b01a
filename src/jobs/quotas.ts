// Per-key job quotas: how many jobs a key may have in ComfyUI at once.

import type { KeyRecord } from '../store/types.js';

/** Whether another of the key's jobs may go to ComfyUI while `runningJobs` of them are queued or running there. */
export function mayStartAnother(key: KeyRecord, runningJobs: number): boolean {
  const max = (key as { max_running?: number | null }).max_running;
  return max === undefined || max === null || runningJobs < max;
}
