// Pages of other origins (another port, another host name) try to drive the gateway in a real browser, and to frame its UI.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { browserUnavailable, launchBrowser } from '../helpers/browser.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';

/** A plain page on its own port, standing in for a site the person happens to visit. */
async function startOtherSite(): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>another site</title><p>cute cats</p>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/** Opens `origin`'s page and runs every attack on the gateway at `target` from it; resolves what the page could tell. */
async function attack(page: Page, origin: string, target: string): Promise<Record<string, string>> {
  await page.goto(`${origin}/`);
  return page.evaluate(async (gateway) => {
    const outcome = (promise: Promise<Response>): Promise<string> =>
      promise.then(
        (r) => `status ${r.status} (${r.type})`,
        () => 'blocked',
      );
    const loaded = (element: HTMLIFrameElement): Promise<void> => new Promise((resolve) => element.addEventListener('load', () => resolve(), { once: true }));
    const results: Record<string, string> = {};
    const prompt = JSON.stringify({ prompt: { '9': { class_type: 'SaveImage', inputs: {} } } });
    results.noCors = await outcome(fetch(`${gateway}/prompt`, { method: 'POST', mode: 'no-cors', credentials: 'include', body: prompt }));
    results.corsSimple = await outcome(fetch(`${gateway}/api/prompt`, { method: 'POST', body: prompt }));
    results.corsJson = await outcome(fetch(`${gateway}/api/prompt`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: prompt }));
    results.imageGet = await new Promise<string>((resolve) => {
      const image = new Image();
      image.onload = () => resolve('loaded');
      image.onerror = () => resolve('error');
      image.src = `${gateway}/api/view?filename=x.png&type=output`;
    });
    results.webSocket = await new Promise<string>((resolve) => {
      const socket = new WebSocket(`${gateway.replace('http', 'ws')}/ws?clientId=attacker`);
      socket.onopen = () => resolve('open');
      socket.onerror = () => resolve('refused');
    });
    // A form posting text/plain whose body reads as JSON: {"name":"evil","role":"admin","x":"="}
    const sink = document.createElement('iframe');
    sink.name = 'sink';
    document.body.append(sink);
    const form = document.createElement('form');
    Object.assign(form, { method: 'post', action: `${gateway}/api/keys`, enctype: 'text/plain', target: 'sink' });
    const field = document.createElement('input');
    Object.assign(field, { type: 'hidden', name: '{"name":"evil","role":"admin","x":"', value: '"}' });
    form.append(field);
    document.body.append(form);
    const posted = loaded(sink);
    form.submit();
    await posted;
    const frame = document.createElement('iframe');
    frame.id = 'framed';
    const framed = loaded(frame);
    frame.src = `${gateway}/`;
    document.body.append(frame);
    await framed;
    return results;
  }, target);
}

for (const [mode, args] of [
  ['no flag', []],
  ['--enable-api-auth', ['--enable-api-auth']],
] as const) {
  describe(`a page of another origin cannot drive the gateway, ${mode}`, { skip: browserUnavailable }, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let other: { server: Server; port: number };
    let browser: Browser;

    before(async () => {
      comfy = await startFakeComfyUI();
      gateway = await startGateway({ upstream: comfy.url, args: [...args] });
      other = await startOtherSite();
      browser = await launchBrowser();
    });
    after(async () => {
      await browser?.close();
      other?.server.close();
      await gateway?.stop();
      await comfy?.close();
    });

    // Another port of the same host is the same site for the browser; another host name is another site.
    for (const host of ['127.0.0.1', 'localhost']) {
      test(`from http://${host}:PORT: fetches, a form, an image, a WebSocket and a frame are refused, and ComfyUI receives nothing`, async () => {
        comfy.requests.length = 0;
        const context = await browser.newContext();
        const page = await context.newPage();
        const answers: Array<{ url: string; status: number }> = [];
        page.on('response', (response) => response.url().startsWith(gateway.url) && answers.push({ url: response.url(), status: response.status() }));
        try {
          const results = await attack(page, `http://${host}:${other.port}`, gateway.url);
          assert.equal(results.noCors, 'status 0 (opaque)');
          assert.equal(results.corsSimple, 'blocked');
          assert.equal(results.corsJson, 'blocked');
          assert.equal(results.imageGet, 'error');
          assert.equal(results.webSocket, 'refused');
          assert.ok(answers.length >= 3, `the no-cors fetch, the form and the frame were answered: ${JSON.stringify(answers)}`);
          for (const answer of answers) assert.equal(answer.status, 403, answer.url);
          const framed = page.frames().find((frame) => frame.url().startsWith(gateway.url) && frame !== page.mainFrame() && frame.name() !== 'sink');
          assert.ok(framed, 'the frame navigated to the gateway');
          const content = await framed.content();
          assert.equal(content.includes('vue-app'), false, "the gateway's UI did not load in the frame");
          assert.deepEqual(comfy.requests, [], 'ComfyUI received nothing');
          assert.deepEqual((await send(gateway.url, '/api/keys')).json(), { keys: [] }, 'no key was created');
        } finally {
          await context.close();
        }
      });
    }

    test('the same browser uses the gateway from its own pages', async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      try {
        const response = await page.goto(`${gateway.url}/`);
        assert.equal(response!.headers()['x-frame-options'], 'DENY');
        assert.equal(response!.headers()['content-security-policy'], "frame-ancestors 'none'");
        await page.waitForSelector('text=socket open');
        const queued = await page.evaluate(() => (window as unknown as { comfy: { queuePrompt(): Promise<{ status: number }> } }).comfy.queuePrompt());
        assert.equal(queued.status, 200);
      } finally {
        await context.close();
      }
    });
  });
}

describe('framing with --frame-ancestors', { skip: browserUnavailable }, () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let portal: { server: Server; port: number };
  let other: { server: Server; port: number };
  let browser: Browser;

  before(async () => {
    comfy = await startFakeComfyUI();
    portal = await startOtherSite();
    other = await startOtherSite();
    gateway = await startGateway({ upstream: comfy.url, args: ['--frame-ancestors', `http://127.0.0.1:${portal.port}`] });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    portal?.server.close();
    other?.server.close();
    await gateway?.stop();
    await comfy?.close();
  });

  /** Frames the gateway's UI from `origin` and resolves the frame's HTML as the browser shows it. */
  async function frameFrom(origin: string): Promise<string> {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(`${origin}/`);
      await page.evaluate(async (gateway) => {
        const frame = document.createElement('iframe');
        const loaded = new Promise((resolve) => frame.addEventListener('load', resolve, { once: true }));
        frame.src = `${gateway}/`;
        document.body.append(frame);
        await loaded;
      }, gateway.url);
      const framed = page.frames().find((frame) => frame !== page.mainFrame())!;
      return await framed.content();
    } finally {
      await context.close();
    }
  }

  test('the named origin frames the UI; another origin gets the page, which the browser refuses to show', async () => {
    assert.match(await frameFrom(`http://127.0.0.1:${portal.port}`), /vue-app/);
    comfy.requests.length = 0;
    assert.doesNotMatch(await frameFrom(`http://localhost:${other.port}`), /vue-app/);
    assert.ok(
      comfy.requests.some((r) => r.url === '/'),
      'the page was served, so the browser blocked it by its frame-ancestors',
    );
  });
});
