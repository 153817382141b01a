// `npm run soak`: ten minutes of mixed load on one gateway, sampling its memory and descriptors; fails if either keeps growing.

import { setTimeout as sleep } from 'node:timers/promises';
import { openFds, memoryMiB } from '../fault/process-probe.js';
import { queuePrompt } from '../helpers/comfy-client.js';
import { startFakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway } from '../helpers/gateway-process.js';
import { openCollectingSocket } from '../helpers/comfy-client.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

/** How long the load runs (`SOAK_SECONDS`, default 600), and how often the gateway is sampled. */
const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const SAMPLE_MS = 5000;
/**
 * Growth allowed from the second third of the run to the last. RSS is compared by its lowest sample in
 * each third: V8 lets garbage pile up between major collections, so RSS saw-tooths (by 200 MiB under
 * this load) around a floor, and a leak is what raises the floor.
 */
const MAX_RSS_GROWTH_MIB = 32;
const MAX_FD_GROWTH = 16;

interface Sample {
  at: number;
  rssMiB: number;
  fds: number;
}

async function main(): Promise<number> {
  const comfy = await startFakeComfyUI({ stepDelayMs: 1 });
  const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--log-level', 'warn'] });
  const admin = (await createKey(gateway.url, { name: 'soak admin', rate_limit: 10_000_000 })).api_key;
  const user = (await createKey(gateway.url, { name: 'soak user', rate_limit: 10_000_000 }, admin)).api_key;
  const deadline = Date.now() + SECONDS * 1000;
  const counts = { http: 0, prompts: 0, sockets: 0, uploads: 0, keyChanges: 0, errors: 0 };
  const samples: Sample[] = [];

  /** Runs `step` again and again until the deadline, counting failures instead of stopping. */
  const loop = async (step: () => Promise<void>): Promise<void> => {
    while (Date.now() < deadline) await step().catch(() => void (counts.errors += 1));
  };
  const upload = `--soak\r\nContent-Disposition: form-data; name="image"; filename="soak.png"\r\nContent-Type: image/png\r\n\r\n${'x'.repeat(256 * 1024)}\r\n--soak--\r\n`;

  const work = [
    ...Array.from({ length: 8 }, () =>
      loop(async () => {
        await send(gateway.url, '/api/queue', { key: user });
        counts.http += 1;
      }),
    ),
    loop(async () => {
      await queuePrompt(gateway.url, user);
      counts.prompts += 1;
      await sleep(20);
    }),
    loop(async () => {
      const socket = await openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws`, { 'x-api-key': user });
      await sleep(500);
      await socket.close();
      counts.sockets += 1;
    }),
    loop(async () => {
      await send(gateway.url, '/api/upload/image', {
        method: 'POST',
        key: user,
        body: upload,
        headers: { 'content-type': 'multipart/form-data; boundary=soak' },
      });
      counts.uploads += 1;
      await sleep(100);
    }),
    loop(async () => {
      const created = await createKey(gateway.url, { name: 'churn' }, admin);
      await send(gateway.url, `/api/keys/${created.key_id}`, { method: 'PATCH', key: admin, body: { rate_limit: 50 } });
      await send(gateway.url, `/api/keys/${created.key_id}`, { method: 'DELETE', key: admin });
      counts.keyChanges += 1;
      await sleep(200);
    }),
    loop(async () => {
      samples.push({ at: Math.round((Date.now() - deadline) / 1000 + SECONDS), rssMiB: memoryMiB(gateway.pid).rss, fds: openFds(gateway.pid) });
      await sleep(SAMPLE_MS);
    }),
  ];
  await Promise.all(work);
  await gateway.stop();
  await comfy.close();

  console.log('second  rss MiB  fds');
  for (const s of samples) console.log(`${String(s.at).padStart(6)}  ${s.rssMiB.toFixed(0).padStart(7)}  ${String(s.fds).padStart(3)}`);
  console.log(JSON.stringify(counts));
  const third = Math.floor(samples.length / 3);
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
  const middle = samples.slice(third, 2 * third);
  const last = samples.slice(2 * third);
  const rssGrowth = Math.min(...last.map((s) => s.rssMiB)) - Math.min(...middle.map((s) => s.rssMiB));
  const fdGrowth = median(last.map((s) => s.fds)) - median(middle.map((s) => s.fds));
  const failures = [
    rssGrowth > MAX_RSS_GROWTH_MIB ? `the RSS floor rose by ${rssGrowth.toFixed(0)} MiB from the second third to the last (limit ${MAX_RSS_GROWTH_MIB})` : '',
    fdGrowth > MAX_FD_GROWTH ? `open descriptors grew by ${fdGrowth} (limit ${MAX_FD_GROWTH})` : '',
    counts.errors > (counts.http + counts.prompts) / 100 ? `${counts.errors} failed steps` : '',
  ].filter(Boolean);
  console.log(`RSS floor growth ${rssGrowth.toFixed(1)} MiB, descriptor growth ${fdGrowth}: ${failures.length === 0 ? 'bounded' : failures.join('; ')}`);
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => (process.exitCode = code),
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
