// Whether a request comes straight from this machine, the only place key management works without a key.

import type { IncomingMessage } from 'node:http';
import { isLoopbackName, parseHost } from './host-names.js';

function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/** Headers that proxies add to say whom they forward for; any one of them makes a request non-local. */
const PROXY_HEADERS = new Set([
  'forwarded',
  'via',
  'x-real-ip',
  'x-client-ip',
  'client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
  'x-original-forwarded-for',
  'x-forwarded',
  'x-originating-ip',
  'x-envoy-external-address',
]);

/**
 * Why a request is not local management, or null when it is: a direct loopback connection that
 * carries no proxy header of any kind (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`, `Via`, …), names a
 * loopback host (`localhost`, 127.x.x.x, `[::1]`) on the port it arrived at, and was not sent by a web
 * page (no `Origin`; `Sec-Fetch-Site`, if any, `none`: an address typed in the browser). A local reverse
 * proxy, a DNS-rebound page, or a script on the gateway's own origin (a ComfyUI extension, an uploaded
 * page) is therefore not local.
 */
export function whyNotLocal(req: IncomingMessage): string | null {
  if (!isLoopbackAddress(req.socket.remoteAddress)) return 'the connection does not come from this machine';
  const proxyHeader = Object.keys(req.headers).find((name) => name.startsWith('x-forwarded-') || PROXY_HEADERS.has(name));
  if (proxyHeader) return `it carries ${proxyHeader}, so it came through a proxy`;
  const host = parseHost(req.headers.host);
  if (!host || !isLoopbackName(host.hostname)) return 'its Host is not localhost, 127.x.x.x or [::1]';
  if ((host.port ?? 80) !== req.socket.localPort) return "its Host names another port than the gateway's";
  const site = req.headers['sec-fetch-site'];
  if (req.headers.origin !== undefined || (site !== undefined && site !== 'none'))
    return 'it was sent by a web page, where any script of the page (its own origin included) could send it';
  return null;
}
