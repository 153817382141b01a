// Test shortcuts for driving ComfyUI through the gateway: queue a prompt, wait for it, open a socket and collect what it receives.

import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { send } from './http-client.js';

export const SAVE_WORKFLOW = {
  '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } },
  '9': { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'ComfyUI' } },
};

/** Queues a prompt with a key; resolves its prompt_id. */
export async function queuePrompt(gatewayUrl: string, key: string, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await send(gatewayUrl, '/api/prompt', { method: 'POST', key, body: { prompt: SAVE_WORKFLOW, ...extra } });
  if (res.status !== 200) throw new Error(`queue failed: ${res.status} ${res.text}`);
  return res.json<{ prompt_id: string }>().prompt_id;
}

/** Waits until a prompt has a completed history entry (as seen by `key`); resolves the entry. */
export async function waitForHistory(gatewayUrl: string, key: string, promptId: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const entry = (await send(gatewayUrl, `/api/history/${promptId}`, { key })).json<Record<string, Record<string, unknown>>>()[promptId];
    if ((entry?.status as { completed?: boolean } | undefined)?.completed !== undefined) return entry!;
    await sleep(25);
  }
  throw new Error(`prompt ${promptId} did not finish`);
}

/** A WebSocket through the gateway that keeps every text message (parsed) and binary frame it receives. */
export interface CollectingSocket {
  ws: WebSocket;
  texts: Array<{ type: string; data: Record<string, unknown> }>;
  binaries: Buffer[];
  close(): Promise<void>;
}

/** Opens a socket with a key (or cookies/headers) and resolves once open; rejects with the refusing status. */
export function openCollectingSocket(url: string, headers: Record<string, string>): Promise<CollectingSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const socket: CollectingSocket = {
      ws,
      texts: [],
      binaries: [],
      close: () =>
        new Promise((done) => {
          if (ws.readyState === WebSocket.CLOSED) return done();
          ws.once('close', () => done());
          ws.close();
        }),
    };
    ws.on('message', (data, isBinary) => {
      if (isBinary) socket.binaries.push(data as Buffer);
      else socket.texts.push(JSON.parse(data.toString()) as { type: string; data: Record<string, unknown> });
    });
    ws.once('open', () => resolve(socket));
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode })));
    ws.once('error', reject);
  });
}
