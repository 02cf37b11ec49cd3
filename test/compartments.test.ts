// Compartments (R4 compartmentdefinition.html): the five official definitions as data, each written resource's
// members in them (several per resource), the record patient where a resource has one, compartment search
// through the membership, and migration 0012 filling both for a store written before it.
import t from 'tap';
import type { CompartmentDefinition, Resource, SearchParameter } from 'fhir/r4';
import { r4Resources, readR4Definition, R4_COMPARTMENT_FILES } from '../src/fhir/r4/r4-definitions.ts';
import { SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';
import { COMPARTMENT_TYPES, loadCompartments, recordPatientParams } from '../src/search/compartment.ts';
import { SearchEngine } from '../src/store/search-executor.ts';
import { SearchIndexWriter } from '../src/store/index-writer.ts';
import { parseSearch } from '../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import type { Filter } from '../src/search/types.ts';
import { migrate } from '../src/store/migrate.ts';
import { Repository } from '../src/store/repository.ts';
import { startTestServer } from './helpers/app.ts';
import { searchClient } from './helpers/search-client.ts';

const definitions: SearchParameter[] = loadSearchParameters();

t.test('the four added definitions are the R4 4.0.1 ones: R4 resource types, R4 search parameters', async (t) => {
  const r4Types = new Set(
    r4Resources<{ resourceType: string; kind?: string; derivation?: string; abstract?: boolean; type: string }>('profiles-resources.json')
      .filter((r) => r.resourceType === 'StructureDefinition' && r.kind === 'resource' && r.derivation === 'specialization' && !r.abstract)
      .map((r) => r.type),
  );
  const codes = new Set(definitions.map((d) => `${d.code} ${(d.base as string[]).join(' ')}`));
  for (const file of R4_COMPARTMENT_FILES) {
    const definition = readR4Definition<CompartmentDefinition>(file);
    t.equal(definition.version, '4.0.1', `${file}: version`);
    t.ok(definition.url?.startsWith('http://hl7.org/fhir/CompartmentDefinition/'), `${file}: url`);
    const resources = definition.resource ?? [];
    // Parameters, a resource only as an operation's input or output, is in no compartment's list.
    t.same(resources.map((r) => r.code).sort(), [...r4Types].filter((type) => type !== 'Parameters').sort(), `${file}: one entry for each R4 resource type, and no other`);
    const unknown = resources.flatMap((r) =>
      (r.param ?? []).filter((p) => p !== '{def}' && ![...codes].some((c) => c.split(' ')[0] === p && c.split(' ').slice(1).includes(r.code))).map((p) => `${r.code}.${p}`),
    );
    t.same(unknown, [], `${file}: every parameter is an R4 SearchParameter of its type`);
  }
  t.same([...loadCompartments().keys()], [...COMPARTMENT_TYPES]);
  t.same(loadCompartments().get('Practitioner')?.params.get('Immunization'), ['performer']);
  t.same(loadCompartments().get('Device')?.params.get('Group'), ['member']);
  t.same(loadCompartments().get('Encounter')?.params.get('DocumentReference'), ['encounter']);
});

t.test('record parameters: one patient a record is about, none for resources that belong to several', async (t) => {
  const derived = recordPatientParams(definitions);
  const pick = (types: string[]) => Object.fromEntries(types.map((type) => [type, derived.get(type) ?? null]));
  t.same(pick(['Immunization', 'AllergyIntolerance', 'MedicationStatement', 'DocumentReference', 'Consent']), {
    Immunization: 'patient',
    AllergyIntolerance: 'patient',
    MedicationStatement: 'subject',
    DocumentReference: 'subject',
    Consent: 'patient',
  }, "the DMP's types: migration 0008's five pairs");
  t.same(pick(['Observation', 'Encounter', 'Condition', 'Communication', 'Group', 'Appointment', 'Provenance', 'Practitioner', 'Binary']), {
    Observation: 'subject',
    Encounter: 'subject',
    Condition: 'patient',
    Communication: 'subject',
    Group: null,
    Appointment: null,
    Provenance: null,
    Practitioner: null,
    Binary: null,
  });
});

// Types the server does not serve over HTTP yet are written here through a repository that indexes them.
const EXTRA_TYPES = ['Group', 'Appointment', 'Provenance', 'Encounter', 'Observation', 'RelatedPerson', 'Device'];
const registry = new SearchParameterRegistry(definitions, [...SERVED_RESOURCE_TYPES, ...EXTRA_TYPES]);
const server = await startTestServer(t);
const api = searchClient(server);
const repo = new Repository(server.db, new SearchIndexWriter(registry));
const engine = new SearchEngine(server.db, registry);
const BASE = 'http://x/fhir';

const FLU = { coding: [{ system: 'http://www.whocc.no/atc', code: 'J07BB02' }] };
const RESOURCES = [
  { resourceType: 'Patient', id: 'helene', name: [{ family: 'Lefèvre' }] },
  { resourceType: 'Patient', id: 'jacques', name: [{ family: 'Cœur' }] },
  { resourceType: 'Patient', id: 'camille', name: [{ family: 'Roux' }] },
  { resourceType: 'Practitioner', id: 'dr-durand', name: [{ family: 'Durand' }] },
  { resourceType: 'RelatedPerson', id: 'fille-de-jacques', patient: { reference: 'Patient/jacques' } },
  { resourceType: 'Device', id: 'lecteur', status: 'active' },
  { resourceType: 'Encounter', id: 'consultation', status: 'finished', class: { code: 'AMB' }, subject: { reference: 'Patient/helene' }, participant: [{ individual: { reference: 'Practitioner/dr-durand' } }] },
  {
    resourceType: 'Immunization',
    id: 'grippe-helene',
    status: 'completed',
    vaccineCode: FLU,
    patient: { reference: 'Patient/helene' },
    occurrenceDateTime: '2024-10-15',
    performer: [{ actor: { reference: 'Practitioner/dr-durand' } }],
  },
  { resourceType: 'Immunization', id: 'grippe-jacques', status: 'completed', vaccineCode: FLU, patient: { reference: 'Patient/jacques' }, occurrenceDateTime: '2024-10-16' },
  {
    resourceType: 'DocumentReference',
    id: 'compte-rendu',
    status: 'current',
    subject: { reference: 'Patient/jacques' },
    author: [{ reference: 'RelatedPerson/fille-de-jacques' }, { reference: 'Device/lecteur' }],
    context: { encounter: [{ reference: 'Encounter/consultation' }] },
    content: [{ attachment: { contentType: 'application/pdf', url: 'https://dmp.example.fr/docs/cr.pdf' } }],
  },
  { resourceType: 'Observation', id: 'tension', status: 'final', code: { text: 'tension' }, subject: { reference: 'Patient/helene' }, encounter: { reference: 'Encounter/consultation' }, device: { reference: 'Device/lecteur' } },
  {
    resourceType: 'Group',
    id: 'fratrie',
    type: 'person',
    actual: true,
    member: [{ entity: { reference: 'Patient/helene' } }, { entity: { reference: 'Patient/jacques' } }, { entity: { reference: 'Device/lecteur' } }],
  },
  {
    resourceType: 'Appointment',
    id: 'rdv',
    status: 'booked',
    participant: [
      { actor: { reference: 'Patient/helene' }, status: 'accepted' },
      { actor: { reference: 'Patient/camille' }, status: 'accepted' },
      { actor: { reference: 'Practitioner/dr-durand' }, status: 'accepted' },
    ],
  },
  {
    resourceType: 'Provenance',
    id: 'import',
    target: [{ reference: 'Patient/helene' }, { reference: 'Patient/jacques' }, { reference: 'Immunization/grippe-helene' }],
    recorded: '2024-10-17T10:00:00+02:00',
    agent: [{ who: { reference: 'Practitioner/dr-durand' } }],
  },
] as unknown as Array<Resource & { id: string }>;
for (const resource of RESOURCES) await repo.update(resource, { baseUrl: BASE });

async function membership(): Promise<string[]> {
  const { rows } = await server.db.query<{ line: string }>(
    `SELECT resource_type || '/' || resource_id || ' in ' || compartment_type || '/' || compartment_id AS line FROM compartment_member`,
  );
  return rows.map((row) => row.line).sort();
}

async function recordPatients(): Promise<string[]> {
  const { rows } = await server.db.query<{ line: string }>(
    `SELECT DISTINCT resource_type || '/' || resource_id || ' ' || coalesce(patient_id, '-') AS line FROM search_reference
     UNION SELECT DISTINCT resource_type || '/' || resource_id || ' ' || coalesce(patient_id, '-') FROM search_token`,
  );
  return rows.map((row) => row.line).sort();
}

const EXPECTED_MEMBERSHIP = [
  'Appointment/rdv in Patient/camille',
  'Appointment/rdv in Patient/helene',
  'Appointment/rdv in Practitioner/dr-durand',
  'Device/lecteur in Device/lecteur',
  'DocumentReference/compte-rendu in Device/lecteur',
  'DocumentReference/compte-rendu in Encounter/consultation',
  'DocumentReference/compte-rendu in Patient/jacques',
  'DocumentReference/compte-rendu in RelatedPerson/fille-de-jacques',
  'Encounter/consultation in Encounter/consultation',
  'Encounter/consultation in Patient/helene',
  'Encounter/consultation in Practitioner/dr-durand',
  'Group/fratrie in Device/lecteur',
  'Group/fratrie in Patient/helene',
  'Group/fratrie in Patient/jacques',
  'Immunization/grippe-helene in Patient/helene',
  'Immunization/grippe-helene in Practitioner/dr-durand',
  'Immunization/grippe-jacques in Patient/jacques',
  'Observation/tension in Device/lecteur',
  'Observation/tension in Encounter/consultation',
  'Observation/tension in Patient/helene',
  'Patient/camille in Patient/camille',
  'Patient/helene in Patient/helene',
  'Patient/jacques in Patient/jacques',
  'Practitioner/dr-durand in Practitioner/dr-durand',
  'Provenance/import in Patient/helene',
  'Provenance/import in Patient/jacques',
  'Provenance/import in Practitioner/dr-durand',
  'RelatedPerson/fille-de-jacques in Patient/jacques',
  'RelatedPerson/fille-de-jacques in RelatedPerson/fille-de-jacques',
];

t.test('each resource is a member of every compartment its definitions put it in, several per resource', async (t) => {
  t.same(await membership(), EXPECTED_MEMBERSHIP);
});

t.test("the record patient: one patient's record names it, a resource of several patients names none", async (t) => {
  const lines = await recordPatients();
  for (const expected of ['Immunization/grippe-helene helene', 'Observation/tension helene', 'Encounter/consultation helene', 'DocumentReference/compte-rendu jacques', 'Patient/camille camille', 'RelatedPerson/fille-de-jacques jacques']) {
    t.ok(lines.includes(expected), expected);
  }
  for (const several of ['Group/fratrie', 'Appointment/rdv', 'Provenance/import']) t.same(lines.filter((l) => l.startsWith(`${several} `)), [`${several} -`], `${several}: none`);
});

const parse = (type: string, query: string) => parseSearch([type], [...new URLSearchParams(query)] as Array<[string, string]>, registry, { strict: true, baseUrl: BASE });

async function search(type: string, query: string, compartment?: [string, string]): Promise<string[]> {
  const request = parse(type, query);
  if (compartment) request.filters.unshift({ kind: 'compartment', compartmentType: compartment[0], id: compartment[1] } as Filter);
  const bundle = await engine.search(request, { baseUrl: BASE, path: type });
  return (bundle.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id!).sort();
}

/** `Patient?_has:{source}:{param}:{inner}` (built here: the parser takes served source types only). */
async function patientsHaving(source: string, param: string, inner: string): Promise<string[]> {
  const request = parse('Patient', '');
  request.filters.push({ kind: 'has', sourceType: source, param: registry.get(source, param)!, inner: parse(source, inner).filters[0]! });
  const bundle = await engine.search(request, { baseUrl: BASE, path: 'Patient' });
  return (bundle.entry ?? []).map((e) => e.resource!.id!).sort();
}

t.test('a _has from resources of several patients finds every one of them', async (t) => {
  t.same(await patientsHaving('Group', 'member', '_id=fratrie'), ['helene', 'jacques'], 'a Group with two patient members');
  t.same(await patientsHaving('Appointment', 'actor', 'status=booked'), ['camille', 'helene'], 'an Appointment with two patient participants');
  t.same(await patientsHaving('Appointment', 'patient', 'status=booked'), ['camille', 'helene'], 'by its `patient` parameter');
  t.same(await patientsHaving('Provenance', 'patient', '_id=import'), ['helene', 'jacques'], "a Provenance targeting two patients' records");
  t.same(await patientsHaving('Provenance', 'target', 'recorded=2024-10-17'), ['helene', 'jacques']);
  t.same(await patientsHaving('Observation', 'subject', 'status=final'), ['helene'], 'a record parameter: read off the rows');
  t.same(await patientsHaving('Encounter', 'patient', 'status=finished'), ['helene'], '`patient`: the record parameter for patients');
  t.same(await search('Patient', '_has:Immunization:patient:vaccine-code=J07BB02'), ['helene', 'jacques'], 'and from a served type, as parsed');
});

t.test('a compartment search finds its members, in each of the five compartments', async (t) => {
  t.same(await search('Appointment', '', ['Patient', 'camille']), ['rdv']);
  t.same(await search('Group', '', ['Patient', 'jacques']), ['fratrie']);
  t.same(await search('Provenance', '', ['Patient', 'jacques']), ['import']);
  t.same(await search('Immunization', '', ['Practitioner', 'dr-durand']), ['grippe-helene']);
  t.same(await search('Encounter', '', ['Practitioner', 'dr-durand']), ['consultation']);
  t.same(await search('Observation', '', ['Encounter', 'consultation']), ['tension']);
  t.same(await search('Encounter', '', ['Encounter', 'consultation']), ['consultation'], 'the compartment holds its own resource');
  t.same(await search('DocumentReference', '', ['RelatedPerson', 'fille-de-jacques']), ['compte-rendu']);
  t.same(await search('Observation', '', ['Device', 'lecteur']), ['tension']);
  t.same(await search('Group', '', ['Device', 'lecteur']), ['fratrie']);
  t.same(await search('Immunization', 'date=2024-10-15', ['Patient', 'helene']), ['grippe-helene'], 'with other filters');
  t.same(await search('Immunization', 'date=2024-10-16', ['Patient', 'helene']), []);
});

t.test('over HTTP, for the served types: /{compartment}/{id}/{type}', async (t) => {
  t.same(await api.ids('/fhir/Patient/helene/Immunization'), ['grippe-helene']);
  t.same(await api.ids('/fhir/Patient/helene/Patient'), ['helene'], 'a patient is in its own compartment');
  t.same(await api.ids('/fhir/Practitioner/dr-durand/Immunization'), ['grippe-helene'], 'by performer');
  t.same(await api.ids('/fhir/Practitioner/dr-durand/Immunization?date=2024-10-16'), []);
  t.same(await api.ids('/fhir/Encounter/consultation/DocumentReference'), ['compte-rendu'], 'an encounter: its documents');
  t.same(await api.ids('/fhir/RelatedPerson/fille-de-jacques/DocumentReference'), ['compte-rendu'], 'a related person: what she wrote');
  t.same(await api.ids('/fhir/Device/lecteur/DocumentReference'), ['compte-rendu'], 'a device: what it wrote');
  t.same(await api.ids('/fhir/Device/autre/DocumentReference'), []);
  const outside = await api.get('/fhir/Practitioner/dr-durand/Consent');
  t.equal(outside.status, 404, 'Consent is in no practitioner compartment');
  t.equal(outside.body.resourceType, 'OperationOutcome');
  t.equal((await api.get('/fhir/Organization/o/Immunization')).status, 404, 'Organization defines no compartment');
  t.equal((await api.get('/fhir/Group/g/Immunization')).status, 404, 'nor does a type that is not served');
});

t.test('an update moves a resource between compartments; a deletion takes it out of all', async (t) => {
  const rdv = RESOURCES.find((r) => r.id === 'rdv') as Resource & { id: string; participant: unknown[] };
  await repo.update({ ...rdv, participant: [{ actor: { reference: 'Patient/jacques' }, status: 'accepted' }] } as Resource & { id: string });
  t.same((await membership()).filter((l) => l.startsWith('Appointment/')), ['Appointment/rdv in Patient/jacques']);
  t.same(await search('Appointment', '', ['Patient', 'helene']), []);
  await repo.delete('Appointment', 'rdv');
  t.same((await membership()).filter((l) => l.startsWith('Appointment/')), []);
  await repo.update(rdv);
  t.same(await membership(), EXPECTED_MEMBERSHIP);
});

t.test('migration 0012 gives a store written before it the memberships and record patients a fresh write gives', async (t) => {
  const written = { members: await membership(), patients: await recordPatients() };
  // The store as 0011 left it: no membership table, and record patients for the five hand-listed types only.
  const TABLES = ['token', 'string', 'date', 'reference', 'uri', 'number', 'quantity', 'composite'];
  await server.db.transaction(async (tx) => {
    await tx.query('DROP TABLE compartment_member');
    for (const table of TABLES) {
      await tx.query(
        `UPDATE search_${table} SET patient_id = NULL WHERE resource_type NOT IN ('Patient', 'Immunization', 'AllergyIntolerance', 'MedicationStatement', 'DocumentReference', 'Consent')`,
      );
    }
    await tx.query('DELETE FROM schema_migration WHERE version = 12');
  });
  t.not((await recordPatients()).join('\n'), written.patients.join('\n'), 'the old store names fewer record patients');
  t.same(await migrate(server.db), ['0012_compartment_member']);
  t.same(await membership(), written.members);
  t.same(await recordPatients(), written.patients);
  t.same(await patientsHaving('Observation', 'subject', 'status=final'), ['helene']);
});
