// The bound on ids and names that clients pass to ComfyUI and the gateway records: at most 200 bytes, printable.

import { invalidRequest } from '../errors.js';
import { isStorableText } from '../store/storable-text.js';

/** Longest id or name accepted, in UTF-8 bytes: far above ComfyUI's own (UUIDs, file names of a few dozen characters). */
export const MAX_ID_BYTES = 200;

/** C0 controls (NUL included), DEL and C1 controls. */
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/** Whether `value` is at most `MAX_ID_BYTES` bytes of printable, well-formed text. */
export function isBoundedId(value: string): boolean {
  return value.length <= MAX_ID_BYTES && Buffer.byteLength(value) <= MAX_ID_BYTES && !CONTROL_CHARACTER.test(value) && isStorableText(value);
}

/**
 * Refuses a value that is too long or not printable, naming the field.
 * @throws GatewayError INVALID_REQUEST (400)
 */
export function checkBoundedId(field: string, value: string): void {
  if (isBoundedId(value)) return;
  throw invalidRequest(`${field} must be at most ${MAX_ID_BYTES} bytes of printable characters (no control characters).`, [
    { field, problem: Buffer.byteLength(value) > MAX_ID_BYTES ? `${Buffer.byteLength(value)} bytes` : 'not printable' },
  ]);
}

/** Checks each named value that is present (a string); absent ones (null or undefined) pass. */
export function checkBoundedIds(values: Record<string, string | null | undefined>): void {
  for (const [field, value] of Object.entries(values)) if (typeof value === 'string') checkBoundedId(field, value);
}
