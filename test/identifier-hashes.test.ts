// Identifiers in the search index (issue 18: keep in clear only what search needs): with encryption at rest the
// index holds an INS, an IPP or an RPPS number as a keyed hash under the store's index key, and every search
// form that compares one hashes the value it is given, so that clients search exactly as before.
import t from 'tap';
import type { Resource } from 'fhir/r4';
import { extractIndexRows } from '../src/search/extract.ts';
import { reachesOnlyIdentifiers } from '../src/search/identifier-elements.ts';
import { parseSearch } from '../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';
import type { Database } from '../src/store/database.ts';
import { identifierHashUnder, openingDatabase } from '../src/store/encryption.ts';
import { INDEX_KEY_OWNER, prepareIndexKey } from '../src/store/index-key.ts';
import { reindex } from '../src/store/reindex.ts';
import { SearchIndexWriter } from '../src/store/index-writer.ts';
import { migrate } from '../src/store/migrate.ts';
import type { ServerStore } from '../src/store/resource-store.ts';
import { SqlResourceStore } from '../src/store/sql-resource-store.ts';
import { sqlStorage } from '../src/store/storage.ts';
import { DEFAULT_MAX_INDEX_ROWS } from '../src/store/index-writer.ts';
import { DEFAULT_BINARY_INLINE_LIMIT } from '../src/store/binary-store.ts';
import { FHIR_JSON, json, openTestDatabase, startTestServer, testDataKeys } from './helpers/app.ts';

const INS = 'urn:oid:1.2.250.1.213.1.4.8';
const IPP = 'urn:oid:1.2.250.1.71.4.2.7.99';
const RPPS = 'urn:oid:1.2.250.1.71.4.2.1';
const LAB = 'urn:test:lab-order';
const TYPE_SYSTEM = 'https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203';
const NIR_A = '279035121518989';
const NIR_B = '184127645108946';
const NIR_D = '290057501234518';
const IPP_A = 'IPP-77340051';
const LOCAL_B = 'LOCAL-90417';
const RPPS_VALUE = '810003381299';
const ORDER = 'ORD-5521-7730';
const MASTER = 'urn:oid:1.2.250.1.999.42.70016';
const DOC_ID = 'DOCID-55731';
const CLEAR_VALUES = [NIR_A, NIR_B, NIR_D, IPP_A, LOCAL_B, RPPS_VALUE, ORDER, MASTER, DOC_ID];
const INDEX_TABLES = ['token', 'string', 'date', 'reference', 'uri', 'number', 'quantity', 'composite'];

const registry = new SearchParameterRegistry(loadSearchParameters());
const storeSettings = { registry, maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT };

/** The clear values `values` that some index row holds, read as the database stores them. */
async function clearInIndex(db: Database, values: string[]): Promise<string[]> {
  const found = new Set<string>();
  for (const table of INDEX_TABLES) {
    const { rows } = await db.query<{ row: string }>(`SELECT t::text AS row FROM search_${table} t`);
    for (const value of values) if (rows.some((row) => row.row.includes(value))) found.add(value);
  }
  return [...found].sort();
}

/** The ids a store's search finds, as the router would parse it. */
async function storeSearch(store: ServerStore, type: string, query: string): Promise<string[]> {
  const bundle = await store.search(parseSearch([type], [...new URLSearchParams(query)], registry, { strict: true, baseUrl: 'http://localhost/fhir' }), { baseUrl: 'http://localhost/fhir', path: type });
  return (bundle.entry ?? []).map((entry) => (entry.resource as unknown as { id: string }).id).sort();
}

const insPatient = (nir: string, more: Record<string, unknown> = {}) => ({
  resourceType: 'Patient',
  identifier: [{ system: INS, value: nir, type: { coding: [{ system: TYPE_SYSTEM, code: 'INS-NIR' }], text: 'NIR définitif' } }],
  ...more,
});

t.test('the parameters on identifiers: every served token parameter reaching an Identifier reaches nothing else', async (t) => {
  for (const [type, code] of [['Patient', 'identifier'], ['Practitioner', 'identifier'], ['DocumentReference', 'identifier'], ['Composition', 'related-id'], ['Specimen', 'accession'], ['Task', 'group-identifier']]) {
    t.equal(registry.get(type!, code!)?.identifier, true, `${type}.${code} is hashed`);
  }
  for (const [type, code] of [['Patient', 'gender'], ['Patient', 'telecom'], ['Observation', 'code'], ['Patient', '_tag'], ['DocumentReference', 'type']]) {
    t.notOk(registry.get(type!, code!)?.identifier, `${type}.${code} stays in clear`);
  }
  const mixed: string[] = [];
  const flagged: string[] = [];
  for (const type of SERVED_RESOURCE_TYPES) {
    for (const param of registry.forType(type)) {
      if (param.type !== 'token' || !param.expression) continue;
      if (param.identifier) flagged.push(`${type}/${param.code}`);
      const parts = param.expression.split(' | ');
      if (!param.identifier && parts.some((part) => reachesOnlyIdentifiers(part))) mixed.push(`${type}.${param.code}`);
    }
  }
  t.same(mixed, [], 'none mixes identifiers with other types (its identifiers would stay in clear)');
  t.same(registry.identifierParams().map(([type, code]) => `${type}/${code}`).sort(), flagged.sort(), 'the rows a store hashes are those of the flagged parameters');
  t.ok(flagged.length > 100);
});

t.test('the hash: 128 bits of HMAC-SHA-256 in base64url, the same under one key, another under another', async (t) => {
  const hash = identifierHashUnder(Buffer.alloc(32, 1));
  t.match(hash(NIR_A), /^[A-Za-z0-9_-]{22}$/);
  t.equal(hash(NIR_A), hash(NIR_A));
  t.not(hash(NIR_A), hash(NIR_B));
  t.not(identifierHashUnder(Buffer.alloc(32, 2))(NIR_A), hash(NIR_A));
  const rows = extractIndexRows(
    { resourceType: 'Observation', status: 'final', code: { text: 'x' }, identifier: [{ system: LAB, value: ORDER }], performer: [{ identifier: { system: RPPS, value: RPPS_VALUE } }] } as Resource,
    registry,
    { identifierHash: hash },
  );
  t.same(rows.token.find((row) => row.param === 'identifier'), { param: 'identifier', system: LAB, code: hash(ORDER), text: null });
  t.match(rows.reference.find((row) => row.param === 'performer'), { identifierSystem: RPPS, identifierValue: hash(RPPS_VALUE) });
  t.equal(extractIndexRows({ resourceType: 'Patient', identifier: [{ value: NIR_A }] } as Resource, registry).token.find((row) => row.param === 'identifier')?.code, NIR_A, 'without a hash, in clear');
});

t.test('an encrypting server', async (t) => {
  const server = await startTestServer(t);
  const send = async (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) =>
    server.inject({ method: method as 'GET', url, ...(body ? { payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } } : { headers }) });
  const create = async (body: Record<string, unknown>) => {
    const response = await send('POST', `/fhir/${body.resourceType as string}`, body);
    if (response.statusCode !== 201) throw new Error(`${body.resourceType as string}: ${response.body}`);
    return json(response).id as string;
  };
  const ids = async (url: string, token?: string) => {
    const response = await send('GET', url, undefined, token ? { authorization: `Bearer ${token}` } : {});
    if (response.statusCode !== 200) throw new Error(`${url}: ${response.statusCode} ${response.body}`);
    return ((json(response).entry ?? []) as Array<{ resource: { id: string }; search?: { mode: string } }>).filter((e) => e.search?.mode !== 'outcome').map((e) => e.resource.id).sort();
  };
  const q = encodeURIComponent;

  const a = await create(insPatient(NIR_A, { name: [{ family: 'Hashmann' }], identifier: [...insPatient(NIR_A).identifier, { system: IPP, value: IPP_A }] }));
  const b = await create({ resourceType: 'Patient', identifier: [{ system: INS, value: NIR_B }, { value: LOCAL_B }] });
  const c = await create({ resourceType: 'Patient', name: [{ family: 'Sansnumero' }] });
  const practitioner = await create({ resourceType: 'Practitioner', identifier: [{ system: RPPS, value: RPPS_VALUE }] });
  const observation = await create({
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'glycémie' },
    identifier: [{ system: LAB, value: ORDER }],
    subject: { reference: `Patient/${a}` },
    performer: [{ identifier: { system: RPPS, value: RPPS_VALUE } }],
  });
  const document = await create({
    resourceType: 'DocumentReference',
    status: 'current',
    masterIdentifier: { system: 'urn:ietf:rfc:3986', value: MASTER },
    identifier: [{ value: DOC_ID }],
    subject: { reference: `Patient/${a}` },
    content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('compte rendu').toString('base64') } }],
  });
  const sorted = (...list: string[]) => [...list].sort();

  t.test('the index holds no identifier value in clear: hashes, with the systems in clear', async (t) => {
    t.same(await clearInIndex(server.rawDb, CLEAR_VALUES), []);
    const { rows } = await server.rawDb.query<{ system: string; code: string }>(`SELECT system, code FROM search_token WHERE resource_type = 'Patient' AND param = 'identifier' AND resource_id = $1 `, [a]);
    t.same(rows.map((row) => row.system).sort(), [INS, IPP].sort());
    t.ok(rows.every((row) => /^[A-Za-z0-9_-]{22}$/.test(row.code)));
    const { rows: reference } = await server.rawDb.query<{ identifier_system: string; identifier_value: string }>(`SELECT identifier_system, identifier_value FROM search_reference WHERE resource_id = $1 AND param = 'performer'`, [observation]);
    t.equal(reference[0]!.identifier_system, RPPS);
    t.equal(reference[0]!.identifier_value, server.dataKeys.hashIdentifier(RPPS_VALUE));
    const { rows: keys } = await server.rawDb.query(`SELECT 1 FROM data_key WHERE owner = $1`, [INDEX_KEY_OWNER]);
    t.equal(keys.length, 1, 'one index key, in data_key beside the data keys');
  });

  t.test('every token form finds what it found in clear', async (t) => {
    t.same(await ids(`/fhir/Patient?identifier=${NIR_A}`), [a], 'value');
    t.same(await ids(`/fhir/Patient?identifier=${q(`${INS}|${NIR_A}`)}`), [a], 'system|value');
    t.same(await ids(`/fhir/Patient?identifier=${q(`${IPP}|${IPP_A}`)}`), [a], 'another identifier of the same patient');
    t.same(await ids(`/fhir/Patient?identifier=${q(`${INS}|`)}`), sorted(a, b), 'system|: any value of that system');
    t.same(await ids(`/fhir/Patient?identifier=${q(`|${LOCAL_B}`)}`), [b], '|value: an identifier without system');
    t.same(await ids(`/fhir/Patient?identifier=${q(`|${NIR_A}`)}`), [], '|value does not match an identifier that has a system');
    t.same(await ids(`/fhir/Patient?identifier=${q(`${RPPS}|${NIR_A}`)}`), [], 'nor system|value with another system');
    t.same(await ids(`/fhir/Patient?identifier=${q(`${NIR_A},${NIR_B}`)}`), sorted(a, b), 'either of two values');
    t.same(await ids(`/fhir/Patient?identifier:of-type=${q(`${TYPE_SYSTEM}|INS-NIR|${NIR_A}`)}`), [a], ':of-type');
    t.same(await ids(`/fhir/Patient?identifier:of-type=${q(`${TYPE_SYSTEM}|INS-NIR|${NIR_B}`)}`), [], ':of-type: B has no typed identifier');
    t.same(await ids(`/fhir/Patient?identifier:not=${q(`${INS}|${NIR_A}`)}`), sorted(b, c), ':not');
    t.same(await ids('/fhir/Patient?identifier:missing=true'), [c], ':missing=true');
    t.same(await ids('/fhir/Patient?identifier:missing=false'), sorted(a, b), ':missing=false');
    t.same(await ids('/fhir/Patient?identifier:text=nir'), [a], ':text on the type text, normalised, in clear');
    t.same(await ids(`/fhir/Practitioner?identifier=${q(`${RPPS}|${RPPS_VALUE}`)}`), [practitioner], 'an RPPS');
    t.same(await ids(`/fhir/DocumentReference?identifier=${q(`urn:ietf:rfc:3986|${MASTER}`)}`), [document], 'masterIdentifier');
    t.same(await ids(`/fhir/DocumentReference?identifier=${DOC_ID}`), [document], 'identifier');
    t.same(await ids(`/fhir/Observation?identifier=${q(`${LAB}|${ORDER}`)}`), [observation]);
    t.equal((await send('GET', '/fhir/Patient?_sort=identifier')).statusCode, 200, 'a sort on identifiers still answers (in the order of their hashes)');
  });

  t.test('references by identifier, chains and _has hash the value they compare', async (t) => {
    t.same(await ids(`/fhir/Observation?performer:identifier=${q(`${RPPS}|${RPPS_VALUE}`)}`), [observation], ':identifier, system|value');
    t.same(await ids(`/fhir/Observation?performer:identifier=${RPPS_VALUE}`), [observation], ':identifier, value');
    t.same(await ids(`/fhir/Observation?performer:identifier=${q(`${INS}|${RPPS_VALUE}`)}`), [], ':identifier, another system');
    t.same(await ids(`/fhir/Observation?subject:Patient.identifier=${q(`${INS}|${NIR_A}`)}`), [observation], 'chain with a type');
    t.same(await ids(`/fhir/DocumentReference?patient.identifier=${NIR_A}`), [document], 'chain');
    t.same(await ids(`/fhir/Observation?subject:Patient.identifier=${NIR_B}`), [], 'chain to another patient');
    t.same(await ids(`/fhir/Patient?_has:Observation:subject:identifier=${q(`${LAB}|${ORDER}`)}`), [a], '_has');
    t.same(await ids(`/fhir/Patient?_has:DocumentReference:subject:identifier=${q(`urn:ietf:rfc:3986|${MASTER}`)}`), [a], '_has on a masterIdentifier');
  });

  t.test('$summary and $everything find the patient by its INS and its record', async (t) => {
    const summary = await send('GET', `/fhir/Patient/$summary?identifier=${q(`${INS}|${NIR_A}`)}`);
    t.equal(summary.statusCode, 200, summary.body);
    t.ok(json(summary).entry.some((entry: { resource: { resourceType: string; id: string } }) => entry.resource.resourceType === 'Patient' && entry.resource.id === a));
    t.equal((await send('GET', `/fhir/Patient/$summary?identifier=${q(`${INS}|000000000000000`)}`)).statusCode, 404);
    t.same(await ids(`/fhir/Patient/${a}/$everything`), sorted(a, observation, document));
  });

  t.test('conditional create, update and delete on ?identifier= match the hashed rows', async (t) => {
    const again = await send('POST', '/fhir/Patient', insPatient(NIR_A), { 'if-none-exist': `identifier=${INS}|${NIR_A}` });
    t.equal(again.statusCode, 200, 'If-None-Exist finds the patient: nothing created');
    t.equal(json(again).id, a);
    const updated = await send('PUT', `/fhir/Patient?identifier=${q(`${INS}|${NIR_B}`)}`, { resourceType: 'Patient', identifier: [{ system: INS, value: NIR_B }], name: [{ family: 'Updated' }] });
    t.equal(updated.statusCode, 200, updated.body);
    t.equal(json(updated).id, b);
    const d = await create(insPatient(NIR_D));
    const deleted = await send('DELETE', `/fhir/Patient?identifier=${q(`${INS}|${NIR_D}`)}`);
    t.ok([200, 204].includes(deleted.statusCode), deleted.body);
    t.equal((await send('GET', `/fhir/Patient/${d}`)).statusCode, 410);
    t.same(await ids(`/fhir/Patient?identifier=${NIR_B}`), [b], 'the updated patient is found by its identifier');
    t.same(await clearInIndex(server.rawDb, CLEAR_VALUES), [], 'still nothing in clear');
  });

  t.test('a transaction resolves a conditional reference by identifier', async (t) => {
    const response = await send('POST', '/fhir', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: { resourceType: 'Observation', status: 'final', code: { text: 'conditional' }, subject: { reference: `Patient?identifier=${INS}|${NIR_A}` } }, request: { method: 'POST', url: 'Observation' } }],
    });
    t.equal(response.statusCode, 200, response.body);
    const created = /Observation\/([^/]+)/.exec(json(response).entry[0].response.location)![1];
    const read = json(await send('GET', `/fhir/Observation/${created}`));
    t.equal(read.subject.reference, `Patient/${a}`);
  });

  t.test('a search-restricted scope on an identifier sees that patient only, and lets a client create a matching one', async (t) => {
    const token = await server.token({ scope: `user/Patient.crs?identifier=${q(`${INS}|${NIR_A}`)}` });
    t.same(await ids('/fhir/Patient', token), [a]);
    t.equal((await send('GET', `/fhir/Patient/${b}`, undefined, { authorization: `Bearer ${token}` })).statusCode, 404);
    const writer = await server.token({ scope: `user/Patient.crs?identifier=${q(`${IPP}|IPP-NEW-1`)}` });
    const created = await send('POST', '/fhir/Patient', { resourceType: 'Patient', identifier: [{ system: IPP, value: 'IPP-NEW-1' }] }, { authorization: `Bearer ${writer}` });
    t.equal(created.statusCode, 201, 'decided in memory on the clear rows it will have');
    t.same(await ids('/fhir/Patient', writer), [json(created).id], 'and seen through the hashed rows it has');
    const refused = await send('POST', '/fhir/Patient', { resourceType: 'Patient', identifier: [{ system: IPP, value: 'IPP-OTHER' }] }, { authorization: `Bearer ${writer}` });
    t.equal(refused.statusCode, 403);
    t.equal(json(refused).resourceType, 'OperationOutcome');
  });
});

t.test('with FHIR_ENCRYPTION=off identifiers stay in clear, and are found', async (t) => {
  const database = await openTestDatabase();
  t.teardown(() => database.drop());
  const store = await sqlStorage(database.db).open(storeSettings);
  await store.migrate();
  const created = await store.create(insPatient(NIR_A) as Resource);
  t.same(await clearInIndex(database.db, [NIR_A]), [NIR_A]);
  t.same(await storeSearch(store, 'Patient', `identifier=${INS}|${NIR_A}`), [created.id]);
  t.same(await storeSearch(store, 'Patient', `identifier:of-type=${TYPE_SYSTEM}|INS-NIR|${NIR_A}`), [created.id]);
  t.equal((await database.db.query('SELECT 1 FROM data_key WHERE owner = $1', [INDEX_KEY_OWNER])).rows.length, 0, 'no index key');
});

t.test('a store written with encryption at rest does not start without it (its identifiers would never be found)', async (t) => {
  const database = await openTestDatabase();
  t.teardown(() => database.drop());
  const encrypting = await sqlStorage(database.db, testDataKeys()).open(storeSettings);
  await encrypting.migrate();
  await encrypting.create(insPatient(NIR_A) as Resource);
  const clear = await sqlStorage(database.db).open(storeSettings);
  await t.rejects(clear.migrate(), /written with encryption at rest.*FHIR_ENCRYPTION=on/);
  t.same(await clearInIndex(database.db, [NIR_A]), [], 'nothing rewritten in clear');
});

t.test('an encrypted store whose index holds identifiers in clear (written before this version) hashes them as it starts, once', async (t) => {
  const database = await openTestDatabase();
  t.teardown(() => database.drop());
  await migrate(database.db);
  // As a store written before index keys: content sealed, identifiers indexed in clear, no index key.
  const before = SqlResourceStore.over(database.db, { registry, indexWriter: new SearchIndexWriter(registry), dataKeys: testDataKeys() });
  const patient = await before.create(insPatient(NIR_A) as Resource);
  const observation = await before.create({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${patient.id}` }, performer: [{ identifier: { system: RPPS, value: RPPS_VALUE } }] } as Resource);
  t.same(await clearInIndex(database.db, [NIR_A, RPPS_VALUE]), [NIR_A, RPPS_VALUE].sort());

  const keys = testDataKeys();
  const started = await sqlStorage(database.db, keys).open(storeSettings);
  await started.migrate();
  t.same(await clearInIndex(database.db, [NIR_A, RPPS_VALUE]), [], 'hashed at start');
  const check = async (store: ServerStore, what: string) => {
    t.same(await storeSearch(store, 'Patient', `identifier=${INS}|${NIR_A}`), [patient.id], `${what}: identifier`);
    t.same(await storeSearch(store, 'Patient', `identifier:of-type=${TYPE_SYSTEM}|INS-NIR|${NIR_A}`), [patient.id], `${what}: :of-type`);
    t.same(await storeSearch(store, 'Observation', `performer:identifier=${RPPS}|${RPPS_VALUE}`), [observation.id], `${what}: :identifier`);
  };
  await check(started, 'the store that hashed them');

  const rows = async () => (await database.db.query<{ row: string }>(`SELECT t::text AS row FROM search_token t WHERE param = 'identifier' ORDER BY 1`)).rows;
  const hashed = await rows();
  const next = await sqlStorage(database.db, testDataKeys()).open(storeSettings);
  await next.migrate();
  t.same(await rows(), hashed, 'the next start hashes nothing again');
  await check(next, 'another process');
  const later = await next.create(insPatient(NIR_B) as Resource);
  t.same(await storeSearch(started, 'Patient', `identifier=${NIR_B}`), [later.id], 'what one process writes another finds: one key');

  // `npm run reindex` on an encrypting store: the index key loaded as a server loads it, rows rewritten hashed.
  const keys2 = testDataKeys();
  await prepareIndexKey(database.db, keys2, registry);
  t.equal(await reindex(openingDatabase(database.db, keys2), new SearchIndexWriter(registry, Infinity, keys2.hashIdentifier), ['Patient', 'Observation']), 3);
  t.same(await clearInIndex(database.db, [NIR_A, NIR_B, RPPS_VALUE]), [], 'reindexed hashed');
  await check(next, 'after a reindex');
});
