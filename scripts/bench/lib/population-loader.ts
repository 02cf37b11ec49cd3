/**
 * Bulk loader for the search benchmark: writes the generated French population (french-population.ts) into a
 * migrated dossier schema, in batched transactions, from several writer processes.
 *
 * Each batch is one transaction that inserts the resources' current rows and their history rows (the columns
 * and values Repository.create writes: version 1, method POST, content stamped with id and meta), then calls
 * the server's own SearchIndexWriter.write for every resource, so the index rows are exactly what
 * extractIndexRows produces for a server write. Only the batching differs from a POST: one transaction per
 * batch instead of per resource, and one INSERT per index table per batch (see BatchedIndexWriter).
 *
 * A writer is this file run as a child process (`population-loader.ts <url> <schema> <writer> <writers> <total>`).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Resource } from 'fhir/r4';
import { SearchIndexWriter } from '../../../src/search/index-writer.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../../../src/search/registry.ts';
import type { QueryResult, SqlExecutor } from '../../../src/store/database.ts';
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

/** One index table's insert, as SearchIndexWriter states it: its columns and the array parameters feeding them. */
interface TableInsert {
  table: string;
  columns: string[];
  /** For each column after (resource_type, resource_id): the writer's parameter number and SQL array type. */
  arrays: Array<{ param: number; sqlType: string }>;
}

/**
 * Runs the server's SearchIndexWriter.write for a batch of resources and inserts all their index rows with one
 * statement per index table. write() is called for real, on an executor that records its statement and
 * parameters instead of running them; the recorded statement says which parameter feeds which column of which
 * table (`INSERT INTO search_x (resource_type, resource_id, cols…) SELECT $1, $2, * FROM unnest($3::t[], …)`),
 * so the rows inserted are exactly the ones write() would have inserted, resource by resource.
 */
class BatchedIndexWriter {
  private layout?: TableInsert[];
  constructor(private readonly writer: SearchIndexWriter) {}

  async rowsOf(resources: Array<{ type: string; id: string; stamped: Resource }>): Promise<Map<string, unknown[][]>> {
    const perTable = new Map<string, unknown[][]>();
    for (const { type, id, stamped } of resources) {
      let recorded: { sql: string; params: unknown[] } | undefined;
      const recorder: SqlExecutor = {
        async query<Row>(sql: string, params: unknown[] = []): Promise<QueryResult<Row>> {
          recorded = { sql, params };
          return { rows: [], rowCount: 0 };
        },
      };
      await this.writer.write(recorder, type, id, stamped, true);
      if (!recorded) throw new Error('SearchIndexWriter.write ran no statement');
      this.layout ??= parseLayout(recorded.sql);
      for (const insert of this.layout) {
        const columns = insert.arrays.map(({ param }) => recorded!.params[param - 1] as unknown[]);
        const rows = columns[0]!.length;
        if (rows === 0) continue;
        let target = perTable.get(insert.table);
        if (!target) perTable.set(insert.table, (target = [[], [], ...insert.arrays.map(() => [])]));
        for (let r = 0; r < rows; r++) {
          target[0]!.push(recorded.params[0]);
          target[1]!.push(recorded.params[1]);
          columns.forEach((values, c) => target![c + 2]!.push(values[r]));
        }
      }
    }
    return perTable;
  }

  /** One INSERT … SELECT FROM unnest(…) per index table, for the rows `rowsOf` collected. */
  async insert(tx: SqlExecutor, perTable: Map<string, unknown[][]>): Promise<void> {
    for (const insert of this.layout ?? []) {
      const values = perTable.get(insert.table);
      if (!values) continue;
      const types = ['text', 'text', ...insert.arrays.map((a) => a.sqlType)];
      await tx.query(
        `INSERT INTO ${insert.table} (${insert.columns.join(', ')}) SELECT * FROM unnest(${types.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`,
        values,
      );
    }
  }
}

function parseLayout(sql: string): TableInsert[] {
  const inserts: TableInsert[] = [];
  const pattern = /INSERT INTO (\w+) \(([^)]*)\) SELECT \$1, \$2, \* FROM unnest\(([^)]*)\)/g;
  for (const match of sql.matchAll(pattern)) {
    const columns = match[2]!.split(',').map((c) => c.trim());
    const arrays = match[3]!.split(',').map((a) => {
      const m = /^\$(\d+)::(\w+)\[\]$/.exec(a.trim());
      if (!m) throw new Error(`unexpected index statement shape: ${a}`);
      return { param: Number(m[1]), sqlType: m[2]! };
    });
    if (columns[0] !== 'resource_type' || columns[1] !== 'resource_id' || columns.length !== arrays.length + 2) {
      throw new Error(`unexpected index statement shape for ${match[1]}`);
    }
    inserts.push({ table: match[1]!, columns, arrays });
  }
  if (inserts.length === 0) throw new Error('could not read the index statement of SearchIndexWriter');
  return inserts;
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
function stamp(resource: GeneratedResource): { type: string; id: string; lastUpdated: string; json: string; stamped: Resource } {
  const lastUpdated = new Date().toISOString();
  const { resourceType, id, meta, ...rest } = resource as GeneratedResource & { meta?: object };
  const stamped = { resourceType, id, meta: { ...meta, versionId: '1', lastUpdated }, ...rest } as unknown as Resource;
  return { type: resourceType, id, lastUpdated, json: JSON.stringify(stamped), stamped };
}

async function runWriter(url: string, schema: string, writer: number, writers: number, total: number): Promise<void> {
  const plan = planPopulation(total);
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const index = new BatchedIndexWriter(new SearchIndexWriter(registry));
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
    const stamped = batch.map(stamp);
    const indexRows = await index.rowsOf(stamped);
    const client = await pool.connect();
    const tx = executor(client);
    try {
      await client.query('BEGIN');
      const columns = [stamped.map((s) => s.type), stamped.map((s) => s.id), stamped.map((s) => s.lastUpdated), stamped.map((s) => s.json)];
      await tx.query(
        `INSERT INTO resource (resource_type, id, version_id, last_updated, content)
         SELECT t, i, 1, l, c FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS u(t, i, l, c)`,
        columns,
      );
      await tx.query(
        `INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content)
         SELECT t, i, 1, l, 'POST', c FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS u(t, i, l, c)`,
        columns,
      );
      await index.insert(tx, indexRows);
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
