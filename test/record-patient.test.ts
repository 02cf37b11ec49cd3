// Every index row names the patient whose record its resource is part of (src/search/compartment.ts): a
// `Patient?_has:Immunization:patient:…` reads the patients off the matching rows. These tests hold that
// name to the record's own reference: as written, as updated, for records about someone else, and as
// migration 0008 fills it on rows written before it existed.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { loadPatientCompartment, recordPatientParams } from '../src/search/compartment.ts';
import { SearchEngine } from '../src/store/search-executor.ts';
import { parseSearch } from '../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { splitStatements } from '../src/store/migrate.ts';
import { ALL_ACCESS } from '../src/store/access.ts';
import { countingStatements, startTestServer } from './helpers/app.ts';
import { searchClient } from './helpers/search-client.ts';

// The record-patient columns are what the unrestricted `_has` plan reads: this file asks as the server itself
// (all access), since a token's caller is subject to consent and takes the access-checked plan (consent tests).
const server = await startTestServer(t, { accessOf: () => ALL_ACCESS });

// The record parameters of the DMP's types, as the server derives them from the definitions.
const DMP_TYPES = ['Immunization', 'AllergyIntolerance', 'MedicationStatement', 'DocumentReference', 'Consent'];
const derived = recordPatientParams();
const RECORD_PATIENT_PARAM: Record<string, string> = Object.fromEntries(DMP_TYPES.map((type) => [type, derived.get(type)!]));
const api = searchClient(server);

const SNOMED = 'http://snomed.info/sct';
const FLU = { coding: [{ system: 'http://www.whocc.no/atc', code: 'J07BB02' }] };
const immunization = (id: string, patient: string) => ({ resourceType: 'Immunization', id, status: 'completed', vaccineCode: FLU, patient: { reference: patient }, occurrenceDateTime: '2024-10-15' });
const documentReference = (id: string, subject: Record<string, unknown> | undefined, author: string[] = []) => ({
  resourceType: 'DocumentReference',
  id,
  status: 'current',
  type: { coding: [{ system: 'http://loinc.org', code: '11490-0' }] },
  ...(subject ? { subject } : {}),
  ...(author.length > 0 ? { author: author.map((reference) => ({ reference })) } : {}),
  content: [{ attachment: { contentType: 'application/pdf', url: `https://dmp.example.fr/docs/${id}.pdf` } }],
});

await api.putAll([
  { resourceType: 'Patient', id: 'helene', name: [{ family: 'Lefèvre' }], birthDate: '1984-03-12' },
  { resourceType: 'Patient', id: 'jacques', name: [{ family: 'Cœur' }], birthDate: '1951-07-02' },
  { resourceType: 'Patient', id: 'camille', name: [{ family: 'Roux' }], birthDate: '1995-07-13' },
  { resourceType: 'Practitioner', id: 'dr-durand', name: [{ family: 'Durand' }] },
  immunization('grippe-helene', 'Patient/helene'),
  immunization('grippe-jacques', 'Patient/jacques'),
  // About helene, written by camille (a patient can author a document in her own dossier, or a relative's).
  documentReference('lettre-de-camille', { reference: 'Patient/helene' }, ['Patient/camille']),
  documentReference('note-sur-un-medecin', { reference: 'Practitioner/dr-durand' }, ['Patient/jacques']),
  documentReference('sujet-par-identifiant', { identifier: { system: 'urn:oid:1.2.250.1.213.1.4.8', value: '295071305512323' } }),
  documentReference('sujet-ailleurs', { reference: 'https://autre-ght.example.fr/fhir/Patient/99' }),
  {
    resourceType: 'AllergyIntolerance',
    id: 'penicilline-jacques',
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
    code: { coding: [{ system: SNOMED, code: '764146007' }] },
    patient: { reference: 'Patient/jacques' },
    recorder: { reference: 'Patient/camille' },
  },
  { resourceType: 'MedicationStatement', id: 'levothyrox-camille', status: 'active', medicationCodeableConcept: { text: 'Lévothyrox' }, subject: { reference: 'Patient/camille' } },
  {
    resourceType: 'Consent',
    id: 'consentement-helene',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: 'Patient/helene' },
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
  },
]);

// Each record type, by its record parameter, and by a parameter that is not (an author, a recorder).
const searches: Array<[string, string[]]> = [
  ['_has:Immunization:patient:vaccine-code=J07BB02', ['helene', 'jacques']],
  ['_has:Immunization:patient:date=2024-10-15&birthdate=lt1960', ['jacques']],
  ['_has:DocumentReference:subject:type=11490-0', ['helene']],
  ['_has:DocumentReference:patient:type=11490-0', ['helene']],
  ['_has:DocumentReference:author:type=11490-0', ['camille', 'jacques']],
  ['_has:AllergyIntolerance:patient:code=764146007', ['jacques']],
  ['_has:AllergyIntolerance:recorder:code=764146007', ['camille']],
  ['_has:MedicationStatement:subject:status=active', ['camille']],
  ['_has:MedicationStatement:patient:status=active', ['camille']],
  ['_has:Consent:patient:status=active', ['helene']],
  ['_has:Immunization:patient:vaccine-code=J07BB02&_has:Consent:patient:status=active', ['helene']],
];

async function answers(): Promise<string[][]> {
  return Promise.all(searches.map(([query]) => api.ids(`/fhir/Patient?${query}`)));
}

t.test('a _has from records finds the patient each record is about, never its author', async (t) => {
  const got = await answers();
  searches.forEach(([query, expected], n) => t.same(got[n], expected, query));
});

t.test('a _has by a record parameter, or by `patient` where that is the record parameter for patients, reads the patients off the rows', async (t) => {
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const { db: counting, count: fromRows } = countingStatements(server.db, /SELECT h\d+\.patient_id AS target_id/);
  const engine = new SearchEngine(counting, registry);
  for (const [query, expected] of searches) {
    const before = fromRows();
    const request = parseSearch(['Patient'], [...new URLSearchParams(query)] as Array<[string, string]>, registry, { strict: true, baseUrl: 'http://x/fhir' });
    const bundle = await engine.search(request, { baseUrl: 'http://x/fhir', path: 'Patient' });
    t.same((bundle.entry ?? []).map((e) => e.resource!.id).sort(), expected, query);
    const byRecord = [...query.matchAll(/_has:(\w+):([\w-]+):/g)].filter(([, type, param]) => param === RECORD_PATIENT_PARAM[type!] || param === 'patient').length;
    t.equal(fromRows() - before, byRecord, `${query}: ${byRecord} read off the rows`);
  }
  for (const type of ['DocumentReference', 'MedicationStatement']) {
    const record = registry.get(type, RECORD_PATIENT_PARAM[type]!)!.expression;
    t.equal(registry.get(type, 'patient')?.expression, `${record}.where(reference.startsWith('Patient/'))`, `${type}: patient is ${record} for patients`);
  }
});

t.test('a record moved to another patient is found from its new patient only', async (t) => {
  await api.put(immunization('grippe-jacques', 'Patient/camille'));
  t.same(await api.ids('/fhir/Patient?_has:Immunization:patient:vaccine-code=J07BB02'), ['camille', 'helene']);
  await api.put(immunization('grippe-jacques', 'Patient/jacques'));
  t.same(await api.ids('/fhir/Patient?_has:Immunization:patient:vaccine-code=J07BB02'), ['helene', 'jacques']);
});

const TABLES = ['token', 'string', 'date', 'reference', 'uri', 'number', 'quantity', 'composite'];
const MIGRATION = readFileSync(new URL('../src/store/migrations/0008_record_patient.sql', import.meta.url), 'utf8');

async function patientColumn(): Promise<string[]> {
  const rows: string[] = [];
  for (const table of TABLES) {
    const { rows: found } = await server.db.query<{ line: string }>(
      `SELECT concat_ws(' ', '${table}', resource_type, resource_id, param, coalesce(patient_id, '-')) AS line FROM search_${table}`,
    );
    rows.push(...found.map((row) => row.line));
  }
  return rows.sort();
}

t.test('migration 0008 names, on rows written before it, the patient the server names on rows it writes', async (t) => {
  const written = await patientColumn();
  t.ok(written.some((line) => line.startsWith('token Immunization grippe-helene vaccine-code helene')), 'an immunization names its patient');
  t.ok(written.some((line) => line.startsWith('reference DocumentReference note-sur-un-medecin author -')), 'a note about a practitioner names no patient');
  for (const table of TABLES) await server.db.query(`UPDATE search_${table} SET patient_id = NULL`);
  t.same(await api.ids('/fhir/Patient?_has:Immunization:patient:vaccine-code=J07BB02'), [], 'rows without it: nothing is found');
  // The migration's statements after the columns it adds: what it does to a store that has data.
  const backfill = splitStatements(MIGRATION).filter((statement) => !statement.startsWith('ALTER TABLE'));
  await server.db.transaction(async (tx) => {
    for (const statement of backfill) await tx.query(statement);
  });
  t.same(await patientColumn(), written);
  const got = await answers();
  searches.forEach(([query, expected], n) => t.same(got[n], expected, `after the migration: ${query}`));
});

t.test("the record parameters derived from the definitions are, for the DMP's types, migration 0008's hand-written pairs, each one of the type's Patient compartment parameters", async (t) => {
  const pairs = [...MIGRATION.matchAll(/\('([A-Za-z]+)', '([a-z-]+)'\)/g)].map((m) => [m[1]!, m[2]!]);
  t.same(Object.entries(RECORD_PATIENT_PARAM).sort(), pairs.sort());
  t.same(RECORD_PATIENT_PARAM, { Immunization: 'patient', AllergyIntolerance: 'patient', MedicationStatement: 'subject', DocumentReference: 'subject', Consent: 'patient' });
  const compartment = loadPatientCompartment();
  for (const [type, param] of Object.entries(RECORD_PATIENT_PARAM)) t.ok(compartment.get(type)?.includes(param), `${type}.${param}`);
});
