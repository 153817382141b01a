// Interrupts sent only for the prompt a backend runs now, so that an older ComfyUI, which stops whatever runs, never stops another prompt.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PoolBackend } from '../../src/backends/backend-pool.js';
import { interruptIfRunning } from '../../src/jobs/interrupt.js';

/** A backend whose events say `running` runs, recording what is sent to it. */
function backendRunning(running: string | null): { backend: Pick<PoolBackend, 'events' | 'proxy'>; sent: Array<{ path?: string; body?: unknown }> } {
  const sent: Array<{ path?: string; body?: unknown }> = [];
  const backend = {
    events: { runningPrompt: () => running },
    proxy: {
      fetch: async (_req: unknown, overrides: { path?: string; body?: unknown }) => {
        sent.push({ path: overrides.path, body: overrides.body });
        return { status: 200, headers: {}, body: Buffer.alloc(0) };
      },
    },
  } as unknown as Pick<PoolBackend, 'events' | 'proxy'>;
  return { backend, sent };
}

test('a prompt that runs is interrupted by its prompt_id', async () => {
  const { backend, sent } = backendRunning('p-1');
  assert.equal(await interruptIfRunning(backend, 'p-1'), true);
  assert.deepEqual(sent, [{ path: '/api/interrupt', body: JSON.stringify({ prompt_id: 'p-1' }) }]);
});

test('nothing is sent while another prompt runs, or none', async () => {
  for (const running of ['p-2', null]) {
    const { backend, sent } = backendRunning(running);
    assert.equal(await interruptIfRunning(backend, 'p-1'), false);
    assert.deepEqual(sent, [], `running: ${running}`);
  }
});
