// Attempts to get around authentication, isolation and the sign-in checks, each with the exact denial it must get.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { rawStatus, send, type TestRequest } from '../helpers/http-client.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';
import { startTwoKeyStage, type TwoKeyStage } from '../helpers/two-keys.js';

/** Signs in with a key over JSON and returns the Cookie header value. */
async function signIn(gatewayUrl: string, apiKey: string): Promise<string> {
  const res = await send(gatewayUrl, '/login', { method: 'POST', body: { api_key: apiKey } });
  assert.equal(res.status, 200, res.text);
  const setCookie = String(res.headers['set-cookie']);
  return setCookie.split(';')[0]!;
}

describe('bypass attempts', () => {
  let stage: TwoKeyStage;
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let admin: string;
  let alice: CreatedKey;
  let bob: CreatedKey;
  let bobPrompt: string;
  let bobImage: string;

  before(async () => {
    stage = await startTwoKeyStage();
    ({ comfy, gateway, admin, alice, bob, bobPrompt, bobImage } = stage);
  });
  after(() => stage.close());

  const adminOnly: Array<[string, string]> = [
    ['GET', '/internal/logs'],
    ['GET', '/api/internal/logs'],
    ['GET', '/%69nternal/logs'],
    ['GET', '//internal/logs'],
    ['GET', '/api//internal/logs'],
    ['GET', '/INTERNAL/logs'],
    ['GET', '/Internal/Logs'],
    ['GET', '/./internal/logs'],
    ['GET', '/x/../internal/logs'],
    ['GET', '/internal%2Flogs'],
    ['GET', '/api/%2e%2e/internal/logs'],
    ['GET', '/internal'],
    ['GET', '/internal/'],
    ['GET', '/internal/folder_paths'],
    ['GET', '/internal/files/output'],
    ['POST', '/free'],
    ['POST', '/api/free'],
    ['POST', '/%66ree'],
    ['POST', '//free'],
    ['POST', '/FREE'],
    ['POST', '/free/'],
  ];
  for (const [method, target] of adminOnly) {
    // A spelling that aiohttp could read another way is refused before any rule; every other spelling is a route user keys may not use.
    const [status, code] = /%|\/\/|\/\.\.?(\/|$)/.test(target) ? [400, 'INVALID_REQUEST'] : [403, 'ROUTE_NOT_ALLOWED'];
    test(`user key: ${method} ${target} → ${status} ${code}`, async () => {
      const before = comfy.requests.length;
      const res = await send(gateway.url, target, { method, key: alice.api_key, ...(method === 'POST' ? { body: {} } : {}) });
      assert.equal(res.status, status);
      assert.equal(res.json().error_code, code);
      assert.equal(
        comfy.requests.slice(before).some((r) => /internal|free/i.test(r.url)),
        false,
        'nothing reached ComfyUI',
      );
    });
  }

  const foreignHistory = (id: () => string): string[] => [
    `/api/history/${id()}`,
    `/history/${id()}`,
    `/%68istory/${id()}`,
    `//history/${id()}`,
    `/api//history/${id()}`,
    `/HISTORY/${id()}`,
    `/history/${id()}/`,
    `/api/history/./${id()}`,
  ];
  for (let i = 0; i < 8; i += 1) {
    test(`another key’s history entry, spelling ${i + 1}: nothing of it`, async () => {
      const target = foreignHistory(() => bobPrompt)[i]!;
      const res = await send(gateway.url, target, { key: alice.api_key });
      assert.equal(res.text.includes(bobPrompt), false, `${target} → ${res.status} ${res.text.slice(0, 80)}`);
    });
  }

  test('another key’s prompt in the history listing: absent', async () => {
    const res = await send(gateway.url, '/api/history?max_items=100', { key: alice.api_key });
    assert.equal(res.status, 200);
    assert.equal(res.text.includes(bobPrompt), false);
  });

  const foreignView = (name: () => string): Array<[string, string]> => [
    ['GET', `/view?filename=${name()}&type=output`],
    ['GET', `/view?filename=${encodeURIComponent(`${name()} [output]`)}`],
    ['GET', `/view?filename=${name()}&subfolder=.`],
    ['GET', `/view?filename=${name()}&subfolder=./`],
    ['GET', `/view?filename=${name()}&subfolder=a/..`],
    ['GET', `/view?filename=sub/${name()}`],
    ['HEAD', `/view?filename=${name()}`],
    ['GET', `/api/%76iew?filename=${name()}`],
    ['GET', `//view?filename=${name()}`],
    ['GET', `/view?filename=${name()}&preview=webp;90`],
  ];
  for (let i = 0; i < 10; i += 1) {
    test(`another key’s output via /view, spelling ${i + 1}: empty 404`, async () => {
      const [method, target] = foreignView(() => bobImage)[i]!;
      const res = await send(gateway.url, target, { method, key: alice.api_key });
      if (/%76|\/\/|\.\./.test(target)) {
        assert.equal(res.status, 400, target);
        assert.equal(res.json().error_code, 'INVALID_REQUEST');
        return;
      }
      assert.equal(res.status, 404, target);
      assert.equal(res.text, '');
    });
  }

  const credentialTricks: Array<[string, () => TestRequest, number, string]> = [
    ['no credential', () => ({}), 401, 'AUTH_REQUIRED'],
    [
      'Authorization: Basic with the key',
      () => ({ headers: { authorization: `Basic ${Buffer.from(`user:${alice.api_key}`).toString('base64')}` } }),
      401,
      'AUTH_REQUIRED',
    ],
    ['Authorization: Bearer without a token', () => ({ headers: { authorization: 'Bearer' } }), 401, 'INVALID_KEY'],
    ['Bearer and X-API-Key that differ', () => ({ key: alice.api_key, headers: { authorization: `Bearer ${bob.api_key}` } }), 401, 'INVALID_KEY'],
    ['the header twice', () => ({ headers: { 'x-api-key': [alice.api_key, alice.api_key] } }), 401, 'INVALID_KEY'],
    ['two keys in one header', () => ({ headers: { 'x-api-key': `${alice.api_key}, ${bob.api_key}` } }), 401, 'INVALID_KEY'],
    ['whitespace inside the key', () => ({ key: `${alice.api_key.slice(0, 10)} ${alice.api_key.slice(10)}` }), 401, 'INVALID_KEY'],
    ['an overlong key', () => ({ key: `${alice.api_key}${'A'.repeat(10_000)}` }), 401, 'INVALID_KEY'],
    ['one character short', () => ({ key: alice.api_key.slice(0, -1) }), 401, 'INVALID_KEY'],
    ['upper-cased', () => ({ key: alice.api_key.toUpperCase() }), 401, 'INVALID_KEY'],
    ['the hash instead of the key', () => ({ key: 'a'.repeat(64) }), 401, 'INVALID_KEY'],
    ['an empty header', () => ({ headers: { 'x-api-key': '' } }), 401, 'INVALID_KEY'],
    ['the key in the query string', () => ({}), 401, 'AUTH_REQUIRED'],
    ['the key as a cookie', () => ({ headers: { cookie: `comfy_gate_session=${alice.api_key}` } }), 401, 'AUTH_REQUIRED'],
    ['a forged session id', () => ({ headers: { cookie: 'comfy_gate_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } }), 401, 'AUTH_REQUIRED'],
  ];
  for (const [what, options, status, code] of credentialTricks) {
    test(`credential trick: ${what} → ${status} ${code}`, async () => {
      const target = what.includes('query') ? `/api/queue?api_key=${alice.api_key}&X-API-Key=${alice.api_key}` : '/api/queue';
      const res = await send(gateway.url, target, options());
      assert.equal(res.status, status);
      assert.equal(res.json().error_code, code);
    });
  }

  test('Authorization twice, its name spelt in two cases, is refused even with the same valid key', async () => {
    const bearer = `Bearer ${alice.api_key}`;
    const twice = `GET /api/queue HTTP/1.1\r\nHost: 127.0.0.1:${gateway.port}\r\nAuthorization: ${bearer}\r\nAUTHORIZATION: ${bearer}\r\n\r\n`;
    assert.equal(await rawStatus(gateway.port, twice), 401);
    assert.equal(await rawStatus(gateway.port, twice.replace('AUTHORIZATION: ', 'X-Other: ')), 200, 'the same request with one Authorization is served');
  });

  test('a key with a NUL byte is refused by the HTTP parser', async () => {
    assert.equal(
      await rawStatus(gateway.port, `GET /api/queue HTTP/1.1\r\nHost: x\r\nX-API-Key: ${alice.api_key.slice(0, 8)}\0${alice.api_key.slice(8)}\r\n\r\n`),
      400,
    );
  });

  test('a disabled key, and a deleted key', async () => {
    const victim = await createKey(gateway.url, { name: 'victim' }, admin);
    await send(gateway.url, `/api/keys/${victim.key_id}`, { method: 'PATCH', key: admin, body: { is_active: false } });
    assert.equal((await send(gateway.url, '/api/queue', { key: victim.api_key })).json().error_code, 'KEY_DISABLED');
    await send(gateway.url, `/api/keys/${victim.key_id}`, { method: 'DELETE', key: admin });
    assert.equal((await send(gateway.url, '/api/queue', { key: victim.api_key })).json().error_code, 'INVALID_KEY');
  });

  test('WebSocket: a foreign clientId, no key, and a cookie from another site', async () => {
    const bobSocket = await openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws?clientId=bobs-tab`, { 'x-api-key': bob.api_key });
    await assert.rejects(openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws?clientId=bobs-tab`, { 'x-api-key': alice.api_key }), { status: 403 });
    await assert.rejects(openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws`, {}), { status: 401 });
    const cookie = await signIn(gateway.url, alice.api_key);
    await assert.rejects(openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws`, { cookie, origin: 'http://evil.example' }), { status: 403 });
    await assert.rejects(openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws`, { cookie }), { status: 403 });
    const own = await openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws`, { cookie, origin: gateway.url });
    await own.close();
    await bobSocket.close();
  });

  test('cookie-authenticated writes need this site’s Origin', async () => {
    const cookie = await signIn(gateway.url, alice.api_key);
    const body = { prompt: { '9': { class_type: 'SaveImage', inputs: {} } } };
    const noOrigin = await send(gateway.url, '/api/prompt', { method: 'POST', headers: { cookie }, body });
    assert.equal(noOrigin.status, 403);
    assert.equal(noOrigin.json().error_code, 'FORBIDDEN');
    const evil = await send(gateway.url, '/api/prompt', { method: 'POST', headers: { cookie, origin: 'http://evil.example' }, body });
    assert.equal(evil.status, 403);
    const evilReferer = await send(gateway.url, '/api/prompt', { method: 'POST', headers: { cookie, referer: 'http://evil.example/page' }, body });
    assert.equal(evilReferer.status, 403);
    const sameHostOtherPort = await send(gateway.url, '/api/prompt', { method: 'POST', headers: { cookie, origin: 'http://127.0.0.1:1' }, body });
    assert.equal(sameHostOtherPort.status, 403);
    const ok = await send(gateway.url, '/api/prompt', { method: 'POST', headers: { cookie, origin: gateway.url }, body });
    assert.equal(ok.status, 200, ok.text);
    assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie } })).status, 200, 'reads need no Origin');
  });

  test('a session dies with its key: disabled, then deleted; and at sign-out', async () => {
    const victim = await createKey(gateway.url, { name: 'session victim' }, admin);
    const cookie = await signIn(gateway.url, victim.api_key);
    assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie } })).status, 200);
    await send(gateway.url, `/api/keys/${victim.key_id}`, { method: 'PATCH', key: admin, body: { is_active: false } });
    assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie } })).status, 401);
    await send(gateway.url, `/api/keys/${victim.key_id}`, { method: 'PATCH', key: admin, body: { is_active: true } });
    assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie } })).status, 401, 'enabling the key again does not bring the session back');
    const again = await signIn(gateway.url, victim.api_key);
    await send(gateway.url, `/api/keys/${victim.key_id}`, { method: 'DELETE', key: admin });
    assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie: again } })).status, 401);

    const aliceCookie = await signIn(gateway.url, alice.api_key);
    const out = await send(gateway.url, '/logout', { method: 'POST', headers: { cookie: aliceCookie, origin: gateway.url } });
    assert.equal(out.status, 200);
    assert.match(String(out.headers['set-cookie']), /Max-Age=0/);
    assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie: aliceCookie } })).status, 401);
  });

  test('sign-in redirects: only same-site relative next targets', async () => {
    for (const [next, expected] of [
      ['/queue?x=1', '/queue?x=1'],
      ['//evil.example/x', '/'],
      ['https://evil.example/', '/'],
      ['/\\evil.example', '/'],
      ['javascript:alert(1)', '/'],
    ]) {
      const res = await send(gateway.url, '/login', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ api_key: alice.api_key, next: next! }).toString(),
      });
      assert.equal(res.status, 303);
      assert.equal(res.headers.location, expected, next);
    }
  });

  test('sign-in redirects to a next target beyond Latin-1 (or with DEL) percent-encoded as UTF-8, with a session that works', async () => {
    for (const next of ['/Ā', '/view?filename=画像.png&type=output', '/😀#top', '/café', '/a\u007fb']) {
      const page = await send(gateway.url, `/login?next=${encodeURIComponent(next)}`, { headers: { accept: 'text/html' } });
      assert.equal(page.status, 200, `${next}: the sign-in page`);
      const carried = /name="next" value="([^"]*)"/.exec(page.text)![1]!.replaceAll('&amp;', '&'); // no other character here is escaped
      const res = await send(gateway.url, '/login', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ api_key: alice.api_key, next: carried }).toString(),
      });
      assert.equal(res.status, 303, `${next}: ${res.text}`);
      const location = String(res.headers.location);
      assert.match(location, /^\/[\x21-\x7e]*$/, `${next}: the Location is ASCII`);
      assert.equal(decodeURIComponent(location), next);
      const cookie = String(res.headers['set-cookie']).split(';')[0]!;
      assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie } })).status, 200, `${next}: the session works`);
    }
  });
});

describe('session expiry and failed-authentication blocking', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let key: string;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--session-ttl', '1', '--trusted-proxy', '127.0.0.1'] });
    key = (await createKey(gateway.url, { name: 'admin' })).api_key;
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test('an expired session is refused', async () => {
    const cookie = await signIn(gateway.url, key);
    assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie } })).status, 200);
    await sleep(1200);
    assert.equal((await send(gateway.url, '/api/queue', { headers: { cookie } })).status, 401);
  });

  test('past 20 failures in a minute an address gets 429 (valid keys too), other addresses do not; no key in the logs', async () => {
    const attacker = { 'x-forwarded-for': '198.51.100.7' };
    for (let i = 0; i < 20; i += 1)
      assert.equal((await send(gateway.url, '/api/queue', { key: `comfy_${String(i).padStart(43, 'x')}`, headers: attacker })).status, 401);
    const guess = `comfy_${'y'.repeat(43)}`;
    assert.equal((await send(gateway.url, '/api/queue', { key: guess, headers: attacker })).status, 401);
    const blocked = await send(gateway.url, '/api/queue', { key, headers: attacker });
    assert.equal(blocked.status, 429);
    assert.equal(blocked.json().error_code, 'TOO_MANY_AUTH_FAILURES');
    assert.ok(Number(blocked.headers['retry-after']) > 290);
    const loginBlocked = await send(gateway.url, '/login', { method: 'POST', headers: attacker, body: { api_key: key } });
    assert.equal(loginBlocked.status, 429);
    assert.equal((await send(gateway.url, '/api/queue', { key, headers: { 'x-forwarded-for': '198.51.100.8' } })).status, 200);
    // The log is written asynchronously: wait for the line rather than race it.
    for (let i = 0; i < 100 && !gateway.output().stdout.includes('auth_failures_blocked'); i += 1) await sleep(50);
    const logs = gateway.output().stdout + gateway.output().stderr;
    assert.match(logs, /auth_failures_blocked/);
    assert.match(logs, /198\.51\.100\.7/);
    assert.equal(logs.includes(guess), false);
    assert.equal(logs.includes(key), false);
  });

  /** Sends 21 bad keys, each from the next of `addresses` (as the trusted proxy names them), then the valid key from `then`. */
  async function failThenTry(addresses: (i: number) => string, then: string): Promise<number> {
    for (let i = 0; i < 21; i += 1) {
      const res = await send(gateway.url, '/api/queue', { key: `comfy_${String(i).padStart(43, 'z')}`, headers: { 'x-forwarded-for': addresses(i) } });
      assert.equal(res.status, 401, addresses(i));
    }
    return (await send(gateway.url, '/api/queue', { key, headers: { 'x-forwarded-for': then } })).status;
  }

  test('the addresses of one IPv6 /64 network count as one address; another network does not', async () => {
    assert.equal(await failThenTry((i) => `2001:db8:1:2::${(i + 1).toString(16)}`, '2001:db8:1:2:ffff:ffff:ffff:ffff'), 429);
    assert.equal((await send(gateway.url, '/api/queue', { key, headers: { 'x-forwarded-for': '2001:0db8:0001:0002:0:0:0:abcd' } })).status, 429);
    assert.equal((await send(gateway.url, '/api/queue', { key, headers: { 'x-forwarded-for': '2001:db8:1:3::1' } })).status, 200);
  });

  test('X-Forwarded-For names the client only from the trusted proxy, by its right-most entries: a client cannot write its way out of a block', async () => {
    // The proxy appends the address it saw: the entries the client wrote before it name nobody.
    assert.equal(await failThenTry((i) => `203.0.113.${i + 1}, 198.51.100.40`, '192.0.2.77, 198.51.100.40'), 429);
    // Another loopback address is no trusted proxy: its own X-Forwarded-For names nobody either.
    const direct = { localAddress: '127.0.0.2' };
    for (let i = 0; i < 21; i += 1) {
      const res = await send(gateway.url, '/api/queue', {
        ...direct,
        key: `comfy_${String(i).padStart(43, 'w')}`,
        headers: { 'x-forwarded-for': `203.0.113.${100 + i}` },
      });
      assert.equal(res.status, 401);
    }
    const blocked = await send(gateway.url, '/api/queue', { ...direct, key, headers: { 'x-forwarded-for': '203.0.113.250' } });
    assert.equal(blocked.status, 429);
    assert.equal(blocked.json().error_code, 'TOO_MANY_AUTH_FAILURES');
    assert.equal(
      (await send(gateway.url, '/api/queue', { key, headers: { 'x-forwarded-for': '203.0.113.250' } })).status,
      200,
      'the address it wrote is not blocked',
    );
  });

  test('a client named with its port, or an IPv4 address written as IPv6, is one address', async () => {
    assert.equal(await failThenTry((i) => `198.51.100.20:${40000 + i}`, '198.51.100.20'), 429);
    assert.equal(await failThenTry((i) => (i % 2 === 0 ? `[::ffff:198.51.100.21]:${i + 1}` : '198.51.100.21'), '::ffff:c633:6415'), 429);
    assert.equal(await failThenTry((i) => `[2001:db8:9:9::${i + 1}]:443`, '2001:db8:9:9::abc'), 429);
    assert.equal((await send(gateway.url, '/api/queue', { key, headers: { 'x-forwarded-for': '198.51.100.22:40000' } })).status, 200);
  });
});
