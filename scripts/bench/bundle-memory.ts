/**
 * Memory of one large transaction Bundle: a server process (`src/main.ts`, as `npm start` runs it) on a fresh
 * store is sent transaction Bundles of about 60 MB, one at a time, and the table gives, per
 * workload, the status, bundles/s, resources/s, p50/p95/p99 latency, the server's RSS before the first
 * bundle and its peak RSS (the kernel's VmHWM of the server process, so everything it held: parsed JSON,
 * statements, the response).
 *
 *   node --import tsx scripts/bench/bundle-memory.ts
 *
 * Workloads: `documents` (600 Binaries of about 100 KB of base64 each, the issue's 60 MB), `inline` (600
 * DocumentReferences carrying a PDF of about 100 KB of base64 in their attachment) and `small`
 * (10,000 Patients of about 6 KB each, the most entries a bundle may have by default).
 * Environment: BENCH_STORE (postgres, or pglite: a PGlite data directory in a temp dir), BENCH_DATABASE_URL (postgres://…; without it a throwaway PostgreSQL 15 cluster is started
 * and removed), BENCH_ROUNDS (bundles per workload, 3), BENCH_WORKLOADS (documents,inline,small).
 * Results go to scripts/bench/results/bundle-memory-<store>.{md,json}.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { backendToken, registerBackendClientAt } from './lib/backend-token.ts';
import { benchPostgres, freePort } from './lib/pg-cluster.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WORKLOADS = (process.env.BENCH_WORKLOADS ?? 'documents,inline,small').split(',');
const RESULTS_DIR = new URL('./results/', import.meta.url);
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Workload {
  name: string;
  resources: number;
  body: () => string;
}

/** A transaction of `count` entries POSTing `resource(i)`. */
function transaction(count: number, resource: (index: number) => object): string {
  const entry = Array.from({ length: count }, (_, index) => ({ fullUrl: `urn:uuid:${crypto.randomUUID()}`, resource: resource(index), request: { method: 'POST', url: (resource(index) as { resourceType: string }).resourceType } }));
  return JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry });
}

const WORKLOAD_DEFINITIONS: Record<string, Workload> = {
  documents: {
    name: 'documents: 600 Binaries × 100 KB',
    resources: 600,
    body: () => {
      const data = randomBytes(75 * 1024).toString('base64');
      return transaction(600, () => ({ resourceType: 'Binary', contentType: 'application/pdf', data }));
    },
  },
  inline: {
    name: 'inline: 600 DocumentReferences × 100 KB',
    resources: 600,
    body: () => {
      const data = randomBytes(75 * 1024).toString('base64');
      return transaction(600, () => ({ resourceType: 'DocumentReference', status: 'current', subject: { reference: 'Patient/example' }, content: [{ attachment: { contentType: 'application/pdf', data } }] }));
    },
  },
  small: {
    name: 'small: 10,000 Patients × 6 KB',
    resources: 10_000,
    body: () => {
      const note = 'Antécédents : '.padEnd(5800, 'x');
      return transaction(10_000, (index) => ({ resourceType: 'Patient', name: [{ family: `Martin${index}`, given: ['Jeanne'] }], gender: 'female', birthDate: '1984-03-12', extension: [{ url: 'http://example.org/note', valueString: note }] }));
    },
  },
};

function kib(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${field}:\\s+(\\d+) kB`));
  return Number(match?.[1] ?? NaN);
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

interface Row {
  workload: string;
  bodyMiB: number;
  statuses: string;
  bundlesPerSec: number;
  resourcesPerSec: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  rssBeforeMiB: number;
  peakRssMiB: number;
}

async function measure(workload: Workload, databaseUrl: string): Promise<Row> {
  const port = await freePort();
  // Registered before the server starts (an embedded store belongs to one process); its token asked once it listens.
  const feed = await registerBackendClientAt(databaseUrl, 'bench', 'system/*.cruds');
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', FHIR_DEFAULT_PROFILES: 'none', FHIR_RATE_LIMIT: '0' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let ready = false; !ready; ) {
      ready = await fetch(`${base}/health`).then((r) => r.ok, () => false);
      if (!ready) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const authorization = `Bearer ${await backendToken(base, feed, 'system/*.cruds')}`;
    // The inline documents name Patient/example, which a server checking references needs to hold.
    const target = await fetch(`${base}/fhir/Patient/example`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json', authorization }, body: JSON.stringify({ resourceType: 'Patient', id: 'example' }) });
    if (!target.ok) throw new Error(`PUT Patient/example: ${target.status}`);
    const body = workload.body();
    const rssBefore = kib(server.pid!, 'VmRSS');
    const latencies: number[] = [];
    const statuses: number[] = [];
    const started = performance.now();
    for (let round = 0; round < ROUNDS; round++) {
      const sent = performance.now();
      const response = await fetch(`${base}/fhir`, { method: 'POST', headers: { 'content-type': 'application/fhir+json', authorization }, body });
      await response.arrayBuffer();
      latencies.push(performance.now() - sent);
      statuses.push(response.status);
    }
    const elapsedSec = (performance.now() - started) / 1000;
    const sorted = latencies.sort((a, b) => a - b);
    return {
      workload: workload.name,
      bodyMiB: Buffer.byteLength(body) / 2 ** 20,
      statuses: [...new Set(statuses)].join(','),
      bundlesPerSec: ROUNDS / elapsedSec,
      resourcesPerSec: (ROUNDS * workload.resources) / elapsedSec,
      p50Ms: percentile(sorted, 0.5),
      p95Ms: percentile(sorted, 0.95),
      p99Ms: percentile(sorted, 0.99),
      rssBeforeMiB: rssBefore / 1024,
      peakRssMiB: kib(server.pid!, 'VmHWM') / 1024,
    };
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
  }
}

async function freshDatabase(adminUrl: string): Promise<string> {
  const name = `dossier_bundle_memory_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

const STORE = process.env.BENCH_STORE ?? 'postgres';
if (STORE !== 'postgres' && STORE !== 'pglite') throw new Error('BENCH_STORE must be postgres or pglite');
const postgres = STORE === 'postgres' ? await benchPostgres() : undefined;
const rows: Row[] = [];
try {
  for (const name of WORKLOADS) {
    const workload = WORKLOAD_DEFINITIONS[name];
    if (!workload) throw new Error(`unknown workload '${name}'`);
    const directory = postgres ? undefined : mkdtempSync(join(os.tmpdir(), 'dossier-bundle-memory-'));
    try {
      rows.push(await measure(workload, postgres ? await freshDatabase(postgres.url) : join(directory!, 'pglite')));
    } finally {
      if (directory) rmSync(directory, { recursive: true, force: true });
    }
    console.log(rows.at(-1));
  }
} finally {
  postgres?.stop();
}

const fixed = (value: number, digits = 1) => value.toFixed(digits);
const table = [
  '| workload | body MiB | status | bundles/s | resources/s | p50 ms | p95 ms | p99 ms | RSS before MiB | peak RSS MiB |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.workload} | ${fixed(r.bodyMiB)} | ${r.statuses} | ${fixed(r.bundlesPerSec, 3)} | ${fixed(r.resourcesPerSec, 0)} | ${fixed(r.p50Ms, 0)} | ${fixed(r.p95Ms, 0)} | ${fixed(r.p99Ms, 0)} | ${fixed(r.rssBeforeMiB, 0)} | ${fixed(r.peakRssMiB, 0)} |`),
].join('\n');
const header = `# Transaction Bundles of about 60 MB: server memory\n\n${new Date().toISOString()}, Node ${process.version}, ${os.cpus()[0]?.model} × ${os.cpus().length}, ${postgres ? `PostgreSQL (${postgres.given ? 'given' : 'throwaway cluster'})` : 'PGlite'}, ${ROUNDS} bundles per workload, one at a time, FHIR_DEFAULT_PROFILES=none.\n\n`;
console.log(`\n${table}`);
mkdirSync(RESULTS_DIR, { recursive: true });
writeFileSync(new URL(`bundle-memory-${STORE}.md`, RESULTS_DIR), `${header}${table}\n`);
writeFileSync(new URL(`bundle-memory-${STORE}.json`, RESULTS_DIR), `${JSON.stringify({ date: new Date().toISOString(), node: process.version, rounds: ROUNDS, rows }, null, 2)}\n`);
