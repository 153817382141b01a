// docs/api.md and the OpenAPI document name the same endpoints: each path and method has a heading, and each heading's endpoint is documented.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { OPENAPI_DOCUMENT } from '../../src/server/openapi.js';
import { headings, REPO_ROOT } from '../helpers/markdown.js';

const HTTP_METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

/** `METHOD /path` for every operation of the OpenAPI document. */
function openApiEndpoints(): string[] {
  return Object.entries(OPENAPI_DOCUMENT.paths).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((key) => HTTP_METHODS.has(key))
      .map((method) => `${method.toUpperCase()} ${path}`),
  );
}

/** `METHOD /path` for every code span of that form in a heading of docs/api.md. */
function documentedEndpoints(): string[] {
  const markdown = readFileSync(join(REPO_ROOT, 'docs', 'api.md'), 'utf8');
  return headings(markdown).flatMap((heading) => [...heading.matchAll(/`([A-Z]+ \/[^`\s]*)`/g)].map((match) => match[1] as string));
}

describe('docs/api.md against the OpenAPI document', () => {
  test('every path and method of the OpenAPI document has a heading in docs/api.md', () => {
    const documented = new Set(documentedEndpoints());
    assert.deepEqual(
      openApiEndpoints().filter((endpoint) => !documented.has(endpoint)),
      [],
    );
  });

  test('every endpoint named in a heading of docs/api.md is in the OpenAPI document', () => {
    const inOpenApi = new Set(openApiEndpoints());
    const documented = documentedEndpoints();
    assert.ok(documented.length > 0, 'docs/api.md names endpoints in its headings');
    assert.deepEqual(
      documented.filter((endpoint) => !inOpenApi.has(endpoint)),
      [],
    );
  });
});
