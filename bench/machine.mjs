// What the machine is and what else it was doing: CPU used by the bench's own processes versus everything else.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { round } from './processes.mjs';

/** The hardware and software the figures come from. */
export function describeMachine() {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    kernel: release(),
    node: process.version,
    nginx: versionOf('nginx', ['-v']),
    wrk: versionOf('wrk', ['-v']).split(' ').slice(0, 2).join(' '),
    loadavg_at_start: loadavg().map((value) => round(value, 2)),
  };
}

/** The first line a tool prints about its version (nginx prints it to stderr, wrk exits non-zero). */
function versionOf(command, args) {
  const { stdout, stderr } = spawnSync(command, args, { encoding: 'utf8' });
  return `${stdout ?? ''}${stderr ?? ''}`.trim().split('\n')[0] || 'unknown';
}

/**
 * Samples CPU use over the middle of a run of `seconds` (from 1 s in to 1 s before its end, while every
 * process of the run is alive): how busy the whole machine was, and how much of it was not the bench
 * (this process, its children and theirs). Both in percent of all cores. With `processes` ({name: pid}
 * of the bench's children) also `cpu_pct_of_core`: {name: percent of one core} each used.
 */
export async function cpuDuring(seconds, processes = null) {
  await sleep(1000);
  const before = sample();
  await sleep(Math.max(1, seconds - 2) * 1000);
  const after = sample();
  const total = after.total - before.total;
  const busy = after.busy - before.busy;
  let ours = 0;
  const used = (pid) => (after.benchTicks.get(pid) ?? 0) - (before.benchTicks.get(pid) ?? after.benchTicks.get(pid) ?? 0);
  for (const pid of after.benchTicks.keys()) ours += used(pid);
  const figures = { machine_busy_pct: round((100 * busy) / total), others_busy_pct: round((100 * Math.max(0, busy - ours)) / total) };
  if (!processes) return figures;
  const ofCore = (pid) => round((100 * used(pid) * cpus().length) / total);
  return { ...figures, cpu_pct_of_core: Object.fromEntries(Object.entries(processes).map(([name, pid]) => [name, ofCore(pid)])) };
}

/** Machine-wide CPU ticks (all cores), and the ticks used so far by each process of the bench's tree. */
function sample() {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = fields[3] + fields[4];
  return { total, busy: total - idle, benchTicks: benchProcessTicks() };
}

function benchProcessTicks() {
  const parentOf = new Map();
  const ticksOf = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // Fields after the command name, which is in parentheses and may hold spaces: state, ppid, ... utime (14th field), stime (15th).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    parentOf.set(Number(entry), Number(rest[1]));
    ticksOf.set(Number(entry), Number(rest[11]) + Number(rest[12]));
  }
  const inTree = (pid) => {
    for (let p = pid; p > 1; p = parentOf.get(p) ?? 0) if (p === process.pid) return true;
    return false;
  };
  return new Map([...ticksOf].filter(([pid]) => inTree(pid)));
}
