// Which response headers cross the gateway: hop-by-hop headers and those a Connection header lists stop at the gateway.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { downstreamResponseHeaders } from '../../src/proxy/headers.js';

describe('downstreamResponseHeaders', () => {
  test('a Connection header that only keeps or closes the connection drops nothing else, in any case and spacing', () => {
    for (const connection of ['keep-alive', 'Keep-Alive', ' close ', '\tCLOSE', 'keep-alive, close']) {
      assert.deepEqual(downstreamResponseHeaders({ connection, 'keep-alive': 'timeout=5', 'x-a': '1' }), { 'x-a': '1' }, connection);
    }
  });

  test('the headers a Connection header lists are dropped, however it spells them', () => {
    const headers = { 'x-a': '1', 'x-b': '2', 'x-c': '3' };
    assert.deepEqual(downstreamResponseHeaders({ ...headers, connection: 'keep-alive, X-A' }), { 'x-b': '2', 'x-c': '3' });
    assert.deepEqual(downstreamResponseHeaders({ ...headers, connection: 'x-b' }), { 'x-a': '1', 'x-c': '3' });
    assert.deepEqual(downstreamResponseHeaders({ ...headers, connection: ['close', ' x-c '] }), { 'x-a': '1', 'x-b': '2' });
  });
});
