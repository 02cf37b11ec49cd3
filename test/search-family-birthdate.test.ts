// `Patient?family=X&birthdate=Y` over patients sharing a surname (issue 15, item 7): however the search is
// planned (from the surname, from the date, or both intersected), it finds exactly the patients with that
// surname (starts-with, R4 search.html#string) whose birth date matches at every precision and prefix
// (R4 search.html#date: eq, the search range contains the birth date's; ge/lt, it reaches above/below).
import t from 'tap';
import { startTestServer } from './helpers/app.ts';
import { searchClient } from './helpers/search-client.ts';

const server = await startTestServer(t);
const api = searchClient(server);

const patient = (id: string, family: string, birthDate?: string) => ({ resourceType: 'Patient', id, name: [{ family, given: ['Camille'] }], ...(birthDate ? { birthDate } : {}) });

await api.putAll([
  patient('m-1980-05-01', 'Martin', '1980-05-01'),
  patient('m-1980-05-02', 'Martin', '1980-05-02'),
  patient('m-1980-05-31', 'Martin', '1980-05-31'),
  patient('m-1980-06-01', 'Martin', '1980-06-01'),
  patient('m-1980-12-31', 'Martin', '1980-12-31'),
  patient('m-1981-01-01', 'Martin', '1981-01-01'),
  patient('m-1979-12-31', 'Martin', '1979-12-31'),
  patient('m-1980-05', 'Martin', '1980-05'),
  patient('m-1980', 'Martin', '1980'),
  patient('m-none', 'Martin'),
  // `family=Martin` starts with: Martinez is found too.
  patient('mz-1980-05-01', 'Martinez', '1980-05-01'),
  // Same dates, another surname: never found.
  patient('d-1980-05-01', 'Durand', '1980-05-01'),
  patient('d-1980-05', 'Durand', '1980-05'),
  patient('d-1980', 'Durand', '1980'),
]);
// More patients of the same surname and others, on other dates, so that each filter alone finds many.
const others = Array.from({ length: 60 }, (_, n) => patient(`other-${n}`, n % 3 === 0 ? 'Durand' : 'Martin', `19${50 + (n % 25)}-0${1 + (n % 4)}-1${n % 10}`));
await api.putAll(others);

const cases: Array<{ query: Array<[string, string]>; expected: string[] }> = [
  { query: [['family', 'Martin'], ['birthdate', '1980-05-01']], expected: ['m-1980-05-01', 'mz-1980-05-01'] },
  { query: [['family', 'Martin'], ['birthdate', 'eq1980-05-01']], expected: ['m-1980-05-01', 'mz-1980-05-01'] },
  { query: [['family', 'Martin'], ['birthdate', '1980-05']], expected: ['m-1980-05-01', 'm-1980-05-02', 'm-1980-05-31', 'm-1980-05', 'mz-1980-05-01'] },
  {
    query: [['family', 'Martin'], ['birthdate', '1980']],
    expected: ['m-1980-05-01', 'm-1980-05-02', 'm-1980-05-31', 'm-1980-06-01', 'm-1980-12-31', 'm-1980-05', 'm-1980', 'mz-1980-05-01'],
  },
  { query: [['family', 'Martin'], ['birthdate', '1979-12-31']], expected: ['m-1979-12-31'] },
  { query: [['family', 'Martin'], ['birthdate', '1980-05-03']], expected: [] },
  {
    // The year 1980 reaches past the day, so does May 1980; 31 December 1979 does not.
    query: [['family', 'Martin'], ['birthdate', 'ge1980-05-01']],
    expected: ['m-1980-05-01', 'm-1980-05-02', 'm-1980-05-31', 'm-1980-06-01', 'm-1980-12-31', 'm-1981-01-01', 'm-1980-05', 'm-1980', 'mz-1980-05-01'],
  },
  { query: [['family', 'Martin'], ['birthdate', 'lt1980-05-01']], expected: ['m-1979-12-31', 'm-1980', ...others.filter((p, n) => n % 3 !== 0).map((p) => p.id)] },
  {
    query: [['family', 'Martin'], ['birthdate', 'ge1980-05'], ['birthdate', 'lt1981']],
    expected: ['m-1980-05-01', 'm-1980-05-02', 'm-1980-05-31', 'm-1980-06-01', 'm-1980-12-31', 'm-1980-05', 'm-1980', 'mz-1980-05-01'],
  },
  { query: [['family', 'Durand'], ['birthdate', '1980-05']], expected: ['d-1980-05-01', 'd-1980-05'] },
  { query: [['family', 'Durand'], ['birthdate', '1980']], expected: ['d-1980-05-01', 'd-1980-05', 'd-1980'] },
  { query: [['family', 'Dupont'], ['birthdate', '1980']], expected: [] },
];

for (const { query, expected } of cases) {
  const search = new URLSearchParams(query).toString();
  t.test(search, async (t) => {
    const answer = await api.get(`/fhir/Patient?${search}&_count=100`);
    t.equal(answer.status, 200);
    t.strictSame([...answer.matches].sort(), expected.map((id) => `Patient/${id}`).sort());
    t.equal(answer.body.total, expected.length, 'total');
  });
}

t.test('a malformed birth date is a 400 naming the parameter', async (t) => {
  const answer = await api.get('/fhir/Patient?family=Martin&birthdate=1980-13-01');
  t.equal(answer.status, 400);
  t.equal(answer.body.resourceType, 'OperationOutcome');
  t.match(JSON.stringify(answer.body.issue), /birthdate/);
});
