import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const server = await startTestServer(t);
const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });
const put = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method: 'PUT', url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });
const get = (url: string, headers: Record<string, string> = {}) => server.inject({ method: 'GET', url, headers });
const del = (url: string, headers: Record<string, string> = {}) => server.inject({ method: 'DELETE', url, headers });

const patient = { resourceType: 'Patient', name: [{ family: 'Dupont', given: ['Marie'] }], gender: 'female' };

t.test('create assigns the id and version and answers 201 with Location, ETag and Last-Modified', async (t) => {
  const res = await post('/fhir/Patient', { ...patient, id: 'client-chosen', meta: { versionId: '42' } });
  t.equal(res.statusCode, 201);
  const body = json(res);
  t.not(body.id, 'client-chosen', 'a client id on create is ignored (R4 http.html#create)');
  t.match(body.id, /^[A-Za-z0-9\-.]{1,64}$/);
  t.equal(body.meta.versionId, '1');
  t.ok(Date.parse(body.meta.lastUpdated));
  t.equal(res.headers.location, `http://localhost/fhir/Patient/${body.id}/_history/1`);
  t.equal(res.headers.etag, 'W/"1"');
  t.equal(res.headers['last-modified'], new Date(body.meta.lastUpdated).toUTCString());
  t.match(res.headers['content-type'], /^application\/fhir\+json/);
  t.same(body.name, patient.name);
});

t.test('read returns the current version; unknown ids are 404 with an OperationOutcome', async (t) => {
  const created = json(await post('/fhir/Patient', patient));
  const res = await get(`/fhir/Patient/${created.id}`);
  t.equal(res.statusCode, 200);
  t.equal(res.headers.etag, 'W/"1"');
  t.same(json(res), created);

  const missing = await get('/fhir/Patient/does-not-exist');
  t.equal(missing.statusCode, 404);
  t.equal(json(missing).resourceType, 'OperationOutcome');
  t.equal(json(missing).issue[0].code, 'not-found');
});

t.test('update makes a new version and keeps the old one readable by vread', async (t) => {
  const created = json(await post('/fhir/Patient', patient));
  const res = await put(`/fhir/Patient/${created.id}`, { ...created, gender: 'other' });
  t.equal(res.statusCode, 200);
  t.equal(res.headers.etag, 'W/"2"');
  t.equal(res.headers.location, undefined, 'Location is for creations');
  t.equal(json(res).meta.versionId, '2');
  t.equal(json(await get(`/fhir/Patient/${created.id}`)).gender, 'other');
  const v1 = await get(`/fhir/Patient/${created.id}/_history/1`);
  t.equal(v1.statusCode, 200);
  t.equal(json(v1).gender, 'female');
  t.equal(v1.headers.etag, 'W/"1"');
  t.equal((await get(`/fhir/Patient/${created.id}/_history/3`)).statusCode, 404);
  t.equal((await get(`/fhir/Patient/${created.id}/_history/x`)).statusCode, 400);
});

t.test('update of an unknown id creates it with the client id (update-as-create)', async (t) => {
  const res = await put('/fhir/Patient/ins-1234', { ...patient, id: 'ins-1234' });
  t.equal(res.statusCode, 201);
  t.equal(res.headers.location, 'http://localhost/fhir/Patient/ins-1234/_history/1');
  t.equal(json(res).id, 'ins-1234');
  t.equal(json(res).meta.versionId, '1');
});

t.test('delete: 204, then 410 on read, history kept, and a later update revives the resource', async (t) => {
  const created = json(await post('/fhir/Patient', patient));
  const url = `/fhir/Patient/${created.id}`;
  const res = await del(url);
  t.equal(res.statusCode, 204);
  t.equal(res.body, '');
  t.equal(res.headers.etag, 'W/"2"');

  const gone = await get(url);
  t.equal(gone.statusCode, 410);
  t.equal(json(gone).issue[0].code, 'deleted');
  t.equal((await get(`${url}/_history/1`)).statusCode, 200, 'older versions stay readable');
  t.equal((await get(`${url}/_history/2`)).statusCode, 410, 'the deletion version reads as gone');

  t.equal((await del(url)).statusCode, 204, 'deleting again is not an error');
  const history = json(await get(`${url}/_history`));
  t.equal(history.total, 2, 'a second delete writes no version');

  const revived = await put(url, { ...patient, id: created.id });
  t.equal(revived.statusCode, 201);
  t.equal(json(revived).meta.versionId, '3');
  t.equal((await del('/fhir/Patient/never-existed')).statusCode, 204);
});

t.test('If-Match guards updates and deletes (R4 http.html#concurrency)', async (t) => {
  const created = json(await post('/fhir/Patient', patient));
  const url = `/fhir/Patient/${created.id}`;
  const stale = await put(url, { ...created, gender: 'male' }, { 'if-match': 'W/"7"' });
  t.equal(stale.statusCode, 412);
  t.equal(json(stale).resourceType, 'OperationOutcome');
  t.match(json(stale).issue[0].diagnostics, /W\/"1"/);
  t.equal(json(await get(url)).gender, 'female', 'nothing was written');

  const fresh = await put(url, { ...created, gender: 'male' }, { 'if-match': 'W/"1"' });
  t.equal(fresh.statusCode, 200);
  t.equal((await del(url, { 'if-match': 'W/"1"' })).statusCode, 412);
  t.equal((await put(url, created, { 'if-match': 'not-an-etag' })).statusCode, 400);
  t.equal((await put('/fhir/Patient/no-such-one', { ...patient, id: 'no-such-one' }, { 'if-match': 'W/"1"' })).statusCode, 412);
  t.equal((await get('/fhir/Patient/no-such-one')).statusCode, 404, 'a failed conditional update creates nothing');
  t.equal((await del(url, { 'if-match': 'W/"2"' })).statusCode, 204);
});

t.test('parallel updates of one resource each get their own version; none is lost', async (t) => {
  const created = json(await post('/fhir/Patient', patient));
  const url = `/fhir/Patient/${created.id}`;
  const writers = 20;
  const results = await Promise.all(
    Array.from({ length: writers }, (_, i) => put(url, { ...created, name: [{ family: `Writer${i}` }] })),
  );
  t.same(results.map((r) => r.statusCode), Array(writers).fill(200));
  const versions = results.map((r) => Number(json(r).meta.versionId)).sort((a, b) => a - b);
  t.same(versions, Array.from({ length: writers }, (_, i) => i + 2), 'versions 2..21, each once');
  const history = json(await get(`${url}/_history?_count=100`));
  t.equal(history.total, writers + 1);
  const families = new Set(history.entry.map((e: any) => e.resource.name?.[0]?.family));
  for (let i = 0; i < writers; i++) t.ok(families.has(`Writer${i}`), `writer ${i}'s version is kept`);
});

t.test('parallel update-as-create of one new id: exactly one creation, then updates', async (t) => {
  const url = '/fhir/Patient/race-new';
  const results = await Promise.all(Array.from({ length: 8 }, () => put(url, { ...patient, id: 'race-new' })));
  t.equal(results.filter((r) => r.statusCode === 201).length, 1);
  t.equal(results.filter((r) => r.statusCode === 200).length, 7);
  t.equal(json(await get(url)).meta.versionId, '8');
});

t.test('Prefer: return=minimal | representation | OperationOutcome', async (t) => {
  const minimal = await post('/fhir/Patient', patient, { prefer: 'return=minimal' });
  t.equal(minimal.statusCode, 201);
  t.equal(minimal.body, '');
  t.ok(minimal.headers.location);
  t.equal(minimal.headers.etag, 'W/"1"');

  const outcome = await post('/fhir/Patient', patient, { prefer: 'return=OperationOutcome' });
  t.equal(outcome.statusCode, 201);
  t.equal(json(outcome).resourceType, 'OperationOutcome');
  t.equal(json(outcome).issue[0].severity, 'information');

  const representation = await post('/fhir/Patient', patient, { prefer: 'return=representation' });
  t.equal(json(representation).resourceType, 'Patient');

  const id = json(representation).id;
  const deleted = await del(`/fhir/Patient/${id}`, { prefer: 'return=OperationOutcome' });
  t.equal(deleted.statusCode, 200);
  t.equal(json(deleted).resourceType, 'OperationOutcome');
});

t.test('content negotiation: Accept, _format and _pretty', async (t) => {
  const created = json(await post('/fhir/Patient', patient));
  const url = `/fhir/Patient/${created.id}`;
  t.match((await get(url, { accept: 'application/json' })).headers['content-type'], /^application\/json/);
  t.match((await get(url, { accept: 'application/fhir+json;q=0.9, text/html' })).headers['content-type'], /^application\/fhir\+json/);
  t.match((await get(url, { accept: 'text/html,*/*;q=0.8' })).headers['content-type'], /^application\/fhir\+json/);
  t.match((await get(`${url}?_format=json`, { accept: 'application/fhir+xml' })).headers['content-type'], /^application\/fhir\+json/, '_format wins over Accept');
  const xml = await get(url, { accept: 'application/fhir+xml' });
  t.equal(xml.statusCode, 406);
  t.equal(json(xml).resourceType, 'OperationOutcome');
  t.equal((await get(`${url}?_format=xml`)).statusCode, 406);
  const pretty = await get(`${url}?_pretty=true`);
  t.match(pretty.body, /^\{\n {2}"resourceType": "Patient"/);
  t.same(json(pretty), created);
  t.notMatch((await get(url)).body, /\n/);
  const asJson = await post('/fhir/Patient', patient, { 'content-type': 'application/json; charset=utf-8' });
  t.equal(asJson.statusCode, 201, 'application/json bodies are accepted too');
});

t.test('/metadata serves the capability statement with the package version', async (t) => {
  const res = await get('/fhir/metadata');
  t.equal(res.statusCode, 200);
  const cs = json(res);
  t.equal(cs.resourceType, 'CapabilityStatement');
  t.equal(cs.fhirVersion, '4.0.1');
  const { version } = JSON.parse((await import('node:fs')).readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  t.equal(cs.software.version, version);
  t.equal(cs.implementation.url, 'http://localhost/fhir');
});

t.test('GET /health reports the storage reachable; responses carry a request id', async (t) => {
  const res = await get('/health');
  t.equal(res.statusCode, 200);
  t.same(json(res), { status: 'pass' });
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  const traced = await get('/health', { 'x-request-id': 'lab-42' });
  t.equal(traced.headers['x-request-id'], 'lab-42', 'a caller-supplied request id is kept');
});
