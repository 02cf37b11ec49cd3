import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import { minimalResource } from './helpers/fixtures.ts';

const server = await startTestServer(t);
const request = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown) =>
  server.inject({ method, url, payload: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });

/** Follows `next` links from `url`, returning every entry in order and the pages seen. */
async function allPages(url: string): Promise<{ entries: any[]; pages: number }> {
  const entries: any[] = [];
  let pages = 0;
  let next: string | undefined = url;
  while (next) {
    const res = await request('GET', next.replace(/^https?:\/\/[^/]+/, ''));
    const bundle = json(res);
    pages++;
    entries.push(...(bundle.entry ?? []));
    next = bundle.link.find((l: any) => l.relation === 'next')?.url;
  }
  return { entries, pages };
}

// One patient with a created, updated and deleted life; an organization; and a batch of practitioners.
const patient = json(await request('POST', '/fhir/Patient', minimalResource('Patient')));
await request('PUT', `/fhir/Patient/${patient.id}`, { ...patient, gender: 'other' });
await request('DELETE', `/fhir/Patient/${patient.id}`);
const organization = json(await request('POST', '/fhir/Organization', minimalResource('Organization')));
const practitioners: string[] = [];
for (let i = 0; i < 7; i++) practitioners.push(json(await request('POST', '/fhir/Practitioner', minimalResource('Practitioner'))).id);

t.test('instance history lists every version newest first, deletions included', async (t) => {
  const res = await request('GET', `/fhir/Patient/${patient.id}/_history`);
  t.equal(res.statusCode, 200);
  const bundle = json(res);
  t.equal(bundle.resourceType, 'Bundle');
  t.equal(bundle.type, 'history');
  t.equal(bundle.total, 3);
  t.same(bundle.entry.map((e: any) => e.response.etag), ['W/"3"', 'W/"2"', 'W/"1"']);
  t.same(bundle.entry.map((e: any) => e.request.method), ['DELETE', 'PUT', 'POST']);
  t.same(bundle.entry.map((e: any) => e.response.status), ['204 No Content', '200 OK', '201 Created']);
  t.equal(bundle.entry[0].resource, undefined, 'a deletion has no resource');
  t.equal(bundle.entry[1].resource.gender, 'other');
  t.equal(bundle.entry[2].request.url, 'Patient');
  t.equal(bundle.entry[1].request.url, `Patient/${patient.id}`);
  t.equal(bundle.entry[1].fullUrl, `http://localhost/fhir/Patient/${patient.id}`);
  t.ok(bundle.entry.every((e: any) => Date.parse(e.response.lastModified)));
});

t.test('history of an unknown resource is an empty bundle; of an unknown type, 404', async (t) => {
  const res = await request('GET', '/fhir/Patient/nobody/_history');
  t.equal(res.statusCode, 200);
  t.equal(json(res).total, 0);
  t.equal(json(res).entry, undefined);
  t.equal((await request('GET', '/fhir/Parameters/_history')).statusCode, 404);
});

t.test('type history holds only that type; system history holds all', async (t) => {
  const types = json(await request('GET', '/fhir/Practitioner/_history')).entry.map((e: any) => e.resource.resourceType);
  t.same(new Set(types), new Set(['Practitioner']));
  t.equal(types.length, 7);
  const system = json(await request('GET', '/fhir/_history'));
  t.equal(system.total, 3 + 1 + 7);
  t.equal(system.entry[0].resource.id, practitioners[6], 'newest first');
  t.ok(system.entry.some((e: any) => e.resource?.id === organization.id));
});

t.test('_count pages through next links; every version appears once, in order', async (t) => {
  const whole = json(await request('GET', '/fhir/_history?_count=100')).entry;
  const paged = await allPages('/fhir/_history?_count=3');
  t.equal(paged.pages, 4);
  t.same(paged.entries.map((e) => e.response.etag + e.fullUrl), whole.map((e: any) => e.response.etag + e.fullUrl));
  const first = json(await request('GET', '/fhir/_history?_count=3'));
  t.same(first.link.map((l: any) => l.relation), ['self', 'first', 'next']);
  t.match(first.link[0].url, /\/fhir\/_history\?_count=3$/);
  t.equal(first.entry.length, 3);
  t.equal(first.total, 11, 'total counts all pages');
});

t.test('paging stays correct while new versions are written', async (t) => {
  const first = json(await request('GET', '/fhir/Practitioner/_history?_count=4'));
  await request('POST', '/fhir/Practitioner', minimalResource('Practitioner'));
  const next = first.link.find((l: any) => l.relation === 'next').url.replace(/^https?:\/\/[^/]+/, '');
  const second = json(await request('GET', next));
  const ids = [...first.entry, ...second.entry].map((e: any) => e.resource.id);
  t.same(ids, [...practitioners].reverse(), 'no version repeated or skipped by the later write');
});

t.test('_since keeps versions written at or after the instant', async (t) => {
  const boundary = new Date().toISOString();
  await new Promise((resolve) => setTimeout(resolve, 5));
  const later = json(await request('POST', '/fhir/Organization', minimalResource('Organization')));
  const res = json(await request('GET', `/fhir/_history?_since=${encodeURIComponent(boundary)}`));
  t.equal(res.total, 1);
  t.equal(res.entry[0].resource.id, later.id);
  t.match(res.link[0].url, `_since=${encodeURIComponent(boundary)}`);
  const future = json(await request('GET', '/fhir/Organization/_history?_since=2999-01-01'));
  t.equal(future.total, 0);
  const past = json(await request('GET', '/fhir/Organization/_history?_since=2000'));
  t.equal(past.total, 2);
});

t.test('_count=0 answers the total only', async (t) => {
  const res = json(await request('GET', '/fhir/Practitioner/_history?_count=0'));
  t.equal(res.total, 8);
  t.equal(res.entry, undefined);
});
