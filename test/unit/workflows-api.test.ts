// Unit tests of the workflow registry's PUT: a large body with many exact numbers is parsed off the request thread, and the workflow is stored with each number as written.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, test } from 'node:test';
import { JsonRewriter } from '../../src/isolation/large-json.js';
import { stringifyExactJson } from '../../src/json/exact-json.js';
import { handleWorkflow, type WorkflowApiContext } from '../../src/server/workflows-api.js';
import { FileWorkflowStore } from '../../src/store/file/file-workflow-store.js';
import type { AuditStore, KeyRecord } from '../../src/store/types.js';

const ADMIN = { key_id: 'admin', role: 'admin' } as KeyRecord;

let dir: string;
let rewriter: JsonRewriter;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'comfy-gate-workflows-api-'));
  rewriter = new JsonRewriter();
});
afterEach(async () => {
  await rewriter.close();
  await rm(dir, { recursive: true, force: true });
});

/** A PUT request carrying `body`, as the server hands it over. */
function putRequest(body: string): IncomingMessage {
  return Object.assign(Readable.from([Buffer.from(body)]), { method: 'PUT', headers: { 'content-type': 'application/json' } }) as unknown as IncomingMessage;
}

test('a large registration body with many exact numbers is parsed in a worker thread while the event loop turns, and stored as written', async () => {
  // About 500 KB of numbers as Python's json.dumps writes them: more than the 128 KiB from which such a body goes to a worker thread.
  const floats = Array(100_000).fill('7.0').join(', ');
  const body =
    `{"prompt": {"3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615, "cfg": 7.0, "sigmas": [${floats}]}}}, ` +
    '"inputs": {"seed": {"node": "3", "input": "seed", "type": "integer", "min": 0, "max": 18446744073709551615, "default": 18446744073709551614}}}';
  /** For each body parsed: whether the event loop turned before the parse settled. */
  const turns: boolean[] = [];
  const bodies = {
    parseBody: async (text: string): Promise<unknown> => {
      let turned = false;
      setImmediate(() => (turned = true));
      const document = await rewriter.parseBody(text);
      turns.push(turned);
      return document;
    },
  };
  const workflows = new FileWorkflowStore({ directory: dir });
  const audit = { append: async () => undefined } as unknown as AuditStore;
  const ctx: WorkflowApiContext = { workflows, audit, bodies, clientIp: () => '127.0.0.1', now: () => 1 };
  const sent = { status: 0, body: '' };
  const res = {
    writeHead: (status: number) => (sent.status = status),
    end: (text: string) => (sent.body = text),
  } as unknown as ServerResponse;

  await handleWorkflow(putRequest(body), res, ADMIN, 'big', ctx);

  assert.equal(sent.status, 201, sent.body);
  assert.deepEqual(turns, [true], 'the body was parsed once, and other work ran meanwhile');
  assert.equal(rewriter.threadCount, 1, 'in a worker thread');
  const written = /"seed":18446744073709551615,"cfg":7\.0,"sigmas":\[7\.0,7\.0,/;
  assert.match(sent.body, written, 'the answer');
  const stored = await new FileWorkflowStore({ directory: dir }).get('big');
  assert.match(stringifyExactJson(stored?.prompt), written, 'the stored graph, read again from the file');
  assert.equal(
    stringifyExactJson(stored?.inputs),
    '{"seed":{"node":"3","input":"seed","type":"integer","min":0,"max":18446744073709551615,"default":18446744073709551614}}',
  );
});
