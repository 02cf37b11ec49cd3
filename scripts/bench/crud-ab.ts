/**
 * A/B of the server's create (POST Patient) and read (GET Patient/{id}) over HTTP, between checkouts of this
 * repository: each side is the checkout's own `src/main.ts`, started as the server runs in production (its own
 * process, its own pool), with authentication, the audit trail and encryption at rest off and no rate limit, so
 * that what is compared is the CRUD path itself (those three have their own issues and targets). The old side
 * needs nothing from this file but its `src/main.ts`, so a checkout of any commit can be measured:
 *
 *   git worktree add --detach ../old <commit> && ln -s "$PWD/node_modules" ../old/node_modules
 *   node --import tsx scripts/bench/crud-ab.ts old=../old new=.
 *
 * Both servers run at once (an idle one costs nothing) and are measured in turn, A, B, A, B, … for BENCH_ROUNDS
 * rounds: on a shared machine, one run each says little. Per operation and side the report gives ops/s and the CPU
 * per operation of the server process (/proc/<pid>/stat) and, on PostgreSQL, of its pool's backends (the
 * processes of its own database in pg_stat_activity, same machine): CPU per operation moves much less than
 * throughput when other work shares the cores.
 *
 * Environment: BENCH_STORE (`postgres`, default, or `pglite`), BENCH_DATABASE_URL (a PostgreSQL server on this
 * machine: a database per side is created there, `crud_ab_<side>_<pid>`, and dropped at the end), BENCH_ROUNDS
 * (4), BENCH_REQUESTS (3000 per operation and round), BENCH_WARMUP (500, first round only),
 * BENCH_CONCURRENCY (16), BENCH_CPU_PROF (a directory: each server runs with --cpu-prof in <dir>/<side>-<store>/, one file per thread: the
 * largest is the server's main thread, the others tsx's loader).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { LoadClient, type HttpJobResult } from './lib/load-client.ts';
import { frenchPatient } from './lib/patients.ts';
import { backendsCpuMs, backendsCpuMsSince, processCpuMs } from './lib/process-cpu.ts';

const STORE = process.env.BENCH_STORE === 'pglite' ? 'pglite' : 'postgres';
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:55432/postgres';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 500);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const CPU_PROF = process.env.BENCH_CPU_PROF;

interface Side {
  name: string;
  root: string;
  port: number;
  server: ChildProcess;
  database?: string;
  dataDir?: string;
}

interface Sample {
  side: string;
  round: number;
  operation: 'create' | 'read';
  opsPerSec: number;
  nodeCpuMsPerOp: number;
  pgCpuMsPerOp?: number;
  load: number;
}

function databaseUrl(database: string): string {
  const url = new URL(DATABASE_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

async function startServer(name: string, root: string, port: number, admin: pg.Client | undefined): Promise<Side> {
  const side: Side = { name, root: resolve(root), port } as Side;
  let url: string;
  if (admin) {
    side.database = `crud_ab_${name}_${process.pid}`;
    await admin.query(`CREATE DATABASE ${side.database}`);
    url = databaseUrl(side.database);
  } else {
    side.dataDir = mkdtempSync(join(os.tmpdir(), `crud-ab-${name}-`));
    url = join(side.dataDir, 'pglite');
  }
  const execArgv = ['--import', 'tsx', ...(CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${join(resolve(CPU_PROF), `${name}-${STORE}`)}`] : [])];
  side.server = spawn(process.execPath, [...execArgv, 'src/main.ts'], {
    cwd: side.root,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: url,
      LOG_LEVEL: 'warn',
      FHIR_AUTH: 'off',
      FHIR_AUDIT: 'off',
      FHIR_ENCRYPTION: 'off',
      FHIR_RATE_LIMIT: '0',
    },
  });
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (side.server.exitCode !== null) throw new Error(`${name}: the server exited (${side.server.exitCode})`);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/fhir/metadata`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${name}: no answer on port ${port}`);
    await new Promise((done) => setTimeout(done, 250));
  }
  return side;
}

/** A port free at this moment (two runs of this script at once must not send their load to each other's servers). */
function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => done(port));
    });
    probe.on('error', fail);
  });
}

async function stopServer(side: Side, admin: pg.Client | undefined): Promise<void> {
  const exited = new Promise((done) => side.server.once('exit', done));
  side.server.kill('SIGTERM');
  await exited;
  if (admin && side.database) await admin.query(`DROP DATABASE ${side.database}`);
  if (side.dataDir) rmSync(side.dataDir, { recursive: true, force: true });
}

function expectOnly(result: HttpJobResult, status: number, what: string): void {
  const unexpected = Object.keys(result.statuses).filter((code) => Number(code) !== status);
  if (unexpected.length > 0) throw new Error(`${what}: expected only ${status}, got ${JSON.stringify(result.statuses)}`);
}

async function measured(side: Side, admin: pg.Client | undefined, run: () => Promise<HttpJobResult>): Promise<{ result: HttpJobResult; nodeCpuMs: number; pgCpuMs?: number; load: number; fromUs: bigint; toUs: bigint }> {
  const pgBefore = admin ? await backendsCpuMs(admin, side.database!) : undefined;
  const nodeBefore = processCpuMs(side.server.pid!);
  const fromUs = process.hrtime.bigint() / 1000n;
  const result = await run();
  const toUs = process.hrtime.bigint() / 1000n;
  const nodeCpuMs = processCpuMs(side.server.pid!) - nodeBefore;
  // The admin connection is in another database: the backends counted are the server's.
  const pgCpuMs = admin && pgBefore ? await backendsCpuMsSince(admin, side.database!, pgBefore) : undefined;
  return { result, nodeCpuMs, pgCpuMs, load: os.loadavg()[0]!, fromUs, toUs };
}

async function main(): Promise<void> {
  const sides = process.argv.slice(2).map((argument) => {
    const [name, root] = argument.split('=');
    if (!name || !root || !/^[a-z0-9]+$/.test(name)) throw new Error(`usage: crud-ab.ts name=checkout … (got '${argument}')`);
    return { name, root };
  });
  if (sides.length < 2) throw new Error('usage: crud-ab.ts old=../old new=.');
  const admin = STORE === 'postgres' ? new pg.Client({ connectionString: DATABASE_URL }) : undefined;
  await admin?.connect();
  const client = LoadClient.start();
  const started: Side[] = [];
  const samples: Sample[] = [];
  // Interrupted, the servers go too (their databases stay: crud_ab_<side>_<pid>).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      for (const side of started) side.server.kill('SIGTERM');
      process.exit(1);
    });
  }
  try {
    for (const side of sides) started.push(await startServer(side.name, side.root, await freePort(), admin));
    let offset = 0;
    const patients = (count: number) => {
      const bodies = Array.from({ length: count }, (_, index) => JSON.stringify(frenchPatient(offset + index)));
      offset += count;
      return bodies;
    };
    for (let round = 0; round <= ROUNDS; round++) {
      // Round 0 warms each server up (validator built, pool opened, code optimised) and is not recorded.
      const count = round === 0 ? WARMUP : REQUESTS;
      const bodies = patients(count);
      // A, B, … then B, A, … : neither side is always first after the other's writes.
      const order = round % 2 === 0 ? started : [...started].reverse();
      for (const side of order) {
        const origin = `http://127.0.0.1:${side.port}`;
        const create = await measured(side, admin, () =>
          client.run({ origin, method: 'POST', paths: new Array<string>(count).fill('/fhir/Patient'), bodies, concurrency: CONCURRENCY }),
        );
        expectOnly(create.result, 201, `${side.name} create`);
        const ids = create.result.locations.map((location) => location.match(/\/Patient\/([^/]+)\/_history\//)![1]!);
        const read = await measured(side, admin, () =>
          client.run({ origin, method: 'GET', paths: ids.map((id) => `/fhir/Patient/${id}`), concurrency: CONCURRENCY }),
        );
        expectOnly(read.result, 200, `${side.name} read`);
        if (round === 0) continue;
        // The measured windows on the monotonic clock a .cpuprofile's timestamps use (µs), to cut a profile to them.
        if (CPU_PROF) for (const [operation, m] of [['create', create], ['read', read]] as const) console.error(`window ${side.name} ${operation} ${m.fromUs} ${m.toUs}`);
        for (const [operation, m] of [['create', create], ['read', read]] as const) {
          const sample: Sample = {
            side: side.name,
            round,
            operation,
            opsPerSec: (count * 1000) / m.result.elapsedMs,
            nodeCpuMsPerOp: m.nodeCpuMs / count,
            ...(m.pgCpuMs === undefined ? {} : { pgCpuMsPerOp: m.pgCpuMs / count }),
            load: m.load,
          };
          samples.push(sample);
          console.error(
            `round ${round} ${side.name} ${operation}: ${sample.opsPerSec.toFixed(0)} ops/s, Node ${sample.nodeCpuMsPerOp.toFixed(3)} ms/op` +
              (sample.pgCpuMsPerOp === undefined ? '' : `, PostgreSQL ${sample.pgCpuMsPerOp.toFixed(3)} ms/op`) +
              `, load ${sample.load.toFixed(1)}`,
          );
        }
      }
    }
  } finally {
    client.stop();
    for (const side of started) await stopServer(side, admin);
    await admin?.end();
  }
  console.log(report(sides.map((side) => side.name), samples));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Medians over the rounds, with the range, and each side against the first. */
function report(names: string[], samples: Sample[]): string {
  const lines = [
    `${STORE}, ${ROUNDS} rounds of ${REQUESTS} per operation, ${CONCURRENCY} in flight, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${new Date().toISOString()}`,
    '',
    '| operation | side | ops/s (median, range) | Node CPU ms/op | PostgreSQL CPU ms/op | ops/s vs first | Node+PG CPU vs first |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const operation of ['create', 'read'] as const) {
    const first = names[0]!;
    const of = (name: string) => samples.filter((sample) => sample.side === name && sample.operation === operation);
    const firstOps = median(of(first).map((s) => s.opsPerSec));
    const firstCpu = median(of(first).map((s) => s.nodeCpuMsPerOp + (s.pgCpuMsPerOp ?? 0)));
    for (const name of names) {
      const rows = of(name);
      const ops = rows.map((s) => s.opsPerSec);
      const nodeCpu = rows.map((s) => s.nodeCpuMsPerOp);
      const pgCpu = rows.map((s) => s.pgCpuMsPerOp ?? NaN);
      const cpu = median(rows.map((s) => s.nodeCpuMsPerOp + (s.pgCpuMsPerOp ?? 0)));
      const range = (values: number[], digits: number) => `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;
      lines.push(
        `| ${operation} | ${name} | ${range(ops, 0)} | ${range(nodeCpu, 3)} | ${STORE === 'postgres' ? range(pgCpu, 3) : '–'} | ${((median(ops) / firstOps) * 100).toFixed(1)} % | ${((cpu / firstCpu) * 100).toFixed(1)} % |`,
      );
    }
  }
  return lines.join('\n');
}

await main();
