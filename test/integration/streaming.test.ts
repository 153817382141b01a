// Large bodies stream through the gateway: a 200 MB upload and a 200 MB download never sit whole in the gateway's memory.

import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { startFakeComfyUI, type FakeComfyUI } from '../helpers/fake-comfyui.js';
import { startGateway, type GatewayProcess } from '../helpers/gateway-process.js';
import { createKey, type CreatedKey } from '../helpers/keys.js';

const SIZE = 200 * 1024 * 1024;
const CHUNK = Buffer.alloc(1024 * 1024, 7);
/** The gateway's peak RSS may grow this much over its idle size while moving 200 MB. */
const MAX_GROWTH_MB = 80;

function* megabytes(count: number): Generator<Buffer> {
  for (let i = 0; i < count; i += 1) yield CHUNK;
}

/** Peak resident memory of a process, in MB (VmHWM). */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

describe('streaming', () => {
  let comfy: FakeComfyUI;
  let gateway: GatewayProcess;
  let key: CreatedKey;
  let userKey: CreatedKey;
  let idlePeakMb: number;

  before(async () => {
    comfy = await startFakeComfyUI();
    gateway = await startGateway({ upstream: comfy.url, args: ['--require-api-auth'] });
    key = await createKey(gateway.url, { name: 'big files' });
    userKey = await createKey(gateway.url, { name: 'big uploads', role: 'user' }, key.api_key);
    idlePeakMb = await peakRssMb(gateway.pid);
  });
  after(async () => {
    await gateway.stop();
    await comfy.close();
  });

  test("a user key's 200 MB upload, read on its way for the isolation rules, arrives whole at ComfyUI", async () => {
    const boundary = '----comfygate' + Date.now();
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n`);
    const tail = Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n--${boundary}--\r\n`);
    const body = Readable.from(
      (function* () {
        yield head;
        yield* megabytes(SIZE / CHUNK.length);
        yield tail;
      })(),
    );
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: gateway.port,
          method: 'POST',
          path: '/api/upload/image',
          headers: {
            'x-api-key': userKey.api_key,
            'content-type': `multipart/form-data; boundary=${boundary}`,
            'content-length': head.length + SIZE + tail.length,
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        },
      );
      req.on('error', reject);
      body.pipe(req);
    });
    assert.equal(status, 200);
    assert.equal(comfy.lastUploadBytes, SIZE);
    const growth = (await peakRssMb(gateway.pid)) - idlePeakMb;
    assert.ok(growth < MAX_GROWTH_MB, `peak RSS grew by ${growth.toFixed(0)} MB`);
  });

  test('a 200 MB download streams back', async () => {
    await pipeline(Readable.from(megabytes(SIZE / CHUNK.length)), createWriteStream(join(comfy.outputDir, 'big.bin')));
    const received = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: gateway.port, path: '/view?filename=big.bin&type=output', headers: { 'x-api-key': key.api_key } },
        (res) => {
          assert.equal(res.statusCode, 200);
          let bytes = 0;
          res.on('data', (chunk: Buffer) => (bytes += chunk.length));
          res.on('end', () => resolve(bytes));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(received, SIZE);
    const growth = (await peakRssMb(gateway.pid)) - idlePeakMb;
    assert.ok(growth < MAX_GROWTH_MB, `peak RSS grew by ${growth.toFixed(0)} MB`);
  });
});
