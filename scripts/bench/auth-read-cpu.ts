/**
 * What SMART authentication and authorisation add to a read, in CPU of this process (issue 17 item 7): two
 * servers on in-memory PGlite stores (their SQL runs on this thread and counts too), one with FHIR_AUTH=off and
 * one with auth on and a backend services token for `system/*.cruds` (as bench:trust gets it), both without the
 * audit trail and filled with the same BENCH_PATIENTS Patients; then BENCH_READS reads of Patient/{id} on each,
 * through `app.inject` (BENCH_CONCURRENCY in flight), alternately over BENCH_ROUNDS rounds. Prints CPU µs per
 * read (process.cpuUsage: wall time on a shared machine says little) and statements per read, and with
 * BENCH_CPU_PROFILE=prefix a V8 profile of each configuration's reads (prefix-off.cpuprofile, prefix-auth.cpuprofile).
 * BENCH_OPERATION measures bench:trust's other operations the same way instead: `identifier` (Patient?identifier=INS),
 * `observation` (Observation?patient&code; the patients then have BENCH_OBSERVATIONS (10) Observations each, all
 * ingested as lab Bundles) or `ingest` (such a Bundle of 1 Patient + 10 Observations per request).
 * BENCH_TRANSPORT=http sends the requests over HTTP from a load generator process of its own (as bench:trust does)
 * instead of app.inject: the CPU counted is still this process's only, the server's.
 *
 *   node --import tsx scripts/bench/auth-read-cpu.ts
 *
 * BENCH_DATABASE_URL (postgres://…) puts each configuration on a schema of its own on that PostgreSQL server
 * (`auth_read_cpu_<pid>_<name>`, dropped at the end) instead of PGlite: the CPU counted is then the server's
 * JavaScript alone, the database's work being another process's.
 *
 * Environment: BENCH_OPERATION (read), BENCH_DATABASE_URL, BENCH_PATIENTS (300), BENCH_READS (3000 per round and configuration; a fifth
 * of it for ingest), BENCH_WARMUP (1000), BENCH_CONCURRENCY (16), BENCH_ROUNDS (5), BENCH_CPU_PROFILE.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { createProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import type { Database, SqlExecutor } from '../../src/store/database.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { sqlStorage } from '../../src/store/storage.ts';
import { backendAuthorization } from './lib/backend-token.ts';
import { summariseProfile } from './lib/cpu-profile.ts';
import { LoadClient } from './lib/load-client.ts';
import { frenchPatient, INS_NIR_SYSTEM } from './lib/patients.ts';

const OPERATION = process.env.BENCH_OPERATION ?? 'read';
if (!['read', 'identifier', 'observation', 'ingest'].includes(OPERATION)) throw new Error(`BENCH_OPERATION: unknown operation '${OPERATION}'`);
const PATIENTS = Number(process.env.BENCH_PATIENTS ?? 300);
const OBSERVATIONS = Number(process.env.BENCH_OBSERVATIONS ?? 10);
const READS = Math.round(Number(process.env.BENCH_READS ?? 3000) / (OPERATION === 'ingest' ? 5 : 1));
const WARMUP = Math.round(Number(process.env.BENCH_WARMUP ?? 1000) / (OPERATION === 'ingest' ? 5 : 1));
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PROFILE = process.env.BENCH_CPU_PROFILE;
const TRANSPORT = process.env.BENCH_TRANSPORT ?? 'inject';
if (!['inject', 'http'].includes(TRANSPORT)) throw new Error(`BENCH_TRANSPORT: unknown transport '${TRANSPORT}'`);
const client = TRANSPORT === 'http' ? LoadClient.start() : undefined;
const DATABASE_URL = process.env.BENCH_DATABASE_URL;
if (DATABASE_URL !== undefined && !DATABASE_URL.startsWith('postgres')) throw new Error('BENCH_DATABASE_URL: a postgres:// URL');
const AUDIENCE = 'http://localhost/fhir';
const LOINC = 'http://loinc.org';
const CODES = ['2339-0', '2160-0', '718-7'];

/** A transaction Bundle as bench:trust's lab feed sends it: a patient and its results (with Observations only for `observation` and `ingest`). */
function labBundle(index: number): string {
  const patientUrn = `urn:uuid:${randomUUID()}`;
  const observations = OPERATION === 'read' || OPERATION === 'identifier' ? 0 : OBSERVATIONS;
  return JSON.stringify({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: patientUrn, resource: frenchPatient(index), request: { method: 'POST', url: 'Patient' } },
      ...Array.from({ length: observations }, (_, k) => ({
        fullUrl: `urn:uuid:${randomUUID()}`,
        resource: {
          resourceType: 'Observation',
          status: 'final',
          code: { coding: [{ system: LOINC, code: CODES[k % CODES.length] }] },
          subject: { reference: patientUrn },
          effectiveDateTime: `2026-${String(1 + (k % 12)).padStart(2, '0')}-${String(1 + (index % 28)).padStart(2, '0')}T08:00:00+01:00`,
          valueQuantity: { value: 1 + ((index + k) % 50) / 10, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
        },
        request: { method: 'POST', url: 'Observation' },
      })),
    ],
  });
}

interface Target {
  name: 'off' | 'auth';
  app: FastifyInstance;
  db: Database;
  origin: string;
  authorization?: string;
  ids: string[];
  identifiers: string[];
  ingested: number;
  statements: { count: number; show?: boolean };
}

/** `db` counting the statements run through it and its transactions. */
function counted(db: Database, statements: Target['statements']): Database {
  const wrap = (executor: SqlExecutor): SqlExecutor => ({
    query: (sql, params, name) => {
      statements.count++;
      if (statements.show) console.log(`-- ${name ?? '(unnamed)'}\n${sql}\n-- ${JSON.stringify(params)}`);
      return executor.query(sql, params, name);
    },
  });
  return { ...db, ...wrap(db), transaction: (work) => db.transaction((tx) => work(wrap(tx))) };
}

async function openTarget(name: Target['name'], validator: ReturnType<typeof createProfileValidator>): Promise<Target> {
  const db = DATABASE_URL ? await openDatabase(DATABASE_URL, { schema: `auth_read_cpu_${process.pid}_${name}` }) : await openDatabase('memory://');
  const statements = { count: 0 };
  const app = await buildApp({
    config: { logLevel: 'silent', bodyLimit: 1024 * 1024, authAudience: AUDIENCE, rateLimit: 1_000_000_000, auth: name === 'off' ? 'off' : 'on', audit: 'off' },
    storage: sqlStorage(counted(db, statements)),
    validator,
  });
  let authorization: string | undefined;
  const origin = await app.listen({ host: '127.0.0.1', port: 0 });
  if (name === 'auth') {
    authorization = await backendAuthorization(db, origin, 'bench-feed', 'system/*.cruds');
  }
  const headers = { 'content-type': 'application/fhir+json', ...(authorization ? { authorization } : {}) };
  const ids: string[] = [];
  const identifiers: string[] = [];
  for (let n = 0; n < PATIENTS; n++) {
    const res = await app.inject({ method: 'POST', url: '/fhir', headers, payload: labBundle(n) });
    if (res.statusCode !== 200) throw new Error(`${name}: POST Bundle ${res.statusCode} ${res.body.slice(0, 300)}`);
    const location = (JSON.parse(res.body) as { entry: Array<{ response: { location: string } }> }).entry[0]!.response.location;
    ids.push(/Patient\/([^/]+)/.exec(location)![1]!);
    identifiers.push((frenchPatient(n).identifier as Array<{ value: string }>)[0]!.value);
  }
  await db.exec(DATABASE_URL ? 'ANALYZE' : 'VACUUM ANALYZE');
  return { name, app, db, origin, authorization, ids, identifiers, ingested: PATIENTS, statements };
}

/** The request `k` of the operation measured. */
function request(target: Target, k: number, headers: Record<string, string>) {
  const id = target.ids[(k * 7) % target.ids.length]!;
  switch (OPERATION) {
    case 'identifier':
      return { method: 'GET' as const, url: `/fhir/Patient?identifier=${encodeURIComponent(`${INS_NIR_SYSTEM}|${target.identifiers[(k * 7 + 3) % target.identifiers.length]}`)}`, headers };
    case 'observation':
      return { method: 'GET' as const, url: `/fhir/Observation?patient=${id}&code=${encodeURIComponent(`${LOINC}|${CODES[0]}`)}`, headers };
    case 'ingest':
      return { method: 'POST' as const, url: '/fhir', headers: { ...headers, 'content-type': 'application/fhir+json' }, payload: labBundle(target.ingested++) };
    default:
      return { method: 'GET' as const, url: `/fhir/Patient/${id}`, headers };
  }
}

async function reads(target: Target, count: number): Promise<void> {
  const headers = { accept: 'application/fhir+json', ...(target.authorization ? { authorization: target.authorization } : {}) };
  if (client) {
    const requests = Array.from({ length: count }, (_, k) => request(target, k, headers));
    const bodies = requests.map((r) => ('payload' in r ? r.payload : undefined));
    const result = await client.run({
      origin: target.origin,
      authorization: target.authorization,
      method: requests[0]!.method,
      paths: requests.map((r) => r.url),
      ...(bodies[0] === undefined ? {} : { bodies: bodies as string[] }),
      concurrency: CONCURRENCY,
    });
    if (Object.keys(result.statuses).some((status) => status !== '200')) throw new Error(`${target.name}: ${JSON.stringify(result.statuses)}`);
    return;
  }
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const k = next++;
      const res = await target.app.inject(request(target, k, headers));
      if (res.statusCode !== 200) throw new Error(`${target.name}: read ${res.statusCode} ${res.body.slice(0, 300)}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

const validator = createProfileValidator({ defaultProfiles: 'none' });
const targets = [await openTarget('off', validator), await openTarget('auth', validator)];
const cpuPerRead = new Map<string, number[]>(targets.map((t) => [t.name, []]));
const statementsPerRead = new Map<string, number>();
try {
  for (const target of targets) await reads(target, WARMUP);
  if (process.env.BENCH_SHOW_SQL) {
    // The statements of one request in each configuration, as they reach the database.
    for (const target of targets) {
      console.log(`== ${target.name}`);
      target.statements.show = true;
      await reads(target, 1);
      target.statements.show = false;
    }
  }
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of round % 2 ? targets : [...targets].reverse()) {
      target.statements.count = 0;
      const before = process.cpuUsage();
      await reads(target, READS);
      const cpu = process.cpuUsage(before);
      cpuPerRead.get(target.name)!.push((cpu.user + cpu.system) / READS);
      statementsPerRead.set(target.name, target.statements.count / READS);
    }
  }
  if (PROFILE) {
    for (const target of targets) {
      const session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 100 });
      await session.post('Profiler.start');
      await reads(target, READS);
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      writeFileSync(`${PROFILE}-${target.name}.cpuprofile`, JSON.stringify(profile));
    }
  }
} finally {
  for (const target of targets) {
    await target.app.close();
    if (DATABASE_URL) await target.db.exec(`DROP SCHEMA auth_read_cpu_${process.pid}_${target.name} CASCADE`);
    await target.db.close();
  }
  client?.stop();
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
console.log(`${OPERATION} on ${DATABASE_URL ? 'PostgreSQL' : 'in-memory PGlite'}, ${READS} per round × ${ROUNDS} rounds, ${CONCURRENCY} in flight, ${TRANSPORT === 'http' ? 'HTTP' : 'app.inject'}`);
for (const target of targets) {
  const values = cpuPerRead.get(target.name)!;
  console.log(`  ${target.name.padEnd(4)} CPU µs/read: median ${median(values).toFixed(0)} (rounds ${values.map((v) => v.toFixed(0)).join(', ')}); statements/read ${statementsPerRead.get(target.name)!.toFixed(2)}`);
}
console.log(`  auth/off CPU: ${((median(cpuPerRead.get('auth')!) / median(cpuPerRead.get('off')!)) * 100).toFixed(1)} %`);
if (PROFILE) {
  for (const target of targets) {
    const summary = summariseProfile(`${PROFILE}-${target.name}.cpuprofile`, { top: 25 });
    console.log(`  profile ${target.name}: ${summary.busyMs.toFixed(0)} ms busy of ${summary.wallMs.toFixed(0)} ms; by function (self):`);
    for (const { fn, percent } of summary.topSelf) console.log(`    ${percent.toFixed(1).padStart(5)}%  ${fn}`);
  }
}
