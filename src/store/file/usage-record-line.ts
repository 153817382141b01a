// A usage record's journal line, written field by field: the same text as `JSON.stringify` of the record, without walking an object on every request.

import { jsonNumber, jsonStringContent } from '../../json/json-text.js';
import type { UsageRecord } from '../types.js';

/** `JSON.stringify(record)` of a record whose fields are in the order `UsageRecord` lists them (as every caller builds it). */
export function usageRecordLine(record: UsageRecord): string {
  const { metadata } = record;
  return (
    `{"key_id":"${jsonStringContent(record.key_id)}","endpoint":"${jsonStringContent(record.endpoint)}","timestamp":${jsonNumber(record.timestamp)},` +
    `"duration":${jsonNumber(record.duration)},"success":${record.success},"metadata":{"method":"${jsonStringContent(metadata.method)}","status":${jsonNumber(metadata.status)}}}`
  );
}
