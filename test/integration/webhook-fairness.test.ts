// Webhook keys take turns through a real gateway process: a key whose receiver never answers holds a few attempts at once, and another key's event still arrives at once.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { queuePrompt, waitForHistory } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { createKey } from '../helpers/keys.js';
import { waitFor } from '../helpers/wait-for.js';

const SECRET = 'test-webhook-secret-0123456789abcdef';
/** The jobs of the key whose receiver hangs: more than the outbox sends at once (16). */
const STALLED_JOBS = 40;

/** A receiver on loopback that answers at once, or (`hang`) never: counts the requests it holds open. */
class Receiver {
  /** When each request arrived (ms). */
  readonly arrivals: number[] = [];
  open = 0;
  mostOpen = 0;
  private readonly server: Server;

  constructor(hang: boolean) {
    this.server = createServer((req, res) => {
      this.arrivals.push(Date.now());
      this.open += 1;
      this.mostOpen = Math.max(this.mostOpen, this.open);
      res.on('close', () => (this.open -= 1));
      req.resume();
      if (!hang) req.on('end', () => res.writeHead(200).end('ok'));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/in`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('webhook fairness', () => {
  let comfy: FakeComfyUI;
  let hanging: Receiver;
  let answering: Receiver;
  let gateway: GatewayProcess;
  let userDirectory: { path: string; remove(): Promise<void> };

  before(async () => {
    comfy = await startFakeComfyUI({ stepDelayMs: 1 });
    hanging = new Receiver(true);
    answering = new Receiver(false);
    userDirectory = await tempUserDirectory();
    gateway = await startGateway({
      upstream: comfy.url,
      userDirectory: userDirectory.path,
      args: ['--require-api-auth', '--webhook-secret', SECRET, '--webhook-allow-private'],
    });
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
    await hanging?.close();
    await answering?.close();
    await userDirectory?.remove();
  });

  test("a key whose receiver never answers holds at most 4 attempts, and another key's event arrives at once", async () => {
    const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 1_000_000 })).api_key;
    const stalled = await createKey(gateway.url, { name: 'stalled', rate_limit: 10_000, webhook_url: await hanging.listen() }, admin);
    const other = await createKey(gateway.url, { name: 'other', rate_limit: 10_000, webhook_url: await answering.listen() }, admin);

    let last = '';
    for (let i = 0; i < STALLED_JOBS; i += 1) last = await queuePrompt(gateway.url, stalled.api_key);
    await waitForHistory(gateway.url, stalled.api_key, last, 20_000);
    await waitFor(() => hanging.open >= 4, "the stalled key's first attempts");

    const mine = await queuePrompt(gateway.url, other.api_key);
    await waitForHistory(gateway.url, other.api_key, mine);
    const finished = Date.now();
    // Before keys took turns, the 16 attempts in flight and the 24 older events of the stalled key came first: 20 s.
    await waitFor(() => answering.arrivals.length > 0, "the other key's event, behind a stalled key's backlog", 3000);
    assert.ok(answering.arrivals[0]! - finished < 3000);
    assert.equal(hanging.mostOpen, 4, 'at most 4 attempts of one key at once');
  });
});
