// Rebuilds the search index of every current resource, after a SearchParameter definition changed.
// Usage: DATABASE_URL=… npm run reindex [-- Patient Immunization]   (no types: every served type)
// The server's own base (PUBLIC_BASE_URL, else http://localhost:$PORT/fhir, as the server's): absolute
// references to it are indexed as local ones. Set PUBLIC_BASE_URL for this run to the base clients use,
// even when the server builds its base from the Hosts FHIR_ALLOWED_HOSTS lists.
import { configFromEnv } from '../src/config.ts';
import { SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';
import { SearchIndexWriter } from '../src/store/index-writer.ts';
import { reindex } from '../src/store/reindex.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { openDatabase } from '../src/store/open-database.ts';
import { migrate } from '../src/store/migrate.ts';
import { openingDatabase } from '../src/store/encryption.ts';
import { dataKeysFor } from '../src/store/master-key.ts';
import { prepareIndexKey } from '../src/store/index-key.ts';

const config = configFromEnv();
const types = process.argv.slice(2).length > 0 ? process.argv.slice(2) : [...SERVED_RESOURCE_TYPES];
// Resources are read as the server reads them: opened with its master key (README, Encryption at rest).
const keys = dataKeysFor(config.encryption, config.databaseUrl, (message) => console.warn(message));
const stored = await openDatabase(config.databaseUrl);
const db = keys ? openingDatabase(stored, keys) : stored;
await migrate(db);
const registry = new SearchParameterRegistry(loadSearchParameters());
// With encryption, identifiers are indexed hashed under the store's index key, as the server indexes them.
if (keys) await prepareIndexKey(db, keys, registry);
const writer = new SearchIndexWriter(registry, Infinity, keys?.hashIdentifier);
const started = Date.now();
console.log(`reindexing ${types.join(', ')}`);
const done = await reindex(db, writer, types, {
  baseUrl: config.authAudience,
  onProgress: ({ done, total }) => {
    const rate = done / Math.max((Date.now() - started) / 1000, 0.001);
    console.log(`${done}/${total} (${((100 * done) / Math.max(total, 1)).toFixed(1)}%), ${rate.toFixed(0)} resources/s`);
  },
});
console.log(`done: ${done} resources in ${((Date.now() - started) / 1000).toFixed(1)} s`);
await db.close();
