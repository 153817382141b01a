// A person signs in with a key in a real browser and uses the ComfyUI page through the gateway in required mode.

import assert from 'node:assert/strict';
import { createServer, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { browserUnavailable, launchBrowser, screenshotPath } from '../helpers/browser.js';
import { PROMPT_ID_MODES, startFakeComfyUI, type FakeComfyUI, type Frontend, type PromptIdMode } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

/**
 * A page on another port of the same host, answering with `headers`: same site for the browser (it
 * shares the gateway's cookies), another origin for the gateway.
 */
async function startPageOnAnotherPort(headers: OutgoingHttpHeaders = {}): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { ...headers, 'content-type': 'text/html' });
    res.end('<!doctype html><title>evil</title><p>hi</p>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

/** Each prompt id mode with the current web UI, and the web UI of older releases once. */
const STAGES: Array<[PromptIdMode, Frontend]> = [...PROMPT_ID_MODES.map((mode): [PromptIdMode, Frontend] => [mode, 'vue']), ['honoured', 'legacy']];

for (const [promptIds, frontend] of STAGES) {
  describe(`browser sign-in (ComfyUI that ${promptIds} client prompt ids, ${frontend} web UI)`, { skip: browserUnavailable }, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let browser: Browser;
    let userKey: string;
    let attackerKey: string;

    before(async () => {
      comfy = await startFakeComfyUI({ promptIds, frontend });
      gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
      const admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
      userKey = (await createKey(gateway.url, { name: 'painter' }, admin)).api_key;
      attackerKey = (await createKey(gateway.url, { name: 'attacker' }, admin)).api_key;
      browser = await launchBrowser();
    });
    after(async () => {
      await browser?.close();
      await gateway.stop();
      await comfy.close();
    });

    test('sign in, use the UI (HTTP and WebSocket with the cookie), sign out, be refused', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      const consoleErrors: string[] = [];
      page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
      const unloadedFiles: string[] = [];
      page.on('response', (response) => {
        const kind = response.request().resourceType();
        if ((kind === 'script' || kind === 'stylesheet') && response.status() !== 200) unloadedFiles.push(`${response.status()} ${response.url()}`);
      });

      await page.goto(`${gateway.url}/?tab=1`);
      assert.equal(new URL(page.url()).pathname, '/login', 'a page load without a session goes to the sign-in page');
      assert.equal(new URL(page.url()).searchParams.get('next'), '/?tab=1');
      await page.screenshot({ path: await screenshotPath('sign-in-page') });

      await page.fill('#api_key', 'comfy_wrong_wrong_wrong_wrong_wrong_wrong_wrong_wr');
      await page.click('button[type=submit]');
      assert.match((await page.textContent('[role=alert]')) ?? '', /not valid/);

      await page.fill('#api_key', userKey);
      await page.click('button[type=submit]');
      await page.waitForURL(`${gateway.url}/?tab=1`);
      await page.waitForSelector('text=socket open');
      assert.deepEqual(unloadedFiles, [], "every script and style sheet of ComfyUI's page loaded");
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === 'comfy_gate_session')!;
      assert.ok(session.httpOnly);
      assert.equal(session.sameSite, 'Lax');
      assert.equal(
        cookies.some((c) => c.value.includes(userKey)),
        false,
        'the key is never in a cookie',
      );

      const queued = await page.evaluate(() =>
        (window as unknown as { comfy: { queuePrompt(): Promise<{ status: number; body: { prompt_id: string } }> } }).comfy.queuePrompt(),
      );
      assert.equal(queued.status, 200);
      await page.waitForSelector(`text=finished ${queued.body.prompt_id}`);
      const eventTypes = await page.evaluate(() => (window as unknown as { comfy: { events: Array<{ type: string }> } }).comfy.events.map((e) => e.type));
      for (const type of ['status', 'execution_start', 'executed', 'execution_success']) assert.ok(eventTypes.includes(type), type);
      await page.screenshot({ path: await screenshotPath('comfyui-through-gateway') });

      const signOut = await page.evaluate(async () => (await fetch('/logout', { method: 'POST' })).status);
      assert.equal(signOut, 200);
      const refused = await page.evaluate(() => (window as unknown as { comfy: { queuePrompt(): Promise<{ status: number }> } }).comfy.queuePrompt());
      assert.equal(refused.status, 401);
      await page.reload();
      assert.equal(new URL(page.url()).pathname, '/login');
      assert.deepEqual(
        consoleErrors.filter((e) => !/401|Failed to load resource/.test(e)),
        [],
      );
      await context.close();
    });

    /** A new browser context with `userKey` signed in on the ComfyUI page. */
    async function signedInPage(): Promise<{ context: BrowserContext; page: Page }> {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${gateway.url}/login`);
      await page.fill('#api_key', userKey);
      await page.click('button[type=submit]');
      await page.waitForSelector('text=socket open');
      return { context, page };
    }

    test('another site cannot drive a signed-in browser', async () => {
      const { context, page } = await signedInPage();
      const evil = await startPageOnAnotherPort();
      try {
        const before = comfy.requests.filter((r) => r.method === 'POST').length;
        await page.goto(evil.url);
        const outcome = await page.evaluate(async (target) => {
          await fetch(`${target}/api/prompt`, { method: 'POST', mode: 'no-cors', credentials: 'include', body: '{"prompt":{}}' });
          return new Promise<string>((resolve) => {
            const socket = new WebSocket(`${target.replace('http', 'ws')}/ws`);
            socket.onopen = () => resolve('open');
            socket.onerror = () => resolve('refused');
          });
        }, gateway.url);
        assert.equal(outcome, 'refused', 'a cross-site WebSocket with the cookie is refused');
        assert.equal(comfy.requests.filter((r) => r.method === 'POST').length, before, 'the cross-site POST never reached ComfyUI');
      } finally {
        evil.server.close();
        await context.close();
      }
    });

    test('a session cookie that a page on another port sets to shadow the signed-in one signs the browser in as neither', async () => {
      const attackerSession = await send(gateway.url, '/login', { method: 'POST', body: { api_key: attackerKey } });
      const attackerCookie = String(attackerSession.headers['set-cookie']).split(';')[0]!;
      const { context, page } = await signedInPage();
      // A longer Path makes the browser send the other page's cookie first.
      const evil = await startPageOnAnotherPort({ 'set-cookie': `${attackerCookie}; Path=/api` });
      try {
        await page.goto(evil.url);
        await page.goto(`${gateway.url}/`);
        const sent = await page.evaluate(async () => (await fetch('/api/queue')).status);
        assert.equal(sent, 401, 'the API refuses a request holding both cookies');
        assert.equal(
          (await context.cookies(`${gateway.url}/api/queue`)).filter((c) => c.name === 'comfy_gate_session').length,
          2,
          'the browser holds both cookies',
        );
        await page.goto(`${gateway.url}/api/view?filename=x.png`);
        assert.equal(new URL(page.url()).pathname, '/login', 'a page load under /api goes to the sign-in page');
      } finally {
        evil.server.close();
        await context.close();
      }
    });
  });
}
