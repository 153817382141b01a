// The session cookie cannot be shadowed: a request holding two is signed in as neither; over HTTPS it is `__Host-` prefixed; ComfyUI never sees it.

import assert from 'node:assert/strict';
import type { OutgoingHttpHeaders } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

/** What a TLS-terminating proxy (trusted by the gateway) adds to a request that came over HTTPS. */
const OVER_HTTPS = { 'x-forwarded-proto': 'https' };

/**
 * The client's request reached ComfyUI, each time with exactly `expected` as its Cookie header. The gateway's own
 * question whether ComfyUI runs with --multi-user (`GET /api/users`) goes without the client's headers.
 */
function assertForwardedCookies(requests: FakeComfyUI['requests'], expected: string): void {
  const forwarded = requests.filter((request) => !(request.method === 'GET' && request.url === '/api/users'));
  assert.ok(forwarded.length > 0, 'the request reached ComfyUI');
  for (const request of forwarded) assert.equal(request.headers.cookie, expected, `${request.method} ${request.url}`);
}

describe('session cookie shadowing', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let victimKey: string;
  let attackerKey: string;

  /** Signs in over JSON; resolves the Set-Cookie header and the `name=value` pair a browser would send back. */
  async function signIn(apiKey: string, headers: OutgoingHttpHeaders = {}): Promise<{ setCookie: string; pair: string }> {
    const res = await send(gateway.url, '/login', { method: 'POST', headers, body: { api_key: apiKey } });
    assert.equal(res.status, 200, res.text);
    const setCookie = String(res.headers['set-cookie']);
    return { setCookie, pair: setCookie.split(';')[0]! };
  }

  const queue = (cookie: string, headers: OutgoingHttpHeaders = {}): Promise<TestResponse> =>
    send(gateway.url, '/api/queue', { headers: { ...headers, cookie } });

  async function assertNotSignedIn(cookie: string, what: string, headers: OutgoingHttpHeaders = {}): Promise<void> {
    const res = await queue(cookie, headers);
    assert.equal(res.status, 401, `${what}: ${res.text}`);
    assert.equal(res.json().error_code, 'AUTH_REQUIRED', what);
  }

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--trusted-proxy', '127.0.0.1'] });
    const admin = (await createKey(gateway.url, { name: 'admin', rate_limit: 100_000 })).api_key;
    victimKey = (await createKey(gateway.url, { name: 'victim', rate_limit: 100_000 }, admin)).api_key;
    attackerKey = (await createKey(gateway.url, { name: 'attacker', rate_limit: 100_000 }, admin)).api_key;
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('one session cookie signs in, among other cookies, and ComfyUI sees only the others', async () => {
    const { setCookie, pair } = await signIn(victimKey);
    assert.match(setCookie, /^comfy_gate_session=[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+$/, 'over plain HTTP: the plain name, not Secure');
    const before = comfy.requests.length;
    assert.equal((await queue(`theme=dark; ${pair}; lang=en`)).status, 200);
    assertForwardedCookies(comfy.requests.slice(before), 'theme=dark; lang=en');
  });

  test('two session cookies, either first (a longer Path comes first from a browser): signed in as neither', async () => {
    const victim = (await signIn(victimKey)).pair;
    const attacker = (await signIn(attackerKey)).pair;
    for (const [cookie, order] of [
      [`${attacker}; ${victim}`, "the attacker's (Path=/api) first"],
      [`${victim}; ${attacker}`, "the victim's first"],
      [`${attacker}; theme=dark; ${victim}`, 'with another cookie between'],
    ] as const) {
      await assertNotSignedIn(cookie, order);
      const page = await send(gateway.url, '/', { headers: { cookie, accept: 'text/html' } });
      assert.equal(page.status, 302, `${order}: a page load goes to the sign-in page`);
      assert.match(String(page.headers.location), /^\/login\?next=/);
      const posted = comfy.requests.filter((r) => r.method === 'POST').length;
      const prompt = await send(gateway.url, '/api/prompt', { method: 'POST', headers: { cookie, origin: gateway.url }, body: { prompt: {} } });
      assert.equal(prompt.status, 401, `${order}: ${prompt.text}`);
      assert.equal(comfy.requests.filter((r) => r.method === 'POST').length, posted, `${order}: nothing reached ComfyUI`);
      await assert.rejects(openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws`, { cookie, origin: gateway.url }), { status: 401 }, order);
    }
    await assertNotSignedIn(`${victim}; ${victim}`, 'the same session twice');
    assert.equal((await queue(victim)).status, 200, "the victim's cookie alone still works");
    assert.equal((await queue(attacker)).status, 200, 'the other cookie alone still works: neither session was ended');
  });

  test('session fixation: a sign-in carrying a planted session cookie, chosen or the attacker’s own, gets a new id of its own', async () => {
    const keyNameOf = async (cookie: string): Promise<unknown> => {
      const res = await send(gateway.url, '/api/usage', { headers: { cookie } });
      return res.status === 200 ? res.json().key_name : res.status;
    };
    const attacker = (await signIn(attackerKey)).pair;
    const chosen = `comfy_gate_session=${'A'.repeat(43)}`;
    for (const [planted, plantedIs] of [
      [attacker, 'attacker'],
      [chosen, 401],
    ] as const) {
      const victim = await signIn(victimKey, { cookie: planted, origin: gateway.url });
      assert.notEqual(victim.pair, planted, 'the id the browser brought is not kept');
      assert.equal(await keyNameOf(victim.pair), 'victim', 'the new cookie is the victim’s');
      assert.equal(await keyNameOf(planted), plantedIs, 'the planted id gives the attacker nothing of the victim’s');
    }
  });

  test('signing out with two session cookies ends neither session, and clears the cookie', async () => {
    const victim = (await signIn(victimKey)).pair;
    const attacker = (await signIn(attackerKey)).pair;
    const out = await send(gateway.url, '/logout', { method: 'POST', headers: { cookie: `${attacker}; ${victim}`, origin: gateway.url } });
    assert.equal(out.status, 200, out.text);
    assert.match(String(out.headers['set-cookie']), /^comfy_gate_session=; Path=\/; .*Max-Age=0/);
    assert.equal((await queue(victim)).status, 200);
    assert.equal((await queue(attacker)).status, 200);
  });

  test('over HTTPS the cookie is __Host-comfy_gate_session (Secure, Path=/, no Domain), read back under that name only', async () => {
    const { setCookie, pair } = await signIn(victimKey, OVER_HTTPS);
    assert.match(setCookie, /^__Host-comfy_gate_session=[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+; Secure$/);
    assert.doesNotMatch(setCookie, /Domain=/i);
    const id = pair.slice(pair.indexOf('=') + 1);
    const before = comfy.requests.length;
    assert.equal((await queue(`${pair}; comfy_gate_session=${id}; theme=dark`, OVER_HTTPS)).status, 200);
    assertForwardedCookies(comfy.requests.slice(before), 'theme=dark');
    await assertNotSignedIn(`comfy_gate_session=${id}`, 'the plain name over HTTPS, which another subdomain could set', OVER_HTTPS);
    await assertNotSignedIn(pair, 'the __Host- name over plain HTTP');
    const other = (await signIn(attackerKey, OVER_HTTPS)).pair;
    await assertNotSignedIn(`${other}; ${pair}`, 'two __Host- cookies', OVER_HTTPS);

    const out = await send(gateway.url, '/logout', { method: 'POST', headers: { ...OVER_HTTPS, cookie: pair, origin: `https://127.0.0.1:${gateway.port}` } });
    assert.equal(out.status, 200, out.text);
    assert.match(String(out.headers['set-cookie']), /^__Host-comfy_gate_session=; Path=\/; HttpOnly; SameSite=Lax; Max-Age=0; Secure$/);
    await assertNotSignedIn(pair, 'after signing out', OVER_HTTPS);
  });
});
