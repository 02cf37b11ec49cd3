import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { CHUNK_SIZE } from '../src/store/binary-store.ts';
import type { Database, SqlExecutor } from '../src/store/database.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const MB = 1024 * 1024;
const server = await startTestServer(t, { bodyLimit: 80 * MB });
// A server with a small body limit, so that going over it takes little.
const small = await startTestServer(t, { bodyLimit: MB });

const sha1 = (bytes: Buffer) => createHash('sha1').update(bytes).digest('base64');

/** A body sent in pieces with no Content-Length, as a client streaming a file sends it. */
function streamed(bytes: Buffer, piece = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < bytes.length; offset += piece) yield bytes.subarray(offset, offset + piece);
    })(),
    { objectMode: false },
  );
}

const chunked = (contentType: string) => ({ 'content-type': contentType, 'transfer-encoding': 'chunked' });

async function count(db: SqlExecutor, sql: string, params: unknown[] = []): Promise<number> {
  return (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, params)).rows[0]!.n;
}

t.test('a multi-megabyte document posted as itself is stored in chunks and read back byte for byte', async (t) => {
  const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(5 * MB)]);
  const created = await server.inject({ method: 'POST', url: '/fhir/Binary', payload: streamed(pdf), headers: chunked('application/pdf') });
  t.equal(created.statusCode, 201);
  const binary = json(created);
  t.equal(binary.contentType, 'application/pdf');
  t.notOk('data' in binary, 'the answer to a streamed upload does not echo the bytes back');
  const id = binary.id;

  const raw = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: 'application/pdf' } });
  t.equal(raw.statusCode, 200);
  t.equal(raw.headers['content-type'], 'application/pdf');
  t.equal(raw.headers['content-length'], String(pdf.length));
  t.equal(raw.headers.etag, 'W/"1"');
  t.equal(raw.headers['last-modified'], new Date(binary.meta.lastUpdated).toUTCString());
  t.ok(raw.rawPayload.equals(pdf), 'the same bytes come back');

  const head = await server.inject({ method: 'HEAD', url: `/fhir/Binary/${id}` });
  t.equal(head.statusCode, 200);
  t.equal(head.headers['content-length'], String(pdf.length), 'HEAD tells the size');
  t.equal(head.rawPayload.length, 0);

  const asFhir = json(await server.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: FHIR_JSON } }));
  t.equal(asFhir.resourceType, 'Binary');
  t.equal(asFhir.meta.versionId, '1');
  t.ok(Buffer.from(asFhir.data, 'base64').equals(pdf), 'as FHIR JSON, the bytes are the base64 data');
  const found = json(await server.inject({ method: 'GET', url: `/fhir/Binary?_id=${id}`, headers: { accept: FHIR_JSON } }));
  t.ok(Buffer.from(found.entry[0].resource.data, 'base64').equals(pdf), 'a search finds the Binary with its data');

  const stored = await server.db.query<{ content: string }>(`SELECT content FROM resource WHERE resource_type = 'Binary' AND id = $1`, [id]);
  t.notMatch(stored.rows[0]!.content, /"data"/, 'the stored resource does not carry the bytes');
  t.equal(await count(server.db, 'binary_chunk WHERE binary_id = $1', [id]), Math.ceil(pdf.length / CHUNK_SIZE), 'they are stored in chunks');
});

t.test('an upload over the body limit is 413 and stores nothing', async (t) => {
  const tooBig = randomBytes(MB + 1);
  const declared = await small.inject({ method: 'POST', url: '/fhir/Binary', payload: tooBig, headers: { 'content-type': 'application/pdf' } });
  t.equal(declared.statusCode, 413, 'a Content-Length over the limit is refused before reading');
  t.equal(json(declared).issue[0].code, 'too-long');

  // Without Content-Length the limit is only found out on the way, after whole chunks are written.
  const undeclared = await small.inject({ method: 'POST', url: '/fhir/Binary', payload: streamed(tooBig), headers: chunked('application/pdf') });
  t.equal(undeclared.statusCode, 413);
  t.equal(json(undeclared).resourceType, 'OperationOutcome');
  t.equal(await count(small.db, `resource WHERE resource_type = 'Binary'`), 0, 'no Binary');
  t.equal(await count(small.db, 'binary_chunk'), 0, 'no chunk left behind');

  const first = randomBytes(1000);
  const id = json(await small.inject({ method: 'POST', url: '/fhir/Binary', payload: first, headers: { 'content-type': 'image/png' } })).id;
  const replaced = await small.inject({ method: 'PUT', url: `/fhir/Binary/${id}`, payload: streamed(tooBig), headers: chunked('image/png') });
  t.equal(replaced.statusCode, 413, 'an update over the limit too');
  const current = await small.inject({ method: 'GET', url: `/fhir/Binary/${id}` });
  t.equal(current.headers.etag, 'W/"1"', 'and leaves the current version as it was');
  t.ok(current.rawPayload.equals(first));
  t.equal(await count(small.db, 'binary_chunk'), 1);
});

t.test('an update is a new version; earlier versions keep their bytes, after deletion too', async (t) => {
  const v1 = randomBytes(2 * MB + 3);
  const v2 = randomBytes(MB + 5);
  const id = json(await server.inject({ method: 'POST', url: '/fhir/Binary', payload: streamed(v1), headers: chunked('application/pdf') })).id;
  const updated = await server.inject({ method: 'PUT', url: `/fhir/Binary/${id}`, payload: streamed(v2), headers: { ...chunked('application/octet-stream'), 'if-match': 'W/"1"' } });
  t.equal(updated.statusCode, 200);
  t.equal(updated.headers.etag, 'W/"2"');

  const current = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}` });
  t.equal(current.headers['content-type'], 'application/octet-stream');
  t.ok(current.rawPayload.equals(v2), 'read gives the new bytes');
  const first = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}/_history/1` });
  t.equal(first.headers['content-type'], 'application/pdf');
  t.equal(first.headers.etag, 'W/"1"');
  t.ok(first.rawPayload.equals(v1), 'vread of version 1 gives the old bytes');
  t.ok(Buffer.from(json(await server.inject({ method: 'GET', url: `/fhir/Binary/${id}/_history/1?_format=json` })).data, 'base64').equals(v1), 'as FHIR JSON too');

  const history = json(await server.inject({ method: 'GET', url: `/fhir/Binary/${id}/_history` }));
  t.same(history.entry.map((e: any) => sha1(Buffer.from(e.resource.data, 'base64'))), [sha1(v2), sha1(v1)], 'history has each version with its own bytes');

  t.equal((await server.inject({ method: 'DELETE', url: `/fhir/Binary/${id}` })).statusCode, 204);
  t.equal((await server.inject({ method: 'GET', url: `/fhir/Binary/${id}` })).statusCode, 410);
  t.ok((await server.inject({ method: 'GET', url: `/fhir/Binary/${id}/_history/2` })).rawPayload.equals(v2), 'a deleted Binary keeps its versions');
});

t.test('a JSON patch of a Binary keeps its bytes', async (t) => {
  const bytes = randomBytes(MB);
  const id = json(await server.inject({ method: 'POST', url: '/fhir/Binary', payload: bytes, headers: { 'content-type': 'application/pdf' } })).id;
  const patched = await server.inject({
    method: 'PATCH',
    url: `/fhir/Binary/${id}`,
    payload: JSON.stringify([{ op: 'replace', path: '/contentType', value: 'application/octet-stream' }]),
    headers: { 'content-type': 'application/json-patch+json' },
  });
  t.equal(patched.statusCode, 200);
  const raw = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}` });
  t.equal(raw.headers.etag, 'W/"2"');
  t.equal(raw.headers['content-type'], 'application/octet-stream');
  t.ok(raw.rawPayload.equals(bytes));
});

function documentReference(attachment: Record<string, unknown>) {
  return { resourceType: 'DocumentReference', status: 'current', subject: { reference: 'Patient/p1' }, content: [{ attachment: { contentType: 'application/pdf', ...attachment } }] };
}

const sendJson = (target: typeof server, url: string, body: unknown) =>
  target.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });

t.test('attachments are checked against Binaries stored in chunks, in a transaction bundle or streamed before', async (t) => {
  const report = randomBytes(MB + MB / 2);
  const binaryUrl = 'urn:uuid:6f1d7c1e-2b53-4a8e-9d4c-0d7c51b1a001';
  const bundle = (hash: string) => ({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:6f1d7c1e-2b53-4a8e-9d4c-0d7c51b1a002', resource: documentReference({ url: binaryUrl, size: report.length, hash }), request: { method: 'POST', url: 'DocumentReference' } },
      { fullUrl: binaryUrl, resource: { resourceType: 'Binary', contentType: 'application/pdf', data: report.toString('base64') }, request: { method: 'POST', url: 'Binary' } },
    ],
  });
  const binaries = await count(server.db, 'binary_content');
  const wrong = await sendJson(server, '/fhir', bundle(sha1(Buffer.from('autre chose'))));
  t.equal(wrong.statusCode, 422, 'a hash that is not the Binary\'s fails the transaction');
  t.match(JSON.stringify(json(wrong).issue[0].expression), /attachment\.hash/);
  t.equal(await count(server.db, 'binary_content'), binaries, 'and its Binary is not stored');

  const res = await sendJson(server, '/fhir', bundle(sha1(report)));
  t.equal(res.statusCode, 200);
  const [documentEntry, binaryEntry] = json(res).entry;
  t.ok(Buffer.from(binaryEntry.resource.data, 'base64').equals(report), 'the transaction answers the Binary with its data');
  const attachment = documentEntry.resource.content[0].attachment;
  t.equal(attachment.size, report.length);
  const raw = await server.inject({ method: 'GET', url: `/fhir/${attachment.url}` });
  t.ok(raw.rawPayload.equals(report), 'the Binary posted as JSON downloads as its bytes');

  const scan = randomBytes(3 * MB);
  const id = json(await server.inject({ method: 'POST', url: '/fhir/Binary', payload: streamed(scan), headers: chunked('application/pdf') })).id;
  const filled = await sendJson(server, '/fhir/DocumentReference', documentReference({ url: `Binary/${id}` }));
  t.equal(filled.statusCode, 201);
  t.equal(json(filled).content[0].attachment.size, scan.length, 'size filled in from the streamed Binary');
  t.equal(json(filled).content[0].attachment.hash, sha1(scan), 'and its SHA-1');
  const wrongSize = await sendJson(server, '/fhir/DocumentReference', documentReference({ url: `Binary/${id}`, size: scan.length - 1 }));
  t.equal(wrongSize.statusCode, 422);
});

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * The live JavaScript heap, after a full collection so that garbage lying around does not count: where a
 * server that does not stream holds a document, as base64 and JSON text. Buffers are left out: V8 frees
 * dead ones in the background, after the collection returns, and with PGlite they include the database
 * itself, which grows by what it stores.
 */
function liveHeap(): number {
  gc();
  return process.memoryUsage().heapUsed;
}

/** Runs `after` after each statement the server sends, in transactions too; returns the undo. */
function afterEachStatement(db: Database, after: () => void): () => void {
  const { query, transaction } = db;
  const wrap = (executor: SqlExecutor): SqlExecutor => ({
    async query<Row>(sql: string, params?: unknown[], name?: string) {
      const result = await executor.query<Row>(sql, params, name);
      after();
      return result;
    },
  });
  db.query = wrap({ query }).query;
  db.transaction = (work) => transaction((tx) => work(wrap(tx)));
  return () => {
    db.query = query;
    db.transaction = transaction;
  };
}

t.test('a 64 MB document goes up and comes down in chunks: the heap stays far below its size', async (t) => {
  const size = 64 * MB;
  let peak = 0;
  const sample = () => {
    peak = Math.max(peak, liveHeap());
  };
  // The heap is sampled every few MB of the transfer, and at every statement while the client waits (its
  // upload all sent, or its download not begun): then a server that does not stream holds the whole.
  let clientWaits = false;
  t.teardown(afterEachStatement(server.db, () => clientWaits && sample()));

  const sent = createHash('sha1');
  const body = Readable.from(
    (function* () {
      for (let piece = 0; piece < size / MB; piece++) {
        if (piece % 4 === 0) sample();
        const bytes = randomBytes(MB);
        sent.update(bytes);
        yield bytes;
      }
      clientWaits = true;
    })(),
    { objectMode: false },
  );
  const before = liveHeap();
  const created = await server.inject({ method: 'POST', url: '/fhir/Binary', payload: body, headers: chunked('application/octet-stream') });
  clientWaits = false;
  t.equal(created.statusCode, 201);
  const uploadGrowth = peak - before;
  t.ok(uploadGrowth < size / 4, `upload: the heap grew by ${(uploadGrowth / MB).toFixed(1)} MB at most, for ${size / MB} MB`);

  peak = 0;
  const start = liveHeap();
  clientWaits = true;
  const download = await server.inject({ method: 'GET', url: `/fhir/Binary/${json(created).id}`, payloadAsStream: true });
  t.equal(download.headers['content-length'], String(size));
  const received = createHash('sha1');
  let receivedSize = 0;
  for await (const piece of download.stream()) {
    clientWaits = false;
    received.update(piece);
    if (Math.floor((receivedSize + piece.length) / (4 * MB)) > Math.floor(receivedSize / (4 * MB))) sample();
    receivedSize += piece.length;
  }
  t.equal(receivedSize, size);
  t.equal(received.digest('base64'), sent.digest('base64'), 'the same bytes come back');
  const downloadGrowth = peak - start;
  t.ok(downloadGrowth < size / 4, `download: the heap grew by ${(downloadGrowth / MB).toFixed(1)} MB at most, for ${size / MB} MB`);
});
