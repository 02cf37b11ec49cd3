/**
 * What the change feed (migration 0013: resource_history.xid and its indexes in place of the seq ones) costs
 * writes, on PostgreSQL: the same writes through the Repository (search index and create coalescer as the
 * server has them) on a schema migrated without 0013 ("before") and one with it ("after"), alternately:
 *   - single creates at a concurrency of 8 (the coalescer shares their statements, as in the server),
 *   - transaction Bundles of 100 creates (a BufferedTransaction, as bundle.ts runs them),
 *   - single updates at a concurrency of 8.
 * And what a feed read of 100 changes takes on the "after" schema, read from its start to its end.
 *
 *   node --import tsx scripts/bench/change-feed.ts
 *
 * Environment: BENCH_DATABASE_URL (postgres://…; without it a throwaway PostgreSQL 15 cluster), BENCH_CREATES
 * (2000), BENCH_BUNDLES (10), BENCH_UPDATES (1000), BENCH_ROUNDS (7; each figure is the median round).
 * Results go to scripts/bench/results/change-feed.md.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import type { Resource } from 'fhir/r4';
import { SearchIndexWriter, DEFAULT_MAX_INDEX_ROWS } from '../../src/store/index-writer.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../../src/search/registry.ts';
import { readChanges } from '../../src/store/change-feed.ts';
import { CreateCoalescer } from '../../src/store/create-coalescer.ts';
import type { Database } from '../../src/store/database.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { loadMigrations, migrate } from '../../src/store/migrate.ts';
import { BufferedTransaction, Repository } from '../../src/store/repository.ts';
import { closedLoop } from './lib/closed-loop.ts';
import { frenchPatient } from './lib/patients.ts';
import { benchPostgres } from './lib/pg-cluster.ts';
import { machine } from './lib/report.ts';

const count = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
};
const CREATES = count('BENCH_CREATES', 2000);
const BUNDLES = count('BENCH_BUNDLES', 10);
const UPDATES = count('BENCH_UPDATES', 1000);
const ROUNDS = count('BENCH_ROUNDS', 7);
const CONCURRENCY = 8;

const registry = new SearchParameterRegistry(loadSearchParameters());
const indexWriter = new SearchIndexWriter(registry, DEFAULT_MAX_INDEX_ROWS);

interface Variant {
  name: 'before' | 'after';
  db: Database;
  repo: Repository;
  ids: string[];
}

async function openVariant(url: string, name: Variant['name']): Promise<Variant> {
  const schema = `bench_feed_${name}_${randomBytes(3).toString('hex')}`;
  const db = await openDatabase(url, { schema });
  await migrate(db, loadMigrations().filter((m) => name === 'after' || m.version < 13));
  return { name, db, repo: new Repository(db, indexWriter, new CreateCoalescer(db)), ids: [] };
}

let serial = 0;
const patient = () => frenchPatient(serial++) as unknown as Resource;

async function round(variant: Variant) {
  const creates = await closedLoop(CREATES, CONCURRENCY, async () => {
    variant.ids.push((await variant.repo.create(patient())).id);
  });
  const bundles = await closedLoop(BUNDLES, 1, async () => {
    await variant.db.transaction(async (tx) => {
      const buffered = new BufferedTransaction(tx, variant.db.driver);
      const repo = new Repository(buffered, indexWriter);
      for (let i = 0; i < 100; i++) await repo.create(patient());
      await buffered.flush();
    });
  });
  const targets = variant.ids.slice(-UPDATES);
  const updates = await closedLoop(targets.length, CONCURRENCY, async (index) => {
    await variant.repo.update({ ...patient(), id: targets[index]! });
  });
  return {
    createsPerSecond: (CREATES / creates.elapsedMs) * 1000,
    bundleCreatesPerSecond: ((BUNDLES * 100) / bundles.elapsedMs) * 1000,
    updatesPerSecond: (targets.length / updates.elapsedMs) * 1000,
  };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const postgres = await benchPostgres();
try {
  const variants = [await openVariant(postgres.url, 'before'), await openVariant(postgres.url, 'after')];
  const results: Record<Variant['name'], Array<Awaited<ReturnType<typeof round>>>> = { before: [], after: [] };
  // A warm-up round each, not counted: the first round pays for plans, caches and the JIT.
  for (const variant of variants) await round(variant);
  for (let r = 0; r < ROUNDS; r++) {
    for (const variant of r % 2 === 0 ? variants : [...variants].reverse()) {
      const result = await round(variant);
      results[variant.name].push(result);
      console.error(`round ${r + 1} ${variant.name}: ${JSON.stringify(result, (_, v) => (typeof v === 'number' ? Math.round(v) : v))}`);
    }
  }

  const after = variants[1]!;
  const reads: number[] = [];
  let cursor: string | undefined;
  let changes = 0;
  for (;;) {
    const started = performance.now();
    const page = await readChanges(after.db, cursor, 100);
    reads.push(performance.now() - started);
    changes += page.changes.length;
    cursor = page.next;
    if (page.changes.length < 100) break;
  }
  const rows = await after.db.query<{ n: number }>('SELECT count(*)::int AS n FROM resource_history');

  const figure = (name: Variant['name'], key: keyof Awaited<ReturnType<typeof round>>) => median(results[name].map((r) => r[key]));
  const range = (name: Variant['name'], key: keyof Awaited<ReturnType<typeof round>>) => {
    const values = results[name].map((r) => r[key]);
    return `${figure(name, key).toFixed(0)} (${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)})`;
  };
  // Each round measures both schemas one after the other: the ratio within a round is less exposed to what
  // else the machine does than the ratio of the medians.
  const line = (label: string, key: keyof Awaited<ReturnType<typeof round>>) => {
    const ratios = results.after.map((r, i) => r[key] / results.before[i]![key]);
    return `| ${label} | ${range('before', key)} | ${range('after', key)} | ${((median(ratios) - 1) * 100).toFixed(1)} % |`;
  };
  const report = [
    '# Change feed: write cost of migration 0013 (PostgreSQL)',
    '',
    `${new Date().toISOString()}, ${machine().cpu}, ${machine().cores} cores (load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end), ${postgres.given ? 'given PostgreSQL server' : 'throwaway PostgreSQL 15 cluster'};`,
    `${ROUNDS} rounds alternating the two schemas after a warm-up round each, median round shown; ${CREATES} single creates and`,
    `${UPDATES} updates at a concurrency of ${CONCURRENCY}, ${BUNDLES} transaction Bundles of 100 creates one after the other.`,
    '',
    '| writes per second, median (range) | before 0013 | after 0013 | change (median of the rounds\' ratios) |',
    '|---|---|---|---|',
    line('single creates', 'createsPerSecond'),
    line('creates in Bundles of 100', 'bundleCreatesPerSecond'),
    line('single updates', 'updatesPerSecond'),
    '',
    `Feed read of 100 changes over the whole "after" history (${rows.rows[0]!.n} rows, ${changes} read, ${reads.length} reads):`,
    `median ${median(reads).toFixed(2)} ms, slowest ${Math.max(...reads).toFixed(2)} ms.`,
    '',
  ].join('\n');
  console.log(report);
  writeFileSync(new URL('./results/change-feed.md', import.meta.url), report);
  for (const variant of variants) await variant.db.close();
} finally {
  postgres.stop();
}
