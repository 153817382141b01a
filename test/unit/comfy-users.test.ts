// Unit tests of ComfyUsers' question to ComfyUI about --multi-user: shared by concurrent requests, asked again after forgetMode or once the event socket closes.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ComfyUsers } from '../../src/isolation/comfy-users.js';
import type { IsolationContext } from '../../src/isolation/context.js';
import type { UpstreamAnswer } from '../../src/proxy/http.js';

/** A ComfyUI whose `GET /api/users` answers are released by the test, one per question asked; `events.connected` is its event socket's state. */
function comfyAskedByHand(): { ctx: IsolationContext; asked: Array<(multiUser: boolean) => void>; events: { connected: boolean } } {
  const asked: Array<(multiUser: boolean) => void> = [];
  const fetch = (): Promise<UpstreamAnswer> =>
    new Promise((resolve) =>
      asked.push((multiUser) =>
        resolve({
          status: 200,
          headers: {},
          body: Buffer.from(JSON.stringify(multiUser ? { storage: 'server', users: {} } : { storage: 'server', migrated: true })),
        }),
      ),
    );
  const events = { connected: true };
  const ctx = { pool: { any: () => ({ proxy: { fetch }, events }) } } as unknown as IsolationContext;
  return { ctx, asked, events };
}

describe('ComfyUsers: whether ComfyUI runs with --multi-user', () => {
  test('requests that arrive together share one question; its answer is kept', async () => {
    const { ctx, asked } = comfyAskedByHand();
    const users = new ComfyUsers(ctx);
    const waiting = Array.from({ length: 3 }, async () => users.isMultiUser());
    assert.equal(asked.length, 1);
    asked[0]!(true);
    assert.deepEqual(await Promise.all(waiting), [true, true, true]);
    assert.equal(users.isMultiUser(), true, 'known at once, without a turn of the event loop');
    assert.equal(asked.length, 1, 'answered from what ComfyUI said');
  });

  test('after forgetMode it is asked again, and an answer asked for before is not kept', async () => {
    const { ctx, asked } = comfyAskedByHand();
    const users = new ComfyUsers(ctx);
    const first = users.isMultiUser();
    users.forgetMode();
    const second = users.isMultiUser();
    assert.equal(asked.length, 2, 'a request after forgetMode does not wait for the question asked before it');
    asked[1]!(true);
    assert.equal(await second, true);
    asked[0]!(false);
    assert.equal(await first, false, 'whoever asked before gets the answer to that question');
    assert.equal(await users.isMultiUser(), true, 'the older answer, arriving last, did not replace the newer');
    assert.equal(asked.length, 2);
  });

  test('an answer is not trusted once the event socket to its backend closes: ComfyUI may be restarting without --multi-user', async () => {
    const { ctx, asked, events } = comfyAskedByHand();
    const users = new ComfyUsers(ctx);
    const first = users.isMultiUser();
    asked[0]!(true);
    assert.equal(await first, true);
    events.connected = false;
    const second = users.isMultiUser();
    assert.equal(asked.length, 2, 'asked again while the socket is closed');
    asked[1]!(false);
    assert.equal(await second, false);
  });
});
