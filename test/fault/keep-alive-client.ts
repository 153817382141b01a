// A keep-alive HTTP client for load, fault and fuzz tests: many requests over a few connections, header bytes as given.

import { Agent, request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** When the whole answer had arrived (ms since the epoch). */
  endedAt: number;
  /** The body parsed as JSON (throws if it is not). */
  json<T = Record<string, unknown>>(): T;
}

export interface Call {
  method?: string;
  headers?: OutgoingHttpHeaders;
  /** A string or Buffer is sent as is; anything else as JSON. */
  body?: unknown;
  /** The loopback address to send from (any of 127.0.0.0/8), so a test can appear as many clients. */
  localAddress?: string;
}

/** Requests to one gateway over a pool of keep-alive connections; the target is sent exactly as written. */
export class KeepAliveClient {
  private readonly agent: Agent;
  private readonly url: URL;

  constructor(baseUrl: string, maxSockets = 16) {
    this.url = new URL(baseUrl);
    this.agent = new Agent({ keepAlive: true, maxSockets });
  }

  /** Sends one request; rejects only when the connection fails (e.g. the gateway died). */
  send(target: string, call: Call = {}): Promise<Answer> {
    const headers: OutgoingHttpHeaders = { ...call.headers };
    let body: string | Buffer | undefined;
    if (call.body !== undefined) {
      if (typeof call.body === 'string' || Buffer.isBuffer(call.body)) body = call.body;
      else {
        body = JSON.stringify(call.body);
        headers['content-type'] ??= 'application/json';
      }
    }
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.url.hostname,
          port: this.url.port,
          method: call.method ?? 'GET',
          path: target,
          headers,
          agent: this.agent,
          ...(call.localAddress ? { localAddress: call.localAddress } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            resolve({ status: res.statusCode!, headers: res.headers, text, endedAt: Date.now(), json: <T>() => JSON.parse(text) as T });
          });
          res.on('error', reject);
          res.on('aborted', () => reject(new Error('response aborted')));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Closes every pooled connection. */
  close(): void {
    this.agent.destroy();
  }
}

/** A header value whose bytes on the wire are `text` in UTF-8 (node sends header strings as latin1). */
export function utf8Header(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/** Runs `task` over `items` with at most `limit` running at once; resolves the results in order. */
export async function inParallel<T, R>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
