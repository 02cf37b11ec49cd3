// The ways in (R4 http.html#search, search.html): POST [type]/_search with a form body, compartment
// search (Patient/123/Immunization), system search with _type; unknown parameters ignored with a
// warning (search.mode = outcome) and left out of the self link, or a 400 under Prefer: handling=strict;
// bad values a 400 naming the parameter; injection attempts as values find nothing.
import t from 'tap';
import { startTestServer } from './helpers/app.ts';
import { INS, nir, q, searchClient } from './helpers/search-client.ts';

const server = await startTestServer(t);
const api = searchClient(server);

const TAGS = 'https://dossier.example.org/fhir/CodeSystem/tags';

await api.putAll([
  { resourceType: 'Patient', id: '123', meta: { tag: [{ system: TAGS, code: 'import-dmp' }] }, identifier: [{ system: INS, value: nir('2840375123456') }], name: [{ family: 'Lefèvre', given: ['Hélène'] }], birthDate: '1984-03-12' },
  { resourceType: 'Patient', id: '456', name: [{ family: 'Cœur', given: ['Jacques'] }], birthDate: '1972-02-29' },
  { resourceType: 'Practitioner', id: 'dr-durand', meta: { tag: [{ system: TAGS, code: 'import-dmp' }] }, name: [{ family: 'Durand' }] },
  ...([['vac-a', '123'], ['vac-b', '123'], ['vac-c', '456']] as const).map(([id, patient]) => ({
    resourceType: 'Immunization',
    id,
    status: 'completed',
    vaccineCode: { coding: [{ system: 'http://phast.fr/fhir/CodeSystem/ucd', code: '9439138', display: 'Vaxigrip Tetra' }] },
    patient: { reference: `Patient/${patient}` },
    occurrenceDateTime: '2023-10-12',
  })),
  {
    resourceType: 'DocumentReference',
    id: 'cr-auteur',
    status: 'current',
    subject: { reference: 'Patient/456' },
    author: [{ reference: 'Patient/123' }],
    content: [{ attachment: { contentType: 'application/pdf', url: 'https://dmp.example.fr/docs/cr-auteur.pdf' } }],
  },
  { resourceType: 'AllergyIntolerance', id: 'allergie-123', clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] }, code: { text: 'Pénicilline' }, patient: { reference: 'Patient/123' } },
]);

t.test('POST [type]/_search with a form body searches like GET; links name it as a GET', async (t) => {
  const res = await api.postForm('/fhir/Patient/_search', `${q('family', 'lefèvre')}&${q('birthdate', 'ge1980')}`);
  t.equal(res.status, 200);
  t.same(res.matches, ['Patient/123']);
  t.equal(res.link('self'), `http://localhost/fhir/Patient?family=lef%C3%A8vre&birthdate=ge1980`);
  const mixed = await api.postForm('/fhir/Patient/_search?family=coeur', q('birthdate', '1972'));
  t.same(mixed.matches, ['Patient/456'], 'URL and body parameters combine');
  const none = await api.postForm('/fhir/Patient/_search?family=coeur', q('birthdate', '1984'));
  t.same(none.matches, []);
  const json = await server.inject({ method: 'POST', url: '/fhir/Patient/_search', payload: '{"family":"x"}', headers: { 'content-type': 'application/json' } });
  t.equal(json.statusCode, 400, 'a JSON body is not a search form');
  const system = await api.postForm('/fhir/_search', `_type=Patient&${q('_id', '456')}`);
  t.same(system.matches, ['Patient/456']);
});

t.test('compartment search: /fhir/Patient/123/Immunization', async (t) => {
  t.same(await api.ids('/fhir/Patient/123/Immunization'), ['vac-a', 'vac-b']);
  t.same(await api.ids('/fhir/Patient/456/Immunization'), ['vac-c']);
  t.same(await api.ids('/fhir/Patient/123/Immunization?_id=vac-b,vac-c'), ['vac-b'], 'parameters narrow within the compartment');
  t.same(await api.ids('/fhir/Patient/123/DocumentReference'), ['cr-auteur'], 'author is a Patient-compartment parameter of DocumentReference');
  t.same(await api.ids('/fhir/Patient/123/AllergyIntolerance'), ['allergie-123']);
  t.same(await api.ids('/fhir/Patient/999/Immunization'), []);
  const res = await api.get('/fhir/Patient/123/Immunization?_count=1');
  t.match(res.link('self'), /^http:\/\/localhost\/fhir\/Patient\/123\/Immunization\?_count=1$/);
  const next = await api.get(res.link('next')!);
  t.same(next.matches, ['Immunization/vac-b']);
  t.equal((await api.get('/fhir/Patient/123/Organization')).status, 404, 'Organization is not in the Patient compartment');
});

t.test('system search: /fhir?_type=…', async (t) => {
  const res = await api.get('/fhir?_type=Patient,Practitioner&_tag=import-dmp');
  t.equal(res.status, 200);
  t.same(res.matches.sort(), ['Patient/123', 'Practitioner/dr-durand']);
  t.same((await api.get('/fhir?_type=Immunization,AllergyIntolerance&_id=vac-a,allergie-123')).matches.sort(), ['AllergyIntolerance/allergie-123', 'Immunization/vac-a']);
  const all = await api.get('/fhir?_tag=import-dmp');
  t.same(all.matches.sort(), ['Patient/123', 'Practitioner/dr-durand'], 'no _type: every type');
  t.match(res.link('self'), /_type=Patient%2CPractitioner/);
  const bad = await api.get('/fhir?_type=Parameters');
  t.equal(bad.status, 400);
  t.same(bad.body.issue[0].expression, ['_type']);
  const typeParam = await api.get('/fhir?_type=Patient&family=coeur');
  t.ok(typeParam.outcome, 'a type parameter in a system search is ignored with a warning');
});

t.test('unknown parameters: ignored with an outcome entry, not in the self link; 400 when strict', async (t) => {
  const res = await api.get('/fhir/Patient?family=coeur&couleur=bleu&_count=5');
  t.equal(res.status, 200);
  t.same(res.matches, ['Patient/456']);
  t.equal(res.outcome?.resourceType, 'OperationOutcome');
  t.equal(res.outcome.issue[0].severity, 'warning');
  t.match(res.outcome.issue[0].diagnostics, /couleur/);
  t.equal(res.link('self'), 'http://localhost/fhir/Patient?family=coeur&_count=5');
  t.equal(res.body.entry.at(-1).search.mode, 'outcome');
  t.equal(res.body.total, 1, 'the outcome entry is not counted');

  const strict = await api.get('/fhir/Patient?family=coeur&couleur=bleu', { prefer: 'handling=strict' });
  t.equal(strict.status, 400);
  t.match(strict.body.issue[0].diagnostics, /couleur/);
  t.same(strict.body.issue[0].expression, ['couleur']);
  const lenient = await api.get('/fhir/Patient?couleur=bleu', { prefer: 'handling=lenient' });
  t.equal(lenient.status, 200);
  t.equal(lenient.matches.length, 2);
  const unsupported = await api.get('/fhir/Patient?_text=coeur');
  t.ok(unsupported.outcome, 'spec parameters not implemented are reported too');
});

t.test('bad values are a 400 naming the parameter', async (t) => {
  const cases: Array<[string, string]> = [
    [`/fhir/Patient?${q('birthdate', '2021-13-45')}`, 'birthdate'],
    ['/fhir/Patient?family:phonetic=x', 'family:phonetic'],
    ['/fhir/Patient?given:exact:contains=x', 'given:exact:contains'],
    ['/fhir/Immunization?patient:Patient.couleur=x', 'patient:Patient.couleur'],
    ['/fhir/Immunization?patient:Observation.code=x', 'patient:Observation.code'],
    ['/fhir/Patient?_count=abc', '_count'],
    ['/fhir/Patient?_count=-1', '_count'],
    ['/fhir/Patient?_sort=nonsense', '_sort'],
    ['/fhir/Patient?_sort=family,,', '_sort'],
    ['/fhir/Patient?family=', 'family'],
    ['/fhir/Patient?_summary=partial', '_summary'],
  ];
  for (const [url, name] of cases) {
    const res = await api.get(url);
    t.equal(res.status, 400, url);
    t.equal(res.body?.resourceType, 'OperationOutcome', url);
    t.same(res.body?.issue?.[0]?.expression, [name], url);
  }
});

t.test('injection attempts as values find nothing, and break nothing', async (t) => {
  const attempts = [
    "' OR '1'='1",
    "coeur'; DROP TABLE resource; --",
    "x' UNION SELECT content FROM resource --",
    '%',
    '\\',
    '$1',
    '"); SELECT pg_sleep(5); --',
    "Robert'); DELETE FROM search_string WHERE ('1'='1",
  ];
  for (const value of attempts) {
    for (const param of ['family', 'family:exact', 'family:contains', 'identifier', '_id', 'general-practitioner', '_profile', '_tag:text']) {
      const res = await api.get(`/fhir/Patient?${q(param, value)}`);
      t.equal(res.status, 200, `${param}=${value}`);
      t.same(res.matches, [], `${param}=${value}`);
    }
  }
  t.same(await api.ids('/fhir/Patient?family=coeur'), ['456'], 'the data is intact');
  const sorted = await api.get(`/fhir/Patient?${q('_sort', 'family;DROP TABLE resource')}`);
  t.equal(sorted.status, 400);
  const elements = await api.get(`/fhir/Patient?${q('_elements', "name') FROM resource --")}`);
  t.equal(elements.status, 400);
});
