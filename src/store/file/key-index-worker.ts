// Worker thread of the key index: checks and indexes one range of api_keys.json's lines, and sends the result back.

import { parentPort, workerData } from 'node:worker_threads';
import { indexRange, type RangeIndex, type RangeTask } from './key-index.js';

const range: RangeIndex = indexRange(workerData as RangeTask);
parentPort!.postMessage(range, range ? [range.starts.buffer, range.ends.buffer, range.byId.buffer, range.byKeyHash.buffer] : []);
