// Runs nginx from a private prefix in a temp dir: a fixed-JSON upstream, or a plain reverse proxy in front of one.

import { mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { spawnService, waitForPort } from './processes.mjs';

/** What the upstream answers to every request: a /prompt acknowledgement of about 80 bytes. */
export const PROMPT_RESPONSE = '{"prompt_id":"0b8a1e8c-3d0c-4c47-9b2a-5f1e6d7c8b9a","number":1,"node_errors":{}}';

/** Starts nginx answering every request with PROMPT_RESPONSE on 127.0.0.1:port. */
export function startUpstream(dir, port) {
  const server = `
    server {
      listen 127.0.0.1:${port};
      location / {
        default_type application/json;
        return 200 '${PROMPT_RESPONSE}';
      }
    }`;
  return startNginx(join(dir, 'nginx-upstream'), server, port);
}

/** Bodies of any size, passed on as they arrive (in memory buffers of up to 4 MiB, never spooled to temp files), as the gateway does. */
const STREAMING = `client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffers 64 64k;
        proxy_max_temp_file_size 0;`;

/**
 * Starts nginx on 127.0.0.1:port as a keep-alive reverse proxy to 127.0.0.1:upstreamPort; a `streaming`
 * proxy is set for big transfers (see STREAMING).
 */
export function startProxy(dir, port, upstreamPort, { streaming = false } = {}) {
  const server = `
    upstream comfy {
      server 127.0.0.1:${upstreamPort};
      keepalive 64;
      keepalive_requests 100000000;
    }
    server {
      listen 127.0.0.1:${port};
      location / {
        proxy_pass http://comfy;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        ${streaming ? STREAMING : ''}
      }
    }`;
  return startNginx(join(dir, streaming ? 'nginx-streaming-proxy' : 'nginx-proxy'), server, port);
}

async function startNginx(prefix, server, port) {
  mkdirSync(join(prefix, 'temp'), { recursive: true });
  const config = join(prefix, 'nginx.conf');
  writeFileSync(config, nginxConfig(prefix, server));
  const service = spawnService('nginx', ['-p', prefix, '-c', config, '-e', join(prefix, 'error.log')]);
  await waitForPort(port, service);
  return service;
}

function nginxConfig(prefix, server) {
  const temp = (name) => `${name}_temp_path ${join(prefix, 'temp', name)};`;
  return `
    ${process.getuid() === 0 ? `user ${userInfo().username};` : ''}
    daemon off;
    worker_processes 1;
    pid ${join(prefix, 'nginx.pid')};
    events { worker_connections 4096; }
    http {
      access_log off;
      keepalive_timeout 65s;
      keepalive_requests 100000000;
      ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n      ')}
      ${server}
    }
  `;
}
