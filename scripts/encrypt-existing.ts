// Encrypts what a store wrote in clear (before encryption at rest, or with FHIR_ENCRYPTION=off): the search
// index's identifiers, hashed under the store's index key, then resource content, history and Binary chunks,
// sealed with their patients' data keys (README, Encryption at rest).
// Usage, with the servers stopped: DATABASE_URL=… FHIR_MASTER_KEY=… npm run encrypt-existing
import { configFromEnv } from '../src/config.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { encryptExisting } from '../src/store/key-maintenance.ts';
import { dataKeysFor } from '../src/store/master-key.ts';
import { openDatabase } from '../src/store/open-database.ts';
import { migrate } from '../src/store/migrate.ts';

const config = configFromEnv();
const keys = dataKeysFor({ ...config.encryption, mode: 'on' }, config.databaseUrl, (message) => console.warn(message));
const db = await openDatabase(config.databaseUrl);
await migrate(db);
const counts = await encryptExisting(db, keys!, new SearchParameterRegistry(loadSearchParameters()), ({ versions, chunks }) => console.log(`${versions} versions, ${chunks} Binary chunks sealed`));
console.log(`done: ${counts.identifierRows} index rows' identifiers hashed, ${counts.versions} versions and ${counts.chunks} Binary chunks sealed`);
await db.close();
