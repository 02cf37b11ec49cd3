import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { FhirError } from '../src/fhir/outcome.ts';
import { binaryData, CHUNK_SIZE, sweepStaleUploads } from '../src/store/binary-store.ts';
import type { Database, SqlExecutor } from '../src/store/database.ts';
import { buildApp } from '../src/app.ts';
import { createProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { loadMigrations, migrate } from '../src/store/migrate.ts';
import { bearer, FHIR_JSON, json, openTestDatabase, startTestServer, TEST_AUDIENCE } from './helpers/app.ts';
import { createReferenceTargets } from './helpers/fixtures.ts';
import { sqlStorage } from '../src/store/storage.ts';

const MB = 1024 * 1024;
const server = await startTestServer(t, { bodyLimit: 80 * MB });
await createReferenceTargets(server, ['Patient/p1']);
// A server with a small body limit, so that going over it takes little, and a small BINARY_INLINE_LIMIT.
const INLINE_LIMIT = 64 * 1024;
const small = await startTestServer(t, { bodyLimit: MB, binaryInlineLimit: INLINE_LIMIT });

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

const sendJson = (target: typeof server, url: string, body: unknown) =>
  target.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });

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
  t.equal(await count(server.db, 'binary_chunk k JOIN binary_content c ON c.content_id = k.content_id WHERE c.binary_id = $1', [id]), Math.ceil(pdf.length / CHUNK_SIZE), 'they are stored in chunks');
  t.equal(await count(server.db, 'binary_upload'), 0, 'no upload is left unclaimed');
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
  t.equal(await count(small.db, 'binary_upload'), 0, 'no upload either');

  const first = randomBytes(1000);
  const id = json(await small.inject({ method: 'POST', url: '/fhir/Binary', payload: first, headers: { 'content-type': 'image/png' } })).id;
  const replaced = await small.inject({ method: 'PUT', url: `/fhir/Binary/${id}`, payload: streamed(tooBig), headers: chunked('image/png') });
  t.equal(replaced.statusCode, 413, 'an update over the limit too');
  const current = await small.inject({ method: 'GET', url: `/fhir/Binary/${id}` });
  t.equal(current.headers.etag, 'W/"1"', 'and leaves the current version as it was');
  t.ok(current.rawPayload.equals(first));
  t.equal(await count(small.db, 'binary_chunk'), 1);
});

t.test('a slow upload holds nothing other requests need: they are served while its bytes arrive', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let sent = 0;
  const half = randomBytes(2 * CHUNK_SIZE + 100);
  const slowBody = Readable.from(
    (async function* () {
      yield half;
      sent = half.length;
      await released; // the sender stalls after two chunks' worth
      yield half;
    })(),
    { objectMode: false },
  );
  const upload = server.inject({ method: 'POST', url: '/fhir/Binary', payload: slowBody, headers: chunked('application/pdf') });
  while (sent === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  // Written while the upload waits; on PGlite, which runs one transaction at a time, these waited for it.
  const patient = await sendJson(server, '/fhir/Patient', { resourceType: 'Patient', name: [{ family: 'Pendant' }] });
  t.equal(patient.statusCode, 201, 'a create is served during the upload');
  const other = await server.inject({ method: 'POST', url: '/fhir/Binary', payload: randomBytes(1000), headers: { 'content-type': 'image/png' } });
  t.equal(other.statusCode, 201, 'and another upload');
  t.equal((await server.inject({ method: 'GET', url: `/fhir/Patient/${json(patient).id}` })).statusCode, 200, 'and a read');
  release();
  const done = await upload;
  t.equal(done.statusCode, 201, 'then the slow upload completes');
  const raw = await server.inject({ method: 'GET', url: `/fhir/Binary/${json(done).id}` });
  t.ok(raw.rawPayload.equals(Buffer.concat([half, half])), 'with all its bytes');
});

t.test('bytes of an upload that does not become a version are removed, and leftovers swept at start', async (t) => {
  const bytes = randomBytes(CHUNK_SIZE + 10);
  const id = json(await small.inject({ method: 'POST', url: '/fhir/Binary', payload: randomBytes(10), headers: { 'content-type': 'image/png' } })).id;
  const chunks = await count(small.db, 'binary_chunk');
  const conflict = await small.inject({ method: 'PUT', url: `/fhir/Binary/${id}`, payload: streamed(bytes), headers: { ...chunked('image/png'), 'if-match': 'W/"7"' } });
  t.equal(conflict.statusCode, 412, 'a version conflict, found once the bytes are in');
  t.equal(await count(small.db, 'binary_chunk'), chunks, 'leaves no chunk');
  t.equal(await count(small.db, 'binary_upload'), 0);

  // A server stopped mid-upload leaves chunks under an upload no version claimed.
  await small.db.query(`INSERT INTO binary_upload (content_id, started) VALUES ('stale', now() - interval '2 days'), ('recent', now())`);
  await small.db.query(`INSERT INTO binary_chunk (content_id, chunk_no, bytes) VALUES ('stale', 0, 'abc'), ('recent', 0, 'def')`);
  t.equal(await sweepStaleUploads(small.db, 24 * 3600), 1);
  t.equal(await count(small.db, `binary_chunk WHERE content_id = 'stale'`), 0, 'the stale upload is gone');
  t.equal(await count(small.db, `binary_chunk WHERE content_id = 'recent'`), 1, 'one that may still be arriving stays');
  await small.db.query(`DELETE FROM binary_chunk WHERE content_id = 'recent'`);
  await small.db.query(`DELETE FROM binary_upload WHERE content_id = 'recent'`);
  t.equal((await small.inject({ method: 'GET', url: `/fhir/Binary/${id}` })).rawPayload.length, 10, 'the Binary keeps its bytes');
});

t.test('Binaries stored before uploads were staged (migration 0006) keep their bytes', async (t) => {
  const store = await openTestDatabase({ unmigrated: true });
  t.teardown(() => store.drop());
  await migrate(store.db, loadMigrations().filter((m) => m.version <= 5));
  const bytes = randomBytes(CHUNK_SIZE + 7);
  const stored = JSON.stringify({ resourceType: 'Binary', id: 'ancien', meta: { versionId: '1', lastUpdated: '2026-01-02T03:04:05.000Z' }, contentType: 'application/pdf' });
  await store.db.query(`INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) VALUES ('Binary', 'ancien', 1, '2026-01-02T03:04:05Z', false, $1)`, [stored]);
  await store.db.query(`INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content) VALUES ('Binary', 'ancien', 1, '2026-01-02T03:04:05Z', 'POST', $1)`, [stored]);
  await store.db.query(`INSERT INTO binary_content (binary_id, version_id, size, sha1, chunk_count) VALUES ('ancien', 1, $1, $2, 2)`, [bytes.length, sha1(bytes)]);
  for (const [n, part] of [bytes.subarray(0, CHUNK_SIZE), bytes.subarray(CHUNK_SIZE)].entries()) {
    await store.db.query(`INSERT INTO binary_chunk (binary_id, version_id, chunk_no, bytes) VALUES ('ancien', 1, $1, decode($2, 'base64'))`, [n, part.toString('base64')]);
  }
  const app = await buildApp({ config: { logLevel: 'silent', bodyLimit: MB, authAudience: TEST_AUDIENCE }, storage: sqlStorage(store.db), validator: createProfileValidator({ defaultProfiles: 'none' }) });
  t.teardown(() => app.close());
  const authorization = await bearer(store.db);
  const raw = await app.inject({ method: 'GET', url: '/fhir/Binary/ancien', headers: { authorization } });
  t.equal(raw.statusCode, 200);
  t.ok(raw.rawPayload.equals(bytes), 'downloaded byte for byte after the migration');
  const asFhir = await app.inject({ method: 'GET', url: '/fhir/Binary/ancien?_format=json', headers: { authorization } });
  t.ok(Buffer.from(json(asFhir).data, 'base64').equals(bytes), 'and as FHIR JSON');
});

t.test('a Binary too large for FHIR JSON is refused as JSON with 406, not cut or failed', async (t) => {
  const bytes = randomBytes(CHUNK_SIZE + 1);
  const id = json(await server.inject({ method: 'POST', url: '/fhir/Binary', payload: bytes, headers: { 'content-type': 'application/pdf' } })).id;
  const error = await binaryData(server.db, id, 1, CHUNK_SIZE).catch((e: unknown) => e);
  t.ok(error instanceof FhirError, 'over the limit');
  t.equal((error as FhirError).status, 406);
  t.equal((error as FhirError).outcome.issue[0]!.code, 'too-costly');
  t.match((error as FhirError).outcome.issue[0]!.diagnostics, /Accept/, 'and says how to read it');
  t.ok(Buffer.from((await binaryData(server.db, id, 1, bytes.length, server.dataKeys))!, 'base64').equals(bytes), 'at the limit, the data');
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

t.test('a 16 MB document read as FHIR JSON streams its base64 data: the heap stays far below its size', async (t) => {
  const size = 16 * MB;
  const bytes = randomBytes(size);
  const id = json(await server.inject({ method: 'POST', url: '/fhir/Binary', payload: streamed(bytes), headers: chunked('application/pdf') })).id;
  let peak = 0;
  const sample = () => (peak = Math.max(peak, liveHeap()));
  let clientWaits = true;
  t.teardown(afterEachStatement(server.db, () => clientWaits && sample()));
  const start = liveHeap();
  const download = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: FHIR_JSON }, payloadAsStream: true });
  t.equal(download.statusCode, 200);
  t.match(String(download.headers['content-type']), /^application\/fhir\+json/);
  // The base64 is decoded as it comes, four characters at a time, never kept whole by the test either.
  const received = createHash('sha1');
  let text = '';
  let inData = false;
  let receivedSize = 0;
  let last = '';
  for await (const piece of download.stream()) {
    clientWaits = false;
    text += piece.toString();
    if (!inData) {
      const at = text.indexOf('"data":"');
      if (at < 0) continue;
      t.match(text.slice(0, at), new RegExp(`^\\{"resourceType":"Binary","id":"${id}","meta":\\{[^}]*\\},"contentType":"application/pdf",$`), 'the resource, then its data');
      text = text.slice(at + 8);
      inData = true;
    }
    const end = text.indexOf('"');
    const usable = end >= 0 ? end : text.length - (text.length % 4);
    const decoded = Buffer.from(text.slice(0, usable), 'base64');
    received.update(decoded);
    if (Math.floor((receivedSize + decoded.length) / (4 * MB)) > Math.floor(receivedSize / (4 * MB))) sample();
    receivedSize += decoded.length;
    if (end >= 0) {
      last = text.slice(end);
      text = '';
      inData = false;
    } else text = text.slice(usable);
  }
  last += text;
  t.equal(last, '"}', 'data is the last element');
  t.equal(receivedSize, size);
  t.equal(received.digest('base64'), sha1(bytes), 'the same bytes come back, as base64');
  const growth = peak - start;
  t.ok(growth < size / 4, `the heap grew by ${(growth / MB).toFixed(1)} MB at most, for ${size / MB} MB of bytes (${(size * 4) / 3 / MB} MB of base64)`);
});

t.test('over BINARY_INLINE_LIMIT: reads, searches and history over HTTP stream the data; a batch leaves it out, tagged SUBSETTED', async (t) => {
  const bytes = randomBytes(3 * INLINE_LIMIT + 1);
  const id = json(await small.inject({ method: 'POST', url: '/fhir/Binary', payload: bytes, headers: { 'content-type': 'application/pdf' } })).id;
  const dataOf = (resource: any) => Buffer.from(resource.data, 'base64');

  const read = await small.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: FHIR_JSON } });
  t.equal(read.statusCode, 200);
  t.ok(dataOf(json(read)).equals(bytes), 'read: the whole data');
  const pretty = await small.inject({ method: 'GET', url: `/fhir/Binary/${id}?_format=json&_pretty=true` });
  t.ok(dataOf(json(pretty)).equals(bytes), '_pretty too');
  t.match(pretty.body, /^\{\n {2}"resourceType": "Binary",[^]*\n {2}"data": "[A-Za-z0-9+/=]+"\n\}$/, 'indented');
  const vread = await small.inject({ method: 'GET', url: `/fhir/Binary/${id}/_history/1?_format=json` });
  t.ok(dataOf(json(vread)).equals(bytes), 'vread: the whole data');
  const found = await small.inject({ method: 'GET', url: `/fhir/Binary?_id=${id}`, headers: { accept: FHIR_JSON } });
  t.equal(found.statusCode, 200);
  t.ok(dataOf(json(found).entry[0].resource).equals(bytes), 'search: the whole data');
  const history = await small.inject({ method: 'GET', url: `/fhir/Binary/${id}/_history`, headers: { accept: FHIR_JSON } });
  t.ok(dataOf(json(history).entry[0].resource).equals(bytes), 'history: the whole data');

  // A batch is answered as one Bundle, put together within the bundle: the bytes are not put in it.
  const batch = await sendJson(small, '/fhir', {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { request: { method: 'GET', url: `Binary?_id=${id}` } },
      { request: { method: 'GET', url: `Binary/${id}` } },
    ],
  });
  t.equal(batch.statusCode, 200);
  const [searched, readInBatch] = json(batch).entry;
  const left = searched.resource.entry[0].resource;
  t.notOk('data' in left, 'searched in a batch: no data');
  t.same(left.meta.tag, [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' }], 'and marked as a subset');
  t.equal(searched.resource.entry[0].fullUrl, `http://localhost/fhir/Binary/${id}`, 'whose fullUrl reads it whole');
  t.equal(readInBatch.response.status, '406');
  t.match(readInBatch.response.outcome.issue[0].diagnostics, new RegExp(`GET Binary/${id}`), 'read in a batch: 406, saying how to read it');
});
