import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

// A small body limit so the 413 case needs no huge payload.
const BODY_LIMIT = 64 * 1024;
const server = await startTestServer(t, { bodyLimit: BODY_LIMIT });

const send = (method: 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'GET', url: string, payload?: string, headers: Record<string, string> = {}) =>
  server.inject({ method, url, payload, headers: { 'content-type': FHIR_JSON, ...headers } });

const storedVersions = async () => json(await server.inject({ method: 'GET', url: '/fhir/_history?_count=0' })).total as number;

function assertOutcome(t: Test, res: LightMyRequestResponse, status: number, code?: string) {
  t.equal(res.statusCode, status, `status ${status}`);
  t.match(String(res.headers['content-type']), /^application\/fhir\+json/);
  const outcome = json(res);
  t.equal(outcome.resourceType, 'OperationOutcome');
  t.ok(outcome.issue.length > 0);
  if (code) t.equal(outcome.issue[0].code, code);
  return outcome;
}

const valid = { resourceType: 'Patient', name: [{ family: 'Bernard' }] };

t.test('malformed JSON is 400 and stores nothing', async (t) => {
  const before = await storedVersions();
  for (const body of ['{"resourceType": "Patient",', 'not json', '{"resourceType":"Patient"} trailing', '']) {
    assertOutcome(t, await send('POST', '/fhir/Patient', body), 400);
  }
  t.equal(await storedVersions(), before);
});

t.test('malformed JSON: the diagnostics say what the parser found, whichever JSON media type was sent', async (t) => {
  for (const contentType of [FHIR_JSON, 'application/json']) {
    const outcome = assertOutcome(t, await send('POST', '/fhir/Patient', '{"resourceType": "Patient", "active": tru}', { 'content-type': contentType }), 400);
    t.match(outcome.issue[0].diagnostics, /^Malformed JSON body: Unexpected token '}'/, contentType);
    t.equal(outcome.issue[0].code, 'structure');
    t.notMatch(outcome.issue[0].diagnostics, /content-type/i, 'no word of a media type the client did not send');
  }
});

t.test('schema violations are 400 with one issue per problem, each with its FHIRPath expression', async (t) => {
  const res = await send(
    'POST',
    '/fhir/Patient',
    JSON.stringify({
      resourceType: 'Patient',
      gender: 'femme',
      birthDate: '1990-13-45',
      active: 'yes',
      name: [{ given: 'Marie' }],
      nickname: 'Mimi',
    }),
  );
  const outcome = assertOutcome(t, res, 400);
  const expressions = outcome.issue.map((i: any) => i.expression[0]).sort();
  t.same(expressions, ['Patient.active', 'Patient.birthDate', 'Patient.gender', 'Patient.name[0].given', 'Patient.nickname'].sort());
  t.ok(outcome.issue.every((i: any) => i.severity === 'error' && i.diagnostics.startsWith(i.expression[0])));
});

t.test('JSON rules the schema cannot state: empty arrays, empty objects, nulls, empty strings', async (t) => {
  const cases: Array<[object, string]> = [
    [{ ...valid, identifier: [] }, 'Patient.identifier'],
    [{ ...valid, maritalStatus: {} }, 'Patient.maritalStatus'],
    [{ ...valid, gender: null }, 'Patient.gender'],
    [{ ...valid, name: [{ family: '' }] }, 'Patient.name[0].family'],
  ];
  for (const [body, expression] of cases) {
    const outcome = assertOutcome(t, await send('POST', '/fhir/Patient', JSON.stringify(body)), 400);
    t.ok(outcome.issue.some((i: any) => i.expression?.[0] === expression), expression);
  }
});

t.test('wrong JSON types for the whole body', async (t) => {
  for (const body of ['[]', '"Patient"', '42', 'null', 'true']) {
    assertOutcome(t, await send('POST', '/fhir/Patient', body), 400);
  }
});

t.test('a number, string, boolean or array where a complex type belongs is 400, on create and update alike', async (t) => {
  const before = await storedVersions();
  const document = (content: unknown) => ({ resourceType: 'DocumentReference', id: 'd1', status: 'current', content });
  for (const content of [[-1], ['x'], [true], [[{}]], [{ attachment: 5 }], [{ attachment: 'x' }]]) {
    for (const [method, url] of [['POST', '/fhir/DocumentReference'], ['PUT', '/fhir/DocumentReference/d1']] as const) {
      const outcome = assertOutcome(t, await send(method, url, JSON.stringify(document(content))), 400);
      t.match(outcome.issue[0].expression[0], /^DocumentReference\.content\[0\]/, `${method} ${JSON.stringify(content)}`);
    }
  }
  assertOutcome(t, await send('POST', '/fhir/Patient', JSON.stringify({ ...valid, name: ['Martin'] })), 400);
  assertOutcome(t, await send('POST', '/fhir/Patient', JSON.stringify({ ...valid, maritalStatus: 'M' })), 400);
  t.equal(await storedVersions(), before, 'nothing stored');
  const placeholders = await send('POST', '/fhir/Patient', JSON.stringify({ ...valid, name: [{ given: ['A', 'B'], _given: [null, { extension: [{ url: 'http://example.org/x', valueString: 'y' }] }] }] }));
  t.equal(placeholders.statusCode, 201, 'null placeholders of a primitive array\'s extensions stay legal');
});

t.test('resourceType and id must agree with the URL', async (t) => {
  assertOutcome(t, await send('POST', '/fhir/Patient', JSON.stringify({ resourceType: 'Practitioner' })), 400);
  assertOutcome(t, await send('POST', '/fhir/Patient', JSON.stringify({ name: [{ family: 'X' }] })), 400);
  assertOutcome(t, await send('PUT', '/fhir/Patient/p1', JSON.stringify({ ...valid, id: 'p2' })), 400);
  assertOutcome(t, await send('PUT', '/fhir/Patient/p1', JSON.stringify(valid)), 400, 'required');
  assertOutcome(t, await send('PUT', '/fhir/Patient/p1', JSON.stringify({ ...valid, id: 'p1', resourceType: 'Organization' })), 400);
  t.equal((await send('GET', '/fhir/Patient/p1')).statusCode, 404, 'none of those wrote anything');
});

t.test('unknown resource types and paths are 404; unsupported methods are 405 with Allow', async (t) => {
  assertOutcome(t, await send('GET', '/fhir/Observation/1'), 404, 'not-found');
  assertOutcome(t, await send('POST', '/fhir/Foo', JSON.stringify({ resourceType: 'Foo' })), 404, 'not-found');
  assertOutcome(t, await send('GET', '/fhir/Patient/1/_history/1/extra'), 404);
  assertOutcome(t, await send('GET', '/elsewhere'), 404);
  const post = await send('POST', '/fhir/Patient/1', JSON.stringify(valid));
  assertOutcome(t, post, 405, 'not-supported');
  t.equal(post.headers.allow, 'GET, PUT, PATCH, DELETE');
  assertOutcome(t, await send('PATCH', '/fhir/Patient', '[]', { 'content-type': 'application/json-patch+json' }), 405);
  const unconditional = await send('DELETE', '/fhir/Patient', undefined);
  assertOutcome(t, unconditional, 405);
  t.match(json(unconditional).issue[0].diagnostics, /search criteria/, 'a type-level DELETE without criteria is not a conditional delete');
  assertOutcome(t, await send('PUT', '/fhir/metadata', JSON.stringify(valid)), 405);
  assertOutcome(t, await send('GET', '/fhir/Patient/bad_id!'), 400);
  assertOutcome(t, await send('GET', `/fhir/Patient/${'x'.repeat(65)}`), 400);
});

t.test('unsupported media types are 415', async (t) => {
  const before = await storedVersions();
  for (const type of ['application/fhir+xml', 'text/plain', 'application/x-www-form-urlencoded']) {
    assertOutcome(t, await send('POST', '/fhir/Patient', JSON.stringify(valid), { 'content-type': type }), 415, 'not-supported');
  }
  t.equal(await storedVersions(), before);
});

t.test('a body over the limit is 413 and stores nothing', async (t) => {
  const before = await storedVersions();
  const huge = JSON.stringify({ ...valid, name: [{ family: 'x'.repeat(BODY_LIMIT) }] });
  const outcome = assertOutcome(t, await send('POST', '/fhir/Patient', huge), 413, 'too-long');
  t.match(outcome.issue[0].diagnostics, String(BODY_LIMIT));
  t.equal(await storedVersions(), before);
});

t.test('prototype pollution attempts are refused', async (t) => {
  assertOutcome(t, await send('POST', '/fhir/Patient', '{"resourceType":"Patient","__proto__":{"polluted":true}}'), 400);
  assertOutcome(t, await send('POST', '/fhir/Patient', '{"resourceType":"Patient","constructor":{"prototype":{"polluted":true}}}'), 400);
  t.equal(({} as Record<string, unknown>).polluted, undefined);
});

t.test('injection attempts in ids and parameters are data, never SQL', async (t) => {
  assertOutcome(t, await send('GET', "/fhir/Patient/1'%20OR%20'1'='1"), 400);
  assertOutcome(t, await send('GET', '/fhir/Patient/_history?_since=2020-01-01%27;DROP%20TABLE%20resource;--'), 400);
  assertOutcome(t, await send('GET', '/fhir/_history?_count=1;DELETE'), 400);
  const created = await send('POST', '/fhir/Patient', JSON.stringify({ ...valid, name: [{ family: "O'Brien'); DROP TABLE resource;--" }] }));
  t.equal(created.statusCode, 201);
  t.equal(json(await send('GET', `/fhir/Patient/${json(created).id}`)).name[0].family, "O'Brien'); DROP TABLE resource;--");
});

t.test('bad history parameters are 400 naming the parameter', async (t) => {
  for (const query of ['_count=-1', '_count=abc', '_since=yesterday', '_since=2021-13-45', '_count=1&_count=2', '_cursor=abc']) {
    const outcome = assertOutcome(t, await send('GET', `/fhir/Patient/_history?${query}`), 400);
    const name = query.split('=')[0]!;
    t.ok(outcome.issue[0].expression?.includes(name) || outcome.issue[0].diagnostics.includes(name), `${query} names ${name}`);
  }
});
