// The ResourceStore contract on this suite's store: PGlite by default, PostgreSQL when DATABASE_URL is set.
import t from 'tap';
import { DEFAULT_BINARY_INLINE_LIMIT } from '../src/store/binary-store.ts';
import { DEFAULT_MAX_INDEX_ROWS } from '../src/store/index-writer.ts';
import { sqlStorage } from '../src/store/storage.ts';
import { openTestDatabase } from './helpers/app.ts';
import { contractRegistry, storeContract } from './helpers/store-contract.ts';

storeContract(t, async () => {
  const database = await openTestDatabase();
  const store = await sqlStorage(database.db).open({ registry: contractRegistry(), maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT });
  await store.migrate();
  return { store, close: () => database.drop() };
});
