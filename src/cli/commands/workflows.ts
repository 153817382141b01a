// `comfy-gate workflows …`: the registered workflows of a store directory (workflows.json) or a database, listed, shown, registered and deleted from the shell.

import { readFile } from 'node:fs/promises';
import { GatewayError } from '../../errors.js';
import { parseExactJson, stringifyExactJson } from '../../json/exact-json.js';
import type { WorkflowRecord, WorkflowStore } from '../../store/types.js';
import { parseWorkflowDefinition } from '../../workflows/definition.js';
import { checkOnlyServing } from '../../workflows/openai-images.js';
import {
  chooseSubcommand,
  DATABASE_URL_HELP,
  parseCommandLine,
  stringFlag,
  USER_DIRECTORY_HELP,
  type CliContext,
  type FlagSpec,
  type FlagValues,
} from '../options.js';
import { fields, printable, printJson, table, utcTime } from '../output.js';
import { CommandStores } from '../stores.js';
import { CommandError, UsageError } from '../usage-error.js';

const SAFE_BESIDE_GATEWAY = 'Safe while a gateway runs on the same directory or database: it reads the workflows on each use, so a change is served at once.';

export const WORKFLOWS_HELP = `Usage: comfy-gate workflows COMMAND [options]

Manages the named workflows of a store directory (workflows.json), or of a
PostgreSQL database with --database-url, as /api/gateway/workflows does. ${SAFE_BESIDE_GATEWAY}

Commands:
  list                        Every workflow: name, inputs, last change, description
  show NAME                   One workflow: its inputs (and with --json its graph)
  put NAME --file FILE        Register or replace a workflow from a JSON file
                              {"prompt": graph, "description"?, "inputs": {...}}
  delete NAME [--yes]         Delete a workflow

Every command takes --user-directory DIR or --database-url URL, and --json. See docs/api.md "Workflows".`;

/** What a workflows command gets to run. */
interface Run {
  values: FlagValues;
  name: string;
  store: WorkflowStore;
  /** The folder's or the database's stores, closed when the command ends. */
  stores: CommandStores;
  ctx: CliContext;
  help: string;
}

interface Command {
  flags: FlagSpec;
  named: boolean;
  help: string;
  run(input: Run): Promise<number>;
}

const JSON_HELP = '  --json                Print JSON instead of text';

const COMMANDS: Record<string, Command> = {
  list: {
    flags: { json: { type: 'boolean' } },
    named: false,
    help: `Usage: comfy-gate workflows list [--json]

Lists every workflow by name: its inputs, when it last changed and its description.

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --json                Print {"workflows": [...]}, as GET /api/gateway/workflows answers an admin key`,
    run: listWorkflows,
  },
  show: {
    flags: { json: { type: 'boolean' } },
    named: true,
    help: `Usage: comfy-gate workflows show NAME [--json]

Shows one workflow and its inputs; with --json, the whole record with its graph.

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
${JSON_HELP}`,
    run: showWorkflow,
  },
  put: {
    flags: { file: { type: 'string' }, json: { type: 'boolean' } },
    named: true,
    help: `Usage: comfy-gate workflows put NAME --file FILE [--json]

Registers a workflow, or replaces the one of that name. The file holds the body of
PUT /api/gateway/workflows/{name}: {"prompt": <API-format graph>, "description"?,
"inputs": {"<name>": {"node", "input", "type", "default"?, "min"?, "max"?, "values"?,
"description"?}}}, checked as the API checks it (every problem is listed).
${SAFE_BESIDE_GATEWAY}

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --file FILE           The JSON file
${JSON_HELP}

Example:
  comfy-gate workflows put txt2img --file txt2img.json`,
    run: putWorkflow,
  },
  delete: {
    flags: { yes: { type: 'boolean' }, json: { type: 'boolean' } },
    named: true,
    help: `Usage: comfy-gate workflows delete NAME [--yes] [--json]

Deletes a workflow: runs of it get 404 WORKFLOW_NOT_FOUND. Without --yes, asks for
confirmation on a terminal, and refuses (exit 2) when there is none.

Options:
${USER_DIRECTORY_HELP}
${DATABASE_URL_HELP}
  --yes                 Delete without asking
${JSON_HELP}`,
    run: deleteWorkflow,
  },
};

/** Runs a `workflows` subcommand; returns the process exit code. */
export async function workflows(args: string[], ctx: CliContext): Promise<number> {
  const chosen = chooseSubcommand('workflows', args, COMMANDS, WORKFLOWS_HELP);
  if (!chosen) return 0;
  const { name: subcommand, command, rest } = chosen;
  const parsed = parseCommandLine(rest, `workflows ${subcommand}`, command.flags, {
    database: true,
    ...(command.named ? { argument: 'NAME (see comfy-gate workflows list)' } : {}),
  });
  if (!parsed) {
    console.log(command.help);
    return 0;
  }
  const help = `comfy-gate workflows ${subcommand} --help`;
  const stores = CommandStores.of(parsed.values, ctx.env, help);
  try {
    await stores.prepare();
    return await command.run({ values: parsed.values, name: parsed.keyId, store: await stores.workflows(), stores, ctx, help });
  } finally {
    await stores.close();
  }
}

async function listWorkflows({ values, store, stores }: Run): Promise<number> {
  const all = await store.list();
  if (values.json) {
    printJson({ workflows: all });
    return 0;
  }
  if (all.length === 0) {
    console.log(`No workflows in ${stores.where}. Register one with: comfy-gate workflows put NAME --file FILE`);
    return 0;
  }
  const rows = all.map((w) => [w.name, Object.keys(w.inputs).join(', ') || '-', utcTime(w.updated_at), printable(w.description ?? '', 60)]);
  console.log(table(['NAME', 'INPUTS', 'UPDATED', 'DESCRIPTION'], rows));
  return 0;
}

/** The workflow of that name. @throws CommandError when there is none. */
async function requireWorkflow(store: WorkflowStore, name: string): Promise<WorkflowRecord> {
  const workflow = await store.get(name);
  if (!workflow) throw new CommandError(`no workflow is named ${JSON.stringify(name)} (see comfy-gate workflows list)`);
  return workflow;
}

async function showWorkflow({ values, name, store }: Run): Promise<number> {
  const workflow = await requireWorkflow(store, name);
  if (values.json) {
    printJson(workflow);
    return 0;
  }
  console.log(
    fields([
      ['name', workflow.name],
      ['description', workflow.description ?? '-'],
      ['nodes', String(Object.keys(workflow.prompt).length)],
      ['created', utcTime(workflow.created_at)],
      ['updated', utcTime(workflow.updated_at)],
    ]),
  );
  const rows = Object.entries(workflow.inputs).map(([input, spec]) => [
    input,
    spec.type,
    `${spec.node}.${spec.input}`,
    Object.hasOwn(spec, 'default') ? stringifyExactJson(spec.default) : '(required)',
    [spec.min !== undefined ? `min ${spec.min}` : '', spec.max !== undefined ? `max ${spec.max}` : '', spec.values ? stringifyExactJson(spec.values) : '']
      .filter(Boolean)
      .join(' '),
  ]);
  if (rows.length > 0) console.log(`\n${table(['INPUT', 'TYPE', 'SETS', 'DEFAULT', 'LIMITS'], rows)}`);
  return 0;
}

async function putWorkflow({ values, name, store, stores, ctx, help }: Run): Promise<number> {
  const file = stringFlag(values, 'file');
  if (file === undefined) throw new UsageError('workflows put needs --file FILE (the JSON body of the workflow)', help);
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new CommandError(`cannot read ${file}: ${error.code ?? error.message}`);
  });
  let body: unknown;
  try {
    body = parseExactJson(text);
  } catch (error) {
    throw new CommandError(`${file} is not JSON: ${(error as Error).message}`);
  }
  let definition;
  try {
    definition = parseWorkflowDefinition(name, body);
    await checkOnlyServing(store, definition);
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    const problems = (error.details?.details ?? []) as Array<{ field: string; problem: string }>;
    throw new CommandError(`the workflow is not valid:\n${problems.map((p) => `  ${p.field}: ${p.problem}`).join('\n')}`);
  }
  const { record, created } = await store.put(definition, ctx.now());
  await stores.auditChange({ ts: ctx.now(), action: created ? 'workflow.create' : 'workflow.replace', details: { workflow: name } });
  if (values.json) printJson(record);
  else console.log(`${created ? 'Registered' : 'Replaced'} workflow ${name} (${Object.keys(record.inputs).length} inputs).`);
  return 0;
}

async function deleteWorkflow({ values, name, store, stores, ctx, help }: Run): Promise<number> {
  await requireWorkflow(store, name);
  if (!values.yes) {
    if (!ctx.confirm) throw new UsageError(`workflows delete needs --yes to delete workflow ${name} when there is no terminal to confirm on`, help);
    if (!(await ctx.confirm(`Delete workflow ${name}? [y/N] `))) throw new CommandError(`workflow ${name} was not deleted`);
  }
  if (!(await store.delete(name))) throw new CommandError(`no workflow is named ${JSON.stringify(name)}`);
  await stores.auditChange({ ts: ctx.now(), action: 'workflow.delete', details: { workflow: name } });
  if (values.json) printJson({ message: `Workflow ${name} deleted.` });
  else console.log(`Deleted workflow ${name}.`);
  return 0;
}
