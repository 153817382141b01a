// The route table: the copy in docs/security.md is generated from it, and --user-route opens only what the table does not lock.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { matchRoute, routeTableMarkdown } from '../../src/isolation/route-table.js';
import { isOpenedByOperator, parseUserRoute, type UserRoute } from '../../src/isolation/user-routes.js';

const SECURITY_DOC = new URL('../../../docs/security.md', import.meta.url);

describe('route table', () => {
  test('the table in docs/security.md is the route table (npm run docs:routes rewrites it)', () => {
    const doc = readFileSync(SECURITY_DOC, 'utf8');
    const block = /<!-- route-table:start -->\n([\s\S]*?)\n<!-- route-table:end -->/.exec(doc);
    assert.ok(block, 'docs/security.md has the route-table markers');
    assert.equal(block[1], routeTableMarkdown());
  });

  test('--user-route refuses the admin-only routes, under /api too, and prefixes that hold them', () => {
    for (const value of [
      '/manager/',
      'POST:/api/manager/queue',
      '/v2/manager',
      '/customnode/install',
      '/snapshot',
      '/externalmodel/x',
      '/internal/logs',
      '/api/assets',
      '/api/assets/download',
      'POST:/api/tasks',
      '/api/tags',
      '/free',
      '/api/free',
      '/api',
      '/api/',
      'GET:/experiment/models/preview/',
      '/comfyui_manager/',
      'GET:/api/v2/customnode/installed',
      '/v2/snapshot',
      '/v2/externalmodel/getlist',
      '/v2/comfyui_manager/comfyui_versions',
      '/api/experiment/models/preview/datasets/0',
      '/view_metadata/custom_nodes',
    ]) {
      assert.equal(typeof parseUserRoute(value), 'string', value);
    }
    for (const value of ['/', '', 'my_node', 'GET:my_node', 'FETCH:/x', '/a//b', '/a/../b', '/a%2Fb', '/a b']) {
      assert.equal(typeof parseUserRoute(value), 'string', value);
    }
  });

  test('an opened prefix matches its path and segment boundary, under /api too, for its method only', () => {
    const routes = [parseUserRoute('POST:/my_node/run'), parseUserRoute('/other')] as UserRoute[];
    const opened = (method: string, path: string): boolean => isOpenedByOperator(routes, method, path.slice(1).split('/'));
    assert.equal(opened('POST', '/my_node/run'), true);
    assert.equal(opened('POST', '/api/my_node/run/x'), true);
    assert.equal(opened('GET', '/my_node/run'), false);
    assert.equal(opened('POST', '/my_node/runner'), false);
    assert.equal(opened('DELETE', '/other/thing'), true);
    assert.equal(opened('HEAD', '/other'), true);
    assert.equal(opened('GET', '/otherwise'), false);
  });

  test('matching is case-sensitive and exact, as aiohttp routes', () => {
    assert.equal(matchRoute('GET', ['history'])?.entry.handler, 'history-list');
    assert.equal(matchRoute('HEAD', ['api', 'history'])?.entry.handler, 'history-list');
    assert.equal(matchRoute('GET', ['HISTORY']), null);
    assert.equal(matchRoute('GET', ['history', '']), null);
    assert.equal(matchRoute('GET', ['api', 'api', 'jobs'])?.entry.handler, 'jobs-list');
    assert.equal(matchRoute('GET', ['jobs']), null);
    assert.equal(matchRoute('GET', ['api', 'internal', 'logs']), null);
    assert.equal(matchRoute('PATCH', ['internal', 'logs', 'subscribe'])?.entry.access, 'admin-only');
    assert.equal(matchRoute('GET', ['api', 'manager', 'reboot'])?.entry.access, 'admin-only');
    assert.equal(matchRoute('GET', ['user.css'])?.entry.access, 'forwarded');
    assert.equal(matchRoute('GET', ['custom_endpoint']), null);
  });
});
