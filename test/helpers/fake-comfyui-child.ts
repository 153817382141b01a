// A fake ComfyUI for the gateway to run as its child: `node fake-comfyui-child.js --port N [--step-delay-ms MS] [--start-delay-ms MS] [--tag T]` listens on N and says so.

import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFakeComfyUI } from './fake-comfyui.js';

/** The value after `flag` in the arguments, or undefined. */
function valueAfter(flag: string): string | undefined {
  const at = process.argv.indexOf(flag);
  return at < 0 ? undefined : process.argv[at + 1];
}

/** The value after `flag` in the arguments, as a whole number. */
function numberAfter(flag: string): number | undefined {
  const value = Number(valueAfter(flag));
  return Number.isInteger(value) ? value : undefined;
}

const port = numberAfter('--port');
if (port === undefined) {
  console.error('usage: fake-comfyui-child.js --port N [--step-delay-ms MS] [--start-delay-ms MS] [--tag T]');
  process.exit(2);
}
const stepDelayMs = numberAfter('--step-delay-ms');
// A child's own name among several (e.g. `--tag {index}`), said in its first line.
const tag = valueAfter('--tag');
// Like ComfyUI loading its nodes: nothing answers on the port for a while.
await sleep(numberAfter('--start-delay-ms') ?? 0);
const fake = await startFakeComfyUI({ port, ...(stepDelayMs === undefined ? {} : { stepDelayMs }) });
// The folder is named so that a test can remove it after killing this process.
console.log(`fake ComfyUI listening on port ${fake.port}, pid ${process.pid}, ${tag === undefined ? '' : `tag ${tag}, `}folder ${dirname(fake.outputDir)}`);
console.error('fake ComfyUI: a line on stderr');
process.once('SIGTERM', () => {
  console.log(`fake ComfyUI stopping on SIGTERM, pid ${process.pid}`);
  void fake.close().then(() => process.exit(0));
});
