// Each version judged as it was (migration 0022): vread and instance, type and system `_history` check a
// version against its own compartments and visibility label, not against the resource's current ones. An
// Observation moved from one patient to another keeps its first version in the first patient's record; a
// document masked once stays masked in that version when a later one drops the label (and the reverse); a
// deletion is seen by those who saw what it deleted; counts follow. All access sees every version as before.
// The scopes, consent and labels are those the tokens of consent.test.ts and smart-scopes.test.ts carry.
import t from 'tap';
import { FhirError } from '../src/fhir/outcome.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { DEFAULT_BINARY_INLINE_LIMIT } from '../src/store/binary-store.ts';
import { FEED_HORIZON } from '../src/store/change-feed.ts';
import { VISIBILITY_SYSTEM } from '../src/store/consent-rows.ts';
import { DEFAULT_MAX_INDEX_ROWS } from '../src/store/index-writer.ts';
import { migrate } from '../src/store/migrate.ts';
import { backfillVersionAccess } from '../src/store/migration-steps.ts';
import { ALL_ACCESS } from '../src/store/resource-store.ts';
import { sqlStorage } from '../src/store/storage.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const server = await startTestServer(t);

async function write(resource: Record<string, unknown>) {
  const res = await server.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, headers: { 'content-type': FHIR_JSON }, payload: resource });
  if (res.statusCode >= 300) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body}`);
}
async function remove(reference: string) {
  const res = await server.inject({ method: 'DELETE', url: `/fhir/${reference}` });
  if (res.statusCode >= 300) throw new Error(`DELETE ${reference}: ${res.statusCode} ${res.body}`);
}
const observation = (id: string, patient: string, more: Record<string, unknown> = {}) => ({
  resourceType: 'Observation', id, status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] }, subject: { reference: `Patient/${patient}` }, ...more,
});
const document = (id: string, masked: boolean) => ({
  resourceType: 'DocumentReference', id, status: 'current', subject: { reference: 'Patient/pat' }, author: [{ reference: 'Practitioner/author' }],
  content: [{ attachment: { contentType: 'text/plain', data: Buffer.from(id).toString('base64') } }],
  ...(masked ? { securityLabel: [{ coding: [{ system: VISIBILITY_SYSTEM, code: 'MASQUE_PS' }] }] } : {}),
});

for (const id of ['a', 'b', 'pat']) await write({ resourceType: 'Patient', id });
for (const id of ['author', 'other', 'opposed']) await write({ resourceType: 'Practitioner', id });
// Its subject corrected: version 1 is patient a's data, version 2 patient b's.
await write(observation('moved', 'a'));
await write(observation('moved', 'b'));
// Patient a's, then deleted: the deletion (version 2) is in a's record as version 1 was.
await write(observation('gone', 'a'));
await remove('Observation/gone');
// Moved to b, then deleted: the deletion is b's.
await write(observation('moved-gone', 'a'));
await write(observation('moved-gone', 'b'));
await remove('Observation/moved-gone');
await write(document('was-masked', true));
await write(document('was-masked', false));
await write(document('now-masked', false));
await write(document('now-masked', true));
// A search-restricted scope matched by the current version only: version 1 (preliminary) matched no query.
await write(observation('promoted', 'a', { status: 'preliminary' }));
await write(observation('promoted', 'a'));

/**
 * Type and system histories list a write once every transaction that began writing before it has ended
 * (change-feed.ts): on a shared PostgreSQL another client's may still be running. Waits for them.
 */
async function settled() {
  for (const deadline = Date.now() + 120_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 250))) {
    const { rows } = await server.db.query<{ done: boolean }>(`SELECT (SELECT max(xid) FROM resource_history) < ${FEED_HORIZON} AS done`);
    if (rows[0]?.done) return;
  }
}

const bearer = async (request: Parameters<typeof server.token>[0]) => `Bearer ${await server.token(request)}`;
const callers = {
  // The tests' own system client, which wrote everything: a feeding system sees the masked documents it sent.
  feeder: server.authorization,
  patientA: await bearer({ scope: 'launch/patient patient/*.rs', patient: 'a' }),
  patientB: await bearer({ scope: 'launch/patient patient/*.rs', patient: 'b' }),
  other: await bearer({ scope: 'user/*.rs', fhirUser: 'Practitioner/other', clientId: 'gp-software' }),
  author: await bearer({ scope: 'user/*.rs', fhirUser: 'Practitioner/author', clientId: 'gp-software' }),
  opposed: await bearer({ scope: 'user/*.rs', fhirUser: 'Practitioner/opposed', clientId: 'gp-software' }),
  finalOnlyA: await bearer({ scope: 'patient/Observation.rs?status=final', patient: 'a' }),
};
type Caller = keyof typeof callers;
const get = (caller: Caller, url: string, headers: Record<string, string> = {}) =>
  server.inject({ method: 'GET', url: `/fhir/${url}`, headers: { authorization: callers[caller], ...headers } });
const status = async (caller: Caller, url: string, headers: Record<string, string> = {}) => (await get(caller, url, headers)).statusCode;
/** The versions a history lists, `Type/id/version`, and its total. */
async function history(caller: Caller, url: string, headers: Record<string, string> = {}) {
  const bundle = json(await get(caller, url, headers));
  const versions = (bundle.entry ?? []).map((entry: any) => `${new URL(entry.fullUrl).pathname.split('/').slice(-2).join('/')}/${/^W\/"(\d+)"$/.exec(entry.response.etag)![1]}`);
  return { versions: versions.sort(), total: bundle.total as number };
}

t.test('history entries name their versions (the helper reads them right)', async (t) => {
  const all = await history('feeder', 'Observation/moved/_history');
  t.same(all, { versions: ['Observation/moved/1', 'Observation/moved/2'], total: 2 });
});

t.test('a subject moved from patient a to patient b: each version is its own patient\'s', async (t) => {
  t.equal(await status('patientB', 'Observation/moved'), 200, 'b reads the current version');
  t.equal(await status('patientB', 'Observation/moved/_history/2'), 200);
  t.equal(await status('patientB', 'Observation/moved/_history/1'), 404, "b cannot vread version 1, patient a's data");
  t.same(await history('patientB', 'Observation/moved/_history'), { versions: ['Observation/moved/2'], total: 1 }, "b's instance history: version 2 only");

  t.equal(await status('patientA', 'Observation/moved'), 404, 'a does not read the current version');
  t.equal(await status('patientA', 'Observation/moved/_history/1'), 200, 'a vreads version 1');
  t.equal(await status('patientA', 'Observation/moved/_history/2'), 404);
  t.same(await history('patientA', 'Observation/moved/_history'), { versions: ['Observation/moved/1'], total: 1 }, "a's instance history: version 1 only");

  await settled();
  const typeB = await history('patientB', 'Observation/_history?_count=100');
  t.ok(typeB.versions.includes('Observation/moved/2') && !typeB.versions.includes('Observation/moved/1'), 'type history: b sees version 2, not version 1');
  t.equal(typeB.total, typeB.versions.length, 'type history total counts what is listed');
  const systemA = await history('patientA', '_history?_count=1000');
  t.ok(systemA.versions.includes('Observation/moved/1') && !systemA.versions.includes('Observation/moved/2'), 'system history: a sees version 1, not version 2');
  t.equal(systemA.total, systemA.versions.length, 'system history total counts what is listed');
});

t.test('a deletion is seen by those who saw the version it deleted', async (t) => {
  t.same(await history('patientA', 'Observation/gone/_history'), { versions: ['Observation/gone/1', 'Observation/gone/2'], total: 2 }, 'a: the version and its deletion');
  t.equal(await status('patientA', 'Observation/gone/_history/2'), 410, 'a: the deletion is gone, not unknown');
  t.same(await history('patientB', 'Observation/gone/_history'), { versions: [], total: 0 }, 'b: nothing');
  t.equal(await status('patientB', 'Observation/gone/_history/2'), 404, 'b: the deletion is unknown');

  t.same(await history('patientA', 'Observation/moved-gone/_history'), { versions: ['Observation/moved-gone/1'], total: 1 }, 'moved then deleted: a sees its own version only');
  t.same(await history('patientB', 'Observation/moved-gone/_history'), { versions: ['Observation/moved-gone/2', 'Observation/moved-gone/3'], total: 2 }, "b sees its version and the deletion of it");
  t.equal(await status('patientA', 'Observation/moved-gone/_history/3'), 404);
  t.equal(await status('patientB', 'Observation/moved-gone/_history/3'), 410);
});

t.test('masked then unmasked, unmasked then masked: a professional sees the versions that were not masked', async (t) => {
  t.equal(await status('other', 'DocumentReference/was-masked'), 200, 'the label removed: the current version is seen');
  t.equal(await status('other', 'DocumentReference/was-masked/_history/2'), 200);
  t.equal(await status('other', 'DocumentReference/was-masked/_history/1'), 404, 'the masked version stays hidden');
  t.same(await history('other', 'DocumentReference/was-masked/_history'), { versions: ['DocumentReference/was-masked/2'], total: 1 });

  t.equal(await status('other', 'DocumentReference/now-masked'), 404, 'masked now');
  t.equal(await status('other', 'DocumentReference/now-masked/_history/2'), 404);
  t.equal(await status('other', 'DocumentReference/now-masked/_history/1'), 200, 'the version shown before the label stays seen');
  t.same(await history('other', 'DocumentReference/now-masked/_history'), { versions: ['DocumentReference/now-masked/1'], total: 1 });

  await settled();
  const type = await history('other', 'DocumentReference/_history?_count=100');
  t.same(type, { versions: ['DocumentReference/now-masked/1', 'DocumentReference/was-masked/2'], total: 2 }, 'type history: versions and count');
  const paged = json(await get('other', 'DocumentReference/_history?_count=1'));
  t.equal(paged.total, 2, 'the total of a page counts the visible versions of every page');
  t.equal(paged.entry.length, 1);

  for (const caller of ['author', 'feeder'] as const) {
    t.same((await history(caller, 'DocumentReference/_history?_count=100')).total, 4, `${caller}: every version`);
    t.equal(await status(caller, 'DocumentReference/was-masked/_history/1'), 200, `${caller}: the masked version`);
  }
  const emergency = await bearer({ scope: 'user/*.rs', fhirUser: 'Practitioner/other', clientId: 'er-software' });
  const broken = json(await server.inject({ method: 'GET', url: '/fhir/DocumentReference/now-masked/_history', headers: { authorization: emergency, 'x-purpose-of-use': 'BTG' } }));
  t.equal(broken.total, 2, 'breaking the glass: every version');
});

t.test("a patient's opposition hides the versions that were in the patient's record", async (t) => {
  await write({
    resourceType: 'Consent', id: 'opposition-a', status: 'active', patient: { reference: 'Patient/a' },
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] },
    provision: { type: 'permit', provision: [{ type: 'deny', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP' }] }, reference: { reference: 'Practitioner/opposed' } }] }] },
  });
  t.teardown(() => remove('Consent/opposition-a'));
  t.equal(await status('opposed', 'Observation/moved'), 200, "the current version is patient b's");
  t.equal(await status('opposed', 'Observation/moved/_history/1'), 404, "version 1 was patient a's");
  t.same(await history('opposed', 'Observation/moved/_history'), { versions: ['Observation/moved/2'], total: 1 });
  t.same(await history('opposed', 'Observation/gone/_history'), { versions: [], total: 0 }, "a deleted member of a's record: neither version");
  t.same(await history('other', 'Observation/moved/_history'), { versions: ['Observation/moved/1', 'Observation/moved/2'], total: 2 }, 'another professional: both');
});

t.test('a search-restricted scope sees the current version of a restricted type when it matches, no earlier one', async (t) => {
  t.equal(await status('finalOnlyA', 'Observation/promoted'), 200);
  t.equal(await status('finalOnlyA', 'Observation/promoted/_history/2'), 200);
  t.equal(await status('finalOnlyA', 'Observation/promoted/_history/1'), 404, 'version 1 did not match: what an earlier version matched is not indexed');
  t.same(await history('finalOnlyA', 'Observation/promoted/_history'), { versions: ['Observation/promoted/2'], total: 1 });
  t.equal(await status('feeder', 'Observation/promoted/_history/1'), 200, 'an unrestricted scope: version 1');
});

t.test('migration 0022 on a store that has data fills every version\'s rows as the writes did', async (t) => {
  const snapshot = async () => ({
    members: (await server.db.query('SELECT resource_type, resource_id, version_id, compartment_type, compartment_id FROM version_member ORDER BY 1, 2, 3, 4, 5')).rows,
    labels: (await server.db.query('SELECT resource_type, resource_id, version_id, patient_id, masked, hidden_from_patient, authors FROM version_visibility ORDER BY 1, 2, 3')).rows,
  });
  const written = await snapshot();
  t.ok(written.members.length > 0 && written.labels.length > 0);
  await server.db.exec('DELETE FROM version_member; DELETE FROM version_visibility');
  t.equal(await status('patientB', 'Observation/moved/_history/2'), 404, 'without its rows no version is in a compartment (so this test can fail)');
  await server.db.transaction((tx) => backfillVersionAccess(tx));
  t.same(await snapshot(), written, 'the same rows');
  // The whole migration, as at the first start of a store that has data.
  await server.db.transaction(async (tx) => {
    await tx.query('DROP TABLE version_member');
    await tx.query('DROP TABLE version_visibility');
    await tx.query('DELETE FROM schema_migration WHERE version = 22');
  });
  t.same(await migrate(server.db), ['0022_version_access']);
  t.same(await snapshot(), written, 'migration 0022: the same rows');
  t.equal(await status('patientB', 'Observation/moved/_history/2'), 200);
  t.equal(await status('patientB', 'Observation/moved/_history/1'), 404);
  t.equal(await status('other', 'DocumentReference/was-masked/_history/1'), 404);
  t.equal(await status('patientA', 'Observation/gone/_history/2'), 410, 'a deletion gets the rows of what it deleted');
  const senders = await server.db.query<{ resource_id: string; sent_by: string | null }>(`SELECT resource_id, sent_by FROM version_visibility WHERE resource_type = 'DocumentReference' ORDER BY 1`);
  t.same(senders.rows, [{ resource_id: 'now-masked', sent_by: 'dossier-tests' }, { resource_id: 'was-masked', sent_by: null }], 'the client that labelled a resource still labelled is kept; one whose label went is not known');
});

t.test('the store itself: all access sees every version as before; a hidden compartment hides the versions in it', async (t) => {
  const store = await sqlStorage(server.db).open({ registry: new SearchParameterRegistry(loadSearchParameters()), maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT });
  const all = store.forAccess(ALL_ACCESS);
  await settled();
  for (const resourceType of ['Observation', 'DocumentReference']) {
    const { rows } = await server.db.query<{ n: number }>('SELECT count(*)::int AS n FROM resource_history WHERE resource_type = $1', [resourceType]);
    const page = await all.history({ resourceType, count: 1000 });
    t.equal(page.total, rows[0]!.n, `${resourceType}: every stored version counted`);
    t.equal(page.entries.length, rows[0]!.n, 'and listed');
  }
  for (const [type, id, version] of [['Observation', 'moved', 1], ['Observation', 'moved', 2], ['DocumentReference', 'was-masked', 1], ['DocumentReference', 'now-masked', 2]] as const) {
    t.equal((await all.vread(type, id, version)).versionId, version, `${type}/${id}/_history/${version}`);
  }
  t.equal((await all.history({ resourceType: 'Observation', id: 'moved-gone', count: 10 })).total, 3);

  const withoutA = store.forAccess({ ...ALL_ACCESS, hiddenCompartments: [{ type: 'Patient', id: 'a' }] });
  const refused = await withoutA.vread('Observation', 'moved', 1).then(() => 'read', (error: unknown) => (error instanceof FhirError ? error.status : error));
  t.equal(refused, 404, "patient a's compartment hidden: version 1 is unknown");
  t.equal((await withoutA.vread('Observation', 'moved', 2)).versionId, 2);
  const instance = await withoutA.history({ resourceType: 'Observation', id: 'moved', count: 10 });
  t.same([instance.total, instance.entries.map((entry) => entry.versionId)], [1, [2]]);
  const gone = await withoutA.history({ resourceType: 'Observation', id: 'moved-gone', count: 10 });
  t.same([gone.total, gone.entries.map((entry) => entry.versionId)], [2, [3, 2]], 'moved to b then deleted: b\'s version and its deletion');
});
