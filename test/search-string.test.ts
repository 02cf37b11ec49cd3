// String search (R4 search.html#string): starts-with by default, case- and accent-insensitive;
// :exact and :contains; escaping of `,` `|` `$`; :missing. The spec's own examples are
// `given=eve` (Eve, Evelyn), `given:contains=eve` (also Severine), `given:exact=Eve` (Eve only).
import t from 'tap';
import { startTestServer } from './helpers/app.ts';
import { INS, nir, q, searchClient } from './helpers/search-client.ts';

const server = await startTestServer(t);
const api = searchClient(server);

const patient = (id: string, name: Record<string, unknown>[] | undefined, extra: Record<string, unknown> = {}) => ({
  resourceType: 'Patient',
  id,
  ...(name ? { name } : {}),
  ...extra,
});

await api.putAll([
  patient('helene', [{ text: 'Hélène Lefèvre', family: 'Lefèvre', given: ['Hélène'] }], {
    identifier: [{ system: INS, value: nir('2840375123456') }],
  }),
  patient('helena', [{ family: 'Dupont', given: ['Helena'] }]),
  patient('eve', [{ family: 'Martin', given: ['Eve'] }]),
  patient('evelyne', [{ family: 'Moreau', given: ['Évelyne'] }]),
  patient('severine', [{ family: 'Cœur', given: ['Séverine'] }]),
  patient('marc', [{ family: 'Lefebvre', given: ['Marc'] }]),
  patient('jean-pierre', [{ family: 'De La Fontaine', given: ['Jean-Pierre'], prefix: ['M.'] }], {
    address: [{ line: ['12 rue de la République'], city: 'Saint-Étienne', postalCode: '42000', country: 'FRA' }],
  }),
  patient('virgule', [{ family: 'Dupont, dit Lajoie', given: ['Paul'] }]),
  patient('sans-nom', undefined, { gender: 'unknown' }),
  { resourceType: 'Organization', id: 'parc', name: 'Clinique du Parc | Lyon' },
  { resourceType: 'Organization', id: 'cabinet', name: 'Cabinet 24$ Santé' },
  { resourceType: 'Organization', id: 'pourcent', name: '100% Santé' },
]);

t.test('default: starts-with, case- and accent-insensitive (spec: given=eve matches Eve and Evelyn)', async (t) => {
  t.same(await api.ids('/fhir/Patient?given=eve'), ['eve', 'evelyne'], 'Évelyne matches eve; Séverine does not (not a prefix)');
  t.same(await api.ids('/fhir/Patient?given=EVE'), ['eve', 'evelyne']);
  t.same(await api.ids(`/fhir/Patient?${q('given', 'Éve')}`), ['eve', 'evelyne'], 'accents in the search value are folded too');
  t.same(await api.ids('/fhir/Patient?family=lef'), ['helene', 'marc']);
  t.same(await api.ids('/fhir/Patient?family=lefevre'), ['helene']);
  t.same(await api.ids(`/fhir/Patient?${q('family', 'LEFÈVRE')}`), ['helene']);
  t.same(await api.ids(`/fhir/Patient?${q('name', 'hélène')}`), ['helene'], 'name covers given, family and text');
  t.same(await api.ids('/fhir/Patient?name=hele'), ['helena', 'helene']);
  t.same(await api.ids(`/fhir/Patient?${q('name', 'Hélène Lef')}`), ['helene'], 'HumanName.text is searched as a whole');
});

t.test('ligatures: Cœur is found as coeur, Cœur and CŒUR', async (t) => {
  t.same(await api.ids('/fhir/Patient?family=coeur'), ['severine']);
  t.same(await api.ids(`/fhir/Patient?${q('family', 'Cœur')}`), ['severine']);
  t.same(await api.ids(`/fhir/Patient?${q('family', 'CŒUR')}`), ['severine']);
});

t.test(':contains matches anywhere (spec: given:contains=eve also matches Severine)', async (t) => {
  t.same(await api.ids('/fhir/Patient?given:contains=eve'), ['eve', 'evelyne', 'severine']);
  t.same(await api.ids('/fhir/Patient?family:contains=fontaine'), ['jean-pierre']);
  t.same(await api.ids(`/fhir/Patient?${q('address:contains', 'étienne')}`), ['jean-pierre']);
  t.same(await api.ids('/fhir/Patient?given:contains=zzz'), []);
});

t.test(':exact matches the whole value, case and accents included (spec: given:exact=Eve)', async (t) => {
  t.same(await api.ids('/fhir/Patient?given:exact=Eve'), ['eve']);
  t.same(await api.ids('/fhir/Patient?given:exact=eve'), [], 'case matters');
  t.same(await api.ids('/fhir/Patient?given:exact=Ev'), [], 'no prefix match');
  t.same(await api.ids(`/fhir/Patient?${q('given:exact', 'Hélène')}`), ['helene']);
  t.same(await api.ids('/fhir/Patient?given:exact=Helene'), [], 'accents matter');
  t.same(await api.ids(`/fhir/Patient?${q('family:exact', 'Cœur')}`), ['severine']);
  t.same(await api.ids('/fhir/Patient?family:exact=Coeur'), []);
});

t.test('OR within a parameter (comma), AND across repetitions', async (t) => {
  t.same(await api.ids('/fhir/Patient?given=marc,eve'), ['eve', 'evelyne', 'marc']);
  t.same(await api.ids('/fhir/Patient?given=eve&family=martin'), ['eve']);
  t.same(await api.ids('/fhir/Patient?given=eve&given=evel'), ['evelyne']);
});

t.test('escaping: \\, is a comma inside the value, \\| and \\$ literal characters', async (t) => {
  t.same(await api.ids(`/fhir/Patient?${q('family', 'dupont\\, dit')}`), ['virgule']);
  t.same(await api.ids(`/fhir/Patient?${q('family', 'dupont,dit')}`), ['helena', 'virgule'], 'an unescaped comma separates two values');
  t.same(await api.ids(`/fhir/Organization?${q('name', 'clinique du parc \\| lyon')}`), ['parc']);
  t.same(await api.ids(`/fhir/Organization?${q('name', 'cabinet 24\\$')}`), ['cabinet']);
  t.same(await api.ids(`/fhir/Organization?${q('name:exact', 'Cabinet 24\\$ Santé')}`), ['cabinet']);
});

t.test('LIKE wildcards in the value are literal characters', async (t) => {
  t.same(await api.ids(`/fhir/Organization?${q('name', '100%')}`), ['pourcent']);
  t.same(await api.ids(`/fhir/Patient?${q('given', '%')}`), []);
  t.same(await api.ids(`/fhir/Patient?${q('given', '_ve')}`), []);
  t.same(await api.ids(`/fhir/Patient?${q('given:contains', '%')}`), []);
});

t.test('address and its parts', async (t) => {
  t.same(await api.ids('/fhir/Patient?address-city=saint-etienne'), ['jean-pierre']);
  t.same(await api.ids('/fhir/Patient?address=republique'), [], 'starts-with applies to each part (line starts with "12")');
  t.same(await api.ids('/fhir/Patient?address=12%20rue'), ['jean-pierre']);
  t.same(await api.ids('/fhir/Patient?address-postalcode=42'), ['jean-pierre']);
});

t.test(':missing', async (t) => {
  t.same(await api.ids('/fhir/Patient?name:missing=true'), ['sans-nom']);
  t.same((await api.ids('/fhir/Patient?name:missing=false')).length, 8);
  t.same(await api.ids('/fhir/Patient?address:missing=false'), ['jean-pierre']);
  const bad = await api.get('/fhir/Patient?name:missing=maybe');
  t.equal(bad.status, 400);
});

t.test('unknown string modifiers are a 400 naming the parameter', async (t) => {
  const res = await api.get('/fhir/Patient?given:sounds-like=eve');
  t.equal(res.status, 400);
  t.match(res.body.issue[0].diagnostics, /given:sounds-like/);
  t.same(res.body.issue[0].expression, ['given:sounds-like']);
});
