// Host header parsing, the Host names the gateway answers to, and the cross-site decision for requests without a key.

import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, test } from 'node:test';
import { crossSiteRefusal } from '../../src/auth/cross-site.js';
import { HostPolicy, isLoopbackName, parseHost, socketHost } from '../../src/auth/host-names.js';

describe('parseHost', () => {
  test('names, addresses and ports', () => {
    assert.deepEqual(parseHost('Comfy.Example:8188'), { hostname: 'comfy.example', port: 8188 });
    assert.deepEqual(parseHost('[::1]:80'), { hostname: '::1', port: 80 });
    assert.deepEqual(parseHost('127.0.0.1'), { hostname: '127.0.0.1', port: null });
    for (const bad of ['', 'a b', 'user@host', 'host:99999', 'host:', '[evil.example]', 'a:1:2', 'host/path', undefined])
      assert.equal(parseHost(bad), null, String(bad));
  });

  test('loopback names', () => {
    for (const name of ['localhost', '127.0.0.1', '127.9.8.7', '::1']) assert.ok(isLoopbackName(name), name);
    for (const name of ['localhost.evil.example', '127.0.0.1.nip.io', '128.0.0.1', '0.0.0.0', '::']) assert.equal(isLoopbackName(name), false, name);
  });
});

describe('HostPolicy', () => {
  const policy = new HostPolicy(['comfy.example', '.corp.example']);
  test('answers IP addresses, localhost names and the allowed names', () => {
    for (const host of [
      '10.0.0.1:8188',
      '[2001:db8::1]',
      'localhost',
      'a.localhost:1',
      'COMFY.example',
      'comfy.example.',
      'corp.example',
      'x.y.corp.example',
      undefined,
    ])
      assert.ok(policy.allows(host), String(host));
  });
  test('refuses every other name', () => {
    for (const host of ['evil.example', 'comfy.example.evil.example', 'xcorp.example', 'localhost.evil.example', 'not a host'])
      assert.equal(policy.allows(host), false, host);
    assert.equal(new HostPolicy([]).allows('comfy.example'), false);
  });
});

describe('crossSiteRefusal', () => {
  const own = 'http://127.0.0.1:8188';
  const request = (headers: Record<string, string>, method: string): IncomingMessage => ({ headers, method }) as unknown as IncomingMessage;
  const refused = (headers: Record<string, string>, allowFraming = false, path = '/prompt', method = 'GET'): boolean =>
    crossSiteRefusal(request(headers, method), () => own, { allowFraming, path }) !== null;

  test('a page of this site, and a client that is no browser, pass', () => {
    assert.equal(refused({}), false);
    assert.equal(refused({ origin: own, 'sec-fetch-site': 'same-origin' }), false);
    assert.equal(refused({ origin: 'HTTP://127.0.0.1:8188' }), false);
    assert.equal(refused({ 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }), false);
    assert.equal(refused({ 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }), false);
  });

  test('another origin, Origin null and requests that other sites start are refused', () => {
    for (const origin of ['http://evil.example', 'null', 'http://127.0.0.1:8189', 'https://127.0.0.1:8188', 'http://localhost:8188'])
      assert.ok(refused({ origin }), origin);
    assert.ok(refused({ 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }));
    assert.ok(refused({ 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image' }));
    assert.ok(refused({ 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe' }));
  });

  test('with --frame-ancestors a frame may load from any site; nothing else changes', () => {
    assert.equal(refused({ 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe' }, true), false);
    assert.ok(refused({ 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image' }, true));
    assert.ok(refused({ origin: 'http://evil.example', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe' }, true));
  });

  test('a link from another site opens a landing page, and nothing else', () => {
    const link = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' };
    for (const path of ['/', '/login', '/admin']) assert.equal(refused(link, false, path), false, path);
    for (const path of ['/api/manager/reboot', '/view', '/logout', '/api/']) assert.ok(refused(link, false, path), path);
    assert.ok(refused(link, false, '/', 'POST'), 'a form posted from another site');
    assert.ok(refused({ ...link, 'sec-fetch-dest': 'iframe' }, false, '/'), 'a frame');
  });

  test('a key header is not a browser request', () => {
    assert.equal(refused({ 'x-api-key': 'comfy_x', origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' }), false);
    assert.equal(refused({ authorization: 'Bearer comfy_x', origin: 'null' }), false);
    assert.ok(refused({ authorization: 'Basic abc', origin: 'null' }), 'another scheme is not a key');
  });
});

describe('socketHost', () => {
  test('an IPv6 address loses its brackets; names and IPv4 addresses stay as they are', () => {
    assert.equal(socketHost(new URL('http://[::1]:8188/')), '::1');
    assert.equal(socketHost(new URL('wss://[2001:db8::7]/ws')), '2001:db8::7');
    assert.equal(socketHost(new URL('http://127.0.0.1:8188')), '127.0.0.1');
    assert.equal(socketHost(new URL('https://comfy.example:443')), 'comfy.example');
  });
});
