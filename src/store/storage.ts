import { type Database, type DatabaseOptions } from './database.ts';
import { listenForDestroyedKeys, type DataKeys } from './encryption.ts';
import { openDatabase } from './open-database.ts';
import type { ServerStore, Storage } from './resource-store.ts';

/** The SQL storage over an open Database (either driver); `dataKeys` encrypts what it stores (encryption.ts). */
export function sqlStorage(db: Database, dataKeys?: DataKeys): Storage {
  return {
    async open(settings): Promise<ServerStore> {
      // Loaded when the app opens its store: opening the storage itself needs only the driver.
      const { SqlResourceStore, sqlStoreSettings } = await import('./sql-resource-store.ts');
      // A record erased by another server process: its keys are forgotten here too, at once.
      if (dataKeys) await listenForDestroyedKeys(db, dataKeys);
      return SqlResourceStore.over(db, sqlStoreSettings(settings, dataKeys));
    },
    close: () => db.close(),
  };
}

/** `postgres://…` selects a PostgreSQL server; anything else is a PGlite data directory (`memory://` for RAM). */
export async function openStorage(url: string, options?: DatabaseOptions, dataKeys?: DataKeys): Promise<Storage> {
  return sqlStorage(await openDatabase(url, options), dataKeys);
}
