// Every relative link and image in README.md and docs/*.md points at a file that exists and, with an anchor, at a heading of it.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { anchorOf, anchors, brokenLinks, linkTargets, projectDocs } from '../helpers/markdown.js';

describe('documentation links', () => {
  test('README.md and every docs/*.md link only to files and headings that exist', () => {
    const docs = projectDocs();
    assert.ok(docs.length > 1, 'docs/ holds Markdown files');
    assert.deepEqual(
      docs.flatMap((file) => brokenLinks(file)),
      [],
    );
  });

  test('anchors follow GitHub: lower case, punctuation dropped, spaces to -, repeats numbered', () => {
    assert.equal(anchorOf('Isolation: what a user key can and cannot see'), 'isolation-what-a-user-key-can-and-cannot-see');
    assert.equal(anchorOf('Behind a reverse proxy: `--trusted-proxy`'), 'behind-a-reverse-proxy---trusted-proxy');
    assert.equal(anchorOf("Rotate a key's secret: `POST /api/keys/{key_id}/rotate`"), 'rotate-a-keys-secret-post-apikeyskey_idrotate');
    assert.deepEqual([...anchors('# A\n## Audit trail\n```\n# not a heading\n```\n### Audit trail\n')], ['a', 'audit-trail', 'audit-trail-1']);
  });

  test('links in code are not links; links and images elsewhere are', () => {
    assert.deepEqual(linkTargets('[a](x.md#y) and ![img](p.png) `[no](code.md)`\n```\n[no](fence.md)\n```\n[`code` text](z.md "title")'), [
      'x.md#y',
      'p.png',
      'z.md',
    ]);
  });

  test('a missing file, a missing anchor and an anchor into a non-Markdown file are reported; external links are not checked', () => {
    const root = mkdtempSync(join(tmpdir(), 'doc-links-'));
    try {
      mkdirSync(join(root, 'docs'));
      writeFileSync(join(root, 'docs', 'b.md'), '# B\n## Real heading\n');
      writeFileSync(join(root, 'docs', 'pic.png'), '');
      writeFileSync(
        join(root, 'README.md'),
        '# A\n[ok](docs/b.md#real-heading) [self](#a) ![pic](docs/pic.png) [web](https://example.com/x#y)\n[gone](docs/c.md) [bad](docs/b.md#no-such) [here](#nowhere) [png](docs/pic.png#x)\n',
      );
      assert.deepEqual(brokenLinks(join(root, 'README.md'), root), [
        'README.md: docs/c.md: no file docs/c.md',
        'README.md: docs/b.md#no-such: no heading of docs/b.md has the anchor #no-such',
        'README.md: #nowhere: no heading of README.md has the anchor #nowhere',
        'README.md: docs/pic.png#x: an anchor into a file that is not Markdown',
      ]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
