/**
 * The cost of trust (issue 17 item 7, issue 18 item 5): read, search and ingest on servers that differ only by
 * their security settings, in the same run, on the same kind of store:
 *   - `off`: FHIR_AUTH=off and no audit trail (local development; what every number before SMART measured),
 *   - `auth`: SMART tokens verified and scopes applied (target: at most 10 % slower than `off`),
 *   - `audit`: `auth` and the audit trail, without encryption at rest,
 *   - `sealed`: `auth` and encryption at rest, without the audit trail,
 *   - `trust`: authentication, authorisation, the audit trail, the patient's consent and encryption at rest, as
 *     the server runs by default (target: at most 25 % slower than `off`).
 * `audit` and `sealed` split what `trust` adds to `auth` between its two costs.
 * Each configuration has a schema (or PGlite) of its own, filled the same way, so that one's audit trail or
 * keys do not weigh on another; the configurations are measured alternately, operation by operation and within
 * an operation slice by slice, in each of BENCH_ROUNDS rounds, and each ratio is the median of the rounds' own ratios.
 *
 *   npm run bench:trust
 *
 * Environment: BENCH_CONFIGURATIONS (`off,auth,trust`; any of `off,auth,audit,sealed,trust`, `off` always measured
 * first as the reference), BENCH_DATABASE_URL (postgres://…; without it a throwaway PostgreSQL 15 cluster is started and
 * removed), BENCH_STORES (`postgres,pglite`), BENCH_PATIENTS (300 patients of BENCH_OBSERVATIONS (10)
 * Observations each, ingested before measuring), BENCH_REQUESTS (1500 per measurement), BENCH_WARMUP (200),
 * BENCH_CONCURRENCY (16 for reads and searches), BENCH_SENDERS (8 for ingest), BENCH_ROUNDS (3, after one unrecorded round),
 * BENCH_SLICES (10: the slices a measurement's requests are sent in, the configurations taking turns slice by slice),
 * PG_POOL_SIZE (10, read by the server's pool), BENCH_RESULTS_FILE (trust.md, under scripts/bench/results/).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppOptions } from '../../src/app.ts';
import { createProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { sqlStorage } from '../../src/store/storage.ts';
import { DataKeys, LocalKeyWrapper } from '../../src/store/encryption.ts';
import type { Database } from '../../src/store/database.ts';
import { backendAuthorization } from './lib/backend-token.ts';
import { httpJob, LoadClient, type HttpOperation } from './lib/load-client.ts';
import { frenchPatient, INS_NIR_SYSTEM } from './lib/patients.ts';
import { benchPostgres } from './lib/pg-cluster.ts';
import { machine, summarise, type Measurement } from './lib/report.ts';

const PATIENTS = positiveInteger('BENCH_PATIENTS', 300);
const OBSERVATIONS = positiveInteger('BENCH_OBSERVATIONS', 10);
const REQUESTS = positiveInteger('BENCH_REQUESTS', 1500);
const WARMUP = positiveInteger('BENCH_WARMUP', 200);
const CONCURRENCY = positiveInteger('BENCH_CONCURRENCY', 16);
const SENDERS = positiveInteger('BENCH_SENDERS', 8);
const ROUNDS = positiveInteger('BENCH_ROUNDS', 3);
const SLICES = positiveInteger('BENCH_SLICES', 10);
const STORES = (process.env.BENCH_STORES ?? 'postgres,pglite').split(',').map((name) => name.trim());
const RESULTS_DIR = new URL('./results/', import.meta.url);
const AUDIENCE = 'http://localhost/fhir';
const LOINC = 'http://loinc.org';
/** Laboratory codes the Observations cycle through; searches ask for the first. */
const CODES = [
  ['2339-0', 'Glucose [Mass/volume] in Blood', 'g/L'],
  ['2160-0', 'Creatinine [Mass/volume] in Serum or Plasma', 'mg/L'],
  ['718-7', 'Hemoglobin [Mass/volume] in Blood', 'g/dL'],
] as const;

interface Configuration {
  name: 'off' | 'auth' | 'audit' | 'sealed' | 'trust';
  description: string;
  /** The share of `off`'s throughput this configuration must keep. */
  targetShare?: number;
  config: Partial<AppOptions['config']>;
  /** The token clients send (none when authentication is off): `Bearer …` from the listening server at `origin`. */
  token?: (db: Database, origin: string) => Promise<string>;
  /** Encryption at rest (a master key of the run's own); off unless said. */
  encryption?: boolean;
}

// As a hospital's feed gets its token: backend services, over HTTP.
const systemToken = (db: Database, origin: string) => backendAuthorization(db, origin, 'bench-feed', 'system/*.cruds');

const ALL_CONFIGURATIONS: Configuration[] = [
  { name: 'off', description: 'FHIR_AUTH=off, no audit trail', config: { auth: 'off', audit: 'off' } },
  { name: 'auth', description: 'SMART token verified, scopes applied', targetShare: 0.9, config: { auth: 'on', audit: 'off' }, token: systemToken },
  { name: 'audit', description: 'SMART and the audit trail, no encryption', config: { auth: 'on', audit: 'on' }, token: systemToken },
  { name: 'sealed', description: 'SMART and encryption at rest, no audit trail', config: { auth: 'on', audit: 'off' }, token: systemToken, encryption: true },
  { name: 'trust', description: 'SMART, audit trail, encryption at rest (as by default)', targetShare: 0.75, config: { auth: 'on', audit: 'on' }, token: systemToken, encryption: true },
];

/** The configurations measured (BENCH_CONFIGURATIONS), `off` first: every share is of its throughput. */
const CONFIGURATIONS: Configuration[] = (() => {
  const names = new Set(['off', ...(process.env.BENCH_CONFIGURATIONS ?? 'off,auth,trust').split(',').map((name) => name.trim()).filter((name) => name !== '')]);
  for (const name of names) if (!ALL_CONFIGURATIONS.some((configuration) => configuration.name === name)) throw new Error(`BENCH_CONFIGURATIONS: unknown configuration '${name}'`);
  return ALL_CONFIGURATIONS.filter((configuration) => names.has(configuration.name));
})();

/**
 * The per-client rate limit is a policy, not a cost: the bench's one client sends far more than the default 6,000
 * requests a minute, so the limit is raised out of reach (the plugin still counts every request) rather than off.
 */
const BENCH_RATE_LIMIT = 1_000_000_000;

function positiveInteger(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer`);
  return value;
}

/** A transaction Bundle as a lab feed sends it: a patient (created unless known by INS) and its results. */
function labBundle(index: number): string {
  const patientUrn = `urn:uuid:${randomUUID()}`;
  const patient = frenchPatient(index);
  const observations = Array.from({ length: OBSERVATIONS }, (_, k) => {
    const [code, display, unit] = CODES[k % CODES.length]!;
    return {
      fullUrl: `urn:uuid:${randomUUID()}`,
      resource: {
        resourceType: 'Observation',
        status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
        code: { coding: [{ system: LOINC, code, display }] },
        subject: { reference: patientUrn },
        effectiveDateTime: `2026-${String(1 + (k % 12)).padStart(2, '0')}-${String(1 + (index % 28)).padStart(2, '0')}T08:00:00+01:00`,
        valueQuantity: { value: 1 + ((index + k) % 50) / 10, unit, system: 'http://unitsofmeasure.org', code: unit },
      },
      request: { method: 'POST', url: 'Observation' },
    };
  });
  return JSON.stringify({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ fullUrl: patientUrn, resource: patient, request: { method: 'POST', url: 'Patient' } }, ...observations],
  });
}

interface Target {
  configuration: Configuration;
  app: FastifyInstance;
  origin: string;
  authorization?: string;
  db: Database;
  close(): Promise<void>;
  patientIds: string[];
  identifiers: string[];
  ingested: number;
}

async function openTarget(storeUrl: string, configuration: Configuration, validator: AppOptions['validator']): Promise<Target> {
  const schema = storeUrl.startsWith('postgres') ? `bench_trust_${configuration.name}_${randomBytes(3).toString('hex')}` : undefined;
  const db = await openDatabase(storeUrl, schema ? { schema } : {});
  const app = await buildApp({ config: { logLevel: 'silent', bodyLimit: 16 * 1024 * 1024, authAudience: AUDIENCE, rateLimit: BENCH_RATE_LIMIT, ...configuration.config }, storage: sqlStorage(db, configuration.encryption ? new DataKeys(new LocalKeyWrapper(randomBytes(32))) : undefined), validator });
  const origin = await app.listen({ host: '127.0.0.1', port: 0 });
  const authorization = configuration.token ? await configuration.token(db, origin) : undefined;
  return {
    configuration,
    app,
    origin,
    authorization,
    db,
    patientIds: [],
    identifiers: [],
    ingested: 0,
    async close() {
      await app.close();
      if (schema) await db.exec(`DROP SCHEMA ${schema} CASCADE`);
      await db.close();
    },
  };
}

/** Fills a target with PATIENTS lab bundles through its own API, and notes the patients' ids and INS. */
async function populate(client: LoadClient, target: Target): Promise<void> {
  const bundles = Array.from({ length: PATIENTS }, (_, index) => labBundle(index));
  const result = await client.run({ origin: target.origin, authorization: target.authorization, method: 'POST', paths: bundles.map(() => '/fhir'), bodies: bundles, concurrency: SENDERS });
  if (Object.keys(result.statuses).some((status) => status !== '200')) throw new Error(`populating ${target.configuration.name}: ${JSON.stringify(result.statuses)}`);
  const response = await fetch(`${target.origin}/fhir/Patient?_count=1000&_elements=identifier`, { headers: { accept: 'application/fhir+json', ...(target.authorization ? { authorization: target.authorization } : {}) } });
  const bundle = (await response.json()) as { entry?: Array<{ resource: { id: string; identifier: Array<{ value: string }> } }> };
  for (const entry of bundle.entry ?? []) {
    target.patientIds.push(entry.resource.id);
    target.identifiers.push(entry.resource.identifier[0]!.value);
  }
  if (target.patientIds.length !== PATIENTS) throw new Error(`populating ${target.configuration.name}: ${target.patientIds.length} patients found, ${PATIENTS} sent`);
}

interface Operation extends HttpOperation<Target> {
  name: string;
  /** Entries a request carries (ingest), to state the rate in resources/s too. */
  resourcesPerRequest?: number;
  expected: number;
}

const cycle = <T>(items: T[], count: number, offset = 0) => Array.from({ length: count }, (_, index) => items[(index * 7 + offset) % items.length]!);

const OPERATIONS: Operation[] = [
  { name: 'read Patient/{id}', concurrency: CONCURRENCY, method: 'GET', expected: 200, paths: (t, n) => cycle(t.patientIds, n).map((id) => `/fhir/Patient/${id}`) },
  {
    name: 'search Patient?identifier=INS',
    concurrency: CONCURRENCY,
    method: 'GET',
    expected: 200,
    paths: (t, n) => cycle(t.identifiers, n, 3).map((value) => `/fhir/Patient?identifier=${encodeURIComponent(`${INS_NIR_SYSTEM}|${value}`)}`),
  },
  {
    name: 'search Observation?patient&code',
    concurrency: CONCURRENCY,
    method: 'GET',
    expected: 200,
    paths: (t, n) => cycle(t.patientIds, n, 5).map((id) => `/fhir/Observation?patient=${id}&code=${encodeURIComponent(`${LOINC}|${CODES[0][0]}`)}`),
  },
  {
    name: `ingest transaction (1 Patient + ${OBSERVATIONS} Observations)`,
    concurrency: SENDERS,
    resourcesPerRequest: 1 + OBSERVATIONS,
    method: 'POST',
    expected: 200,
    paths: (_t, n) => Array.from({ length: n }, () => '/fhir'),
    bodies: (t, n) => Array.from({ length: n }, () => labBundle(PATIENTS + t.ingested++)),
  },
];

/**
 * One measurement of `operation` on each target: after its warm-up, each target's requests are sent in SLICES
 * slices, the targets taking turns slice by slice (ABBA order), and each target's figures are those of its slices
 * together. Another process's burst of work on the shared machine then falls on every configuration alike, where
 * one long run each put it all on whichever configuration it happened to overlap.
 */
async function measureAlternately(client: LoadClient, targets: Target[], operation: Operation): Promise<Measurement[]> {
  const requests = operation.bodies ? Math.max(100, Math.round(REQUESTS / 5)) : REQUESTS;
  const warmup = operation.bodies ? Math.max(20, Math.round(WARMUP / 5)) : WARMUP;
  const job = (target: Target, count: number) => httpJob(target, operation, count);
  for (const target of targets) await client.run(job(target, warmup));
  const totals = targets.map(() => ({ latencies: [] as number[], elapsedMs: 0, cpuMs: 0, clientCpuMs: 0, peak: 0, statuses: {} as Record<string, number> }));
  for (let slice = 0; slice < SLICES; slice++) {
    const count = Math.floor(requests / SLICES) + (slice < requests % SLICES ? 1 : 0);
    const order = targets.map((_, index) => index);
    for (const index of slice % 2 ? order.reverse() : order) {
      const total = totals[index]!;
      let peak = process.memoryUsage.rss();
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 50);
      const cpuBefore = process.cpuUsage();
      const result = await client.run(job(targets[index]!, count));
      clearInterval(sampler);
      const cpu = process.cpuUsage(cpuBefore);
      total.latencies.push(...result.latencies);
      total.elapsedMs += result.elapsedMs;
      total.cpuMs += (cpu.user + cpu.system) / 1000;
      total.clientCpuMs += result.cpuMs;
      total.peak = Math.max(total.peak, peak);
      for (const [status, n] of Object.entries(result.statuses)) total.statuses[status] = (total.statuses[status] ?? 0) + n;
    }
  }
  return targets.map((target, index) => {
    const total = totals[index]!;
    const unexpected = Object.keys(total.statuses).filter((status) => Number(status) !== operation.expected);
    if (unexpected.length > 0) throw new Error(`${operation.name} on ${target.configuration.name}: ${JSON.stringify(total.statuses)}`);
    return summarise(`${operation.name} [${target.configuration.name}]`, { latencies: total.latencies, elapsedMs: total.elapsedMs }, { peakRssBytes: total.peak, processCpuMs: total.cpuMs, clientCpuMs: total.clientCpuMs });
  });
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
};

async function benchStore(store: string, url: string, client: LoadClient): Promise<string[]> {
  console.error(`${store}: opening ${CONFIGURATIONS.length} stores and populating them (${PATIENTS} patients × ${1 + OBSERVATIONS} resources each)`);
  const validator = createProfileValidator();
  const targets: Target[] = [];
  const loadBefore = os.loadavg()[0]!;
  try {
    // PGlite holds the whole database on this thread: one target at a time, in a process of its own each round.
    for (const configuration of CONFIGURATIONS) targets.push(await openTarget(url, configuration, validator));
    for (const target of targets) await populate(client, target);
    // Freshly filled tables: their statistics and visibility map, else autovacuum does it during the first measurements.
    for (const target of targets) await target.db.exec('VACUUM ANALYZE');
    // A round whose figures are dropped: the first configuration measured used to run on a cold server (JIT, caches,
    // prepared statements) and showed half the throughput it had one round later.
    for (const operation of OPERATIONS) await measureAlternately(client, targets, operation);
    const rounds: Measurement[][] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const measurements: Measurement[] = [];
      for (const operation of OPERATIONS) {
        // Alternate the order from round to round, so no configuration always runs first (or on a warmer cache).
        const order = round % 2 ? targets : [...targets].reverse();
        for (const measurement of await measureAlternately(client, order, operation)) {
          console.error(`  round ${round} ${measurement.operation}: ${measurement.opsPerSec.toFixed(0)} ops/s, p95 ${measurement.p95Ms.toFixed(1)} ms, ${cpuPerRequest(measurement).toFixed(0)} µs CPU/request`);
          measurements.push(measurement);
        }
      }
      rounds.push(measurements);
    }
    return report(store, rounds, loadBefore, os.loadavg()[0]!);
  } finally {
    for (const target of targets) await target.close();
  }
}

/** CPU µs of the benchmark process per request of a measurement. */
const cpuPerRequest = (measurement: Measurement) => (measurement.processCpuPercent * 10_000) / measurement.opsPerSec;

function report(store: string, rounds: Measurement[][], loadBefore: number, loadAfter: number): string[] {
  const of = (round: Measurement[], operation: Operation, configuration: Configuration) => round.find((m) => m.operation === `${operation.name} [${configuration.name}]`)!;
  const lines = [
    `## ${store}`,
    '',
    `${new Date().toISOString()} · Node ${process.version} · ${machine().cpu} × ${machine().cores} cores · ${ROUNDS} rounds`,
    `Load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${loadAfter.toFixed(2)}${loadBefore > 1.5 || loadAfter > 1.5 ? ' (**the machine was busy: numbers are pessimistic and noisy**)' : ''}`,
    '',
    '| operation | configuration | ops/s (median round) | range | resources/s | p50 ms | p95 ms | p99 ms | peak RSS MiB | server CPU µs/request (median of rounds) | CPU of `off`\'s (median of rounds) | share of `off` (median of rounds) | target | met? |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const operation of OPERATIONS) {
    for (const configuration of CONFIGURATIONS) {
      const all = rounds.map((round) => of(round, operation, configuration));
      const middle = [...all].sort((a, b) => a.opsPerSec - b.opsPerSec)[Math.floor(all.length / 2)]!;
      const shares = rounds.map((round) => of(round, operation, configuration).opsPerSec / of(round, operation, CONFIGURATIONS[0]!).opsPerSec);
      const share = median(shares);
      // The benchmark process's CPU per request (server and, on PGlite, the database): on a shared machine a
      // steadier measure of what a configuration costs than its throughput.
      const cpus = rounds.map((round) => cpuPerRequest(of(round, operation, configuration)));
      const cpuShares = rounds.map((round) => cpuPerRequest(of(round, operation, configuration)) / cpuPerRequest(of(round, operation, CONFIGURATIONS[0]!)));
      const target = configuration.targetShare;
      lines.push(
        `| ${operation.name} | ${configuration.name}: ${configuration.description} | ${middle.opsPerSec.toFixed(0)} | ${Math.min(...all.map((m) => m.opsPerSec)).toFixed(0)}–${Math.max(...all.map((m) => m.opsPerSec)).toFixed(0)} | ` +
          `${operation.resourcesPerRequest ? (middle.opsPerSec * operation.resourcesPerRequest).toFixed(0) : ''} | ${middle.p50Ms.toFixed(1)} | ${middle.p95Ms.toFixed(1)} | ${middle.p99Ms.toFixed(1)} | ${middle.peakRssMiB.toFixed(0)} | ` +
          `${median(cpus).toFixed(0)} | ${configuration.name === 'off' ? '—' : `${(median(cpuShares) * 100).toFixed(1)} %`} | ` +
          `${configuration.name === 'off' ? '—' : `${(share * 100).toFixed(1)} % (${(Math.min(...shares) * 100).toFixed(0)}–${(Math.max(...shares) * 100).toFixed(0)} %)`} | ` +
          `${target ? `≥ ${target * 100} %` : ''} | ${target ? (share >= target ? 'yes' : '**no**') : ''} |`,
      );
    }
  }
  lines.push('');
  return lines;
}

async function main(): Promise<void> {
  const postgres = STORES.includes('postgres') ? await benchPostgres() : undefined;
  const client = LoadClient.start();
  const sections: string[] = [];
  try {
    for (const store of STORES) {
      if (store === 'postgres') sections.push(...(await benchStore(store, postgres!.url, client)));
      else if (store === 'pglite') sections.push(...(await benchStore(store, 'memory://', client)));
      else throw new Error(`BENCH_STORES: unknown store '${store}'`);
    }
  } finally {
    client.stop();
    postgres?.stop();
  }
  const text = [
    '# The cost of trust (npm run bench:trust)',
    '',
    `Read, search and ingest over HTTP on servers that differ only by their security settings, each on a store of its own filled the same way (${PATIENTS} patients of ${OBSERVATIONS} Observations, ingested as lab transaction Bundles through its API); ` +
      `${REQUESTS} requests per read or search measurement (${CONCURRENCY} in flight), ${Math.max(100, Math.round(REQUESTS / 5))} ingest Bundles (${SENDERS} senders), after warm-up; the configurations measured alternately in each round, in ${SLICES} slices each taking turns. ` +
      'Targets: authentication and authorisation at most 10 % slower than FHIR_AUTH=off (issue 17); with everything on, at most 25 % (issue 18).',
    '',
    ...sections,
  ].join('\n');
  console.log(text);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = new URL(process.env.BENCH_RESULTS_FILE ?? 'trust.md', RESULTS_DIR);
  writeFileSync(file, text);
  console.error(`wrote ${file.pathname}`);
}

await main();
