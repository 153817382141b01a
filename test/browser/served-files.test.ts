// A file uploaded through the gateway, opened in a tab of the gateway's own machine, runs no script on the gateway's origin.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { browserUnavailable, launchBrowser } from '../helpers/browser.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { multipart } from '../helpers/multipart.js';

/** An SVG whose script, if it runs, marks the page and asks the gateway for an admin key as a local caller would. */
const PLANTING_SVG = `<svg xmlns="http://www.w3.org/2000/svg"><script>
document.documentElement.setAttribute('data-ran', 'yes');
fetch('/api/keys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'planted', role: 'admin' }) })
  .then((answer) => document.documentElement.setAttribute('data-answer', String(answer.status)));
</script></svg>`;

for (const [mode, args] of [
  ['no flag', []],
  ['--enable-api-auth', ['--enable-api-auth']],
] as const) {
  describe(`an uploaded SVG opened from the gateway runs no script, ${mode}`, { skip: browserUnavailable }, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let browser: Browser;

    before(async () => {
      // A release that serves an SVG inline, script and all: the gateway's sandbox is then the only guard (newer ones make it a download).
      comfy = await startFakeComfyUI({ activeContent: 'inline' });
      gateway = await startGateway({ upstream: comfy.url, args: [...args] });
      browser = await launchBrowser();
    });
    after(async () => {
      await browser?.close();
      await gateway?.stop();
      await comfy?.close();
    });

    /** Opens `target` in a fresh tab, as the operator would on the gateway's machine: its answer is sandboxed, its script does not run and no key is planted. */
    async function assertOpensInert(target: string): Promise<void> {
      const answer = await send(gateway.url, target);
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.headers['content-security-policy'], 'sandbox');
      assert.equal(answer.headers['x-content-type-options'], 'nosniff');
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${gateway.url}${target}`, { waitUntil: 'load' });
        assert.equal(await page.evaluate(() => document.documentElement.getAttribute('data-ran')), null, 'the script did not run');
      } finally {
        await context.close();
      }
      const names = (await send(gateway.url, '/api/keys')).json<{ keys: Array<{ name: string }> }>().keys.map((key) => key.name);
      assert.equal(names.includes('planted'), false, `no key was planted: ${names.join(', ')}`);
    }

    test('an uploaded image, opened without a key where management needs none', async () => {
      // Without a flag anyone may upload; with --enable-api-auth a user key does.
      const uploader = mode === 'no flag' ? undefined : (await createKey(gateway.url, { name: 'uploader' })).api_key;
      const form = multipart([{ name: 'image', filename: 'cat.svg', value: PLANTING_SVG }]);
      const uploaded = await send(gateway.url, '/api/upload/image', {
        method: 'POST',
        headers: form.headers,
        body: form.body,
        ...(uploader ? { key: uploader } : {}),
      });
      assert.equal(uploaded.status, 200, uploaded.text);
      await assertOpensInert(`/api/view?filename=${encodeURIComponent(uploaded.json<{ name: string }>().name)}&type=input`);
    });

    test('a user data file saved without a key, opened the same way', async () => {
      const saved = await send(gateway.url, '/api/userdata/cat.svg', { method: 'POST', body: PLANTING_SVG });
      assert.equal(saved.status, 200, saved.text);
      await assertOpensInert('/api/userdata/cat.svg');
      if (mode === 'no flag') return;
      // A signed-in admin's requests go to ComfyUI as sent: the file is served to them as sandboxed.
      const admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
      assert.equal((await send(gateway.url, '/api/userdata/cat.svg', { key: admin })).headers['content-security-policy'], 'sandbox');
    });
  });
}
