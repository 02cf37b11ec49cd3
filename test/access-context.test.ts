// A store bound to the caller (issue 15, item 2): a context hiding one patient's compartment hides every
// trace of that patient on every read path, counts included, over HTTP, in bundles and on the store itself;
// the same requests with all access see it all (so each check fails if the restriction were not applied).
import t, { type Test as Tap } from 'tap';
import type { FastifyRequest } from 'fastify';
import { FhirError } from '../src/fhir/outcome.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { DEFAULT_BINARY_INLINE_LIMIT } from '../src/store/binary-store.ts';
import { DEFAULT_MAX_INDEX_ROWS } from '../src/store/index-writer.ts';
import { ALL_ACCESS, type AccessContext, type ResourceStore } from '../src/store/resource-store.ts';
import { parseSearch } from '../src/search/parse.ts';
import { sqlStorage } from '../src/store/storage.ts';
import { countingStatements, FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const HIDE = 'x-test-hidden-patient';
const hiding = (patientId: string): AccessContext => ({ ...ALL_ACCESS, hiddenCompartments: [{ type: 'Patient', id: patientId }] });
/** The test's stand-in for authorisation: a header names the patient whose compartment the caller may not see. */
const accessOf = (request: FastifyRequest): AccessContext => {
  const hidden = request.headers[HIDE];
  return typeof hidden === 'string' ? hiding(hidden) : ALL_ACCESS;
};

const server = await startTestServer(t, { accessOf });
const hidden = { [HIDE]: 'pat-b' };

async function put(resource: Record<string, unknown>) {
  const res = await server.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, headers: { 'content-type': FHIR_JSON }, payload: resource });
  if (res.statusCode >= 300) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body}`);
}

await put({ resourceType: 'Practitioner', id: 'prac', name: [{ family: 'Shared' }] });
// B first: A's document names B's.
for (const [x, family] of [['b', 'Bravo'], ['a', 'Alpha']] as const) {
  await put({ resourceType: 'Patient', id: `pat-${x}`, identifier: [{ system: 'urn:test:mrn', value: `${x}-1` }], name: [{ family }] });
  await put({
    resourceType: 'Immunization', id: `imm-${x}`, status: 'completed', patient: { reference: `Patient/pat-${x}` }, occurrenceDateTime: '2024-01-02',
    vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '140' }] }, performer: [{ actor: { reference: 'Practitioner/prac' } }],
  });
  await put({ resourceType: 'AllergyIntolerance', id: `alg-${x}`, patient: { reference: `Patient/pat-${x}` }, recorder: { reference: 'Practitioner/prac' }, code: { text: 'peanut' },
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] } });
  await put({ resourceType: 'Binary', id: `bin-${x}`, contentType: 'text/plain', securityContext: { reference: `Patient/pat-${x}` }, data: Buffer.from(`note of ${x}`).toString('base64') });
  await put({
    resourceType: 'DocumentReference', id: `doc-${x}`, status: 'current', subject: { reference: `Patient/pat-${x}` }, author: [{ reference: 'Practitioner/prac' }],
    content: [{ attachment: { contentType: 'text/plain', url: `Binary/bin-${x}` } }],
    // A's document replaces B's: a reference from a visible resource to a hidden one.
    ...(x === 'a' ? { relatesTo: [{ code: 'replaces', target: { reference: 'DocumentReference/doc-b' } }] } : {}),
  });
}
// A second version of B's immunization: history counts versions.
await put({ resourceType: 'Immunization', id: 'imm-b', status: 'completed', patient: { reference: 'Patient/pat-b' }, occurrenceDateTime: '2024-01-03', vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '140' }] }, performer: [{ actor: { reference: 'Practitioner/prac' } }] });

const B_RESOURCES = ['Patient/pat-b', 'Immunization/imm-b', 'AllergyIntolerance/alg-b', 'DocumentReference/doc-b', 'Binary/bin-b'];
const A_RESOURCES = ['Patient/pat-a', 'Immunization/imm-a', 'AllergyIntolerance/alg-a', 'DocumentReference/doc-a', 'Binary/bin-a', 'Practitioner/prac'];

/** Fails unless `promise` rejects with the store's 404 (a FhirError). */
async function isNotFound(t: Tap, promise: Promise<unknown>): Promise<void> {
  const status = await promise.then(() => 'resolved', (error: unknown) => (error instanceof FhirError ? error.status : error));
  t.equal(status, 404);
}

const get = async (url: string, headers: Record<string, string> = {}) => server.inject({ method: 'GET', url: `/fhir/${url}`, headers });
const ids = (bundle: any, mode?: string) => ((bundle.entry ?? []) as any[]).filter((e) => !mode || e.search?.mode === mode).map((e) => `${e.resource.resourceType}/${e.resource.id}`).sort();

t.test('read and vread: a hidden resource is 404 with an OperationOutcome, as if unknown; all access reads it', async (t) => {
  for (const ref of B_RESOURCES) {
    const res = await get(ref, hidden);
    t.equal(res.statusCode, 404, `${ref} hidden`);
    t.equal(json(res).resourceType, 'OperationOutcome');
    t.equal((await get(`${ref}/_history/1`, hidden)).statusCode, 404, `${ref} version 1 hidden`);
    t.equal((await get(ref)).statusCode, 200, `${ref} with all access`);
    t.equal((await get(`${ref}/_history/1`)).statusCode, 200, `${ref} version 1 with all access`);
  }
  for (const ref of A_RESOURCES) t.equal((await get(ref, hidden)).statusCode, 200, `${ref} stays visible`);
  // A hidden resource answers as one that never existed: the same body shape, the same status.
  t.equal((await get('Immunization/never-was', hidden)).statusCode, 404);
});

t.test('Binary read as itself: hidden by its securityContext', async (t) => {
  const raw = (id: string, headers: Record<string, string> = {}) => server.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: 'text/plain', ...headers } });
  t.equal((await raw('bin-b', hidden)).statusCode, 404);
  t.equal((await raw('bin-a', hidden)).body, 'note of a');
  t.equal((await raw('bin-b')).body, 'note of b');
});

t.test('history: hidden versions absent and not counted (instance, type, system)', async (t) => {
  const instance = json(await get('Immunization/imm-b/_history', hidden));
  t.equal(instance.total, 0);
  t.same(instance.entry ?? [], []);
  t.equal(json(await get('Immunization/imm-b/_history')).total, 2, 'all access: both versions');

  const type = json(await get('Immunization/_history', hidden));
  t.same(ids(type), ['Immunization/imm-a']);
  t.equal(type.total, 1);
  t.equal(json(await get('Immunization/_history')).total, 3);

  const system = json(await get('_history?_count=100', hidden));
  const all = json(await get('_history?_count=100'));
  t.equal(system.total, all.total - 6, 'the six versions of B are not counted');
  t.same(ids(system).filter((ref) => B_RESOURCES.includes(ref)), []);
  t.ok(ids(all).includes('Binary/bin-b'));
});

t.test('search: matches, _total=accurate and _summary=count leave B out', async (t) => {
  for (const type of ['Patient', 'Immunization', 'AllergyIntolerance', 'DocumentReference', 'Binary']) {
    const visible = json(await get(`${type}?_total=accurate`, hidden));
    t.same(ids(visible), [A_RESOURCES.find((ref) => ref.startsWith(`${type}/`))], `${type} hidden`);
    t.equal(visible.total, 1, `${type} _total=accurate`);
    t.equal(json(await get(`${type}?_summary=count`, hidden)).total, 1, `${type} _summary=count`);
    t.equal(json(await get(`${type}?_summary=count`)).total, 2, `${type} _summary=count with all access`);
  }
  t.same(ids(json(await get('Immunization?patient=Patient/pat-b', hidden))), []);
  t.same(ids(json(await get('Patient/pat-b/Immunization', hidden))), [], 'compartment search');
  t.same(ids(json(await get('Patient/pat-b/Immunization'))), ['Immunization/imm-b']);
});

t.test('_include and _revinclude never bring B', async (t) => {
  const include = 'DocumentReference?_id=doc-a&_include=DocumentReference:relatesto&_include=DocumentReference:subject';
  t.same(ids(json(await get(include, hidden)), 'include'), ['Patient/pat-a']);
  t.same(ids(json(await get(include)), 'include'), ['DocumentReference/doc-b', 'Patient/pat-a']);

  const revinclude = 'Practitioner?_id=prac&_revinclude=Immunization:performer&_revinclude=AllergyIntolerance:recorder&_revinclude=DocumentReference:author';
  t.same(ids(json(await get(revinclude, hidden)), 'include'), ['AllergyIntolerance/alg-a', 'DocumentReference/doc-a', 'Immunization/imm-a']);
  t.same(ids(json(await get(revinclude)), 'include'), ['AllergyIntolerance/alg-a', 'AllergyIntolerance/alg-b', 'DocumentReference/doc-a', 'DocumentReference/doc-b', 'Immunization/imm-a', 'Immunization/imm-b']);

  const iterate = 'Practitioner?_id=prac&_revinclude=Immunization:performer&_include:iterate=Immunization:patient';
  t.same(ids(json(await get(iterate, hidden)), 'include'), ['Immunization/imm-a', 'Patient/pat-a']);
});

t.test('_has: hidden sources count for nothing', async (t) => {
  t.same(ids(json(await get('Patient?_has:Immunization:patient:status=completed', hidden))), ['Patient/pat-a']);
  t.same(ids(json(await get('Patient?_has:Immunization:patient:status=completed'))), ['Patient/pat-a', 'Patient/pat-b']);
  // The practitioner is visible; only B's immunization refers to it with this date.
  t.same(ids(json(await get('Practitioner?_has:Immunization:performer:date=2024-01-03', hidden))), []);
  t.same(ids(json(await get('Practitioner?_has:Immunization:performer:date=2024-01-03'))), ['Practitioner/prac']);
});

t.test('chains: a hidden target does not match', async (t) => {
  t.same(ids(json(await get('Immunization?patient.family=Bravo', hidden))), []);
  t.same(ids(json(await get('Immunization?patient.family=Bravo'))), ['Immunization/imm-b']);
  // A's document is visible, but only through the hidden document it replaces could it match.
  t.same(ids(json(await get('DocumentReference?relatesto.subject=Patient/pat-b', hidden))), []);
  t.same(ids(json(await get('DocumentReference?relatesto.subject=Patient/pat-b'))), ['DocumentReference/doc-a']);
});

t.test('bundles: batch and transaction entries run with the caller’s access', async (t) => {
  const bundle = (type: string, urls: string[]) => ({ resourceType: 'Bundle', type, entry: urls.map((url) => ({ request: { method: 'GET', url } })) });
  const post = (body: object, headers: Record<string, string> = {}) => server.inject({ method: 'POST', url: '/fhir', headers: { 'content-type': FHIR_JSON, ...headers }, payload: body });

  const batch = json(await post(bundle('batch', ['Immunization/imm-b', 'Immunization/imm-a', 'Immunization?_total=accurate', 'Immunization/_history']), hidden));
  t.same(batch.entry.map((e: any) => e.response.status.split(' ')[0]), ['404', '200', '200', '200']);
  t.same(ids(batch.entry[2].resource), ['Immunization/imm-a']);
  t.equal(batch.entry[2].resource.total, 1);
  t.equal(batch.entry[3].resource.total, 1);
  const open = json(await post(bundle('batch', ['Immunization/imm-b'])));
  t.equal(open.entry[0].response.status.split(' ')[0], '200');

  const transaction = await post(bundle('transaction', ['Immunization?_total=accurate', 'Patient?_has:Immunization:patient:status=completed']), hidden);
  t.equal(transaction.statusCode, 200);
  t.same(ids(json(transaction).entry[0].resource), ['Immunization/imm-a']);
  t.same(ids(json(transaction).entry[1].resource), ['Patient/pat-a']);
  t.equal((await post(bundle('transaction', ['Immunization/imm-b']), hidden)).statusCode, 404, 'a transaction reading a hidden resource fails as for an unknown one');
});

t.test('the store itself: forAccess binds every read, its units of work stay bound', async (t) => {
  const store = await sqlStorage(server.db).open({ registry: new SearchParameterRegistry(loadSearchParameters()), maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT });
  const bound = store.forAccess(hiding('pat-b'));
  t.equal(store.forAccess(ALL_ACCESS), store, 'all access is the store itself');
  await isNotFound(t, bound.read('Immunization', 'imm-b'));
  await isNotFound(t, bound.vread('Immunization', 'imm-b', 2));
  await isNotFound(t, bound.readBinary('bin-b'));
  t.equal((await bound.readBinary('bin-a')).id, 'bin-a');
  t.equal((await store.read('Immunization', 'imm-b')).versionId, 2);
  t.equal((await bound.history({ resourceType: 'AllergyIntolerance', count: 10 })).total, 1);
  t.equal((await store.history({ resourceType: 'AllergyIntolerance', count: 10 })).total, 2);
  await isNotFound(t, bound.unitOfWork((unit) => unit.read('Immunization', 'imm-b')));
  t.equal(await store.unitOfWork(async (unit) => (await unit.read('Immunization', 'imm-b')).id), 'imm-b');
  // A bound store's patch reads through the same restriction: nothing to patch.
  await isNotFound(t, bound.patch('Immunization', 'imm-b', async (current) => current.resource));
  // The change feed is the server's own: a restricted store refuses it rather than give it unfiltered.
  await t.rejects(bound.readChanges(undefined, 100), /all access/);
  t.ok((await store.readChanges(undefined, 100)).changes.some((change) => change.id === 'imm-b'), 'all access reads the feed');
});

t.test('the store: search and match bound; all access runs its statements without any access condition', async (t) => {
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const counting = countingStatements(server.rawDb, /compartment_member/);
  // With the server's keys: its index holds identifiers hashed under its index key, which a match compares.
  const store = await sqlStorage(counting.db, server.dataKeys).open({ registry, maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT });
  const parse = (type: string, query: string) => parseSearch([type], [...new URLSearchParams(query)] as Array<[string, string]>, registry, { strict: true, baseUrl: 'http://x/fhir' });
  const context = { baseUrl: 'http://x/fhir', path: '' };
  const readEverything = async (view: ResourceStore) => {
    const found: string[] = [];
    for (const ref of [...A_RESOURCES, ...B_RESOURCES]) {
      const [type, id] = ref.split('/') as [string, string];
      if (await view.read(type, id).then(() => true, () => false)) found.push(ref);
      if (await view.vread(type, id, 1).then(() => true, () => false)) found.push(`${ref}/_history/1`);
    }
    if (await view.readBinary('bin-b').then(() => true, () => false)) found.push('readBinary bin-b');
    found.push(`history ${(await view.history({ count: 100 })).total}`);
    for (const [type, query] of [
      ['Immunization', '_total=accurate&_include=Immunization:patient'],
      ['Practitioner', '_revinclude=Immunization:performer'],
      ['Patient', '_has:Immunization:patient:status=completed'],
      ['Immunization', 'patient.family=Bravo'],
      ['Immunization', '_summary=count'],
    ] as const) {
      const bundle = await view.search(parse(type, query), context);
      found.push(`${type}?${query}: ${bundle.total ?? '-'} ${ids(bundle).join(' ')}`);
    }
    const matches = await view.match([{ resourceType: 'Patient', search: parse('Patient', 'identifier=urn:test:mrn|b-1'), lockKey: 'Patient?identifier=urn:test:mrn|b-1' }]);
    found.push(`match ${matches[0]!.join(' ')}`);
    return found;
  };

  const everything = await readEverything(store.forAccess(ALL_ACCESS));
  t.equal(counting.count(), 0, 'all access: no statement names compartment_member');
  t.ok(everything.includes('Immunization/imm-b') && everything.includes('readBinary bin-b'));
  t.ok(everything.includes('match pat-b'));
  t.ok(everything.includes('Immunization?patient.family=Bravo: 1 Immunization/imm-b'));

  const visible = await readEverything(store.forAccess(hiding('pat-b')));
  t.ok(counting.count() > 0, 'hiding: the condition is in the statements');
  t.same(visible.filter((line) => /pat-b|imm-b|alg-b|doc-b|bin-b/.test(line)), [], 'nothing of B anywhere');
  t.ok(visible.includes('match '), 'a conditional match does not find the hidden patient');
  t.ok(visible.includes('Immunization?_summary=count: 1 '));
  t.ok(visible.includes('Immunization?_total=accurate&_include=Immunization:patient: 1 Immunization/imm-a Patient/pat-a'));
});

t.test('conditional create: a hidden resource does not match, so a new one is created', async (t) => {
  const create = (headers: Record<string, string>) =>
    server.inject({ method: 'POST', url: '/fhir/Patient', headers: { 'content-type': FHIR_JSON, 'if-none-exist': 'identifier=urn:test:mrn|b-1', ...headers }, payload: { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value: 'b-1' }] } });
  const open = await create({});
  t.equal(open.statusCode, 200, 'all access: the existing patient matches');
  const bound = await create(hidden);
  t.equal(bound.statusCode, 201, 'hidden: nothing matches');
  t.not(json(bound).id, 'pat-b');
});
