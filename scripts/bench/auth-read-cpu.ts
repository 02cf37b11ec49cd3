/**
 * What SMART authentication and authorisation add to a read, in CPU of this process (issue 17 item 7): two
 * servers on in-memory PGlite stores (their SQL runs on this thread and counts too), one with FHIR_AUTH=off and
 * one with auth on and a backend services token for `system/*.cruds` (as bench:trust gets it), both without the
 * audit trail and filled with the same BENCH_PATIENTS Patients; then BENCH_READS reads of Patient/{id} on each,
 * through `app.inject` (BENCH_CONCURRENCY in flight), alternately over BENCH_ROUNDS rounds. Prints CPU µs per
 * read (process.cpuUsage: wall time on a shared machine says little) and statements per read, and with
 * BENCH_CPU_PROFILE=prefix a V8 profile of each configuration's reads (prefix-off.cpuprofile, prefix-auth.cpuprofile).
 *
 *   node --import tsx scripts/bench/auth-read-cpu.ts
 *
 * Environment: BENCH_PATIENTS (300), BENCH_READS (3000 per round and configuration), BENCH_WARMUP (1000),
 * BENCH_CONCURRENCY (16), BENCH_ROUNDS (5), BENCH_CPU_PROFILE.
 */
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
import { frenchPatient } from './lib/patients.ts';

const PATIENTS = Number(process.env.BENCH_PATIENTS ?? 300);
const READS = Number(process.env.BENCH_READS ?? 3000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PROFILE = process.env.BENCH_CPU_PROFILE;
const AUDIENCE = 'http://localhost/fhir';

interface Target {
  name: 'off' | 'auth';
  app: FastifyInstance;
  db: Database;
  authorization?: string;
  ids: string[];
  statements: { count: number };
}

/** `db` counting the statements run through it and its transactions. */
function counted(db: Database, statements: { count: number }): Database {
  const wrap = (executor: SqlExecutor): SqlExecutor => ({
    query: (sql, params, name) => {
      statements.count++;
      return executor.query(sql, params, name);
    },
  });
  return { ...db, ...wrap(db), transaction: (work) => db.transaction((tx) => work(wrap(tx))) };
}

async function openTarget(name: Target['name'], validator: ReturnType<typeof createProfileValidator>): Promise<Target> {
  const db = await openDatabase('memory://');
  const statements = { count: 0 };
  const app = await buildApp({
    config: { logLevel: 'silent', bodyLimit: 1024 * 1024, authAudience: AUDIENCE, rateLimit: 1_000_000_000, auth: name === 'off' ? 'off' : 'on', audit: 'off' },
    storage: sqlStorage(counted(db, statements)),
    validator,
  });
  let authorization: string | undefined;
  if (name === 'auth') {
    const origin = await app.listen({ host: '127.0.0.1', port: 0 });
    authorization = await backendAuthorization(db, origin, 'bench-feed', 'system/*.cruds');
  }
  const headers = { 'content-type': 'application/fhir+json', ...(authorization ? { authorization } : {}) };
  const ids: string[] = [];
  for (let n = 0; n < PATIENTS; n++) {
    const res = await app.inject({ method: 'POST', url: '/fhir/Patient', headers, payload: JSON.stringify(frenchPatient(n)) });
    if (res.statusCode !== 201) throw new Error(`${name}: POST Patient ${res.statusCode} ${res.body.slice(0, 300)}`);
    ids.push((JSON.parse(res.body) as { id: string }).id);
  }
  return { name, app, db, authorization, ids, statements };
}

async function reads(target: Target, count: number): Promise<void> {
  const headers = { accept: 'application/fhir+json', ...(target.authorization ? { authorization: target.authorization } : {}) };
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const k = next++;
      const res = await target.app.inject({ method: 'GET', url: `/fhir/Patient/${target.ids[(k * 7) % target.ids.length]}`, headers });
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
    await target.db.close();
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
console.log(`Patient/{id} reads on in-memory PGlite, ${READS} per round × ${ROUNDS} rounds, ${CONCURRENCY} in flight, app.inject`);
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
