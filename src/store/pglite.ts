import { mkdirSync } from 'node:fs';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { lockDataDirectory } from './data-directory-lock.ts';
import type { Database, DatabaseOptions, QueryResult, SqlExecutor } from './database.ts';
import { assertSchemaName } from './schema-name.ts';

function wrap(target: PGlite | Transaction): SqlExecutor {
  return {
    async query<Row>(sql: string, params: unknown[] = []): Promise<QueryResult<Row>> {
      const result = await target.query<Row>(sql, params);
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
    },
  };
}

export async function openPglite(dataDir: string, options: DatabaseOptions): Promise<Database> {
  const inMemory = dataDir === '' || dataDir.startsWith('memory://');
  if (!inMemory) mkdirSync(dataDir, { recursive: true });
  const unlock = inMemory ? () => {} : lockDataDirectory(dataDir);
  const db = new PGlite(inMemory ? undefined : dataDir, options.pgliteDataDir ? { loadDataDir: options.pgliteDataDir } : {});
  try {
    await db.waitReady;
  } catch (error) {
    unlock();
    throw error;
  }
  if (options.schema) {
    const schema = assertSchemaName(options.schema);
    await db.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema}`);
  }
  return pgliteDatabase(db, unlock);
}

/** The Database over an open PGlite instance; `onClose` runs once it is closed (releasing its directory's lock). */
export function pgliteDatabase(db: PGlite, onClose: () => void = () => {}): Database {
  const executor = wrap(db);
  return {
    driver: 'pglite',
    query: executor.query,
    // PGlite holds one connection and serialises transactions behind its own mutex.
    transaction: (work) => db.transaction((tx) => work(wrap(tx))),
    exec: async (sql) => {
      await db.exec(sql);
    },
    // One instance, one session: nothing is ever missed.
    listen: async (channel, onMessage) => {
      await db.listen(channel, onMessage);
    },
    close: async () => {
      await db.close();
      onClose();
    },
  };
}
