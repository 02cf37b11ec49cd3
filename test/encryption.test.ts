import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataKeysFor, generatedMasterKeyFile } from '../src/store/master-key.ts';
import t from 'tap';
import { DataKeys, LocalKeyWrapper } from '../src/store/encryption.ts';
import { SqlResourceStore } from '../src/store/sql-resource-store.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import type { Resource } from 'fhir/r4';
import { FHIR_JSON, json, openTestDatabase, startTestServer, testDataKeys, TEST_MASTER_KEY } from './helpers/app.ts';
import { encryptExisting, rewrapDataKeys } from '../src/store/key-maintenance.ts';
import { SearchIndexWriter } from '../src/store/index-writer.ts';
import { migrate } from '../src/store/migrate.ts';
import { INDEX_KEY_OWNER } from '../src/store/index-key.ts';
import { parseSearch } from '../src/search/parse.ts';

// Encryption at rest (issue 18 item 3): what the tables hold of a resource's content, history and Binary
// bytes is sealed; what the API gives back is the resource.
const server = await startTestServer(t, { referentialIntegrity: 'off' });
const NAME = 'Zyxwortel';
const SECRET = 'Quirinalis-7731';

const post = async (body: Record<string, unknown>) => {
  const response = await server.inject({ method: 'POST', url: `/fhir/${body.resourceType as string}`, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });
  if (response.statusCode !== 201) throw new Error(`${body.resourceType as string} not created: ${response.body}`);
  return json(response);
};

const postTransaction = (entry: unknown[]) =>
  server.inject({ method: 'POST', url: '/fhir', payload: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }), headers: { 'content-type': FHIR_JSON } });

const patient = await post({ resourceType: 'Patient', name: [{ family: NAME }], identifier: [{ system: 'urn:test:ins', value: SECRET }] });
const observation = await post({ resourceType: 'Observation', status: 'final', code: { text: `${NAME} glycaemia` }, subject: { reference: `Patient/${patient.id}` } });
const practitioner = await post({ resourceType: 'Practitioner', name: [{ family: 'Publicus' }] });
const binaryBytes = Buffer.from(`${SECRET} scanned letter `.repeat(50));
const binary = await post({ resourceType: 'Binary', contentType: 'text/plain', securityContext: { reference: `Patient/${patient.id}` }, data: binaryBytes.toString('base64') });

t.test('resource and history content is stored sealed, never as the JSON', async (t) => {
  const updated = await server.inject({ method: 'PUT', url: `/fhir/Patient/${patient.id}`, payload: JSON.stringify({ ...patient, gender: 'female' }), headers: { 'content-type': FHIR_JSON } });
  t.equal(updated.statusCode, 200);
  for (const table of ['resource', 'resource_history']) {
    const { rows } = await server.rawDb.query<{ content: string }>(`SELECT content FROM ${table} WHERE content IS NOT NULL`);
    t.ok(rows.length >= 4, `${table} has rows`);
    t.ok(rows.every((row) => row.content.startsWith('$e1$')), `every ${table} content is sealed`);
    t.notOk(rows.some((row) => row.content.includes(NAME) || row.content.includes(SECRET) || row.content.includes('Publicus')), `${table} holds none of the strings in clear`);
  }
});

t.test('a patient record has its own data key, what belongs to no patient the system key, all wrapped by the master key', async (t) => {
  const { rows } = await server.rawDb.query<{ owner: string; master_key_id: string }>('SELECT owner, master_key_id FROM data_key ORDER BY owner');
  const owners = rows.map((row) => row.owner);
  t.ok(owners.includes(`Patient/${patient.id}`));
  t.ok(owners.includes('system'));
  t.equal(new Set(rows.map((row) => row.master_key_id)).size, 1);
  t.equal(rows[0]!.master_key_id, server.dataKeys.wrapper.currentKeyId);
});

t.test('reads, vreads, history and searches give the resources back in clear', async (t) => {
  const read = json(await server.inject({ method: 'GET', url: `/fhir/Patient/${patient.id}` }));
  t.equal(read.name[0].family, NAME);
  t.equal(read.gender, 'female');
  const first = json(await server.inject({ method: 'GET', url: `/fhir/Patient/${patient.id}/_history/1` }));
  t.notOk(first.gender);
  const history = json(await server.inject({ method: 'GET', url: `/fhir/Patient/${patient.id}/_history` }));
  t.same(history.entry.map((entry: any) => entry.resource.meta.versionId), ['2', '1']);
  const search = json(await server.inject({ method: 'GET', url: `/fhir/Observation?subject=Patient/${patient.id}&_include=Observation:subject` }));
  t.same(search.entry.map((entry: any) => entry.resource.resourceType).sort(), ['Observation', 'Patient']);
  t.equal(search.entry.find((entry: any) => entry.resource.resourceType === 'Observation').resource.code.text, `${NAME} glycaemia`);
  const byName = json(await server.inject({ method: 'GET', url: `/fhir/Practitioner?name=Publicus` }));
  t.equal(byName.entry[0].resource.id, practitioner.id);
});

t.test('Binary bytes are stored sealed chunk by chunk, and read back whole', async (t) => {
  const { rows } = await server.rawDb.query<{ key_id: string | null; bytes: string }>(`SELECT key_id::text AS key_id, encode(bytes, 'escape') AS bytes FROM binary_chunk`);
  t.ok(rows.length >= 1);
  t.ok(rows.every((row) => row.key_id !== null));
  t.notOk(rows.some((row) => row.bytes.includes(SECRET)));
  const raw = await server.inject({ method: 'GET', url: `/fhir/Binary/${binary.id}`, headers: { accept: 'text/plain' } });
  t.equal(raw.body, binaryBytes.toString());
  const asJson = json(await server.inject({ method: 'GET', url: `/fhir/Binary/${binary.id}`, headers: { accept: FHIR_JSON } }));
  t.equal(Buffer.from(asJson.data, 'base64').toString(), binaryBytes.toString());
  const bundle = json(await server.inject({ method: 'GET', url: `/fhir/Binary?_id=${binary.id}` }));
  t.equal(Buffer.from(bundle.entry[0].resource.data, 'base64').toString(), binaryBytes.toString());
});

t.test('another process with the same master key reads what was written (keys unwrapped from the table, not memory)', async (t) => {
  const store = SqlResourceStore.over(server.rawDb, { registry: new SearchParameterRegistry(loadSearchParameters()), dataKeys: testDataKeys() });
  t.equal(((await store.read('Patient', patient.id)).resource as any).name?.[0]?.family, NAME);
  t.equal((await store.read('Observation', observation.id)).resource.resourceType, 'Observation');
});

t.test('without the master key nothing opens', async (t) => {
  const wrong = new DataKeys(new LocalKeyWrapper(Buffer.alloc(32, 9)));
  const store = SqlResourceStore.over(server.rawDb, { registry: new SearchParameterRegistry(loadSearchParameters()), dataKeys: wrong });
  await t.rejects(store.read('Patient', patient.id), /master key/);
});

t.test('a transaction bundle creating a new patient and its records seals them all under the new key', async (t) => {
  const response = await postTransaction([
    { fullUrl: 'urn:uuid:6a3c1f7e-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', name: [{ family: 'Bundlewick' }] }, request: { method: 'POST', url: 'Patient' } },
    { resource: { resourceType: 'Observation', status: 'final', code: { text: 'bundled' }, subject: { reference: 'urn:uuid:6a3c1f7e-0000-4000-8000-000000000001' } }, request: { method: 'POST', url: 'Observation' } },
  ]);
  t.equal(response.statusCode, 200, response.body);
  const [patientEntry, observationEntry] = json(response).entry;
  const patientId = patientEntry.resource.id;
  const observationId = observationEntry.resource.id;
  const { rows } = await server.rawDb.query<{ content: string }>(`SELECT content FROM resource WHERE (resource_type, id) IN (('Patient', $1), ('Observation', $2))`, [patientId, observationId]);
  const { rows: keys } = await server.rawDb.query<{ key_id: string }>(`SELECT key_id::text AS key_id FROM data_key WHERE owner = $1`, [`Patient/${patientId}`]);
  t.equal(keys.length, 1);
  t.ok(rows.every((row) => row.content.startsWith(`$e1$${keys[0]!.key_id}$`)));
  const read = json(await server.inject({ method: 'GET', url: `/fhir/Observation/${observationId}` }));
  t.equal(read.code.text, 'bundled');
});

t.test('a transaction that rolls back leaves no key behind that later writes would seal with', async (t) => {
  const response = await postTransaction([
    { resource: { resourceType: 'Patient', id: 'rolled-back', name: [{ family: 'Gone' }] }, request: { method: 'PUT', url: 'Patient/rolled-back' } },
    { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } }, request: { method: 'PUT', url: 'Observation/x', ifMatch: 'W/"9"' } },
  ]);
  t.not(response.statusCode, 200);
  t.equal((await server.rawDb.query(`SELECT 1 FROM data_key WHERE owner = 'Patient/rolled-back'`)).rows.length, 0);
  const put = await server.inject({ method: 'PUT', url: '/fhir/Patient/rolled-back', payload: JSON.stringify({ resourceType: 'Patient', id: 'rolled-back', name: [{ family: 'Back' }] }), headers: { 'content-type': FHIR_JSON } });
  t.equal(put.statusCode, 201);
  const store = SqlResourceStore.over(server.rawDb, { registry: new SearchParameterRegistry(loadSearchParameters()), dataKeys: testDataKeys() });
  t.equal(((await store.read('Patient', 'rolled-back')).resource as any).name?.[0]?.family, 'Back');
});

t.test('npm run encrypt-existing seals what a store wrote in clear, AuditEvents and Binary bytes included', async (t) => {
  const database = await openTestDatabase();
  t.teardown(() => database.drop());
  await migrate(database.db);
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const clear = SqlResourceStore.over(database.db, { registry, indexWriter: new SearchIndexWriter(registry) });
  const old = await clear.create({ resourceType: 'Patient', name: [{ family: 'Legacyman' }], identifier: [{ system: 'urn:test:ins', value: 'LEGACY-INS-4410' }] } as Resource);
  await clear.update({ resourceType: 'Patient', id: old.id, name: [{ family: 'Legacyman' }], identifier: [{ system: 'urn:test:ins', value: 'LEGACY-INS-4410' }], gender: 'male' } as Resource & { id: string });
  const obs = await clear.create({ resourceType: 'Observation', status: 'final', code: { text: 'legacy' }, subject: { reference: `Patient/${old.id}` } } as Resource);
  const audit = await clear.create({ resourceType: 'AuditEvent', type: { code: 'rest' }, recorded: '2026-01-01T00:00:00Z', agent: [{ requestor: true }], source: { observer: { display: 'x' } }, entity: [{ what: { reference: `Patient/${old.id}` } }] } as Resource);
  const bin = await clear.create({ resourceType: 'Binary', contentType: 'text/plain', securityContext: { reference: `Patient/${old.id}` }, data: Buffer.from('Legacyman letter').toString('base64') } as Resource);
  const keys = testDataKeys();
  const counts = await encryptExisting(database.db, keys, registry);
  t.equal(counts.versions, 9, 'four current rows, five history rows');
  t.equal(counts.chunks, 1);
  t.equal(counts.identifierRows, 1, 'the patient\'s identifier row, hashed under a new index key');
  const { rows: tokens } = await database.db.query<{ code: string }>(`SELECT code FROM search_token WHERE param = 'identifier'`);
  t.same(tokens.map((row) => row.code), [keys.hashIdentifier('LEGACY-INS-4410')]);
  const { rows } = await database.db.query<{ content: string }>(`SELECT content FROM resource UNION ALL SELECT content FROM resource_history`);
  t.ok(rows.every((row) => row.content.startsWith('$e1$')));
  const { rows: chunks } = await database.db.query<{ key_id: string | null; bytes: string }>(`SELECT key_id::text AS key_id, encode(bytes, 'escape') AS bytes FROM binary_chunk`);
  t.ok(chunks.every((chunk) => chunk.key_id !== null && !chunk.bytes.includes('Legacyman')));
  const { rows: owners } = await database.db.query<{ owner: string }>('SELECT DISTINCT owner FROM data_key');
  t.same(owners.map((row) => row.owner).sort(), [`Patient/${old.id}`, INDEX_KEY_OWNER].sort(), 'the AuditEvent and the Binary are the patient\'s; and the index key');
  const sealed = SqlResourceStore.over(database.db, { registry, dataKeys: testDataKeys() });
  await sealed.migrate();
  const found = await sealed.search(parseSearch(['Patient'], [['identifier', 'urn:test:ins|LEGACY-INS-4410']], registry, { strict: true, baseUrl: '' }), { baseUrl: '', path: 'Patient' });
  t.same(found.entry?.map((entry) => (entry.resource as unknown as Resource).id), [old.id], 'found by its identifier');
  t.equal(((await sealed.read('Patient', old.id)).resource as any).gender, 'male');
  t.equal(((await sealed.vread('Patient', old.id, 1)).resource as any).name[0].family, 'Legacyman');
  t.equal(((await sealed.read('Observation', obs.id)).resource as any).code.text, 'legacy');
  t.equal((await sealed.read('AuditEvent', audit.id)).resource.resourceType, 'AuditEvent');
  t.equal(Buffer.from(((await sealed.read('Binary', bin.id)).resource as any).data, 'base64').toString(), 'Legacyman letter');
});

t.test('npm run rotate-master-key rewraps the data keys and leaves the data as it was', async (t) => {
  const before = await server.rawDb.query<{ content: string }>('SELECT content FROM resource ORDER BY resource_type, id');
  const next = new LocalKeyWrapper(Buffer.alloc(32, 42));
  const { rows: keyRows } = await server.rawDb.query<{ n: number }>('SELECT count(*)::int AS n FROM data_key');
  t.equal(await rewrapDataKeys(server.rawDb, server.dataKeys.wrapper, next), keyRows[0]!.n);
  t.equal(await rewrapDataKeys(server.rawDb, server.dataKeys.wrapper, next), 0, 'a second run has nothing left to do');
  const after = await server.rawDb.query<{ content: string }>('SELECT content FROM resource ORDER BY resource_type, id');
  t.same(after.rows, before.rows, 'no content re-encrypted');
  const { rows } = await server.rawDb.query<{ master_key_id: string }>('SELECT DISTINCT master_key_id FROM data_key');
  t.same(rows.map((row) => row.master_key_id), [next.currentKeyId]);
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const rotated = SqlResourceStore.over(server.rawDb, { registry, dataKeys: new DataKeys(next) });
  t.equal(((await rotated.read('Patient', patient.id)).resource as any).name[0].family, NAME);
  // The index key was rewrapped with the data keys: a server started with the new master key finds identifiers as before.
  await rotated.migrate();
  const byIdentifier = await rotated.search(parseSearch(['Patient'], [['identifier', `urn:test:ins|${SECRET}`]], registry, { strict: true, baseUrl: '' }), { baseUrl: '', path: 'Patient' });
  t.same(byIdentifier.entry?.map((entry) => (entry.resource as unknown as Resource).id), [patient.id], 'identifier search after rotation');
  const stale = SqlResourceStore.over(server.rawDb, { registry, dataKeys: testDataKeys() });
  await t.rejects(stale.read('Patient', patient.id), /master key/, 'the old master key no longer opens anything');
  const both = SqlResourceStore.over(server.rawDb, { registry, dataKeys: new DataKeys(new LocalKeyWrapper(Buffer.alloc(32, 42), [Buffer.from(TEST_MASTER_KEY, 'base64')])) });
  t.equal(((await both.read('Observation', observation.id)).resource as any).code.text, `${NAME} glycaemia`);
});

t.test('without a configured master key: an embedded store generates one beside its data, PostgreSQL refuses to start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dossier-key-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const warnings: string[] = [];
  const first = dataKeysFor({ mode: 'on' }, join(dir, 'pglite'), (message) => warnings.push(message));
  const file = generatedMasterKeyFile(join(dir, 'pglite'));
  t.equal(file, join(dir, 'pglite.master-key'), 'beside the data directory, not in it');
  t.equal((statSync(file).mode & 0o777).toString(8), '600');
  t.match(warnings[0], /generated .*pglite\.master-key/);
  const again = dataKeysFor({ mode: 'on' }, join(dir, 'pglite'), (message) => warnings.push(message));
  t.equal(again!.wrapper.currentKeyId, first!.wrapper.currentKeyId, 'the next start uses the same key');
  t.throws(() => dataKeysFor({ mode: 'on' }, 'postgres://db/dossier', () => {}), /FHIR_MASTER_KEY/);
  t.equal(dataKeysFor({ mode: 'off' }, 'postgres://db/dossier', () => {}), undefined, 'FHIR_ENCRYPTION=off');
  t.equal(dataKeysFor({ mode: 'on', masterKey: TEST_MASTER_KEY }, 'postgres://db/dossier', () => {})!.wrapper.currentKeyId, testDataKeys().wrapper.currentKeyId);
  t.throws(() => dataKeysFor({ mode: 'on', masterKey: 'c2hvcnQ=' }, 'memory://', () => {}), /32 bytes/);
});
