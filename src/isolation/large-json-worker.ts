// Worker thread of JsonRewriter: parses a large ComfyUI answer, sends back the facts to look up, then rewrites and stringifies it with the answers; parses a large request body.

import { parentPort } from 'node:worker_threads';
import { parseComfyJson } from './json-body.js';
import { JSON_REWRITES, type JsonRewrite } from './json-rewrites.js';
import { ownArrayBuffer, type FromWorker, type ToWorker } from './large-json.js';
import { parseExactJson, stringifyExactJson } from '../json/exact-json.js';
import { toExactJsonMessage } from './exact-json-message.js';

/** Documents parsed and waiting for the gateway's answers, by task number. */
const parsed = new Map<number, { rewrite: JsonRewrite<unknown, unknown>; document: unknown }>();

function reply(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(message, transfer);
}

parentPort!.on('message', (message: ToWorker) => {
  const { task } = message;
  try {
    if ('parse' in message) return reply(parsedBody(task, message.parse));
    if ('body' in message) {
      const rewrite = JSON_REWRITES[message.rewrite] as JsonRewrite<unknown, unknown>;
      const document = parseComfyJson(Buffer.from(message.body));
      const facts = document === undefined ? undefined : rewrite.facts(document);
      if (facts === undefined) return reply({ task, unchanged: message.body }, [message.body]);
      parsed.set(task, { rewrite, document });
      return reply({ task, facts });
    }
    const waiting = parsed.get(task);
    parsed.delete(task);
    if (!waiting || !('answers' in message)) return;
    const text = ownArrayBuffer(Buffer.from(stringifyExactJson(waiting.rewrite.apply(waiting.document, message.answers))));
    reply({ task, text }, [text]);
  } catch (error) {
    parsed.delete(task);
    reply({ task, error: (error as Error).message });
  }
});

/** A request body parsed (see JsonRewriter.parseBody), the message of the error that says it is not JSON, or word that it is too deep to send. */
function parsedBody(task: number, text: string): FromWorker {
  let document: unknown;
  try {
    document = parseExactJson(text);
  } catch (error) {
    return { task, invalid: (error as Error).message };
  }
  const parsed = toExactJsonMessage(document);
  return parsed ? { task, parsed } : { task, tooDeep: true };
}
