import { request as httpRequest } from 'node:http';
import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

// Issue 14: no input takes the server down or answers 5xx. Default limits, except the body limit, large
// enough for the 3 MB resource to be read and judged by its shape rather than its size.
const server = await startTestServer(t, { bodyLimit: 8 * 1024 * 1024 });
const base = await server.app.listen({ port: 0, host: '127.0.0.1' });

const send = (method: 'POST' | 'PUT' | 'PATCH' | 'GET', url: string, payload?: string | Buffer, headers: Record<string, string> = {}) =>
  server.inject({ method, url, payload, headers: { 'content-type': FHIR_JSON, ...headers } });

const storedVersions = async () => json(await server.inject({ method: 'GET', url: '/fhir/_history?_count=0' })).total as number;

function assertOutcome(t: Test, res: LightMyRequestResponse | { statusCode: number; headers: Record<string, unknown>; body: string }, status: number, diagnostics?: RegExp) {
  t.equal(res.statusCode, status, `status ${status}`);
  t.match(String(res.headers['content-type']), /^application\/fhir\+json/);
  const outcome = JSON.parse(res.body);
  t.equal(outcome.resourceType, 'OperationOutcome');
  if (diagnostics) t.match(outcome.issue[0].diagnostics, diagnostics);
  return outcome;
}

/** `levels` extensions each inside the one before. */
function nestedExtensions(levels: number): object {
  let inner: Record<string, unknown> = { url: 'http://example.org/leaf', valueString: 'leaf' };
  for (let level = 1; level < levels; level++) inner = { url: `http://example.org/level-${level}`, extension: [inner] };
  return { resourceType: 'Patient', extension: [inner] };
}

/** An Organization of `count` identifiers, as the issue's (30,000: 1 MB; 100,000: 3.2 MB). */
const organizationWithIdentifiers = (count: number) =>
  JSON.stringify({ resourceType: 'Organization', name: 'Big', identifier: Array.from({ length: count }, (_, i) => ({ system: 'urn:x', value: String(i) })) });

/** Sends a request over the socket; `beforeLastByte` runs with all of the body sent but its last byte. */
function rawPost(path: string, body: Buffer, beforeLastByte: () => Promise<void>): Promise<{ statusCode: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method: 'POST', headers: { 'content-type': FHIR_JSON, 'content-length': body.length, authorization: server.authorization } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ statusCode: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.write(body.subarray(0, body.length - 1), () => {
      beforeLastByte().then(() => req.end(body.subarray(body.length - 1)), reject);
    });
  });
}

async function health(): Promise<{ status: number; ms: number }> {
  const start = performance.now();
  const res = await fetch(`${base}/health`);
  await res.text();
  return { status: res.status, ms: performance.now() - start };
}

t.test('a 1 MB Organization of 30,000 identifiers is refused naming the array limit, and /health answers meanwhile', async (t) => {
  const body = Buffer.from(organizationWithIdentifiers(30_000));
  t.ok(body.length > 1_000_000, 'the body is over 1 MB');
  const before = await storedVersions();
  const healthChecks: Array<{ status: number; ms: number }> = [];
  let bigAnswered = false;
  let answeredInFlight = false;
  const big = rawPost('/fhir/Organization', body, async () => {
    healthChecks.push(await health());
    answeredInFlight = !bigAnswered;
  }).then((res) => {
    bigAnswered = true;
    return res;
  });
  // Once the whole body is in, the server judges it; /health must not wait for that judgement.
  const afterBody = new Promise<void>((resolve) => setImmediate(resolve)).then(health);
  const res = await big;
  healthChecks.push(await afterBody);
  t.ok(answeredInFlight, '/health answered while the big request was still in flight');
  assertOutcome(t, res, 413, /Organization\.identifier has 30000 items; this server accepts at most 1000 in one array \(RESOURCE_MAX_ARRAY_LENGTH\)/);
  for (const check of healthChecks) {
    t.equal(check.status, 200, '/health answers 200');
    // Generous on a shared machine: before the limits, /health waited 49 s behind this request.
    t.ok(check.ms < 1000, `/health answered in ${Math.round(check.ms)} ms, under 1 s`);
  }
  t.equal(await storedVersions(), before, 'nothing stored');
});

t.test('a 3 MB Organization of 100,000 identifiers is refused as quickly, naming the limit', async (t) => {
  const res = await send('POST', '/fhir/Organization', organizationWithIdentifiers(100_000));
  assertOutcome(t, res, 413, /RESOURCE_MAX_ARRAY_LENGTH/);
});

t.test('1,000 levels of nested extensions or contained resources: 413 naming the depth limit, not a stack overflow', async (t) => {
  assertOutcome(t, await send('POST', '/fhir/Patient', JSON.stringify(nestedExtensions(1000))), 413, /nested \d+ levels deep; this server accepts at most 100 levels \(RESOURCE_MAX_DEPTH\)/);
  let contained: Record<string, unknown> = { resourceType: 'Patient', id: 'p0' };
  for (let level = 1; level < 1000; level++) contained = { resourceType: 'Patient', id: `p${level}`, contained: [contained] };
  assertOutcome(t, await send('POST', '/fhir/Patient', JSON.stringify(contained)), 413, /RESOURCE_MAX_DEPTH/);
  // Inside a transaction's entry as well: the whole body is held to the limit.
  const bundle = { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: nestedExtensions(1000), request: { method: 'POST', url: 'Patient' } }] };
  assertOutcome(t, await send('POST', '/fhir', JSON.stringify(bundle)), 413, /RESOURCE_MAX_DEPTH/);
});

t.test('nesting within the depth limit is accepted', async (t) => {
  const res = await send('POST', '/fhir/Patient', JSON.stringify(nestedExtensions(30)));
  t.equal(res.statusCode, 201);
});

t.test('an array over the limit: 413 naming it and where it is', async (t) => {
  const patient = { resourceType: 'Patient', name: [{ family: 'Martin', given: Array.from({ length: 1001 }, (_, i) => `G${i}`) }] };
  const outcome = assertOutcome(t, await send('POST', '/fhir/Patient', JSON.stringify(patient)), 413, /Patient\.name\[0\]\.given has 1001 items; this server accepts at most 1000 in one array \(RESOURCE_MAX_ARRAY_LENGTH\)/);
  t.same(outcome.issue[0].expression, ['Patient.name[0].given']);
  t.equal(outcome.issue[0].code, 'too-long');
  // At the limit, accepted.
  patient.name[0]!.given.length = 1000;
  t.equal((await send('POST', '/fhir/Patient', JSON.stringify(patient))).statusCode, 201);
});

t.test('a patch whose result would go over a limit: 413 naming it, nothing changed', async (t) => {
  const patient = { resourceType: 'Patient', name: [{ family: 'Petit', given: Array.from({ length: 1000 }, (_, i) => `G${i}`) }] };
  const created = json(await send('POST', '/fhir/Patient', JSON.stringify(patient)));
  const patch = JSON.stringify([{ op: 'add', path: '/name/0/given/-', value: 'One more' }]);
  const res = await send('PATCH', `/fhir/Patient/${created.id}`, patch, { 'content-type': 'application/json-patch+json' });
  assertOutcome(t, res, 413, /Patient\.name\[0\]\.given has 1001 items; .*\(RESOURCE_MAX_ARRAY_LENGTH\)/);
  t.equal(json(await send('GET', `/fhir/Patient/${created.id}`)).meta.versionId, '1');
});

t.test('a transaction may have more entries than an array may have items (BUNDLE_MAX_ENTRIES bounds it)', async (t) => {
  const entry = Array.from({ length: 1001 }, () => ({ resource: { resourceType: 'Patient', active: true }, request: { method: 'POST', url: 'Patient' } }));
  const res = await send('POST', '/fhir', JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry }));
  t.equal(res.statusCode, 413, 'over the test server\'s BUNDLE_MAX_ENTRIES (1000)');
  t.match(json(res).issue[0].diagnostics, /at most 1000 per bundle/);
});

t.test('a resource with more search index entries than allowed: 413 naming RESOURCE_MAX_INDEX_ROWS', async (t) => {
  // Every array within its limit, 12,000 distinct names (each a `name` and a `given` entry) in all.
  const name = Array.from({ length: 60 }, (_, n) => ({ given: Array.from({ length: 200 }, (_, g) => `G${n}-${g}`) }));
  const res = await send('POST', '/fhir/Patient', JSON.stringify({ resourceType: 'Patient', name }));
  const outcome = assertOutcome(t, res, 413, /^This Patient has \d+ search index entries; this server accepts at most 10000 per resource \(RESOURCE_MAX_INDEX_ROWS\)/);
  t.equal(outcome.issue[0].code, 'too-long');
});

t.test('a NUL or a lone surrogate in any string of a resource: 400, nothing stored', async (t) => {
  const before = await storedVersions();
  for (const [label, text] of <Array<[string, string]>>[
    ['NUL', 'Mar\\u0000tin'],
    ['lone high surrogate', 'Mar\\ud800tin'],
    ['lone low surrogate', 'Mar\\udc00tin'],
    ['vertical tab', 'Mar\\u000btin'],
  ]) {
    const res = await send('POST', '/fhir/Patient', `{"resourceType":"Patient","name":[{"family":"${text}"}]}`);
    const outcome = assertOutcome(t, res, 400, /^Patient\.name\[0\]\.family contains the (control character|unpaired surrogate) U\+/);
    t.same(outcome.issue[0].expression, ['Patient.name[0].family'], label);
  }
  // In a property name too.
  assertOutcome(t, await send('POST', '/fhir/Patient', '{"resourceType":"Patient","a\\u0000b":1}'), 400, /property name/);
  t.equal(await storedVersions(), before);
  // Tabs, line breaks and a character outside the BMP (a surrogate pair) are text.
  const ok = await send('POST', '/fhir/Patient', JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Ma\trtin\r\n😀' }] }));
  t.equal(ok.statusCode, 201);
  t.equal(json(ok).name[0].family, 'Ma\trtin\r\n😀');
});

t.test('a NUL or a lone surrogate in a search value or in If-None-Exist: 400', async (t) => {
  assertOutcome(t, await send('GET', '/fhir/Patient?name=a%00b'), 400, /Search parameter "name" contains the control character U\+0000/);
  assertOutcome(t, await send('GET', '/fhir/Patient?identifier=%00'), 400, /U\+0000/);
  const form = await server.inject({ method: 'POST', url: '/fhir/Patient/_search', payload: 'family=a%00', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assertOutcome(t, form, 400, /U\+0000/);
  const patient = JSON.stringify({ resourceType: 'Patient', active: true });
  assertOutcome(t, await send('POST', '/fhir/Patient', patient, { 'if-none-exist': 'identifier=a%00' }), 400, /U\+0000/);
  assertOutcome(t, await send('PUT', '/fhir/Patient?identifier=%00', patient), 400, /U\+0000/);
});

t.test('an edited or made-up _cursor: 400 saying the cursor is invalid', async (t) => {
  for (let i = 0; i < 3; i++) await send('POST', '/fhir/Patient', JSON.stringify({ resourceType: 'Patient', birthDate: `1990-01-0${i + 1}`, name: [{ family: `Cursor${i}` }] }));
  const cursorOf = (url: string) => new URL(url).searchParams.get('_cursor')!;
  for (const sort of ['birthdate', '-_lastUpdated', 'family', '_id']) {
    const first = json(await send('GET', `/fhir/Patient?_count=1&_sort=${sort}`));
    const next = first.link.find((l: any) => l.relation === 'next');
    t.ok(next, `a next page for _sort=${sort}`);
    const values = JSON.parse(Buffer.from(cursorOf(next.url), 'base64url').toString('utf8'));
    const edited = (v: unknown) => Buffer.from(JSON.stringify({ ...values, v })).toString('base64url');
    for (const cursor of [
      edited(values.v.map(() => 'not-a-date-nor-a-number')),
      edited(values.v.map(() => '2024-02-30 10:00:00+00')),
      edited(values.v.map(() => '9'.repeat(200_000))),
      edited([...values.v, 'extra']),
      edited(values.v.slice(1)),
      edited(values.v.map(() => 'a\u0000b')),
      edited('nope'),
      'garbage!!',
      Buffer.from('{"v":').toString('base64url'),
    ]) {
      const res = await send('GET', `/fhir/Patient?_count=1&_sort=${sort}&_cursor=${encodeURIComponent(cursor)}`);
      if (res.statusCode === 200) continue; // a text key takes any text: an edited value pages from there
      assertOutcome(t, res, 400, /_cursor is not a cursor this server issued/);
    }
    t.equal((await send('GET', `/fhir/Patient?_count=1&_sort=${sort}&_cursor=${encodeURIComponent('garbage!!')}`)).statusCode, 400);
  }
  for (const url of ['/fhir/_history?_cursor=abc', '/fhir/Patient/_history?_cursor=-1', '/fhir/_history?_cursor=99999999999999999999']) {
    assertOutcome(t, await send('GET', url), 400, /_cursor/);
  }
});

t.test('a body that is not UTF-8 (Latin-1 "Café"): 400, nothing stored', async (t) => {
  const before = await storedVersions();
  const latin1 = Buffer.concat([Buffer.from('{"resourceType":"Patient","name":[{"family":"Caf'), Buffer.from([0xe9]), Buffer.from('"}]}')]);
  for (const contentType of [FHIR_JSON, 'application/json', 'application/json-patch+json']) {
    assertOutcome(t, await send('POST', '/fhir/Patient', latin1, { 'content-type': contentType }), 400, /not valid UTF-8/);
  }
  t.equal(await storedVersions(), before);
  const utf8 = await send('POST', '/fhir/Patient', Buffer.from('{"resourceType":"Patient","name":[{"family":"Café"}]}'));
  t.equal(utf8.statusCode, 201);
  t.equal(json(utf8).name[0].family, 'Café');
});

t.test('a malformed percent-encoding in the path: 400 OperationOutcome', async (t) => {
  const res = await fetch(`${base}/fhir/Patient/%FF`, { headers: { authorization: server.authorization } });
  assertOutcome(t, { statusCode: res.status, headers: Object.fromEntries(res.headers), body: await res.text() }, 400, /URL is not valid/);
  t.ok(res.headers.get('x-request-id'), 'with its request id');
});

t.test('headers too large: 431 OperationOutcome', async (t) => {
  const res = await new Promise<{ statusCode: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = httpRequest(`${base}/fhir/metadata`, { headers: { 'x-big': 'x'.repeat(64 * 1024) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ statusCode: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
  const outcome = assertOutcome(t, res, 431, /headers are larger/);
  t.equal(outcome.issue[0].code, 'too-long');
});

t.test('SQL in search values and ids is data, never SQL', async (t) => {
  const injection = "x' OR '1'='1'; DROP TABLE resource; --";
  for (const param of ['name', 'family', 'identifier', 'general-practitioner', 'birthdate:missing', '_id', '_tag', 'address-city:exact']) {
    const res = await send('GET', `/fhir/Patient?${param}=${encodeURIComponent(injection)}`);
    if (res.statusCode === 400) continue; // a value of the wrong form for the parameter
    t.equal(res.statusCode, 200, param);
    t.equal(json(res).entry, undefined, `${param}: no match`);
  }
  const read = await send('GET', `/fhir/Patient/${encodeURIComponent(injection)}`);
  t.ok([400, 404].includes(read.statusCode), `read answers ${read.statusCode}`);
  t.ok((await storedVersions()) > 0, 'the resources are still there');
});
