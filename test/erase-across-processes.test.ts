// A record erased through one server process is closed in every other at once (issue 18): two apps on one
// store (two buildApp with data key caches of their own, as two processes or WORKERS > 1 have; on PostgreSQL
// over two connection pools of one schema), and a third store that never hears of the erasure. The erasing
// process notifies the others (pg_notify in the erasure's transaction), which forget the destroyed keys; a
// write sealed under a destroyed key by a process that had not heard yet is refused by the database (409),
// and the write tried again gets a new key.
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { buildApp } from '../src/app.ts';
import { createProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { FhirError } from '../src/fhir/outcome.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import type { DataKeys } from '../src/store/encryption.ts';
import type { Database } from '../src/store/database.ts';
import { openDatabase } from '../src/store/open-database.ts';
import { SearchIndexWriter } from '../src/store/index-writer.ts';
import { SqlResourceStore } from '../src/store/sql-resource-store.ts';
import { sqlStorage } from '../src/store/storage.ts';
import { FHIR_JSON, json, onPostgres, openTestDatabase, TEST_DATABASE_URL, testDataKeys } from './helpers/app.ts';
import { drainAuditLog } from '../src/store/audit-log.ts';

const database = await openTestDatabase();
// The second process's own connections to the same store (PGlite: one instance, shared).
const secondDb: Database = onPostgres ? await openDatabase(TEST_DATABASE_URL, { schema: database.schema! }) : database.db;
const validator = createProfileValidator({ defaultProfiles: 'none' });

async function serverOver(db: Database, keys: DataKeys): Promise<FastifyInstance> {
  return buildApp({
    // Referential integrity off: a write may still name the erased patient, as one racing the erasure does.
    config: { logLevel: 'silent', bodyLimit: 1024 * 1024, audit: 'on', auth: 'off', authAudience: 'http://localhost/fhir', rateLimit: 0, referentialIntegrity: 'off' },
    storage: { ...sqlStorage(db, keys), close: async () => {} },
    validator,
  });
}

const keysA = testDataKeys();
const keysB = testDataKeys();
const a = await serverOver(database.db, keysA);
const b = await serverOver(secondDb, keysB);
t.teardown(async () => {
  await a.close();
  await b.close();
  if (secondDb !== database.db) await secondDb.close();
  await database.drop();
});

const send = (app: FastifyInstance, method: 'GET' | 'POST' | 'PUT', url: string, body?: Record<string, unknown>) =>
  app.inject({ method, url: `/fhir/${url}`, ...(body ? { payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } } : {}) });

/** Resolves once `keys` forgets `owner`: the other process heard of the erasure. */
function forgetting(keys: DataKeys, owner: string): Promise<void> {
  return new Promise((resolve) => {
    const forget = keys.forget.bind(keys);
    keys.forget = (forgotten: string) => {
      forget(forgotten);
      if (forgotten === owner) resolve();
    };
  });
}

/** An AuditEvent about `patientId` (a read of it leaves one, sealed under its key). */
async function auditEventAbout(patientId: string): Promise<string> {
  await drainAuditLog(database.db);
  const { rows } = await database.db.query<{ id: string }>(
    `SELECT resource_id AS id FROM search_reference WHERE resource_type = 'AuditEvent' AND target_type = 'Patient' AND target_id = $1 LIMIT 1`,
    [patientId],
  );
  return rows[0]!.id;
}

const observationOf = (patientId: string, text: string) => ({ resourceType: 'Observation', status: 'final', code: { text }, subject: { reference: `Patient/${patientId}` } });

t.test('erased through one process: the other forgets the keys, reads fail, writes get a new key', async (t) => {
  const patient = json(await send(a, 'POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Oublié' }] }));
  const observation = json(await send(a, 'POST', 'Observation', observationOf(patient.id, 'avant')));
  // The second process reads the record: it holds the record's key, and the reads leave AuditEvents sealed under it.
  t.equal((await send(b, 'GET', `Patient/${patient.id}`)).statusCode, 200);
  t.equal((await send(b, 'GET', `Observation/${observation.id}`)).statusCode, 200);
  const audit = await auditEventAbout(patient.id);
  t.equal((await send(b, 'GET', `AuditEvent/${audit}`)).statusCode, 200, 'an AuditEvent about her, opened with the key held');

  const heard = forgetting(keysB, `Patient/${patient.id}`);
  const erased = await send(a, 'POST', `Patient/${patient.id}/$erase`);
  t.equal(erased.statusCode, 200, erased.body);

  // Right after: a write of the second process to the erased patient either is refused or gets a new key.
  const written = await send(b, 'POST', 'Observation', observationOf(patient.id, 'après'));
  t.ok([201, 409].includes(written.statusCode), `written under a new key, or refused: ${written.statusCode}`);
  if (written.statusCode === 201) t.equal((await send(a, 'GET', `Observation/${json(written).id}`)).statusCode, 200, 'which the erasing process opens: its key exists');

  await heard;
  t.pass('the second process heard of the erasure');
  t.equal((await send(b, 'GET', `Patient/${patient.id}`)).statusCode, 404, 'the patient is gone there too');
  t.equal((await send(b, 'GET', `Observation/${observation.id}`)).statusCode, 404);
  t.equal((await send(b, 'GET', `AuditEvent/${audit}`)).statusCode, 410, 'the AuditEvent no longer opens there');
  const again = await send(b, 'POST', 'Observation', observationOf(patient.id, 'encore'));
  t.equal(again.statusCode, 201, 'a write after: a new key');
  t.equal((await send(a, 'GET', `Observation/${json(again).id}`)).statusCode, 200, 'stored under a key that exists');
});

t.test('a process that never heard of the erasure cannot seal under the destroyed key: 409, then a new key', async (t) => {
  const patient = json(await send(a, 'POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Sourd' }] }));
  // A store with a key cache of its own and no listener: as a process whose notification is late.
  const deafKeys = testDataKeys();
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const deaf = SqlResourceStore.over(secondDb, { registry, indexWriter: new SearchIndexWriter(registry), dataKeys: deafKeys });
  await deaf.migrate();
  const held = await deafKeys.keyFor(secondDb, `Patient/${patient.id}`);
  t.equal((await send(a, 'POST', `Patient/${patient.id}/$erase`)).statusCode, 200);
  t.same(await deafKeys.keysById(secondDb, [held.keyId]), new Map([[held.keyId, held.key]]), 'it still holds the destroyed key');

  const refused = await deaf.create(observationOf(patient.id, 'sous une clé détruite') as never).then(
    () => undefined,
    (error: unknown) => error,
  );
  t.ok(refused instanceof FhirError && refused.status === 409, `the database refuses the write: ${String(refused)}`);
  t.equal((await database.db.query(`SELECT 1 FROM resource WHERE resource_type = 'Observation' AND content LIKE $1`, [`%${held.keyId}%`])).rowCount, 0, 'nothing stored under it');
  t.notOk((await deafKeys.keysById(secondDb, [held.keyId])).has(held.keyId), 'and the key is forgotten');

  const stored = await deaf.create(observationOf(patient.id, 'sous une nouvelle clé') as never);
  t.equal((await send(a, 'GET', `Observation/${stored.id}`)).statusCode, 200, 'tried again: a new key, which every process opens');
  const { rows } = await database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM data_key WHERE owner = $1`, [`Patient/${patient.id}`]);
  t.equal(rows[0]!.n, 1, 'the new key');
});
