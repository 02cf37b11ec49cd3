// The patient's consent (issue 18, items 1 and 4): each caller (an opposed practitioner, a practitioner of an
// opposed organisation, another practitioner, the médecin traitant, a masked document's author, the patient, a
// professional breaking the glass by token or by header, a feeding system that did not send the documents, the
// one that did) × every read path, asserting exactly which resources each sees, in two records: one with an
// opposition, a masked document and a document invisible to the patient, and one its patient closed.
import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const server = await startTestServer(t);
const VISIBILITY = 'https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument';
const PRIVACY = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] };
/** ppc-1: a Consent names its policy; the patient's own opposition or closure is an opt-out (v3 ActCode OPTOUT). */
const POLICY = { policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] } };
const RECIPIENT = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP' }] };
const CATEGORY = [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }];

async function put(resource: Record<string, unknown>) {
  const res = await server.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, headers: { 'content-type': FHIR_JSON }, payload: resource });
  if (res.statusCode >= 300) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body}`);
}

/** A document and its Binary name each other: written together, in one transaction. */
async function putTogether(...resources: Array<Record<string, unknown>>) {
  const entry = resources.map((resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } }));
  const res = await server.inject({ method: 'POST', url: '/fhir', headers: { 'content-type': FHIR_JSON }, payload: { resourceType: 'Bundle', type: 'transaction', entry } });
  if (res.statusCode >= 300) throw new Error(`transaction: ${res.statusCode} ${res.body}`);
}

for (const id of ['org-opposed', 'org-other']) await put({ resourceType: 'Organization', id, name: id });
for (const id of ['p-opposed', 'p-of-org', 'p-other', 'p-gp', 'p-author', 'p-er']) await put({ resourceType: 'Practitioner', id, name: [{ family: id }] });
await put({ resourceType: 'PractitionerRole', id: 'role-of-org', practitioner: { reference: 'Practitioner/p-of-org' }, organization: { reference: 'Organization/org-opposed' } });
await put({ resourceType: 'PractitionerRole', id: 'role-other', practitioner: { reference: 'Practitioner/p-other' }, organization: { reference: 'Organization/org-other' } });

const document = (id: string, patient: string, extra: Record<string, unknown> = {}) => ({
  resourceType: 'DocumentReference', id, status: 'current', subject: { reference: `Patient/${patient}` }, category: CATEGORY, date: '2026-01-02T10:00:00Z',
  identifier: [{ system: 'urn:test:doc', value: id }], author: [{ reference: 'Practitioner/p-author' }],
  content: [{ attachment: { contentType: 'text/plain', url: `Binary/bin-${id}` } }], ...extra,
});
const binary = (id: string) => ({ resourceType: 'Binary', id: `bin-${id}`, contentType: 'text/plain', securityContext: { reference: `DocumentReference/${id}` }, data: Buffer.from(`text of ${id}`).toString('base64') });

// The record with an opposition (a practitioner and an organisation), a masked and an invisible document.
await put({ resourceType: 'Patient', id: 'pat', name: [{ family: 'Martin' }], identifier: [{ system: 'urn:test:mrn', value: 'pat' }], generalPractitioner: [{ reference: 'Practitioner/p-gp' }] });
await put({
  resourceType: 'Consent', id: 'opposition', status: 'active', scope: PRIVACY, category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }], patient: { reference: 'Patient/pat' }, ...POLICY,
  provision: { type: 'permit', provision: [{ type: 'deny', actor: [{ role: RECIPIENT, reference: { reference: 'Practitioner/p-opposed' } }, { role: RECIPIENT, reference: { reference: 'Organization/org-opposed' } }] }] },
});
await put({ resourceType: 'Immunization', id: 'imm', status: 'completed', patient: { reference: 'Patient/pat' }, occurrenceDateTime: '2025-01-02', vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '140' }] }, performer: [{ actor: { reference: 'Practitioner/p-other' } }] });
for (const id of ['doc-plain', 'doc-masked', 'doc-invisible']) {
  const labels = {
    ...(id === 'doc-masked' ? { securityLabel: [{ coding: [{ system: VISIBILITY, code: 'MASQUE_PS' }] }] } : {}),
    ...(id === 'doc-invisible' ? { meta: { security: [{ system: VISIBILITY, code: 'INVISIBLE_PATIENT' }] } } : {}),
  };
  await putTogether(document(id, 'pat', labels), binary(id));
}
// The record its patient closed: an active patient-privacy Consent denying everything to everyone.
await put({ resourceType: 'Patient', id: 'closed', name: [{ family: 'Ferme' }], identifier: [{ system: 'urn:test:mrn', value: 'closed' }], generalPractitioner: [{ reference: 'Practitioner/p-gp' }] });
await put({ resourceType: 'Consent', id: 'closure', status: 'active', scope: PRIVACY, category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }], patient: { reference: 'Patient/closed' }, ...POLICY, provision: { type: 'deny' } });
await put({ resourceType: 'Immunization', id: 'imm-closed', status: 'completed', patient: { reference: 'Patient/closed' }, occurrenceDateTime: '2025-01-02', vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '140' }] } });
await putTogether(document('doc-closed', 'closed'), binary('doc-closed'));

const RECORD = ['Patient/pat', 'Consent/opposition', 'Immunization/imm', 'DocumentReference/doc-plain', 'DocumentReference/doc-masked', 'DocumentReference/doc-invisible', 'Binary/bin-doc-plain', 'Binary/bin-doc-masked', 'Binary/bin-doc-invisible'];
const CLOSED = ['Patient/closed', 'Consent/closure', 'Immunization/imm-closed', 'DocumentReference/doc-closed', 'Binary/bin-doc-closed'];
const MASKED = ['DocumentReference/doc-masked', 'Binary/bin-doc-masked'];
const INVISIBLE = ['DocumentReference/doc-invisible', 'Binary/bin-doc-invisible'];
const without = (list: string[], ...left: string[][]) => list.filter((ref) => !left.flat().includes(ref));

interface Caller {
  name: string;
  token: string;
  headers?: Record<string, string>;
  /** Exactly what it sees of the two records. */
  sees: string[];
}
const token = async (request: Parameters<typeof server.token>[0]) => `Bearer ${await server.token(request)}`;
const professional = (fhirUser: string, extra: { purposeOfUse?: string[] } = {}) => token({ scope: 'openid fhirUser user/*.cruds', fhirUser, clientId: 'gp-software', ...extra });
const CALLERS: Caller[] = [
  { name: 'opposed practitioner', token: await professional('Practitioner/p-opposed'), sees: [] },
  { name: 'practitioner of an opposed organisation', token: await professional('Practitioner/p-of-org'), sees: [] },
  { name: 'the role of an opposed organisation', token: await professional('PractitionerRole/role-of-org'), sees: [] },
  { name: 'opposed practitioner breaking the glass', token: await professional('Practitioner/p-opposed', { purposeOfUse: ['BTG'] }), sees: [] },
  { name: 'other practitioner', token: await professional('Practitioner/p-other'), sees: without(RECORD, MASKED) },
  { name: 'other practitioner acting by role', token: await professional('PractitionerRole/role-other'), sees: without(RECORD, MASKED) },
  { name: 'médecin traitant', token: await professional('Practitioner/p-gp'), sees: RECORD },
  { name: 'author of the masked document', token: await professional('Practitioner/p-author'), sees: RECORD },
  { name: 'professional breaking the glass (token)', token: await professional('Practitioner/p-er', { purposeOfUse: ['BTG'] }), sees: RECORD },
  { name: 'professional breaking the glass (header)', token: await professional('Practitioner/p-er'), headers: { 'x-purpose-of-use': 'ETREAT' }, sees: RECORD },
  { name: 'the patient', token: await token({ scope: 'openid fhirUser launch/patient patient/*.rs', fhirUser: 'Patient/pat', patient: 'pat', clientId: 'patient-app' }), sees: without(RECORD, INVISIBLE) },
  { name: 'the patient asserting an emergency (not honoured)', token: await token({ scope: 'launch/patient patient/*.rs', patient: 'pat', clientId: 'patient-app' }), headers: { 'x-purpose-of-use': 'BTG' }, sees: without(RECORD, INVISIBLE) },
  { name: 'the patient of the closed record', token: await token({ scope: 'openid fhirUser user/*.rs', fhirUser: 'Patient/closed', clientId: 'patient-app' }), sees: [...without(RECORD, MASKED, INVISIBLE), ...CLOSED] },
  { name: 'a system that did not send the documents', token: await token({ scope: 'system/*.rs', clientId: 'other-system' }), sees: [...without(RECORD, MASKED), ...CLOSED] },
  { name: 'the system that sent them', token: server.authorization, sees: [...RECORD, ...CLOSED] },
];

const ref = (resource: any) => `${resource.resourceType}/${resource.id}`;
const ofRecords = (refs: string[]) => [...new Set(refs.filter((r) => RECORD.includes(r) || CLOSED.includes(r)))].sort();
const entries = (bundle: any, mode?: string): string[] => ((bundle.entry ?? []) as any[]).filter((e) => e.resource && (!mode || e.search?.mode === mode)).map((e) => ref(e.resource));

for (const caller of CALLERS) {
  const get = (url: string, headers: Record<string, string> = {}) => server.inject({ method: 'GET', url: `/fhir/${url}`, headers: { authorization: caller.token, ...caller.headers, ...headers } });
  const post = (url: string, payload: unknown) => server.inject({ method: 'POST', url: `/fhir/${url}`, headers: { authorization: caller.token, 'content-type': FHIR_JSON, ...caller.headers }, payload: payload as any });
  const sees = (refs: string[]) => refs.filter((r) => caller.sees.includes(r)).sort();

  t.test(`${caller.name}: read, vread, Binary, history`, async (t) => {
    for (const r of [...RECORD, ...CLOSED]) {
      const expected = caller.sees.includes(r) ? 200 : 404;
      const read = await get(r);
      t.equal(read.statusCode, expected, `read ${r}`);
      if (expected === 404) t.equal(json(read).resourceType, 'OperationOutcome', `${r}: an OperationOutcome, as for an unknown resource`);
      t.equal((await get(`${r}/_history/1`)).statusCode, expected, `vread ${r}`);
      const history = await get(`${r}/_history`);
      t.same(history.statusCode === 200 ? entries(json(history)) : [], expected === 200 ? [r] : [], `instance history of ${r}`);
    }
    for (const id of ['doc-plain', 'doc-masked', 'doc-invisible', 'doc-closed']) {
      const raw = await get(`Binary/bin-${id}`, { accept: 'text/plain' });
      const expected = caller.sees.includes(`Binary/bin-${id}`);
      t.equal(raw.statusCode, expected ? 200 : 404, `raw Binary bin-${id}`);
      if (expected) t.equal(raw.body, `text of ${id}`);
    }
    t.same(ofRecords(entries(json(await get('DocumentReference/_history?_count=100')))), sees(RECORD.concat(CLOSED).filter((r) => r.startsWith('DocumentReference/'))), 'type history');
    t.same(ofRecords(entries(json(await get('_history?_count=1000')))), sees([...RECORD, ...CLOSED]), 'system history');
  });

  t.test(`${caller.name}: search, counts, includes, _has, chains, compartments`, async (t) => {
    const docs = sees([...RECORD, ...CLOSED].filter((r) => r.startsWith('DocumentReference/')));
    const search = json(await get('DocumentReference?_total=accurate&_count=100'));
    t.same(ofRecords(entries(search)), docs, 'search');
    t.equal(search.total, docs.length, '_total=accurate counts only what it sees');
    t.equal(json(await get('DocumentReference?_summary=count')).total, docs.length, '_summary=count');

    const included = json(await get('DocumentReference?_include=DocumentReference:subject&_count=100'));
    const patients = sees(['Patient/pat', 'Patient/closed']);
    const subjects = patients.filter((p) => docs.some((d) => (d === 'DocumentReference/doc-closed') === (p === 'Patient/closed')));
    t.same(ofRecords(entries(included, 'include')), subjects, '_include: the subjects it sees of the documents it sees');
    const revincluded = json(await get('Patient?_id=pat,closed&_revinclude=DocumentReference:subject&_count=100'));
    t.same(ofRecords(entries(revincluded, 'match')), patients, '_revinclude: the patients');
    t.same(ofRecords(entries(revincluded, 'include')), docs, '_revinclude: their documents');

    for (const id of ['doc-plain', 'doc-masked', 'doc-invisible']) {
      const has = json(await get(`Patient?_has:DocumentReference:subject:identifier=urn:test:doc|${id}`));
      t.same(ofRecords(entries(has)), caller.sees.includes(`DocumentReference/${id}`) && caller.sees.includes('Patient/pat') ? ['Patient/pat'] : [], `_has through ${id}`);
    }
    const chained = json(await get('DocumentReference?subject:Patient.identifier=urn:test:mrn|pat&_count=100'));
    t.same(ofRecords(entries(chained)), caller.sees.includes('Patient/pat') ? sees(RECORD.filter((r) => r.startsWith('DocumentReference/'))) : [], 'chain');

    const compartment = json(await get('Patient/pat/DocumentReference?_count=100'));
    t.same(ofRecords(entries(compartment)), sees(RECORD.filter((r) => r.startsWith('DocumentReference/'))), 'compartment search');
    const binaries = json(await get('Binary?_count=100'));
    t.same(ofRecords(entries(binaries)), sees([...RECORD, ...CLOSED].filter((r) => r.startsWith('Binary/'))), 'Binaries by their securityContext');
  });

  t.test(`${caller.name}: bundle entries, $everything, $summary`, async (t) => {
    const targets = [...RECORD, ...CLOSED];
    const batch = json(await post('', { resourceType: 'Bundle', type: 'batch', entry: [...targets.map((url) => ({ request: { method: 'GET', url } })), { request: { method: 'GET', url: 'DocumentReference?_total=accurate&_count=100' } }] }));
    t.same(batch.entry.slice(0, targets.length).map((e: any) => e.response.status.slice(0, 3)), targets.map((r) => (caller.sees.includes(r) ? '200' : '404')), 'batch reads');
    t.same(ofRecords(entries(batch.entry[targets.length].resource)), sees(targets.filter((r) => r.startsWith('DocumentReference/'))), 'batch search');

    for (const patient of ['pat', 'closed']) {
      const record = patient === 'pat' ? RECORD : CLOSED;
      const everything = await get(`Patient/${patient}/$everything?_count=1000`);
      if (caller.sees.includes(`Patient/${patient}`)) {
        t.equal(everything.statusCode, 200);
        t.same(ofRecords(entries(json(everything))), sees(record.filter((r) => !r.startsWith('Binary/'))), `$everything of ${patient}`);
      } else t.equal(everything.statusCode, 404, `$everything of ${patient}: as unknown`);
      const summary = await get(`Patient/${patient}/$summary`);
      if (caller.sees.includes(`Patient/${patient}`)) {
        t.equal(summary.statusCode, 200);
        const listed = ofRecords(entries(json(summary)));
        t.same(listed.filter((r) => r.startsWith('DocumentReference/')), sees(record.filter((r) => r.startsWith('DocumentReference/'))), `$summary of ${patient}: its documents`);
      } else t.equal(summary.statusCode, 404, `$summary of ${patient}: as unknown`);
    }
  });
}
