import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

// IHE MHD as ANS PDSm 3.1.1 profiles it: ITI-65 provide-document bundles, ITI-105 simplified publish, ITI-67
// search and ITI-68 retrieve, with the PDSm and PDSm4DMP examples (test copies: see fixtures/pdsm/SOURCES.md).
const server = await startTestServer(t, { frenchProfiles: true });

const fixture = (path: string) => JSON.parse(readFileSync(new URL(`./fixtures/${path}`, import.meta.url), 'utf8'));
const send = (method: 'POST' | 'PUT', url: string, body: unknown) =>
  server.inject({ method, url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });

const NIR = 'urn:oid:1.2.250.1.213.1.4.8|123456789012311';
const SUBMISSION = 'pdsm/Bundle-example-td2-iti65-lot-soumission.json';
const REPLACEMENT = 'pdsm/Bundle-example-td2-1-remplacement.json';
type Json = Record<string, any>;

/** A copy of a provide bundle whose DocumentReference carries `masterIdentifier` value `unique` (so searches count only it). */
function provideBundle(path: string, unique: string, change: (resources: Json) => void = () => {}): Json {
  const bundle = fixture(path);
  const byType: Json = {};
  for (const entry of bundle.entry) byType[entry.resource.resourceType] = entry.resource;
  byType.DocumentReference.masterIdentifier.value = unique;
  change(byType);
  return bundle;
}

async function documentsWith(unique: string): Promise<Json[]> {
  const res = await server.inject({ method: 'GET', url: `/fhir/DocumentReference?identifier=${encodeURIComponent(`urn:ietf:rfc:3986|${unique}`)}` });
  return (json(res).entry ?? []).map((entry: Json) => entry.resource);
}

async function storeReplacedDocument(t: Test, status: string): Promise<number> {
  // doc-x-id as it stood before PDSm4DMP's replacement example (the copy shows it after: superseded).
  const res = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ resource: { ...fixture('pdsm/DocumentReference-doc-x-id.json'), status }, request: { method: 'PUT', url: 'DocumentReference/doc-x-id' } }],
  });
  t.equal(res.statusCode, 200, 'doc-x-id stored');
  return Number(json(res).entry[0].response.etag.replace(/\D/g, ''));
}

const readOld = async () => json(await server.inject({ method: 'GET', url: '/fhir/DocumentReference/doc-x-id' }));

t.before(async () => {
  const organization = await send('PUT', '/fhir/Organization/org-example', fixture('ig-narratives/Organization-org-example.json'));
  if (organization.statusCode !== 201) throw new Error(`custodian not stored: ${organization.body}`);
  const patient = {
    ...fixture('pdsm/Patient-fr-patient-123.json'),
    identifier: [{ use: 'official', type: { coding: [{ system: 'https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203', code: 'INS-NIR' }] }, system: 'urn:oid:1.2.250.1.213.1.4.8', value: '123456789012311' }],
  };
  const stored = await send('PUT', '/fhir/Patient/fr-patient-123', patient);
  if (stored.statusCode !== 201) throw new Error(`patient not stored: ${stored.body}`);
});


t.test('ITI-65: the PDSm4DMP submission is stored whole, found by ITI-67 and its document read back by ITI-68', async (t) => {
  const bundle = provideBundle(SUBMISSION, 'urn:oid:1.2.250.1.213.1.4.8.99999.65');
  const binaryData = bundle.entry[2].resource.data as string;
  const res = await send('POST', '/fhir', bundle);
  t.equal(res.statusCode, 200, 'accepted');
  const answer = json(res);
  t.equal(answer.type, 'transaction-response');
  t.same(answer.entry.map((entry: Json) => entry.response.status), ['201 Created', '201 Created', '201 Created']);
  const [listId, documentId, binaryId] = answer.entry.map((entry: Json) => entry.response.location.split('/')[5]);

  const found = await server.inject({ method: 'GET', url: `/fhir/DocumentReference?patient.identifier=${encodeURIComponent(NIR)}&status=current` });
  t.equal(found.statusCode, 200);
  const document = json(found).entry.map((entry: Json) => entry.resource).find((resource: Json) => resource.id === documentId);
  t.ok(document, 'ITI-67 finds the document by the patient INS and status');
  t.equal(document.subject.reference, 'Patient/fr-patient-123', 'its conditional subject resolved to the patient');
  t.equal(document.content[0].attachment.url, `Binary/${binaryId}`);

  const retrieved = await server.inject({ method: 'GET', url: `/fhir/${document.content[0].attachment.url}`, headers: { accept: 'application/xml' } });
  t.equal(retrieved.statusCode, 200);
  t.ok(retrieved.rawPayload.equals(Buffer.from(binaryData, 'base64')), 'ITI-68 retrieves the document bytes');

  const list = json(await server.inject({ method: 'GET', url: `/fhir/List/${listId}` }));
  t.same(list.entry.map((entry: Json) => entry.item.reference), [`DocumentReference/${documentId}`], 'the SubmissionSet lists the document');
  const lists = json(await server.inject({ method: 'GET', url: `/fhir/List?subject:Patient.identifier=${encodeURIComponent(NIR)}&code=submissionset` }));
  t.ok(lists.entry.some((entry: Json) => entry.resource.id === listId), 'the SubmissionSet is found by patient and code');
});

t.test('ITI-65: a provide bundle without its SubmissionSet is refused by the bundle profile, nothing stored', async (t) => {
  const unique = 'urn:oid:1.2.250.1.213.1.4.8.99999.66';
  const bundle = provideBundle(SUBMISSION, unique);
  bundle.entry = bundle.entry.filter((entry: Json) => entry.resource.resourceType !== 'List');
  const res = await send('POST', '/fhir', bundle);
  t.equal(res.statusCode, 422);
  const missing = json(res).issue.find((issue: Json) => issue.severity === 'error' && /entry:SubmissionSet: minimum required = 1, but only found 0/.test(issue.diagnostics));
  t.ok(missing, 'the missing SubmissionSet is named');
  t.same(missing?.expression, ['Bundle.entry']);
  t.same(await documentsWith(unique), []);
});

t.test('ITI-65: a DocumentReference without masterIdentifier is refused with its expression, nothing stored', async (t) => {
  const unique = 'urn:oid:1.2.250.1.213.1.4.8.99999.67';
  const bundle = provideBundle(SUBMISSION, unique, (resources) => {
    resources.DocumentReference.identifier = [{ system: 'urn:ietf:rfc:3986', value: unique }];
    delete resources.DocumentReference.masterIdentifier;
  });
  const res = await send('POST', '/fhir', bundle);
  t.equal(res.statusCode, 422);
  const issue = json(res).issue.find((i: Json) => i.severity === 'error');
  t.same(issue.expression, ['Bundle.entry[1]', 'DocumentReference.masterIdentifier']);
  t.same(await documentsWith(unique), []);
});

t.test('ITI-65: an entry is held to the profile its slice requires even when it claims none', async (t) => {
  const unique = 'urn:oid:1.2.250.1.213.1.4.8.99999.68';
  const accepted = provideBundle(SUBMISSION, unique, (resources) => delete resources.List.meta);
  t.equal((await send('POST', '/fhir', accepted)).statusCode, 200, 'a conforming SubmissionSet that claims no profile is accepted');

  const other = 'urn:oid:1.2.250.1.213.1.4.8.99999.69';
  const refused = provideBundle(SUBMISSION, other, (resources) => {
    delete resources.List.meta;
    delete resources.List.source;
  });
  const res = await send('POST', '/fhir', refused);
  t.equal(res.statusCode, 422);
  t.ok(json(res).issue.some((issue: Json) => issue.severity === 'error' && /SubmissionSet/.test(issue.diagnostics)), 'a List that is no SubmissionSet leaves the slice empty');
  t.same(await documentsWith(other), []);

  // A DocumentReference is the only type of its slice: it is validated once, when its entry runs.
  const claimsNothing = provideBundle(SUBMISSION, 'urn:oid:1.2.250.1.213.1.4.8.99999.70', (resources) => {
    delete resources.DocumentReference.meta;
    delete resources.DocumentReference.custodian;
  });
  const noCustodian = await send('POST', '/fhir', claimsNothing);
  t.equal(noCustodian.statusCode, 422);
  t.ok(json(noCustodian).issue.some((issue: Json) => issue.severity === 'error' && issue.expression?.includes('DocumentReference.custodian')));
});

t.test('ITI-105: simplified publish is validated against its own profile, not the comprehensive one', async (t) => {
  // With referential integrity on (the default): the examples' patient, organisation and author role are stored
  // first, and the PDSm4DMP one names its patient by a conditional reference (its NIR), resolved on a plain POST.
  const publisher = await startTestServer(t, { frenchProfiles: true });
  const send = (method: 'POST' | 'PUT', url: string, body: unknown) => publisher.inject({ method, url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });
  const patient = {
    ...fixture('pdsm/Patient-fr-patient-123.json'),
    identifier: [{ use: 'official', type: { coding: [{ system: 'https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203', code: 'INS-NIR' }] }, system: 'urn:oid:1.2.250.1.213.1.4.8', value: '123456789012311' }],
  };
  // One after the other: the role names the organisation.
  const targets = [
    await send('PUT', '/fhir/Patient/fr-patient-123', patient),
    await send('PUT', '/fhir/Organization/org-example', fixture('ig-narratives/Organization-org-example.json')),
    await send('PUT', '/fhir/PractitionerRole/practitionerrole-example', { resourceType: 'PractitionerRole', id: 'practitionerrole-example', active: true, organization: { reference: 'Organization/org-example' } }),
  ];
  t.same(targets.map((res) => res.statusCode), [201, 201, 201], 'the referenced resources are stored');
  const pdsm = fixture('pdsm/DocumentReference-PDSmSimplifiedExample.json');
  const created = await send('POST', '/fhir/DocumentReference', pdsm);
  t.equal(created.statusCode, 201, 'accepted');
  const dmp = await send('POST', '/fhir/DocumentReference', fixture('pdsm/DocumentReference-example-td2-iti105-publication-simplifiee.json'));
  t.equal(dmp.statusCode, 201, 'accepted');
  t.same(json(dmp).subject, { reference: 'Patient/fr-patient-123' }, 'the conditional reference to the patient is resolved by its NIR');

  const { meta: _claim, ...unclaimed } = pdsm;
  const asComprehensive = await send('POST', '/fhir/DocumentReference', unclaimed);
  t.equal(asComprehensive.statusCode, 422, 'without the claim the comprehensive default applies (no inline data)');
  t.ok(json(asComprehensive).issue.some((issue: Json) => issue.expression?.includes('DocumentReference.content[0].attachment.data')));

  const untitled = structuredClone(pdsm);
  delete untitled.content[0].attachment.title;
  const refused = await send('POST', '/fhir/DocumentReference', untitled);
  t.equal(refused.statusCode, 422, 'the simplified profile is enforced');
  t.match(json(refused).issue.find((issue: Json) => issue.severity === 'error').diagnostics, /pdsm-simplified-publish/);
});

t.test('relatesTo replaces: the replaced document becomes superseded in the same transaction', async (t) => {
  // PDSm4DMP's example sends the PATCH to superseded itself: the replaced document gets that one new version.
  const before = await storeReplacedDocument(t, 'current');
  const withPatch = await send('POST', '/fhir', provideBundle(REPLACEMENT, 'urn:oid:1.2.250.1.213.1.4.8.99999.71'));
  t.equal(withPatch.statusCode, 200, 'accepted');
  let old = await readOld();
  t.equal(old.status, 'superseded');
  t.equal(Number(old.meta.versionId), before + 1);

  const again = 'urn:oid:1.2.250.1.213.1.4.8.99999.72';
  const twice = await send('POST', '/fhir', provideBundle(REPLACEMENT, again));
  t.equal(twice.statusCode, 422, 'a document already superseded cannot be replaced');
  t.same(json(twice).issue[0].expression, ['Bundle.entry[1].resource.relatesTo[0].target']);
  t.equal(json(twice).issue[0].code, 'business-rule');
  t.same(await documentsWith(again), [], 'nothing of the refused transaction is stored');

  // Without the PATCH, as IHE MHD has it: the server marks the replaced document superseded.
  const current = await storeReplacedDocument(t, 'current');
  const unique = 'urn:oid:1.2.250.1.213.1.4.8.99999.73';
  const withoutPatch = provideBundle(REPLACEMENT, unique);
  withoutPatch.entry = withoutPatch.entry.filter((entry: Json) => entry.request.method !== 'PATCH');
  const res = await send('POST', '/fhir', withoutPatch);
  t.equal(res.statusCode, 200, 'accepted');
  old = await readOld();
  t.equal(old.status, 'superseded');
  t.equal(Number(old.meta.versionId), current + 1);
  const [replacing] = await documentsWith(unique);
  t.same(replacing?.relatesTo, [{ code: 'replaces', target: { reference: 'DocumentReference/doc-x-id' } }]);
  const superseded = json(await server.inject({ method: 'GET', url: `/fhir/DocumentReference?patient.identifier=${encodeURIComponent(NIR)}&status=superseded` }));
  t.ok(superseded.entry.some((entry: Json) => entry.resource.id === 'doc-x-id'), 'ITI-67 finds it as superseded');
});

t.test('relatesTo replaces: an unknown target, or a failure elsewhere, leaves everything as it was', async (t) => {
  const unknown = 'urn:oid:1.2.250.1.213.1.4.8.99999.74';
  const res = await send('POST', '/fhir', provideBundle(REPLACEMENT, unknown, (resources) => {
    resources.DocumentReference.relatesTo[0].target.reference = 'DocumentReference/absent';
  }));
  t.equal(res.statusCode, 422);
  t.equal(json(res).issue[0].code, 'not-found');
  t.match(json(res).issue[0].diagnostics, /DocumentReference\/absent is not known/);
  t.same(await documentsWith(unknown), []);

  const version = await storeReplacedDocument(t, 'current');
  const failing = 'urn:oid:1.2.250.1.213.1.4.8.99999.75';
  const bundle = provideBundle(REPLACEMENT, failing, (resources) => {
    resources.Binary.contentType = 'not a media type';
  });
  bundle.entry = bundle.entry.filter((entry: Json) => entry.request.method !== 'PATCH');
  const failed = await send('POST', '/fhir', bundle);
  t.ok(failed.statusCode >= 400, `refused (${failed.statusCode})`);
  const old = await readOld();
  t.equal(old.status, 'current', 'the replaced document is still current');
  t.equal(Number(old.meta.versionId), version);
  t.same(await documentsWith(failing), []);
});

t.test('relatesTo replaces a document created in the same transaction: refused, nothing written (ITI-65 replaces an existing current document)', async (t) => {
  // IHE MHD 4.2 ITI-65 §2:3.65.4.1.3: a replacement names a document the Document Recipient already holds as
  // current. One created by the same Bundle is not yet held: the transaction is refused (422), as for an unknown one.
  const first = 'urn:oid:1.2.250.1.213.1.4.8.99999.76';
  const second = 'urn:oid:1.2.250.1.213.1.4.8.99999.77';
  const bundle = provideBundle(REPLACEMENT, second);
  bundle.entry = bundle.entry.filter((entry: Json) => entry.request.method !== 'PATCH');
  const replacing = bundle.entry.find((entry: Json) => entry.resource.resourceType === 'DocumentReference');
  const created = structuredClone(replacing);
  created.fullUrl = 'urn:uuid:bbbbbbbb-0000-0000-0000-000000000009';
  created.resource.masterIdentifier.value = first;
  delete created.resource.relatesTo;
  bundle.entry.splice(1, 0, created);
  bundle.entry[0].resource.entry.push({ item: { reference: created.fullUrl } });
  replacing.resource.relatesTo = [{ code: 'replaces', target: { reference: created.fullUrl } }];
  const res = await send('POST', '/fhir', bundle);
  t.equal(res.statusCode, 422, JSON.stringify(json(res).issue?.[0]));
  const issue = json(res).issue.find((i: Json) => i.severity === 'error');
  t.equal(issue.code, 'not-found');
  t.match(issue.diagnostics, /relatesTo\[0\]\.target.*is not known/);
  t.same(await documentsWith(first), [], 'the document to be replaced is not written either');
  t.same(await documentsWith(second), []);
});
