// Usage journal lines written field by field: the same text as `JSON.stringify` of the entry, without walking an object on every request.

import { jsonNumber, jsonStringContent } from '../../json/json-text.js';
import type { UsageRecord } from '../types.js';
import type { CountedEntry } from './usage-file.js';

/** `JSON.stringify(record)` of a record whose fields are in the order `UsageRecord` lists them (as every caller builds it). */
export function usageRecordLine(record: UsageRecord): string {
  const { metadata } = record;
  return (
    `{"key_id":"${jsonStringContent(record.key_id)}","endpoint":"${jsonStringContent(record.endpoint)}","timestamp":${jsonNumber(record.timestamp)},` +
    `"duration":${jsonNumber(record.duration)},"success":${record.success},"metadata":{"method":"${jsonStringContent(metadata.method)}","status":${jsonNumber(metadata.status)}}}`
  );
}

/** `JSON.stringify(entry)` of a rate-limited, prompt-admitted or job-run entry whose fields are in the order its type lists them. */
export function countedEntryLine(entry: Exclude<CountedEntry, UsageRecord>): string {
  const keyAndTime = `"key_id":"${jsonStringContent(entry.key_id)}","timestamp":${jsonNumber(entry.timestamp)}`;
  if ('job_run' in entry) {
    return `{"job_run":true,${keyAndTime},"execution_seconds":${jsonNumber(entry.execution_seconds)},"outputs":${jsonNumber(entry.outputs)}}`;
  }
  return `{"${'rate_limited' in entry ? 'rate_limited' : 'prompt_admitted'}":true,${keyAndTime}}`;
}
