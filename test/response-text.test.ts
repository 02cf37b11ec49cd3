import type { OperationOutcome } from 'fhir/r4';
import t from 'tap';
import { jsonPieces, jsonText, ResourceText, resourceObject, type ResponseBundle, type ResponseResource } from '../src/fhir/resource-text.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import { nir } from './helpers/fixtures.ts';

/** The JSON a response writes, its pieces joined. */
async function written(value: ResponseResource, indent?: number): Promise<string> {
  let text = '';
  for await (const piece of jsonPieces(value, indent)) text += piece;
  return text;
}

const stored = (resource: { resourceType: string; id: string } & Record<string, unknown>) =>
  new ResourceText(resource.resourceType, resource.id, JSON.stringify(resource));

t.test('a Bundle holding stored texts is written exactly as JSON.stringify writes its object form', async (t) => {
  const patient = { resourceType: 'Patient', id: 'p1', meta: { versionId: '1' }, name: [{ family: 'Lefèvre "dite" \\ Hélène', given: ['Å', '\u2028'] }] };
  const nested: ResponseBundle = {
    resourceType: 'Bundle',
    type: 'searchset',
    total: 1,
    entry: [{ fullUrl: 'http://x/fhir/Patient/p1', resource: stored(patient), search: { mode: 'match' } }],
  };
  const bundle: ResponseBundle = {
    resourceType: 'Bundle',
    id: 'b',
    type: 'batch-response',
    link: undefined,
    entry: [
      { fullUrl: 'http://x/fhir/Patient/p1', resource: stored(patient), response: { status: '201 Created', etag: 'W/"1"' } },
      { resource: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] } as OperationOutcome, response: { status: '404 Not Found' } },
      { resource: nested, response: { status: '200 OK' } },
      { fullUrl: undefined, response: { status: '204 No Content' } },
    ],
  };
  const plain = resourceObject(bundle);
  t.equal(await written(bundle), JSON.stringify(plain), 'spliced text, key order and left-out members as JSON.stringify');
  t.same(JSON.parse(await written(bundle)).entry[2].resource.entry[0].resource, patient, 'a nested Bundle splices its own entries');
  t.equal(await written(bundle, 2), JSON.stringify(plain, null, 2), '_pretty indents the whole of it');
  t.equal(jsonText(bundle), JSON.stringify(plain), 'as one text too');
  t.equal(await written(stored(patient)), JSON.stringify(patient), 'a lone stored text is itself');
  t.equal(jsonText(stored(patient)), JSON.stringify(patient));
  t.equal(await written({ resourceType: 'Bundle', type: 'searchset', total: 0 }), '{"resourceType":"Bundle","type":"searchset","total":0}', 'a Bundle without entries');
  const many: ResponseBundle = { resourceType: 'Bundle', type: 'searchset', entry: Array.from({ length: 2000 }, (_, i) => ({ resource: stored({ ...patient, id: `p${i}` }) })) };
  const pieces: string[] = [];
  for await (const piece of jsonPieces(many)) pieces.push(piece);
  t.ok(pieces.length > 1 && pieces.every((piece) => piece.length < 80 * 1024), `a large Bundle goes out in ${pieces.length} pieces of under 80 KB`);
  t.equal(pieces.join(''), JSON.stringify(resourceObject(many)));
});

const server = await startTestServer(t);
const send = (method: 'GET' | 'POST', url: string, body?: unknown) =>
  server.inject({ method, url, payload: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });

t.test('over HTTP, transaction responses, search pages and history carry each resource as a read returns it', async (t) => {
  const ins = nir('1700175987654');
  const transaction = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: 'urn:uuid:0d3c2b1a-0000-4000-8000-000000000001',
        resource: { resourceType: 'Patient', identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.8', value: ins }], name: [{ family: 'Texte', given: ['Épreuve'] }], birthDate: '1970-01-02' },
        request: { method: 'POST', url: 'Patient' },
      },
      {
        resource: { resourceType: 'Organization', name: 'Clinique « du Parc »' },
        request: { method: 'POST', url: 'Organization' },
      },
    ],
  });
  t.equal(transaction.statusCode, 200, transaction.body);
  const entries = json(transaction).entry as Array<{ resource: { resourceType: string; id: string } }>;
  for (const entry of entries) {
    const read = await send('GET', `/fhir/${entry.resource.resourceType}/${entry.resource.id}`);
    t.equal(JSON.stringify(entry.resource), read.body, `${entry.resource.resourceType}: the transaction response holds the stored resource, in its key order`);
  }
  const patientId = entries[0]!.resource.id;
  const patientRead = (await send('GET', `/fhir/Patient/${patientId}`)).body;

  const page = await send('GET', `/fhir/Patient?_id=${patientId}`);
  t.equal(page.statusCode, 200);
  t.equal(JSON.stringify(json(page).entry[0].resource), patientRead, 'a search page holds the stored resource');
  const pretty = await send('GET', `/fhir/Patient?_id=${patientId}&_pretty=true`);
  t.match(pretty.body, /\n {2}"resourceType": "Bundle"/, '_pretty indents the page');
  t.equal(JSON.stringify(json(pretty).entry[0].resource), patientRead, 'and the resources inside it');

  const withOutcome = json(await send('GET', `/fhir/Patient?_id=${patientId}&unknown-parameter=1`));
  t.same(withOutcome.entry.map((e: { search: { mode: string } }) => e.search.mode), ['match', 'outcome'], 'an ignored parameter adds its outcome entry');

  const summary = json(await send('GET', `/fhir/Patient?_id=${patientId}&_elements=birthDate`));
  t.same(Object.keys(summary.entry[0].resource).sort(), ['birthDate', 'id', 'meta', 'resourceType'], '_elements still cuts the stored resource down');

  const history = json(await send('GET', `/fhir/Patient/${patientId}/_history`));
  t.equal(JSON.stringify(history.entry[0].resource), patientRead, 'history holds the stored version');
});
