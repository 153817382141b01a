// ComfyUI as the gateway's child (`comfy-gate -- COMMAND ARGS`): {port}, proxying, its output in the log, a restart after a crash that settles its job, and SIGTERM; with --spawn-count, several children as backends.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { queuePrompt, SAVE_WORKFLOW, waitForHistory } from '../helpers/comfy-client.js';
import { runCli, startGateway, tempUserDirectory, type GatewayProcess } from '../helpers/gateway-process.js';
import { send } from '../helpers/http-client.js';
import { createKey } from '../helpers/keys.js';

const CHILD_SCRIPT = resolve(import.meta.dirname, '../helpers/fake-comfyui-child.js');

interface LogLine {
  msg: string;
  event?: string;
  pid?: number;
  stream?: string;
  exit?: string;
  /** The supervisor's name of the child the line is about (`comfyui-0`...). */
  child?: string;
}

/** What `/readyz` answers (the fields these tests read). */
interface Readiness {
  child?: string;
  backends: Array<{ name: string; url: string; state: string; events: string; child?: string }>;
}

/** The gateway's JSON log lines so far. */
function logLines(gateway: GatewayProcess): LogLine[] {
  return gateway
    .output()
    .stdout.split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

/** The pid of the child (of those named `name`, when given) started last, from its `child_started` log line. */
function childPid(gateway: GatewayProcess, name?: string): number {
  const started = logLines(gateway).filter((line) => line.event === 'child_started' && (name === undefined || line.child === name));
  assert.ok(started.length > 0, `the gateway logged the start of its child ${name ?? ''}`);
  return started.at(-1)!.pid!;
}

/** Kills what is left of the children a gateway started, and removes the folders of fake ComfyUIs that could not remove their own. */
async function cleanUpChildren(gateway: GatewayProcess): Promise<void> {
  for (const line of logLines(gateway)) if (line.event === 'child_started' && alive(line.pid!)) process.kill(line.pid!, 'SIGKILL');
  const folders = logLines(gateway).flatMap((line) => /folder (\S+)$/.exec(line.msg)?.[1] ?? []);
  await Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true })));
}

/** Whether a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/** Polls `/readyz` until `wanted` holds for its status and body; resolves that body. Fails after `timeoutMs`. */
async function readinessUntil(
  gateway: GatewayProcess,
  wanted: (status: number, body: Readiness) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<Readiness> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await send(gateway.url, '/readyz');
    const body = res.json<Readiness>();
    if (wanted(res.status, body)) return body;
    if (Date.now() > deadline) assert.fail(`timed out waiting for /readyz: ${what}; last ${res.status} ${res.text}`);
    await sleep(20);
  }
}

describe('ComfyUI as a child process', () => {
  let gateway: GatewayProcess;
  let userDirectory: { path: string; remove(): Promise<void> };
  let admin: string;

  before(async () => {
    userDirectory = await tempUserDirectory();
    gateway = await startGateway({
      upstream: null,
      userDirectory: userDirectory.path,
      args: ['--require-api-auth', '--', process.execPath, CHILD_SCRIPT, '--port', '{port}', '--step-delay-ms', '200'],
    });
    await readinessUntil(gateway, (status) => status === 200, 'ready after the first start');
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 10_000 })).api_key;
  });
  after(async () => {
    if (!gateway) return;
    await gateway.stop('SIGTERM');
    await cleanUpChildren(gateway);
    await userDirectory?.remove();
  });

  test('{port} is a free loopback port: the child listens there and the gateway proxies to it', async () => {
    const port = Number(/upstream http:\/\/127\.0\.0\.1:(\d+) \(started by the gateway: /.exec(gateway.output().stdout)?.[1]);
    assert.ok(port > 0 && port !== gateway.port, gateway.output().stdout);
    const said = logLines(gateway).find((line) => line.msg.startsWith('[comfyui] fake ComfyUI listening on port'));
    assert.ok(said, 'the child line is in the log');
    assert.match(said.msg, new RegExp(`^\\[comfyui\\] fake ComfyUI listening on port ${port}, pid ${childPid(gateway)}, `));
    assert.equal(said.stream, 'stdout');
    assert.ok(logLines(gateway).some((line) => line.msg === '[comfyui] fake ComfyUI: a line on stderr' && line.stream === 'stderr'));
    assert.equal((await send(`http://127.0.0.1:${port}`, '/api/system_stats')).status, 200, 'the child itself answers on that port');
    assert.equal((await send(gateway.url, '/api/system_stats')).status, 401, 'required mode still guards it');
    const res = await send(gateway.url, '/api/system_stats', { key: admin });
    assert.equal(res.status, 200, res.text);
    assert.ok('devices' in res.json());
    const ready = await send(gateway.url, '/readyz');
    const body = ready.json<{ backends: Array<Record<string, unknown>> }>();
    assert.deepEqual(
      { ...body, backends: undefined },
      { status: 'ready', upstream: 'ok', store: 'ok', child: `running (pid ${childPid(gateway)})`, backends: undefined },
    );
    assert.deepEqual(
      body.backends.map(({ name, url, state, events, child }) => ({ name, url, state, events, child })),
      [{ name: 'default', url: `http://127.0.0.1:${port}`, state: 'up', events: 'connected', child: `running (pid ${childPid(gateway)})` }],
    );
  });

  /** The admin key's jobs run and execution seconds metered today. */
  async function metered(): Promise<{ prompts_run: number; execution_seconds: number }> {
    const res = await send(gateway.url, '/api/usage?days=1', { key: admin });
    assert.equal(res.status, 200, res.text);
    return res.json<{ usage_stats: { prompts_run: number; execution_seconds: number } }>().usage_stats;
  }

  test('a child that dies is started again, /readyz says so meanwhile, and its running job ends as error, metered for the seconds it ran', async () => {
    const was = await metered();
    const promptId = await queuePrompt(gateway.url, admin);
    const deadline = Date.now() + 30_000;
    while ((await send(gateway.url, `/api/gateway/jobs/${promptId}`, { key: admin })).json<{ status: string }>().status !== 'running') {
      assert.ok(Date.now() < deadline, 'the job runs in the child');
      await sleep(20);
    }
    const first = childPid(gateway);
    process.kill(first, 'SIGKILL');
    const down = await readinessUntil(gateway, (status, body) => status === 503 && body.child?.startsWith('restarting') === true, 'not ready while restarting');
    assert.match(down.child!, /^restarting in \d+ s \(signal SIGKILL\)$/);
    const up = await readinessUntil(gateway, (status) => status === 200, 'ready again after the restart');
    const second = childPid(gateway);
    assert.notEqual(second, first);
    assert.equal(up.child, `running (pid ${second}, 1 restart, last: signal SIGKILL)`);
    assert.ok(logLines(gateway).some((line) => line.event === 'child_exited' && line.pid === first && line.exit === 'signal SIGKILL'));
    // The job was running when its ComfyUI died: it ends as error as soon as the gateway sees the child gone.
    let job: { status: string; error: { message: string } | null; started_at: number; finished_at: number; execution_seconds: number | null };
    for (;;) {
      job = (await send(gateway.url, `/api/gateway/jobs/${promptId}`, { key: admin })).json();
      if (job.status !== 'running' && job.status !== 'queued') break;
      assert.ok(Date.now() < deadline + 60_000, 'the job of the dead child is settled');
      await sleep(50);
    }
    assert.equal(job.status, 'error');
    assert.match(job.error!.message, /The ComfyUI backend default stopped answering while the job ran/);
    // The GPU time it had when its ComfyUI died is its key's, as for any job that ran.
    assert.ok(job.execution_seconds !== null && job.execution_seconds > 0, `execution_seconds ${job.execution_seconds}`);
    assert.ok(Math.abs(job.execution_seconds - (job.finished_at - job.started_at)) < 0.01);
    const now = await metered();
    assert.equal(now.prompts_run, was.prompts_run + 1);
    assert.ok(
      Math.abs(now.execution_seconds - was.execution_seconds - job.execution_seconds) < 0.01,
      `metered ${now.execution_seconds - was.execution_seconds} s`,
    );
    const next = await queuePrompt(gateway.url, admin);
    await waitForHistory(gateway.url, admin, next, 60_000);
  });

  test('SIGTERM stops the child gracefully, and the gateway exits 0', async () => {
    const pid = childPid(gateway);
    assert.ok(alive(pid));
    assert.equal(await gateway.stop('SIGTERM'), 0);
    assert.equal(alive(pid), false, 'the child is gone with the gateway');
    assert.ok(logLines(gateway).some((line) => line.msg === `[comfyui] fake ComfyUI stopping on SIGTERM, pid ${pid}`));
    assert.ok(logLines(gateway).some((line) => line.event === 'child_exited' && line.pid === pid && line.exit === 'exit code 0'));
  });
});

describe('several ComfyUI children (--spawn-count 2)', () => {
  const NAMES = ['comfyui-0', 'comfyui-1'];
  let gateway: GatewayProcess;
  let userDirectory: { path: string; remove(): Promise<void> };
  let admin: string;

  before(async () => {
    userDirectory = await tempUserDirectory();
    gateway = await startGateway({
      upstream: null,
      userDirectory: userDirectory.path,
      args: [
        '--require-api-auth',
        '--spawn-count',
        '2',
        '--',
        process.execPath,
        CHILD_SCRIPT,
        '--port',
        '{port}',
        '--tag',
        '{index}',
        '--output-directory',
        'output/{index}',
        '--input-directory',
        'input/{index}',
        '--temp-directory',
        'temp/{index}',
        '--step-delay-ms',
        '40',
        '--start-delay-ms',
        '1000',
      ],
    });
  });
  after(async () => {
    if (!gateway) return;
    await gateway.stop('SIGTERM');
    await cleanUpChildren(gateway);
    await userDirectory?.remove();
  });

  /** Queues a prompt, pinned to a backend when `backend` is given; resolves its prompt_id. */
  async function queue(backend?: string): Promise<string> {
    const res = await send(gateway.url, '/api/prompt', {
      method: 'POST',
      key: admin,
      headers: backend ? { 'x-comfy-gate-backend': backend } : {},
      body: { prompt: SAVE_WORKFLOW },
    });
    assert.equal(res.status, 200, res.text);
    return res.json<{ prompt_id: string }>().prompt_id;
  }

  const jobOf = async (id: string): Promise<{ status: string; backend: string }> => (await send(gateway.url, `/api/gateway/jobs/${id}`, { key: admin })).json();
  const backendOf = (body: Readiness, name: string): Readiness['backends'][number] => body.backends.find((backend) => backend.name === name)!;

  test('not ready until a child answers; then /readyz lists both, each on its own port, and each logs with its own prefix', async () => {
    // Each child takes a second before it listens.
    const early = await send(gateway.url, '/readyz');
    assert.equal(early.status, 503, early.text);
    const starting = early.json<Readiness>();
    assert.deepEqual(
      starting.backends.map(({ name, state }) => ({ name, state })),
      NAMES.map((name) => ({ name, state: 'starting' })),
    );
    const ready = await readinessUntil(
      gateway,
      (status, body) => status === 200 && body.backends.every((backend) => backend.state === 'up' && backend.events === 'connected'),
      'both children answering',
    );
    assert.equal(ready.child, undefined, 'one child per backend: the top level names none');
    const ports = ready.backends.map((backend) => Number(new URL(backend.url).port));
    assert.notEqual(ports[0], ports[1]);
    for (const [index, name] of NAMES.entries()) {
      const pid = childPid(gateway, name);
      const backend = backendOf(ready, name);
      assert.equal(backend.url, `http://127.0.0.1:${ports[index]}`);
      assert.equal(backend.child, `running (pid ${pid})`);
      // `{index}` became the child's number, and its lines carry its name.
      const said = logLines(gateway).find((line) => line.msg.startsWith(`[${name}] fake ComfyUI listening on port`));
      assert.ok(said, `the line of ${name} is in the log`);
      assert.match(said.msg, new RegExp(`^\\[${name}\\] fake ComfyUI listening on port ${ports[index]}, pid ${pid}, tag ${index}, folder `));
      assert.equal(said.stream, 'stdout');
      assert.ok(logLines(gateway).some((line) => line.msg === `[${name}] fake ComfyUI: a line on stderr` && line.stream === 'stderr'));
      assert.equal((await send(`http://127.0.0.1:${ports[index]}`, '/api/system_stats')).status, 200, `${name} itself answers on its port`);
    }
    admin = (await createKey(gateway.url, { name: 'admin', role: 'admin', rate_limit: 10_000 })).api_key;
    for (const name of NAMES) {
      const id = await queue(name);
      await waitForHistory(gateway.url, admin, id, 30_000);
      assert.equal((await jobOf(id)).backend, name);
    }
  });

  test('a child killed with SIGKILL is down, then started again and up, while the other keeps serving prompts', async () => {
    const survivor = childPid(gateway, 'comfyui-0');
    const victim = childPid(gateway, 'comfyui-1');
    const busy = await queue('comfyui-0');
    const deadline = Date.now() + 30_000;
    while ((await jobOf(busy)).status !== 'running') {
      assert.ok(Date.now() < deadline, 'the job runs on comfyui-0');
      await sleep(20);
    }
    process.kill(victim, 'SIGKILL');
    const down = await readinessUntil(gateway, (_, body) => backendOf(body, 'comfyui-1').state === 'down', 'comfyui-1 down');
    assert.match(backendOf(down, 'comfyui-1').child!, /^restarting in \d+ s \(signal SIGKILL\)$/);
    assert.equal(backendOf(down, 'comfyui-0').state, 'up');
    assert.equal((await send(gateway.url, '/readyz')).status, 200, 'ready while one backend answers');
    // Placed while comfyui-1 is down: it goes to comfyui-0, and runs there.
    const meanwhile = await queue();
    await waitForHistory(gateway.url, admin, meanwhile, 30_000);
    assert.equal((await jobOf(meanwhile)).backend, 'comfyui-0');
    await waitForHistory(gateway.url, admin, busy, 30_000);
    assert.equal((await jobOf(busy)).status, 'success', 'the job on comfyui-0 ran to its end');

    const up = await readinessUntil(gateway, (status, body) => status === 200 && backendOf(body, 'comfyui-1').state === 'up', 'comfyui-1 up again');
    const restarted = childPid(gateway, 'comfyui-1');
    assert.notEqual(restarted, victim);
    assert.equal(backendOf(up, 'comfyui-1').child, `running (pid ${restarted}, 1 restart, last: signal SIGKILL)`);
    assert.equal(backendOf(up, 'comfyui-0').child, `running (pid ${survivor})`, 'the other child was left alone');
    assert.ok(
      logLines(gateway).some((line) => line.event === 'child_exited' && line.child === 'comfyui-1' && line.pid === victim && line.exit === 'signal SIGKILL'),
    );
    const onRestarted = await queue('comfyui-1');
    await waitForHistory(gateway.url, admin, onRestarted, 30_000);
  });

  test('SIGTERM stops both children gracefully, and the gateway exits 0', async () => {
    const pids = NAMES.map((name) => childPid(gateway, name));
    assert.ok(pids.every(alive));
    assert.equal(await gateway.stop('SIGTERM'), 0);
    for (const [index, pid] of pids.entries()) {
      assert.equal(alive(pid), false, `${NAMES[index]} is gone with the gateway`);
      assert.ok(logLines(gateway).some((line) => line.msg === `[${NAMES[index]}] fake ComfyUI stopping on SIGTERM, pid ${pid}`));
      assert.ok(logLines(gateway).some((line) => line.event === 'child_exited' && line.pid === pid && line.exit === 'exit code 0'));
    }
  });
});

describe('the child command line', () => {
  test('refused with --upstream, without {port}, and when the command cannot be started', async () => {
    const folder = await tempUserDirectory();
    try {
      const base = ['--port', '0', '--user-directory', folder.path];
      const both = await runCli([...base, '--upstream', 'http://127.0.0.1:8189', '--', process.execPath, CHILD_SCRIPT, '--port', '{port}']);
      assert.equal(both.code, 2);
      assert.match(both.stderr, /--upstream and a command after -- both say where ComfyUI is/);
      const noPort = await runCli([...base, '--', process.execPath, CHILD_SCRIPT]);
      assert.equal(noPort.code, 2);
      assert.match(noPort.stderr, /put \{port\} among its arguments/);
      const missing = await runCli([...base, '--', resolve(folder.path, 'no-such-program'), '--port', '{port}']);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /the command after -- could not be started: spawn .*no-such-program ENOENT/);
    } finally {
      await folder.remove();
    }
  });
});
