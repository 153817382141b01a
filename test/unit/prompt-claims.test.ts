// Unit tests of the claims POST /prompt makes, against ComfyUI's possible answers: kept when queued, released when refused, moved to the prompt_id ComfyUI answers with.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { IsolatedCaller, IsolationContext } from '../../src/isolation/context.js';
import { postPrompt } from '../../src/isolation/prompt.js';
import type { HttpProxy, UpstreamAnswer } from '../../src/proxy/http.js';
import { FileOwnershipStore } from '../../src/store/file/file-ownership-store.js';
import type { KeyRecord } from '../../src/store/types.js';

const ALICE = { key_id: 'alice', role: 'user' } as KeyRecord;
const CALLER: IsolatedCaller = { key: ALICE, seesAll: false, upstreamHeaders: {} };
const PROMPT = { '9': { class_type: 'SaveImage', inputs: {} } };

describe('claims of POST /prompt', () => {
  let dir: string;
  let ownership: FileOwnershipStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'comfy-gate-prompt-claims-'));
    ownership = new FileOwnershipStore({ directory: dir });
    await ownership.open();
  });
  afterEach(async () => {
    await ownership.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Posts `body` as alice to a ComfyUI that answers `status` and `answer`; resolves the status relayed and the prompt_id sent upstream. */
  async function post(
    body: Record<string, unknown>,
    status: number,
    answer: (sent: Record<string, unknown>) => unknown,
  ): Promise<{ relayed: number; sent: Record<string, unknown> }> {
    let sent: Record<string, unknown> = {};
    const proxy = {
      fetch: async (_req: IncomingMessage, overrides: { body?: string }): Promise<UpstreamAnswer> => {
        sent = JSON.parse(String(overrides.body)) as Record<string, unknown>;
        return { status, headers: {}, body: Buffer.from(JSON.stringify(answer(sent))) };
      },
    } as unknown as HttpProxy;
    const ctx: IsolationContext = { proxy, ownership };
    const req = Object.assign(Readable.from([Buffer.from(JSON.stringify(body))]), { headers: {} }) as unknown as IncomingMessage;
    let relayed = 0;
    const res = { writeHead: (code: number) => (relayed = code), end: () => undefined } as unknown as ServerResponse;
    await postPrompt(ctx, req, res, CALLER);
    return { relayed, sent };
  }

  test('a queued prompt keeps its claims', async () => {
    const { relayed, sent } = await post({ prompt: PROMPT, client_id: 'c1' }, 200, (s) => ({ prompt_id: s.prompt_id, number: 1, node_errors: {} }));
    assert.equal(relayed, 200);
    assert.equal(ownership.ownerOf('prompt', String(sent.prompt_id)), 'alice');
    assert.equal(ownership.ownerOf('client', 'c1'), 'alice');
  });

  test('a refused prompt leaves no claim, but a client_id the key held before stays', async () => {
    await ownership.claim('client', 'held', 'alice');
    for (const [promptId, clientId] of [
      ['p-refused', 'c-new'],
      ['p-refused-2', 'held'],
    ]) {
      const { relayed } = await post({ prompt: PROMPT, prompt_id: promptId, client_id: clientId }, 400, () => ({
        error: { type: 'invalid_prompt' },
        node_errors: {},
      }));
      assert.equal(relayed, 400);
      assert.equal(ownership.ownerOf('prompt', promptId!), undefined);
    }
    assert.equal(ownership.ownerOf('client', 'c-new'), undefined);
    assert.equal(ownership.ownerOf('client', 'held'), 'alice');
  });

  test('a prompt ComfyUI queued under another prompt_id is claimed under that id, and the minted one released', async () => {
    const { relayed, sent } = await post({ prompt: PROMPT }, 200, () => ({ prompt_id: 'made-by-comfyui', number: 1, node_errors: {} }));
    assert.equal(relayed, 200);
    assert.equal(ownership.ownerOf('prompt', 'made-by-comfyui'), 'alice');
    assert.equal(ownership.ownerOf('prompt', String(sent.prompt_id)), undefined);
    assert.deepEqual(
      ownership.recentPrompts('alice', 10).map((p) => p.promptId),
      ['made-by-comfyui'],
    );
  });
});
