// User-given URLs (webhooks, image inputs) never reach private addresses, however the address is spelled, unless allowed.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { checkOutboundUrl, isPrivateAddress, OutboundUrlError, outboundAgent, reachedBackend } from '../../src/net/outbound.js';

const FLAG = '--webhook-allow-private';

describe('isPrivateAddress', () => {
  const privateOnes = [
    '127.0.0.1',
    '127.255.0.9',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fe80::1%eth0',
    'fd00::1',
    'fc12:3456::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:10.0.0.1',
    '::127.0.0.1',
    '64:ff9b::a9fe:a9fe',
    '2002:c0a8:0101::1',
    '::ffff:0:127.0.0.1',
    '::ffff:0:7f00:1',
    '64:ff9b:1::7f00:1',
    '64:ff9b:1:ff::808:808',
    '[::1]',
    'not-an-address',
  ];
  for (const address of privateOnes) test(`refuses ${address}`, () => assert.equal(isPrivateAddress(address), true));
  for (const address of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '::ffff:0:808:808', '64:ff9b::808:808']) {
    test(`allows ${address}`, () => assert.equal(isPrivateAddress(address), false));
  }
});

describe('checkOutboundUrl', () => {
  const refused = async (url: string, pattern: RegExp): Promise<void> => {
    await assert.rejects(checkOutboundUrl(url, false, FLAG), (error: unknown) => error instanceof OutboundUrlError && pattern.test(error.message));
  };

  test('refuses private hosts in every spelling', async () => {
    for (const url of [
      'http://127.0.0.1/hook',
      'http://127.1/hook',
      'http://2130706433/hook',
      'http://0x7f000001/hook',
      'http://[::1]:8080/hook',
      'http://[::ffff:127.0.0.1]/hook',
      'http://localhost/hook',
      'http://LOCALHOST./hook',
      'http://app.localhost/hook',
      'https://169.254.169.254/latest/meta-data',
      'http://10.0.0.5/',
    ]) {
      await refused(url, /--webhook-allow-private/);
    }
  });

  test('refuses what is not an http(s) URL with credentials-free host', async () => {
    await refused('ftp://example.com/x', /http or https/);
    await refused('file:///etc/passwd', /http or https/);
    await refused('/relative', /absolute URL/);
    await refused('https://user:pass@8.8.8.8/', /user name or password/);
  });

  test('allows public addresses, and private ones when the operator says so', async () => {
    assert.equal((await checkOutboundUrl('https://8.8.8.8/hook', false, FLAG)).host, '8.8.8.8');
    assert.equal((await checkOutboundUrl('http://127.0.0.1:9/hook', true, FLAG)).port, '9');
  });
});

describe('outboundAgent', () => {
  test('a name that resolves to a private address is refused when connecting', async () => {
    const server = createServer((_req, res) => res.end('reached'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const strict = outboundAgent(false, []);
      await assert.rejects(request(`http://localhost:${port}/`, { dispatcher: strict }), /private addresses/);
      const open = outboundAgent(true, []);
      const answer = await request(`http://localhost:${port}/`, { dispatcher: open });
      assert.equal(await answer.body.text(), 'reached');
      await Promise.all([strict.close(), open.close()]);
    } finally {
      server.close();
    }
  });

  test('a connection that reaches a ComfyUI backend is refused, whatever the spelling and with private addresses allowed', async () => {
    const servers = [createServer((_req, res) => res.end('backend')), createServer((_req, res) => res.end('other'))];
    for (const server of servers) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const [backendPort, otherPort] = servers.map((server) => (server.address() as AddressInfo).port);
    const agent = outboundAgent(true, [new URL(`http://localhost:${backendPort}`)]);
    try {
      for (const host of [`127.0.0.1:${backendPort}`, `localhost:${backendPort}`, `[::ffff:127.0.0.1]:${backendPort}`, `127.1:${backendPort}`]) {
        await assert.rejects(request(`http://${host}/view`, { dispatcher: agent }), (error: unknown) => reachedBackend(error), host);
      }
      const answer = await request(`http://127.0.0.1:${otherPort}/`, { dispatcher: agent });
      assert.equal(await answer.body.text(), 'other', 'another port of the same machine is not a backend');
    } finally {
      await agent.close();
      for (const server of servers) server.close();
    }
  });
});
