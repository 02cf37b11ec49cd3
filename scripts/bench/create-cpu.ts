/**
 * CPU of `POST Patient` in the server's own process (issue 15: creates within 10 % of ad6d525): the app built as
 * `src/main.ts` builds it (default validator, configuration from the environment) but with authentication, the
 * audit trail, encryption at rest and the rate limit off, as crud-ab.ts runs it, on a schema of its own; BENCH_REQUESTS
 * French Patients created, BENCH_CONCURRENCY at a time, over HTTP by the load generator (its own process). Prints
 * the server process's CPU per create (process.cpuUsage: the driver's work included, PostgreSQL's and the client's
 * not) and, with BENCH_CPU_PROFILE=file.cpuprofile, a V8 profile of the measured creates only, summarised.
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres node --import tsx scripts/bench/create-cpu.ts
 *
 * Environment: BENCH_DATABASE_URL (default `memory://`, an in-memory PGlite: its SQL then counts as CPU),
 * BENCH_REQUESTS (3000), BENCH_WARMUP (1000), BENCH_CONCURRENCY (16), BENCH_ROUNDS (3), BENCH_CPU_PROFILE. The
 * schema (`create_cpu_<pid>`) is dropped at the end.
 */
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
import { buildApp } from '../../src/app.ts';
import { configFromEnv } from '../../src/config.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { sqlStorage } from '../../src/store/storage.ts';
import { printProfileSummary } from './lib/cpu-profile.ts';
import { LoadClient } from './lib/load-client.ts';
import { frenchPatient } from './lib/patients.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const url = process.env.BENCH_DATABASE_URL ?? 'memory://';
const schema = url.startsWith('postgres') ? `create_cpu_${process.pid}` : undefined;

const db = await openDatabase(url, schema ? { schema } : {});
const config = { ...configFromEnv({ ...process.env, FHIR_AUTH: 'off', FHIR_AUDIT: 'off', FHIR_ENCRYPTION: 'off', FHIR_RATE_LIMIT: '0', DATABASE_URL: url }), logLevel: 'silent' as const };
const app = await buildApp({ config, storage: sqlStorage(db) });
const client = LoadClient.start();
let next = 0;
try {
  const origin = await app.listen({ host: '127.0.0.1', port: 0 });
  const run = async (count: number) => {
    const bodies = Array.from({ length: count }, () => JSON.stringify(frenchPatient(next++)));
    const result = await client.run({ origin, method: 'POST', paths: bodies.map(() => '/fhir/Patient'), bodies, concurrency: CONCURRENCY });
    if (result.statuses[201] !== count) throw new Error(`expected only 201, got ${JSON.stringify(result.statuses)}`);
    return result;
  };
  await run(WARMUP);
  const session = process.env.BENCH_CPU_PROFILE ? new Session() : undefined;
  for (let round = 1; round <= ROUNDS; round++) {
    const profiled = session && round === ROUNDS;
    if (profiled) {
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 200 });
      await session.post('Profiler.start');
    }
    const before = process.cpuUsage();
    const result = await run(REQUESTS);
    const cpu = process.cpuUsage(before);
    console.log(`round ${round}: ${(REQUESTS / (result.elapsedMs / 1000)).toFixed(0)} creates/s, server CPU ${((cpu.user + cpu.system) / 1000 / REQUESTS).toFixed(3)} ms/create (user ${(cpu.user / 1000 / REQUESTS).toFixed(3)}), load generator ${(result.cpuMs / REQUESTS).toFixed(3)} ms`);
    if (profiled) {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(process.env.BENCH_CPU_PROFILE!, JSON.stringify(profile));
      printProfileSummary(process.env.BENCH_CPU_PROFILE!, 40);
    }
  }
} finally {
  client.stop();
  await app.close();
  if (schema) await db.query(`DROP SCHEMA ${schema} CASCADE`);
  await db.close();
}
