// Loaded into a gateway process with `--import`: each SIGUSR2 moves its wall clock (Date.now, new Date()) 31 days on, so a test can reach what happens after a month.

const SHIFT_MS = 31 * 86_400_000;
const RealDate = Date;
let offsetMs = 0;

class ShiftedDate extends RealDate {
  constructor(...args: unknown[]) {
    if (args.length === 0) super(RealDate.now() + offsetMs);
    else super(...(args as [string]));
  }

  static override now(): number {
    return RealDate.now() + offsetMs;
  }
}

globalThis.Date = ShiftedDate as DateConstructor;
process.on('SIGUSR2', () => (offsetMs += SHIFT_MS));
