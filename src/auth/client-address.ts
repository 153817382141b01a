// Whether a request comes straight from this machine, the only place key management works without a key.

import type { IncomingMessage } from 'node:http';

function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/**
 * True for a direct loopback connection. A request that carries `X-Forwarded-For` or `Forwarded` came
 * through a proxy, so its loopback source says nothing about the real client, and it is not local.
 */
export function isDirectLoopback(req: IncomingMessage): boolean {
  if (req.headers['x-forwarded-for'] !== undefined || req.headers.forwarded !== undefined) return false;
  return isLoopbackAddress(req.socket.remoteAddress);
}
