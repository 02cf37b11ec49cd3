// Reference search (R4 search.html#reference, #chaining, #has): Type/id, bare id, :[type], absolute
// URLs, :identifier (spec: subject:identifier=http://acme.org/fhir/identifier/mrn|123456), chains
// (spec: subject.name=peter, subject:Patient.name=peter), multi-level chains, reverse chaining
// (spec: Patient?_has:Observation:patient:code=1234-5) and :missing.
import t from 'tap';
import type { Bundle } from 'fhir/r4';
import { SearchEngine } from '../src/store/search-executor.ts';
import { parseSearch } from '../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { countingStatements, startTestServer } from './helpers/app.ts';
import { idNatPsRpps, INS, nir, q, searchClient } from './helpers/search-client.ts';

// cr-orphelin keeps naming Patient/supprime once it is deleted, as data migrated from elsewhere may: only a
// server without referential integrity deletes a resource still referenced.
const server = await startTestServer(t, { referentialIntegrity: 'off' });
const api = searchClient(server);

const RPPS = 'urn:oid:1.2.250.1.71.4.2.1';
const SNOMED = 'http://snomed.info/sct';
const DURAND = idNatPsRpps('1000123456');
const MERCIER = idNatPsRpps('1000765432');
const NIR_HELENE = nir('2840375123456');
const NIR_CAMILLE = nir('2950713055123');

const doc = (id: string, subject: Record<string, unknown>, author: Array<Record<string, unknown>> = []) => ({
  resourceType: 'DocumentReference',
  id,
  status: 'current',
  subject,
  ...(author.length > 0 ? { author } : {}),
  content: [{ attachment: { contentType: 'application/pdf', url: `https://dmp.example.fr/docs/${id}.pdf` } }],
});
const vaccination = (id: string, patient: string, performer?: string) => ({
  resourceType: 'Immunization',
  id,
  status: 'completed',
  vaccineCode: { coding: [{ system: 'http://phast.fr/fhir/CodeSystem/ucd', code: '9439138', display: 'Vaxigrip Tetra' }] },
  patient: { reference: patient },
  occurrenceDateTime: '2023-10-12',
  ...(performer ? { performer: [{ actor: { reference: performer } }] } : {}),
});

await api.putAll([
  { resourceType: 'Practitioner', id: 'dr-durand', identifier: [{ system: RPPS, value: DURAND }], name: [{ family: 'Durand', given: ['Sophie'], prefix: ['Dr'] }] },
  { resourceType: 'Practitioner', id: 'dr-mercier', identifier: [{ system: RPPS, value: MERCIER }], name: [{ family: 'Mercier', given: ['Éric'] }] },
  { resourceType: 'Organization', id: 'hcl', name: 'Hospices Civils de Lyon' },
  {
    resourceType: 'Patient',
    id: 'helene',
    identifier: [{ system: INS, value: NIR_HELENE }],
    name: [{ family: 'Lefèvre', given: ['Hélène'] }],
    generalPractitioner: [{ reference: 'Practitioner/dr-durand' }],
  },
  { resourceType: 'Patient', id: 'jacques', name: [{ family: 'Cœur', given: ['Jacques'] }], generalPractitioner: [{ reference: 'Practitioner/dr-mercier' }] },
  { resourceType: 'Patient', id: 'camille', identifier: [{ system: INS, value: NIR_CAMILLE }], name: [{ family: 'Roux', given: ['Camille'] }] },
  { resourceType: 'Patient', id: 'supprime', name: [{ family: 'Supprimé' }] },
  doc('cr-hospit', { reference: 'Patient/helene' }, [{ reference: 'Practitioner/dr-durand' }, { reference: 'Organization/hcl' }]),
  doc('cr-labo', { reference: 'Patient/jacques' }, [{ reference: 'Practitioner/dr-mercier' }]),
  doc('note-sur-durand', { reference: 'Practitioner/dr-durand' }),
  doc('cr-ident', { identifier: { system: INS, value: NIR_CAMILLE }, display: 'Camille Roux' }, [{ reference: 'Patient/camille' }]),
  doc('cr-externe', { reference: 'https://autre-ght.example.fr/fhir/Patient/99' }),
  doc('cr-orphelin', { reference: 'Patient/supprime' }),
  vaccination('vac-helene', 'Patient/helene', 'Practitioner/dr-durand'),
  vaccination('vac-jacques', 'Patient/jacques'),
  vaccination('vac-camille', 'Patient/camille', 'Organization/hcl'),
  { resourceType: 'AllergyIntolerance', id: 'allergie-helene', clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] }, code: { coding: [{ system: SNOMED, code: '764146007', display: 'Pénicilline' }] }, patient: { reference: 'Patient/helene' } },
  { resourceType: 'AllergyIntolerance', id: 'allergie-jacques', clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] }, code: { coding: [{ system: SNOMED, code: '227493005', display: 'Noix de cajou' }] }, patient: { reference: 'Patient/jacques' } },
]);
await api.delete('Patient/supprime');

t.test('Type/id, bare id, :[type] (spec: subject=Patient/23, subject:Patient=23)', async (t) => {
  t.same(await api.ids('/fhir/DocumentReference?subject=Patient/helene'), ['cr-hospit']);
  t.same(await api.ids('/fhir/DocumentReference?subject:Patient=helene'), ['cr-hospit']);
  t.same(await api.ids('/fhir/DocumentReference?subject=helene'), ['cr-hospit'], 'a bare id, whatever the type');
  t.same(await api.ids('/fhir/DocumentReference?patient=helene'), ['cr-hospit']);
  t.same(await api.ids('/fhir/DocumentReference?subject:Practitioner=helene'), []);
  t.same(await api.ids('/fhir/Immunization?patient=Patient/helene,Patient/jacques'), ['vac-helene', 'vac-jacques']);
  t.same(await api.ids('/fhir/DocumentReference?author:Organization=hcl'), ['cr-hospit']);
  t.same(await api.ids('/fhir/DocumentReference?author=Practitioner/dr-mercier'), ['cr-labo']);
  t.same(await api.ids('/fhir/DocumentReference?subject=Patient/helene/_history/1'), ['cr-hospit'], 'a version-specific reference searches the resource');
  t.same(await api.ids('/fhir/DocumentReference?subject=Patient/supprime'), ['cr-orphelin'], 'the reference, not the target, is searched');
});

t.test('absolute references: this server\'s own base is local, others are matched as URLs', async (t) => {
  t.same(await api.ids(`/fhir/DocumentReference?${q('subject', 'http://localhost/fhir/Patient/helene')}`), ['cr-hospit']);
  t.same(await api.ids(`/fhir/DocumentReference?${q('subject', 'https://autre-ght.example.fr/fhir/Patient/99')}`), ['cr-externe']);
  t.same(await api.ids('/fhir/DocumentReference?subject=Patient/99'), []);
});

t.test('bad reference modifiers are a 400 naming the parameter', async (t) => {
  for (const name of ['subject:Observation', 'subject:Organization', 'subject:exact']) {
    const res = await api.get(`/fhir/DocumentReference?${name}=x`);
    t.equal(res.status, 400, name);
    t.same(res.body.issue[0].expression, [name], name);
  }
  const res = await api.get('/fhir/DocumentReference?subject:Patient=Practitioner/dr-durand');
  t.equal(res.status, 400, 'the value\'s type contradicts the modifier');
});

t.test(':identifier matches Reference.identifier (spec: subject:identifier=system|value)', async (t) => {
  t.same(await api.ids(`/fhir/DocumentReference?${q('subject:identifier', `${INS}|${NIR_CAMILLE}`)}`), ['cr-ident']);
  t.same(await api.ids(`/fhir/DocumentReference?${q('subject:identifier', NIR_CAMILLE)}`), ['cr-ident'], 'value alone');
  t.same(await api.ids(`/fhir/DocumentReference?${q('subject:identifier', `${INS}|${NIR_HELENE}`)}`), [], 'not the target\'s identifier');
  t.same(await api.ids(`/fhir/DocumentReference?${q('subject:identifier', `urn:oid:1.2.3|${NIR_CAMILLE}`)}`), []);
});

t.test('chaining (spec: subject:Patient.name=peter) and multi-level chains', async (t) => {
  t.same(await api.ids('/fhir/DocumentReference?subject:Patient.name=lefevre'), ['cr-hospit']);
  t.same(await api.ids('/fhir/Immunization?patient.name=coeur'), ['vac-jacques'], 'one target type: no qualifier needed');
  t.same(await api.ids(`/fhir/DocumentReference?${q('subject:Patient.identifier', `${INS}|${NIR_HELENE}`)}`), ['cr-hospit']);
  t.same(await api.ids(`/fhir/DocumentReference?${q('author:Practitioner.identifier', `${RPPS}|${DURAND}`)}`), ['cr-hospit']);
  t.same(await api.ids('/fhir/DocumentReference?subject:Patient._id=jacques'), ['cr-labo']);
  t.same(await api.ids('/fhir/Immunization?patient.general-practitioner:Practitioner.name=durand'), ['vac-helene'], 'two levels');
  t.same(await api.ids('/fhir/Immunization?performer:Practitioner.family=durand&patient.name=hel'), ['vac-helene']);
  t.same(await api.ids('/fhir/DocumentReference?subject:Patient.name=supprime'), [], 'a deleted target matches no chain');
  // subject may be a Patient or a Practitioner (among others), both having `name`: both are searched.
  t.same(await api.ids('/fhir/DocumentReference?subject.name=hel'), await api.ids('/fhir/DocumentReference?subject:Patient.name=hel'));
  t.same(await api.ids('/fhir/DocumentReference?subject.name=durand'), ['note-sur-durand'], 'a Practitioner subject is found without naming the type');
  t.same(await api.ids('/fhir/DocumentReference?subject:Patient.name=roux'), [], 'a reference by identifier only has no target to chain to');
});

t.test('chains that cannot be resolved are a 400 naming the parameter', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['subject:Observation.code', /subject:Observation\.code/],
    ['subject:Patient.nonexistent', /nonexistent/],
    ['status.name', /not a reference/],
  ];
  for (const [name, message] of cases) {
    const res = await api.get(`/fhir/DocumentReference?${name}=x`);
    t.equal(res.status, 400, name);
    t.match(res.body.issue[0].diagnostics, message, name);
    t.same(res.body.issue[0].expression, [name], name);
  }
});

t.test('_has: reverse chaining (spec: Patient?_has:Observation:patient:code=1234-5)', async (t) => {
  t.same(await api.ids('/fhir/Patient?_has:AllergyIntolerance:patient:code=764146007'), ['helene']);
  t.same(await api.ids(`/fhir/Patient?${q('_has:AllergyIntolerance:patient:code', `${SNOMED}|227493005`)}`), ['jacques']);
  t.same(await api.ids('/fhir/Patient?_has:Immunization:patient:status=completed'), ['camille', 'helene', 'jacques']);
  t.same(await api.ids('/fhir/Practitioner?_has:DocumentReference:author:subject=Patient/helene'), ['dr-durand']);
  t.same(await api.ids('/fhir/Patient?_has:DocumentReference:subject:author:Practitioner.name=mercier'), ['jacques'], '_has with a chain inside');
  t.same(
    await api.ids('/fhir/Patient?_has:AllergyIntolerance:patient:code=764146007&_has:Immunization:patient:status=completed'),
    ['helene'],
    'two _has: AND',
  );
  t.same(await api.ids('/fhir/Patient?_has:AllergyIntolerance:patient:code=000'), []);
  for (const name of ['_has:Parameters:patient:code', '_has:AllergyIntolerance:code:code', '_has:AllergyIntolerance:patient']) {
    const res = await api.get(`/fhir/Patient?${name}=1`);
    t.equal(res.status, 400, name);
    t.same(res.body.issue[0].expression, [name], name);
  }
});

t.test('_has nested (spec: Patient?_has:Observation:patient:_has:AuditEvent:entity:agent=MyUserId)', async (t) => {
  t.same(await api.ids('/fhir/Practitioner?_has:Patient:general-practitioner:_has:AllergyIntolerance:patient:code=764146007'), ['dr-durand']);
  t.same(await api.ids('/fhir/Practitioner?_has:Patient:general-practitioner:_has:Immunization:patient:status=completed'), ['dr-durand', 'dr-mercier']);
  t.same(await api.ids('/fhir/Practitioner?_has:Patient:general-practitioner:_has:AllergyIntolerance:patient:code=000'), []);
});

t.test('_has does not see a deleted source, nor its old version after an update', async (t) => {
  const allergy = (code: string) => ({ resourceType: 'AllergyIntolerance', id: 'allergie-camille', clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] }, patient: { reference: 'Patient/camille' }, code: { coding: [{ system: SNOMED, code }] } });
  await api.put(allergy('91936005'));
  t.same(await api.ids('/fhir/Patient?_has:AllergyIntolerance:patient:code=91936005'), ['camille']);
  await api.put(allergy('300916003'));
  t.same(await api.ids('/fhir/Patient?_has:AllergyIntolerance:patient:code=91936005'), [], 'the replaced code');
  t.same(await api.ids('/fhir/Patient?_has:AllergyIntolerance:patient:code=300916003'), ['camille']);
  await api.delete('AllergyIntolerance/allergie-camille');
  t.same(await api.ids('/fhir/Patient?_has:AllergyIntolerance:patient:code=300916003'), [], 'the deleted allergy');
});

t.test('a _has read first as ids and one left to the planner as a subquery find the same', async (t) => {
  const registry = new SearchParameterRegistry(loadSearchParameters());
  // Statements that read a _has's sources on their own (one row per source, no resource content).
  const { db: counting, count: sourceReads } = countingStatements(server.db, /AS targets FROM \(SELECT h\d+\.(target|patient)_id/);
  const listing = new SearchEngine(counting, registry);
  const planner = new SearchEngine(counting, registry, undefined, undefined, { sources: 0, countedSources: 0 });
  // A _has on an indexed parameter with more matching index rows than `countedSources` is left to the planner without reading its sources.
  const codeCounted = new SearchEngine(counting, registry, undefined, undefined, { sources: 100, countedSources: 1 });
  const searches: Array<[string, string]> = [
    ['Patient', '_has:Immunization:patient:status=completed'],
    // Two pages: the total is counted, in the page statement when the ids are listed.
    ['Patient', '_has:Immunization:patient:status=completed&_count=2'],
    ['Patient', '_has:Immunization:patient:status=completed&_count=1&_total=accurate&_sort=-_id'],
    ['Patient', '_has:Immunization:patient:status=completed&_id=helene,camille,supprime'],
    ['Patient', '_has:Immunization:patient:status=completed&identifier=' + encodeURIComponent(`${INS}|${NIR_CAMILLE}`)],
    ['Patient', '_has:AllergyIntolerance:patient:code=764146007&_has:Immunization:patient:status=completed'],
    ['Patient', '_has:DocumentReference:subject:author:Practitioner.name=mercier'],
    ['Patient', '_has:AllergyIntolerance:patient:code=000'],
    ['Patient', '_has:Immunization:patient:date=2023-10-12'],
    ['Practitioner', '_has:Patient:general-practitioner:_has:Immunization:patient:status=completed'],
    ['Practitioner', '_has:DocumentReference:author:subject=Patient/helene&_sort=-_id'],
  ];
  for (const [type, query] of searches) {
    const run = async (engine: SearchEngine) => {
      const before = sourceReads();
      const request = parseSearch([type], [...new URLSearchParams(query)] as Array<[string, string]>, registry, { strict: true, baseUrl: 'http://x/fhir' });
      const bundle: Bundle = await engine.search(request, { baseUrl: 'http://x/fhir', path: type });
      return { ids: (bundle.entry ?? []).map((e) => e.resource!.id), total: bundle.total, sourceReads: sourceReads() - before };
    };
    const listed = await run(listing);
    const planned = await run(planner);
    const counted = await run(codeCounted);
    t.same(listed.ids, planned.ids, `${type}?${query}`);
    t.equal(listed.total, planned.total, `${type}?${query}: total`);
    t.same(counted.ids, planned.ids, `${type}?${query}: after counting index rows`);
    t.equal(counted.total, planned.total, `${type}?${query}: total after counting index rows`);
    if (query.includes('_count')) t.equal(listed.total, 3, `${type}?${query}: three patients were vaccinated`);
    t.ok(listed.sourceReads > 0 && planned.sourceReads === 0, `${type}?${query}: the sources were read first`);
    if (query === '_has:Immunization:patient:status=completed') t.equal(counted.sourceReads, 0, 'three completed immunizations are more code rows than allowed: not read');
    if (query.startsWith('_has:AllergyIntolerance:patient:code=764146007&')) t.equal(counted.sourceReads, 1, 'one penicillin allergy is not: read first');
    if (query.startsWith('_has:DocumentReference:subject:author')) t.equal(counted.sourceReads, 1, 'a chain inside is not counted: read first');
    if (query === '_has:Immunization:patient:date=2023-10-12') t.equal(counted.sourceReads, 0, 'three immunizations that day are more date rows than allowed: not read');
    if (query.startsWith('_has:DocumentReference:author:subject')) t.equal(counted.sourceReads, 1, 'one document about helene: a reference counted, then read first');
  }
});

t.test(':missing on references', async (t) => {
  t.same(await api.ids('/fhir/Immunization?performer:missing=true'), ['vac-jacques']);
  t.same(await api.ids('/fhir/Immunization?performer:missing=false'), ['vac-camille', 'vac-helene']);
  t.same(await api.ids('/fhir/DocumentReference?author:missing=true'), ['cr-externe', 'cr-orphelin', 'note-sur-durand']);
});
