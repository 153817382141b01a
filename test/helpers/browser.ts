// Launches Debian's Chromium through playwright-core for page tests, and names where screenshots go.

import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Why page tests cannot run here, or undefined when they can. */
export const browserUnavailable = existsSync(CHROMIUM_PATH) ? undefined : `${CHROMIUM_PATH} is not installed (apt-get install chromium)`;

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: ['--no-sandbox'] });
}

/** The path of a screenshot under test-results/ (created if needed). */
export async function screenshotPath(name: string): Promise<string> {
  const dir = resolve(import.meta.dirname, '../../../test-results');
  await mkdir(dir, { recursive: true });
  return resolve(dir, `${name}.png`);
}
