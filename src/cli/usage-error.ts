// The CLI's two kinds of failure: bad arguments (exit 2) and everything else (exit 1).

/** The command line cannot be used as given; the CLI prints the message and exits with code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
