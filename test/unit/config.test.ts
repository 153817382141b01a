// Flags and COMFY_GATE_* variables become one GatewayConfig; bad values are refused with a message that names the flag.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { withChildPorts } from '../../src/backends/child-port.js';
import { ConfigError, loadServeConfig } from '../../src/config/load.js';

describe('loadServeConfig', () => {
  test('defaults', () => {
    const config = loadServeConfig([], {});
    assert.equal(config.mode, 'off');
    assert.equal(config.listen, '127.0.0.1');
    assert.equal(config.port, 8188);
    assert.deepEqual(
      config.backends.map((backend) => [backend.name, backend.url.href, backend.weight, backend.child]),
      [['default', 'http://127.0.0.1:8189/', 1, null]],
    );
    assert.equal(config.userDirectory, resolve('user'));
    assert.deepEqual(config.publicPaths, []);
    assert.equal(config.usageRetentionDays, 90);
    assert.equal(config.jobRetentionDays, 30);
    assert.equal(config.upstreamTimeoutMs, 300_000);
    assert.equal(config.wsPingIntervalMs, 30_000);
    assert.equal(config.wsMaxPerKey, 32);
  });

  test('flags', () => {
    const config = loadServeConfig(
      [
        '--enable-api-auth',
        '--listen',
        '0.0.0.0',
        '--port',
        '9000',
        '--upstream',
        'https://comfy.internal:8443',
        '--public-path',
        '/extensions/',
        '--public-path',
        '/assets',
        '--usage-retention-days',
        '7',
        '--job-retention-days',
        '3',
      ],
      {},
    );
    assert.equal(config.mode, 'optional');
    assert.equal(config.listen, '0.0.0.0');
    assert.equal(config.port, 9000);
    assert.equal(config.backends[0]!.url.origin, 'https://comfy.internal:8443');
    assert.deepEqual(config.publicPaths, ['/extensions/', '/assets']);
    assert.equal(config.usageRetentionDays, 7);
    assert.equal(config.jobRetentionDays, 3);
  });

  test('required wins over enabled', () => {
    assert.equal(loadServeConfig(['--enable-api-auth', '--require-api-auth'], {}).mode, 'required');
  });

  test('environment variables, and flags win over them', () => {
    const env = { COMFY_GATE_REQUIRE_API_AUTH: 'true', COMFY_GATE_PORT: '9100', COMFY_GATE_PUBLIC_PATHS: '/a/, /b/', COMFY_GATE_UPSTREAM_TIMEOUT: '5' };
    const config = loadServeConfig(['--port', '9200'], env);
    assert.equal(config.mode, 'required');
    assert.equal(config.port, 9200);
    assert.deepEqual(config.publicPaths, ['/a/', '/b/']);
    assert.equal(config.upstreamTimeoutMs, 5000);
    assert.equal(loadServeConfig([], { COMFY_GATE_ENABLE_API_AUTH: '0' }).mode, 'off');
    assert.equal(loadServeConfig([], { COMFY_GATE_WS_MAX_PER_KEY: '5' }).wsMaxPerKey, 5);
    assert.equal(loadServeConfig([], { COMFY_GATE_JOB_RETENTION_DAYS: '14' }).jobRetentionDays, 14);
  });

  test('webhook settings: the secret, private addresses and the retry base (fractions allowed)', () => {
    const defaults = loadServeConfig([], {});
    assert.deepEqual([defaults.webhookSecret, defaults.webhookAllowPrivate, defaults.webhookRetryBaseSeconds], [null, false, 10]);
    const set = loadServeConfig(['--webhook-allow-private', '--webhook-retry-base', '0.25'], { COMFY_GATE_WEBHOOK_SECRET: 'a-secret-of-20-chars' });
    assert.deepEqual([set.webhookSecret, set.webhookAllowPrivate, set.webhookRetryBaseSeconds], ['a-secret-of-20-chars', true, 0.25]);
    assert.equal(loadServeConfig([], { COMFY_GATE_WEBHOOK_RETRY_BASE: '60' }).webhookRetryBaseSeconds, 60);
    for (const value of ['0', '0.0001', 'abc', '1e3', '3601', '.5']) {
      assert.throws(
        () => loadServeConfig(['--webhook-retry-base', value], {}),
        (error: unknown) => error instanceof ConfigError && /--webhook-retry-base must be a number of seconds from 0.001 to 3600/.test(error.message),
        value,
      );
    }
  });

  test('--max-image-fetches: 16 by default, from the flag or the environment, 1 to 10000', () => {
    assert.equal(loadServeConfig([], {}).maxImageFetches, 16);
    assert.equal(loadServeConfig(['--max-image-fetches', '1'], {}).maxImageFetches, 1);
    assert.equal(loadServeConfig([], { COMFY_GATE_MAX_IMAGE_FETCHES: '64' }).maxImageFetches, 64);
    for (const value of ['0', '10001', 'many', '2.5']) {
      assert.throws(
        () => loadServeConfig(['--max-image-fetches', value], {}),
        (error: unknown) => error instanceof ConfigError && /--max-image-fetches must be a whole number from 1 to 10000/.test(error.message),
        value,
      );
    }
  });

  test('cross-site settings: allowed hosts, local management, frame ancestors', () => {
    const defaults = loadServeConfig([], {});
    assert.deepEqual([defaults.allowedHosts, defaults.noLocalAdmin, defaults.frameAncestors], [[], false, []]);
    const flags = loadServeConfig(
      [
        '--allowed-host',
        'Comfy.Example.com',
        '--allowed-host',
        '.corp.example',
        '--no-local-admin',
        '--frame-ancestors',
        'https://portal.example',
        '--frame-ancestors',
        "'self'",
      ],
      {},
    );
    assert.deepEqual(flags.allowedHosts, ['comfy.example.com', '.corp.example']);
    assert.equal(flags.noLocalAdmin, true);
    assert.deepEqual(flags.frameAncestors, ['https://portal.example', "'self'"]);
    const env = loadServeConfig([], {
      COMFY_GATE_ALLOWED_HOSTS: 'a.example, b.example',
      COMFY_GATE_NO_LOCAL_ADMIN: 'yes',
      COMFY_GATE_FRAME_ANCESTORS: 'http://127.0.0.1:3000,https://*.example.com',
    });
    assert.deepEqual(
      [env.allowedHosts, env.noLocalAdmin, env.frameAncestors],
      [['a.example', 'b.example'], true, ['http://127.0.0.1:3000', 'https://*.example.com']],
    );
  });

  describe('service URLs from a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'comfy-gate-config-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const secretFile = (name: string, text: string): string => {
      const path = join(dir, name);
      writeFileSync(path, text, { mode: 0o600 });
      return path;
    };

    test('--database-url-file and COMFY_GATE_REDIS_URL_FILE are read and trimmed', () => {
      const database = secretFile('database-url', '  postgres://gate:s3cret@db.internal:5432/gate\n');
      const redis = secretFile('redis-url', 'rediss://:p4ss@cache.internal:6380\n');
      const config = loadServeConfig(['--database-url-file', database], { COMFY_GATE_REDIS_URL_FILE: redis });
      assert.equal(config.databaseUrl, 'postgres://gate:s3cret@db.internal:5432/gate');
      assert.equal(config.redisUrl, 'rediss://:p4ss@cache.internal:6380');
    });

    const refusals: Array<[string, () => [string[], NodeJS.ProcessEnv], RegExp]> = [
      [
        'a URL and its file as flags',
        () => [['--database-url', 'postgres://h/d', '--database-url-file', secretFile('a', 'postgres://h/d')], {}],
        /--database-url and --database-url-file are both given/,
      ],
      [
        'a URL in the environment and its file as a flag',
        () => [['--redis-url-file', secretFile('b', 'redis://h')], { COMFY_GATE_REDIS_URL: 'redis://h' }],
        /--redis-url and --redis-url-file are both given/,
      ],
      ['a file that does not exist', () => [['--database-url-file', join(dir, 'missing')], {}], /--database-url-file: .*missing cannot be read \(ENOENT\)/],
      ['an empty file', () => [['--redis-url-file', secretFile('c', ' \n')], {}], /--redis-url-file: .* is empty/],
      [
        'a file holding something else',
        () => [['--database-url-file', secretFile('d', 'mysql://root:hunter2@h/d')], {}],
        /the URL in --database-url-file .* must start with postgres:\/\/ or postgresql:\/\//,
      ],
    ];
    for (const [what, input, message] of refusals) {
      test(`refuses ${what}, never showing the secret`, () => {
        const [args, env] = input();
        assert.throws(
          () => loadServeConfig(args, env),
          (error: unknown) => error instanceof ConfigError && message.test(error.message) && !/hunter2/.test(error.message),
        );
      });
    }
  });

  test('--allow-unsafe-store-permissions, by flag or environment', () => {
    assert.equal(loadServeConfig([], {}).allowUnsafeStorePermissions, false);
    assert.equal(loadServeConfig(['--allow-unsafe-store-permissions'], {}).allowUnsafeStorePermissions, true);
    assert.equal(loadServeConfig([], { COMFY_GATE_ALLOW_UNSAFE_STORE_PERMISSIONS: 'yes' }).allowUnsafeStorePermissions, true);
  });

  test('everything after -- is the command of a child ComfyUI, whose {port} becomes a free loopback port and the upstream', async () => {
    assert.equal(loadServeConfig([], {}).backends[0]!.child, null);
    const config = loadServeConfig(['--require-api-auth', '--', 'python', 'main.py', '--port={port}', '--', '--url', 'http://127.0.0.1:{port}/'], {});
    assert.equal(config.mode, 'required');
    assert.equal(config.backends.length, 1);
    assert.deepEqual(config.backends[0]!.child, { command: 'python', args: ['main.py', '--port={port}', '--', '--url', 'http://127.0.0.1:{port}/'] });
    const placed = (await withChildPorts(config)).backends[0]!;
    const port = Number(placed.url.port);
    assert.ok(port > 0 && port < 65536);
    assert.equal(placed.url.origin, `http://127.0.0.1:${port}`);
    assert.deepEqual(placed.child, { command: 'python', args: ['main.py', `--port=${port}`, '--', '--url', `http://127.0.0.1:${port}/`] });
    assert.equal((await withChildPorts(loadServeConfig([], {}))).backends[0]!.url.href, 'http://127.0.0.1:8189/', 'no child: the upstream is kept');
  });

  test('--spawn-count N starts N children, each with its own port and {index}', async () => {
    const folders = ['--output-directory', 'out/{index}', '--input-directory=in/{index}', '--temp-directory', 'tmp/{index}'];
    const config = loadServeConfig(['--spawn-count', '3', '--', 'python', 'main.py', '--port', '{port}', '--cuda-device', '{index}', ...folders], {});
    const placed = (await withChildPorts(config)).backends;
    assert.deepEqual(
      placed.map((backend) => backend.name),
      ['comfyui-0', 'comfyui-1', 'comfyui-2'],
    );
    const ports = placed.map((backend) => backend.url.port);
    assert.equal(new Set(ports).size, 3, 'a port each');
    placed.forEach((backend, index) =>
      assert.deepEqual(backend.child!.args, [
        'main.py',
        '--port',
        ports[index],
        '--cuda-device',
        String(index),
        '--output-directory',
        `out/${index}`,
        `--input-directory=in/${index}`,
        '--temp-directory',
        `tmp/${index}`,
      ]),
    );
  });

  test('several --upstream values are several backends, with weights and names', () => {
    const config = loadServeConfig(['--upstream', 'http://10.0.0.5:8188#weight=2', '--upstream', 'http://10.0.0.6:8188#name=gpu1&weight=3'], {});
    assert.deepEqual(
      config.backends.map((backend) => [backend.name, backend.url.href, backend.weight]),
      [
        ['10.0.0.5:8188', 'http://10.0.0.5:8188/', 2],
        ['gpu1', 'http://10.0.0.6:8188/', 3],
      ],
    );
    const fromEnv = loadServeConfig([], { COMFY_GATE_UPSTREAMS: 'http://a:1, http://b:2#name=b' });
    assert.deepEqual(
      fromEnv.backends.map((backend) => backend.name),
      ['a:1', 'b'],
    );
    assert.equal(loadServeConfig([], { COMFY_GATE_UPSTREAM: 'http://one:3' }).backends[0]!.url.origin, 'http://one:3');
  });

  const bad: Array<[string, string[], NodeJS.ProcessEnv, RegExp]> = [
    [
      '--upstream with a child',
      ['--upstream', 'http://127.0.0.1:8189', '--', 'python', 'main.py', '--port', '{port}'],
      {},
      /--upstream and a command after --/,
    ],
    [
      'COMFY_GATE_UPSTREAM with a child',
      ['--', 'python', 'main.py', '--port', '{port}'],
      { COMFY_GATE_UPSTREAM: 'http://x' },
      /COMFY_GATE_UPSTREAM and a command/,
    ],
    ['-- without a command', ['--require-api-auth', '--'], {}, /-- must be followed by the command that starts ComfyUI/],
    ['a child command without {port}', ['--', 'python', 'main.py'], {}, /put \{port\} among its arguments/],
    [
      'a child command with {index} and one child',
      ['--', 'python', 'main.py', '--port', '{port}', '--cuda-device', '{index}'],
      {},
      /\{index\} numbers several children/,
    ],
    ['--spawn-count without a command', ['--spawn-count', '2'], {}, /--spawn-count counts children/],
    [
      'several children sharing a folder',
      [
        '--spawn-count',
        '2',
        '--',
        'python',
        'main.py',
        '--port',
        '{port}',
        '--cuda-device',
        '{index}',
        '--output-directory',
        'out/{index}',
        '--temp-directory',
        'tmp',
      ],
      {},
      /folders of their own: add --input-directory DIR\/\{index\}, --temp-directory DIR\/\{index\} to the command/,
    ],
    ['--spawn-count zero', ['--spawn-count', '0', '--', 'python', 'main.py', '--port', '{port}'], {}, /--spawn-count must be a whole number from 1 to 64/],
    ['two upstreams with one name', ['--upstream', 'http://a:1#name=x', '--upstream', 'http://b:1#name=x'], {}, /both named x/],
    ['an upstream weight of zero', ['--upstream', 'http://a:1#weight=0'], {}, /#weight must be a whole number from 1 to 1000/],
    ['an unknown upstream setting', ['--upstream', 'http://a:1#speed=2'], {}, /unknown setting #speed/],
    ['an upstream name with a space', ['--upstream', 'http://a:1#name=a%20b'], {}, /#name must be 1 to 64/],
    ['an unknown gateway flag before a child command', ['--bogus', '--', 'python', 'main.py', '--port', '{port}'], {}, /bogus/],
    ['unknown flag', ['--bogus'], {}, /bogus/],
    ['port not a number', ['--port', 'abc'], {}, /--port must be a whole number from 0 to 65535/],
    ['port too large', ['--port', '70000'], {}, /--port/],
    ['upstream not a URL', ['--upstream', 'localhost'], {}, /--upstream must be a URL/],
    ['upstream not http', ['--upstream', 'ftp://x'], {}, /http:\/\/ or https:\/\//],
    ['upstream with a path', ['--upstream', 'http://x/comfy'], {}, /without a path/],
    ['public path with a dot segment', ['--public-path', '/a/../b'], {}, /--public-path/],
    ['public path with an escape', ['--public-path', '/%61'], {}, /--public-path/],
    ['retention zero', ['--usage-retention-days', '0'], {}, /--usage-retention-days/],
    ['job retention zero', ['--job-retention-days', '0'], {}, /--job-retention-days/],
    ['no WebSockets per key', ['--ws-max-per-key', '0'], {}, /--ws-max-per-key must be a whole number from 1 to 100000/],
    ['boolean env not a boolean', [], { COMFY_GATE_REQUIRE_API_AUTH: 'maybe' }, /COMFY_GATE_REQUIRE_API_AUTH must be true or false/],
    ['a value where none is taken', ['--require-api-auth=yes'], {}, /require-api-auth/],
    ['allowed host with a port', ['--allowed-host', 'comfy.example:8188'], {}, /--allowed-host: "comfy.example:8188" is not a host name/],
    ['allowed host that is a URL', ['--allowed-host', 'http://comfy.example'], {}, /--allowed-host/],
    ['frame ancestor with a path', ['--frame-ancestors', 'https://portal.example/page'], {}, /--frame-ancestors must be an origin/],
    ['frame ancestor smuggling a directive', ['--frame-ancestors', 'https://a.example; script-src *'], {}, /--frame-ancestors/],
    ['frame ancestor wildcard', ['--frame-ancestors', '*'], {}, /--frame-ancestors/],
  ];
  for (const [what, args, env, message] of bad) {
    test(`refuses ${what}`, () => {
      assert.throws(
        () => loadServeConfig(args, env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }
});
