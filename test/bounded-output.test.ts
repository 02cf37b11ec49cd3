import t from 'tap';
import { MAX_DIAGNOSTICS_LENGTH } from '../src/fhir/outcome.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const MB = 1024 * 1024;
const logLines: string[] = [];
const server = await startTestServer(t, { bodyLimit: 4 * MB, logStream: { write: (line: string) => void logLines.push(line) } });

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method: 'POST', url, payload: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });

t.test('a resource with thousands of faults gets a bounded OperationOutcome: 100 issues and a last one counting the rest', async (t) => {
  // 900 names (under the array limit) whose family, text and use are each of the wrong type: 2,700 schema faults.
  const res = await post('/fhir/Patient', { resourceType: 'Patient', name: Array.from({ length: 900 }, () => ({ family: 1, text: 2, use: 3 })) });
  t.equal(res.statusCode, 400);
  const outcome = json(res);
  t.equal(outcome.issue.length, 101, 'the first 100 issues and one more');
  const last = outcome.issue[100];
  t.equal(last.severity, 'information');
  t.match(last.diagnostics, /^\d+ more issues were left out: only the first 100 are reported$/);
  t.ok(Number(last.diagnostics.split(' ')[0]) >= 2600, 'it says how many');
  t.ok(res.body.length < 100 * 1024, `the answer is ${res.body.length} bytes`);
});

t.test('a 1 MB resourceType is not echoed back: diagnostics are cut with an ellipsis', async (t) => {
  const huge = 'X'.repeat(MB);
  const res = await post('/fhir/Patient', { resourceType: huge });
  t.equal(res.statusCode, 400);
  t.ok(res.body.length < 2048, `the answer is ${res.body.length} bytes`);
  const { diagnostics } = json(res).issue[0];
  t.match(diagnostics, /^resourceType 'XXXX/);
  t.ok(diagnostics.endsWith('…'), 'the cut is marked');
  t.equal(diagnostics.length, MAX_DIAGNOSTICS_LENGTH);
});

t.test('a bundle entry failing with many issues keeps the bound', async (t) => {
  const bad = { resourceType: 'Patient', name: Array.from({ length: 500 }, () => ({ family: 1 })) };
  const res = await post('/fhir', { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: bad, request: { method: 'POST', url: 'Patient' } }] });
  t.equal(res.statusCode, 400);
  const outcome = json(res);
  t.equal(outcome.issue.length, 101);
  t.match(outcome.issue[100].diagnostics, /more issues were left out/);
});

t.test('logs hold no names, identifiers, bodies or query values, only the path and parameter names', async (t) => {
  logLines.length = 0;
  const patient = { resourceType: 'Patient', name: [{ family: 'Quenaudon-Secret', given: ['Gwenaëlle'] }], identifier: [{ system: 'http://hopital.example.fr/ipp', value: 'IPP-77812345' }] };
  t.equal((await post('/fhir/Patient', patient)).statusCode, 201);
  const search = await server.inject({ method: 'GET', url: '/fhir/Patient?family=Quenaudon-Secret&identifier=http://hopital.example.fr/ipp|IPP-77812345' });
  t.equal(search.statusCode, 200);
  // Refused: the diagnostics echo the value, the logs must not.
  t.equal((await post('/fhir/Patient', { ...patient, gender: 'Quenaudon-Secret' })).statusCode, 400);
  const logs = logLines.join('');
  t.ok(logLines.length >= 6, 'requests are logged');
  for (const secret of ['Quenaudon', 'Gwenaëlle', 'IPP-77812345']) t.notOk(logs.includes(secret), `no '${secret}' in the logs`);
  const incoming = logLines.map((line) => JSON.parse(line)).filter((line) => line.msg === 'incoming request');
  t.same(incoming.map((line) => line.req), [
    { method: 'POST', url: '/fhir/Patient' },
    { method: 'GET', url: '/fhir/Patient', parameters: ['family', 'identifier'] },
    { method: 'POST', url: '/fhir/Patient' },
  ]);
});

t.test('no log line is long, whatever the request', async (t) => {
  logLines.length = 0;
  const res = await server.inject({ method: 'GET', url: `/fhir/Patient/${'a'.repeat(100_000)}?${'b'.repeat(50_000)}=1` });
  t.equal(res.statusCode, 400);
  t.ok(logLines.length > 0);
  for (const line of logLines) t.ok(line.length < 2048, `a line of ${line.length} characters`);
});

t.test("a client's x-request-id is kept when well-formed, replaced otherwise", async (t) => {
  const asked = async (id: string) => String((await server.inject({ method: 'GET', url: '/fhir/metadata', headers: { 'x-request-id': id } })).headers['x-request-id']);
  t.equal(await asked('trace-42.abc_DEF'), 'trace-42.abc_DEF');
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  for (const malformed of ['x'.repeat(65), 'has space', 'a/b', '{"json":1}', '']) {
    t.match(await asked(malformed), uuid, `'${malformed.slice(0, 20)}' replaced`);
  }
});
