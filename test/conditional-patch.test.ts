import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import { rpps } from './helpers/fixtures.ts';

const server = await startTestServer(t);
const send = (method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH', url: string, body?: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method, url, payload: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });

const RPPS = 'https://rpps.esante.gouv.fr';
const practitioner = (number: string, family: string) => ({ resourceType: 'Practitioner', identifier: [{ system: RPPS, value: number }], name: [{ family }] });

t.test('If-None-Exist: no match creates (201), one match returns it (200), several are 412', async (t) => {
  const condition = `identifier=${RPPS}|${rpps('0000000001')}`;
  const first = await send('POST', '/fhir/Practitioner', practitioner(rpps('0000000001'), 'Bernard'), { 'if-none-exist': condition });
  t.equal(first.statusCode, 201);
  const second = await send('POST', '/fhir/Practitioner', practitioner(rpps('0000000001'), 'Bernard'), { 'if-none-exist': condition });
  t.equal(second.statusCode, 200);
  t.equal(json(second).id, json(first).id);
  t.equal(json(second).meta.versionId, '1', 'nothing was written');
  const prefixed = await send('POST', '/fhir/Practitioner', practitioner(rpps('0000000001'), 'Bernard'), { 'if-none-exist': `Practitioner?${condition}` });
  t.equal(prefixed.statusCode, 200, 'the criteria may be written with the type in front');
  t.equal(json(prefixed).id, json(first).id);

  await send('POST', '/fhir/Practitioner', practitioner(rpps('0000000002'), 'Roux'));
  await send('POST', '/fhir/Practitioner', practitioner(rpps('0000000002'), 'Roux'));
  const ambiguous = await send('POST', '/fhir/Practitioner', practitioner(rpps('0000000002'), 'Roux'), { 'if-none-exist': `identifier=${RPPS}|${rpps('0000000002')}` });
  t.equal(ambiguous.statusCode, 412);
  t.equal(json(await send('GET', `/fhir/Practitioner?identifier=${RPPS}|${rpps('0000000002')}`)).total, 2, 'no third one');

  const bad = await send('POST', '/fhir/Practitioner', practitioner(rpps('1000000009'), 'X'), { 'if-none-exist': 'no-such-param=1' });
  t.equal(bad.statusCode, 400, 'criteria the server does not understand are refused, not ignored');
});

t.test('conditional update: creates on no match, updates the one match, 412 on several', async (t) => {
  const url = `/fhir/Practitioner?identifier=${RPPS}|${rpps('0000000003')}`;
  const created = await send('PUT', url, practitioner(rpps('0000000003'), 'Faure'));
  t.equal(created.statusCode, 201);
  const updated = await send('PUT', url, practitioner(rpps('0000000003'), 'Faure-Garnier'));
  t.equal(updated.statusCode, 200);
  t.equal(json(updated).id, json(created).id);
  t.equal(json(updated).name[0].family, 'Faure-Garnier');
  t.equal((await send('PUT', `/fhir/Practitioner?identifier=${RPPS}|${rpps('0000000002')}`, practitioner(rpps('0000000002'), 'Roux'))).statusCode, 412);
  const wrongId = await send('PUT', url, { ...practitioner(rpps('0000000003'), 'Faure'), id: 'someone-else' });
  t.equal(wrongId.statusCode, 400, "a body id that is not the match's id is refused");
});

t.test('conditional delete: deletes the one match, 412 on several, 204 on none', async (t) => {
  const created = json(await send('POST', '/fhir/Practitioner', practitioner(rpps('0000000004'), 'Blanc')));
  t.equal((await send('DELETE', `/fhir/Practitioner?identifier=${RPPS}|${rpps('0000000004')}`)).statusCode, 204);
  t.equal((await send('GET', `/fhir/Practitioner/${created.id}`)).statusCode, 410);
  t.equal((await send('DELETE', `/fhir/Practitioner?identifier=${RPPS}|${rpps('0000000002')}`)).statusCode, 412);
  t.equal(json(await send('GET', `/fhir/Practitioner?identifier=${RPPS}|${rpps('0000000002')}`)).total, 2, 'neither was deleted');
  t.equal((await send('DELETE', `/fhir/Practitioner?identifier=${RPPS}|${rpps('9999999999')}`)).statusCode, 204);
});

t.test('several matches: the 412 names the matching resources, at most ten', async (t) => {
  const number = rpps('0000000005');
  const duplicates: string[] = [];
  for (let k = 0; k < 12; k++) duplicates.push(json(await send('POST', '/fhir/Practitioner', practitioner(number, 'Petit'))).id as string);
  const condition = `identifier=${RPPS}|${number}`;
  const named = (response: Awaited<ReturnType<typeof send>>) => {
    const issue = json(response).issue[0];
    return { status: response.statusCode, code: issue.code, ids: duplicates.filter((id) => issue.diagnostics.includes(`Practitioner/${id}`)).length, more: / and more\b/.test(issue.diagnostics) };
  };
  const expected = { status: 412, code: 'multiple-matches', ids: 10, more: true };
  t.same(named(await send('POST', '/fhir/Practitioner', practitioner(number, 'Petit'), { 'if-none-exist': condition })), expected, 'conditional create');
  t.same(named(await send('PUT', `/fhir/Practitioner?${condition}`, practitioner(number, 'Petit'))), expected, 'conditional update');
  t.same(named(await send('DELETE', `/fhir/Practitioner?${condition}`)), expected, 'conditional delete');
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ resource: practitioner(number, 'Petit'), request: { method: 'POST', url: 'Practitioner', ifNoneExist: condition } }],
  };
  t.same(named(await send('POST', '/fhir', bundle)), expected, 'ifNoneExist in a transaction');
  t.equal(json(await send('GET', `/fhir/Practitioner?${condition}&_total=accurate`)).total, 12, 'nothing was created or deleted');

  for (const id of duplicates.slice(2)) await send('DELETE', `/fhir/Practitioner/${id}`);
  const two = named(await send('POST', '/fhir/Practitioner', practitioner(number, 'Petit'), { 'if-none-exist': condition }));
  t.same(two, { status: 412, code: 'multiple-matches', ids: 2, more: false }, 'two matches are both named');
});

t.test('JSON Patch: applied, versioned, validated; a failing patch writes nothing', async (t) => {
  const patient = json(await send('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family: 'Garcia', given: ['Lucie'] }], gender: 'female' }));
  const url = `/fhir/Patient/${patient.id}`;
  const jsonPatch = { 'content-type': 'application/json-patch+json' };
  const ok = await send('PATCH', url, [{ op: 'replace', path: '/name/0/family', value: 'Garcia-Lopez' }, { op: 'add', path: '/birthDate', value: '1990-02-01' }], jsonPatch);
  t.equal(ok.statusCode, 200);
  t.equal(json(ok).meta.versionId, '2');
  t.equal(json(ok).name[0].family, 'Garcia-Lopez');
  t.equal(ok.headers.etag, 'W/"2"');

  const failedTest = await send('PATCH', url, [{ op: 'test', path: '/gender', value: 'male' }, { op: 'remove', path: '/birthDate' }], jsonPatch);
  t.equal(failedTest.statusCode, 422);
  const invalidResult = await send('PATCH', url, [{ op: 'replace', path: '/gender', value: 'femme' }], jsonPatch);
  t.equal(invalidResult.statusCode, 400, 'the patched resource is validated like an update');
  const missingPath = await send('PATCH', url, [{ op: 'remove', path: '/telecom/3' }], jsonPatch);
  t.equal(missingPath.statusCode, 422);
  const proto = await send('PATCH', url, [{ op: 'add', path: '/__proto__/polluted', value: true }], jsonPatch);
  t.ok(proto.statusCode >= 400 && proto.statusCode < 500);
  t.equal(({} as Record<string, unknown>).polluted, undefined);
  t.equal((await send('PATCH', url, '{"op":"add"}', jsonPatch)).statusCode, 400, 'a patch document is an array');
  t.equal((await send('PATCH', url, [{ op: 'add', path: '/active', value: true }], { ...jsonPatch, 'if-match': 'W/"1"' })).statusCode, 412);
  t.equal((await send('PATCH', url, 'x', { 'content-type': 'text/plain' })).statusCode, 415);
  t.equal((await send('PATCH', '/fhir/Patient/nobody', [], jsonPatch)).statusCode, 404);

  const current = json(await send('GET', url));
  t.equal(current.meta.versionId, '2', 'no failed patch wrote a version');
  t.equal(current.gender, 'female');
  t.equal(current.birthDate, '1990-02-01');
});

t.test('FHIRPath Patch (a Parameters resource): add, insert, replace, move, delete', async (t) => {
  const patient = json(await send('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family: 'Henry' }], telecom: [{ system: 'phone', value: '01 02 03 04 05' }] }));
  const url = `/fhir/Patient/${patient.id}`;
  const op = (parts: Array<Record<string, unknown>>) => ({ name: 'operation', part: parts });
  const res = await send('PATCH', url, {
    resourceType: 'Parameters',
    parameter: [
      op([{ name: 'type', valueCode: 'add' }, { name: 'path', valueString: 'Patient' }, { name: 'name', valueString: 'birthDate' }, { name: 'value', valueDate: '1975-11-30' }]),
      op([{ name: 'type', valueCode: 'insert' }, { name: 'path', valueString: 'Patient.telecom' }, { name: 'index', valueInteger: 0 }, { name: 'value', valueContactPoint: { system: 'email', value: 'h@example.fr' } }]),
      op([{ name: 'type', valueCode: 'replace' }, { name: 'path', valueString: 'Patient.name[0].family' }, { name: 'value', valueString: 'Henry-Dupuis' }]),
      op([{ name: 'type', valueCode: 'move' }, { name: 'path', valueString: 'Patient.telecom' }, { name: 'source', valueInteger: 0 }, { name: 'destination', valueInteger: 1 }]),
      op([{ name: 'type', valueCode: 'add' }, { name: 'path', valueString: 'Patient' }, { name: 'name', valueString: 'contact' }, { name: 'value', part: [{ name: 'gender', valueCode: 'male' }, { name: 'name', part: [{ name: 'family', valueString: 'Henry' }] }] }]),
    ],
  });
  t.equal(res.statusCode, 200);
  const patched = json(res);
  t.equal(patched.birthDate, '1975-11-30');
  t.equal(patched.name[0].family, 'Henry-Dupuis');
  t.same(patched.telecom.map((c: any) => c.system), ['phone', 'email'], 'insert at 0, then moved to 1');
  t.same(patched.contact, [{ gender: 'male', name: { family: 'Henry' } }], 'an anonymous element from (nested) parts');

  const deleted = json(await send('PATCH', url, { resourceType: 'Parameters', parameter: [op([{ name: 'type', valueCode: 'delete' }, { name: 'path', valueString: "Patient.telecom.where(system = 'email')" }])] }));
  t.same(deleted.telecom.map((c: any) => c.system), ['phone']);

  const bad = await send('PATCH', url, { resourceType: 'Parameters', parameter: [op([{ name: 'type', valueCode: 'replace' }, { name: 'path', valueString: 'Patient.address' }, { name: 'value', valueString: 'x' }])] });
  t.equal(bad.statusCode, 422, 'replacing an element that is not there cannot apply');
  t.equal(json(await send('GET', url)).meta.versionId, '3');
});
