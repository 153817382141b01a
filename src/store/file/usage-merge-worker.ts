// Worker thread of a usage compaction: merges the journal set aside into a new api_usage.json and reports back.

import { parentPort, workerData } from 'node:worker_threads';
import { mergeUsageJournal, type UsageMerge } from './usage-merge.js';

mergeUsageJournal(workerData as UsageMerge).then(
  () => parentPort!.postMessage(null),
  (error: NodeJS.ErrnoException) => parentPort!.postMessage({ message: error.message, ...(error.code ? { code: error.code } : {}) }),
);
