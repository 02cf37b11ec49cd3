// Master-key rotation (README, Encryption at rest): rewraps every data key with a new master key, in one
// transaction; no resource, history row or Binary chunk is re-encrypted.
// Usage: DATABASE_URL=… FHIR_MASTER_KEY=<current> FHIR_NEW_MASTER_KEY=<new> npm run rotate-master-key
//   (or FHIR_MASTER_KEY_FILE / FHIR_NEW_MASTER_KEY_FILE; an embedded store's generated key is found as the server finds it).
// Servers still running with the current key may keep wrapping new data keys with it: restart them with
// FHIR_MASTER_KEY=<new> and FHIR_PREVIOUS_MASTER_KEYS=<current>, run this again, then drop the previous key.
import { configFromEnv } from '../src/config.ts';
import { dataKeysFor, keyWrapperFor } from '../src/store/master-key.ts';
import { rewrapDataKeys } from '../src/store/key-maintenance.ts';
import { openDatabase } from '../src/store/open-database.ts';
import { migrate } from '../src/store/migrate.ts';

const config = configFromEnv();
const current = dataKeysFor({ ...config.encryption, mode: 'on' }, config.databaseUrl, (message) => console.warn(message));
const next = keyWrapperFor({ masterKey: process.env.FHIR_NEW_MASTER_KEY, masterKeyFile: process.env.FHIR_NEW_MASTER_KEY_FILE }, { key: 'FHIR_NEW_MASTER_KEY', file: 'FHIR_NEW_MASTER_KEY_FILE' });
if (!current || !next) {
  console.error('Set the current master key (FHIR_MASTER_KEY or FHIR_MASTER_KEY_FILE) and the new one (FHIR_NEW_MASTER_KEY or FHIR_NEW_MASTER_KEY_FILE: openssl rand -base64 32)');
  process.exit(1);
}
const db = await openDatabase(config.databaseUrl);
await migrate(db);
const rewrapped = await rewrapDataKeys(db, current.wrapper, next);
console.log(`${rewrapped} data keys rewrapped with master key ${next.currentKeyId}: start the servers with the new key (FHIR_MASTER_KEY or FHIR_MASTER_KEY_FILE)`);
await db.close();
