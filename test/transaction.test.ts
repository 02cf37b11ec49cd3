import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import { minimalResource, nir, rpps } from './helpers/fixtures.ts';

const server = await startTestServer(t, { bundleMaxEntries: 20, bundleBodyLimit: 256 * 1024 });
const send = (method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH', url: string, body?: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method, url, payload: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });
const versionsStored = async () => json(await send('GET', '/fhir/_history?_count=0')).total as number;

const INS = 'urn:oid:1.2.250.1.213.1.4.8';

/** What a hospital sends: the patient (found by INS or created), a discharge letter, vaccinations, an allergy. */
function dischargeBundle(nir: string) {
  const patient = 'urn:uuid:6f1c8a52-1b0e-4d43-9a1e-7c1d2b3a4f01';
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: patient,
        resource: { resourceType: 'Patient', identifier: [{ system: INS, value: nir }], name: [{ family: 'Lefèvre', given: ['Hélène'] }], birthDate: '1984-07-12' },
        request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${INS}|${nir}` },
      },
      {
        fullUrl: 'urn:uuid:6f1c8a52-1b0e-4d43-9a1e-7c1d2b3a4f02',
        resource: {
          resourceType: 'DocumentReference',
          status: 'current',
          text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">Lettre de sortie de <a href="${patient}">la patiente</a></div>` },
          subject: { reference: patient },
          extension: [{ url: 'http://example.org/fhir/StructureDefinition/source-patient', valueReference: { reference: patient } }],
          content: [{ attachment: { contentType: 'application/pdf', data: 'JVBERi0xLjQK' } }],
        },
        request: { method: 'POST', url: 'DocumentReference' },
      },
      {
        resource: { resourceType: 'Immunization', status: 'completed', vaccineCode: { text: 'DTP' }, patient: { reference: patient }, occurrenceDateTime: '2024-05-02', lotNumber: 'A1' },
        request: { method: 'POST', url: 'Immunization' },
      },
      {
        resource: { ...minimalResource('AllergyIntolerance'), patient: { reference: patient } },
        request: { method: 'POST', url: 'AllergyIntolerance' },
      },
    ],
  };
}

t.test('a transaction lands whole: ids assigned, urn:uuid references rewritten everywhere', async (t) => {
  const res = await send('POST', '/fhir', dischargeBundle(nir('2840475123456')));
  t.equal(res.statusCode, 200);
  const bundle = json(res);
  t.equal(bundle.type, 'transaction-response');
  t.same(bundle.entry.map((e: any) => e.response.status), ['201 Created', '201 Created', '201 Created', '201 Created']);
  const patientLocation: string = bundle.entry[0].response.location;
  t.match(patientLocation, /\/fhir\/Patient\/[^/]+\/_history\/1$/);
  const patientRef = patientLocation.replace(/^.*\/fhir\//, '').replace(/\/_history\/1$/, '');
  t.ok(bundle.entry.every((e: any) => e.response.etag === 'W/"1"' && e.response.lastModified));

  const docId = bundle.entry[1].response.location.split('/')[5];
  const doc = json(await send('GET', `/fhir/DocumentReference/${docId}`));
  t.equal(doc.subject.reference, patientRef);
  t.equal(doc.extension[0].valueReference.reference, patientRef, 'references inside extensions are rewritten');
  t.match(doc.text.div, `href="${patientRef}"`, 'and inside the narrative');
  t.notMatch(JSON.stringify(doc), 'urn:uuid', 'no bundle-internal identity is left');
  const immunizations = json(await send('GET', `/fhir/Immunization?patient=${patientRef}`));
  t.equal(immunizations.total, 1, 'the new immunization is indexed under the new patient');
});

t.test('sending the same bundle again does not create the patient twice', async (t) => {
  const first = json(await send('POST', '/fhir', dischargeBundle(nir('1900175123456'))));
  const again = json(await send('POST', '/fhir', dischargeBundle(nir('1900175123456'))));
  t.equal(again.entry[0].response.status, '200 OK', 'the patient entry finds the existing patient');
  t.equal(again.entry[0].response.location, first.entry[0].response.location);
  const patients = json(await send('GET', `/fhir/Patient?identifier=${INS}|${nir('1900175123456')}`));
  t.equal(patients.total, 1);
  const patientRef = first.entry[0].response.location.replace(/^.*\/fhir\//, '').replace(/\/_history\/1$/, '');
  t.equal(json(await send('GET', `/fhir/Immunization?patient=${patientRef}`)).total, 2, "the second bundle's clinical entries attach to that patient");
});

t.test('the same bundle sent concurrently yields one patient (conditional create under a lock)', async (t) => {
  const results = await Promise.all(Array.from({ length: 6 }, () => send('POST', '/fhir', dischargeBundle(nir('2991275123456')))));
  t.same(results.map((r) => r.statusCode), Array(6).fill(200));
  const patients = json(await send('GET', `/fhir/Patient?identifier=${INS}|${nir('2991275123456')}`));
  t.equal(patients.total, 1, 'exactly one patient');
  const statuses = results.map((r) => json(r).entry[0].response.status).sort();
  t.same(statuses, ['200 OK', '200 OK', '200 OK', '200 OK', '200 OK', '201 Created']);
});

t.test('one bad entry fails the whole transaction, naming the entry; nothing is written', async (t) => {
  const before = await versionsStored();
  const bundle = dischargeBundle(nir('1880175123456'));
  (bundle.entry[2]!.resource as Record<string, unknown>).occurrenceDateTime = 'hier';
  const res = await send('POST', '/fhir', bundle);
  t.equal(res.statusCode, 400);
  const outcome = json(res);
  t.equal(outcome.resourceType, 'OperationOutcome');
  t.ok(outcome.issue[0].expression.includes('Bundle.entry[2]'), 'names the failing entry');
  t.match(outcome.issue[0].diagnostics, /Bundle\.entry\[2\] \(POST Immunization\)/);
  t.equal(await versionsStored(), before, 'no version of any entry was kept');
  t.equal(json(await send('GET', `/fhir/Patient?identifier=${INS}|${nir('1880175123456')}`)).total, 0);
});

t.test('a failing update (If-Match) in a transaction rolls back the creates before it', async (t) => {
  const org = json(await send('POST', '/fhir/Organization', { resourceType: 'Organization', name: 'CHU' }));
  const before = await versionsStored();
  const res = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: { resourceType: 'Practitioner', name: [{ family: 'Martin' }] }, request: { method: 'POST', url: 'Practitioner' } },
      { resource: { ...org, name: 'CHU de Nantes' }, request: { method: 'PUT', url: `Organization/${org.id}`, ifMatch: 'W/"9"' } },
    ],
  });
  t.equal(res.statusCode, 412);
  t.equal(await versionsStored(), before);
  t.equal(json(await send('GET', `/fhir/Organization/${org.id}`)).name, 'CHU');
});

t.test('entries run deletes, creates, updates, reads in that order; answers keep the request order', async (t) => {
  const doomed = json(await send('POST', '/fhir/Organization', { resourceType: 'Organization', name: 'Ancienne clinique' }));
  const kept = json(await send('POST', '/fhir/Organization', { resourceType: 'Organization', name: 'Clinique' }));
  const res = json(
    await send('POST', '/fhir', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'GET', url: `Organization/${doomed.id}` } },
        { resource: { ...kept, name: 'Clinique du Parc' }, request: { method: 'PUT', url: `Organization/${kept.id}` } },
        { request: { method: 'DELETE', url: `Organization/${doomed.id}` } },
      ],
    }),
  );
  // The GET is processed after the DELETE, so the whole transaction fails with 410 if order is kept.
  t.equal(res.resourceType, 'OperationOutcome');
  t.equal(res.issue[0].code, 'deleted');
  t.equal(json(await send('GET', `/fhir/Organization/${doomed.id}`)).name, 'Ancienne clinique', 'rolled back');

  const ok = json(
    await send('POST', '/fhir', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'GET', url: `Organization/${kept.id}` } },
        { resource: { ...kept, name: 'Clinique du Parc' }, request: { method: 'PUT', url: `Organization/${kept.id}` } },
        { request: { method: 'DELETE', url: `Organization/${doomed.id}` } },
      ],
    }),
  );
  t.same(ok.entry.map((e: any) => e.response.status), ['200 OK', '200 OK', '204 No Content']);
  t.equal(ok.entry[0].resource.name, 'Clinique du Parc', 'the read ran after the update');
});

t.test('conditional references and conditional updates inside a transaction', async (t) => {
  await send('POST', '/fhir/Patient', { resourceType: 'Patient', identifier: [{ system: INS, value: nir('2770575123456') }], name: [{ family: 'Moreau' }] });
  const res = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        resource: { resourceType: 'Immunization', status: 'completed', vaccineCode: { text: 'Grippe' }, patient: { reference: `Patient?identifier=${INS}|${nir('2770575123456')}` }, occurrenceDateTime: '2025-10-20' },
        request: { method: 'POST', url: 'Immunization' },
      },
      {
        resource: { resourceType: 'Practitioner', identifier: [{ system: 'https://rpps.esante.gouv.fr', value: rpps('1000123456') }], name: [{ family: 'Petit' }] },
        request: { method: 'PUT', url: `Practitioner?identifier=https://rpps.esante.gouv.fr|${rpps('1000123456')}` },
      },
    ],
  });
  t.equal(res.statusCode, 200);
  const out = json(res);
  t.same(out.entry.map((e: any) => e.response.status), ['201 Created', '201 Created']);
  const immunization = out.entry[0].resource;
  const patient = json(await send('GET', `/fhir/Patient?identifier=${INS}|${nir('2770575123456')}`)).entry[0].resource;
  t.equal(immunization.patient.reference, `Patient/${patient.id}`);

  const again = json(
    await send('POST', '/fhir', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          resource: { resourceType: 'Practitioner', identifier: [{ system: 'https://rpps.esante.gouv.fr', value: rpps('1000123456') }], name: [{ family: 'Petit-Durand' }] },
          request: { method: 'PUT', url: `Practitioner?identifier=https://rpps.esante.gouv.fr|${rpps('1000123456')}` },
        },
      ],
    }),
  );
  t.equal(again.entry[0].response.status, '200 OK', 'the second conditional PUT updates the match');
  t.equal(again.entry[0].resource.meta.versionId, '2');

  const unresolved = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ resource: { resourceType: 'Immunization', status: 'completed', vaccineCode: { text: 'X' }, patient: { reference: `Patient?identifier=${INS}|000000000000000` }, occurrenceDateTime: '2025-10-20' }, request: { method: 'POST', url: 'Immunization' } }],
  });
  t.equal(unresolved.statusCode, 412, 'a conditional reference matching nothing fails the transaction');
  t.match(json(unresolved).issue[0].diagnostics, /matches no Patient/);
});

t.test('batch: entries are independent, each with its own status and outcome', async (t) => {
  const res = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { resource: { resourceType: 'Organization', name: 'Laboratoire' }, request: { method: 'POST', url: 'Organization' } },
      { resource: { resourceType: 'Organization', name: 42 }, request: { method: 'POST', url: 'Organization' } },
      { request: { method: 'GET', url: 'Organization/does-not-exist' } },
      { request: { method: 'GET', url: 'Organization?name=Laboratoire' } },
    ],
  });
  t.equal(res.statusCode, 200);
  const bundle = json(res);
  t.equal(bundle.type, 'batch-response');
  t.same(bundle.entry.map((e: any) => e.response.status), ['201 Created', '400 Bad Request', '404 Not Found', '200 OK']);
  t.equal(bundle.entry[1].response.outcome.resourceType, 'OperationOutcome');
  t.ok(bundle.entry[3].resource.total >= 1, 'the search entry sees the batch create before it');
});

t.test('Prefer: return=minimal leaves resources out of the response bundle', async (t) => {
  const res = json(await send('POST', '/fhir', { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Organization', name: 'X' }, request: { method: 'POST', url: 'Organization' } }] }, { prefer: 'return=minimal' }));
  t.equal(res.entry[0].resource, undefined);
  t.ok(res.entry[0].response.location);
});

t.test('bundle limits and malformed bundles', async (t) => {
  const many = { resourceType: 'Bundle', type: 'batch', entry: Array.from({ length: 21 }, () => ({ request: { method: 'GET', url: 'metadata' } })) };
  const tooMany = await send('POST', '/fhir', many);
  t.equal(tooMany.statusCode, 413);
  t.match(json(tooMany).issue[0].diagnostics, /at most 20/);
  const tooBig = await send('POST', '/fhir', { resourceType: 'Bundle', type: 'batch', entry: [{ resource: { resourceType: 'Organization', name: 'x'.repeat(300 * 1024) }, request: { method: 'POST', url: 'Organization' } }] });
  t.equal(tooBig.statusCode, 413, 'a bundle over the bundle byte limit');
  t.match(json(tooBig).issue[0].diagnostics, String(256 * 1024));
  for (const [body, why] of [
    [{ resourceType: 'Bundle', type: 'collection', entry: [] }, 'not a transaction or batch'],
    [{ resourceType: 'Patient' }, 'not a bundle'],
    [{ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Organization' } }] }, 'entry without request'],
    [{ resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'POST', url: 'Organization' } }] }, 'POST without resource'],
    [{ resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'TRACE', url: 'Organization' } }] }, 'unknown method'],
  ] as const) {
    const res = await send('POST', '/fhir', body);
    t.equal(res.statusCode, 400, why);
    t.equal(json(res).resourceType, 'OperationOutcome');
  }
});
