// User-given URLs (webhooks, image inputs) never reach private addresses, however the address is spelled, unless allowed.

import assert from 'node:assert/strict';
import dns, { type LookupAddress } from 'node:dns';
import { createServer } from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, mock, test, type Mock } from 'node:test';
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
    // Every IPv4 block that is not globally reachable, and those past them.
    '0.1.2.3',
    '192.0.0.9',
    '192.0.0.170',
    '192.0.2.7',
    '192.88.99.1',
    '198.19.255.1',
    '198.51.100.7',
    '203.0.113.7',
    '240.0.0.1',
    // IPv6 outside global unicast 2000::/3, whether a block names it or not.
    '::2',
    '0:0:0:0:0:ffff:127.0.0.1',
    '100::1',
    '100:0:0:1::1',
    '1000::1',
    '4000::1',
    '5f00::1',
    'e000::1',
    'fec0::1',
    // Inside 2000::/3: IETF protocol assignments (Teredo, benchmarking, AMT, ORCHID, anycast), documentation, 6to4.
    '2001::1',
    '2001:0:4136:e378:8000:63bf:3fff:fdd2',
    '2001:1::1',
    '2001:2::1',
    '2001:3::1',
    '2001:4:112::1',
    '2001:10::1',
    '2001:20::1',
    '2001:1ff:ffff::1',
    '2001:db8::1',
    '[2001:DB8:0:0:0:0:0:1]',
    '3fff::1',
    '3fff:fff:ffff::1',
    '2002:808:808::1',
  ];
  for (const address of privateOnes) test(`refuses ${address}`, () => assert.equal(isPrivateAddress(address), true));
  for (const address of [
    '8.8.8.8',
    '1.1.1.1',
    '172.32.0.1',
    '192.88.100.1',
    '192.31.196.1',
    '2606:4700::1111',
    '2001:200::1',
    '2001:4860:4860::8888',
    '3fff:1000::1',
    '2620:4f:8000::1',
    '::ffff:8.8.8.8',
    '0:0:0:0:0:ffff:8.8.8.8',
    '::ffff:0:808:808',
    '::808:808',
    '64:ff9b::808:808',
  ]) {
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

describe("this machine's own addresses", () => {
  // What a host with a public address looks like: the mocked networkInterfaces() adds these to the real ones.
  const OWN_IPV4 = '93.184.216.34';
  const OWN_IPV6 = '2606:2800:21f:cb07:6820:80da:af6b:8b2c';
  const readInterfaces = os.networkInterfaces;
  const resolve = dns.lookup;
  const nonLoopback = Object.values(readInterfaces())
    .flatMap((entries) => entries ?? [])
    .filter((entry) => !entry.internal && !entry.address.startsWith('fe80:'))
    .map((entry) => (entry.family === 'IPv6' ? `[${entry.address}]` : entry.address));
  let interfaceReads: Mock<typeof os.networkInterfaces>;

  before(async () => {
    const base = { netmask: '255.255.255.255', mac: '02:00:00:00:00:01', internal: false } as const;
    interfaceReads = mock.method(os, 'networkInterfaces', () => ({
      ...readInterfaces(),
      test0: [
        { ...base, address: OWN_IPV4, family: 'IPv4' as const, cidr: `${OWN_IPV4}/32` },
        { ...base, address: OWN_IPV6, family: 'IPv6' as const, cidr: `${OWN_IPV6}/128`, scopeid: 0 },
      ],
    }));
    const resolveOwnName = (hostname: string, options: dns.LookupAllOptions, callback: (error: Error | null, addresses: LookupAddress[]) => void): void => {
      if (hostname === 'own.example') return callback(null, [{ address: OWN_IPV4, family: 4 }]);
      resolve(hostname, options, callback);
    };
    mock.method(dns, 'lookup', resolveOwnName);
    syncBuiltinESMExports();
    // A reading of the interfaces made before the mock is used for up to a second.
    await delay(1_100);
  });
  after(() => {
    mock.restoreAll();
    syncBuiltinESMExports();
  });

  const refused = async (url: string): Promise<void> => {
    await assert.rejects(
      checkOutboundUrl(url, false, FLAG),
      (error: unknown) => error instanceof OutboundUrlError && /this machine.*--webhook-allow-private/.test(error.message),
      url,
    );
  };

  test('a URL to an address of one of its interfaces is refused, a public one too, in every spelling and by name', async () => {
    for (const url of [
      `http://${OWN_IPV4}/hook`,
      'http://1572395042/hook',
      `http://[::ffff:${OWN_IPV4}]/hook`,
      'http://[64:ff9b::5db8:d822]/hook',
      'http://[2606:2800:021F:CB07:6820:80DA:AF6B:8B2C]:8188/hook',
      'http://own.example/hook',
    ]) {
      await refused(url);
    }
    assert.equal((await checkOutboundUrl('https://8.8.8.8/hook', false, FLAG)).host, '8.8.8.8', 'another public address is allowed');
    assert.equal((await checkOutboundUrl(`http://${OWN_IPV4}/hook`, true, FLAG)).host, OWN_IPV4, `allowed with ${FLAG}`);
  });

  test(
    'a URL to a non-loopback address of its real interfaces is refused',
    { skip: nonLoopback.length === 0 && 'this machine has no non-loopback address' },
    async () => {
      for (const host of nonLoopback) await refused(`http://${host}:8188/api/keys`);
    },
  );

  test('a name that resolves to one of its addresses is not connected to', async () => {
    const strict = outboundAgent(false, []);
    try {
      await assert.rejects(request('http://own.example:9/hook', { dispatcher: strict }), (error: unknown) => {
        const { code, message } = error as { code?: string; message?: string };
        return code === 'EPRIVATEADDRESS' && /own\.example resolves only to private addresses or to this machine/.test(message ?? '');
      });
    } finally {
      await strict.close();
    }
  });

  test('its interfaces are read at most once a second, however many URLs are checked', async () => {
    await delay(1_100);
    interfaceReads.mock.resetCalls();
    for (let check = 0; check < 50; check++) await refused(`http://${OWN_IPV4}/hook`);
    assert.equal(interfaceReads.mock.callCount(), 1);
  });
});
