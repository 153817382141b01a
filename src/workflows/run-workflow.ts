// POST /api/gateway/workflows/{name}/run: a registered workflow's graph with the run's inputs set, run as POST /api/gateway/run runs a prompt.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { invalidRequest } from '../errors.js';
import type { IsolatedCaller, IsolationContext } from '../isolation/context.js';
import { answerRun, checkRunFirst, parseRunOptions, RUN_OPTION_FIELDS, unknownFields, type Problem } from '../isolation/run.js';
import type { Reservation } from '../jobs/job-service.js';
import type { JobWaiter } from '../jobs/job-waiter.js';
import { readJsonBody } from '../server/body.js';
import { watchClientGone } from '../server/respond.js';
import type { WorkflowRecord } from '../store/types.js';
import { isObject } from './definition.js';
import { MAX_IMAGE_INPUT_BYTES, resolveImages, type ImageFetching } from './image-input.js';
import { buildPrompt, checkRunInputs, type ImageSource } from './run-inputs.js';

/** Largest body of a workflow run: room for one image input at its largest, in base64. */
export const MAX_WORKFLOW_RUN_BODY_BYTES = Math.ceil((MAX_IMAGE_INPUT_BYTES * 4) / 3) + 1024 * 1024;

/**
 * Reads the run's body strictly (`inputs` and the run options; nothing else; its numbers as written, see parseExactJson), checks its inputs
 * against the workflow (400 INVALID_REQUEST listing every problem), makes each image input the key's
 * file (after the checks of checkRunFirst when an image is to be fetched or stored, so a refused run stores nothing; the run counts
 * against its key's `max_queued` from then on; a client that goes away while they are fetched ends the run there), and runs a copy of the graph
 * with the inputs set (see answerRun). The prompt is the workflow's,
 * so a `workflows_only` key may run it; every other rule of its policy still applies.
 * @throws GatewayError 400 INVALID_REQUEST, 403 for an image the key does not own, and as answerRun
 */
export async function runWorkflow(
  ctx: IsolationContext,
  waiter: JobWaiter,
  req: IncomingMessage,
  res: ServerResponse,
  caller: IsolatedCaller,
  workflow: WorkflowRecord,
  fetching: ImageFetching,
): Promise<void> {
  const body = await readJsonBody(req, MAX_WORKFLOW_RUN_BODY_BYTES, (text) => ctx.rewriter.parseBody(text));
  if (body !== undefined && !isObject(body)) throw invalidRequest('The body must be a JSON object with inputs.', [{ field: 'body', problem: 'not an object' }]);
  const fields = body ?? {};
  const problems: Problem[] = [];
  unknownFields(fields, ['inputs', ...RUN_OPTION_FIELDS], problems);
  const run = parseRunOptions(fields, problems);
  const { values, images } = checkRunInputs(workflow, fields.inputs, problems);
  if (problems.length > 0) throw invalidRequest('The workflow run request is not valid.', problems);
  // Nothing is fetched or stored for a run its webhook, policy or quotas refuse: its images' names are not known yet, so the check sees the names given or none.
  // Its place among the key's jobs is kept meanwhile, so that runs sent together cannot all pass the check before any is admitted.
  let reservation: Reservation | null = null;
  if (Object.values(images).some((source) => source.kind !== 'upload')) {
    const namesGiven = Object.fromEntries(Object.entries(images).map(([name, source]) => [name, source.kind === 'upload' ? source.name : '']));
    reservation = await checkRunFirst(ctx, caller, run, buildPrompt(workflow, { ...values, ...namesGiven }), { workflow: true });
  }
  try {
    const imageNames = await imagesWhileConnected(ctx, res, caller, images, fetching);
    if (!imageNames) return;
    await answerRun(ctx, waiter, req, res, caller, run, buildPrompt(workflow, { ...values, ...imageNames }), { workflow: true }, reservation);
  } finally {
    if (reservation) ctx.jobs.release(reservation);
  }
}

/**
 * The run's image names (see resolveImages), or null when the client went away while they were fetched: the fetches are
 * cut, and the run ends there, with nothing stored or queued and no one to answer.
 */
async function imagesWhileConnected(
  ctx: IsolationContext,
  res: ServerResponse,
  caller: IsolatedCaller,
  images: Record<string, ImageSource>,
  fetching: ImageFetching,
): Promise<Record<string, string> | null> {
  const clientGone = watchClientGone(res);
  try {
    return await resolveImages(ctx, caller, images, fetching, clientGone.signal);
  } catch (error) {
    if (error === clientGone.signal.reason) return null;
    throw error;
  } finally {
    clientGone.stop();
  }
}
