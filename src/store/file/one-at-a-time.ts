// A queue for operations on the same files: each task starts once the ones given before it have settled.

/** A runner of tasks one at a time, in the order given; a task that fails does not stop the next. */
export function oneAtATime(): <R>(task: () => Promise<R>) => Promise<R> {
  let last: Promise<unknown> = Promise.resolve();
  return <R>(task: () => Promise<R>): Promise<R> => {
    const run = last.then(task);
    last = run.catch(() => undefined);
    return run;
  };
}
