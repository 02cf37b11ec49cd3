import type { Database, DatabaseOptions } from './database.ts';

/** `postgres://…` selects a PostgreSQL server; anything else is a PGlite data directory (`memory://` for RAM). */
export async function openDatabase(url: string, options: DatabaseOptions = {}): Promise<Database> {
  if (/^postgres(ql)?:\/\//.test(url)) {
    const { openPostgres } = await import('./postgres.ts');
    return openPostgres(url, options);
  }
  const { openPglite } = await import('./pglite.ts');
  return openPglite(url, options);
}
