// Absolute references to the server's own base (R4 search.html#reference: "a reference parameter that is a
// full URL... if the URL is the server's own base, it is the same as a relative reference"). Written with
// the base (by PUT, POST, transaction and PATCH), they are found by relative search, by absolute search with
// the base, through chains, _include, _revinclude, _has, composites and the patient compartment, as a
// relative reference is. Another server's URL stays a URL. Run three times: with PUBLIC_BASE_URL, with the
// base taken from the request's Host (listed in FHIR_ALLOWED_HOSTS), and with neither, when the base is the
// tokens' audience whatever the Host; each server treats the others' bases as foreign.
import t, { type Test } from 'tap';
import { buildApp } from '../src/app.ts';
import { createProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { bearer, FHIR_JSON, json, openTestDatabase, TEST_AUDIENCE, testDataKeys, type TestServer } from './helpers/app.ts';
import { openingDatabase } from '../src/store/encryption.ts';
import { q, searchClient } from './helpers/search-client.ts';
import { sqlStorage } from '../src/store/storage.ts';

const PUBLIC_BASE = 'https://dmp.example.fr/fhir';
const HOST = 'dossier.chu-exemple.fr:8443';
const HOST_BASE = `http://${HOST}/fhir`;
const OTHER_SERVER = 'https://autre-ght.example.fr/fhir';

const validator = createProfileValidator({ defaultProfiles: 'none' });

/** A server on a fresh store, every request to it sent with `Host: host`. */
async function startServer(t: Test, host: string, base: { publicBaseUrl?: string; allowedHosts?: string[] } = {}): Promise<TestServer> {
  const store = await openTestDatabase();
  const dataKeys = testDataKeys();
  const app = await buildApp({ config: { logLevel: 'silent', bodyLimit: 1024 * 1024, ...base, rateLimit: 0, authAudience: TEST_AUDIENCE }, storage: sqlStorage(store.db, dataKeys), validator });
  const authorization = await bearer(store.db);
  const server: TestServer = {
    app,
    db: openingDatabase(store.db, dataKeys),
    rawDb: store.db,
    dataKeys,
    authorization,
    audience: TEST_AUDIENCE,
    token: async (request) => (await bearer(store.db, request)).slice('Bearer '.length),
    inject: (options) => app.inject({ ...options, headers: { authorization, ...(options.headers as Record<string, string> | undefined), host } }),
    async close() {
      await app.close();
      await store.drop();
    },
  };
  t.teardown(() => server.close());
  return server;
}

const doc = (id: string, subject: string, more: Record<string, unknown> = {}) => ({
  resourceType: 'DocumentReference',
  id,
  status: 'current',
  subject: { reference: subject },
  ...more,
  content: [{ attachment: { contentType: 'application/pdf', url: `https://dmp.example.fr/docs/${id}.pdf` } }],
});
const vaccination = (patient: string, id?: string) => ({
  resourceType: 'Immunization',
  ...(id ? { id } : {}),
  status: 'completed',
  vaccineCode: { text: 'Vaxigrip Tetra' },
  patient: { reference: patient },
  occurrenceDateTime: '2023-10-12',
});

/** Writes references to `own` (the server's base) and to `foreign` (not its base), then searches them. */
async function ownBaseIsLocal(t: Test, server: TestServer, own: string, foreign: string) {
  const api = searchClient(server);
  const send = async (method: 'POST' | 'PATCH', url: string, body: unknown, contentType = FHIR_JSON) => {
    const res = await server.inject({ method, url, payload: JSON.stringify(body), headers: { 'content-type': contentType } });
    t.ok(res.statusCode === 200 || res.statusCode === 201, `setup: ${method} ${url} answers ${res.statusCode}`);
    return json(res);
  };

  await api.putAll([
    { resourceType: 'Patient', id: 'helene', name: [{ family: 'Lefèvre', given: ['Hélène'] }] },
    { resourceType: 'Patient', id: 'jacques', name: [{ family: 'Cœur', given: ['Jacques'] }] },
    { resourceType: 'Practitioner', id: 'dr-durand', name: [{ family: 'Durand', given: ['Sophie'] }] },
    doc('cr-absolu', `${own}/Patient/helene`, { author: [{ reference: `${own}/Practitioner/dr-durand` }] }),
    doc('cr-version', `${own}/Patient/helene/_history/1`),
    doc('cr-etranger', `${foreign}/Patient/helene`),
    doc('cr-autre-ght', `${OTHER_SERVER}/Patient/helene`),
    doc('cr-relatif', 'Patient/jacques', { relatesTo: [{ code: 'appends', target: { reference: `${own}/DocumentReference/cr-absolu` } }] }),
    doc('cr-patch', 'Patient/jacques'),
  ]);
  const posted = await send('POST', '/fhir/Immunization', vaccination(`${own}/Patient/jacques`));
  await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: doc('cr-bundle', `${own}/Patient/jacques`), request: { method: 'POST', url: 'DocumentReference' } },
      { resource: vaccination(`${own}/Patient/helene`, 'vac-bundle'), request: { method: 'PUT', url: 'Immunization/vac-bundle' } },
    ],
  });
  await send('PATCH', '/fhir/DocumentReference/cr-patch', [{ op: 'replace', path: '/subject/reference', value: `${own}/Patient/helene` }], 'application/json-patch+json');
  const bundled = (await api.get('/fhir/DocumentReference?status=current&_count=50')).body.entry
    .map((e: any) => e.resource)
    .find((r: any) => r.subject.reference === `${own}/Patient/jacques`).id as string;

  const helenes = ['cr-absolu', 'cr-patch', 'cr-version'];
  t.same(await api.ids('/fhir/DocumentReference?subject=Patient/helene'), helenes, 'found by a relative search, PUT and PATCH alike');
  t.same(await api.ids(`/fhir/DocumentReference?${q('subject', `${own}/Patient/helene`)}`), helenes, 'and by an absolute search with the own base');
  t.same(await api.ids('/fhir/DocumentReference?subject:Patient=helene'), helenes, 'and by id with a type modifier');
  t.same(await api.ids('/fhir/DocumentReference?subject=Patient/jacques'), [bundled, 'cr-relatif'].sort(), 'a transaction entry too; the patched one no longer');
  t.same(await api.ids(`/fhir/Immunization?${q('patient', `${own}/Patient/jacques`)}`), [posted.id], 'a POST too');
  t.same(await api.ids('/fhir/Immunization?patient=Patient/helene'), ['vac-bundle'], 'a transaction PUT too');

  t.same(await api.ids(`/fhir/DocumentReference?${q('subject', `${foreign}/Patient/helene`)}`), ['cr-etranger'], 'a base that is not this server\'s is a URL');
  t.same(await api.ids(`/fhir/DocumentReference?${q('subject', `${OTHER_SERVER}/Patient/helene`)}`), ['cr-autre-ght'], 'another server\'s URL is a URL');

  t.same(await api.ids('/fhir/DocumentReference?subject:Patient.name=lefevre'), helenes, 'chain');
  t.same(await api.ids('/fhir/DocumentReference?author:Practitioner.family=durand'), ['cr-absolu'], 'chain on another reference');
  t.same(await api.ids('/fhir/Immunization?patient.name=coeur'), [posted.id], 'chain from a POSTed resource');

  const included = await api.get('/fhir/DocumentReference?_id=cr-absolu,cr-etranger,cr-autre-ght&_include=DocumentReference:subject&_include=DocumentReference:author');
  t.same(included.included, ['Patient/helene', 'Practitioner/dr-durand'], '_include follows the own base, not the other URLs');
  const revincluded = await api.get('/fhir/Patient?_id=helene&_revinclude=DocumentReference:subject&_revinclude=Immunization:patient');
  t.same(revincluded.included, [...helenes.map((id) => `DocumentReference/${id}`), 'Immunization/vac-bundle'], '_revinclude');

  t.same(await api.ids('/fhir/Patient?_has:DocumentReference:subject:_id=cr-absolu'), ['helene'], '_has');
  t.same(await api.ids('/fhir/Practitioner?_has:DocumentReference:author:subject=Patient/helene'), ['dr-durand'], '_has through two own-base references');
  t.same(await api.ids('/fhir/Patient?_has:Immunization:patient:status=completed'), ['helene', 'jacques'], '_has from POST and transaction');
  t.same(await api.ids('/fhir/Patient/helene/DocumentReference'), helenes, 'the patient compartment');

  t.same(await api.ids(`/fhir/DocumentReference?${q('relationship', 'DocumentReference/cr-absolu$appends')}`), ['cr-relatif'], 'a composite\'s reference component');
  t.same(await api.ids(`/fhir/DocumentReference?${q('relationship', `${own}/DocumentReference/cr-absolu$appends`)}`), ['cr-relatif'], 'searched with the own base');
}

t.test('with PUBLIC_BASE_URL: its references are local, the Host\'s are not', async (t) => {
  const server = await startServer(t, HOST, { publicBaseUrl: PUBLIC_BASE });
  await ownBaseIsLocal(t, server, PUBLIC_BASE, HOST_BASE);
});

t.test('without it, with FHIR_ALLOWED_HOSTS, the base the request came in by (an allowed Host) is the own base', async (t) => {
  const server = await startServer(t, HOST, { allowedHosts: [HOST] });
  await ownBaseIsLocal(t, server, HOST_BASE, PUBLIC_BASE);
});

t.test('with neither, the own base is the tokens\' audience, whatever the Host says', async (t) => {
  const server = await startServer(t, HOST);
  await ownBaseIsLocal(t, server, TEST_AUDIENCE, HOST_BASE);
});
