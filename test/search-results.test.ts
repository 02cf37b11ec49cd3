// Shaping results (R4 search.html#return): _sort on several keys with `-` and a stable tie-break,
// _count and paging by the links the server gives (followed, never built by hand) staying right while
// data changes between pages, _total, _summary, _elements (SUBSETTED), _include / _revinclude with
// :iterate and `*`, and search.mode.
import t from 'tap';
import { startTestServer } from './helpers/app.ts';
import { INS, nir, searchClient, type SearchAnswer } from './helpers/search-client.ts';

const server = await startTestServer(t);
const api = searchClient(server);

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };

// family, given, birthDate: ties on family and on (family, birthDate) to exercise the tie-break.
const people: Array<[string, string, string, string]> = [
  ['p01', 'Lefèvre', 'Hélène', '1984-03-12'],
  ['p02', 'Lefèvre', 'Marc', '1990-07-01'],
  ['p03', 'Lefèvre', 'Zoé', '1990-07-01'],
  ['p04', 'Bernard', 'Louise', '1955-11-30'],
  ['p05', 'Cœur', 'Jacques', '1972-02-29'],
  ['p06', 'Dubois', 'Chloé', '2001-05-05'],
  ['p07', 'Dubois', 'Léa', '1999-12-31'],
  ['p08', 'Moreau', 'Lucas', '2013-01-14'],
  ['p09', 'Petit', 'Inès', '2013-01-14'],
  ['p10', 'Roux', 'Camille', '1968-08-08'],
];
await api.putAll([
  { resourceType: 'Practitioner', id: 'dr-durand', name: [{ family: 'Durand', given: ['Sophie'] }] },
  { resourceType: 'Organization', id: 'hcl', name: 'Hospices Civils de Lyon' },
  ...people.map(([id, family, given, birthDate]) => ({
    resourceType: 'Patient',
    id,
    text: { status: 'generated' as const, div: `<div xmlns="http://www.w3.org/1999/xhtml">${given} ${family}</div>` },
    identifier: [{ system: INS, value: nir(`2${birthDate.slice(2, 4)}0375${id.slice(1).padStart(6, '0')}`) }],
    name: [{ family, given: [given] }],
    birthDate,
    maritalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'M' }] },
    ...(id === 'p01' ? { generalPractitioner: [{ reference: 'Practitioner/dr-durand' }], managingOrganization: { reference: 'Organization/hcl' } } : {}),
  })),
  ...['p01', 'p01', 'p05'].map((patient, i) => ({
    resourceType: 'Immunization',
    id: `vac-${i + 1}`,
    status: 'completed',
    vaccineCode: { coding: [{ system: 'http://phast.fr/fhir/CodeSystem/ucd', code: '9439138', display: 'Vaxigrip Tetra' }] },
    patient: { reference: `Patient/${patient}` },
    occurrenceDateTime: `2023-10-1${i}`,
    ...(i === 0 ? { performer: [{ actor: { reference: 'Practitioner/dr-durand' } }] } : {}),
  })),
  {
    resourceType: 'DocumentReference',
    id: 'cr-1',
    status: 'current',
    subject: { reference: 'Patient/p01' },
    custodian: { reference: 'Organization/hcl' },
    content: [{ attachment: { contentType: 'application/pdf', url: 'https://dmp.example.fr/docs/cr-1.pdf' } }],
  },
]);

/** Follows `next` links from a first page to the end; returns the match ids page by page. */
async function pages(first: SearchAnswer): Promise<string[][]> {
  const out: string[][] = [first.matches];
  let page = first;
  for (let guard = 0; page.link('next') && guard < 50; guard++) {
    page = await api.get(page.link('next')!);
    t.equal(page.status, 200);
    out.push(page.matches);
  }
  return out;
}

const byFamilyThenYoungest = ['p04', 'p05', 'p06', 'p07', 'p02', 'p03', 'p01', 'p08', 'p09', 'p10'].map((id) => `Patient/${id}`);

t.test('_sort: several keys, `-` for descending, ties broken by id', async (t) => {
  t.same((await api.get('/fhir/Patient?_sort=family,-birthdate')).matches, byFamilyThenYoungest);
  t.same(
    (await api.get('/fhir/Patient?_sort=-birthdate,family')).matches,
    ['p08', 'p09', 'p06', 'p07', 'p02', 'p03', 'p01', 'p05', 'p10', 'p04'].map((id) => `Patient/${id}`),
  );
  t.same((await api.get('/fhir/Patient?_sort=-_id')).matches, people.map(([id]) => `Patient/${id}`).reverse());
  t.same((await api.get('/fhir/Patient?_sort=birthdate&birthdate=2013')).matches, ['Patient/p08', 'Patient/p09'], 'same birthdate: by id');
  t.same((await api.get('/fhir/Immunization?_sort=-date')).matches, ['Immunization/vac-3', 'Immunization/vac-2', 'Immunization/vac-1']);
  const lastUpdated = (await api.get('/fhir/Immunization?_sort=_lastUpdated')).matches;
  t.same(lastUpdated, ['Immunization/vac-1', 'Immunization/vac-2', 'Immunization/vac-3'], 'in the order written');
});

t.test('_count and paging: next/previous links cover every match once', async (t) => {
  const first = await api.get('/fhir/Patient?_sort=family,-birthdate&_count=3');
  t.equal(first.body.total, 10);
  t.equal(first.link('previous'), undefined);
  const all = await pages(first);
  t.same(all.map((p) => p.length), [3, 3, 3, 1]);
  t.same(all.flat(), byFamilyThenYoungest);

  const second = await api.get(first.link('next')!);
  t.same(second.matches, byFamilyThenYoungest.slice(3, 6));
  const back = await api.get(second.link('previous')!);
  t.same(back.matches, byFamilyThenYoungest.slice(0, 3), 'previous from page 2 is page 1');
  t.equal((await api.get(second.link('first')!)).matches.join(), first.matches.join());
  t.match(second.link('self'), /_count=3/);
  t.match(second.link('self'), /_sort=family%2C-birthdate/);

  const none = await api.get('/fhir/Patient?_count=0');
  t.equal(none.status, 200);
  t.same(none.matches, []);
  t.equal(none.body.total, 10);
});

t.test('paging stays right while resources are added and removed between pages', async (t) => {
  const first = await api.get('/fhir/Patient?_sort=family,-birthdate&_count=4');
  t.same(first.matches, byFamilyThenYoungest.slice(0, 4));
  // One sorts before the position reached (must not appear later), one after (must appear), and one
  // not yet seen is deleted (must not appear).
  await api.put({ resourceType: 'Patient', id: 'p11', name: [{ family: 'Aubert', given: ['Anne'] }], birthDate: '1980-01-01' });
  await api.put({ resourceType: 'Patient', id: 'p12', name: [{ family: 'Zola', given: ['Émile'] }], birthDate: '1940-04-02' });
  await api.delete('Patient/p08');
  const rest = (await pages(first)).slice(1).flat();
  t.same(rest, ['p02', 'p03', 'p01', 'p09', 'p10', 'p12'].map((id) => `Patient/${id}`));
  const everything = [...first.matches, ...rest];
  t.equal(new Set(everything).size, everything.length, 'no duplicates');

  // Backwards too: from the last page, previous links walk back over what is now there.
  let page = await api.get('/fhir/Patient?_sort=family,-birthdate&_count=4');
  while (page.link('next')) page = await api.get(page.link('next')!);
  const backwards: string[][] = [page.matches];
  while (page.link('previous')) {
    page = await api.get(page.link('previous')!);
    backwards.unshift(page.matches);
  }
  t.same(backwards.flat(), ['p11', 'p04', 'p05', 'p06', 'p07', 'p02', 'p03', 'p01', 'p09', 'p10', 'p12'].map((id) => `Patient/${id}`));
  await api.delete('Patient/p11');
  await api.delete('Patient/p12');
  await api.put({
    resourceType: 'Patient',
    id: 'p08',
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Lucas Moreau</div>' },
    identifier: [{ system: INS, value: nir('2130375000008') }],
    name: [{ family: 'Moreau', given: ['Lucas'] }],
    birthDate: '2013-01-14',
    maritalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'M' }] },
  });
});

t.test('a cursor that is not the server\'s is a 400', async (t) => {
  const res = await api.get('/fhir/Patient?_cursor=bm9wZQ');
  t.equal(res.status, 400);
  t.same(res.body.issue[0].expression, ['_cursor']);
});

t.test('_total: none, estimate, accurate', async (t) => {
  const none = await api.get('/fhir/Patient?_total=none&_count=2');
  t.equal(none.body.total, undefined);
  t.equal(none.matches.length, 2);
  t.ok(none.link('next'), 'paging does not need the total');
  t.equal((await api.get('/fhir/Patient?_total=accurate&family=lefevre')).body.total, 3);
  const estimate = await api.get('/fhir/Patient?_total=estimate');
  t.type(estimate.body.total, 'number');
  t.ok(estimate.body.total >= 0);
  t.equal((await api.get('/fhir/Patient?family=lefevre')).body.total, 3, 'accurate by default');
  t.equal((await api.get('/fhir/Patient?_total=sometimes')).status, 400);
});

t.test('_summary: true, count, data, text, false', async (t) => {
  const count = await api.get('/fhir/Patient?_summary=count&family=lefevre');
  t.equal(count.body.total, 3);
  t.equal(count.body.entry, undefined);

  const summary = (await api.get('/fhir/Patient?_summary=true&_id=p01')).body.entry[0].resource;
  t.ok(summary.name && summary.birthDate && summary.identifier, 'summary elements kept');
  t.equal(summary.maritalStatus, undefined, 'maritalStatus is not a summary element');
  t.equal(summary.text, undefined);
  t.same(summary.meta.tag, [SUBSETTED]);

  const text = (await api.get('/fhir/Patient?_summary=text&_id=p01')).body.entry[0].resource;
  t.ok(text.text);
  t.equal(text.name, undefined);
  t.same(text.meta.tag, [SUBSETTED]);

  const data = (await api.get('/fhir/Patient?_summary=data&_id=p01')).body.entry[0].resource;
  t.equal(data.text, undefined);
  t.ok(data.maritalStatus);
  t.same(data.meta.tag, [SUBSETTED]);

  const full = (await api.get('/fhir/Patient?_summary=false&_id=p01')).body.entry[0].resource;
  t.ok(full.text && full.maritalStatus);
  t.equal(full.meta.tag, undefined, 'not subsetted');
  t.equal((await api.get('/fhir/Patient?_summary=yes')).status, 400);
});

t.test('_elements: the listed elements plus id and meta, tagged SUBSETTED', async (t) => {
  const res = await api.get('/fhir/Patient?_elements=name,birthDate&_id=p01');
  const patient = res.body.entry[0].resource;
  t.same(Object.keys(patient).sort(), ['birthDate', 'id', 'meta', 'name', 'resourceType']);
  t.same(patient.meta.tag, [SUBSETTED]);
  t.match(res.link('self'), /_elements=name%2CbirthDate/);
  const bad = await api.get('/fhir/Patient?_elements=name;DROP');
  t.equal(bad.status, 400);
  t.same(bad.body.issue[0].expression, ['_elements']);
});

t.test('_include, _revinclude, :iterate, * and search.mode', async (t) => {
  const inc = await api.get('/fhir/Immunization?_include=Immunization:patient');
  t.same(inc.matches.sort(), ['Immunization/vac-1', 'Immunization/vac-2', 'Immunization/vac-3']);
  t.same(inc.included, ['Patient/p01', 'Patient/p05'], 'each included resource once');
  t.equal(inc.body.total, 3, 'included resources are not counted');

  t.same((await api.get('/fhir/Immunization?_include=Immunization:performer:Practitioner')).included, ['Practitioner/dr-durand']);
  t.same((await api.get('/fhir/Immunization?_include=Immunization:performer:Organization')).included, []);

  const star = await api.get('/fhir/Immunization?_id=vac-1&_include=*');
  t.same(star.included, ['Patient/p01', 'Practitioner/dr-durand']);

  const rev = await api.get('/fhir/Patient?_id=p01&_revinclude=Immunization:patient&_revinclude=DocumentReference:subject');
  t.same(rev.matches, ['Patient/p01']);
  t.same(rev.included, ['DocumentReference/cr-1', 'Immunization/vac-1', 'Immunization/vac-2']);

  const once = await api.get('/fhir/DocumentReference?_include=DocumentReference:subject&_include=Patient:general-practitioner');
  t.same(once.included, ['Patient/p01'], 'without :iterate, includes apply to the matches only');
  const iterate = await api.get('/fhir/DocumentReference?_include=DocumentReference:subject&_include:iterate=Patient:general-practitioner');
  t.same(iterate.included, ['Patient/p01', 'Practitioner/dr-durand']);
  const revIterate = await api.get('/fhir/Practitioner?_revinclude=Patient:general-practitioner&_revinclude:iterate=Immunization:patient');
  t.same(revIterate.included, ['Immunization/vac-1', 'Immunization/vac-2', 'Patient/p01']);

  const modes = inc.body.entry.map((e: any) => e.search.mode);
  t.same(modes, ['match', 'match', 'match', 'include', 'include'], 'matches first, then includes');
  for (const entry of inc.body.entry) t.match(entry.fullUrl, /^http:\/\/localhost\/fhir\/(Immunization|Patient)\/[^/]+$/);

  t.equal((await api.get('/fhir/Immunization?_include=Immunization:nothing')).status, 400);
  t.equal((await api.get('/fhir/Immunization?_include=Parameters:subject')).status, 400);
  t.equal((await api.get('/fhir/Immunization?_include:deep=Immunization:patient')).status, 400);
});
