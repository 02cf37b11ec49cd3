/**
 * Search benchmark (issue 3) on PostgreSQL: a realistic French population (BENCH_RESOURCES resources, default
 * 1,000,000: patients with INS-NIR, Immunizations, DocumentReferences, AllergyIntolerances, MedicationStatements,
 * Observations, Practitioners, Organizations) is bulk-loaded with the server's own index rows, then typical DMP searches are
 * sent over real HTTP to the server (buildApp on 127.0.0.1) and each one's SQL is EXPLAINed. The server encrypts, as
 * by default: identifiers are indexed (by the loader too) and searched as keyed hashes under the schema's index key
 * (src/store/index-key.ts; a kept schema loaded before has its identifiers hashed as the run starts). The loader
 * writes resource content in clear, as before: reading a page costs no opening of sealed content here.
 *
 *   npm run bench:search
 *
 * Environment: BENCH_RESOURCES (1000000), BENCH_DATABASE_URL (postgres://…; without it a throwaway PostgreSQL 15
 * cluster tuned for bulk load — fsync off — is started and removed), BENCH_SCHEMA (with BENCH_DATABASE_URL:
 * reuse that schema when it already holds data, and keep it), BENCH_WRITERS (3 loader processes),
 * BENCH_REQUESTS (500 per query), BENCH_WARMUP (50), BENCH_CONCURRENCY (4), BENCH_WALKS (3 walks to page 50),
 * PG_POOL_SIZE (10), BENCH_AUDIT (`on`, as the server runs by default: every search writes its AuditEvent; `off` to
 * compare plans and SQL with the runs before the audit trail). Results: scripts/bench/results/search-postgres.{md,json} and search-explain.txt.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import type { Bundle } from 'fhir/r4';
import { buildApp } from '../../src/app.ts';
import { backendAuthorization } from './lib/backend-token.ts';
import { planSearch, SearchEngine } from '../../src/store/search-executor.ts';
import { parseSearch } from '../../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../../src/search/registry.ts';
import { type Database } from '../../src/store/database.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { migrate } from '../../src/store/migrate.ts';
import { prepareIndexKey } from '../../src/store/index-key.ts';
import { withHashedIdentifiers } from '../../src/search/identifier-hash.ts';
import type { DataKeys } from '../../src/store/encryption.ts';
import { benchDataKeys } from './lib/bench-keys.ts';
import { ATC_SYSTEM, COMMON_FAMILIES, INS_NIR_SYSTEM, LOINC_SYSTEM, patientBundle, planPopulation, rng, type PopulationPlan } from './lib/french-population.ts';
import { LoadClient } from './lib/load-client.ts';
import { benchPostgres } from './lib/pg-cluster.ts';
import { loadPopulation } from './lib/population-loader.ts';
import { machine, summarise, type Measurement } from './lib/report.ts';
import { sqlStorage } from '../../src/store/storage.ts';

const RESOURCES = positiveInteger('BENCH_RESOURCES', 1_000_000);
const WRITERS = positiveInteger('BENCH_WRITERS', 3);
const REQUESTS = positiveInteger('BENCH_REQUESTS', 500);
const WARMUP = positiveInteger('BENCH_WARMUP', 50);
const CONCURRENCY = positiveInteger('BENCH_CONCURRENCY', 4);
const AUDIT = process.env.BENCH_AUDIT === 'off' ? 'off' : 'on';
const WALKS = positiveInteger('BENCH_WALKS', 3);
const PAGES = 50;
/** EXPLAIN ANALYZE of one statement gives up past this (ms) and shows the plain EXPLAIN instead. */
const EXPLAIN_TIMEOUT_MS = 60_000;
/** A query whose sampled latency says REQUESTS would take longer than this (ms) is measured with fewer requests. */
const QUERY_BUDGET_MS = positiveInteger('BENCH_QUERY_BUDGET_MS', 90_000);
/** A walk to page 50 stops early past this (ms); later walks of that search are skipped once one overran. */
const WALK_BUDGET_MS = positiveInteger('BENCH_WALK_BUDGET_MS', 120_000);
const PG_POOL_SIZE = positiveInteger('PG_POOL_SIZE', 10);
const RESULTS_DIR = new URL('./results/', import.meta.url);

/** Settings of the throwaway cluster: bulk-load friendly (no durability) and sized for a 24 GiB machine. */
const CLUSTER_SETTINGS: Record<string, string> = {
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  wal_level: 'minimal',
  max_wal_senders: '0',
  max_wal_size: '16GB',
  checkpoint_timeout: '30min',
  shared_buffers: '4GB',
  effective_cache_size: '16GB',
  maintenance_work_mem: '1GB',
  work_mem: '16MB',
  random_page_cost: '1.1',
};

function positiveInteger(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  if (!/^[1-9]\d*$/.test(value)) throw new Error(`${name} must be a positive integer, not '${value}'`);
  return Number(value);
}

interface QuerySpec {
  name: string;
  /** p95 target, ms. */
  targetMs: number;
  /** Request paths (below the origin), one per request: warm-up first, then the measured ones. */
  paths: string[];
}

interface QueryResultRow extends Measurement {
  targetMs: number;
  met: boolean;
  /** Mean number of matches (entries with search.mode = match) over a few sample requests, and includes. */
  sampleMatches: number;
  sampleIncludes: number;
  /** Too slow for a load run within the budget: the figures are those of a few sequential requests. */
  sequentialOnly?: boolean;
}

interface WalkResult {
  name: string;
  walks: number;
  pageLatenciesMs: number[][];
  /** Set when a walk overran WALK_BUDGET_MS: the pages it reached. */
  stoppedAtPage?: number;
  page50Ms: { p50: number; max: number };
  walkMs: { p50: number; max: number };
}

const q = (params: Array<[string, string]>) => new URLSearchParams(params).toString();

/** Inputs drawn from the generated data: patients (all but the truncated last one) picked by a seeded RNG. */
function buildQueries(plan: PopulationPlan): { queries: QuerySpec[]; representative: Record<string, string> } {
  const total = WARMUP + REQUESTS;
  const r = rng(0xbe7c4);
  const patientIndexes = Array.from({ length: total }, () => Math.floor(r() * Math.max(1, plan.patients - 1)));
  const bundles = (() => {
    const cache = new Map<number, ReturnType<typeof patientBundle>>();
    return (i: number) => {
      let b = cache.get(i);
      if (!b) cache.set(i, (b = patientBundle(i, plan.practitioners, plan.organizations)));
      return b;
    };
  })();
  const patientOf = (i: number) => bundles(i)[0] as unknown as { id: string; identifier: Array<{ value: string }>; name: Array<{ family: string }>; birthDate: string };

  const byIdentifier = patientIndexes.map((i) => `/fhir/Patient?${q([['identifier', `${INS_NIR_SYSTEM}|${patientOf(i).identifier[0]!.value}`]])}`);
  const byFamilyBirthdate = patientIndexes.map((i) => `/fhir/Patient?${q([['family', patientOf(i).name[0]!.family], ['birthdate', patientOf(i).birthDate]])}`);
  const immunizations = patientIndexes.map((i) => `/fhir/Immunization?${q([['patient', `Patient/${patientOf(i).id}`], ['date', 'ge2019-01-01'], ['date', 'lt2023-01-01'], ['_sort', '-date']])}`);
  const documents = patientIndexes.map((i, n) => {
    const docs = bundles(i).filter((x) => x.resourceType === 'DocumentReference') as unknown as Array<{ type: { coding: Array<{ code: string }> }; date: string }>;
    const doc = docs[n % docs.length]!;
    // From up to two years before one of the patient's documents of that type: usually a handful of matches.
    const since = new Date(Date.parse(doc.date) - Math.floor(r() * 730) * 86400_000).toISOString().slice(0, 10);
    return `/fhir/DocumentReference?${q([['patient', `Patient/${patientOf(i).id}`], ['type', `${LOINC_SYSTEM}|${doc.type.coding[0]!.code}`], ['date', `ge${since}`], ['_include', 'DocumentReference:author']])}`;
  });
  const observations = patientIndexes.map((i, n) => {
    const own = bundles(i).filter((x) => x.resourceType === 'Observation') as unknown as Array<{ code: { coding: Array<{ code: string }> }; effectiveDateTime: string }>;
    const observation = own[n % own.length]!;
    // From up to three years before one of the patient's observations of that code: what a chart of it asks for.
    const since = new Date(Date.parse(observation.effectiveDateTime) - Math.floor(r() * 1095) * 86400_000).toISOString().slice(0, 10);
    return `/fhir/Observation?${q([['patient', `Patient/${patientOf(i).id}`], ['code', `${LOINC_SYSTEM}|${observation.code.coding[0]!.code}`], ['date', `ge${since}`]])}`;
  });
  const chained = patientIndexes.map((i) => `/fhir/Immunization?${q([['patient.identifier', `${INS_NIR_SYSTEM}|${patientOf(i).identifier[0]!.value}`]])}`);
  // Rare vaccines (yellow fever, rabies, Japanese encephalitis, typhoid) among patients born in a 5-year window.
  const rare = ['J07BL01', 'J07BG01', 'J07BA02', 'J07AP03'];
  const has = Array.from({ length: total }, (_, n) => {
    const year = 1930 + Math.floor(r() * 90);
    return `/fhir/Patient?${q([['_has:Immunization:patient:vaccine-code', `${ATC_SYSTEM}|${rare[n % rare.length]}`], ['birthdate', `ge${year}-01-01`], ['birthdate', `lt${year + 5}-01-01`]])}`;
  });
  // Patients bearing one of the common surnames (COMMON_FAMILY_SHARE of them), drawn apart so that the other
  // queries keep their inputs: the surname alone selects hundreds, the birth date a few.
  const common = rng(0xfa111);
  const commonFamilyIndexes: number[] = [];
  while (commonFamilyIndexes.length < total) {
    const i = Math.floor(common() * Math.max(1, plan.patients - 1));
    if (COMMON_FAMILIES.includes(patientOf(i).name[0]!.family)) commonFamilyIndexes.push(i);
  }
  const byCommonFamilyBirthdate = commonFamilyIndexes.map((i) => `/fhir/Patient?${q([['family', patientOf(i).name[0]!.family], ['birthdate', patientOf(i).birthDate]])}`);
  const queries: QuerySpec[] = [
    { name: 'Patient?identifier=INS-NIR', targetMs: 30, paths: byIdentifier },
    { name: 'Patient?family&birthdate', targetMs: 30, paths: byFamilyBirthdate },
    { name: 'Patient?family=<common>&birthdate', targetMs: 30, paths: byCommonFamilyBirthdate },
    { name: 'Immunization?patient&date=ge&date=lt&_sort=-date', targetMs: 30, paths: immunizations },
    { name: 'DocumentReference?patient&type&date=ge&_include=author', targetMs: 30, paths: documents },
    { name: 'Observation?patient&code&date=ge', targetMs: 30, paths: observations },
    { name: 'Immunization?patient.identifier=INS-NIR (chain)', targetMs: 100, paths: chained },
    { name: 'Patient?_has:Immunization:patient:vaccine-code&birthdate', targetMs: 100, paths: has },
  ];
  const representative = Object.fromEntries(queries.map((query) => [query.name, query.paths[WARMUP]!]));
  return { queries, representative };
}

/** The audience of the benchmarked server's tokens, and the token its requests carry. */
const BENCH_AUDIENCE = 'http://localhost/fhir';
let authorization: string | undefined;

/** One GET on a kept-alive connection, body parsed: for the paging walks and the sanity samples. */
function getJson(agent: http.Agent, origin: URL, path: string): Promise<{ status: number; body: Bundle; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const request = http.request({ agent, host: origin.hostname, port: origin.port, path, headers: { accept: 'application/fhir+json', ...(authorization ? { authorization } : {}) } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (c: Buffer) => chunks.push(c));
      response.on('error', reject);
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Bundle, ms: performance.now() - started }));
    });
    request.on('error', reject);
    request.end();
  });
}

/** Highest RSS seen between start and stop, sampled every 10 ms. */
function startRssSampler(): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
  return { stop: () => (clearInterval(timer), Math.max(peak, process.memoryUsage.rss())) };
}

async function measureQuery(client: LoadClient, origin: string, agent: http.Agent, query: QuerySpec): Promise<QueryResultRow> {
  // A few answers read in full: the searches must find something, or their speed means nothing.
  let matches = 0;
  let includes = 0;
  let sampleMs = 0;
  const samples = query.paths.slice(WARMUP, WARMUP + 10);
  const sampleLatencies: number[] = [];
  for (const path of samples) {
    if (sampleMs > QUERY_BUDGET_MS / 6) break; // a very slow search: a few samples tell enough
    const { status, body, ms } = await getJson(agent, new URL(origin), path);
    sampleMs += ms;
    sampleLatencies.push(ms);
    if (status !== 200) throw new Error(`${path}: ${status} ${JSON.stringify(body).slice(0, 500)}`);
    matches += body.entry?.filter((e) => e.search?.mode === 'match').length ?? 0;
    includes += body.entry?.filter((e) => e.search?.mode === 'include').length ?? 0;
  }
  const sampled = sampleLatencies.length;
  const meanSampleMs = sampleMs / sampled;
  if ((20 * meanSampleMs) / CONCURRENCY > QUERY_BUDGET_MS) {
    // Even 20 requests under load would not fit the budget: report the sequential samples alone.
    const m = summarise(query.name, { latencies: sampleLatencies, elapsedMs: sampleMs }, { peakRssBytes: process.memoryUsage.rss(), processCpuMs: 0 });
    console.error(`  ${query.name}: ~${meanSampleMs.toFixed(0)} ms each: measured by ${sampled} sequential request(s) only, no load run`);
    return { ...m, targetMs: query.targetMs, met: m.p95Ms < query.targetMs, sampleMatches: matches / sampled, sampleIncludes: includes / sampled, sequentialOnly: true };
  }
  const run = async (paths: string[]) => {
    const result = await client.run({ origin, method: 'GET', paths, concurrency: CONCURRENCY, authorization });
    const unexpected = Object.keys(result.statuses).filter((s) => s !== '200');
    if (unexpected.length > 0) throw new Error(`${query.name}: expected only 200, got ${JSON.stringify(result.statuses)}`);
    return result;
  };
  // Bounded time: a slow search gets fewer requests (never under 20), so the whole run still ends.
  const affordable = Math.floor((QUERY_BUDGET_MS * CONCURRENCY) / meanSampleMs);
  const requests = Math.min(REQUESTS, Math.max(20, affordable));
  const warmup = Math.min(WARMUP, Math.ceil(requests / 4));
  if (requests < REQUESTS) console.error(`  ${query.name}: ~${meanSampleMs.toFixed(0)} ms each, measured with ${requests} requests (after ${warmup} warm-up) to stay within ${QUERY_BUDGET_MS / 1000} s`);
  await run(query.paths.slice(0, warmup));
  const rss = startRssSampler();
  const cpuBefore = process.cpuUsage();
  const result = await run(query.paths.slice(WARMUP, WARMUP + requests));
  const cpu = process.cpuUsage(cpuBefore);
  const m = summarise(query.name, result, { peakRssBytes: rss.stop(), processCpuMs: (cpu.user + cpu.system) / 1000, clientCpuMs: result.cpuMs });
  const row = { ...m, targetMs: query.targetMs, met: m.p95Ms < query.targetMs, sampleMatches: matches / sampled, sampleIncludes: includes / sampled };
  console.error(`  ${query.name}: ${m.opsPerSec.toFixed(0)} ops/s, p50 ${m.p50Ms.toFixed(1)} ms, p95 ${m.p95Ms.toFixed(1)} ms, p99 ${m.p99Ms.toFixed(1)} ms, ~${row.sampleMatches.toFixed(1)} matches`);
  return row;
}

/** Follows `next` links from `start` PAGES − 1 times (page 1 … page 50), one request at a time, WALKS times. */
async function walk(origin: string, agent: http.Agent, name: string, start: string): Promise<{ result: WalkResult; page50Path?: string }> {
  const pageLatenciesMs: number[][] = [];
  let page50Path: string | undefined;
  const base = new URL(origin);
  let stoppedAtPage: number | undefined;
  for (let w = 0; w < WALKS && stoppedAtPage === undefined; w++) {
    const latencies: number[] = [];
    let path: string | undefined = start;
    let spent = 0;
    for (let page = 1; page <= PAGES && path; page++) {
      if (page === PAGES) page50Path = path;
      const { status, body, ms } = await getJson(agent, base, path);
      if (status !== 200) throw new Error(`${path}: ${status}`);
      latencies.push(ms);
      spent += ms;
      const next = body.link?.find((l) => l.relation === 'next')?.url;
      path = next ? new URL(next).pathname + new URL(next).search : undefined;
      if (spent > WALK_BUDGET_MS && page < PAGES) {
        stoppedAtPage = page;
        page50Path ??= path;
        console.error(`  ${name}: stopped at page ${page} after ${(spent / 1000).toFixed(0)} s (budget ${WALK_BUDGET_MS / 1000} s), ${(spent / page).toFixed(0)} ms per page`);
        break;
      }
    }
    if (stoppedAtPage !== undefined) {
      if (pageLatenciesMs.length === 0) pageLatenciesMs.push(latencies);
      break;
    }
    if (latencies.length < PAGES) throw new Error(`${name}: only ${latencies.length} pages`);
    pageLatenciesMs.push(latencies);
    console.error(`  ${name}: walk ${w + 1}: page 50 in ${latencies[PAGES - 1]!.toFixed(1)} ms, whole walk ${latencies.reduce((a, b) => a + b, 0).toFixed(0)} ms`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const page50 = pageLatenciesMs.map((l) => l[l.length - 1]!);
  const walks = pageLatenciesMs.map((l) => l.reduce((a, b) => a + b, 0));
  return {
    result: { name, walks: pageLatenciesMs.length, ...(stoppedAtPage === undefined ? {} : { stoppedAtPage }), pageLatenciesMs, page50Ms: { p50: median(page50), max: Math.max(...page50) }, walkMs: { p50: median(walks), max: Math.max(...walks) } },
    page50Path,
  };
}

interface ExplainResult {
  query: string;
  path: string;
  statements: Array<{ role: string; plan: string; ms: number }>;
  indexes: string[];
  seqScans: string[];
}

const BIG_TABLES = /^(resource|resource_history|search_\w+)$/;

/**
 * The SQL the server runs for `path`, built the way FhirRouter.search does (parseSearch, then the engine, which
 * calls planSearch) on a Database that records each statement, then EXPLAIN (ANALYZE, BUFFERS) of each.
 */
async function explain(db: Database, pool: pg.Pool, registry: SearchParameterRegistry, keys: DataKeys, name: string, path: string): Promise<ExplainResult> {
  const url = new URL(path, 'http://127.0.0.1');
  const resourceType = url.pathname.split('/')[2]!;
  const pairs = [...url.searchParams.entries()] as Array<[string, string]>;
  // As the server's store searches it: identifiers hashed (SqlResourceStore).
  const parsed = withHashedIdentifiers(parseSearch([resourceType], pairs, registry, { strict: false, baseUrl: 'http://127.0.0.1/fhir' }), keys.hashIdentifier);
  const recorded: Array<{ sql: string; params: unknown[] }> = [];
  const recorder: Database = {
    ...db,
    driver: db.driver,
    // Run on the EXPLAIN pool (statement timeout): a search slower than that records its statements all the same.
    query: async (sql: string, params: unknown[] = []) => {
      recorded.push({ sql, params });
      try {
        const result = await pool.query(sql, params);
        return { rows: result.rows, rowCount: result.rowCount ?? 0 };
      } catch (error) {
        if ((error as { code?: string }).code !== '57014') throw error;
        return { rows: [], rowCount: 0 };
      }
    },
  } as Database;
  await new SearchEngine(recorder, registry).search(parsed, { baseUrl: 'http://127.0.0.1/fhir', path: resourceType });
  // The page statements must be planSearch's, text for text (a search compiles to the same SQL every time).
  const built = await planSearch(db, parsed);
  const segments = built.segments.map((segment) => segment.sql);
  const roleOf = (sql: string) => {
    const segment = segments.indexOf(sql);
    if (segment >= 0) return segments.length > 1 ? `page (statement ${segment + 1} of ${segments.length})` : 'page';
    if (sql === built.countSql) return 'count (_total=accurate)';
    if (sql.startsWith(`SELECT count(*)::int AS total FROM (${built.matchSql} LIMIT`)) return 'count (up to the default limit)';
    if (/AS targets FROM \(SELECT h\d+\.(target|patient)_id/.test(sql)) return 'has-sources (_has read first)';
    if (/^SELECT count\(\*\)::int AS n FROM \(SELECT 1 FROM search_\w+ i /.test(sql)) return 'has-index-rows (_has rows counted)';
    return sql.includes('search_reference i JOIN resource') ? 'include' : 'other';
  };
  const roles = recorded.map(({ sql }) => roleOf(sql));
  if (!roles.some((role) => role.startsWith('page'))) throw new Error(`${name}: the engine did not run planSearch's page statement`);
  const statements: ExplainResult['statements'] = [];
  for (const [n, { sql, params }] of recorded.entries()) {
    let plan: string;
    try {
      const { rows } = await pool.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params);
      plan = rows.map((row) => row['QUERY PLAN'] as string).join('\n');
    } catch (error) {
      if ((error as { code?: string }).code !== '57014') throw error;
      // Over the statement timeout: the plan the server would use, without its run.
      const { rows } = await pool.query(`EXPLAIN ${sql}`, params);
      plan = `(EXPLAIN ANALYZE cancelled after ${EXPLAIN_TIMEOUT_MS / 1000} s; plan without ANALYZE)\n${rows.map((row) => row['QUERY PLAN'] as string).join('\n')}`;
    }
    const ms = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? (plan.startsWith('(EXPLAIN ANALYZE cancelled') ? Infinity : NaN));
    statements.push({ role: roles[n]!, plan: `${sql}\n-- params: ${JSON.stringify(params)}\n${plan}`, ms });
  }
  const all = statements.map((s) => s.plan).join('\n');
  const indexes = [...new Set([...all.matchAll(/(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)/g)].map((m) => `${m[2]} (${m[1]})`))];
  const seqScans = [...new Set([...all.matchAll(/Seq Scan on (\w+)/g)].map((m) => m[1]!).filter((t) => BIG_TABLES.test(t)))];
  return { query: name, path, statements, indexes, seqScans };
}

function markdownReport(report: SearchReport): string {
  const f = (v: number, d = 1) => v.toFixed(d);
  const lines = [
    `# Search benchmark: postgres, ${report.dataset.resources.toLocaleString('en')} resources`,
    '',
    `${report.date} · Node ${report.node} · ${report.machine.cpu} × ${report.machine.cores} cores · ${report.machine.os} · ${report.machine.memoryMiB} MiB`,
    `Load average (1 min) before/after the queries: ${f(report.loadAverage.before, 2)} / ${f(report.loadAverage.after, 2)}` +
      (report.loadAverage.before > report.machine.cores / 2 ? ' (**the machine was busy: numbers are pessimistic and noisy**)' : ''),
    `Dataset: ${Object.entries(report.dataset.byType).map(([t, n]) => `${n.toLocaleString('en')} ${t}`).join(', ')}; ` +
      `${report.dataset.indexRows.toLocaleString('en')} index rows; database ${report.dataset.databaseSize}.`,
    report.load
      ? `Load: ${f(report.load.seconds, 0)} s with ${report.load.writers} writer processes = **${f(report.load.resourcesPerSecond, 0)} resources/s** ` +
        `(batched transactions, index rows from the server's SearchIndexWriter), then VACUUM ANALYZE ${f(report.load.vacuumAnalyzeSeconds, 0)} s.`
      : 'Load: reused an existing schema.',
    report.clusterSettings ? `Throwaway PostgreSQL 15 cluster, **fsync off** (bench only): ${Object.entries(report.clusterSettings).map(([k, v]) => `${k}=${v}`).join(', ')}.` : 'PostgreSQL: given by BENCH_DATABASE_URL.',
    `Server settings (server pool connections add jit=off): ${Object.entries(report.serverSettings).map(([k, v]) => `${k}=${v}`).join(', ')}.`,
    `${report.settings.requests} requests per query (fewer where the table's requests column says so, to bound the run) over varied inputs after ${report.settings.warmup} warm-up, ${report.settings.concurrency} in flight, ` +
      `server pool ${report.settings.pgPoolSize} connections, over HTTP to buildApp on 127.0.0.1, SMART token on every request, audit trail ${report.settings.audit === 'off' ? '**off** (BENCH_AUDIT=off)' : 'on (each search writes its AuditEvent)'}, ` +
      'identifiers indexed and searched as keyed hashes (encryption on; content loaded in clear).',
    '',
    '| query | requests | ops/s | p50 ms | p95 ms | p99 ms | peak RSS MiB | matches (sample) | target p95 | met? |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...report.queries.map(
      (m) =>
        `| ${m.operation} | ${m.requests}${m.sequentialOnly ? ' (sequential only, too slow for a load run)' : ''} | ${f(m.opsPerSec, 0)} | ${f(m.p50Ms)} | ${f(m.p95Ms)} | ${f(m.p99Ms)} | ${f(m.peakRssMiB, 0)} | ${f(m.sampleMatches)}${m.sampleIncludes ? ` + ${f(m.sampleIncludes)} incl.` : ''} | < ${m.targetMs} ms | ${m.met ? 'yes' : '**no**'} |`,
    ),
    '',
    `Paging: ${PAGES} pages of 20 following \`next\` links, one request at a time, ${report.settings.walks} walks each.`,
    '',
    '| walk | page 50 ms (median / max) | whole walk ms (median / max) | page 1 ms (median) |',
    '|---|---:|---:|---:|',
    ...report.walks.map((w) => {
      const first = [...w.pageLatenciesMs.map((l) => l[0]!)].sort((a, b) => a - b)[Math.floor((w.walks - 1) / 2)]!;
      if (w.stoppedAtPage !== undefined) {
        return `| ${w.name} | **not reached**: stopped at page ${w.stoppedAtPage} (page ${w.stoppedAtPage}: ${f(w.page50Ms.max)}) | **> ${f(w.walkMs.max, 0)}** (budget) | ${f(first)} |`;
      }
      return `| ${w.name} | ${f(w.page50Ms.p50)} / ${f(w.page50Ms.max)} | ${f(w.walkMs.p50, 0)} / ${f(w.walkMs.max, 0)} | ${f(first)} |`;
    }),
    '',
    'EXPLAIN (ANALYZE, BUFFERS) of one instance of each (full plans in search-explain.txt):',
    '',
    '| query | statements (execution ms) | indexes used | Seq Scan on a big table |',
    '|---|---|---|---|',
    ...report.explain.map((e) => `| ${e.query} | ${e.statements.map((s) => `${s.role.split(' ')[0]} ${Number.isFinite(s.ms) ? f(s.ms) : '> 60000'}`).join(', ')} | ${e.indexes.join(', ')} | ${e.seqScans.length ? `**${e.seqScans.join(', ')}**` : 'none'} |`),
    '',
  ];
  return lines.join('\n');
}

interface SearchReport {
  store: 'postgres';
  date: string;
  node: string;
  machine: ReturnType<typeof machine>;
  loadAverage: { before: number; after: number };
  dataset: { resources: number; byType: Record<string, number>; indexRows: number; databaseSize: string; plan: PopulationPlan };
  load?: { seconds: number; writers: number; resourcesPerSecond: number; vacuumAnalyzeSeconds: number };
  clusterSettings?: Record<string, string>;
  /** What the server runs with (whether started here or given), for the settings that shape plans and caching. */
  serverSettings: Record<string, string>;
  settings: { requests: number; warmup: number; concurrency: number; pgPoolSize: number; walks: number; audit?: 'on' | 'off' };
  queries: QueryResultRow[];
  walks: WalkResult[];
  explain: Array<Omit<ExplainResult, 'statements'> & { statements: Array<{ role: string; ms: number }> }>;
  processMaxRssMiB: number;
}

async function main(): Promise<void> {
  const postgres = await benchPostgres(CLUSTER_SETTINGS, ' (fsync off: for benchmarks only)');
  const reuse = postgres.given ? process.env.BENCH_SCHEMA : undefined;
  try {
    const schema = reuse ?? (postgres.given ? `bench_search_${process.pid}_${randomBytes(3).toString('hex')}` : undefined);
    await bench(postgres.url, schema, { keep: reuse !== undefined, settings: postgres.given ? undefined : CLUSTER_SETTINGS });
  } finally {
    postgres.stop();
  }
}

async function bench(url: string, schema: string | undefined, options: { keep: boolean; settings?: Record<string, string> }): Promise<void> {
  const db = await openDatabase(url, schema ? { schema } : {});
  const pool = new pg.Pool({ connectionString: url, max: 2, ...(schema ? { options: `-c search_path=${schema}` } : {}) });
  const explainPool = new pg.Pool({ connectionString: url, max: 1, options: `${schema ? `-c search_path=${schema} ` : ''}-c statement_timeout=${EXPLAIN_TIMEOUT_MS}` });
  const client = LoadClient.start();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  try {
    await migrate(db);
    const registry = new SearchParameterRegistry(loadSearchParameters());
    // The index key, made before the loader's writers start (each loads it), or loaded from a kept schema.
    const keys = benchDataKeys();
    await prepareIndexKey(db, keys, registry);
    // The patient operations bench (patient-operations.ts) adds records of its own (`bench-po-…`) to a kept schema, and the
    // audit trail (on, as by default) an AuditEvent per request: neither is the population.
    const existing = Number((await pool.query(`SELECT count(*) AS n FROM resource WHERE id NOT LIKE 'bench-po-%' AND resource_type <> 'AuditEvent'`)).rows[0].n);
    let load: SearchReport['load'];
    let plan = planPopulation(RESOURCES);
    if (existing > 0) {
      if (existing !== RESOURCES) throw new Error(`schema ${schema} holds ${existing} resources, not BENCH_RESOURCES=${RESOURCES}`);
      console.error(`reusing ${existing} resources in schema ${schema}`);
    } else {
      console.error(`loading ${RESOURCES.toLocaleString('en')} resources (${plan.patients} patients, ${plan.practitioners} practitioners, ${plan.organizations} organizations) with ${WRITERS} writers…`);
      let lastPrint = 0;
      const loaded = await loadPopulation({
        url,
        schema,
        total: RESOURCES,
        writers: WRITERS,
        onProgress: (p) => {
          if (p.elapsedMs - lastPrint >= 10_000 || p.loaded === p.total) {
            lastPrint = p.elapsedMs;
            const rate = (p.loaded * 1000) / p.elapsedMs;
            console.error(`  ${p.loaded.toLocaleString('en')} / ${p.total.toLocaleString('en')} (${((100 * p.loaded) / p.total).toFixed(1)} %), ${rate.toFixed(0)} resources/s, ETA ${(((p.total - p.loaded) / rate) | 0)} s`);
          }
        },
      });
      plan = loaded.plan;
      console.error(`loaded in ${(loaded.elapsedMs / 1000).toFixed(0)} s: ${((RESOURCES * 1000) / loaded.elapsedMs).toFixed(0)} resources/s; VACUUM ANALYZE…`);
      const vacuumStarted = performance.now();
      await pool.query('VACUUM ANALYZE');
      const vacuumMs = performance.now() - vacuumStarted;
      console.error(`VACUUM ANALYZE in ${(vacuumMs / 1000).toFixed(0)} s`);
      load = { seconds: loaded.elapsedMs / 1000, writers: WRITERS, resourcesPerSecond: (RESOURCES * 1000) / loaded.elapsedMs, vacuumAnalyzeSeconds: vacuumMs / 1000 };
    }
    const byType = Object.fromEntries((await pool.query('SELECT resource_type, count(*)::int AS n FROM resource GROUP BY 1 ORDER BY 2 DESC')).rows.map((r) => [r.resource_type, r.n]));
    let indexRows = 0;
    for (const table of ['token', 'string', 'date', 'reference', 'uri', 'number', 'quantity', 'composite']) {
      indexRows += Number((await pool.query(`SELECT reltuples::bigint AS n FROM pg_class WHERE oid = 'search_${table}'::regclass`)).rows[0].n);
    }
    const databaseSize = (await pool.query('SELECT pg_size_pretty(pg_database_size(current_database())) AS s')).rows[0].s as string;

    app = await buildApp({ config: { logLevel: 'silent', bodyLimit: 1024 * 1024, rateLimit: 0, audit: AUDIT, authAudience: BENCH_AUDIENCE }, storage: sqlStorage(db, keys) });
    const origin = await app.listen({ host: '127.0.0.1', port: 0 });
    // A token as a feed gets one (backend services, over HTTP), sent with every request.
    authorization = await backendAuthorization(db, origin, 'bench', 'system/*.rs');
    const { queries, representative } = buildQueries(plan);

    console.error(`queries (${REQUESTS} each after ${WARMUP} warm-up, ${CONCURRENCY} in flight):`);
    const loadBefore = os.loadavg()[0]!;
    const rows: QueryResultRow[] = [];
    for (const query of queries) rows.push(await measureQuery(client, origin, agent, query));

    console.error(`paging to page ${PAGES}:`);
    const walks: WalkResult[] = [];
    const page50: Record<string, string> = {};
    for (const [name, start] of [
      ['Immunization?_count=20&_sort=date (type level, all immunizations)', `/fhir/Immunization?${q([['_count', '20'], ['_sort', 'date']])}`],
      ['Immunization?vaccine-code=<flu>&_count=20&_sort=date', `/fhir/Immunization?${q([['vaccine-code', `${ATC_SYSTEM}|J07BB02`], ['_count', '20'], ['_sort', 'date']])}`],
      ['Immunization?_count=20 (no sort: _id order)', `/fhir/Immunization?${q([['_count', '20']])}`],
    ] as const) {
      const { result, page50Path } = await walk(origin, agent, name, start);
      walks.push(result);
      if (page50Path) page50[`${name}, page 50`] = page50Path;
    }
    const loadAfter = os.loadavg()[0]!;

    console.error('EXPLAIN (ANALYZE, BUFFERS):');
    const explained: ExplainResult[] = [];
    for (const [name, path] of [...Object.entries(representative), ...Object.entries(page50)]) {
      const e = await explain(db, explainPool, registry, keys, name, path);
      explained.push(e);
      console.error(`  ${name}: ${e.statements.map((s) => `${s.role.split(' ')[0]} ${s.ms.toFixed(1)} ms`).join(', ')}; ` +
        `${e.seqScans.length ? `SEQ SCAN on ${e.seqScans.join(', ')}` : 'index only (no Seq Scan on a big table)'}; indexes: ${e.indexes.join(', ')}`);
    }

    const report: SearchReport = {
      store: 'postgres',
      date: new Date().toISOString(),
      node: process.version,
      machine: machine(),
      loadAverage: { before: loadBefore, after: loadAfter },
      dataset: { resources: RESOURCES, byType, indexRows, databaseSize, plan },
      ...(load ? { load } : {}),
      ...(options.settings ? { clusterSettings: options.settings } : {}),
      serverSettings: Object.fromEntries(
        (await pool.query(`SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1) ORDER BY name`, [['shared_buffers', 'huge_pages', 'effective_cache_size', 'work_mem', 'random_page_cost', 'jit']])).rows.map((r) => [r.name, r.value]),
      ),
      settings: { requests: REQUESTS, warmup: WARMUP, concurrency: CONCURRENCY, pgPoolSize: PG_POOL_SIZE, walks: WALKS, audit: AUDIT },
      queries: rows,
      walks,
      explain: explained.map(({ statements, ...rest }) => ({ ...rest, statements: statements.map(({ role, ms }) => ({ role, ms })) })),
      processMaxRssMiB: process.resourceUsage().maxRSS / 1024,
    };
    const md = markdownReport(report);
    console.log(md);
    mkdirSync(RESULTS_DIR, { recursive: true });
    const files = {
      md: new URL('search-postgres.md', RESULTS_DIR),
      json: new URL('search-postgres.json', RESULTS_DIR),
      explain: new URL('search-explain.txt', RESULTS_DIR),
    };
    writeFileSync(files.md, md);
    writeFileSync(files.json, `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(
      files.explain,
      `Search benchmark EXPLAIN (ANALYZE, BUFFERS), ${report.date}, ${RESOURCES.toLocaleString('en')} resources\n\n` +
        explained
          .map((e) => `=== ${e.query}\n${e.path}\nindexes: ${e.indexes.join(', ')}\nseq scans on big tables: ${e.seqScans.join(', ') || 'none'}\n\n${e.statements.map((s) => `--- ${s.role}\n${s.plan}`).join('\n\n')}\n`)
          .join('\n'),
    );
    for (const file of Object.values(files)) console.error(`wrote ${file.pathname}`);
  } finally {
    agent.destroy();
    client.stop();
    await app?.close();
    if (schema && !options.keep) await pool.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => {});
    await pool.end();
    await explainPool.end();
    await db.close();
  }
}

await main();
