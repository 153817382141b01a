// The admin dashboard in a real browser: an admin creates, rotates, changes (job quotas included), disables and deletes a key and sees its use charted, watches the backends and the webhook deliveries; user keys are refused.

import assert from 'node:assert/strict';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { browserUnavailable, launchBrowser, screenshotPath } from '../helpers/browser.js';
import { SAVE_WORKFLOW } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { FileUsageStore } from '../../src/store/file/file-usage-store.js';

const DOCS_SCREENSHOT = resolve(import.meta.dirname, '../../../docs/dashboard.png');
const DAY = 86_400;
const today = (): string => new Date().toISOString().slice(0, 10);
const daysAgo = (n: number): string => new Date(Date.now() - n * DAY * 1000).toISOString().slice(0, 10);

/** A browser context whose console errors and page errors are collected. */
async function openPage(
  browser: Browser,
  options: Parameters<Browser['newContext']>[0] = {},
): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (message) => message.type() === 'error' && errors.push(message.text()));
  page.on('pageerror', (error) => errors.push(error.message));
  return { context, page, errors };
}

async function signIn(page: Page, gatewayUrl: string, apiKey: string): Promise<void> {
  await page.goto(`${gatewayUrl}/login?next=${encodeURIComponent('/admin')}`);
  await page.fill('#api_key', apiKey);
  await Promise.all([page.waitForURL(`${gatewayUrl}/admin`), page.click('button[type=submit]')]);
}

/** The table row of the key named `name`. */
const rowOf = (page: Page, name: string) => page.locator('#keys tbody tr', { has: page.locator('.key-name', { hasText: new RegExp(`^${name}$`) }) });

/** The tooltip of one day's column in a chart. */
const tooltipOf = (page: Page, chart: 'requests' | 'limited', date: string) => page.locator(`#chart-${chart} g.day[data-date="${date}"] > title`);

/** True when the page scrolls sideways as a whole. */
const scrollsSideways = (page: Page): Promise<boolean> => page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);

describe('admin dashboard', { skip: browserUnavailable }, () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let browser: Browser;
  let admin: CreatedKey;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    // Each page load asks for several lists: the default 100 requests an hour would not last the suite.
    admin = await createKey(gateway.url, { name: 'Ops admin', rate_limit: 10_000 });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await gateway.stop();
    await comfy.close();
  });

  test('an admin creates, rotates, changes, uses, disables and deletes a key, and sees its use', async () => {
    const { context, page, errors } = await openPage(browser, { timezoneId: 'Europe/Paris' });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: gateway.url });
    await signIn(page, gateway.url, admin.api_key);
    await rowOf(page, 'Ops admin').locator('.badge.you').waitFor();

    // Create: the form's values reach the API, with the expiry converted from the browser's time zone.
    await page.click('#new-key');
    await page.fill('#key-form [name=name]', 'Render farm');
    await page.fill('#key-form [name=rate_limit]', '50');
    await page.fill('#key-form [name=expires_at]', '2030-06-01T12:00');
    await page.click('#key-submit');
    await page.waitForSelector('#secret-dialog[open]');
    const secret = (await page.textContent('#secret-value')) ?? '';
    assert.match(secret, /^comfy_[A-Za-z0-9_-]{43}$/);
    assert.match((await page.textContent('#secret-dialog .warning')) ?? '', /only time/);
    await page.click('#copy-secret');
    await page.waitForSelector('#copy-status:has-text("Copied")');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
    await page.screenshot({ path: await screenshotPath('dashboard-new-key-secret') });
    await page.click('#secret-dialog [data-close]');
    // The dialog forgets the secret on its close event, which follows the click as a task of its own.
    await page.waitForFunction((shown) => !document.body.innerHTML.includes(shown), secret);
    assert.equal(await page.isVisible('#secret-dialog'), false);
    assert.equal((await page.content()).includes(secret), false, 'the secret is gone from the page once its dialog is closed');

    const row = rowOf(page, 'Render farm');
    await row.waitFor();
    const keyId = (await row.getAttribute('data-key-id'))!;
    assert.equal(await row.locator('.col-prefix code').textContent(), `${secret.slice(0, 12)}…`);
    assert.equal(await row.locator('.col-status .status').textContent(), 'active');
    assert.equal(await row.locator('.col-limit').textContent(), '50/h');
    const created = await keyRecord(keyId);
    assert.equal(created.expires_at, Date.UTC(2030, 5, 1, 10, 0) / 1000, '12:00 in Paris in June is 10:00 UTC');
    assert.equal(created.role, 'user');

    // Rotate: a new secret, shown once; the old one stops at once.
    await row.locator('[data-action=rotate]').click();
    await page.click('#rotate-form [type=submit]');
    await page.waitForSelector('#secret-dialog[open]');
    const rotated = (await page.textContent('#secret-value')) ?? '';
    assert.match(rotated, /^comfy_/);
    assert.notEqual(rotated, secret);
    await page.click('#secret-dialog [data-close]');
    await page.waitForFunction((shown) => !document.body.innerHTML.includes(shown), rotated);
    assert.equal((await page.content()).includes(rotated), false);
    assert.equal((await send(gateway.url, '/system_stats', { key: secret })).status, 401);

    // Edit: only the limit changes; the expiry is kept as it was.
    await row.locator('[data-action=edit]').click();
    assert.equal(await page.inputValue('#key-form [name=name]'), 'Render farm');
    assert.equal(await page.inputValue('#key-form [name=expires_at]'), '2030-06-01T12:00');
    await page.fill('#key-form [name=rate_limit]', '1');
    await page.click('#key-submit');
    await page.waitForSelector('#key-dialog', { state: 'hidden' });
    await row.locator('.col-limit:text-is("1/h")').waitFor();
    assert.equal((await keyRecord(keyId)).rate_limit, 1);
    assert.equal((await keyRecord(keyId)).expires_at, created.expires_at);

    // Use: one counted request and one refused by the new limit show in the cells and both charts.
    assert.equal((await send(gateway.url, '/system_stats', { key: rotated })).status, 200);
    assert.equal((await send(gateway.url, '/system_stats', { key: rotated })).status, 429);
    await page.click('#refresh');
    await row.locator('.col-30d:text-is("1")').waitFor();
    assert.equal(await row.locator('.col-24h').textContent(), '1');
    assert.notEqual(await row.locator('.col-last time').textContent(), null);
    await page.selectOption('#chart-key', keyId);
    await tooltipOf(page, 'requests', today()).filter({ hasText: '1 request (1 succeeded, 0 failed)' }).waitFor({ state: 'attached' });
    assert.match((await tooltipOf(page, 'limited', today()).textContent()) ?? '', /1 request refused with 429/);
    assert.equal(await page.locator(`#chart-requests g.day[data-date="${today()}"] rect.bar.ok`).count(), 1);
    assert.match((await page.getAttribute('#chart-requests svg', 'aria-label')) ?? '', /key “Render farm”: 1 request, 1 succeeded, 0 failed/);
    assert.equal(await page.getAttribute('#chart-requests svg', 'role'), 'img');
    assert.equal(await page.locator('#chart-requests g.day').count(), 30);
    await page.selectOption('#chart-key', 'all');
    assert.match((await tooltipOf(page, 'requests', today()).textContent()) ?? '', /\d+ requests/);

    await page.screenshot({ path: await screenshotPath('dashboard-1280') });
    assert.equal(await scrollsSideways(page), false);
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForFunction(() => Number(document.querySelector('#chart-requests svg')?.getAttribute('width')) < 400);
    assert.equal(await scrollsSideways(page), false, 'no sideways scrolling at 390 px');
    await page.screenshot({ path: await screenshotPath('dashboard-390'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });

    // Disable: refused at once, and shown as disabled.
    await row.locator('[data-action=toggle]').click();
    await row.locator('.status:text-is("disabled")').waitFor();
    assert.equal(await row.locator('[data-action=toggle]').textContent(), 'Enable');
    const refused = await send(gateway.url, '/system_stats', { key: rotated });
    assert.equal(refused.status, 401);
    assert.equal(refused.json().error_code, 'KEY_DISABLED');

    // Delete: the dialog asks first; Cancel keeps the key.
    await row.locator('[data-action=delete]').click();
    await page.waitForSelector('#confirm-dialog[open]');
    assert.match((await page.textContent('#confirm-title')) ?? '', /Delete “Render farm”/);
    await page.click('#confirm-dialog button[value=cancel]');
    assert.equal((await send(gateway.url, `/api/keys/${keyId}`, { key: admin.api_key })).status, 200);
    await row.locator('[data-action=delete]').click();
    await page.click('#confirm-ok');
    await row.waitFor({ state: 'detached' });
    assert.equal((await send(gateway.url, `/api/keys/${keyId}`, { key: admin.api_key })).status, 404);
    assert.deepEqual(errors, [], 'no console errors');

    // An error from the API is shown: a key deleted elsewhere while the page still lists it.
    const stale = await createKey(gateway.url, { name: 'Short-lived' }, admin.api_key);
    await page.click('#refresh');
    await rowOf(page, 'Short-lived').waitFor();
    await send(gateway.url, `/api/keys/${stale.key_id}`, { method: 'DELETE', key: admin.api_key });
    await rowOf(page, 'Short-lived').locator('[data-action=toggle]').click();
    await page.waitForSelector('#message.error:has-text("KEY_NOT_FOUND")');
    await rowOf(page, 'Short-lived').waitFor({ state: 'detached' });

    // A refused form stays open and says why.
    await page.click('#new-key');
    await page.fill('#key-form [name=name]', '   ');
    await page.click('#key-submit');
    await page.waitForSelector('#key-dialog .dialog-error:has-text("INVALID_REQUEST")');
    await page.click('#key-dialog [data-close]');
    assert.deepEqual(
      errors.filter((e) => !/status of (404|400)/.test(e)),
      [],
    );

    // Sign out ends the session.
    await Promise.all([page.waitForURL(/\/login/), page.click('text=Sign out')]);
    await page.goto(`${gateway.url}/admin`);
    assert.equal(new URL(page.url()).pathname, '/login');
    await context.close();
  });

  test('the key form shows and sets the job quotas; an empty quota is no limit', async () => {
    const { context, page, errors } = await openPage(browser, { locale: 'en-US' });
    await signIn(page, gateway.url, admin.api_key);
    await rowOf(page, 'Ops admin').waitFor();
    const quotas = async (keyId: string): Promise<unknown[]> => {
      const record = await keyRecord(keyId);
      return [record.max_queued, record.max_running, record.daily_execution_seconds];
    };
    const inputs = (): Promise<string[]> =>
      Promise.all(['max_queued', 'max_running', 'daily_execution_seconds'].map((name) => page.inputValue(`#key-form [name=${name}]`)));

    // Create with all three.
    await page.click('#new-key');
    assert.deepEqual(await inputs(), ['', '', ''], 'a new key starts without quotas');
    await page.fill('#key-form [name=name]', 'Quota farm');
    await page.fill('#key-form [name=max_queued]', '5');
    await page.fill('#key-form [name=max_running]', '2');
    await page.fill('#key-form [name=daily_execution_seconds]', '3600');
    await page.click('#key-submit');
    await page.waitForSelector('#secret-dialog[open]');
    await page.click('#secret-dialog [data-close]');
    const row = rowOf(page, 'Quota farm');
    await row.waitFor();
    const keyId = (await row.getAttribute('data-key-id'))!;
    assert.deepEqual(await quotas(keyId), [5, 2, 3600]);
    assert.equal(await row.locator('.col-limit .note.quotas').textContent(), '≤\u00a05\u00a0queued · 2\u00a0running · 3,600\u00a0s/day');

    // Edit: the form shows them; one is cleared, one changed, one kept.
    await row.locator('[data-action=edit]').click();
    assert.deepEqual(await inputs(), ['5', '2', '3600']);
    await page.fill('#key-form [name=max_queued]', '');
    await page.fill('#key-form [name=max_running]', '3');
    await page.click('#key-submit');
    await page.waitForSelector('#key-dialog', { state: 'hidden' });
    await row.locator('.note.quotas:text-is("≤\u00a03\u00a0running · 3,600\u00a0s/day")').waitFor();
    assert.deepEqual(await quotas(keyId), [null, 3, 3600]);

    // A value the field does not take keeps the dialog open and changes nothing.
    await row.locator('[data-action=edit]').click();
    assert.deepEqual(await inputs(), ['', '3', '3600']);
    await page.fill('#key-form [name=max_running]', '0');
    await page.click('#key-submit');
    assert.equal(await page.locator('#key-form [name=max_running]:invalid').count(), 1);
    assert.equal(await page.isVisible('#key-dialog'), true);
    assert.deepEqual(await quotas(keyId), [null, 3, 3600]);

    // Clearing every quota leaves none, and the note goes.
    await page.fill('#key-form [name=max_running]', '');
    await page.fill('#key-form [name=daily_execution_seconds]', '');
    await page.click('#key-submit');
    await page.waitForSelector('#key-dialog', { state: 'hidden' });
    await row.locator('.note.quotas').waitFor({ state: 'detached' });
    assert.deepEqual(await quotas(keyId), [null, null, null]);
    assert.equal(await row.locator('.col-limit').textContent(), '100/h');
    assert.deepEqual(errors, [], 'no console errors');
    await context.close();
  });

  test('the key form shows and sets the prompt policy as JSON; text that is not JSON or a bad policy changes nothing', async () => {
    const { context, page, errors } = await openPage(browser, { locale: 'en-US' });
    await signIn(page, gateway.url, admin.api_key);
    await rowOf(page, 'Ops admin').waitFor();
    const policyInput = '#key-form [name=policy]';
    const dialogError = '#key-dialog .dialog-error';

    await page.click('#new-key');
    assert.equal(await page.inputValue(policyInput), '', 'a new key starts without a policy');
    await page.fill('#key-form [name=name]', 'Policy farm');
    await page.fill(policyInput, '{"max_steps": 40, "deny_nodes": ["Save*"]}');
    await page.click('#key-submit');
    await page.waitForSelector('#secret-dialog[open]');
    await page.click('#secret-dialog [data-close]');
    const row = rowOf(page, 'Policy farm');
    await row.waitFor();
    const keyId = (await row.getAttribute('data-key-id'))!;
    assert.deepEqual((await keyRecord(keyId)).policy, { deny_nodes: ['Save*'], max_steps: 40 });
    assert.equal(await row.locator('.col-limit .note.policy').textContent(), 'prompt policy');

    // Edit: the form shows it as JSON; text that is not JSON stays in the dialog with the reason.
    await row.locator('[data-action=edit]').click();
    assert.deepEqual(JSON.parse(await page.inputValue(policyInput)), { deny_nodes: ['Save*'], max_steps: 40 });
    await page.fill(policyInput, '{"max_steps": 40');
    await page.click('#key-submit');
    await page.waitForSelector(`${dialogError}:not([hidden])`);
    assert.match((await page.textContent(dialogError)) ?? '', /the prompt policy is not JSON/);
    // A policy the gateway refuses: its problems are shown, nothing changes.
    await page.fill(policyInput, '{"max_steps": -1, "bogus": true}');
    await page.click('#key-submit');
    await page.waitForFunction((selector) => /INVALID_REQUEST/.test(document.querySelector(selector)?.textContent ?? ''), dialogError);
    assert.match((await page.textContent(dialogError)) ?? '', /policy\.bogus unknown field.*policy\.max_steps must be a whole number/);
    assert.equal(await page.isVisible('#key-dialog'), true);
    assert.deepEqual((await keyRecord(keyId)).policy, { deny_nodes: ['Save*'], max_steps: 40 });

    // Emptying it removes the policy, and the note goes.
    await page.fill(policyInput, '');
    await page.click('#key-submit');
    await page.waitForSelector('#key-dialog', { state: 'hidden' });
    await row.locator('.note.policy').waitFor({ state: 'detached' });
    assert.equal((await keyRecord(keyId)).policy, null);
    assert.deepEqual(
      errors.filter((error) => !/status of 400/.test(error)),
      [],
      'no console errors but the refused policy',
    );
    await context.close();
  });

  test('a user key gets the "Not an admin" page', async () => {
    const user = await createKey(gateway.url, { name: 'Painter' }, admin.api_key);
    const { context, page } = await openPage(browser);
    await page.goto(`${gateway.url}/login?next=${encodeURIComponent('/admin')}`);
    await page.fill('#api_key', user.api_key);
    await page.click('button[type=submit]');
    await page.waitForSelector('h1:text-is("Not an admin")');
    assert.equal(new URL(page.url()).pathname, '/admin');
    assert.equal((await page.request.get(`${gateway.url}/admin/dashboard.js`)).status(), 403, 'nor its script');
    assert.equal((await page.request.get(`${gateway.url}/api/keys`)).status(), 403, 'nor the key list, with the same session');
    assert.equal((await page.request.get(`${gateway.url}/api/gateway/backends`)).status(), 403, 'nor the backends');
    await context.close();
  });

  test('markup in a key’s name, metadata and policy is shown as text, never run', async () => {
    const name = `<img src=x onerror="window.pwned='name'">"><svg onload="window.pwned='attr'">`;
    const node = `</script><img src=x onerror="window.pwned='policy'">`;
    const planted = await createKey(
      gateway.url,
      { name, metadata: { note: `<script>window.pwned='metadata'</script>` }, policy: { deny_nodes: [node] } },
      admin.api_key,
    );
    const { context, page, errors } = await openPage(browser);
    await signIn(page, gateway.url, admin.api_key);
    const row = page.locator(`#keys tbody tr[data-key-id="${planted.key_id}"]`);
    await row.waitFor();
    assert.equal(await row.locator('.key-name').textContent(), name);
    assert.match((await row.locator('.note.policy').getAttribute('title')) ?? '', /onerror/, 'the policy is in the tooltip, as text');
    const choice = await page.locator(`#chart-key option[value="${planted.key_id}"]`).textContent();
    assert.ok(choice?.startsWith(`${name} · `), `the chart’s key choice names it as text: ${choice}`);
    await row.locator('[data-action=edit]').click();
    assert.equal(await page.inputValue('#key-form [name=name]'), name);
    assert.match(await page.inputValue('#key-form [name=policy]'), /onerror/);
    assert.equal(await page.evaluate(() => (window as { pwned?: string }).pwned), undefined, 'no planted script ran');
    assert.equal(await page.locator('#keys img, #keys svg[onload], #key-form img').count(), 0, 'no planted element was made');
    assert.deepEqual(errors, []);
    await context.close();
  });

  /** The key's record as the API has it. */
  async function keyRecord(keyId: string): Promise<{
    rate_limit: number;
    expires_at: number | null;
    role: string;
    max_queued: number | null;
    max_running: number | null;
    daily_execution_seconds: number | null;
    policy: unknown;
  }> {
    const res = await send(gateway.url, `/api/keys/${keyId}`, { key: admin.api_key });
    assert.equal(res.status, 200, res.text);
    return res.json();
  }
});

/** The row of the backend named `name` in the Backends table. */
const backendRow = (page: Page, name: string) => page.locator(`#backends tbody tr[data-backend="${name}"]`);

describe('admin dashboard with two backends', { skip: browserUnavailable }, () => {
  let gpu0: FakeComfyUI;
  let gpu1: FakeComfyUI;
  let gateway: GatewayProcess;
  let browser: Browser;
  let admin: CreatedKey;

  before(async () => {
    gpu0 = await startFakeComfyUI();
    gpu1 = await startFakeComfyUI();
    gateway = await startGateway({ upstream: `${gpu0.url}#name=gpu0`, args: ['--upstream', `${gpu1.url}#name=gpu1&weight=2`, '--require-api-auth'] });
    admin = await createKey(gateway.url, { name: 'Ops admin', rate_limit: 10_000 });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await gateway?.stop();
    await gpu0.close();
    await gpu1.close();
  });

  test('the Backends section lists each backend with its state, and follows a backend that goes away without a reload', async () => {
    const { context, page, errors } = await openPage(browser, { locale: 'en-US' });
    await signIn(page, gateway.url, admin.api_key);
    const gpu0Row = backendRow(page, 'gpu0');
    const gpu1Row = backendRow(page, 'gpu1');
    await gpu0Row.locator('.col-state .state.up').waitFor();
    await gpu1Row.locator('.col-state .state.up').waitFor();
    assert.deepEqual(await page.locator('#backends tbody tr').evaluateAll((trs) => trs.map((tr) => (tr as HTMLElement).dataset.backend)), ['gpu0', 'gpu1']);
    assert.equal(await gpu0Row.locator('.col-url').textContent(), gpu0.url);
    assert.equal(await gpu1Row.locator('.col-name .note').textContent(), 'weight 2');
    assert.equal(await gpu0Row.locator('.col-jobs').textContent(), '0');
    assert.equal(await gpu0Row.locator('.col-queue').textContent(), '0');
    assert.equal(await gpu0Row.locator('.col-error').textContent(), '—');
    assert.equal(await gpu0Row.locator('.col-child').textContent(), '—');
    assert.notEqual(await gpu0Row.locator('.col-since time').getAttribute('datetime'), null);
    await page.locator('#backends-summary:text-is("2 of 2 backends up")').waitFor();

    // gpu1 goes away: the table shows it down on its own refresh, with why, and no ComfyUI queue.
    const loads = (): Promise<number> => page.evaluate(() => performance.getEntriesByType('navigation').length);
    const navigations = await loads();
    await gpu1.close();
    await gpu1Row.locator('.col-state .state.down').waitFor({ timeout: 30_000 });
    assert.equal(await loads(), navigations, 'the page was not reloaded');
    assert.match((await gpu1Row.locator('.col-error').textContent()) ?? '', /\S/);
    assert.notEqual(await gpu1Row.locator('.col-error').textContent(), '—');
    assert.equal(await gpu1Row.locator('.col-queue').textContent(), '—');
    await page.locator('#backends-summary:text-is("1 of 2 backends up")').waitFor();
    assert.equal(await gpu0Row.locator('.state').textContent(), 'up');

    // The badges are coloured by state: the theme's green for up, its red for down.
    const colours = await page.evaluate(() => {
      const theme = getComputedStyle(document.documentElement);
      const probe = document.createElement('span');
      document.body.append(probe);
      const resolve = (name: string): string => {
        probe.style.color = theme.getPropertyValue(name);
        return getComputedStyle(probe).color;
      };
      const colourOf = (selector: string): string => getComputedStyle(document.querySelector(selector)!).color;
      const result = {
        ok: resolve('--ok'),
        bad: resolve('--bad'),
        up: colourOf('tr[data-backend="gpu0"] .state'),
        down: colourOf('tr[data-backend="gpu1"] .state'),
      };
      probe.remove();
      return result;
    });
    assert.equal(colours.up, colours.ok);
    assert.equal(colours.down, colours.bad);
    assert.notEqual(colours.up, colours.down);

    await page.screenshot({ path: await screenshotPath('dashboard-backends-1280') });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForFunction(() => Number(document.querySelector('#chart-requests svg')?.getAttribute('width')) < 400);
    assert.equal(await scrollsSideways(page), false, 'no sideways scrolling at 390 px');
    await page.screenshot({ path: await screenshotPath('dashboard-backends-390'), fullPage: true });
    assert.deepEqual(errors, [], 'no console errors, no Content-Security-Policy violation');
    await context.close();
  });
});

describe('admin dashboard with more keys than a page', { skip: browserUnavailable }, () => {
  const KEYS = 150;
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let browser: Browser;
  let admin: CreatedKey;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    admin = await createKey(gateway.url, { name: 'Ops admin', rate_limit: 10_000 });
    for (let i = 0; i < KEYS; i += 1) await createKey(gateway.url, { name: `Worker ${i}` }, admin.api_key);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await gateway?.stop();
    await comfy.close();
  });

  test('it asks for one page of keys at a time and pages with Next and Previous', async () => {
    const { context, page, errors } = await openPage(browser);
    const asked: string[] = [];
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.pathname === '/api/keys' || url.pathname === '/api/usage/all') asked.push(url.pathname + url.search);
    });
    await signIn(page, gateway.url, admin.api_key);
    const rows = page.locator('#keys tbody tr');
    await page.locator('#pager:not([hidden])').waitFor();
    assert.equal(await rows.count(), 100);
    assert.equal(await page.locator('#page-previous').isDisabled(), true);
    const firstPage = await rows.evaluateAll((trs) => trs.map((tr) => (tr as HTMLElement).dataset.keyId!));
    assert.deepEqual(firstPage, [...firstPage].sort(), 'keys come in key_id order');

    await page.click('#page-next');
    await page.locator('#page-info:text-is("Page 2")').waitFor();
    await page.waitForFunction(() => document.querySelectorAll('#keys tbody tr').length === 51);
    assert.equal(await page.locator('#page-next').isDisabled(), true);
    const secondPage = await rows.evaluateAll((trs) => trs.map((tr) => (tr as HTMLElement).dataset.keyId!));
    assert.ok(secondPage[0]! > firstPage.at(-1)!, 'the second page starts after the first');

    await page.click('#page-previous');
    await page.locator('#page-info:text-is("Page 1")').waitFor();
    await page.waitForFunction(() => document.querySelectorAll('#keys tbody tr').length === 100);
    assert.ok(asked.length >= 6);
    assert.ok(
      asked.every((target) => /[?&]limit=100(&|$)/.test(target)),
      `every list is asked for one page: ${asked.join(' ')}`,
    );
    assert.ok(asked.some((target) => target.startsWith('/api/usage/all') && target.includes(`after=${encodeURIComponent(firstPage.at(-1)!)}`)));
    assert.deepEqual(errors, []);
    await context.close();
  });
});

/** The values uPlot's legend shows for each series at the cursor, by label. */
async function legendValues(page: Page): Promise<Map<string, string>> {
  const rows = await page
    .locator('#chart-execution .u-legend tr.u-series')
    .evaluateAll((trs) => trs.map((tr) => [tr.querySelector('.u-label')?.textContent ?? '', tr.querySelector('.u-value')?.textContent ?? ''] as const));
  return new Map(rows);
}

/** Moves the mouse over the execution chart at the `index`-th of `count` days (uPlot's cursor takes the nearest day). */
async function hoverDay(page: Page, index: number, count: number): Promise<void> {
  const box = (await page.locator('#chart-execution .u-over').boundingBox())!;
  // Kept a pixel inside the plot: on its very edge the cursor has left it.
  const x = Math.min(Math.max((box.width * index) / (count - 1), 1), box.width - 1);
  await page.mouse.move(box.x + x, box.y + box.height / 2);
}

describe('admin dashboard with a month of usage', { skip: browserUnavailable }, () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let browser: Browser;
  let admin: CreatedKey;
  let keys: Record<string, CreatedKey>;
  let seeded: Map<string, Map<string, number>>;
  let executed: JobDay[];

  before(async () => {
    comfy = await startFakeComfyUI();
    const directory = await tempUserDirectory();
    const first = await startGateway({ upstream: comfy.url, userDirectory: directory.path, args: ['--require-api-auth'] });
    admin = await createKey(first.url, { name: 'Ops admin', rate_limit: 1000 });
    keys = {};
    for (const [name, body] of Object.entries(SEEDED_KEYS)) keys[name] = await createKey(first.url, { name, ...body }, admin.api_key);
    assert.equal(await first.stop(), 0);
    // The reference implementation's usage file, with 29 days of history for the keys.
    seeded = await writeUsageHistory(
      directory.path,
      Object.values(keys).map((key) => key.key_id),
    );
    executed = await writeJobHistory(directory.path, keys);
    gateway = await startGateway({ upstream: comfy.url, userDirectory: directory.path, args: ['--require-api-auth'] });
    await send(gateway.url, `/api/keys/${keys['Contractor']!.key_id}`, { method: 'PATCH', key: admin.api_key, body: { is_active: false } });
    for (let i = 0; i < 14; i += 1) await send(gateway.url, '/system_stats', { key: keys['Render farm']!.api_key });
    for (let i = 0; i < 9; i += 1) await send(gateway.url, '/system_stats', { key: keys['Nightly CI']!.api_key });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await gateway?.stop();
    await comfy.close();
  });

  test('charts draw each day of the last 30, for all keys and for one', async () => {
    const { context, page, errors } = await openPage(browser);
    await signIn(page, gateway.url, admin.api_key);
    const day = daysAgo(10);
    const perKey = [...seeded.values()].map((days) => days.get(day) ?? 0);
    const total = perKey.reduce((a, b) => a + b, 0);
    await tooltipOf(page, 'requests', day)
      .filter({ hasText: `${total.toLocaleString('en-US')} requests` })
      .waitFor({ state: 'attached' });

    const farm = keys['Render farm']!;
    await page.selectOption('#chart-key', farm.key_id);
    const farmCount = seeded.get(farm.key_id)!.get(day)!;
    assert.match((await tooltipOf(page, 'requests', day).textContent()) ?? '', new RegExp(`: ${farmCount} requests`));
    assert.match((await tooltipOf(page, 'limited', today()).textContent()) ?? '', /: 0 requests refused/);
    await page.selectOption('#chart-key', keys['Nightly CI']!.key_id);
    assert.match((await tooltipOf(page, 'limited', today()).textContent()) ?? '', /: 3 requests refused with 429/, 'a limit of 6 per hour refuses 3 of 9');
    assert.equal(await rowOf(page, 'Contractor').locator('.status').textContent(), 'disabled');
    assert.equal(await rowOf(page, 'Preview build').locator('.status').textContent(), 'expired');

    await page.selectOption('#chart-key', 'all');
    await page.locator('#chart-requests svg').hover({ position: { x: 10, y: 10 } });
    await page.screenshot({ path: await screenshotPath('dashboard-month-1280') });
    if (process.env.UPDATE_SCREENSHOTS === '1') {
      await mkdir(resolve(DOCS_SCREENSHOT, '..'), { recursive: true });
      await page.screenshot({ path: DOCS_SCREENSHOT });
      assert.ok((await stat(DOCS_SCREENSHOT)).size < 200 * 1024, 'docs/dashboard.png stays under 200 KB');
    }
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForFunction(() => Number(document.querySelector('#chart-requests svg')?.getAttribute('width')) < 400);
    assert.equal(await scrollsSideways(page), false);
    await page.screenshot({ path: await screenshotPath('dashboard-month-390'), fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('the execution chart draws seconds per day, a line per key, and its table gives the same figures', async () => {
    const { context, page, errors } = await openPage(browser);
    const loaded: string[] = [];
    page.on('response', (response) => loaded.push(new URL(response.url()).origin));
    await signIn(page, gateway.url, admin.api_key);
    await page.locator('#chart-execution canvas').first().waitFor();
    assert.ok(
      loaded.every((origin) => origin === gateway.url),
      'uPlot comes from the gateway, nothing from elsewhere',
    );

    // The table: one row per key and day that ran jobs, newest first, with the seeded figures.
    await page.click('#chart-execution + details summary');
    const rows = await page
      .locator('#execution-table tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
    const expected = [...executed]
      .sort((a, b) => (a.date < b.date ? 1 : a.date > b.date ? -1 : 0))
      .map((job) => [job.date, job.name, String(job.runs), job.seconds.toLocaleString('en-US', { maximumFractionDigits: 1 }), String(job.outputs)]);
    assert.deepEqual(rows.map((row) => row.join(' | ')).sort(), expected.map((row) => row.join(' | ')).sort());
    assert.deepEqual(
      rows.map((row) => row[0]),
      [...rows.map((row) => row[0]!)].sort().reverse(),
      'newest day first',
    );

    // The chart: a line per key that ran jobs (busiest first), and uPlot holds each day's seconds.
    const labels = [...(await legendValues(page)).keys()];
    const totalOf = (name: string): number => executed.filter((job) => job.name === name).reduce((sum, job) => sum + job.seconds, 0);
    assert.deepEqual(labels, ['Day', ...['Nightly CI', 'Render farm', 'Studio workstation'].sort((a, b) => totalOf(b) - totalOf(a))]);
    const ago10 = daysAgo(10);
    await hoverDay(page, 29 - 10, 30);
    const at10 = await legendValues(page);
    const seconds = (name: string, date: string): string => {
      const job = executed.find((j) => j.name === name && j.date === date);
      return `${(job?.seconds ?? 0).toLocaleString('en-US', { maximumFractionDigits: 1 })} s`;
    };
    assert.match(at10.get('Day')!, new RegExp(new Date(`${ago10}T00:00:00Z`).getUTCDate().toString()));
    for (const name of ['Nightly CI', 'Render farm', 'Studio workstation']) assert.equal(at10.get(name), seconds(name, ago10), `${name} ${ago10}`);
    await hoverDay(page, 29, 30);
    const atToday = await legendValues(page);
    for (const name of ['Nightly CI', 'Render farm', 'Studio workstation']) assert.equal(atToday.get(name), seconds(name, today()), `${name} today`);
    assert.match((await page.getAttribute('#chart-execution', 'aria-label')) ?? '', /Execution seconds per day/);
    const totalSeconds = executed.reduce((sum, job) => sum + job.seconds, 0);
    await page
      .locator('#totals .total', { hasText: 'Execution' })
      .locator(`dd:text-is("${totalSeconds.toLocaleString('en-US', { maximumFractionDigits: 1 })} s")`)
      .waitFor();

    // One key chosen: its line only.
    await page.selectOption('#chart-key', keys['Studio workstation']!.key_id);
    await page.waitForFunction(() => document.querySelectorAll('#chart-execution .u-legend tr.u-series').length === 2);
    await hoverDay(page, 29 - 3, 30);
    assert.deepEqual([...(await legendValues(page))].slice(1), [['Studio workstation', seconds('Studio workstation', daysAgo(3))]]);
    assert.equal(await page.locator('#execution-table tbody tr').count(), 3);
    await page.screenshot({ path: await screenshotPath('dashboard-execution-1280'), fullPage: true });
    assert.deepEqual(errors, [], 'no console errors, no Content-Security-Policy violation');
    await context.close();
  });
});

/** One key's jobs on one UTC day, as seeded. */
interface JobDay {
  name: string;
  date: string;
  runs: number;
  seconds: number;
  outputs: number;
}

/**
 * Records jobs through the usage store (as the gateway's job machinery does) for three keys on some of
 * the last 30 days, and prompts that never ran; resolves what each key ran on each day.
 */
async function writeJobHistory(directory: string, keys: Record<string, CreatedKey>): Promise<JobDay[]> {
  const startOfToday = Math.floor(Date.now() / 1000 / DAY) * DAY;
  const days: JobDay[] = [];
  const store = new FileUsageStore({ directory, retentionDays: 90 });
  await store.open();
  const plan: Array<[string, number[], number]> = [
    ['Render farm', [0, 1, 2, 5, 10, 20], 95.5],
    ['Studio workstation', [0, 3, 10], 30.25],
    ['Nightly CI', [10], 600],
  ];
  for (const [name, agos, scale] of plan) {
    for (const ago of agos) {
      const dayStart = startOfToday - ago * DAY;
      const runs = 1 + (ago % 3);
      const job = { name, date: new Date(dayStart * 1000).toISOString().slice(0, 10), runs, seconds: 0, outputs: 0 };
      for (let i = 0; i < runs; i += 1) {
        const seconds = scale + i * 4.5;
        store.recordPromptAdmitted(keys[name]!.key_id, dayStart + 60 + i);
        store.recordJobRun(keys[name]!.key_id, dayStart + 120 + i, seconds, 2);
        job.seconds += seconds;
        job.outputs += 2;
      }
      days.push(job);
    }
  }
  store.recordPromptAdmitted(keys['Contractor']!.key_id, startOfToday + 1);
  await store.close();
  return days;
}

/** The keys of the month-of-usage dashboard, as created through the API. */
const SEEDED_KEYS: Record<string, Record<string, unknown>> = {
  'Render farm': { rate_limit: 2000 },
  'Studio workstation': { rate_limit: 300 },
  'Nightly CI': { rate_limit: 6 },
  Contractor: { rate_limit: 100 },
  'Preview build': { rate_limit: 100, expires_at: Math.floor(Date.now() / 1000) - 3 * DAY },
};

/**
 * Writes `api_usage.json` in the reference implementation's format: a deterministic number of requests
 * per key on each of the 29 days before today, a few of them failed. Resolves the counts per key and day.
 */
async function writeUsageHistory(directory: string, keyIds: string[]): Promise<Map<string, Map<string, number>>> {
  let seed = 7;
  const random = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  const counts = new Map<string, Map<string, number>>();
  const records: unknown[] = [];
  const startOfToday = Math.floor(Date.now() / 1000 / DAY) * DAY;
  keyIds.forEach((keyId, index) => {
    const byDay = new Map<string, number>();
    const scale = [40, 18, 8, 5, 3][index] ?? 4;
    for (let ago = 29; ago >= 1; ago -= 1) {
      const dayStart = startOfToday - ago * DAY;
      const weekday = new Date(dayStart * 1000).getUTCDay();
      const n = Math.round(scale * (weekday === 0 || weekday === 6 ? 0.35 : 1) * (0.6 + random() * 0.8));
      byDay.set(new Date(dayStart * 1000).toISOString().slice(0, 10), n);
      for (let i = 0; i < n; i += 1) {
        const success = random() > 0.06;
        records.push({
          key_id: keyId,
          endpoint: '/prompt',
          timestamp: dayStart + 3600 + i * 97,
          duration: 0.4 + random() * 3,
          success,
          metadata: { method: 'POST', status: success ? 200 : 500 },
        });
      }
    }
    counts.set(keyId, byDay);
  });
  await writeFile(join(directory, 'api_usage.json'), JSON.stringify({ records }));
  return counts;
}

describe('admin dashboard with webhooks', { skip: browserUnavailable }, () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let browser: Browser;
  let admin: CreatedKey;
  let receiver: Server;

  before(async () => {
    comfy = await startFakeComfyUI();
    // A receiver that takes events at /ok and refuses them everywhere else.
    receiver = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(req.url === '/ok' ? 204 : 503).end());
    });
    await new Promise<void>((done) => receiver.listen(0, '127.0.0.1', done));
    gateway = await startGateway({
      upstream: comfy.url,
      args: ['--require-api-auth', '--webhook-secret', 'dashboard-webhook-secret-0123', '--webhook-allow-private', '--webhook-retry-base', '30'],
    });
    admin = await createKey(gateway.url, { name: 'Ops admin', rate_limit: 10_000 });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await gateway?.stop();
    await comfy.close();
    receiver.closeAllConnections();
    await new Promise((done) => receiver.close(done));
  });

  const receiverUrl = (path: string): string => `http://127.0.0.1:${(receiver.address() as AddressInfo).port}${path}`;

  test('the Webhook deliveries section lists deliveries with their state and attempts, and filters by state', async () => {
    const run = async (path: string): Promise<string> => {
      const res = await send(gateway.url, '/api/gateway/run', {
        method: 'POST',
        key: admin.api_key,
        body: { prompt: SAVE_WORKFLOW, wait: 30, webhook_url: receiverUrl(path) },
      });
      assert.equal(res.status, 200, res.text);
      return res.json<{ id: string }>().id;
    };
    const delivered = await run('/ok');
    const refused = await run('/refuses');
    const { context, page, errors } = await openPage(browser, { locale: 'en-US' });
    await signIn(page, gateway.url, admin.api_key);
    const rowOfJob = (jobId: string) => page.locator('#deliveries tbody tr', { has: page.locator('.col-job code', { hasText: jobId }) });
    await rowOfJob(delivered).locator('.state.delivered').waitFor();
    await rowOfJob(refused).locator('.state.pending').waitFor();
    assert.equal(await rowOfJob(refused).locator('.col-event').textContent(), 'job.succeeded');
    assert.equal(await rowOfJob(refused).locator('.col-url').textContent(), receiverUrl('/refuses'));
    assert.match((await rowOfJob(refused).locator('.col-last').textContent()) ?? '', /HTTP 503/);
    assert.match((await rowOfJob(refused).locator('.col-state').textContent()) ?? '', /next try/);

    await page.locator('#deliveries').screenshot({ path: await screenshotPath('dashboard-webhooks-1280') });

    // Opening the attempt count lists each attempt.
    await rowOfJob(delivered).locator('.col-attempts summary').click();
    await rowOfJob(delivered).locator('.attempt-list li').first().waitFor();
    assert.match((await rowOfJob(delivered).locator('.attempt-list li').first().textContent()) ?? '', /HTTP 204 in \d+ ms/);

    await page.selectOption('#deliveries-state', 'pending');
    await rowOfJob(delivered).waitFor({ state: 'detached' });
    assert.equal(await rowOfJob(refused).count(), 1);
    await page.selectOption('#deliveries-state', 'failed');
    await page.locator('#deliveries-empty:not([hidden])').waitFor();
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('the key form sets, shows and clears the webhook URL; a URL the gateway refuses keeps the dialog open', async () => {
    const { context, page, errors } = await openPage(browser, { locale: 'en-US' });
    await signIn(page, gateway.url, admin.api_key);
    const input = '#key-form [name=webhook_url]';
    await page.click('#new-key');
    assert.equal(await page.inputValue(input), '');
    await page.fill('#key-form [name=name]', 'Hooked');
    await page.fill(input, 'https://hooks.example.com/comfy');
    await page.click('#key-submit');
    await page.waitForSelector('#secret-dialog[open]');
    await page.click('#secret-dialog [data-close]');
    const row = rowOf(page, 'Hooked');
    await row.waitFor();
    const keyId = (await row.getAttribute('data-key-id'))!;
    const webhookOf = async (): Promise<unknown> =>
      (await send(gateway.url, `/api/keys/${keyId}`, { key: admin.api_key })).json<{ webhook_url: unknown }>().webhook_url;
    assert.equal(await webhookOf(), 'https://hooks.example.com/comfy');
    assert.equal(await row.locator('.note.webhook').textContent(), 'webhook');

    await row.locator('[data-action=edit]').click();
    assert.equal(await page.inputValue(input), 'https://hooks.example.com/comfy');
    // The key's signing secret, shown on request, is the one the API gives; it is gone once the dialog closes.
    assert.equal(await page.isVisible('#webhook-secret-value'), false);
    await page.click('#show-webhook-secret');
    await page.waitForSelector('#webhook-secret-value:visible');
    const signing = (await send(gateway.url, `/api/keys/${keyId}/webhook-secret`, { key: admin.api_key })).json<{ webhook_secret: string }>().webhook_secret;
    assert.equal(await page.textContent('#webhook-secret-value'), signing);
    await page.locator('#key-dialog').screenshot({ path: await screenshotPath('dashboard-webhook-secret') });
    await page.click('#key-dialog [data-close]');
    await page.waitForFunction((shown) => !document.body.innerHTML.includes(shown), signing);
    await row.locator('[data-action=edit]').click();
    assert.equal(await page.isVisible('#webhook-secret-value'), false, 'hidden again when the dialog opens again');
    await page.fill(input, 'ftp://hooks.example.com/comfy');
    await page.click('#key-submit');
    await page.waitForFunction(() => /INVALID_REQUEST/.test(document.querySelector('#key-dialog .dialog-error')?.textContent ?? ''));
    assert.match((await page.textContent('#key-dialog .dialog-error')) ?? '', /webhook_url/);
    assert.equal(await webhookOf(), 'https://hooks.example.com/comfy', 'nothing changed');
    await page.fill(input, '');
    await page.click('#key-submit');
    await page.waitForSelector('#key-dialog', { state: 'hidden' });
    await row.locator('.note.webhook').waitFor({ state: 'detached' });
    assert.equal(await webhookOf(), null);
    assert.deepEqual(
      errors.filter((error) => !/status of 400/.test(error)),
      [],
    );
    await context.close();
  });
});
