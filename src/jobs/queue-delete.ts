// Takes prompts out of a backend's ComfyUI queue (POST /api/queue {"delete": [...]}): ComfyUI drops those still pending and leaves a running one alone.

import type { Backend } from './backend.js';

/**
 * Asks the backend's ComfyUI to delete the prompts it knows by `upstreamIds` from its pending queue. In
 * every release the answer is an empty 200 whatever was deleted, and a prompt that has started is not
 * touched (it is not interrupted).
 * @throws when ComfyUI cannot be reached or answers another status
 */
export async function deleteFromQueue(backend: Pick<Backend, 'proxy'>, upstreamIds: readonly string[]): Promise<void> {
  const answer = await backend.proxy.fetch(null, {
    method: 'POST',
    path: '/api/queue',
    body: JSON.stringify({ delete: upstreamIds }),
    headers: { 'content-type': 'application/json' },
  });
  if (answer.status !== 200) throw new Error(`ComfyUI answered ${answer.status} to the delete from its queue`);
}
