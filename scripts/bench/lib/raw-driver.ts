import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';

/** A bare driver handle for the baselines: no repository, no transactions, no wrapper from src/. */
export interface RawDriver {
  query(sql: string, params: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  close(): Promise<void>;
}

/**
 * Opens the same kind of store the server uses, searching `schema` (which must exist already). For PGlite this is
 * a second in-memory instance: one PGlite instance cannot be shared with the server's store from outside src/.
 * For PostgreSQL the pool is as large as the server's, so both sides get the same number of connections.
 */
export async function openRawDriver(url: string, schema: string): Promise<RawDriver> {
  if (url.startsWith('postgres')) {
    const pool = new pg.Pool({ connectionString: url, max: Number(process.env.PG_POOL_SIZE ?? 10), options: `-c search_path=${schema}` });
    return { query: (sql, params) => pool.query(sql, params), close: () => pool.end() };
  }
  const db = new PGlite();
  await db.waitReady;
  await db.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema}`);
  return {
    query: (sql, params) => db.query<Record<string, unknown>>(sql, params),
    close: () => db.close(),
  };
}
