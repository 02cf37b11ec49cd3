// _sort on an indexed parameter (date, number, token) is read in that parameter's index order: a
// resource sorts by its lowest value ascending and its highest descending, resources without a value
// come last, ties go by id; and paging by the server's links, forward and back, sees each resource once.
// And the first page's total when `_total` is not given.
import t from 'tap';
import { SearchEngine } from '../src/store/search-executor.ts';
import { parseSearch } from '../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { startTestServer } from './helpers/app.ts';
import { createReferenceTargets } from './helpers/fixtures.ts';
import { searchClient, type SearchAnswer } from './helpers/search-client.ts';

const server = await startTestServer(t);
await createReferenceTargets(server, ['Patient/somebody']);
const api = searchClient(server);

interface Shot {
  id: string;
  date?: string;
  codes: string[];
  doses: number[];
  status: 'completed' | 'not-done';
}

// Several codes and doses on some, none on others, equal dates, equal lowest codes.
const shots: Shot[] = [
  { id: 'im-01', date: '2021-05-03', codes: ['m'], doses: [2], status: 'completed' },
  { id: 'im-02', date: '2019-01-20', codes: ['c', 'x'], doses: [1, 3], status: 'completed' },
  { id: 'im-03', codes: ['c'], doses: [], status: 'completed' },
  { id: 'im-04', date: '2021-05-03', codes: [], doses: [4, 1], status: 'not-done' },
  { id: 'im-05', date: '2023-11-30', codes: ['a', 'z'], doses: [2], status: 'completed' },
  { id: 'im-06', date: '2018-07-14', codes: ['q'], doses: [], status: 'completed' },
  { id: 'im-07', codes: ['z'], doses: [5], status: 'not-done' },
  { id: 'im-08', date: '2020-02-29', codes: ['c'], doses: [1], status: 'completed' },
  { id: 'im-09', date: '2023-11-30', codes: ['b', 'm'], doses: [2, 2], status: 'completed' },
];

await api.putAll(
  shots.map((shot) => ({
    resourceType: 'Immunization',
    id: shot.id,
    status: shot.status,
    vaccineCode: shot.codes.length > 0 ? { coding: shot.codes.map((code) => ({ system: 'urn:test:vaccine', code })) } : { text: 'unknown vaccine' },
    patient: { reference: 'Patient/somebody' },
    ...(shot.date ? { occurrenceDateTime: shot.date } : { occurrenceString: 'childhood' }),
    ...(shot.doses.length > 0 ? { protocolApplied: shot.doses.map((dose) => ({ doseNumberPositiveInt: dose })) } : {}),
  })),
);

/** The order R4 search.html#_sort gives: lowest value ascending, highest descending, valueless last, then id. */
function expected(values: (shot: Shot) => Array<string | number>, descending: boolean, subset = shots): string[] {
  const key = (shot: Shot) => {
    const all = values(shot);
    if (all.length === 0) return undefined;
    return [...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))[descending ? all.length - 1 : 0];
  };
  return [...subset]
    .sort((a, b) => {
      const [ka, kb] = [key(a), key(b)];
      if (ka === undefined || kb === undefined) return ka === kb ? a.id.localeCompare(b.id) : ka === undefined ? 1 : -1;
      if (ka !== kb) return (ka < kb ? -1 : 1) * (descending ? -1 : 1);
      return a.id.localeCompare(b.id);
    })
    .map((shot) => `Immunization/${shot.id}`);
}

async function walk(first: SearchAnswer): Promise<{ forward: string[]; backward: string[]; pages: number }> {
  t.equal(first.status, 200);
  let page = first;
  const forward = [...page.matches];
  let pages = 1;
  while (page.link('next')) {
    page = await api.get(page.link('next')!);
    t.equal(page.status, 200);
    forward.push(...page.matches);
    pages++;
  }
  const backward = [...page.matches];
  while (page.link('previous')) {
    page = await api.get(page.link('previous')!);
    t.equal(page.status, 200);
    backward.unshift(...page.matches);
  }
  return { forward, backward, pages };
}

const cases: Array<[string, (shot: Shot) => Array<string | number>]> = [
  ['date', (shot) => (shot.date ? [shot.date] : [])],
  ['vaccine-code', (shot) => shot.codes],
  ['dose-number', (shot) => shot.doses],
];

for (const [param, values] of cases) {
  for (const descending of [false, true]) {
    const sort = `${descending ? '-' : ''}${param}`;
    t.test(`_sort=${sort}, two per page, forward and back`, async (t) => {
      const order = expected(values, descending);
      const { forward, backward, pages } = await walk(await api.get(`/fhir/Immunization?_sort=${sort}&_count=2`));
      t.same(forward, order, 'forward through next links');
      t.same(backward, order, 'back through previous links');
      t.equal(pages, Math.ceil(order.length / 2));
      t.same((await api.get(`/fhir/Immunization?_sort=${sort}&_count=100`)).matches, order, 'one page');
      // A patient's records are few: sorted as found rather than walked in index order; the same order.
      const narrowed = await walk(await api.get(`/fhir/Immunization?patient=Patient/somebody&_sort=${sort}&_count=2`));
      t.same(narrowed.forward, order, 'narrowed by patient, forward');
      t.same(narrowed.backward, order, 'narrowed by patient, back');
    });
  }
}

t.test('a filter and a second sort key with an indexed first key', async (t) => {
  const completed = shots.filter((shot) => shot.status === 'completed');
  const { forward, backward } = await walk(await api.get('/fhir/Immunization?status=completed&_sort=-date&_count=3'));
  t.same(forward, expected((shot) => (shot.date ? [shot.date] : []), true, completed));
  t.same(backward, forward);
  // Equal dates (im-05, im-09 on 2023-11-30; im-01, im-04 on 2021-05-03) ordered by the second key, descending id.
  const byDateThenId = (await api.get('/fhir/Immunization?_sort=date,-_id&_count=100')).matches;
  t.same(byDateThenId.slice(0, 6), ['im-06', 'im-02', 'im-08', 'im-04', 'im-01', 'im-09'].map((id) => `Immunization/${id}`));
  t.same(byDateThenId.slice(6), ['im-05', 'im-07', 'im-03'].map((id) => `Immunization/${id}`), 'then the valueless, by -_id');
});

t.test('paging by an indexed sort stays right while resources change between pages', async (t) => {
  const first = await api.get('/fhir/Immunization?_sort=date&_count=3');
  t.same(first.matches, ['im-06', 'im-02', 'im-08'].map((id) => `Immunization/${id}`));
  // Moved before the position reached: not met again. One of the first page moved past the position:
  // met again, in its new place (keyset paging follows the data as it is when each page is read).
  await api.put({ resourceType: 'Immunization', id: 'im-05', status: 'completed', vaccineCode: { text: 'x' }, patient: { reference: 'Patient/somebody' }, occurrenceDateTime: '2000-01-01' });
  await api.put({ resourceType: 'Immunization', id: 'im-06', status: 'completed', vaccineCode: { text: 'x' }, patient: { reference: 'Patient/somebody' }, occurrenceDateTime: '2022-01-01' });
  let page = first;
  const rest: string[] = [];
  while (page.link('next')) {
    page = await api.get(page.link('next')!);
    rest.push(...page.matches);
  }
  t.same(rest, ['im-01', 'im-04', 'im-06', 'im-09', 'im-03', 'im-07'].map((id) => `Immunization/${id}`));
});

t.test('without _total the first page counts up to a limit and leaves total out beyond it', async (t) => {
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const engine = new SearchEngine(server.db, registry, undefined, 5);
  const search = (query: string) =>
    engine.search(parseSearch(['Immunization'], [...new URLSearchParams(query)] as Array<[string, string]>, registry, { strict: true, baseUrl: 'http://x/fhir' }), { baseUrl: 'http://x/fhir', path: 'Immunization' });
  t.equal((await search('status=not-done')).total, 2, 'under the limit: counted');
  t.equal((await search('_count=2')).total, undefined, 'over the limit (9 immunizations): left out');
  t.equal((await search('_count=2&_total=accurate')).total, 9, '_total=accurate counts them all');
  t.equal((await search('_summary=count')).total, 9, '_summary=count counts them all');
});
