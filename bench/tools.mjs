// Programs the bench runs (nginx, wrk, curl, perf, valgrind): installed with apt-get when missing, as root.

import { execFileSync, spawnSync } from 'node:child_process';

/** Installs with apt-get each of `tools` not on the PATH (its package from `packages`, else its own name); without root, says what to install. */
export function ensureTools(tools, packages = {}) {
  const missing = tools.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0).map((tool) => packages[tool] ?? tool);
  if (missing.length === 0) return;
  if (process.getuid() !== 0) throw new Error(`the bench needs ${missing.join(' and ')}: apt-get install ${missing.join(' ')}`);
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] installing ${missing.join(', ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
}
