// An upstream that is not HTTP: garbage bytes, endless headers, broken chunked bodies, silence; clear errors, no leaks.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';
import { assertHealthy, quietBaseline, type Baseline } from './process-probe.js';
import { startRawUpstream, type Misbehaviour, type RawUpstream } from './raw-upstream.js';
import { download, openWebSocket } from './transfers.js';

const REPEATS = 5;

describe('an upstream that does not speak HTTP', () => {
  let upstream: RawUpstream;
  let gateway: GatewayProcess;
  let key: string;
  let baseline: Baseline;

  before(async () => {
    upstream = await startRawUpstream();
    gateway = await startGateway({ upstream: upstream.url, args: ['--require-api-auth', '--upstream-timeout', '1', '--log-level', 'warn'] });
    key = (await createKey(gateway.url, { name: 'admin', rate_limit: 10_000_000 })).api_key;
    baseline = await quietBaseline(gateway);
  });
  after(async () => {
    await gateway.stop();
    await upstream.close();
  });

  const refusals: Array<[Misbehaviour, number, string]> = [
    ['garbage-then-close', 502, 'UPSTREAM_UNAVAILABLE'],
    ['garbage-kept-open', 502, 'UPSTREAM_UNAVAILABLE'],
    ['endless-header', 502, 'UPSTREAM_UNAVAILABLE'],
    ['silent', 504, 'UPSTREAM_TIMEOUT'],
  ];
  for (const [misbehaviour, status, code] of refusals) {
    test(`${misbehaviour}: ${status} ${code} for HTTP and for a WebSocket upgrade`, async () => {
      upstream.misbehaviour = misbehaviour;
      // Read by the pool's parser (catalog routes) and by the gateway's own (a `/view` download streamed over a connection of its own).
      const targets = Array.from({ length: REPEATS }, (_, i) => [`/api/object_info?n=${i}`, `/api/view?filename=f${i}.png`]).flat();
      const answers = await Promise.all(targets.map((target) => send(gateway.url, target, { key })));
      for (const res of answers) {
        assert.equal(res.status, status, res.text);
        assert.equal(res.json().error_code, code);
      }
      const ws = await openWebSocket(gateway.url, '/ws', key);
      assert.ok('status' in ws, 'the upgrade is refused');
      assert.equal(ws.status, status, ws.body);
      assert.equal((JSON.parse(ws.body) as { error_code: string }).error_code, code);
      await assertHealthy(gateway, baseline);
    });
  }

  test('broken-chunked-body: the answer had begun, so the connection is cut', async () => {
    upstream.misbehaviour = 'broken-chunked-body';
    // Routes streamed as they come (the gateway reads catalog routes such as /object_info whole, to keep them); a `/view`
    // download whose answer has no length is asked again through the pool.
    const targets = Array.from({ length: REPEATS }, (_, i) => ['/api/extensions', `/api/view?filename=f${i}.png`]).flat();
    const results = await Promise.all(targets.map((target) => download(gateway.url, target, key)));
    for (const result of results) {
      assert.equal(result.status, 200);
      assert.equal(result.complete, false, 'a broken body does not end like a complete one');
    }
    await assertHealthy(gateway, baseline);
  });
});
