import { type Database, type DatabaseOptions } from './database.ts';
import { openDatabase } from './open-database.ts';
import type { ServerStore, Storage } from './resource-store.ts';

/** The SQL storage over an open Database (either driver). */
export function sqlStorage(db: Database): Storage {
  return {
    async open(settings): Promise<ServerStore> {
      // Loaded when the app opens its store: opening the storage itself needs only the driver.
      const { SqlResourceStore, sqlStoreSettings } = await import('./sql-resource-store.ts');
      return SqlResourceStore.over(db, sqlStoreSettings(settings));
    },
    close: () => db.close(),
  };
}

/** `postgres://…` selects a PostgreSQL server; anything else is a PGlite data directory (`memory://` for RAM). */
export async function openStorage(url: string, options?: DatabaseOptions): Promise<Storage> {
  return sqlStorage(await openDatabase(url, options));
}
