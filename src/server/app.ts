// The gateway: one HTTP server that answers its own endpoints, checks keys and limits, counts usage and proxies the rest to ComfyUI.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { identify, type Caller } from '../auth/authenticate.js';
import { isPublicPath } from '../auth/public-paths.js';
import type { GatewayConfig } from '../config/schema.js';
import { authRequired, GatewayError, invalidRequest, rateLimitExceeded } from '../errors.js';
import { createHttpProxy } from '../proxy/http.js';
import { createWebSocketProxy } from '../proxy/websocket.js';
import { rateLimitHeaders, retryAfterSeconds } from '../ratelimit/headers.js';
import type { CounterStore, KeyRecord, KeyStore, UsageStore } from '../store/types.js';
import { handleAdminRoute } from './admin-api.js';
import { rejectUpgrade, sendError, sendJson } from './respond.js';
import { matchGatewayRoute, pathOf } from './routes.js';

export interface GatewayStores {
  keys: KeyStore;
  usage: UsageStore;
  counters: CounterStore;
}

export interface Gateway {
  server: Server;
  /** Starts listening; resolves the bound address. */
  listen(): Promise<AddressInfo>;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), persists everything and closes the stores. */
  close(graceMs?: number): Promise<void>;
}

const READY_PROBE_TIMEOUT_MS = 2000;

/** Wires the HTTP server to already-open stores. */
export function createGatewayServer(config: GatewayConfig, stores: GatewayStores): Gateway {
  const { keys, usage, counters } = stores;
  const proxy = createHttpProxy({ upstream: config.upstream, headersTimeoutMs: config.upstreamTimeoutMs });
  const webSockets = createWebSocketProxy({
    upstream: config.upstream,
    handshakeTimeoutMs: Math.min(config.upstreamTimeoutMs, 30_000),
    pingIntervalMs: config.wsPingIntervalMs,
  });
  const now = (): number => Date.now() / 1000;
  const adminContext = { mode: config.mode, keys, usage, now };

  /** Checks and counts a keyed request against its limit; resolves the response headers, or throws 429. */
  async function admit(key: KeyRecord, at: number): Promise<Record<string, string>> {
    const result = await counters.hit(key.key_id, key.rate_limit, at);
    const headers = rateLimitHeaders(result, at);
    if (!result.allowed) {
      usage.recordRateLimited(key.key_id, at);
      throw rateLimitExceeded(result.limit, retryAfterSeconds(result, at), headers);
    }
    keys.touch(key.key_id, at);
    return headers;
  }

  /** Records one usage entry when the response ends, whether it completed or the client went away. */
  function recordOnClose(res: ServerResponse, key: KeyRecord, method: string, endpoint: string, at: number): void {
    res.once('close', () => {
      const status = res.statusCode;
      usage.record({
        key_id: key.key_id,
        endpoint,
        timestamp: at,
        duration: now() - at,
        success: res.writableFinished && status >= 200 && status < 400,
        metadata: { method, status },
      });
    });
  }

  async function handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req.url);
    if (path === null) throw invalidRequest('The request target must be a path starting with /.', [{ field: 'target', problem: 'not origin-form' }]);
    const route = matchGatewayRoute(path);
    if (route?.name === 'healthz') return sendJson(res, 200, { status: 'ok' });
    if (route?.name === 'readyz') return readiness(res);
    if (!route && config.mode === 'off') return proxy.forward(req, res);

    const caller = identify(req, keys);
    if (caller instanceof GatewayError) throw caller;
    if (caller.kind === 'anonymous') {
      if (route) return handleAdminRoute(route, req, res, caller, adminContext);
      if (config.mode === 'required' && !isPublicPath(req.method, path, config.publicPaths)) throw authRequired();
      return proxy.forward(req, res);
    }
    const at = now();
    for (const [name, value] of Object.entries(await admit(caller.key, at))) res.setHeader(name, value);
    recordOnClose(res, caller.key, req.method ?? 'GET', path, at);
    if (route) return handleAdminRoute(route, req, res, caller, adminContext);
    return proxy.forward(req, res);
  }

  async function readiness(res: ServerResponse): Promise<void> {
    const [upstream, store] = await Promise.all([
      proxy.probe('/', READY_PROBE_TIMEOUT_MS).then(
        (status) => (status < 500 ? 'ok' : `answered ${status}`),
        (error: Error) => `unreachable: ${error.message}`,
      ),
      keys.checkWritable().then(
        () => (usage.lastWriteError() ? `usage writes failing: ${usage.lastWriteError()!.message}` : 'ok'),
        (error: Error) => `not writable: ${error.message}`,
      ),
    ]);
    const ready = upstream === 'ok' && store === 'ok';
    sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', upstream, store });
  }

  async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const path = pathOf(req.url);
    if (path === null || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      throw invalidRequest('Only WebSocket upgrades of a path are accepted.', [{ field: 'upgrade', problem: 'not a websocket upgrade' }]);
    }
    let caller: Caller = { kind: 'anonymous' };
    if (config.mode !== 'off') {
      const identified = identify(req, keys);
      if (identified instanceof GatewayError) throw identified;
      caller = identified;
    }
    if (caller.kind === 'anonymous') {
      if (config.mode === 'required') throw authRequired();
      webSockets.relay(req, socket, head, () => undefined);
      return;
    }
    const key = caller.key;
    const at = now();
    await admit(key, at);
    webSockets.relay(req, socket, head, ({ status, connectedMs }) => {
      usage.record({
        key_id: key.key_id,
        endpoint: path,
        timestamp: at,
        duration: connectedMs / 1000,
        success: status === 101,
        metadata: { method: 'GET', status },
      });
    });
  }

  const server = createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    handleRequest(req, res).catch((error: unknown) => sendError(res, error));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    handleUpgrade(req, socket, head).catch((error: unknown) => rejectUpgrade(socket, error));
  });
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    socket.destroy();
  });

  return {
    server,
    listen: () =>
      new Promise<AddressInfo>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.listen, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      }),
    async close(graceMs = 5000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      webSockets.close();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs).unref();
      await closed;
      clearTimeout(timer);
      await proxy.close();
      await Promise.all([keys.close(), usage.close(), counters.close()]);
    },
  };
}

