// The patient's consent as it changes (issue 18, item 1): which Consents make rules, labels added and removed,
// a record closed and reopened, an opposition withdrawn, deleted resources' history, feeding systems matching
// what they sent, break the glass by header and its audit trail, and the consent tables rebuilt by a reindex
// or by migration 0017 on a store that already held data. consent-matrix.test.ts asserts every read path.
import t from 'tap';
import { consentRowsOf, VISIBILITY_SYSTEM } from '../src/store/consent-rows.ts';
import { emptyRows } from '../src/search/extract.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { SearchIndexWriter } from '../src/store/index-writer.ts';
import { backfillConsent } from '../src/store/migration-steps.ts';
import { reindex } from '../src/store/reindex.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const PRIVACY = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] };
const POLICY = { policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] } };
const CATEGORY = [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }];
const RECIPIENT = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP' }] };
const consent = (id: string, patient: string, provision: unknown, extra: Record<string, unknown> = {}) => ({
  resourceType: 'Consent', id, status: 'active', scope: PRIVACY, category: CATEGORY, patient: { reference: `Patient/${patient}` }, ...POLICY, provision, ...extra,
});
const deny = (...actors: string[]) => ({ type: 'deny', actor: actors.map((reference) => ({ role: RECIPIENT, reference: { reference } })) });

t.test('which Consents make rules', async (t) => {
  const rows = emptyRows();
  rows.reference = [{ param: 'patient', targetType: 'Patient', targetId: 'p', url: null, identifierSystem: null, identifierValue: null }];
  const rules = (resource: Record<string, unknown>) => consentRowsOf({ ...resource, id: 'c' } as any, rows, { baseUrl: 'https://dmp.example/fhir' }).rules;
  t.same(rules(consent('c', 'p', { type: 'deny' })), [{ patientId: 'p', actor: null }], 'a root deny naming no one and nothing: the record closed');
  t.same(rules(consent('c', 'p', { type: 'deny', provision: [{ type: 'permit', actor: [{ role: RECIPIENT, reference: { reference: 'Practitioner/gp' } }] }] })), [], 'a deny with a permitted exception closes nothing');
  t.same(rules(consent('c', 'p', { type: 'deny', securityLabel: [{ system: VISIBILITY_SYSTEM, code: 'MASQUE_PS' }] })), [], 'nor does a deny narrowed to a label');
  t.same(
    rules(consent('c', 'p', { type: 'permit', provision: [deny('Practitioner/a', 'https://dmp.example/fhir/Organization/o', 'RelatedPerson/r'), { provision: [deny('PractitionerRole/r1')] }] })).map((r) => r.actor),
    ['Practitioner/a', 'Organization/o', 'PractitionerRole/r1'],
    'each professional or organisation a deny provision names, at any depth, by local or own-base reference; not a RelatedPerson',
  );
  t.same(rules(consent('c', 'p', deny('Practitioner/a'), { status: 'inactive' })), [], 'an inactive Consent: none');
  t.same(rules(consent('c', 'p', deny('Practitioner/a'), { scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'research' }] } })), [], 'another scope: none');
  t.same(rules({ ...consent('c', 'p', { type: 'deny' }) }), [{ patientId: 'p', actor: null }]);
});

const server = await startTestServer(t, { audit: true });
async function write(resource: Record<string, any>, headers: Record<string, string> = {}) {
  const res = await server.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, headers: { 'content-type': FHIR_JSON, ...headers }, payload: resource });
  if (res.statusCode >= 300) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body}`);
  return res;
}
const document = (id: string, patient: string, code?: string, place: 'meta' | 'label' = 'label') => ({
  resourceType: 'DocumentReference', id, status: 'current', subject: { reference: `Patient/${patient}` }, identifier: [{ system: 'urn:test:doc', value: id }],
  author: [{ reference: 'Practitioner/author' }], content: [{ attachment: { contentType: 'text/plain', data: Buffer.from(id).toString('base64') } }],
  ...(code && place === 'label' ? { securityLabel: [{ coding: [{ system: VISIBILITY_SYSTEM, code }] }] } : {}),
  ...(code && place === 'meta' ? { meta: { security: [{ system: VISIBILITY_SYSTEM, code }] } } : {}),
});
for (const id of ['author', 'opposed', 'other', 'er']) await write({ resourceType: 'Practitioner', id });
await write({ resourceType: 'Patient', id: 'pat' });
const as = async (request: Parameters<typeof server.token>[0]) => `Bearer ${await server.token(request)}`;
const callers = {
  opposed: await as({ scope: 'user/*.cruds', fhirUser: 'Practitioner/opposed', clientId: 'gp-software' }),
  other: await as({ scope: 'user/*.cruds', fhirUser: 'Practitioner/other', clientId: 'gp-software' }),
  author: await as({ scope: 'user/*.cruds', fhirUser: 'Practitioner/author', clientId: 'gp-software' }),
  er: await as({ scope: 'user/*.cruds', fhirUser: 'Practitioner/er', clientId: 'er-software' }),
  patient: await as({ scope: 'patient/*.rs', fhirUser: 'Patient/pat', patient: 'pat', clientId: 'patient-app' }),
  feeder: await as({ scope: 'system/*.cruds', clientId: 'lab-system' }),
  otherFeeder: await as({ scope: 'system/*.cruds', clientId: 'other-system' }),
};
const status = async (caller: keyof typeof callers, url: string, headers: Record<string, string> = {}) =>
  (await server.inject({ method: 'GET', url: `/fhir/${url}`, headers: { authorization: callers[caller], ...headers } })).statusCode;

t.test('INVISIBLE_PATIENT: hidden from the patient until the label is removed, each version by its own label', async (t) => {
  await write(document('announced', 'pat', 'INVISIBLE_PATIENT', 'meta'));
  t.equal(await status('patient', 'DocumentReference/announced'), 404);
  t.equal(await status('other', 'DocumentReference/announced'), 200, 'professionals see it');
  await write(document('announced', 'pat'));
  t.equal(await status('patient', 'DocumentReference/announced'), 200, 'the label removed');
  t.equal(await status('patient', 'DocumentReference/announced/_history/2'), 200, 'the unlabelled version');
  t.equal(await status('patient', 'DocumentReference/announced/_history/1'), 404, 'the labelled version stays hidden');
  await write(document('announced', 'pat', 'INVISIBLE_PATIENT', 'meta'));
  t.equal(await status('patient', 'DocumentReference/announced/_history/3'), 404, 'labelled again: the new version hidden');
  t.equal(await status('patient', 'DocumentReference/announced/_history/2'), 200, 'the version the patient was shown stays seen');
});

t.test('a record closed, then reopened; an opposition withdrawn', async (t) => {
  await write(document('doc', 'pat'));
  await write(consent('closure', 'pat', { type: 'deny' }));
  for (const caller of ['other', 'er'] as const) t.equal(await status(caller, 'DocumentReference/doc', caller === 'er' ? { 'x-purpose-of-use': 'BTG' } : {}), 404, `${caller}: closed`);
  t.equal(await status('patient', 'DocumentReference/doc'), 200, 'the patient still reads it');
  t.equal(await status('feeder', 'DocumentReference/doc'), 200, 'a feeding system still matches it');
  await write({ ...consent('closure', 'pat', { type: 'deny' }), status: 'inactive' });
  t.equal(await status('other', 'DocumentReference/doc'), 200, 'reopened: the Consent no longer active');

  await write(consent('opposition', 'pat', { type: 'permit', provision: [deny('Practitioner/opposed')] }));
  t.equal(await status('opposed', 'DocumentReference/doc'), 404);
  t.equal(await status('opposed', 'Patient/pat'), 404);
  t.equal(await status('other', 'DocumentReference/doc'), 200);
  const update = await server.inject({ method: 'PUT', url: '/fhir/DocumentReference/doc', headers: { authorization: callers.opposed, 'content-type': FHIR_JSON }, payload: { ...document('doc', 'pat'), subject: undefined } });
  t.equal(update.statusCode, 404, 'an opposed practitioner cannot update what it may not see');
  t.ok((await server.inject({ method: 'DELETE', url: '/fhir/Consent/opposition' })).statusCode < 300, 'the opposition withdrawn');
  t.equal(await status('opposed', 'DocumentReference/doc'), 200);
});

t.test('deleted resources: their history stays hidden as the record says', async (t) => {
  await write(document('masked-then-deleted', 'pat', 'MASQUE_PS'));
  await write(document('deleted', 'pat'));
  await write(consent('opposition-2', 'pat', { type: 'permit', provision: [deny('Practitioner/opposed')] }));
  for (const id of ['masked-then-deleted', 'deleted']) t.ok((await server.inject({ method: 'DELETE', url: `/fhir/DocumentReference/${id}` })).statusCode < 300);
  t.equal(await status('other', 'DocumentReference/masked-then-deleted/_history/1'), 404, 'a masked document deleted keeps its label');
  t.equal(await status('opposed', 'DocumentReference/deleted/_history/1'), 404, 'a deleted member of an opposed record');
  t.equal(await status('other', 'DocumentReference/deleted/_history/1'), 200, 'others read its history');
  const history = json(await server.inject({ method: 'GET', url: '/fhir/DocumentReference/_history?_count=100', headers: { authorization: callers.opposed } }));
  t.notOk((history.entry ?? []).some((e: any) => e.request.url.includes('deleted')), 'nor in type history');
  await server.inject({ method: 'DELETE', url: '/fhir/Consent/opposition-2' });
});

t.test('feeding systems: each matches and updates the masked documents it sent, and reads no others', async (t) => {
  await write(document('lab-report', 'pat', 'MASQUE_PS'), { authorization: callers.feeder });
  t.equal(await status('feeder', 'DocumentReference/lab-report'), 200);
  t.equal(await status('otherFeeder', 'DocumentReference/lab-report'), 404);
  const conditional = (caller: keyof typeof callers) =>
    server.inject({ method: 'POST', url: '/fhir/DocumentReference', headers: { authorization: callers[caller], 'content-type': FHIR_JSON, 'if-none-exist': 'identifier=urn:test:doc|lab-report' }, payload: { ...document('x', 'pat', 'MASQUE_PS'), id: undefined } });
  t.equal((await conditional('feeder')).statusCode, 200, 'its conditional create finds it: no duplicate');
  const updated = await server.inject({ method: 'PUT', url: '/fhir/DocumentReference?identifier=urn:test:doc|lab-report', headers: { authorization: callers.feeder, 'content-type': FHIR_JSON }, payload: { ...document('lab-report', 'pat', 'MASQUE_PS'), status: 'superseded' } });
  t.equal(updated.statusCode, 200, 'its conditional update updates it');
  // A professional's update keeps the client that sent it.
  await write({ ...document('lab-report', 'pat', 'MASQUE_PS'), description: 'relu' }, { authorization: callers.author });
  t.equal(await status('feeder', 'DocumentReference/lab-report'), 200, 'still its own after someone else updated it');
  const duplicate = await conditional('otherFeeder');
  t.equal(duplicate.statusCode, 201, 'another system does not see it: its criteria match nothing (the policy of every hidden resource)');
});

t.test('break the glass by header: lifts masking for professionals only, audited as such', async (t) => {
  await write(document('secret', 'pat', 'MASQUE_PS'));
  t.equal(await status('er', 'DocumentReference/secret'), 404);
  t.equal(await status('er', 'DocumentReference/secret', { 'x-purpose-of-use': 'BTG' }), 200);
  t.equal(await status('er', 'DocumentReference/secret', { 'x-purpose-of-use': 'http://terminology.hl7.org/CodeSystem/v3-ActReason|ETREAT' }), 200, 'as a coding');
  const bad = await server.inject({ method: 'GET', url: '/fhir/DocumentReference/secret', headers: { authorization: callers.er, 'x-purpose-of-use': 'HMARKT' } });
  t.equal(bad.statusCode, 400);
  t.equal(json(bad).resourceType, 'OperationOutcome');
  t.equal(await status('otherFeeder', 'DocumentReference/secret', { 'x-purpose-of-use': 'BTG' }), 404, 'a system client cannot break the glass');
  const trail = json(await server.inject({ method: 'GET', url: '/fhir/AuditEvent?patient=Patient/pat&_security=http://terminology.hl7.org/CodeSystem/v3-ActReason|BTG' }));
  const events = (trail.entry ?? []).map((e: any) => e.resource);
  t.ok(events.some((e: any) => e.entity?.some((x: any) => x.what?.reference?.startsWith('DocumentReference/secret')) && e.agent?.some((a: any) => a.who?.reference === 'Practitioner/er')), "the patient's trail shows the break-the-glass read");
  t.notOk(events.some((e: any) => e.agent?.some((a: any) => a.who?.reference === 'Practitioner/other')), 'and only such accesses');
});

t.test('npm run reindex and migration 0017 rebuild the consent tables', async (t) => {
  await write(consent('opposition-3', 'pat', { type: 'permit', provision: [deny('Practitioner/opposed')] }));
  t.equal(await status('opposed', 'Patient/pat'), 404);
  const clear = () => server.db.exec('DELETE FROM consent_rule; DELETE FROM resource_visibility; DELETE FROM binary_context');
  await clear();
  t.equal(await status('opposed', 'Patient/pat'), 200, 'without its tables consent is not applied (so this test can fail)');
  const writer = new SearchIndexWriter(new SearchParameterRegistry(loadSearchParameters()));
  await reindex(server.db, writer, ['Consent', 'DocumentReference']);
  t.equal(await status('opposed', 'Patient/pat'), 404, 'reindex: the opposition is back');
  t.equal(await status('other', 'DocumentReference/secret'), 404, 'and the label');
  await clear();
  await server.db.transaction((tx) => backfillConsent(tx));
  t.equal(await status('opposed', 'Patient/pat'), 404, 'migration 0017 on stored data: the opposition');
  t.equal(await status('other', 'DocumentReference/secret'), 404, 'and the label');
});
