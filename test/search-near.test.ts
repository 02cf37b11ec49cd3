// `near` (R4 search.html#special; Location `near`: "[latitude]|[longitude]|[distance]|[units] (using the WGS84
// datum) … If the units are omitted, then kms should be assumed. If the distance is omitted, then the server
// can use its own discretion"): Location.position indexed at write (migration 0019), great-circle distance.
import t from 'tap';
import { startTestServer } from './helpers/app.ts';
import { q, searchClient } from './helpers/search-client.ts';

const server = await startTestServer(t);
const api = searchClient(server);

const location = (id: string, latitude: number, longitude: number) => ({ resourceType: 'Location', id, name: id, position: { latitude, longitude } });
// Great-circle distances from the CHU de Montpellier (43.6305, 3.8516): Lapeyronie (same site) 0.4 km, Sète 27 km,
// Nîmes 45 km, Marseille 128 km, Paris 596 km; Fidji across the antimeridian from Samoa.
await api.putAll([
  location('chu-montpellier', 43.6305, 3.8516),
  location('lapeyronie', 43.6311, 3.8464),
  location('sete', 43.4028, 3.6928),
  location('nimes', 43.8367, 4.3601),
  location('marseille', 43.2965, 5.3698),
  location('paris', 48.8566, 2.3522),
  location('suva', -18.1416, 178.4419),
  location('apia', -13.8333, -171.7667),
]);
await api.put({ resourceType: 'Location', id: 'no-position', name: 'no position' });
const sorted = async (value: string) => (await api.ids(`/fhir/Location?${q('near', value)}`)).sort();

t.test('near finds the locations within the distance, in km by default', async (t) => {
  t.same(await sorted('43.6305|3.8516|1'), ['chu-montpellier', 'lapeyronie'], '1 km');
  t.same(await sorted('43.6305|3.8516|30|km'), ['chu-montpellier', 'lapeyronie', 'sete'], '30 km');
  t.same(await sorted('43.6305|3.8516|50'), ['chu-montpellier', 'lapeyronie', 'nimes', 'sete'], '50 km, units left out');
  t.same(await sorted('43.6305|3.8516|130|km'), ['chu-montpellier', 'lapeyronie', 'marseille', 'nimes', 'sete']);
  t.notOk((await sorted('43.6305|3.8516|590|km')).includes('paris'), 'Paris is 596 km away');
  t.ok((await sorted('43.6305|3.8516|600|km')).includes('paris'));
});

t.test('other UCUM length units, the default distance, OR between values, across the antimeridian', async (t) => {
  t.same(await sorted('43.6305|3.8516|500|m'), ['chu-montpellier', 'lapeyronie'], '500 m');
  t.same(await sorted('43.6305|3.8516|300|m'), ['chu-montpellier'], '300 m: Lapeyronie is 0.4 km away');
  t.same(await sorted('43.6305|3.8516|20|[mi_i]'), ['chu-montpellier', 'lapeyronie', 'sete'], '20 miles (32 km)');
  t.same(await sorted('43.6305|3.8516'), ['chu-montpellier', 'lapeyronie'], 'no distance: within 10 km');
  t.same(await sorted('43.6305|3.8516|1,48.8566|2.3522|1'), ['chu-montpellier', 'lapeyronie', 'paris'], 'a comma ORs two points');
  t.same(await sorted('-16|-179.9|1000|km'), ['apia', 'suva'], 'Suva and Apia, 1,100 km apart, either side of ±180°');
  t.same(await api.ids(`/fhir/Location?${q('near', '43.6305|3.8516|1')}&name=lapeyronie`), ['lapeyronie'], 'ANDed with other parameters');
  t.same(await api.ids(`/fhir/Location?near:missing=true`), ['no-position'], ':missing');
});

t.test('a moved location is found where it is now', async (t) => {
  await api.put(location('mobile-unit', 43.6305, 3.8516));
  t.ok((await sorted('43.6305|3.8516|1')).includes('mobile-unit'));
  await api.put(location('mobile-unit', 48.8566, 2.3522));
  t.notOk((await sorted('43.6305|3.8516|1')).includes('mobile-unit'), 'no longer in Montpellier');
  t.ok((await sorted('48.8566|2.3522|1')).includes('mobile-unit'), 'in Paris');
});

t.test('a malformed near is 400 with an OperationOutcome', async (t) => {
  for (const value of ['43.6', 'north|3.8', '43.6|3.8|-1', '43.6|3.8|x', '95|3.8|1', '43.6|190|1', '43.6|3.8|1|kg', '43.6|3.8|1|km|x', '43.6|3.8||km']) {
    const res = await api.get(`/fhir/Location?${q('near', value)}`);
    t.equal(res.status, 400, value);
    t.equal(res.body.resourceType, 'OperationOutcome');
    t.match(res.body.issue[0].diagnostics, /near/);
  }
  t.equal((await api.get(`/fhir/Location?${q('near:exact', '43.6|3.8|1')}`)).status, 400, 'no modifier');
});
