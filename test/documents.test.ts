import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import { createReferenceTargets } from './helpers/fixtures.ts';

const server = await startTestServer(t);
await createReferenceTargets(server, ['Patient/p1']);
const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(600 * 1024)]);
const sha1 = (bytes: Buffer) => createHash('sha1').update(bytes).digest('base64');
const sendJson = (method: 'POST' | 'PUT', url: string, body: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method, url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });

t.test('a PDF posted as itself is a Binary, read back as the same bytes or as FHIR JSON', async (t) => {
  const created = await server.inject({ method: 'POST', url: '/fhir/Binary', payload: pdf, headers: { 'content-type': 'application/pdf', 'x-security-context': 'Patient/p1' } });
  t.equal(created.statusCode, 201);
  t.match(created.headers.location, /\/fhir\/Binary\/[^/]+\/_history\/1$/);
  const id = json(created).id;

  const raw = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: 'application/pdf' } });
  t.equal(raw.statusCode, 200);
  t.equal(raw.headers['content-type'], 'application/pdf');
  t.ok(raw.rawPayload.equals(pdf), 'the same bytes come back');
  t.ok((await server.inject({ method: 'GET', url: `/fhir/Binary/${id}` })).rawPayload.equals(pdf), 'without Accept too');

  const asFhir = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: FHIR_JSON } });
  t.match(asFhir.headers['content-type'], /^application\/fhir\+json/);
  const binary = json(asFhir);
  t.equal(binary.resourceType, 'Binary');
  t.equal(binary.contentType, 'application/pdf');
  t.same(binary.securityContext, { reference: 'Patient/p1' });
  t.ok(Buffer.from(binary.data, 'base64').equals(pdf));
  t.equal(json(await server.inject({ method: 'GET', url: `/fhir/Binary/${id}?_format=json` })).resourceType, 'Binary', '_format asks for FHIR JSON');

  const replaced = await server.inject({ method: 'PUT', url: `/fhir/Binary/${id}`, payload: 'Compte rendu', headers: { 'content-type': 'text/plain; charset=utf-8' } });
  t.equal(replaced.statusCode, 200);
  const v2 = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}` });
  t.equal(v2.headers['content-type'], 'text/plain');
  t.equal(v2.body, 'Compte rendu');
  const v1 = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}/_history/1` });
  t.ok(v1.rawPayload.equals(pdf), 'vread returns the old bytes');
});

t.test('raw bodies are only for Binary: elsewhere they are 415', async (t) => {
  const res = await server.inject({ method: 'POST', url: '/fhir/DocumentReference', payload: pdf.subarray(0, 100), headers: { 'content-type': 'application/pdf' } });
  t.equal(res.statusCode, 415);
});

function documentReference(attachment: Record<string, unknown>) {
  return { resourceType: 'DocumentReference', status: 'current', subject: { reference: 'Patient/p1' }, content: [{ attachment: { contentType: 'application/pdf', ...attachment } }] };
}

t.test('inline attachment data: size and SHA-1 hash filled in, or checked when given', async (t) => {
  const bytes = Buffer.from('Lettre de liaison');
  const data = bytes.toString('base64');
  const filled = json(await sendJson('POST', '/fhir/DocumentReference', documentReference({ data })));
  t.equal(filled.content[0].attachment.size, bytes.length);
  t.equal(filled.content[0].attachment.hash, sha1(bytes));

  t.equal((await sendJson('POST', '/fhir/DocumentReference', documentReference({ data, size: bytes.length, hash: sha1(bytes) }))).statusCode, 201, 'correct size and hash are accepted');
  const wrongHash = await sendJson('POST', '/fhir/DocumentReference', documentReference({ data, hash: sha1(Buffer.from('autre')) }));
  t.equal(wrongHash.statusCode, 422);
  t.same(json(wrongHash).issue[0].expression, ['DocumentReference.content[0].attachment.hash']);
  const wrongSize = await sendJson('POST', '/fhir/DocumentReference', documentReference({ data, size: 3 }));
  t.equal(wrongSize.statusCode, 422);
  t.same(json(wrongSize).issue[0].expression, ['DocumentReference.content[0].attachment.size']);
  const missingBinary = await sendJson('POST', '/fhir/DocumentReference', documentReference({ url: 'Binary/absent' }));
  t.equal(missingBinary.statusCode, 422);
});

t.test('the IHE MHD provide-document shape: a DocumentReference and its Binary in one transaction', async (t) => {
  const binaryUrl = 'urn:uuid:1c9c2f46-6d3f-4a4e-8d0c-2b8a1f0e9a11';
  // The DocumentReference comes first in the bundle: the server still stores the Binary before it.
  const res = await sendJson('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:1c9c2f46-6d3f-4a4e-8d0c-2b8a1f0e9a12', resource: documentReference({ url: binaryUrl }), request: { method: 'POST', url: 'DocumentReference' } },
      { fullUrl: binaryUrl, resource: { resourceType: 'Binary', contentType: 'application/pdf', data: pdf.toString('base64') }, request: { method: 'POST', url: 'Binary' } },
    ],
  });
  t.equal(res.statusCode, 200);
  const [documentEntry, binaryEntry] = json(res).entry;
  const binaryId = binaryEntry.response.location.split('/')[5];
  const attachment = documentEntry.resource.content[0].attachment;
  t.equal(attachment.url, `Binary/${binaryId}`, 'the attachment points at the stored Binary');
  t.equal(attachment.size, pdf.length);
  t.equal(attachment.hash, sha1(pdf));
  const raw = await server.inject({ method: 'GET', url: `/fhir/${attachment.url}`, headers: { accept: 'application/pdf' } });
  t.ok(raw.rawPayload.equals(pdf), 'and the document reads back as the PDF');
});
