// A fake ComfyUI for the gateway to run as its child: `node fake-comfyui-child.js --port N [--step-delay-ms MS]` listens on N and says so.

import { dirname } from 'node:path';
import { startFakeComfyUI } from './fake-comfyui.js';

/** The value after `flag` in the arguments, as a whole number. */
function numberAfter(flag: string): number | undefined {
  const at = process.argv.indexOf(flag);
  const value = at < 0 ? undefined : Number(process.argv[at + 1]);
  return Number.isInteger(value) ? value : undefined;
}

const port = numberAfter('--port');
if (port === undefined) {
  console.error('usage: fake-comfyui-child.js --port N [--step-delay-ms MS]');
  process.exit(2);
}
const stepDelayMs = numberAfter('--step-delay-ms');
const fake = await startFakeComfyUI({ port, ...(stepDelayMs === undefined ? {} : { stepDelayMs }) });
// The folder is named so that a test can remove it after killing this process.
console.log(`fake ComfyUI listening on port ${fake.port}, pid ${process.pid}, folder ${dirname(fake.outputDir)}`);
console.error('fake ComfyUI: a line on stderr');
process.once('SIGTERM', () => {
  console.log(`fake ComfyUI stopping on SIGTERM, pid ${process.pid}`);
  void fake.close().then(() => process.exit(0));
});
