// Worker thread of usage compactions: merges each journal set aside it is sent into a new api_usage.json at the lowest CPU priority, and reports back.

import { readlinkSync } from 'node:fs';
import { setPriority, constants } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { mergeUsageJournal, type UsageMerge } from './usage-merge.js';

/**
 * Lowers this thread's priority (Linux: a thread id is a process id to setpriority), so the merge uses
 * the CPU the request thread leaves over. Elsewhere it keeps the default.
 */
function yieldCpuToRequests(): void {
  try {
    setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), constants.priority.PRIORITY_LOW);
  } catch {
    // No /proc/thread-self: not Linux.
  }
}

yieldCpuToRequests();
parentPort!.on('message', (merge: UsageMerge) => {
  mergeUsageJournal(merge).then(
    () => parentPort!.postMessage(null),
    (error: NodeJS.ErrnoException) => parentPort!.postMessage({ message: error.message, ...(error.code ? { code: error.code } : {}) }),
  );
});
