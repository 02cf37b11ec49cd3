import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import type { LoopResult } from './closed-loop.ts';

export interface Measurement {
  operation: string;
  requests: number;
  opsPerSec: number;
  /** Lowest and highest ops/s over the rounds, when the row is the median round of several. */
  opsPerSecRange?: [number, number];
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  /** Highest resident set size of this process sampled while the operation ran, MiB. */
  peakRssMiB: number;
  /** CPU time of the benchmark process (server, baseline server, PGlite, driver) over wall time; 100 = one core. */
  processCpuPercent: number;
  /** The same for the HTTP load generator (its own process); absent for driver-only operations. */
  clientCpuPercent?: number;
  /** Every process's CPU over wall time (PostgreSQL's included); 100 × cores when the machine is full. */
  machineCpuPercent?: number;
}

export interface Usage {
  peakRssBytes: number;
  processCpuMs: number;
  clientCpuMs?: number;
  machineCpuPercent?: number;
}

export interface StoreReport {
  store: string;
  date: string;
  node: string;
  machine: { cpu: string; cores: number; os: string; memoryMiB: number };
  /** 1-minute load average before and after the measurements: other work on the machine skews every number. */
  loadAverage: { before: number; after: number };
  settings: { requests: number; warmup: number; concurrency: number; pgPoolSize: number };
  measurements: Measurement[];
  ratios: Record<string, number>;
  /** Lowest and highest of each ratio over the rounds, when `ratios` are medians of several rounds. */
  ratioRanges?: Record<string, [number, number]>;
  /** How many rounds the report combines (absent: one). */
  rounds?: number;
  targets: Record<string, { met: boolean; rule: string }>;
  /** RSS once the stores were open, the tables made and both servers listening, before any load, MiB. */
  setupRssMiB: number;
  /** process.resourceUsage().maxRSS at the end: this store's process's peak, MiB. */
  processMaxRssMiB: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

export function summarise(operation: string, result: LoopResult, usage: Usage): Measurement {
  const sorted = [...result.latencies].sort((a, b) => a - b);
  const percentOfWall = (cpuMs: number) => (100 * cpuMs) / result.elapsedMs;
  return {
    operation,
    requests: sorted.length,
    opsPerSec: (sorted.length * 1000) / result.elapsedMs,
    p50Ms: percentile(sorted, 0.5),
    p95Ms: percentile(sorted, 0.95),
    p99Ms: percentile(sorted, 0.99),
    peakRssMiB: usage.peakRssBytes / 2 ** 20,
    processCpuPercent: percentOfWall(usage.processCpuMs),
    ...(usage.clientCpuMs === undefined ? {} : { clientCpuPercent: percentOfWall(usage.clientCpuMs) }),
    ...(usage.machineCpuPercent === undefined ? {} : { machineCpuPercent: usage.machineCpuPercent }),
  };
}

/** Busy CPU ticks (10 ms each) of the whole machine since boot: /proc/stat's cpu line less idle and iowait. */
export function machineBusyTicks(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return user + nice + system + irq + softirq + steal;
}

/** The lower median (a value that was measured: of the two middle ones, the lower) and the range. */
export function medianAndRange(values: number[]): { median: number; range: [number, number] } {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[(sorted.length - 1) >> 1]!, range: [sorted[0]!, sorted[sorted.length - 1]!] };
}

/**
 * One report from several rounds of the same store: each operation's row is the round with the median ops/s
 * (its latencies and CPU are that round's), with the range over the rounds; each ratio is the median of the
 * rounds' own ratios; targets are judged on those medians by `targetsOf`.
 */
export function combineRounds(
  reports: StoreReport[],
  targetsOf: (ratios: Record<string, number>, measurements: Measurement[]) => StoreReport['targets'],
): StoreReport {
  const first = reports[0]!;
  const last = reports[reports.length - 1]!;
  const measurements = first.measurements.map(({ operation }) => {
    const rows = reports.map((report) => report.measurements.find((m) => m.operation === operation)!);
    const { median, range } = medianAndRange(rows.map((row) => row.opsPerSec));
    return { ...rows.find((row) => row.opsPerSec === median)!, opsPerSecRange: range };
  });
  const ratios: Record<string, number> = {};
  const ratioRanges: Record<string, [number, number]> = {};
  for (const name of Object.keys(first.ratios)) {
    ({ median: ratios[name], range: ratioRanges[name] } = medianAndRange(reports.map((report) => report.ratios[name]!)));
  }
  return {
    ...last,
    date: first.date,
    loadAverage: { before: first.loadAverage.before, after: last.loadAverage.after },
    measurements,
    ratios,
    ratioRanges,
    rounds: reports.length,
    targets: targetsOf(ratios, measurements),
    setupRssMiB: Math.max(...reports.map((report) => report.setupRssMiB)),
    processMaxRssMiB: Math.max(...reports.map((report) => report.processMaxRssMiB)),
  };
}

export function machine(): StoreReport['machine'] {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    os: `${os.type()} ${os.release()}`,
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
  };
}

const fixed = (value: number, digits: number) => value.toFixed(digits);

export function markdown(report: StoreReport): string {
  const lines = [
    `# CRUD benchmark: ${report.store}`,
    '',
    `${report.date} · Node ${report.node} · ${report.machine.cpu} × ${report.machine.cores} cores · ${report.machine.os}`,
    `Load average (1 min) before/after: ${fixed(report.loadAverage.before, 2)} / ${fixed(report.loadAverage.after, 2)}` +
      (report.loadAverage.before > report.machine.cores / 2 ? ' (**the machine was busy: numbers are pessimistic and noisy**)' : ''),
    `${report.settings.requests} requests per measurement after ${report.settings.warmup} warm-up, ` +
      `${report.settings.concurrency} in flight` + (report.store === 'postgres' ? `, pool of ${report.settings.pgPoolSize} connections` : ''),
    ...(report.rounds && report.rounds > 1
      ? ['', `${report.rounds} rounds, the stores measured alternately. Each row is the round with the median ops/s for that operation (its latencies and CPU are that round's); the range is over the rounds. Each ratio is the median of the rounds' own ratios; targets are judged on the medians.`]
      : []),
    '',
    '| operation | ops/s | range over rounds | p50 ms | p95 ms | p99 ms | peak RSS MiB | bench CPU % | client CPU % | machine CPU % |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...report.measurements.map(
      (m) =>
        `| ${m.operation} | ${fixed(m.opsPerSec, 0)} | ${m.opsPerSecRange ? `${fixed(m.opsPerSecRange[0], 0)}–${fixed(m.opsPerSecRange[1], 0)}` : '–'} ` +
        `| ${fixed(m.p50Ms, 2)} | ${fixed(m.p95Ms, 2)} | ${fixed(m.p99Ms, 2)} ` +
        `| ${fixed(m.peakRssMiB, 0)} | ${fixed(m.processCpuPercent, 0)} | ${m.clientCpuPercent === undefined ? '–' : fixed(m.clientCpuPercent, 0)} ` +
        `| ${m.machineCpuPercent === undefined ? '–' : fixed(m.machineCpuPercent, 0)} |`,
    ),
    '',
    `RSS of the benchmark process once the stores were open and the server built: ${fixed(report.setupRssMiB, 0)} MiB; ` +
      `its maximum over the run: ${fixed(report.processMaxRssMiB, 0)} MiB. ` +
      'CPU % is CPU time over wall time (100 = one core); bench and client CPU leave out the PostgreSQL server\'s ' +
      `processes, machine CPU counts every process (${report.machine.cores * 100} % = all ${report.machine.cores} cores busy).`,
    '',
    ...ratioAndTargetTables(report.ratios, report.targets, report.ratioRanges),
  ];
  return lines.join('\n');
}

/** The two closing tables of a benchmark report: server/raw ratios in %, and whether each target is met. */
export function ratioAndTargetTables(ratios: Record<string, number>, targets: Record<string, { rule: string; met: boolean }>, ranges?: Record<string, [number, number]>): string[] {
  const range = (name: string) => (ranges?.[name] ? ` | ${fixed(ranges[name]![0] * 100, 1)}–${fixed(ranges[name]![1] * 100, 1)} %` : '');
  return [
    ranges ? '| ratio | median | range over rounds |' : '| ratio | value |',
    ranges ? '|---|---:|---:|' : '|---|---:|',
    ...Object.entries(ratios).map(([name, value]) => `| ${name} | ${fixed(value * 100, 1)} %${range(name)} |`),
    '',
    '| target | met |',
    '|---|---|',
    ...Object.values(targets).map((target) => `| ${target.rule} | ${target.met ? 'yes' : '**no**'} |`),
    '',
  ];
}

/** Writes `crud-<store>.md` and `crud-<store>.json` into `dir`, replacing earlier results. */
export function writeResults(dir: URL, report: StoreReport): string[] {
  mkdirSync(dir, { recursive: true });
  const md = new URL(`crud-${report.store}.md`, dir);
  const json = new URL(`crud-${report.store}.json`, dir);
  writeFileSync(md, markdown(report));
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  return [md.pathname, json.pathname];
}
