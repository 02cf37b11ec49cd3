import { type Database, type DatabaseOptions } from './database.ts';
import { listenForDestroyedKeys, type DataKeys } from './encryption.ts';
import { openDatabase } from './open-database.ts';
import type { ServerStore, Storage } from './resource-store.ts';

/** The SQL storage over an open Database (either driver); `dataKeys` encrypts what it stores (encryption.ts). */
export function sqlStorage(db: Database, dataKeys?: DataKeys): Storage {
  const opened: Array<{ close(): Promise<void> }> = [];
  return {
    async open(settings): Promise<ServerStore> {
      // Loaded when the app opens its store: opening the storage itself needs only the driver.
      const { SqlResourceStore, sqlStoreSettings } = await import('./sql-resource-store.ts');
      // A record erased by another server process: its keys are forgotten here too, at once.
      if (dataKeys) await listenForDestroyedKeys(db, dataKeys);
      const store = SqlResourceStore.over(db, sqlStoreSettings(settings, dataKeys));
      opened.push(store);
      return store;
    },
    async close() {
      // Their background drains of the audit log stop before the database goes.
      await Promise.all(opened.splice(0).map((store) => store.close()));
      await db.close();
    },
  };
}

/** `postgres://…` selects a PostgreSQL server; anything else is a PGlite data directory (`memory://` for RAM). */
export async function openStorage(url: string, options?: DatabaseOptions, dataKeys?: DataKeys): Promise<Storage> {
  return sqlStorage(await openDatabase(url, options), dataKeys);
}
