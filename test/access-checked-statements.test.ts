// The statements an access-checked read runs (issue 17 item 7, issue 18 item 5): what they cost depends on
// how PostgreSQL plans them, so these tests pin the shapes that keep them cheap, beside tests showing that
// what the caller sees is unchanged.
import t from 'tap';
import type { Resource } from 'fhir/r4';
import { FhirError } from '../src/fhir/outcome.ts';
import { parseSearch } from '../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { accessFromToken, withAssertedPurpose } from '../src/security/authorisation.ts';
import { accessScope } from '../src/store/access-scope.ts';
import { ALL_ACCESS, type AccessContext } from '../src/store/access.ts';
import { DEFAULT_BINARY_INLINE_LIMIT } from '../src/store/binary-store.ts';
import { VISIBILITY_SYSTEM } from '../src/store/consent-rows.ts';
import { joinTransaction, type Database } from '../src/store/database.ts';
import { DEFAULT_MAX_INDEX_ROWS } from '../src/store/index-writer.ts';
import { preparedName } from '../src/store/prepared-name.ts';
import { Repository } from '../src/store/repository.ts';
import { sqlStorage } from '../src/store/storage.ts';
import { buildApp } from '../src/app.ts';
import { bearer, json, openTestDatabase, TEST_AUDIENCE } from './helpers/app.ts';

const registry = new SearchParameterRegistry(loadSearchParameters());
const database = await openTestDatabase();
t.teardown(() => database.drop());
await sqlStorage(database.db).open({ registry, maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT }).then((store) => store.migrate());

/** `db`, keeping the text and name of every statement it runs. */
function recording(db: Database) {
  const statements: Array<{ sql: string; name: string | undefined }> = [];
  const recorded: Database = { ...db, query: (sql, params, name) => (statements.push({ sql, name }), db.query(sql, params, name)) };
  return { db: recorded, statements };
}

const open = (db: Database) => sqlStorage(db).open({ registry, maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT });
const store = await open(database.db);
for (const x of ['a', 'b', 'c']) {
  await store.update({ resourceType: 'Patient', id: `pat-${x}`, name: [{ family: x }] } as Resource & { id: string });
  await store.update({ resourceType: 'Immunization', id: `imm-${x}`, status: 'completed', patient: { reference: `Patient/pat-${x}` }, occurrenceDateTime: '2024-01-02',
    vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '140' }] },
    // C's immunization is masked from professionals (MASQUE_PS) who did not write it.
    ...(x === 'c' ? { meta: { security: [{ system: VISIBILITY_SYSTEM, code: 'MASQUE_PS' }] } } : {}) } as Resource & { id: string });
}

const hiding = (id: string): AccessContext => ({ ...ALL_ACCESS, hiddenCompartments: [{ type: 'Patient', id }] });
const professional = accessFromToken({ scopes: ['user/*.rs'], fhirUser: 'Practitioner/pro', clientId: 'app', purposeOfUse: [] });
const status = (promise: Promise<unknown>) => promise.then(() => 200, (error: unknown) => (error instanceof FhirError ? error.status : error));

t.test('a scoped read and vread run as statements prepared under the name of their text, the same for every id', async (t) => {
  const { db, statements } = recording(database.db);
  const bound = (await open(db)).forAccess(hiding('pat-b'));
  t.equal((await bound.read('Immunization', 'imm-a')).id, 'imm-a');
  t.equal((await bound.read('Immunization', 'imm-c')).id, 'imm-c');
  t.equal(await status(bound.read('Immunization', 'imm-b')), 404, 'what the access hides still reads as unknown');
  t.equal((await bound.vread('Immunization', 'imm-a', 1)).id, 'imm-a');
  t.equal(await status(bound.vread('Immunization', 'imm-b', 1)), 404);
  const [read, ...otherReads] = statements.slice(0, 3);
  t.ok(read!.name?.startsWith('dossier_'), 'named');
  t.equal(read!.name, preparedName(read!.sql), 'by the hash of its text');
  t.same(otherReads.map((s) => s.name), [read!.name, read!.name], 'other ids, hidden or not: the same statement');
  const [vread, hiddenVread] = statements.slice(3);
  t.equal(vread!.name, preparedName(vread!.sql));
  t.equal(hiddenVread!.name, vread!.name);
  t.not(vread!.name, read!.name);

  const other = (await open(db)).forAccess(professional);
  const before = statements.length;
  t.equal((await other.read('Immunization', 'imm-b')).id, 'imm-b');
  t.not(statements[before]!.name, read!.name, 'another shape of access, another text and name');
  t.equal(statements[before]!.name, preparedName(statements[before]!.sql));
});

t.test('the consent-checked read of a professional is prepared too, and sees what it saw', async (t) => {
  const { db, statements } = recording(database.db);
  const bound = (await open(db)).forAccess(professional);
  t.equal((await bound.read('Patient', 'pat-a')).id, 'pat-a');
  t.equal((await bound.vread('Patient', 'pat-a', 1)).id, 'pat-a');
  t.ok(statements.every((s) => s.name === preparedName(s.sql)));
});

t.test('a token\'s view of the store is built once for all its requests; another access context has its own, and sees as it should', async (t) => {
  const root = await open(database.db);
  const feed = accessFromToken({ scopes: ['system/*.cruds'], clientId: 'feed', purposeOfUse: [] });
  t.equal(root.forAccess(feed), root.forAccess(feed), 'the same context: the same view');
  t.not(root.forAccess(accessFromToken({ scopes: ['system/*.cruds'], clientId: 'feed', purposeOfUse: [] })), root.forAccess(feed), 'another token: another view');
  const emergency = withAssertedPurpose(professional, 'BTG');
  t.not(root.forAccess(emergency), root.forAccess(professional));
  t.equal(await status(root.forAccess(professional).read('Immunization', 'imm-c')), 404, 'masked from the professional');
  t.equal(await status(root.forAccess(emergency).read('Immunization', 'imm-c')), 200, 'seen in an emergency');
  t.equal(await status(root.forAccess(professional).read('Immunization', 'imm-c')), 404, 'and masked again without one');
});

t.test('on the driver: the statement is prepared on the connection under that name', async (t) => {
  const scope = accessScope(hiding('pat-b'), registry);
  await database.db.transaction(async (tx) => {
    const { db, statements } = recording(joinTransaction(tx, database.db.driver));
    const repo = new Repository(db, undefined, undefined, DEFAULT_BINARY_INLINE_LIMIT, scope);
    t.equal((await repo.read('Immunization', 'imm-a')).id, 'imm-a');
    t.equal(await status(repo.read('Immunization', 'imm-b')), 404);
    const { rows } = await tx.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements WHERE name = $1', [statements[0]!.name]);
    t.same(rows.map((row) => row.statement), [statements[0]!.sql], 'prepared once on this connection, under the name of its text');
  });
});

t.test('a restricted _has filters its sources on their index rows and fences its counting page; what it finds is unchanged', async (t) => {
  const { db, statements } = recording(database.db);
  const viewOf = async (access: AccessContext) => (await open(db)).forAccess(access);
  const patientsHaving = async (access: AccessContext) => {
    const request = parseSearch(['Patient'], [['_has:Immunization:patient:vaccine-code', 'http://hl7.org/fhir/sid/cvx|140']], registry, { strict: true, baseUrl: 'http://x/fhir' });
    const bundle = await (await viewOf(access)).search(request, { baseUrl: 'http://x/fhir', path: 'Patient' });
    return { ids: (bundle.entry ?? []).map((entry) => entry.resource!.id).sort(), total: bundle.total };
  };
  t.same(await patientsHaving(ALL_ACCESS), { ids: ['pat-a', 'pat-b', 'pat-c'], total: 3 });
  const allAccess = statements.splice(0);
  t.same(await patientsHaving(professional), { ids: ['pat-a', 'pat-b'], total: 2 }, 'a masked source counts for nothing');
  const restricted = statements.splice(0);
  t.same(await patientsHaving(hiding('pat-b')), { ids: ['pat-a', 'pat-c'], total: 2 }, 'a hidden source and its patient count for nothing');
  const hidingB = statements.splice(0);

  const sources = (run: typeof statements) => run.find((s) => s.sql.includes('string_agg'))!.sql;
  for (const [name, run] of [['consent', restricted], ['hidden compartment', hidingB]] as const) {
    t.match(sources(run), /SELECT h1\.patient_id AS target_id FROM search_token h1 WHERE/, `${name}: the sources read their patient off the index rows, as with all access`);
    t.notMatch(sources(run), /JOIN resource/, `${name}: no source's resource row is read`);
    const page = run[run.length - 1]!.sql;
    t.match(page, /FROM \(SELECT \* FROM resource r WHERE .* OFFSET 0\) r WHERE/, `${name}: the counting page finds its ids behind a fence, then checks the access`);
  }
  t.notMatch(allAccess[allAccess.length - 1]!.sql, /OFFSET 0/, 'all access: the page statement it always ran');
});

t.test('a request resolves its caller\'s identities once, after authorisation, and its statements bind them instead of looking them up', async (t) => {
  const { db, statements } = recording(database.db);
  const app = await buildApp({ config: { logLevel: 'silent', bodyLimit: 1024 * 1024, authAudience: TEST_AUDIENCE, rateLimit: 0 }, storage: sqlStorage(db), validator: { validate: () => [] }, accessOf: () => professional });
  t.teardown(() => app.close());
  const authorization = await bearer(database.db);
  const get = async (url: string) => json(await app.inject({ method: 'GET', url, headers: { authorization } }));
  const lookups = () => statements.filter((s) => /AS opposable/.test(s.sql)).length;
  // The access-checked reads: those the consent is in (not the writes of the audit trail).
  const subPlans = () => statements.filter((s) => /consent_rule/.test(s.sql) && !/INSERT/.test(s.sql) && /ARRAY\(SELECT/.test(s.sql)).length;

  statements.splice(0);
  const found = await get('/fhir/Patient?_has:Immunization:patient:vaccine-code=http://hl7.org/fhir/sid/cvx|140');
  t.same(found.entry.map((entry: { resource: { id: string } }) => entry.resource.id).sort(), ['pat-a', 'pat-b'], 'what the professional sees: C\'s masked immunization counts for nothing');
  t.equal(lookups(), 1, 'one lookup of the caller for the request');
  t.equal(subPlans(), 0, 'no statement looks the caller up again');
  t.ok(statements.some((s) => /consent_rule/.test(s.sql)), 'the consent is still in the statements');
  t.equal((await get('/fhir/Immunization/imm-a')).id, 'imm-a');
  t.equal((await get('/fhir/Immunization/imm-c')).resourceType, 'OperationOutcome', 'the masked immunization reads as unknown');
  t.equal(lookups(), 1, 'the next requests of the caller, within seconds: no lookup at all');
  t.equal(subPlans(), 0);
});

t.test('a search by identifier runs its page as a statement prepared under the name of its text, for every value; a search by code or by _id does not', async (t) => {
  for (const x of ['a', 'b', 'c']) {
    await store.update({ resourceType: 'Immunization', id: `imm-id-${x}`, status: 'completed', patient: { reference: `Patient/pat-${x}` }, occurrenceDateTime: '2024-02-03',
      identifier: [{ system: 'urn:test:imm', value: `id-${x}` }], vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '141' }] } } as Resource & { id: string });
  }
  const { db, statements } = recording(database.db);
  const search = async (access: AccessContext, params: Array<[string, string]>) => {
    const request = parseSearch(['Immunization'], params, registry, { strict: true, baseUrl: 'http://x/fhir' });
    const bundle = await (await open(db)).forAccess(access).search(request, { baseUrl: 'http://x/fhir', path: 'Immunization' });
    return (bundle.entry ?? []).map((entry) => entry.resource!.id).sort();
  };
  const pageOf = () => statements.splice(0).find((s) => /^SELECT r\.resource_type, r\.id, r\.content/.test(s.sql))!;

  for (const [access, name] of [[ALL_ACCESS, 'all access'], [hiding('pat-b'), 'a hidden compartment']] as const) {
    t.same(await search(access, [['identifier', 'urn:test:imm|id-a']]), ['imm-id-a'], `${name}: found by its identifier`);
    const first = pageOf();
    t.equal(first.name, preparedName(first.sql), `${name}: by identifier, prepared under the name of its text`);
    t.same(await search(access, [['identifier', 'urn:test:imm|id-b']]), name === 'all access' ? ['imm-id-b'] : [], `${name}: another value, the same plan, the access still applied`);
    t.equal(pageOf().name, first.name, `${name}: another value, the same statement`);
    t.same(await search(access, [['_id', 'imm-id-c,imm-id-b']]), name === 'all access' ? ['imm-id-b', 'imm-id-c'] : ['imm-id-c'], `${name}: by _id`);
    t.equal(pageOf().name, undefined, `${name}: by _id, planned for its ids at every call (a _has lists its sources' ids in their place, as many as they are)`);
    t.same(await search(access, [['vaccine-code', 'http://hl7.org/fhir/sid/cvx|141']]), name === 'all access' ? ['imm-id-a', 'imm-id-b', 'imm-id-c'] : ['imm-id-a', 'imm-id-c'], `${name}: by code`);
    t.equal(pageOf().name, undefined, `${name}: by code, planned for its value at every call (a code's selectivity depends on it)`);
  }
  // PostgreSQL plans a prepared statement for its values five times, then may keep a generic plan: past that, what
  // each call finds must still be its own, with the access applied.
  for (let call = 0; call < 9; call++) {
    const x = ['a', 'b', 'c'][call % 3]!;
    t.same(await search(hiding('pat-b'), [['identifier', `urn:test:imm|id-${x}`]]), x === 'b' ? [] : [`imm-id-${x}`], `call ${call + 1} of the same statement: id-${x}`);
  }
  t.equal(new Set(statements.splice(0).filter((s) => /^SELECT r\.resource_type/.test(s.sql)).map((s) => s.name)).size, 1, 'one prepared statement for them all');
  t.same(await search(professional, [['identifier', 'urn:test:imm|id-a']]), ['imm-id-a'], 'a professional, whose consent conditions are in the statement: found by identifier');
  t.ok(pageOf().name, 'through a prepared statement as well');
  t.same(await search(ALL_ACCESS, [['identifier', 'urn:test:imm|']]), ['imm-id-a', 'imm-id-b', 'imm-id-c'], 'a system without a value matches many');
  t.equal(pageOf().name, undefined, 'and is planned for its value');
});
