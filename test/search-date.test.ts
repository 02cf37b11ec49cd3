// Date search (R4 search.html#date, #prefix): every value, stored or searched, stands for the range of
// instants its precision covers (`2021` is all of 2021); stored as [low, high). eq: the search range
// contains the target; ne: it does not; gt/lt: the target reaches above/below the search range;
// ge/le: gt/lt or eq; sa/eb: the target starts after / ends before it; ap: roughly the same (10% of the
// distance to now). Periods are ranges, open ends reaching to ±infinity. The spec's examples are
// `birthdate=2013-01-14`-style exact dates and `date=ge2010-01-01&date=le2011-12-31`.
import t from 'tap';
import { startTestServer } from './helpers/app.ts';
import { q, searchClient } from './helpers/search-client.ts';

const server = await startTestServer(t);
const api = searchClient(server);

const immunization = (id: string, occurrenceDateTime: string) => ({
  resourceType: 'Immunization',
  id,
  status: 'completed',
  vaccineCode: { coding: [{ system: 'http://phast.fr/fhir/CodeSystem/ucd', code: '9439138', display: 'Vaxigrip Tetra' }] },
  patient: { reference: 'Patient/helene' },
  occurrenceDateTime,
});
const documentReference = (id: string, period?: { start?: string; end?: string }) => ({
  resourceType: 'DocumentReference',
  id,
  status: 'current',
  subject: { reference: 'Patient/helene' },
  content: [{ attachment: { contentType: 'application/pdf', url: `https://dmp.example.fr/docs/${id}.pdf` } }],
  ...(period ? { context: { period } } : {}),
});

await api.putAll([
  { resourceType: 'Patient', id: 'helene', name: [{ family: 'Lefèvre', given: ['Hélène'] }], birthDate: '1984-03-12' },
  { resourceType: 'Patient', id: 'lucas', name: [{ family: 'Moreau', given: ['Lucas'] }], birthDate: '2013-01-14' },
  { resourceType: 'Patient', id: 'ines', name: [{ family: 'Benali', given: ['Inès'] }], birthDate: '2013' },
  immunization('y2020', '2020'),
  immunization('y2021', '2021'),
  immunization('m2021-03', '2021-03'),
  immunization('d2021-03-15', '2021-03-15'),
  immunization('s2021-03-15', '2021-03-15T10:30:00+01:00'),
  immunization('s2021-12-31', '2021-12-31T23:30:00Z'),
  immunization('d2022-01-01', '2022-01-01'),
  // Its occurrence is text, which no date search matches: only its reactions' dates are searched.
  (({ occurrenceDateTime: _, ...rest }) => ({ ...rest, occurrenceString: 'été 2018', reaction: [{ date: '2019-05-01' }, { date: '2021-05-01' }] }))(
    immunization('deux-reactions', ''),
  ),
  documentReference('hospit', { start: '2021-03-10', end: '2021-03-20' }),
  documentReference('journee', { start: '2021-03-15T08:00:00Z', end: '2021-03-15T18:00:00Z' }),
  documentReference('ouvert', { start: '2021-06-01' }),
  documentReference('avant', { end: '2020-12-31' }),
  documentReference('sans-periode'),
  {
    resourceType: 'MedicationStatement',
    id: 'traitement-en-cours',
    status: 'active',
    medicationCodeableConcept: { text: 'Lévothyrox 50 µg' },
    subject: { reference: 'Patient/helene' },
    effectivePeriod: { start: '2021-01-01' },
  },
  {
    resourceType: 'MedicationStatement',
    id: 'prise-unique',
    status: 'completed',
    medicationCodeableConcept: { text: 'Doliprane 1000 mg' },
    subject: { reference: 'Patient/helene' },
    effectiveDateTime: '2021-02-03T08:15:00+01:00',
  },
]);

const immunizations = (query: string) => api.ids(`/fhir/Immunization?${query}`);
const documents = (query: string) => api.ids(`/fhir/DocumentReference?${query}`);

t.test('eq (no prefix): the search value\'s range contains the stored one', async (t) => {
  t.same(await immunizations('date=2021'), ['d2021-03-15', 'm2021-03', 's2021-03-15', 's2021-12-31', 'y2021'], 'any instant in 2021');
  t.same(await immunizations('date=eq2021'), await immunizations('date=2021'), 'eq is the default');
  t.same(await immunizations('date=2021-03'), ['d2021-03-15', 'm2021-03', 's2021-03-15'], 'the year 2021 is wider than March');
  t.same(await immunizations('date=2021-03-15'), ['d2021-03-15', 's2021-03-15']);
  t.same(await immunizations(q('date', '2021-03-15T10:30:00+01:00')), ['s2021-03-15'], 'second precision, with a zone');
  t.same(await immunizations(q('date', '2021-03-15T09:30:00Z')), ['s2021-03-15'], 'the same instant in UTC');
  t.same(await immunizations(q('date', '2021-03-15T10:30+01:00')), ['s2021-03-15'], 'minute precision');
  t.same(await immunizations(q('date', '2021-03-15T10:30:01+01:00')), []);
  t.same(await api.ids('/fhir/Patient?birthdate=2013-01-14'), ['lucas'], 'spec: birthdate=2013-01-14 (a birthDate of 2013 is wider)');
  t.same(await api.ids('/fhir/Patient?birthdate=2013'), ['ines', 'lucas']);
});

t.test('ne: the stored range is not within the search range', async (t) => {
  t.same(await immunizations('date=ne2021-03'), ['d2022-01-01', 's2021-12-31', 'y2020', 'y2021']);
  t.same(await immunizations('date=ne2021'), ['d2022-01-01', 'y2020']);
});

t.test('gt / lt: the stored range reaches above / below the search range', async (t) => {
  t.same(await immunizations('date=gt2021-03-15'), ['d2022-01-01', 'm2021-03', 's2021-12-31', 'y2021']);
  t.same(await immunizations('date=lt2021-03-15'), ['m2021-03', 'y2020', 'y2021']);
  t.same(await immunizations('date=gt2021'), ['d2022-01-01']);
  t.same(await immunizations('date=lt2021'), ['y2020']);
  t.same(await api.ids('/fhir/Patient?birthdate=lt2000'), ['helene']);
});

t.test('ge / le: gt or eq, lt or eq', async (t) => {
  t.same(await immunizations('date=ge2021-03-15'), ['d2021-03-15', 'd2022-01-01', 'm2021-03', 's2021-03-15', 's2021-12-31', 'y2021']);
  t.same(await immunizations('date=le2021-03-15'), ['d2021-03-15', 'm2021-03', 's2021-03-15', 'y2020', 'y2021']);
  t.same(await immunizations('date=ge2022-01-01'), ['d2022-01-01']);
  t.same(await immunizations('date=le2020'), ['y2020']);
});

t.test('sa / eb: starts after / ends before the search range', async (t) => {
  t.same(await immunizations('date=sa2021-03-15'), ['d2022-01-01', 's2021-12-31']);
  t.same(await immunizations('date=eb2021-03-15'), ['y2020']);
  t.same(await immunizations('date=sa2021'), ['d2022-01-01']);
  t.same(await immunizations('date=eb2021-03'), ['y2020'], 'y2021 begins before March but does not end before it');
});

t.test('ap: approximately (10% of the distance to now on each side)', async (t) => {
  // Around 2021-03-15, from a "now" in 2024–2029: a margin of ~110 to ~290 days, so 2020 (ending on
  // 2021-01-01) overlaps and 2021-12-31 does not.
  t.same(await immunizations('date=ap2021-03-15'), ['d2021-03-15', 'm2021-03', 's2021-03-15', 'y2020', 'y2021']);
});

t.test('several prefixes: AND across repetitions (spec: date=ge2010-01-01&date=le2011-12-31), OR with commas', async (t) => {
  t.same(await immunizations('date=ge2021-03-01&date=le2021-03-31'), ['d2021-03-15', 'm2021-03', 's2021-03-15', 'y2021']);
  t.same(await immunizations('date=2020,2022'), ['d2022-01-01', 'y2020']);
  t.same(await immunizations('date=sa2021-12-31,eb2020-06'), ['d2022-01-01']);
});

t.test('AND on a date a resource holds once asks it of that one value; on a repeated one, of any of its values', async (t) => {
  t.same(await immunizations('date=ge2021-03-15&date=lt2021-03-16'), ['d2021-03-15', 'm2021-03', 's2021-03-15', 'y2021']);
  t.same(await immunizations('date=ge2021-03-15&date=lt2021-03-16&date=ne2021-03-15'), ['m2021-03', 'y2021'], 'ne: wider than the day');
  t.same(await immunizations('date=lt2021-03-10&date=gt2021-03-20'), ['m2021-03', 'y2021'], 'a day is not both before and after; a month is');
  t.same(await documents('period=ge2021-03-15&period=le2021-03-15'), ['hospit', 'journee']);
  // Two reactions, 2019 and 2021: one is before 2020, the other after.
  t.same(await immunizations('reaction-date=lt2020&reaction-date=gt2020'), ['deux-reactions']);
  t.same(await immunizations('reaction-date=2019&reaction-date=2021'), ['deux-reactions']);
  t.same(await immunizations('reaction-date=2019&reaction-date=2020'), []);
});

t.test('Periods, open-ended too', async (t) => {
  t.same(await documents('period=2021-03-15'), ['journee']);
  t.same(await documents('period=2021-03'), ['hospit', 'journee']);
  t.same(await documents('period=2021'), ['hospit', 'journee'], 'an open end reaches past 2021');
  t.same(await documents('period=gt2030'), ['ouvert'], 'no end: goes on for ever');
  t.same(await documents('period=lt1900'), ['avant'], 'no start: from for ever');
  t.same(await documents('period=sa2021-03-31'), ['ouvert']);
  t.same(await documents('period=eb2021-03-01'), ['avant']);
  t.same(await documents('period=ge2021-03-15'), ['hospit', 'journee', 'ouvert']);
  t.same(await documents('period=le2021-03-15'), ['avant', 'hospit', 'journee']);
  t.same(await documents('period=ne2021'), ['avant', 'ouvert'], 'no period: never matches a date');
  t.same(await documents('period:missing=true'), ['sans-periode']);
  t.same(await api.ids('/fhir/MedicationStatement?effective=2021-02-03'), ['prise-unique']);
  t.same(await api.ids('/fhir/MedicationStatement?effective=ge2024-06-01'), ['traitement-en-cours'], 'an ongoing treatment');
  t.same(await api.ids('/fhir/MedicationStatement?effective=2021'), ['prise-unique']);
});

t.test('_lastUpdated: the instant a version was written, at millisecond precision', async (t) => {
  const before = await api.ids('/fhir/Immunization');
  await new Promise((resolve) => setTimeout(resolve, 20));
  const mark = new Date().toISOString();
  await new Promise((resolve) => setTimeout(resolve, 20));
  const late = await api.put(immunization('tardif', '2023-10-02'));
  t.same(await immunizations(q('_lastUpdated', `gt${mark}`)), ['tardif']);
  t.same(await immunizations(q('_lastUpdated', `lt${mark}`)), before);
  t.same(await immunizations(q('_lastUpdated', `ge${mark}`)), ['tardif']);
  t.same(await immunizations(q('_lastUpdated', late.meta.lastUpdated)), ['tardif'], 'eq the version\'s own lastUpdated');
  t.same(await immunizations(`_lastUpdated=${new Date().getUTCFullYear()}`), [...before, 'tardif'].sort());
  t.same(await immunizations('_lastUpdated=lt2000'), []);
});

t.test('invalid dates are a 400 naming the parameter', async (t) => {
  for (const value of ['2021-13-45', '2021-02-30', '21-03-15', 'gt2021-3-1', '2021-03-15T25:00:00Z', 'hier']) {
    const res = await api.get(`/fhir/Patient?${q('birthdate', value)}`);
    t.equal(res.status, 400, value);
    t.same(res.body.issue[0].expression, ['birthdate'], value);
    t.match(res.body.issue[0].diagnostics, /birthdate/);
  }
  const res = await api.get('/fhir/Immunization?_lastUpdated=demain');
  t.equal(res.status, 400);
  t.same(res.body.issue[0].expression, ['_lastUpdated']);
});
