// A document parseExactJson read, carried between threads: structured clone would make each ExactNumber a plain object, which a client's own JSON could pass for.

import { isLosslessNumber } from 'lossless-json';
import { ExactNumber } from '../json/exact-json.js';
import { forEachInTurns } from './in-turns.js';

/**
 * A document with each ExactNumber replaced by `marker`, one object shared by all of them (so structured clone
 * writes it once, and every other place as a reference to it), and their texts joined by commas in the order
 * placesOf meets them. The receiving thread tells a number by identity with the marker it received: no
 * object a JSON text makes is that object, so a client's `{"value": "7.0", "isLosslessNumber": true}` stays
 * a plain object. One object per number instead would cost about 0.75 µs each to receive: 3 s for 4M `7.0`.
 */
export interface ExactJsonMessage {
  /** The document, as the only item of an array, so that a document that is itself a number has a place too. */
  box: [unknown];
  marker: object;
  texts: string;
}

/**
 * Deepest document sent: structured clone reads objects within objects by recursion, and on the request
 * thread's stack one about 3,500 arrays deep already fails (the message would be lost). JSON.parse reads any
 * depth, so a deeper body is parsed on the request thread, as before.
 */
export const MAX_MESSAGE_DEPTH = 1000;

/** A place in a document: the object or array holding a value, the value's key there, and how deep the holder is (the box is 0). */
type Place = [holder: Record<string | number, unknown>, key: string | number, depth: number];

/**
 * Each place of `box`'s document, depth first; a value that is an object or array is gone into after its
 * place was visited, unless it is then `marker` or an ExactNumber. Both threads meet the places of a document
 * in the same order, since structured clone keeps each object's keys in order.
 */
function* placesOf(box: [unknown], marker: object): Generator<Place> {
  const holders = [box as unknown as Record<string | number, unknown>];
  const depths = [0];
  for (let holder = holders.pop(); holder !== undefined; holder = holders.pop()) {
    const depth = depths.pop()!;
    const keys: Iterable<string | number> = Array.isArray(holder) ? holder.keys() : Object.keys(holder);
    for (const key of keys) {
      yield [holder, key, depth];
      const value = holder[key];
      if (typeof value === 'object' && value !== null && value !== marker && !isLosslessNumber(value)) {
        holders.push(value as Record<string, unknown>);
        depths.push(depth + 1);
      }
    }
  }
}

/** The message that carries `document` (as parseExactJson read it; its ExactNumbers are replaced in place), or undefined for a document deeper than MAX_MESSAGE_DEPTH. */
export function toExactJsonMessage(document: unknown): ExactJsonMessage | undefined {
  const message: ExactJsonMessage = { box: [document], marker: {}, texts: '' };
  const texts: string[] = [];
  for (const [holder, key, depth] of placesOf(message.box, message.marker)) {
    if (depth > MAX_MESSAGE_DEPTH) return undefined;
    const value = holder[key];
    if (!isLosslessNumber(value)) continue;
    texts.push(value.value);
    holder[key] = message.marker;
  }
  message.texts = texts.join(',');
  return message;
}

/**
 * The document a message carries, each marker an ExactNumber of its text again. The walk goes through every
 * place of the document in turns of the event loop (see forEachInTurns): a body of 32 MiB may hold 8M of them.
 */
export async function fromExactJsonMessage({ box, marker, texts }: ExactJsonMessage): Promise<unknown> {
  let textStart = 0;
  await forEachInTurns(placesOf(box, marker), ([holder, key]) => {
    if (holder[key] !== marker) return;
    const comma = texts.indexOf(',', textStart);
    const textEnd = comma < 0 ? texts.length : comma;
    holder[key] = new ExactNumber(texts.slice(textStart, textEnd));
    textStart = textEnd + 1;
  });
  return box[0];
}
