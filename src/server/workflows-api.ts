// The workflow registry endpoints (/api/gateway/workflows…): admins register, replace and delete; every key lists and reads.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { forbidden, methodNotAllowed, storeUnavailable, workflowNotFound } from '../errors.js';
import type { JsonBodyParser } from '../isolation/large-json.js';
import type { AuditStore, KeyRecord, WorkflowRecord, WorkflowStore } from '../store/types.js';
import { MAX_WORKFLOW_BODY_BYTES, parseWorkflowDefinition } from '../workflows/definition.js';
import { checkOnlyServing } from '../workflows/openai-images.js';
import { readJsonBody } from './body.js';
import { sendJson } from './respond.js';

export interface WorkflowApiContext {
  workflows: WorkflowStore;
  audit: AuditStore;
  /** Parses a registration body as parseExactJson does, a large one with many exact numbers in a worker thread (the JsonRewriter prompts use). */
  bodies: JsonBodyParser;
  /** The client's address, as written to the audit trail. */
  clientIp(req: IncomingMessage): string;
  /** Current time in Unix seconds. */
  now(): number;
}

/** A workflow as a key sees it: admins also see its graph (`prompt`). */
export function workflowView(workflow: WorkflowRecord, key: KeyRecord): Record<string, unknown> {
  const { prompt, ...rest } = workflow;
  return key.role === 'admin' ? { ...rest, prompt } : rest;
}

/**
 * GET /api/gateway/workflows: every workflow, by name (any key).
 * @throws GatewayError 405 for another method
 */
export async function listWorkflows(req: IncomingMessage, res: ServerResponse, key: KeyRecord, ctx: WorkflowApiContext): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed(['GET']);
  const workflows = await ctx.workflows.list();
  sendJson(res, 200, { workflows: workflows.map((workflow) => workflowView(workflow, key)) });
}

/**
 * GET (any key), PUT and DELETE (admin keys) /api/gateway/workflows/{name}. PUT answers 201 for a new
 * workflow and 200 for a replaced one; both are written to the audit trail.
 * @throws GatewayError 400 INVALID_REQUEST (PUT), 403 for a user key's change, 404 WORKFLOW_NOT_FOUND, 405, 503
 */
export async function handleWorkflow(req: IncomingMessage, res: ServerResponse, key: KeyRecord, name: string, ctx: WorkflowApiContext): Promise<void> {
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  if (method === 'GET') {
    const workflow = await ctx.workflows.get(name);
    if (!workflow) throw workflowNotFound(name);
    return sendJson(res, 200, workflowView(workflow, key));
  }
  if (method !== 'PUT' && method !== 'DELETE') throw methodNotAllowed(['GET', 'PUT', 'DELETE']);
  if (key.role !== 'admin') throw forbidden('Registering and deleting workflows needs an admin key.');
  if (method === 'PUT') {
    const definition = parseWorkflowDefinition(name, await readJsonBody(req, MAX_WORKFLOW_BODY_BYTES, (text) => ctx.bodies.parseBody(text)));
    await checkOnlyServing(ctx.workflows, definition);
    const { record, created } = await ctx.workflows.put(definition, ctx.now()).catch((error: unknown) => {
      throw storeUnavailable(error, 'workflow');
    });
    await audit(req, key, created ? 'workflow.create' : 'workflow.replace', name, ctx);
    return sendJson(res, created ? 201 : 200, workflowView(record, key));
  }
  const deleted = await ctx.workflows.delete(name).catch((error: unknown) => {
    throw storeUnavailable(error, 'workflow');
  });
  if (!deleted) throw workflowNotFound(name);
  await audit(req, key, 'workflow.delete', name, ctx);
  sendJson(res, 200, { message: `Workflow ${name} deleted.` });
}

/** Appends a registry change to the audit trail; a change that was made is not undone when its line cannot be written. */
async function audit(req: IncomingMessage, key: KeyRecord, action: string, name: string, ctx: WorkflowApiContext): Promise<void> {
  await ctx.audit.append({ ts: ctx.now(), actor: key.key_id, action, ip: ctx.clientIp(req), details: { workflow: name } }).catch(() => undefined);
}
