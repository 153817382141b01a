// Checks a WebSocket opening handshake (RFC 6455 §4.2.1) before anything is counted or opened at ComfyUI.

import type { IncomingMessage } from 'node:http';
import { invalidRequest } from '../errors.js';
import { isToken } from './http-token.js';

/** 16 bytes in canonical base64: 21 free characters, a last one with no leftover bits, and the padding. */
const SEC_WEBSOCKET_KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/** True for a request that asks for a WebSocket, well formed or not. */
export function asksForWebSocket(req: IncomingMessage): boolean {
  return req.headers.upgrade !== undefined && /\bwebsocket\b/i.test(req.headers.upgrade);
}

/**
 * Refuses a malformed WebSocket upgrade, naming each problem: the method must be GET, `Upgrade`
 * websocket, `Connection` must list upgrade, `Sec-WebSocket-Key` 16 bytes in base64,
 * `Sec-WebSocket-Version` 13, and `Sec-WebSocket-Protocol`, if sent, a list of distinct tokens.
 * @throws GatewayError 400 INVALID_REQUEST
 */
export function checkWebSocketHandshake(req: IncomingMessage): void {
  const { headers } = req;
  const problems: Array<{ field: string; problem: string }> = [];
  if (req.method !== 'GET') problems.push({ field: 'method', problem: 'must be GET' });
  if ((headers.upgrade ?? '').trim().toLowerCase() !== 'websocket') problems.push({ field: 'Upgrade', problem: 'must be websocket' });
  if (!listOf(headers.connection).some((token) => token.toLowerCase() === 'upgrade')) problems.push({ field: 'Connection', problem: 'must include upgrade' });
  const key = headers['sec-websocket-key'];
  if (typeof key !== 'string' || !SEC_WEBSOCKET_KEY.test(key)) problems.push({ field: 'Sec-WebSocket-Key', problem: 'must be 16 bytes in base64' });
  if (headers['sec-websocket-version'] !== '13') problems.push({ field: 'Sec-WebSocket-Version', problem: 'must be 13' });
  const protocols = headers['sec-websocket-protocol'];
  if (protocols !== undefined) {
    const names = listOf(protocols);
    if (!names.every((name) => isToken(name)) || new Set(names).size !== names.length) {
      problems.push({ field: 'Sec-WebSocket-Protocol', problem: 'must be a comma-separated list of distinct tokens' });
    }
  }
  if (problems.length > 0) throw invalidRequest('This is not a well-formed WebSocket upgrade (RFC 6455 §4.1).', problems);
}

/** The items of a comma-separated header, trimmed (an empty item stays, so that it can be refused). */
function listOf(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(',').map((item) => item.trim());
}
