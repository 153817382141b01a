// The command line of a bench script that measures one built checkout: `[CHECKOUT] [--NAME N]...`.

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `{checkout, ...counts}`: CHECKOUT (this checkout by default) as an absolute path, and each option of `defaults`
 * (`{'--jobs': 30000}` gives `jobs`) as given or its default. Exits with `usage` when one is not a positive whole number.
 */
export function checkoutArgs(usage, defaults) {
  const args = process.argv.slice(2);
  const checkout = args[0] && !args[0].startsWith('--') ? resolve(args[0]) : fileURLToPath(new URL('..', import.meta.url));
  const counts = {};
  for (const [flag, fallback] of Object.entries(defaults)) {
    const at = args.indexOf(flag);
    const value = at === -1 ? fallback : Number(args[at + 1]);
    if (!Number.isInteger(value) || value < 1) {
      console.error(`usage: ${usage}`);
      process.exit(2);
    }
    counts[flag.slice(2)] = value;
  }
  return { checkout, ...counts };
}
