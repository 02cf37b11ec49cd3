// SMART scopes applied (issue 17, items 2 and 6): scopes × resource types × interactions × launch contexts.
// A patient-A token sees patient A's compartment and reference data (Practitioner), nothing of patient B
// through any path (read, vread, history, search and its totals, _include, _revinclude, _has, chains,
// compartment search, conditional create, bundle entries); what its scopes do not grant is 403 for the
// interaction and absent from the results inside the store's SQL.
import t, { type Test } from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const server = await startTestServer(t);

async function put(resource: Record<string, unknown>) {
  const res = await server.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, headers: { 'content-type': FHIR_JSON }, payload: resource });
  if (res.statusCode >= 300) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body}`);
}

const observation = (id: string, patient: string, more: Record<string, unknown> = {}) => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] },
  subject: { reference: `Patient/${patient}` },
  performer: [{ reference: 'Practitioner/dr' }],
  ...more,
});
const immunization = (id: string, patient: string, identifier?: string) => ({
  resourceType: 'Immunization',
  id,
  status: 'completed',
  vaccineCode: { text: 'vaccin' },
  patient: { reference: `Patient/${patient}` },
  occurrenceDateTime: '2026-01-01',
  ...(identifier ? { identifier: [{ system: 'urn:test', value: identifier }] } : {}),
});

await put({ resourceType: 'Practitioner', id: 'dr', name: [{ family: 'Soignant' }] });
await put({ resourceType: 'Patient', id: 'pa', name: [{ family: 'Alpha' }], generalPractitioner: [{ reference: 'Practitioner/dr' }] });
await put({ resourceType: 'Patient', id: 'pb', name: [{ family: 'Beta' }], generalPractitioner: [{ reference: 'Practitioner/dr' }] });
await put(observation('oa', 'pa'));
await put(observation('ob', 'pb'));
await put(observation('ob', 'pb', { status: 'amended' }));
await put(immunization('ia', 'pa'));
await put(immunization('ib', 'pb', 'only-b'));
await put(immunization('ib2', 'pb', 'only-b-in-transaction'));
await put({ resourceType: 'Binary', id: 'bin-a', contentType: 'text/plain', securityContext: { reference: 'Observation/oa' }, data: Buffer.from('a').toString('base64') });
await put({ resourceType: 'Binary', id: 'bin-b', contentType: 'text/plain', securityContext: { reference: 'Patient/pb' }, data: Buffer.from('b').toString('base64') });

const bearer = async (scope: string, patient?: string) => `Bearer ${await server.token({ scope, ...(patient ? { patient } : {}) })}`;
const tokens = {
  system: server.authorization,
  patientA: await bearer('launch/patient patient/*.rs', 'Patient/pa'),
  patientB: await bearer('patient/*.read', 'pb'),
  observationsA: await bearer('patient/Observation.rs', 'pa'),
  immunizationWriterA: await bearer('patient/Immunization.cruds patient/Patient.r', 'pa'),
  userRead: await bearer('openid fhirUser user/*.read'),
  userWrite: await bearer('user/*.write'),
  none: await bearer('openid fhirUser'),
  patientWithoutContext: await bearer('patient/*.rs'),
};
type Who = keyof typeof tokens;

const get = (who: Who, url: string) => server.inject({ method: 'GET', url, headers: { authorization: tokens[who] } });
const send = (who: Who, method: 'POST' | 'PUT' | 'DELETE' | 'PATCH', url: string, payload?: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method, url, headers: { authorization: tokens[who], 'content-type': FHIR_JSON, ...headers }, ...(payload === undefined ? {} : { payload: payload as object }) });
const idsOf = (bundle: any) => (bundle.entry ?? []).map((e: any) => `${e.resource.resourceType}/${e.resource.id}`).sort();

async function status(t: Test, who: Who, url: string, expected: number) {
  t.equal((await get(who, url)).statusCode, expected, `${who} GET ${url}: ${expected}`);
}

t.test('read and vread: own compartment 200, the other patient 404, ungranted type 403, reference data 200', async (t) => {
  const cases: Array<[Who, string, number]> = [
    ['patientA', '/fhir/Patient/pa', 200],
    ['patientA', '/fhir/Patient/pb', 404],
    ['patientA', '/fhir/Observation/oa', 200],
    ['patientA', '/fhir/Observation/ob', 404],
    ['patientA', '/fhir/Observation/ob/_history/1', 404],
    ['patientA', '/fhir/Observation/oa/_history/1', 200],
    ['patientA', '/fhir/Immunization/ib', 404],
    ['patientA', '/fhir/Practitioner/dr', 200],
    ['patientA', '/fhir/Binary/bin-a', 200],
    ['patientA', '/fhir/Binary/bin-b', 404],
    ['patientB', '/fhir/Patient/pa', 404],
    ['patientB', '/fhir/Observation/ob', 200],
    ['patientB', '/fhir/Binary/bin-b', 200],
    ['observationsA', '/fhir/Observation/oa', 200],
    ['observationsA', '/fhir/Observation/ob', 404],
    ['observationsA', '/fhir/Patient/pa', 403],
    ['observationsA', '/fhir/Practitioner/dr', 403],
    ['system', '/fhir/Observation/ob', 200],
    ['userRead', '/fhir/Observation/ob', 200],
    ['userWrite', '/fhir/Observation/ob', 403],
    ['none', '/fhir/Patient/pa', 403],
    ['patientWithoutContext', '/fhir/Patient/pa', 403],
  ];
  for (const [who, url, expected] of cases) await status(t, who, url, expected);
});

t.test('search: results, counts and _total hold only what the token sees', async (t) => {
  const a = json(await get('patientA', '/fhir/Observation?_total=accurate'));
  t.same(idsOf(a), ['Observation/oa']);
  t.equal(a.total, 1, '_total counts only patient A');
  t.equal(json(await get('patientA', '/fhir/Observation')).total, 1, 'the default count too');
  t.equal(json(await get('system', '/fhir/Observation?_total=accurate')).total, 2, 'a system token sees both');
  t.same(idsOf(json(await get('patientA', '/fhir/Patient'))), ['Patient/pa']);
  t.same(idsOf(json(await get('patientA', '/fhir/Observation?subject=Patient/pb'))), [], 'searching by the other patient finds nothing');
  t.same(idsOf(json(await get('patientA', '/fhir/Observation?subject.name=Beta'))), [], 'nor a chain to them');
  t.same(idsOf(json(await get('patientA', '/fhir/Observation?subject.name=Alpha'))), ['Observation/oa']);
  t.same(idsOf(json(await get('patientA', '/fhir/Patient?_has:Observation:subject:status=amended'))), [], '_has through the other patient\'s observation');
  t.same(idsOf(json(await get('patientA', '/fhir/Patient?_has:Observation:subject:status=final'))), ['Patient/pa']);
  t.same(idsOf(json(await get('patientA', '/fhir/Patient/pb/Observation'))), [], 'the other patient\'s compartment is empty');
  t.same(idsOf(json(await get('patientA', '/fhir/Practitioner'))), ['Practitioner/dr'], 'reference data outside any patient compartment is seen');
  t.same(idsOf(json(await get('patientA', '/fhir/Patient?general-practitioner=Practitioner/dr'))), ['Patient/pa']);
  await status(t, 'observationsA', '/fhir/Patient', 403);
  await status(t, 'none', '/fhir/Observation', 403);
  await status(t, 'userWrite', '/fhir/Observation', 403);
});

t.test('_include and _revinclude: targets of other patients, and of types not granted, are left out', async (t) => {
  t.same(idsOf(json(await get('patientA', '/fhir/Observation?_include=Observation:subject&_include=Observation:performer'))), ['Observation/oa', 'Patient/pa', 'Practitioner/dr']);
  t.same(idsOf(json(await get('observationsA', '/fhir/Observation?_include=Observation:subject&_include=Observation:performer'))), ['Observation/oa'], 'types the scopes do not grant are not included');
  t.same(idsOf(json(await get('patientA', '/fhir/Practitioner?_revinclude=Patient:general-practitioner&_revinclude=Observation:performer'))), ['Observation/oa', 'Patient/pa', 'Practitioner/dr']);
  const all = json(await get('system', '/fhir/Practitioner?_revinclude=Patient:general-practitioner&_revinclude=Observation:performer'));
  t.equal(idsOf(all).length, 5, 'a system token gets both patients and both observations');
});

t.test('history: instance, type and system list only what the token sees', async (t) => {
  await status(t, 'patientA', '/fhir/Observation/ob/_history', 200);
  const instance = json(await get('patientA', '/fhir/Observation/ob/_history'));
  t.equal(instance.total, 0, 'the other patient\'s resource has no visible history');
  t.same(idsOf(json(await get('patientA', '/fhir/Observation/_history'))), ['Observation/oa']);
  const system = json(await get('patientA', '/fhir/_history?_count=100'));
  t.notOk(idsOf(system).some((id: string) => /pb|ob|ib|bin-b/.test(id)), 'system history holds nothing of patient B');
  t.ok(idsOf(system).includes('Patient/pa') && idsOf(system).includes('Practitioner/dr'));
  const observationsOnly = json(await get('observationsA', '/fhir/_history?_count=100'));
  t.same([...new Set(idsOf(observationsOnly))], ['Observation/oa'], 'and only the granted types');
  await status(t, 'observationsA', '/fhir/Patient/_history', 403);
});

t.test('writes: the scope letters decide, and a patient-scoped write stays in its patient\'s compartment', async (t) => {
  t.equal((await send('patientA', 'POST', '/fhir/Observation', observation('x', 'pa'))).statusCode, 403, 'read scopes do not create');
  t.equal((await send('userWrite', 'POST', '/fhir/Practitioner', { resourceType: 'Practitioner', name: [{ family: 'Nouveau' }] })).statusCode, 201, 'user/*.write creates');
  const blind = await send('userWrite', 'POST', '/fhir/Observation', observation('x', 'pb'));
  t.equal(blind.statusCode, 422, 'but references only what it may see: a write-only token cannot learn, by writing, which resources exist');
  t.match(json(blind).issue[0].diagnostics, /Patient\/pb|Practitioner\/dr/);
  const created = await send('immunizationWriterA', 'POST', '/fhir/Immunization', immunization('x', 'pa'));
  t.equal(created.statusCode, 201, 'patient/Immunization.c creates for its patient');
  t.equal((await send('immunizationWriterA', 'POST', '/fhir/Immunization', immunization('x', 'pb'))).statusCode, 403, 'not for another patient');
  t.equal((await send('immunizationWriterA', 'PUT', '/fhir/Immunization/ib', immunization('ib', 'pa'))).statusCode, 404, 'another patient\'s resource cannot be overwritten (it is unknown to the token)');
  t.equal((await send('immunizationWriterA', 'DELETE', '/fhir/Immunization/ib')).statusCode, 404, 'nor deleted');
  t.equal((await get('system', '/fhir/Immunization/ib')).statusCode, 200, 'it is still there');
  const patch = [{ op: 'replace', path: '/status', value: 'not-done' }];
  t.equal((await send('immunizationWriterA', 'PATCH', '/fhir/Immunization/ib', patch, { 'content-type': 'application/json-patch+json' })).statusCode, 404, 'nor patched');
  const moveAway = [{ op: 'replace', path: '/patient/reference', value: 'Patient/pb' }];
  t.equal((await send('immunizationWriterA', 'PATCH', '/fhir/Immunization/ia', moveAway, { 'content-type': 'application/json-patch+json' })).statusCode, 403, 'a patch may not move a resource to another patient');
  t.equal((await send('immunizationWriterA', 'DELETE', `/fhir/Immunization/${json(created).id}`)).statusCode, 204, 'its own is deleted');
  t.equal((await send('patientA', 'DELETE', '/fhir/Observation/oa')).statusCode, 403, 'read scopes do not delete');
});

t.test('conditional create: a match of another patient is not revealed', async (t) => {
  const response = await send('immunizationWriterA', 'POST', '/fhir/Immunization', immunization('y', 'pa', 'only-b'), { 'if-none-exist': 'identifier=urn:test|only-b' });
  t.equal(response.statusCode, 201, 'created, as if nothing matched');
  t.not(json(response).id, 'ib');
});

t.test('transaction and batch entries are each authorised and confined', async (t) => {
  const batch = json(
    await send('patientA', 'POST', '/fhir', {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: 'Observation/oa' } },
        { request: { method: 'GET', url: 'Observation/ob' } },
        { request: { method: 'GET', url: 'Observation?_total=accurate' } },
        { request: { method: 'POST', url: 'Observation' }, resource: observation('z', 'pa') },
      ],
    }),
  );
  t.same(batch.entry.map((e: any) => e.response.status.slice(0, 3)), ['200', '404', '200', '403']);
  t.equal(batch.entry[2].resource.total, 1, 'a search entry counts only patient A');
  const transaction = await send('immunizationWriterA', 'POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:6a1f0e4c-0000-4000-8000-000000000001', request: { method: 'POST', url: 'Immunization' }, resource: immunization('t1', 'pa') },
      { fullUrl: 'urn:uuid:6a1f0e4c-0000-4000-8000-000000000002', request: { method: 'POST', url: 'Immunization' }, resource: immunization('t2', 'pb') },
    ],
  });
  t.equal(transaction.statusCode, 403, 'a transaction with an entry for another patient fails whole');
  const conditional = await send('immunizationWriterA', 'POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ request: { method: 'POST', url: 'Immunization', ifNoneExist: 'identifier=urn:test|only-b-in-transaction' }, resource: immunization('t3', 'pa', 'only-b-in-transaction') }],
  });
  t.equal(conditional.statusCode, 200);
  t.equal(json(conditional).entry[0].response.status.slice(0, 3), '201', 'a transaction\'s conditional create does not match the other patient\'s');
});

t.test('$validate needs create or update on the type', async (t) => {
  const body = immunization('v', 'pa');
  t.equal((await send('patientA', 'POST', '/fhir/Immunization/$validate', body)).statusCode, 403);
  t.equal((await send('immunizationWriterA', 'POST', '/fhir/Immunization/$validate', body)).statusCode, 200);
});
