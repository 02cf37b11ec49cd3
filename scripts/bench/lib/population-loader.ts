/**
 * Bulk loader for the search benchmark: writes the generated French population (french-population.ts) into a
 * migrated dossier schema, in batched transactions, from several writer processes.
 *
 * Each batch is one transaction running the server's own insertNew (the statement Repository.create and
 * transaction bundles use: current rows, history rows and index rows from the server's SearchIndexWriter, with
 * identifiers hashed under the schema's index key, which each writer loads as a server does: bench-keys.ts), so
 * what is indexed is exactly what an encrypting server indexes. Content is written in clear (a server would seal
 * it), and only the batch size differs from a bundle.
 *
 * A writer is this file run as a child process (`population-loader.ts <url> <schema> <writer> <writers> <total>`).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Resource } from 'fhir/r4';
import { SearchIndexWriter } from '../../../src/store/index-writer.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../../../src/search/registry.ts';
import type { QueryResult, SqlExecutor } from '../../../src/store/database.ts';
import { insertNew, StoredResource, type NewResource } from '../../../src/store/repository.ts';
import { prepareIndexKey } from '../../../src/store/index-key.ts';
import { openDatabase } from '../../../src/store/open-database.ts';
import { benchDataKeys } from './bench-keys.ts';
import { organization, patientBundle, planPopulation, practitioner, type GeneratedResource, type PopulationPlan } from './french-population.ts';

const BATCH = 400;
/** Patients are dealt to writers in runs of this many, round robin. */
const RUN = 25;
/** Batches each writer keeps in flight: one generating/extracting while the other is written. */
const IN_FLIGHT = 2;

export interface LoadProgress {
  loaded: number;
  total: number;
  elapsedMs: number;
}

interface WorkerMessage {
  loaded?: number;
  done?: true;
  error?: string;
}

/** Loads `total` resources with `writers` processes; `onProgress` is called as batches commit. */
export async function loadPopulation(options: { url: string; schema?: string; total: number; writers: number; onProgress?: (p: LoadProgress) => void }): Promise<{ plan: PopulationPlan; elapsedMs: number }> {
  const plan = planPopulation(options.total);
  const started = performance.now();
  let loaded = 0;
  const children = Array.from({ length: options.writers }, (_, writer) =>
    fork(fileURLToPath(import.meta.url), [options.url, options.schema ?? '', String(writer), String(options.writers), String(options.total)], {
      execArgv: ['--import', 'tsx'],
      stdio: 'inherit',
    }),
  );
  try {
    await Promise.all(
      children.map(
        (child, writer) =>
          new Promise<void>((resolve, reject) => {
            child.on('message', (message: WorkerMessage) => {
              if (message.loaded) {
                loaded += message.loaded;
                options.onProgress?.({ loaded, total: plan.total, elapsedMs: performance.now() - started });
              }
              if (message.error) reject(new Error(`writer ${writer}: ${message.error}`));
              if (message.done) resolve();
            });
            child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer ${writer} exited with ${code}`))));
          }),
      ),
    );
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill();
  }
  if (loaded !== plan.total) throw new Error(`loaded ${loaded} resources, expected ${plan.total}`);
  return { plan, elapsedMs: performance.now() - started };
}

/** A SqlExecutor over one pg client. */
function executor(client: pg.PoolClient): SqlExecutor {
  return {
    async query<Row>(sql: string, params: unknown[] = []): Promise<QueryResult<Row>> {
      const result = await client.query(sql, params);
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
    },
  };
}

/** What Repository.create stores for a new resource: id and meta set, JSON text in the server's key order. */
function stamp(resource: GeneratedResource, index: SearchIndexWriter): NewResource {
  const lastUpdated = new Date().toISOString();
  const { resourceType, id, meta, ...rest } = resource as GeneratedResource & { meta?: object };
  const stamped = { resourceType, id, meta: { ...meta, versionId: '1', lastUpdated }, ...rest } as unknown as Resource;
  return { stored: new StoredResource(resourceType, id, 1, lastUpdated, JSON.stringify(stamped), stamped), rows: index.rowsOf(stamped) };
}

async function runWriter(url: string, schema: string, writer: number, writers: number, total: number): Promise<void> {
  const plan = planPopulation(total);
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const keys = benchDataKeys();
  const db = await openDatabase(url, schema ? { schema } : {});
  try {
    await prepareIndexKey(db, keys, registry);
  } finally {
    await db.close();
  }
  const index = new SearchIndexWriter(registry, Infinity, keys.hashIdentifier);
  const pool = new pg.Pool({ connectionString: url, max: IN_FLIGHT, ...(schema ? { options: `-c search_path=${schema}` } : {}) });

  // This writer's share: every writers-th practitioner and organization, and every writers-th run of patients.
  function* resources(): Generator<GeneratedResource> {
    for (let i = writer; i < plan.organizations; i += writers) yield organization(i);
    for (let i = writer; i < plan.practitioners; i += writers) yield practitioner(i, plan.organizations);
    for (let start = writer * RUN; start < plan.patients; start += writers * RUN) {
      for (let p = start; p < Math.min(start + RUN, plan.patients); p++) {
        const bundle = patientBundle(p, plan.practitioners, plan.organizations);
        yield* p === plan.patients - 1 ? bundle.slice(0, plan.lastPatientKeeps) : bundle;
      }
    }
  }

  async function writeBatch(batch: GeneratedResource[]): Promise<void> {
    const created = batch.map((resource) => stamp(resource, index));
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await insertNew(executor(client), created);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
    process.send!({ loaded: batch.length } satisfies WorkerMessage);
  }

  const pending = new Set<Promise<void>>();
  let batch: GeneratedResource[] = [];
  const flush = async () => {
    const p = writeBatch(batch);
    batch = [];
    pending.add(p);
    p.finally(() => pending.delete(p)).catch(() => {});
    if (pending.size >= IN_FLIGHT) await Promise.race(pending);
  };
  for (const resource of resources()) {
    batch.push(resource);
    if (batch.length >= BATCH) await flush();
  }
  if (batch.length > 0) await flush();
  await Promise.all(pending);
  await pool.end();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [url, schema, writer, writers, total] = process.argv.slice(2) as [string, string, string, string, string];
  runWriter(url, schema, Number(writer), Number(writers), Number(total)).then(
    () => {
      process.send!({ done: true } satisfies WorkerMessage);
      process.disconnect();
    },
    (error: Error) => {
      process.send!({ error: error.stack ?? String(error) } satisfies WorkerMessage, () => process.exit(1));
    },
  );
}
