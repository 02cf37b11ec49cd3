/**
 * Ingest benchmark: realistic transaction bundles (a patient with an INS found or created by conditional create,
 * then 20–50 clinical resources: immunizations, allergies, medication statements, PDSm documents carrying a PDF
 * of a few KB) POSTed to a real server process over HTTP, with full validation and search indexing, on
 * PostgreSQL; at 1 and 8 concurrent senders. Next to it, the same resources written by raw `pg` (current row +
 * history row per resource, one transaction per bundle) at the same concurrency.
 *
 *   npm run bench:ingest
 *
 * The server runs twice, on fresh databases: with its default (French) profiles, and with
 * FHIR_DEFAULT_PROFILES=none (base R4 checks only), to show validation's share.
 *
 * Environment: BENCH_DATABASE_URL (postgres://…; without it a throwaway PostgreSQL 15 cluster is started and
 * removed), BENCH_BUNDLES (bundles per measurement at 8 senders, 120), BENCH_BUNDLES_SINGLE (at 1 sender, 30),
 * BENCH_WARMUP (bundles, 64), PG_POOL_SIZE (10, server and raw side), BENCH_CPU_PROF=1 (profile the server
 * with --cpu-prof, in the first round, and summarise where its time went), BENCH_MODES (french,none),
 * BENCH_WORKERS (server processes for the French mode, a list: 1,2; WORKERS of the server; the other modes
 * run with 1), BENCH_ROUNDS (3: the whole sequence is run that many times; medians are reported).
 * Results go to scripts/bench/results/ingest-postgres.{md,json}.
 *
 * BENCH_WORKLOAD=synthea sends the twenty Synthea bundles of test/fixtures/synthea instead (US R4 data: one
 * patient, 71–293 entries of 11–14 types each), cycled, each copy with fresh urn:uuids, at 8 senders only,
 * against raw multi-row INSERTs only, WORKERS=1 unless BENCH_WORKERS says otherwise; results go to
 * scripts/bench/results/ingest-synthea-postgres.{md,json}.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { openDatabase } from '../../src/store/open-database.ts';
import { migrate } from '../../src/store/migrate.ts';
import { backendToken, registerBackendClientAt } from './lib/backend-token.ts';
import { frenchTransaction } from '../../test/helpers/french-bundles.ts';
import { syntheaBundles } from '../../test/helpers/synthea.ts';
import { closedLoop, type LoopResult } from './lib/closed-loop.ts';
import { summariseProfile, type ProfileSummary } from './lib/cpu-profile.ts';
import { LoadClient } from './lib/load-client.ts';
import { benchPostgres, freePort } from './lib/pg-cluster.ts';
import { machine, machineBusyTicks, medianAndRange, ratioAndTargetTables } from './lib/report.ts';

const BUNDLES = positiveInteger('BENCH_BUNDLES', 120);
const BUNDLES_SINGLE = positiveInteger('BENCH_BUNDLES_SINGLE', 30);
/**
 * Bundles sent (at 8 senders) before anything is measured. A hospital pushing its backlog meets a server that
 * has been running; 16 bundles left V8 still optimising the validator and the index extraction during the
 * measurement (3 alternated pairs at 8 senders: 2,097/2,522/2,179 resources/s after 16, 2,110/2,695/2,465 after 64).
 */
const WARMUP = positiveInteger('BENCH_WARMUP', 64);
const PG_POOL_SIZE = positiveInteger('PG_POOL_SIZE', 10);
const CPU_PROF = process.env.BENCH_CPU_PROF === '1';
const MODES = (process.env.BENCH_MODES ?? 'french,none').split(',') as Array<'french' | 'none'>;
const WORKLOAD = process.env.BENCH_WORKLOAD ?? 'french';
if (WORKLOAD !== 'french' && WORKLOAD !== 'synthea') throw new Error(`BENCH_WORKLOAD must be french or synthea, not '${WORKLOAD}'`);
const SYNTHEA = WORKLOAD === 'synthea';
const WORKER_COUNTS = (process.env.BENCH_WORKERS ?? (SYNTHEA ? '1' : '1,2')).split(',').map(Number);
if (WORKER_COUNTS.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('BENCH_WORKERS must list positive integers');
/**
 * Rounds of the whole sequence (every server setting, then raw `pg`). This machine's speed moves by a
 * quarter from one minute to the next, so a single round's ratio says little: each round's ratios are
 * taken within the round, and the report gives their median with the range over the rounds.
 */
const ROUNDS = positiveInteger('BENCH_ROUNDS', 3);
const CONCURRENCIES = SYNTHEA ? [8] : [1, 8];
const RAW_VARIANTS = [['raw pg, 2 INSERTs per resource', false], ['raw pg, 2 multi-row INSERTs per bundle', true]] as const;
const RESULTS_DIR = new URL('./results/', import.meta.url);
const RESULTS_NAME = SYNTHEA ? 'ingest-synthea-postgres' : 'ingest-postgres';
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

// Targets of project issue 5.
const TARGET_RESOURCES_PER_SEC = 3000;
const TARGET_SHARE_OF_RAW = 0.4;

function positiveInteger(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  if (!/^[1-9]\d*$/.test(value)) throw new Error(`${name} must be a positive integer, not '${value}'`);
  return Number(value);
}

// --- the workload -------------------------------------------------------------------------------------

/** Clinical resources in bundle `index`: 20–50, spread evenly. */
const clinicalOf = (index: number) => 20 + ((index * 7) % 31);
/** PDF bytes per document in bundle `index`: 2–6 KB. */
const pdfOf = (index: number) => 2048 + ((index * 613) % 4096);

interface Workload {
  bodies: string[];
  resources: number[];
}

/** Bundles [from, from + count): each a new patient, so every bundle creates all its resources. */
function workload(from: number, count: number): Workload {
  if (SYNTHEA) return syntheaWorkload(from, count);
  const bodies: string[] = [];
  const resources: number[] = [];
  for (let index = from; index < from + count; index++) {
    const clinical = clinicalOf(index);
    bodies.push(JSON.stringify(frenchTransaction(index, { clinical, pdfBytes: pdfOf(index), marker: `ingest-${index}` })));
    resources.push(1 + clinical);
  }
  return { bodies, resources };
}

/** The Synthea bundles as JSON text with their urn:uuids, read once. */
let syntheaTemplates: Array<{ text: string; uuids: Set<string>; entries: number }> | undefined;

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

/**
 * Synthea bundles [from, from + count), cycling through the twenty: each copy with a new uuid in place of
 * each of its entries' (in fullUrl, references and the resources' own ids), so no copy is a repeat of another.
 */
function syntheaWorkload(from: number, count: number): Workload {
  syntheaTemplates ??= syntheaBundles().map(({ bundle }) => ({
    text: JSON.stringify(bundle),
    uuids: new Set(bundle.entry.map((entry) => entry.fullUrl.replace(/^urn:uuid:/, ''))),
    entries: bundle.entry.length,
  }));
  const bodies: string[] = [];
  const resources: number[] = [];
  for (let index = from; index < from + count; index++) {
    const template = syntheaTemplates[index % syntheaTemplates.length]!;
    const fresh = new Map([...template.uuids].map((uuid) => [uuid, randomUUID()]));
    bodies.push(template.text.replace(UUID, (uuid) => fresh.get(uuid) ?? uuid));
    resources.push(template.entries);
  }
  return { bodies, resources };
}

/** What the server stores for a bundle: ids assigned, urn:uuid references rewritten, meta stamped. */
const URN = /urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

function storedRows(body: string): Array<{ type: string; id: string; json: string; lastUpdated: string }> {
  const bundle = JSON.parse(body) as { entry: Array<{ fullUrl: string; resource: Record<string, unknown> & { resourceType: string } }> };
  const ids = bundle.entry.map((entry) => ({ urn: entry.fullUrl, type: entry.resource.resourceType, id: randomUUID() }));
  const byUrn = new Map(ids.map((entry) => [entry.urn, `${entry.type}/${entry.id}`]));
  return bundle.entry.map((entry, i) => {
    const { type, id } = ids[i]!;
    const lastUpdated = new Date().toISOString();
    // The id a client sent is replaced by the server's, as a POST does.
    const { resourceType, meta, id: _sent, ...rest } = entry.resource;
    const json = JSON.stringify({ resourceType, id, meta: { ...(meta as object), versionId: '1', lastUpdated }, ...rest }).replace(URN, (urn) => byUrn.get(urn) ?? urn);
    return { type, id, json, lastUpdated };
  });
}

// --- measurement helpers ------------------------------------------------------------------------------

interface Row {
  writer: string;
  senders: number;
  bundles: number;
  resources: number;
  resourcesPerSec: number;
  bundlesPerSec: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  /** Peak RSS of the server process during the measurement (raw rows: the benchmark process), MiB. */
  peakRssMiB: number;
  /** CPU of the server process over wall time, % of one core (raw rows: the benchmark process). */
  cpuPercent: number;
  /** CPU time of that process per resource written, ms. */
  cpuMsPerResource: number;
  /** Busy CPU of the whole machine (server, PostgreSQL, load client, all) over wall time, % of one core. */
  machineCpuPercent: number;
  loadBefore: number;
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))] ?? NaN;
}

function procStat(pid: number): { rssBytes: number; cpuTicks: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return { rssBytes: rssKb * 1024, cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

/** `pid` and its live descendants (a WORKERS server is a primary and its server processes). */
function processTree(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parentOf.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // ended meanwhile
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) for (const [child, parent] of parentOf) if (parent === tree[i]) tree.push(child);
  return tree;
}

function treeStat(pids: number[]): { rssBytes: number; cpuTicks: Map<number, number> } {
  let rssBytes = 0;
  const cpuTicks = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = procStat(pid);
      rssBytes += stat.rssBytes;
      cpuTicks.set(pid, stat.cpuTicks);
    } catch {
      // ended meanwhile
    }
  }
  return { rssBytes, cpuTicks };
}

/**
 * Samples the RSS of `pid` and its descendants every 20 ms; `stop` returns the peak of their sum and the
 * CPU time they used meanwhile (ms).
 */
function watchProcess(pid: number): { stop(): { peakRssBytes: number; cpuMs: number; machineCpuPercent: number } } {
  const pids = processTree(pid);
  const start = treeStat(pids);
  const machineStart = machineBusyTicks();
  const wallStart = performance.now();
  let peak = start.rssBytes;
  const timer = setInterval(() => {
    peak = Math.max(peak, treeStat(pids).rssBytes);
  }, 20);
  return {
    stop() {
      clearInterval(timer);
      const end = treeStat(pids);
      let ticks = 0;
      for (const [p, t] of end.cpuTicks) ticks += t - (start.cpuTicks.get(p) ?? t);
      // USER_HZ is 100 on Linux.
      return { peakRssBytes: Math.max(peak, end.rssBytes), cpuMs: ticks * 10, machineCpuPercent: ((machineBusyTicks() - machineStart) * 10 * 100) / (performance.now() - wallStart) };
    },
  };
}

function row(writer: string, senders: number, work: Workload, result: LoopResult, usage: { peakRssBytes: number; cpuMs: number; machineCpuPercent: number }, loadBefore: number): Row {
  const sorted = [...result.latencies].sort((a, b) => a - b);
  const resources = work.resources.reduce((a, b) => a + b, 0);
  const measured: Row = {
    writer,
    senders,
    bundles: work.bodies.length,
    resources,
    resourcesPerSec: (resources * 1000) / result.elapsedMs,
    bundlesPerSec: (work.bodies.length * 1000) / result.elapsedMs,
    p50Ms: percentile(sorted, 0.5),
    p95Ms: percentile(sorted, 0.95),
    p99Ms: percentile(sorted, 0.99),
    peakRssMiB: usage.peakRssBytes / 2 ** 20,
    cpuPercent: (100 * usage.cpuMs) / result.elapsedMs,
    cpuMsPerResource: usage.cpuMs / resources,
    machineCpuPercent: usage.machineCpuPercent,
    loadBefore,
  };
  console.error(
    `  ${writer} × ${senders}: ${measured.resourcesPerSec.toFixed(0)} resources/s, ${measured.bundlesPerSec.toFixed(1)} bundles/s, ` +
      `p50 ${measured.p50Ms.toFixed(0)} ms, p99 ${measured.p99Ms.toFixed(0)} ms (load ${loadBefore.toFixed(2)})`,
  );
  return measured;
}

/** The system's monotonic clock in µs: the clock V8 stamps profile samples with. */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

// --- databases and server processes -------------------------------------------------------------------

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function databaseUrl(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

interface Server {
  child: ChildProcess;
  origin: string;
  /** `Bearer <token>` for it, got as a feed gets one (backend services, over HTTP). */
  authorization: string;
  stop(): Promise<void>;
}

async function startServer(url: string, env: Record<string, string>, profileDir?: string): Promise<Server> {
  const port = await freePort();
  // Registered before the server starts (an embedded store belongs to one process); its token asked once it listens.
  const feed = await registerBackendClientAt(url, 'bench', 'system/*.cruds');
  const args = [...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), '--import', 'tsx', 'src/main.ts'];
  const child = spawn(process.execPath, args, {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DATABASE_URL: url, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', PG_POOL_SIZE: String(PG_POOL_SIZE), FHIR_RATE_LIMIT: '0', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const origin = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 1200; attempt++) {
    if (child.exitCode !== null) throw new Error('the server exited during start-up');
    if (await fetch(`${origin}/health`).then((r) => r.ok, () => false)) {
      return {
        child,
        origin,
        authorization: `Bearer ${await backendToken(origin, feed, 'system/*.cruds')}`,
        async stop() {
          child.kill('SIGTERM');
          await exited;
        },
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  child.kill('SIGKILL');
  throw new Error('the server did not become healthy in 5 minutes');
}

// --- the measurements -----------------------------------------------------------------------------------

let nextBundle = 0;
const take = (count: number) => {
  const work = workload(nextBundle, count);
  nextBundle += count;
  return work;
};

async function measureServer(mode: 'french' | 'none', workers: number, clusterUrl: string, client: LoadClient, profiled: boolean): Promise<{ rows: Row[]; profile?: ProfileSummary; startMs: number }> {
  const name = `bench_ingest_${mode}_${workers}_${process.pid}`;
  await adminQuery(clusterUrl, `CREATE DATABASE ${name}`);
  const profileDir = profiled ? mkdtempSync(join(os.tmpdir(), `dossier-ingest-prof-${mode}-`)) : undefined;
  const startAt = performance.now();
  const env = { WORKERS: String(workers), ...(mode === 'none' ? { FHIR_DEFAULT_PROFILES: 'none' } : {}) };
  // A profile samples one process: with several server processes it would be one of them, so none is taken.
  const server = await startServer(databaseUrl(clusterUrl, name), env, workers === 1 ? profileDir : undefined);
  const startMs = performance.now() - startAt;
  const label = `${mode === 'french' ? 'server, French profiles (default)' : 'server, FHIR_DEFAULT_PROFILES=none'}${workers > 1 ? `, WORKERS=${workers}` : ''}`;
  console.error(`${label}: healthy after ${(startMs / 1000).toFixed(1)} s`);
  const rows: Row[] = [];
  let profileWindow: { fromUs: number; toUs: number } | undefined;
  try {
    const send = async (work: Workload, concurrency: number) => {
      const result = await client.run({ origin: server.origin, authorization: server.authorization, method: 'POST', paths: work.bodies.map(() => '/fhir'), bodies: work.bodies, concurrency });
      const unexpected = Object.entries(result.statuses).filter(([status]) => status !== '200');
      if (unexpected.length > 0) throw new Error(`${label}: expected only 200, got ${JSON.stringify(result.statuses)}`);
      return result;
    };
    await send(take(WARMUP), 8);
    for (const senders of CONCURRENCIES) {
      const work = take(senders === 1 ? BUNDLES_SINGLE : BUNDLES);
      const loadBefore = os.loadavg()[0]!;
      const watch = watchProcess(server.child.pid!);
      const fromUs = monotonicUs();
      const result = await send(work, senders);
      if (senders === 8) profileWindow = { fromUs, toUs: monotonicUs() };
      rows.push(row(label, senders, work, result, watch.stop(), loadBefore));
    }
  } finally {
    await server.stop();
    await adminQuery(clusterUrl, `DROP DATABASE ${name} WITH (FORCE)`);
  }
  let profile: ProfileSummary | undefined;
  if (profileDir) {
    const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      profile = summariseProfile(join(profileDir, file), { window: profileWindow });
      console.error(`  profile: ${join(profileDir, file)}`);
    }
  }
  return { rows, profile, startMs };
}

async function measureRaw(clusterUrl: string): Promise<Row[]> {
  const name = `bench_ingest_raw_${process.pid}`;
  await adminQuery(clusterUrl, `CREATE DATABASE ${name}`);
  const url = databaseUrl(clusterUrl, name);
  const db = await openDatabase(url);
  await migrate(db);
  await db.close();
  const pool = new pg.Pool({ connectionString: url, max: PG_POOL_SIZE });
  // The database is dropped WITH (FORCE) at the end: a connection it cuts must not crash the benchmark.
  pool.on('error', () => {});
  const rows: Row[] = [];
  try {
    // Synthea: the multi-row baseline only, the one issue 16 item 8 compares the server with.
    for (const [variant, multiRow] of SYNTHEA ? RAW_VARIANTS.filter(([, multi]) => multi) : RAW_VARIANTS) {
      const insertBundle = async (stored: ReturnType<typeof storedRows>) => {
        const connection = await pool.connect();
        try {
          await connection.query('BEGIN');
          if (multiRow) {
            const values = (width: number) => stored.map((_, i) => `(${Array.from({ length: width }, (_, k) => `$${i * width + k + 1}`).join(', ')})`).join(', ');
            await connection.query(
              `INSERT INTO resource (resource_type, id, version_id, last_updated, content) VALUES ${values(5)}`,
              stored.flatMap((r) => [r.type, r.id, 1, r.lastUpdated, r.json]),
            );
            await connection.query(
              `INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content) VALUES ${values(6)}`,
              stored.flatMap((r) => [r.type, r.id, 1, r.lastUpdated, 'POST', r.json]),
            );
          } else {
            for (const r of stored) {
              await connection.query(`INSERT INTO resource (resource_type, id, version_id, last_updated, content) VALUES ($1, $2, 1, $3, $4)`, [r.type, r.id, r.lastUpdated, r.json]);
              await connection.query(
                `INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content) VALUES ($1, $2, 1, $3, 'POST', $4)`,
                [r.type, r.id, r.lastUpdated, r.json],
              );
            }
          }
          await connection.query('COMMIT');
        } catch (error) {
          await connection.query('ROLLBACK').catch(() => {});
          throw error;
        } finally {
          connection.release();
        }
      };
      const run = async (work: Workload, concurrency: number) => {
        // Stored forms prepared before the clock starts: the raw side does no JSON work while measured.
        const stored = work.bodies.map(storedRows);
        return closedLoop(stored.length, concurrency, (i) => insertBundle(stored[i]!));
      };
      await run(take(WARMUP), 8);
      for (const senders of CONCURRENCIES) {
        const work = take(senders === 1 ? BUNDLES_SINGLE : BUNDLES);
        const loadBefore = os.loadavg()[0]!;
        const watch = watchProcess(process.pid);
        const result = await run(work, senders);
        rows.push(row(variant, senders, work, result, watch.stop(), loadBefore));
      }
    }
  } finally {
    await pool.end();
    await adminQuery(clusterUrl, `DROP DATABASE ${name} WITH (FORCE)`);
  }
  return rows;
}

// --- report -------------------------------------------------------------------------------------------

/** The commit measured, and the src/ files that differed from it (the benchmark measures the working tree). */
function sourceState(): { commit: string; dirtySrc: string[] } {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
    const dirtySrc = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: PROJECT_ROOT, encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map((line) => line.slice(3));
    return { commit, dirtySrc };
  } catch {
    return { commit: 'unknown', dirtySrc: [] };
  }
}

interface Report {
  date: string;
  source: { commit: string; dirtySrc: string[] };
  node: string;
  machine: ReturnType<typeof machine>;
  loadAverage: { before: number; after: number };
  settings: { workload: string; bundles: number; bundlesSingle: number; warmup: number; pgPoolSize: number; clinicalPerBundle: string; pdfBytes: string; logLevel: string; cpuProfiled: boolean };
  serverStartSeconds: Record<string, number>;
  rounds: number;
  /** Per writer and senders, the round with the median resources/s, and the range over the rounds. */
  rows: Array<Row & { resourcesPerSecRange: [number, number] }>;
  /** Median over the rounds of each round's own ratio. */
  ratios: Record<string, number>;
  ratioRanges: Record<string, [number, number]>;
  /** Every round's rows, as measured. */
  roundRows: Row[][];
  targets: Record<string, { rule: string; met: boolean }>;
  profiles: Record<string, ProfileSummary>;
}

const f = (value: number, digits = 0) => value.toFixed(digits);

function markdown(report: Report): string {
  const lines = [
    `# Ingest benchmark: ${SYNTHEA ? 'the Synthea transaction bundles' : 'transaction bundles'} on PostgreSQL`,
    '',
    `Commit ${report.source.commit}${report.source.dirtySrc.length ? ` plus uncommitted changes to ${report.source.dirtySrc.join(', ')}` : ''}`,
    `${report.date} · Node ${report.node} · ${report.machine.cpu} × ${report.machine.cores} cores · ${report.machine.os}`,
    `Load average (1 min) before/after the run: ${f(report.loadAverage.before, 2)} / ${f(report.loadAverage.after, 2)}` +
      (report.loadAverage.before > report.machine.cores / 2 ? ' (**the machine was busy with other work: numbers are pessimistic and noisy**)' : ''),
    (SYNTHEA
      ? `Each bundle: one of the twenty Synthea bundles of test/fixtures/synthea (one patient, 71–293 entries, 204 on average: Observations, Claims, ` +
        `ExplanationOfBenefits, Encounters, Immunizations, Conditions…; 0.27–1.5 MB of JSON), cycled, each copy with fresh urn:uuids. ` +
        `${report.settings.bundles} bundles at 8 senders, after ${report.settings.warmup} warm-up; `
      : `Each bundle: a new patient with an INS (conditional create), then ${report.settings.clinicalPerBundle} clinical resources ` +
        `(immunizations, allergies, medication statements, PDSm documents each carrying a ${report.settings.pdfBytes} PDF as a contained Binary). ` +
        `${report.settings.bundlesSingle} bundles at 1 sender, ${report.settings.bundles} at 8, after ${report.settings.warmup} warm-up; `) +
      `server on real HTTP (separate process, LOG_LEVEL=${report.settings.logLevel}${report.settings.cpuProfiled ? ', sampled by --cpu-prof' : ''}), pool of ${report.settings.pgPoolSize} connections.`,
    '',
    `${report.rounds} rounds of the whole sequence. Each row is the round with the median resources/s for that writer and senders; the range is over the rounds.`,
    '',
    '| writer | senders | bundles | resources | resources/s | range over rounds | bundles/s | p50 ms | p95 ms | p99 ms | peak RSS MiB | CPU % | CPU ms/resource | machine CPU % | load |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...report.rows.map(
      (r) =>
        `| ${r.writer} | ${r.senders} | ${r.bundles} | ${r.resources} | ${f(r.resourcesPerSec)} | ${f(r.resourcesPerSecRange[0])}–${f(r.resourcesPerSecRange[1])} | ${f(r.bundlesPerSec, 1)} | ${f(r.p50Ms)} | ${f(r.p95Ms)} | ${f(r.p99Ms)} | ${f(r.peakRssMiB)} | ${f(r.cpuPercent)} | ${f(r.cpuMsPerResource, 2)} | ${f(r.machineCpuPercent)} | ${f(r.loadBefore, 2)} |`,
    ),
    '',
    `Peak RSS and CPU % are the server's processes' (raw rows: the benchmark process, which holds the prepared rows); CPU % is CPU time over wall time, 100 = one core (CPU ms/resource: the same CPU time per resource written; for raw rows it is the client side only, the PostgreSQL server processes are never counted); machine CPU % is every process's (server, PostgreSQL, the load client), ${report.machine.cores * 100} % being all ${report.machine.cores} cores busy; load is the 1-minute load average when the row started.`,
    `Server start (until /health answers): ${Object.entries(report.serverStartSeconds).map(([k, v]) => `${k} ${f(v, 1)} s`).join(', ')}.`,
    '',
    `Ratios: each round's server over the same round's raw \`pg\`, then the median over the rounds (range: ${Object.entries(report.ratioRanges)
      .filter(([name]) => name.includes(SYNTHEA ? 'multi-row' : 'per-resource') && name.includes('8 sender'))
      .map(([name, [low, high]]) => `${name.replace(/ \/ raw.*$/, '')} ${f(low * 100, 1)}–${f(high * 100, 1)} %`)
      .join('; ')}). Targets are judged on the medians.`,
    '',
    ...ratioAndTargetTables(report.ratios, report.targets),
  ];
  for (const [mode, profile] of Object.entries(report.profiles)) {
    lines.push(
      `## Where the server's time went (${mode}, --cpu-prof, samples of the 8-sender measurement only)`,
      '',
      `${f(profile.busyMs / 1000, 1)} s of busy samples over ${f(profile.wallMs / 1000, 1)} s. Shares of busy samples; an area counts every sample with one of its functions on the stack.`,
      '',
      '| area | % of busy samples |',
      '|---|---:|',
      ...profile.areas.map((a) => `| ${a.area} | ${f(a.percent, 1)} |`),
      '',
      '| function (self time) | % |',
      '|---|---:|',
      ...profile.topSelf.map((s) => `| \`${s.fn}\` | ${f(s.percent, 1)} |`),
      '',
    );
  }
  return lines.join('\n');
}

/** One round: every server setting, then raw `pg`, each on a fresh database. */
async function measureRound(url: string, client: LoadClient, profiled: boolean): Promise<{ rows: Row[]; profiles: Record<string, ProfileSummary>; serverStartSeconds: Record<string, number> }> {
  const rows: Row[] = [];
  const profiles: Record<string, ProfileSummary> = {};
  const serverStartSeconds: Record<string, number> = {};
  for (const mode of MODES) {
    for (const workers of mode === 'french' ? WORKER_COUNTS : [1]) {
      const measured = await measureServer(mode, workers, url, client, profiled);
      rows.push(...measured.rows);
      serverStartSeconds[workers > 1 ? `${mode}, WORKERS=${workers}` : mode] = measured.startMs / 1000;
      if (measured.profile) profiles[mode] = measured.profile;
    }
  }
  console.error('raw pg:');
  rows.push(...(await measureRaw(url)));
  return { rows, profiles, serverStartSeconds };
}

const find = (rows: Row[], prefix: string, senders: number) => rows.find((r) => r.writer.startsWith(prefix) && r.senders === senders);

/** A round's ratios of each server setting to raw `pg`, both measured in that round. */
function ratiosOf(rows: Row[]): Record<string, number> {
  const ratios: Record<string, number> = {};
  for (const senders of CONCURRENCIES) {
    const raw = find(rows, 'raw pg, 2 INSERTs', senders);
    const rawMulti = find(rows, 'raw pg, 2 multi-row', senders)!;
    for (const server of rows.filter((r) => r.writer.startsWith('server') && r.senders === senders)) {
      const name = server.writer.replace('server, French profiles (default)', 'French profiles').replace('server, FHIR_DEFAULT_PROFILES=none', 'no default profiles');
      if (raw) ratios[`server (${name}) / raw per-resource INSERTs, ${senders} sender(s)`] = server.resourcesPerSec / raw.resourcesPerSec;
      ratios[`server (${name}) / raw multi-row INSERTs, ${senders} sender(s)`] = server.resourcesPerSec / rawMulti.resourcesPerSec;
    }
    const french = find(rows, 'server, French', senders);
    const none = find(rows, 'server, FHIR_DEFAULT_PROFILES=none', senders);
    if (french && none) ratios[`French profiles / no default profiles, ${senders} sender(s)`] = french.resourcesPerSec / none.resourcesPerSec;
  }
  return ratios;
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0]!;
  const source = sourceState();
  const postgres = await benchPostgres({ max_connections: '100' });
  const client = LoadClient.start();
  try {
    const url = postgres.url;
    const rounds: Awaited<ReturnType<typeof measureRound>>[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      console.error(`round ${round} of ${ROUNDS}`);
      rounds.push(await measureRound(url, client, CPU_PROF && round === 1));
    }
    const { profiles, serverStartSeconds } = rounds[0]!;

    const rows: Report['rows'] = rounds[0]!.rows.map(({ writer, senders }) => {
      const measured = rounds.map((round) => find(round.rows, writer, senders)!);
      const { median, range } = medianAndRange(measured.map((r) => r.resourcesPerSec));
      return { ...measured.find((r) => r.resourcesPerSec === median)!, resourcesPerSecRange: range };
    });
    const perRound = rounds.map((round) => ratiosOf(round.rows));
    const ratios: Record<string, number> = {};
    const ratioRanges: Record<string, [number, number]> = {};
    for (const name of Object.keys(perRound[0]!)) {
      const { median, range } = medianAndRange(perRound.map((r) => r[name]!));
      ratios[name] = median;
      ratioRanges[name] = range;
    }
    const targets: Report['targets'] = {};
    for (const french8 of rows.filter((r) => r.writer.startsWith('server, French') && r.senders === 8)) {
      const setting = french8.writer.replace('server, French profiles (default)', 'French profiles');
      targets[`throughput ${setting}`] = { rule: `≥ ${TARGET_RESOURCES_PER_SEC} resources/s at 8 senders (${setting})`, met: french8.resourcesPerSec >= TARGET_RESOURCES_PER_SEC };
      if (SYNTHEA) continue; // the share target is of raw per-resource INSERTs, not measured with Synthea
      targets[`share ${setting}`] = {
        rule: `≥ ${TARGET_SHARE_OF_RAW * 100} % of raw per-resource INSERTs at 8 senders (${setting})`,
        met: ratios[`server (${setting}) / raw per-resource INSERTs, 8 sender(s)`]! >= TARGET_SHARE_OF_RAW,
      };
    }
    const report: Report = {
      date: new Date().toISOString(),
      source,
      node: process.version,
      machine: machine(),
      loadAverage: { before: loadBefore, after: os.loadavg()[0]! },
      settings: { workload: WORKLOAD, bundles: BUNDLES, bundlesSingle: BUNDLES_SINGLE, warmup: WARMUP, pgPoolSize: PG_POOL_SIZE, clinicalPerBundle: '20–50', pdfBytes: '2–6 KB', logLevel: 'warn', cpuProfiled: CPU_PROF },
      serverStartSeconds,
      rounds: ROUNDS,
      rows,
      ratios,
      ratioRanges,
      roundRows: rounds.map((round) => round.rows),
      targets,
      profiles,
    };
    const text = markdown(report);
    console.log(text);
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(new URL(`${RESULTS_NAME}.md`, RESULTS_DIR), text);
    writeFileSync(new URL(`${RESULTS_NAME}.json`, RESULTS_DIR), `${JSON.stringify(report, null, 2)}\n`);
    console.error(`wrote ${fileURLToPath(new URL(`${RESULTS_NAME}.md`, RESULTS_DIR))} and .json`);
  } finally {
    client.stop();
    postgres.stop();
  }
}

await main();
