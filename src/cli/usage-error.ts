// The CLI's two kinds of failure: bad arguments (exit 2) and everything else (exit 1).

/** The command line cannot be used as given; the CLI prints the message and exits with code 2. */
export class UsageError extends Error {
  /** The command whose help explains the right usage, e.g. `comfy-gate keys update --help`. */
  readonly helpCommand: string;

  constructor(message: string, helpCommand = 'comfy-gate --help') {
    super(message);
    this.name = 'UsageError';
    this.helpCommand = helpCommand;
  }
}

/** The arguments were right but the command could not be done (an unknown key_id, say); exit code 1. */
export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandError';
  }
}
