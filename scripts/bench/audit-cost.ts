/**
 * What the audit trail costs per operation, in CPU rather than wall time (issue 18 item 5): servers on the same
 * PostgreSQL database, each on a schema of its own and filled the same way, that differ by their security
 * settings (`off`: FHIR_AUTH=off and no trail; `auth`: SMART, no trail; `audit`: SMART and the trail), measured
 * alternately operation by operation (A, B, A, B) over BENCH_ROUNDS rounds. For each operation and
 * configuration it prints, per request:
 *   - Node CPU (process.cpuUsage of this process, which runs the servers; the load generator is a child of its own),
 *   - PostgreSQL CPU: the user + system time of the database's backends (/proc/<pid>/stat of every backend
 *     connected to this database), from before the requests until the audit log is drained after them: the
 *     append, the drain and everything else the request made the server do,
 *   - with the trail, per statement (pg_stat_statements of this database: executor time, WAL bytes, rows),
 * and at the end the size of what the trail stored per event. The database is the caller's own (BENCH_DATABASE_URL,
 * e.g. postgres://postgres@127.0.0.1:55432/audit_cost, created if missing), on a PostgreSQL on this machine
 * (its backends' /proc entries are read), with pg_stat_statements loaded.
 *
 *   BENCH_DATABASE_URL=postgres://… node --import tsx scripts/bench/audit-cost.ts
 *
 * Environment: BENCH_CONFIGURATIONS (`off,auth,audit`), BENCH_PATIENTS (300 of BENCH_OBSERVATIONS (10)
 * Observations each), BENCH_REQUESTS (1500 reads or searches a measurement; a fifth as many ingest Bundles),
 * BENCH_CONCURRENCY (16; 8 ingest senders), BENCH_ROUNDS (3, after one unrecorded), BENCH_OPERATIONS (all:
 * `read,identifier,observation,ingest`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppOptions } from '../../src/app.ts';
import { createProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { sqlStorage } from '../../src/store/storage.ts';
import type { Database } from '../../src/store/database.ts';
import { backendAuthorization } from './lib/backend-token.ts';
import { httpJob, LoadClient, type HttpOperation } from './lib/load-client.ts';
import { frenchPatient, INS_NIR_SYSTEM } from './lib/patients.ts';

const URL_ = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:55432/audit_cost';
const PATIENTS = Number(process.env.BENCH_PATIENTS ?? 300);
const OBSERVATIONS = Number(process.env.BENCH_OBSERVATIONS ?? 10);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 1500);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const SENDERS = 8;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const NAMES = (process.env.BENCH_CONFIGURATIONS ?? 'off,auth,audit').split(',');
const OPERATION_NAMES = (process.env.BENCH_OPERATIONS ?? 'read,identifier,observation,ingest').split(',');
const AUDIENCE = 'http://localhost/fhir';
const LOINC = 'http://loinc.org';
const CLOCK_TICK_MS = 10; // USER_HZ 100 on Linux

interface Target {
  name: string;
  schema: string;
  app: FastifyInstance;
  origin: string;
  authorization?: string;
  db: Database;
  patientIds: string[];
  identifiers: string[];
  ingested: number;
}

const CONFIG: Record<string, Partial<AppOptions['config']>> = {
  off: { auth: 'off', audit: 'off' },
  auth: { auth: 'on', audit: 'off' },
  audit: { auth: 'on', audit: 'on' },
  'audit-pglz': { auth: 'on', audit: 'on' },
};

/** SQL run on a configuration's schema once migrated: `audit-pglz` is `audit` with the log compressed as before migration 0025. */
const SETUP: Record<string, string> = {
  'audit-pglz': 'ALTER TABLE audit_log ALTER COLUMN content SET COMPRESSION pglz; ALTER TABLE audit_log ALTER COLUMN index_rows SET COMPRESSION pglz',
};

function labBundle(index: number): string {
  const patientUrn = `urn:uuid:${randomUUID()}`;
  const observations = Array.from({ length: OBSERVATIONS }, (_, k) => ({
    fullUrl: `urn:uuid:${randomUUID()}`,
    resource: {
      resourceType: 'Observation',
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
      code: { coding: [{ system: LOINC, code: k % 2 ? '718-7' : '2339-0', display: k % 2 ? 'Hemoglobin' : 'Glucose' }] },
      subject: { reference: patientUrn },
      effectiveDateTime: `2026-${String(1 + (k % 12)).padStart(2, '0')}-${String(1 + (index % 28)).padStart(2, '0')}T08:00:00+01:00`,
      valueQuantity: { value: 1 + ((index + k) % 50) / 10, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
    },
    request: { method: 'POST', url: 'Observation' },
  }));
  return JSON.stringify({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ fullUrl: patientUrn, resource: frenchPatient(index), request: { method: 'POST', url: 'Patient' } }, ...observations],
  });
}

async function ensureDatabase(): Promise<void> {
  const url = new URL(URL_);
  const name = url.pathname.slice(1);
  const admin = new pg.Client({ connectionString: Object.assign(new URL(URL_), { pathname: '/postgres' }).toString() });
  await admin.connect();
  try {
    const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rows.length === 0) await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
}

async function openTarget(name: string, validator: AppOptions['validator']): Promise<Target> {
  const schema = `audit_cost_${name.replace('-', '_')}_${randomBytes(3).toString('hex')}`;
  const db = await openDatabase(URL_, { schema });
  const app = await buildApp({ config: { logLevel: 'silent', bodyLimit: 16 * 1024 * 1024, authAudience: AUDIENCE, rateLimit: 1_000_000_000, ...CONFIG[name] }, storage: sqlStorage(db), validator });
  const origin = await app.listen({ host: '127.0.0.1', port: 0 });
  if (SETUP[name]) await db.exec(SETUP[name]);
  const authorization = name === 'off' ? undefined : await backendAuthorization(db, origin, 'bench-feed', 'system/*.cruds');
  return { name, schema, app, origin, authorization, db, patientIds: [], identifiers: [], ingested: 0 };
}

async function populate(client: LoadClient, target: Target): Promise<void> {
  // A bundle refused for a while (503: the shared cluster out of connections) is sent again, once more at most.
  let sent = 0;
  for (let attempt = 0; attempt < 3 && sent < PATIENTS; attempt++) {
    const bundles = Array.from({ length: PATIENTS - sent }, (_, index) => labBundle(sent + index));
    const result = await client.run({ origin: target.origin, authorization: target.authorization, method: 'POST', paths: bundles.map(() => '/fhir'), bodies: bundles, concurrency: SENDERS });
    sent += result.statuses[200] ?? 0;
  }
  if (sent < PATIENTS) throw new Error(`populating ${target.name}: ${sent} of ${PATIENTS} bundles accepted`);
  const response = await fetch(`${target.origin}/fhir/Patient?_count=1000&_elements=identifier`, { headers: { accept: 'application/fhir+json', ...(target.authorization ? { authorization: target.authorization } : {}) } });
  const bundle = (await response.json()) as { entry?: Array<{ resource: { id: string; identifier: Array<{ value: string }> } }> };
  for (const entry of bundle.entry ?? []) {
    target.patientIds.push(entry.resource.id);
    target.identifiers.push(entry.resource.identifier[0]!.value);
  }
}

interface Operation extends HttpOperation<Target> {
  name: string;
  count: number;
}

const cycle = <T>(items: T[], count: number, offset = 0) => Array.from({ length: count }, (_, index) => items[(index * 7 + offset) % items.length]!);

const ALL_OPERATIONS: Record<string, Operation> = {
  read: { name: 'read Patient/{id}', concurrency: CONCURRENCY, count: REQUESTS, method: 'GET', paths: (t, n) => cycle(t.patientIds, n).map((id) => `/fhir/Patient/${id}`) },
  identifier: {
    name: 'search Patient?identifier',
    concurrency: CONCURRENCY,
    count: REQUESTS,
    method: 'GET',
    paths: (t, n) => cycle(t.identifiers, n, 3).map((value) => `/fhir/Patient?identifier=${encodeURIComponent(`${INS_NIR_SYSTEM}|${value}`)}`),
  },
  observation: {
    name: 'search Observation?patient&code',
    concurrency: CONCURRENCY,
    count: REQUESTS,
    method: 'GET',
    paths: (t, n) => cycle(t.patientIds, n, 5).map((id) => `/fhir/Observation?patient=${id}&code=${encodeURIComponent(`${LOINC}|2339-0`)}`),
  },
  ingest: {
    name: `ingest (1 Patient + ${OBSERVATIONS} Observations)`,
    concurrency: SENDERS,
    count: Math.max(100, Math.round(REQUESTS / 5)),
    method: 'POST',
    paths: (_t, n) => Array.from({ length: n }, () => '/fhir'),
    bodies: (t, n) => Array.from({ length: n }, () => labBundle(PATIENTS + t.ingested++)),
  },
};
const OPERATIONS = OPERATION_NAMES.map((name) => ALL_OPERATIONS[name]!);

/** User + system CPU, ms, of every backend connected to the bench's database now (a monitor's own included). */
async function backendCpu(monitor: pg.Client, known: Map<number, number>, vacuums: Set<number>): Promise<void> {
  const { rows } = await monitor.query<{ pid: number; type: string }>('SELECT pid, backend_type AS type FROM pg_stat_activity WHERE datname = current_database()');
  for (const { pid, type } of rows) {
    if (type !== 'client backend') vacuums.add(pid);
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      known.set(pid, (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS);
    } catch {
      // gone
    }
  }
}

interface Sample {
  operation: string;
  target: string;
  ops: number;
  opsPerSec: number;
  nodeUs: number;
  pgUs: number;
  /** Autovacuum workers' CPU in this database during the measurement (not in pgUs). */
  vacuumUs: number;
  statements?: Array<{ query: string; calls: number; execMsPerOp: number; walBytesPerOp: number; rowsPerOp: number }>;
}

async function waitDrained(monitor: pg.Client, target: Target): Promise<void> {
  if (!target.name.startsWith('audit')) return;
  for (;;) {
    const { rows } = await monitor.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${target.schema}.audit_log`);
    if (rows[0]!.n === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // The drain's commit, after the log reads empty.
  await new Promise((resolve) => setTimeout(resolve, 100));
}

async function measure(client: LoadClient, monitor: pg.Client, target: Target, operation: Operation, dbid: number): Promise<Sample> {
  const job = (count: number) => httpJob(target, operation, count);
  const warm = job(Math.round(operation.count / 5));
  await client.run(warm);
  await waitDrained(monitor, target);
  const measured = job(operation.count);
  await monitor.query('SELECT pg_stat_statements_reset(0, $1, 0)', [dbid]);
  const before = new Map<number, number>();
  const vacuums = new Set<number>();
  await backendCpu(monitor, before, vacuums);
  const cpu = process.cpuUsage();
  const result = await client.run(measured);
  await waitDrained(monitor, target);
  const node = process.cpuUsage(cpu);
  const after = new Map<number, number>();
  await backendCpu(monitor, after, vacuums);
  let pgMs = 0;
  let vacuumMs = 0;
  for (const [pid, ms] of after) {
    if (vacuums.has(pid)) vacuumMs += ms - (before.get(pid) ?? 0);
    else pgMs += ms - (before.get(pid) ?? 0);
  }
  const bad = Object.keys(result.statuses).filter((status) => status !== '200');
  if (bad.length > 0) throw new Error(`${operation.name} on ${target.name}: ${JSON.stringify(result.statuses)}`);
  const n = operation.count;
  const sample: Sample = { operation: operation.name, target: target.name, ops: n, opsPerSec: (1000 * n) / result.elapsedMs, nodeUs: (node.user + node.system) / n, pgUs: (1000 * pgMs) / n, vacuumUs: (1000 * vacuumMs) / n };
  if (target.name.startsWith('audit')) {
    const { rows } = await monitor.query<{ query: string; calls: string; exec: number; wal: string; rows: string }>(
      `SELECT regexp_replace(left(query, 90), '\\s+', ' ', 'g') AS query, calls, total_exec_time AS exec, wal_bytes AS wal, rows
         FROM pg_stat_statements WHERE dbid = $1 AND query NOT LIKE '%pg_stat%' AND query NOT LIKE '%audit_cost_%' ORDER BY total_exec_time DESC LIMIT 8`,
      [dbid],
    );
    sample.statements = rows.map((row) => ({ query: row.query, calls: Number(row.calls), execMsPerOp: row.exec / n, walBytesPerOp: Number(row.wal) / n, rowsPerOp: Number(row.rows) / n }));
  }
  return sample;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
};

async function sizes(monitor: pg.Client, target: Target): Promise<string[]> {
  const s = target.schema;
  const { rows: [events] } = await monitor.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.resource WHERE resource_type = 'AuditEvent'`);
  const n = events!.n;
  const lines = [`AuditEvents stored: ${n}`];
  const { rows: content } = await monitor.query<{ avg: number; raw: number }>(`SELECT avg(pg_column_size(content))::int AS avg, avg(octet_length(content))::int AS raw FROM ${s}.resource WHERE resource_type = 'AuditEvent'`);
  lines.push(`content per event: ${content[0]!.avg} bytes stored (${content[0]!.raw} bytes of text)`);
  const { rows: methods } = await monitor.query<{ method: string | null; n: number }>(`SELECT pg_column_compression(content) AS method, count(*)::int AS n FROM ${s}.resource WHERE resource_type = 'AuditEvent' GROUP BY 1`);
  lines.push(`content compression: ${methods.map((m) => `${m.method ?? 'none'} ${m.n}`).join(', ')}`);
  const { rows: log } = await monitor.query<{ bytes: string; dead: string; autovacuums: string }>(
    `SELECT pg_relation_size(relid) AS bytes, n_dead_tup AS dead, autovacuum_count AS autovacuums FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'audit_log'`,
    [s],
  );
  lines.push(`audit_log at the end: ${(Number(log[0]!.bytes) / 8192).toFixed(0)} pages, ${log[0]!.dead} dead rows, ${log[0]!.autovacuums} autovacuums`);
  for (const table of ['search_token', 'search_string', 'search_date', 'search_reference', 'search_uri', 'compartment_member']) {
    const column = table === 'compartment_member' ? 'resource_type' : 'resource_type';
    const { rows } = await monitor.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.${table} WHERE ${column} = 'AuditEvent'`);
    lines.push(`${table}: ${(rows[0]!.n / n).toFixed(2)} rows per event`);
  }
  return lines;
}

async function main(): Promise<void> {
  await ensureDatabase();
  const monitor = new pg.Client({ connectionString: URL_ });
  await monitor.connect();
  await monitor.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const dbid = (await monitor.query<{ oid: number }>('SELECT oid FROM pg_database WHERE datname = current_database()')).rows[0]!.oid;
  const client = LoadClient.start();
  const validator = createProfileValidator();
  const targets: Target[] = [];
  try {
    for (const name of NAMES) targets.push(await openTarget(name, validator));
    for (const target of targets) await populate(client, target);
    for (const target of targets) await target.db.exec('VACUUM ANALYZE');
    for (const target of targets) await waitDrained(monitor, target);
    for (const operation of OPERATIONS) for (const target of targets) await measure(client, monitor, target, operation, dbid);
    const samples: Sample[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const operation of OPERATIONS) {
        const order = round % 2 ? targets : [...targets].reverse();
        for (const target of order) {
          const sample = await measure(client, monitor, target, operation, dbid);
          console.error(`round ${round} ${sample.operation} [${sample.target}]: ${sample.opsPerSec.toFixed(0)}/s, Node ${sample.nodeUs.toFixed(0)} µs, PostgreSQL ${sample.pgUs.toFixed(0)} µs (autovacuum ${sample.vacuumUs.toFixed(0)}) per request`);
          samples.push(sample);
        }
      }
    }
    const lines = [`${new Date().toISOString()} · ${ROUNDS} rounds · ${REQUESTS} requests (ingest ${ALL_OPERATIONS.ingest!.count}) · medians of rounds, CPU µs per request`, ''];
    lines.push('| operation | configuration | req/s | Node CPU µs | PostgreSQL CPU µs (backends) | autovacuum µs | Node + PostgreSQL µs | share of `off` by CPU |', '|---|---|---:|---:|---:|---:|---:|---:|');
    for (const operation of OPERATIONS) {
      const offSamples = samples.filter((s) => s.operation === operation.name && s.target === 'off');
      const offTotal = median(offSamples.map((s) => s.nodeUs + s.pgUs));
      for (const target of targets) {
        const mine = samples.filter((s) => s.operation === operation.name && s.target === target.name);
        const total = median(mine.map((s) => s.nodeUs + s.pgUs));
        lines.push(`| ${operation.name} | ${target.name} | ${median(mine.map((s) => s.opsPerSec)).toFixed(0)} | ${median(mine.map((s) => s.nodeUs)).toFixed(0)} (${Math.min(...mine.map((s) => s.nodeUs)).toFixed(0)}–${Math.max(...mine.map((s) => s.nodeUs)).toFixed(0)}) | ${median(mine.map((s) => s.pgUs)).toFixed(0)} (${Math.min(...mine.map((s) => s.pgUs)).toFixed(0)}–${Math.max(...mine.map((s) => s.pgUs)).toFixed(0)}) | ${median(mine.map((s) => s.vacuumUs)).toFixed(0)} | ${total.toFixed(0)} | ${offSamples.length ? `${((100 * offTotal) / total).toFixed(1)} %` : ''} |`);
      }
    }
    for (const operation of OPERATIONS) {
      for (const target of targets) {
      const last = samples.filter((s) => s.operation === operation.name && s.target === target.name).at(-1);
      if (!last?.statements) continue;
      lines.push('', `Statements of ${operation.name} [${target.name}], last round, per request: executor ms, WAL bytes, rows`, '');
      for (const s of last.statements) lines.push(`- ${s.execMsPerOp.toFixed(3)} ms · ${s.walBytesPerOp.toFixed(0)} B WAL · ${s.rowsPerOp.toFixed(2)} rows · ${s.calls} calls · ${s.query}`);
      }
    }
    for (const audit of targets.filter((t) => t.name.startsWith('audit'))) lines.push('', `${audit.name}:`, ...(await sizes(monitor, audit)));
    console.log(lines.join('\n'));
  } finally {
    client.stop();
    for (const target of targets) {
      await target.app.close();
      await target.db.exec(`DROP SCHEMA ${target.schema} CASCADE`);
      await target.db.close();
    }
    await monitor.end();
  }
}

await main();
