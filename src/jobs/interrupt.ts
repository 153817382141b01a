// Interrupts a prompt in ComfyUI only while it runs there: releases before September 2025 stop whatever runs, whichever prompt_id is named.

import type { PoolBackend } from '../backends/backend-pool.js';

/**
 * Sends the backend `POST /api/interrupt {prompt_id}` when its events say that this prompt runs now
 * (they come before the job registry records them); otherwise nothing, so that an older ComfyUI does not
 * stop another prompt, another key's. Resolves whether it was sent.
 */
export async function interruptIfRunning(
  backend: Pick<PoolBackend, 'events' | 'proxy'>,
  promptId: string,
  headers: Record<string, string> = {},
): Promise<boolean> {
  if (backend.events.runningPrompt() !== promptId) return false;
  await backend.proxy.fetch(null, {
    method: 'POST',
    path: '/api/interrupt',
    body: JSON.stringify({ prompt_id: promptId }),
    headers: { ...headers, 'content-type': 'application/json' },
  });
  return true;
}
