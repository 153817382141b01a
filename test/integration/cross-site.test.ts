// Requests that a page of another site starts, Host names the gateway does not answer to, and who counts as local, in every mode.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { openCollectingSocket } from '../helpers/comfy-client.js';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send, type TestResponse } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

const PROMPT = { prompt: { '9': { class_type: 'SaveImage', inputs: {} } } };

function assertRefused(res: TestResponse, status: number, code: string, message?: RegExp): void {
  assert.equal(res.status, status, res.text);
  assert.equal(res.json().error_code, code);
  if (message) assert.match(String(res.json().error), message);
}

/** Asserts a WebSocket upgrade with these headers is refused with `status`. */
async function assertSocketRefused(gateway: GatewayProcess, headers: Record<string, string>, status: number): Promise<void> {
  await assert.rejects(openCollectingSocket(`ws://127.0.0.1:${gateway.port}/ws?clientId=x`, headers), { status });
}

for (const [mode, args] of [
  ['no flag', []],
  ['--enable-api-auth', ['--enable-api-auth']],
  ['--require-api-auth', ['--require-api-auth']],
] as const) {
  describe(`cross-site requests without a key, ${mode}`, () => {
    let comfy: FakeComfyUI;
    let gateway: GatewayProcess;
    let admin: string;

    before(async () => {
      comfy = await startFakeComfyUI();
      gateway = await startGateway({ upstream: comfy.url, args: [...args] });
      admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
      comfy.requests.length = 0;
    });
    after(async () => {
      await gateway?.stop();
      await comfy?.close();
    });

    test('another Origin, Origin null, or Sec-Fetch-Site of another site gets 403 on every method, and nothing is forwarded', async () => {
      const attempts: Array<[string, string, Record<string, string>]> = [
        ['POST', '/api/prompt', { origin: 'http://evil.example' }],
        ['POST', '/prompt', { origin: `http://127.0.0.1:${gateway.port + 1}` }],
        ['POST', '/api/prompt', { origin: `http://localhost:${gateway.port}` }],
        ['POST', '/api/prompt', { origin: 'null' }],
        ['GET', '/api/queue', { origin: 'null' }],
        ['GET', '/api/queue', { origin: 'http://evil.example' }],
        ['OPTIONS', '/api/prompt', { origin: 'http://evil.example', 'access-control-request-method': 'POST' }],
        ['GET', '/api/queue', { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }],
        ['GET', '/api/manager/reboot', { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }],
        ['POST', '/', { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }],
        ['GET', '/api/queue', { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image' }],
        ['POST', '/api/prompt', { 'sec-fetch-site': 'cross-site' }],
        ['GET', '/api/queue', { 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image' }],
        ['GET', '/', { 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe' }],
        ['DELETE', '/api/keys/abc', { origin: 'http://evil.example' }],
        ['GET', '/healthz', { 'sec-fetch-site': 'cross-site' }],
      ];
      for (const [method, target, headers] of attempts) {
        const res = await send(gateway.url, target, { method, headers, ...(method === 'POST' ? { body: PROMPT } : {}) });
        assertRefused(res, 403, 'FORBIDDEN', /another site/);
      }
      assert.deepEqual(comfy.requests, [], 'ComfyUI received nothing');
    });

    test('a page of another site cannot create an admin key, even as a text/plain form whose body is JSON', async () => {
      const body = '{"name":"evil","role":"admin","x":"="}';
      for (const origin of ['http://evil.example', 'null']) {
        const res = await send(gateway.url, '/api/keys', { method: 'POST', headers: { origin, 'content-type': 'text/plain' }, body });
        assertRefused(res, 403, 'FORBIDDEN');
      }
      const listed = await send(gateway.url, '/api/keys', { key: admin });
      assert.deepEqual(
        listed.json<{ keys: Array<{ name: string }> }>().keys.map((k) => k.name),
        ['admin'],
      );
    });

    test('a WebSocket from another site is refused before anything is opened upstream', async () => {
      await assertSocketRefused(gateway, { origin: 'http://evil.example' }, 403);
      await assertSocketRefused(gateway, { origin: 'null' }, 403);
      await assertSocketRefused(gateway, { origin: gateway.url, 'sec-fetch-site': 'cross-site' }, 403);
      assert.deepEqual(comfy.requests, []);
    });

    test('a link from another site opens the landing pages', async () => {
      const link = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', accept: 'text/html' };
      const home = await send(gateway.url, '/', { headers: link });
      assert.equal(home.status, mode === '--require-api-auth' ? 302 : 200, home.text);
      assert.equal((await send(gateway.url, '/login', { headers: link })).status, 200);
    });

    test('requests with a key header are not checked; same-origin pages and page loads from a sibling site are', async () => {
      const keyed = await send(gateway.url, '/api/queue', { key: admin, headers: { origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' } });
      assert.equal(keyed.status, 200);
      const navigation = await send(gateway.url, '/', {
        headers: { 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', accept: 'text/html' },
      });
      assert.equal(navigation.status, mode === '--require-api-auth' ? 302 : 200);
      const sameOrigin = await send(gateway.url, '/api/prompt', {
        method: 'POST',
        headers: { origin: gateway.url, 'sec-fetch-site': 'same-origin' },
        body: PROMPT,
      });
      assert.equal(sameOrigin.status, mode === '--require-api-auth' ? 401 : 200, sameOrigin.text);
    });
  });
}

describe('key management without a key counts only from this machine, directly', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--enable-api-auth', '--allowed-host', 'comfy.example'] });
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  const keyNames = async (): Promise<string[]> => (await send(gateway.url, '/api/keys')).json<{ keys: Array<{ name: string }> }>().keys.map((k) => k.name);

  test('any proxy header makes a loopback request non-local', async () => {
    const proxyHeaders = [
      'x-forwarded-for',
      'x-forwarded-host',
      'x-forwarded-proto',
      'x-forwarded-port',
      'x-forwarded-server',
      'forwarded',
      'x-real-ip',
      'via',
      'true-client-ip',
      'x-client-ip',
      'cf-connecting-ip',
      'x-forwarded',
      'x-originating-ip',
      'x-envoy-external-address',
    ];
    for (const header of proxyHeaders) {
      const value = header === 'forwarded' ? 'for=203.0.113.9' : header === 'via' ? '1.1 proxy' : header === 'x-forwarded-proto' ? 'http' : '127.0.0.1';
      assertRefused(await send(gateway.url, '/api/keys', { headers: { [header]: value } }), 401, 'AUTH_REQUIRED', new RegExp(header));
      assertRefused(
        await send(gateway.url, '/api/keys', { method: 'POST', headers: { [header]: value }, body: { name: `via ${header}`, role: 'admin' } }),
        401,
        'AUTH_REQUIRED',
      );
    }
    assert.deepEqual(await keyNames(), []);
  });

  test('the Host must be a loopback name with the gateway’s port', async () => {
    for (const host of [
      'comfy.example',
      `comfy.example:${gateway.port}`,
      `192.0.2.1:${gateway.port}`,
      `localhost:${gateway.port + 1}`,
      'localhost',
      '127.0.0.1',
    ]) {
      assertRefused(
        await send(gateway.url, '/api/keys', { method: 'POST', headers: { host }, body: { name: host, role: 'admin' } }),
        401,
        'AUTH_REQUIRED',
        /not local/,
      );
    }
    assert.deepEqual(await keyNames(), []);
    for (const host of [`localhost:${gateway.port}`, `127.0.0.7:${gateway.port}`, `[::1]:${gateway.port}`]) {
      assert.equal((await send(gateway.url, '/api/keys', { method: 'POST', headers: { host }, body: { name: host } })).status, 200);
    }
  });

  test('a page on loopback may not manage without a key, of its own origin or another; an address typed in the browser may', async () => {
    const own = `http://127.0.0.1:${gateway.port}`;
    for (const headers of [
      { origin: own, 'sec-fetch-site': 'same-origin' },
      { origin: own },
      { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' },
    ]) {
      assertRefused(await send(gateway.url, '/api/keys', { headers }), 401, 'AUTH_REQUIRED', /sent by a web page/);
      assertRefused(
        await send(gateway.url, '/api/keys', { method: 'POST', headers, body: { name: 'from a page' } }),
        401,
        'AUTH_REQUIRED',
        /sent by a web page/,
      );
    }
    assertRefused(await send(gateway.url, '/api/keys', { headers: { origin: `http://localhost:${gateway.port}` } }), 403, 'FORBIDDEN');
    assert.equal((await send(gateway.url, '/api/keys', { headers: { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate' } })).status, 200);
    assert.ok(!(await keyNames()).includes('from a page'));
  });
});

describe('--no-local-admin', () => {
  let comfy: FakeComfyUI;

  before(async () => {
    comfy = await startFakeComfyUI();
  });
  after(() => comfy?.close());

  for (const [mode, args] of [
    ['--enable-api-auth', ['--enable-api-auth', '--no-local-admin']],
    ['no flag (env)', []],
  ] as const) {
    test(`turns off management without a key, ${mode}`, async () => {
      const gateway = await startGateway({ upstream: comfy.url, args: [...args], env: args.length === 0 ? { COMFY_GATE_NO_LOCAL_ADMIN: '1' } : {} });
      try {
        assertRefused(await send(gateway.url, '/api/keys'), 401, 'AUTH_REQUIRED', /--no-local-admin/);
        assertRefused(await send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'x', role: 'admin' } }), 401, 'AUTH_REQUIRED');
      } finally {
        await gateway?.stop();
      }
    });
  }

  test('in required mode it also turns off the first-key bootstrap', async () => {
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth', '--no-local-admin'] });
    try {
      assertRefused(await send(gateway.url, '/api/keys', { method: 'POST', body: { name: 'first' } }), 401, 'AUTH_REQUIRED', /--no-local-admin/);
    } finally {
      await gateway?.stop();
    }
  });

  test('the required-mode bootstrap needs a local request, and still works from one', async () => {
    const gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    try {
      assertRefused(
        await send(gateway.url, '/api/keys', { method: 'POST', headers: { 'x-real-ip': '203.0.113.9' }, body: { name: 'first' } }),
        401,
        'AUTH_REQUIRED',
        /x-real-ip/,
      );
      assertRefused(
        await send(gateway.url, '/api/keys', { method: 'POST', headers: { host: `192.0.2.1:${gateway.port}` }, body: { name: 'first' } }),
        401,
        'AUTH_REQUIRED',
      );
      const first = await send(gateway.url, '/api/keys', { method: 'POST', headers: { host: `localhost:${gateway.port}` }, body: { name: 'first' } });
      assert.equal(first.status, 200, first.text);
      assert.equal(first.json().role, 'admin');
    } finally {
      await gateway?.stop();
    }
  });
});

describe('--allowed-host', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let defaults: GatewayProcess;
  let admin: string;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({
      upstream: comfy.url,
      args: ['--enable-api-auth', '--allowed-host', 'comfy.example', '--trusted-proxy', '10.9.9.9'],
      env: { COMFY_GATE_ALLOWED_HOSTS: 'ignored.example' },
    });
    defaults = await startGateway({ upstream: comfy.url, env: { COMFY_GATE_ALLOWED_HOSTS: 'comfy.example, .corp.example' } });
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin' })).api_key;
    comfy.requests.length = 0;
  });
  after(async () => {
    await gateway?.stop();
    await defaults?.stop();
    await comfy?.close();
  });

  test('another Host name gets 421 HOST_NOT_ALLOWED on every route, with or without a key, and nothing is forwarded', async () => {
    const targets: Array<[string, string]> = [
      ['GET', '/healthz'],
      ['GET', '/readyz'],
      ['GET', '/metrics'],
      ['GET', '/api/gateway/openapi.json'],
      ['GET', '/login'],
      ['POST', '/logout'],
      ['GET', '/admin'],
      ['GET', '/api/keys'],
      ['POST', '/api/keys'],
      ['GET', '/api/usage'],
      ['GET', '/'],
      ['POST', '/api/prompt'],
      ['GET', '/api/queue'],
    ];
    for (const host of ['evil.example', `evil.example:${gateway.port}`, 'ignored.example', 'comfy.example.evil.example', 'not a host']) {
      for (const [method, target] of targets) {
        assertRefused(await send(gateway.url, target, { method, headers: { host } }), 421, 'HOST_NOT_ALLOWED', /--allowed-host/);
        assertRefused(await send(gateway.url, target, { method, headers: { host }, key: admin }), 421, 'HOST_NOT_ALLOWED');
      }
    }
    assert.deepEqual(comfy.requests, []);
  });

  test('a WebSocket to another Host name gets 421', async () => {
    await assertSocketRefused(gateway, { host: 'evil.example' }, 421);
    await assertSocketRefused(gateway, { host: 'evil.example', 'x-api-key': admin }, 421);
    assert.deepEqual(comfy.requests, []);
  });

  test('IP addresses, localhost and the allowed names are answered', async () => {
    for (const host of ['comfy.example', `COMFY.example:${gateway.port}`, '192.0.2.1', '[2001:db8::1]:80', 'localhost', 'app.localhost']) {
      assert.equal((await send(gateway.url, '/healthz', { headers: { host } })).status, 200, host);
    }
    assert.equal((await send(gateway.url, '/api/queue', { headers: { host: 'comfy.example' }, key: admin })).status, 200);
  });

  test('without the flag, names other than localhost are refused; the env list and its subdomain form work', async () => {
    for (const host of ['comfy.example', 'corp.example', 'a.corp.example', 'b.a.corp.example'])
      assert.equal((await send(defaults.url, '/healthz', { headers: { host } })).status, 200, host);
    for (const host of ['evil.example', 'xcorp.example', 'comfy.example.evil'])
      assertRefused(await send(defaults.url, '/healthz', { headers: { host } }), 421, 'HOST_NOT_ALLOWED');
  });
});

describe('--allowed-host behind a --trusted-proxy', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--allowed-host', 'comfy.example', '--trusted-proxy', '127.0.0.1'] });
    comfy.requests.length = 0;
  });
  after(async () => {
    await gateway?.stop();
    await comfy?.close();
  });

  // A proxy passes on the headers it does not set: nginx an X-Forwarded-Host the client sent, Apache appends its own to it.
  test('a rebinding page that adds X-Forwarded-Host naming the site is refused: every name the request gives must be allowed', async () => {
    const rebound: Array<Record<string, string>> = [
      { host: 'evil.example', 'x-forwarded-host': 'comfy.example' },
      { host: '127.0.0.1', 'x-forwarded-host': 'comfy.example, evil.example' },
      { host: 'comfy.example', 'x-forwarded-host': 'evil.example' },
    ];
    for (const headers of rebound) {
      assertRefused(await send(gateway.url, '/api/queue', { headers }), 421, 'HOST_NOT_ALLOWED', /evil\.example/);
      await assertSocketRefused(gateway, headers, 421);
    }
    assert.deepEqual(comfy.requests, []);
  });

  test('the names a proxy passes on are answered when each is allowed', async () => {
    for (const headers of [
      { host: 'comfy.example' },
      { host: '127.0.0.1', 'x-forwarded-host': 'comfy.example' },
      { host: 'comfy.example', 'x-forwarded-host': 'comfy.example' },
    ]) {
      assert.equal((await send(gateway.url, '/api/queue', { headers })).status, 200, JSON.stringify(headers));
    }
  });
});

describe('security headers', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let framed: GatewayProcess;
  let withCsp: GatewayProcess;
  let cspUpstream: Server;
  let admin: string;
  let user: string;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    framed = await startGateway({ upstream: comfy.url, args: ['--frame-ancestors', 'https://portal.example', '--frame-ancestors', 'http://127.0.0.1:3000'] });
    cspUpstream = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'self'", 'x-frame-options': 'SAMEORIGIN' });
      res.end('<!doctype html><title>ComfyUI</title>');
    });
    await new Promise<void>((resolve) => cspUpstream.listen(0, '127.0.0.1', resolve));
    withCsp = await startGateway({ upstream: `http://127.0.0.1:${(cspUpstream.address() as AddressInfo).port}` });
    admin = (await createKey(gateway.url, { name: 'admin' })).api_key;
    user = (await createKey(gateway.url, { name: 'user' }, admin)).api_key;
  });
  after(async () => {
    await gateway?.stop();
    await framed?.stop();
    await withCsp?.stop();
    cspUpstream?.close();
    await comfy?.close();
  });

  const cookieOf = async (key: string): Promise<string> =>
    String((await send(gateway.url, '/login', { method: 'POST', body: { api_key: key } })).headers['set-cookie']).split(';')[0]!;

  function assertPageHeaders(res: TestResponse, what: string): void {
    assert.equal(res.headers['x-content-type-options'], 'nosniff', what);
    assert.equal(res.headers['x-frame-options'], 'DENY', what);
    assert.equal(res.headers['referrer-policy'], 'same-origin', what);
    assert.match(String(res.headers['content-security-policy']), /frame-ancestors 'none'/, what);
  }

  test("the gateway's own pages carry nosniff, no framing and a Referrer-Policy", async () => {
    assertPageHeaders(await send(gateway.url, '/login'), '/login');
    const failed = await send(gateway.url, '/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'api_key=nope',
    });
    assert.equal(failed.status, 401);
    assertPageHeaders(failed, 'failed sign-in page');
    const adminCookie = await cookieOf(admin);
    for (const path of ['/admin', '/admin/dashboard.js', '/admin/dashboard.css'])
      assertPageHeaders(await send(gateway.url, path, { headers: { cookie: adminCookie } }), path);
    const notAdmin = await send(gateway.url, '/admin', { headers: { cookie: await cookieOf(user) } });
    assert.equal(notAdmin.status, 403);
    assertPageHeaders(notAdmin, 'not-an-admin page');
  });

  test('JSON answers carry nosniff', async () => {
    const answers = [
      await send(gateway.url, '/api/queue'),
      await send(gateway.url, '/healthz'),
      await send(gateway.url, '/api/keys', { key: admin }),
      await send(gateway.url, '/api/usage/all', { key: admin }),
    ];
    for (const res of answers) {
      assert.match(String(res.headers['content-type']), /application\/json/);
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
    }
  });

  test("ComfyUI's HTML pages get frame protection; its JSON is left alone", async () => {
    const page = await send(gateway.url, '/', { key: user });
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.equal(page.headers['x-frame-options'], 'DENY');
    assert.equal(page.headers['content-security-policy'], "frame-ancestors 'none'");
    const json = await send(gateway.url, '/api/queue', { key: user });
    assert.equal(json.headers['x-frame-options'], undefined);
    assert.equal(json.headers['content-security-policy'], undefined);
  });

  test('--frame-ancestors names the origins that may frame, without X-Frame-Options: DENY', async () => {
    const page = await send(framed.url, '/');
    assert.equal(page.headers['content-security-policy'], 'frame-ancestors https://portal.example http://127.0.0.1:3000');
    assert.equal(page.headers['x-frame-options'], undefined);
  });

  test("ComfyUI's own Content-Security-Policy is kept, and frame-ancestors is added as a policy of its own", async () => {
    const page = await send(withCsp.url, '/');
    assert.equal(page.headers['content-security-policy'], "default-src 'self', frame-ancestors 'none'");
    assert.equal(page.headers['x-frame-options'], 'DENY');
  });
});
