// A raw HTTP client for tests: sends the request target byte for byte (no URL normalisation) and reads the whole answer.

import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';

export interface TestResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON (throws if it is not). */
  json<T = Record<string, unknown>>(): T;
}

export interface TestRequest {
  method?: string;
  headers?: OutgoingHttpHeaders;
  body?: string | Buffer | object;
  /** Sent as the X-API-Key header. */
  key?: string;
  /** The loopback address to connect from (default 127.0.0.1): another one is another client. */
  localAddress?: string;
}

/**
 * Sends `method target` to `baseUrl` exactly as written; `key` is sent as X-API-Key; an object body as JSON.
 * @example const res = await send(gw.url, '/api/keys', { method: 'POST', body: { name: 'a' } });
 */
export function send(baseUrl: string, target: string, options: TestRequest = {}): Promise<TestResponse> {
  const url = new URL(baseUrl);
  const headers: OutgoingHttpHeaders = { ...options.headers };
  let body: string | Buffer | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' || Buffer.isBuffer(options.body) ? options.body : JSON.stringify(options.body);
    if (typeof options.body === 'object' && !Buffer.isBuffer(options.body) && headers['content-type'] === undefined)
      headers['content-type'] = 'application/json';
  }
  if (options.key !== undefined) headers['x-api-key'] = options.key;
  return new Promise((resolve, reject) => {
    const where = { host: url.hostname, port: url.port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) };
    const req = httpRequest({ ...where, method: options.method ?? 'GET', path: target, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Starts a POST of `body` as JSON with `key` as X-API-Key, for a client that hangs up before its answer: the test destroys the request returned. */
export function postToHangUp(baseUrl: string, target: string, key: string, body: object): ClientRequest {
  const url = new URL(baseUrl);
  const req = httpRequest({
    host: url.hostname,
    port: url.port,
    method: 'POST',
    path: target,
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    agent: false,
  });
  req.on('error', () => undefined);
  req.end(JSON.stringify(body));
  return req;
}

/** Sends raw bytes (for what an HTTP client library would refuse to send) and resolves the status of the answer. */
export function rawStatus(port: number, request: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      data += chunk;
      const match = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (match) {
        socket.destroy();
        resolve(Number(match[1]));
      }
    });
    socket.on('error', reject);
  });
}
