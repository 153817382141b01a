// The OpenAPI document with one path per registered workflow: its run endpoint, with a request schema built from its inputs.

import type { StoreLog } from '../store/postgres/database.js';
import type { WorkflowInput, WorkflowRecord, WorkflowStore } from '../store/types.js';

/** The template path every workflow's own run path is made from (described in the static document). */
export const WORKFLOW_RUN_PATH = '/api/gateway/workflows/{name}/run';

type Json = Record<string, unknown>;

/** The JSON schema of one input's value. */
export function inputSchema(input: WorkflowInput): Json {
  const common: Json = {
    ...(input.description !== undefined ? { description: input.description } : {}),
    ...(Object.hasOwn(input, 'default') ? { default: input.default } : {}),
  };
  switch (input.type) {
    case 'integer':
    case 'number':
      return {
        type: input.type,
        ...(input.min !== undefined ? { minimum: input.min } : {}),
        ...(input.max !== undefined ? { maximum: input.max } : {}),
        ...common,
      };
    case 'string':
    case 'boolean':
      return { type: input.type, ...common };
    case 'enum':
      return { enum: input.values ?? [], ...common };
    case 'image':
      return {
        oneOf: [
          {
            type: 'string',
            minLength: 1,
            description: 'The name of a file this key uploaded (POST /upload/image), or a data: URL (data:image/png;base64,...)',
          },
          { type: 'object', required: ['base64'], additionalProperties: false, properties: { base64: { type: 'string', contentEncoding: 'base64' } } },
          {
            type: 'object',
            required: ['url'],
            additionalProperties: false,
            properties: { url: { type: 'string', format: 'uri', description: 'http or https' } },
          },
        ],
        ...common,
      };
  }
}

/** The schema of a workflow's `inputs` object: each input's schema, required where it has no default, nothing else. */
export function inputsSchema(workflow: WorkflowRecord): Json {
  const required = Object.entries(workflow.inputs)
    .filter(([, input]) => !Object.hasOwn(input, 'default'))
    .map(([name]) => name);
  return {
    type: 'object',
    additionalProperties: false,
    properties: Object.fromEntries(Object.entries(workflow.inputs).map(([name, input]) => [name, inputSchema(input)])),
    ...(required.length > 0 ? { required } : {}),
  };
}

/** How long a built document is served again before the workflows are read anew. */
const DOCUMENT_TTL_MS = 1000;

/**
 * The document with the workflows' paths (see openApiWithWorkflows), built at most once a second and
 * shared by the requests meanwhile: it is served without a key, so no caller makes the gateway read
 * every workflow on each request.
 */
export function openApiSource<D extends { paths: object }>(document: D, store: WorkflowStore, log: StoreLog): () => Promise<D> {
  let cached: { at: number; built: Promise<D> } | null = null;
  return () => {
    if (!cached || Date.now() - cached.at > DOCUMENT_TTL_MS) cached = { at: Date.now(), built: openApiWithWorkflows(document, store, log) };
    return cached.built;
  };
}

/**
 * `document` with, for each workflow, the path `/api/gateway/workflows/<name>/run`: the template run
 * path's operation with the workflow's own description and its inputs' schema. When the store cannot
 * be read, the document without them (and a warning in the log).
 */
export async function openApiWithWorkflows<D extends { paths: object }>(document: D, store: WorkflowStore, log: StoreLog): Promise<D> {
  const workflows = await store.list().catch((error: unknown) => {
    log.warn(
      { event: 'workflows_unreadable', err: (error as Error).message },
      'the OpenAPI document is served without the workflows: their store cannot be read',
    );
    return [];
  });
  if (workflows.length === 0) return document;
  const template = (document.paths as Record<string, { post: Json }>)[WORKFLOW_RUN_PATH]!.post;
  const paths: Record<string, unknown> = { ...document.paths };
  for (const workflow of workflows) paths[`/api/gateway/workflows/${workflow.name}/run`] = { post: workflowOperation(template, workflow) };
  return { ...document, paths };
}

/** The template's run operation made specific to one workflow: no `name` parameter, its inputs' schema. */
function workflowOperation(template: Json, workflow: WorkflowRecord): Json {
  const rest: Json = { ...template };
  delete rest.parameters;
  const requestBody = template.requestBody as { content: { 'application/json': { schema: Json } } };
  const schema = requestBody.content['application/json'].schema;
  const inputs = inputsSchema(workflow);
  const required = inputs.required !== undefined ? ['inputs'] : [];
  return {
    ...rest,
    summary: `Runs the workflow ${workflow.name}`,
    ...(workflow.description ? { description: workflow.description } : {}),
    requestBody: {
      ...requestBody,
      content: {
        'application/json': {
          schema: { ...schema, properties: { ...(schema.properties as Json), inputs }, ...(required.length > 0 ? { required } : {}) },
        },
      },
    },
  };
}
