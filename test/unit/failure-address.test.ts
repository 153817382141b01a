// Who failed authentications are counted against: an IPv4 address however written, an IPv6 address's /64 network.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AuthFailureLimiter, failureAddress } from '../../src/auth/failure-limiter.js';

describe('failureAddress', () => {
  test('IPv4 addresses, plain or written as IPv6, are themselves', () => {
    assert.equal(failureAddress('203.0.113.9'), '203.0.113.9');
    assert.equal(failureAddress('::ffff:203.0.113.9'), '203.0.113.9');
    assert.equal(failureAddress('::FFFF:cb00:7109'), '203.0.113.9');
    assert.equal(failureAddress('0:0:0:0:0:ffff:203.0.113.9'), '203.0.113.9');
  });

  test('every spelling of an IPv6 address gives its /64 network', () => {
    for (const address of ['2001:db8:1:2::1', '2001:0DB8:0001:0002:ffff:ffff:ffff:ffff', '2001:db8:1:2:0:0:0:0', '2001:db8:1:2::', '2001:db8:1:2::10.0.0.1'])
      assert.equal(failureAddress(address), '2001:db8:1:2::/64', address);
    assert.equal(failureAddress('::1'), '0:0:0:0::/64');
    assert.equal(failureAddress('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(failureAddress('2001:db8::1'), '2001:db8:0:0::/64');
    assert.notEqual(failureAddress('2001:db8:1:3::1'), failureAddress('2001:db8:1:2::1'));
  });

  test('anything else is kept as given', () => {
    for (const other of ['', 'unknown', '203.0.113.9:80']) assert.equal(failureAddress(other), other);
  });
});

test('a limiter blocks the whole /64 that failed, and only it', () => {
  const limiter = new AuthFailureLimiter({ maxFailures: 2, windowMs: 60_000, blockMs: 1000, maxTracked: 10 });
  assert.equal(limiter.recordFailure('2001:db8::1', 0), false);
  assert.equal(limiter.recordFailure('2001:db8::2', 1), false);
  assert.equal(limiter.recordFailure('2001:db8:0:0:1::3', 2), true);
  assert.equal(limiter.blockedFor('2001:db8::ffff', 3), 999);
  assert.equal(limiter.blockedFor('2001:db8:0:1::1', 3), 0);
});
