/**
 * CPU time of processes on this machine (Linux /proc), for benchmarks that judge a change by the CPU it costs
 * per operation: on this VM, throughput drifts with the machine's speed from minute to minute, CPU per
 * operation much less.
 */
import { readFileSync } from 'node:fs';
import type pg from 'pg';

/** /proc/<pid>/stat counts in clock ticks of 10 ms (USER_HZ 100). */
const MS_PER_CLOCK_TICK = 10;

/** utime + stime of a process, in ms (0 once it is gone). */
export function processCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * MS_PER_CLOCK_TICK;
  } catch {
    return 0;
  }
}

/** The CPU of each backend connected to `database` now, by pid: the database must run on this machine. */
export async function backendsCpuMs(admin: pg.Client | pg.Pool, database: string): Promise<Map<number, number>> {
  const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [database]);
  return new Map(rows.map((row) => [row.pid, processCpuMs(row.pid)]));
}

/** CPU the backends of `database` spent since `before` (backendsCpuMs): one opened meanwhile counts whole. */
export async function backendsCpuMsSince(admin: pg.Client | pg.Pool, database: string, before: ReadonlyMap<number, number>): Promise<number> {
  let spent = 0;
  for (const [pid, cpu] of await backendsCpuMs(admin, database)) spent += cpu - (before.get(pid) ?? 0);
  return spent;
}
