import type { Resource } from 'fhir/r4';
import t from 'tap';
import { FhirError } from '../src/fhir/outcome.ts';
import type { Interaction } from '../src/router/interaction.ts';
import type { InteractionHook } from '../src/router/router.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

// The moments an interaction's hooks run at (issue 15 item 3): authorise first, a check on the resource
// as it will be written, and an audit of every outcome.
const calls: string[] = [];
const seen: Resource[] = [];
const audited: Array<{ kind?: string; status: number }> = [];
let denyWrites = false;
let denySearchOf: string | undefined;

const hook: InteractionHook = {
  async authorise(interaction: Interaction) {
    calls.push(`authorise ${interaction.kind}`);
    if (denyWrites && interaction.kind !== 'read') throw new FhirError(403, [{ code: 'forbidden', diagnostics: 'not allowed' }]);
    if (interaction.kind === 'search-type' && interaction.resourceType === denySearchOf) throw new FhirError(403, [{ code: 'forbidden', diagnostics: `no search of ${denySearchOf}` }]);
  },
  async checkResource(interaction: Interaction, _request, resource: Resource) {
    calls.push(`check ${interaction.kind}`);
    seen.push(structuredClone(resource));
    const family = (resource as { name?: Array<{ family?: string }> }).name?.[0]?.family;
    if (family === 'Refused') throw new FhirError(403, [{ code: 'forbidden', diagnostics: 'this resource may not be written' }]);
    if (family === 'Crash') throw new Error('a failure that is not a FhirError');
    if (family === 'Outage') throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  },
  async audit(interaction, _request, response) {
    audited.push({ kind: interaction?.kind, status: response.status });
  },
};

const server = await startTestServer(t, { hooks: [hook] });
const send = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method: method as 'POST', url, ...(body === undefined ? {} : { payload: JSON.stringify(body) }), headers: { 'content-type': FHIR_JSON, ...headers } });
const reset = () => {
  calls.length = 0;
  seen.length = 0;
  audited.length = 0;
};

t.test('an unauthorised caller is refused before validation: it learns nothing of its body', async (t) => {
  reset();
  denyWrites = true;
  const invalid = await send('POST', '/fhir/Patient', { resourceType: 'Patient', birthDate: 'not a date' });
  denyWrites = false;
  t.equal(invalid.statusCode, 403, 'an invalid body from an unauthorised caller is 403, not 400');
  t.same(calls, ['authorise create'], 'nothing ran after the refusal');
  t.same(audited, [{ kind: 'create', status: 403 }], 'the refusal is audited');
  t.equal(json(await send('GET', '/fhir/Patient?_summary=count')).total, 0);
});

t.test('the resource check runs after validation, on the resource as written', async (t) => {
  reset();
  const invalid = await send('POST', '/fhir/Patient', { resourceType: 'Patient', birthDate: 'not a date' });
  t.equal(invalid.statusCode, 400);
  t.same(calls, ['authorise create'], 'an invalid body never reaches the check');

  reset();
  const refused = await send('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family: 'Refused' }] });
  t.equal(refused.statusCode, 403);
  t.same(calls, ['authorise create', 'check create']);
  t.equal(json(await send('GET', '/fhir/Patient?_summary=count')).total, 0, 'nothing written');
});

t.test('a patch is checked as the patched resource, and its warnings come back', async (t) => {
  const created = json(await send('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family: 'Martin' }] }));
  reset();
  const patch = [{ op: 'replace', path: '/name/0/family', value: 'Durand' }];
  const patched = await send('PATCH', `/fhir/Patient/${created.id}`, patch, { 'content-type': 'application/json-patch+json', prefer: 'return=OperationOutcome' });
  t.equal(patched.statusCode, 200);
  t.same(calls, ['authorise patch', 'check patch']);
  t.equal(seen.length, 1);
  t.match(seen[0], { resourceType: 'Patient', id: created.id, name: [{ family: 'Durand' }] }, 'the check saw the patched Patient, not the patch document');
  t.ok(json(patched).issue.some((issue: { severity: string }) => issue.severity === 'warning'), "the validator's warnings (dom-6: no narrative) are in the patch's outcome");

  reset();
  const refused = await send('PATCH', `/fhir/Patient/${created.id}`, [{ op: 'replace', path: '/name/0/family', value: 'Refused' }], { 'content-type': 'application/json-patch+json' });
  t.equal(refused.statusCode, 403, 'a check refusing the patched resource refuses the patch');
  const current = json(await send('GET', `/fhir/Patient/${created.id}`));
  t.equal(current.name[0].family, 'Durand', 'and nothing of it was written');
  t.equal(current.meta.versionId, '2');
});

t.test('a failure that is not a FhirError is audited as the 500 it becomes', async (t) => {
  reset();
  const crashed = await send('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family: 'Crash' }] });
  t.equal(crashed.statusCode, 500);
  t.equal(json(crashed).resourceType, 'OperationOutcome');
  t.same(audited, [{ kind: 'create', status: 500 }]);
});

t.test('a failure that means the database is unreachable is audited as the 503 it becomes', async (t) => {
  reset();
  const unreachable = await send('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family: 'Outage' }] });
  t.equal(unreachable.statusCode, 503);
  t.equal(unreachable.headers['retry-after'], '5');
  t.match(json(unreachable).issue, [{ severity: 'error', code: 'transient', diagnostics: /^The database is unreachable; retry in a few seconds \(request .+\)$/ }]);
  t.same(audited, [{ kind: 'create', status: 503 }]);
});

t.test("a transaction's matching before its entries run passes the same checks as a search", async (t) => {
  const identifier = { system: 'urn:oid:1.2.250.1.213.1.4.8', value: '277076322082910' };
  await send('POST', '/fhir/Patient', { resourceType: 'Patient', identifier: [identifier], name: [{ family: 'Existing' }] });
  const criteria = `identifier=${identifier.system}|${identifier.value}`;
  const conditionalCreate = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ resource: { resourceType: 'Patient', identifier: [identifier] }, request: { method: 'POST', url: 'Patient', ifNoneExist: criteria } }],
  };
  const conditionalReference = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ resource: { resourceType: 'Immunization', status: 'completed', vaccineCode: { text: 'DTP' }, patient: { reference: `Patient?${criteria}` }, occurrenceDateTime: '2024-05-02' }, request: { method: 'POST', url: 'Immunization' } }],
  };

  reset();
  denySearchOf = 'Patient';
  const refusedCreate = await send('POST', '/fhir', conditionalCreate);
  const refusedReference = await send('POST', '/fhir', conditionalReference);
  denySearchOf = undefined;
  t.equal(refusedCreate.statusCode, 403, 'ifNoneExist is a search of Patient: refused');
  t.match(json(refusedCreate).issue[0].diagnostics, /no search of Patient/);
  t.equal(refusedReference.statusCode, 403, 'a conditional reference is a search of Patient: refused');
  t.equal(json(await send('GET', '/fhir/Immunization?_summary=count')).total, 0, 'nothing written');

  reset();
  const matched = await send('POST', '/fhir', conditionalCreate);
  t.equal(matched.statusCode, 200);
  t.match(json(matched).entry[0].response.status, /^200/, 'the existing Patient matched');
  t.ok(calls.includes('authorise search-type'), 'the match was authorised as a search');
  t.ok(audited.some((entry) => entry.kind === 'create' && entry.status === 200), 'the entry answered without the router is audited too');
});
