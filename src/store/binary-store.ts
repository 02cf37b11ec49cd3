import { createHash, randomUUID } from 'node:crypto';
import type { Binary, Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import type { SqlExecutor } from './database.ts';
import { binaryOwner, openChunk, sealChunk, type DataKey, type DataKeys } from './encryption.ts';

/**
 * Bytes per stored chunk: a 100 MB document is two hundred rows, and an upload or a download holds no
 * more than a chunk or two of it in memory at any moment.
 */
export const CHUNK_SIZE = 512 * 1024;

/**
 * Where the bytes of a Binary posted as itself (R4 binary.html) come from: the request body, still
 * arriving, then, once the router has written them as chunks, the staged content. JSON has no place for
 * either, so they ride on the Binary object under symbol keys, which validation and JSON.stringify never
 * see and object spreads keep; the resource thus goes through the write handlers (conditional create and
 * update included) unchanged, and the repository ties the bytes to the version it writes.
 */
const STREAMED_BYTES = Symbol('Binary bytes, streamed');
const STAGED_CONTENT = Symbol('Binary bytes, staged');

type CarryingBinary = Binary & { [STREAMED_BYTES]?: AsyncIterable<Uint8Array>; [STAGED_CONTENT]?: StagedContent };

/** A Binary whose bytes are `bytes`, read only when the Binary is written. */
export function withStreamedBytes(binary: Binary, bytes: AsyncIterable<Uint8Array>): Binary {
  return { ...binary, [STREAMED_BYTES]: bytes } as CarryingBinary;
}

/** Bytes written as chunks under `contentId`, not yet tied to a Binary version. */
export interface StagedContent {
  contentId: string;
  size: number;
  sha1: string;
  chunkCount: number;
}

/** A Binary about to be written: the resource as it is stored (without `data`) and its bytes. */
export interface BinaryWrite {
  resource: Resource;
  /** Staged chunks, bytes in hand (base64 `data`), or a body still arriving (then read in the write's transaction). */
  content: StagedContent | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
  /** The base64 `data` the Binary came with (written as JSON): it answers the write as a read would. */
  data?: string;
}

/** The bytes a Binary brings, staged, streamed or as base64 `data`; undefined for anything else. */
export function binaryWriteOf(resource: Resource): BinaryWrite | undefined {
  if (resource.resourceType !== 'Binary') return undefined;
  const { data, [STREAMED_BYTES]: streamed, [STAGED_CONTENT]: staged, ...stored } = resource as CarryingBinary;
  if (staged) return { resource: stored, content: staged };
  if (streamed) return { resource: stored, content: streamed };
  if (data !== undefined) return { resource: stored, content: [Buffer.from(data, 'base64')], data };
  return undefined;
}

/** What is known of one version's bytes without reading them, and how to read them. */
export interface BinaryContent {
  size: number;
  /** SHA-1 of the bytes, base64: what Attachment.hash holds. */
  sha1: string;
  /** The bytes in order, each chunk read from the database only when the previous one has been taken. */
  chunks(): AsyncIterable<Buffer>;
  /** The bytes are the stored JSON's own `data` (a Binary written before they moved out of line). */
  inline?: boolean;
}

// Bytes cross both drivers as base64 text, decoded and encoded by PostgreSQL: PGlite would otherwise
// turn each byte of a bytea parameter or result into a JavaScript string of its own.
const INSERT_CHUNK = `INSERT INTO binary_chunk (content_id, chunk_no, bytes, key_id) VALUES ($1, $2, decode($3, 'base64'), $4::uuid)`;
const INSERT_CONTENT = `INSERT INTO binary_content (binary_id, version_id, content_id, size, sha1, chunk_count) VALUES ($1, $2, $3, $4, $5, $6)`;
const SELECT_CONTENT = `SELECT content_id, size, sha1, chunk_count FROM binary_content WHERE binary_id = $1 AND version_id = $2`;
const SELECT_CHUNK = `SELECT encode(bytes, 'base64') AS bytes, key_id::text AS key_id FROM binary_chunk WHERE content_id = $1 AND chunk_no = $2`;
// PostgreSQL's base64 breaks lines every 76 characters; FHIR's base64Binary has none.
const SELECT_DATA = `SELECT c.size, CASE WHEN c.size <= $3 THEN (
    SELECT translate(encode(string_agg(k.bytes, ''::bytea ORDER BY k.chunk_no), 'base64'), chr(10), '') FROM binary_chunk k WHERE k.content_id = c.content_id
  ) END AS data
  FROM binary_content c WHERE c.binary_id = $1 AND c.version_id = $2`;
// Sealed chunks are opened one by one: each with its data key's id, in order.
const SELECT_SEALED_DATA = `SELECT c.size, CASE WHEN c.size <= $3 THEN (
    SELECT json_agg(json_build_array(k.key_id::text, translate(encode(k.bytes, 'base64'), chr(10), '')) ORDER BY k.chunk_no) FROM binary_chunk k WHERE k.content_id = c.content_id
  ) END AS chunks
  FROM binary_content c WHERE c.binary_id = $1 AND c.version_id = $2`;

/**
 * The largest Binary whose bytes are put together as one base64 `data` text (in a Bundle, or for a PATCH),
 * by default: a search page of 50 of them stays under 70 MB. A read of a larger one as FHIR JSON streams
 * its `data` (HTTP only); a Bundle leaves it out (store/binary-data.ts). BINARY_INLINE_LIMIT sets it.
 */
export const DEFAULT_BINARY_INLINE_LIMIT = 1024 * 1024;

/**
 * Writes the bytes of a Binary posted as itself, as they arrive, into chunk rows, on `db` outside any
 * transaction: each chunk is a short statement of its own, so a slow sender holds no transaction,
 * pooled connection or lock (PGlite, one transaction at a time, kept every other writer waiting).
 * Returns the Binary carrying them as staged content, and the content id; undefined for any other
 * resource. If the bytes fail (a body over the limit, a client gone), what was written is removed.
 */
export async function stageStreamedBytes(db: SqlExecutor, resource: Resource, keys?: DataKeys): Promise<{ resource: Resource; contentId: string } | undefined> {
  const { [STREAMED_BYTES]: streamed, ...rest } = resource as CarryingBinary;
  if (!streamed) return undefined;
  // Outside any transaction: a data key created here is committed at once.
  const key = keys ? await keys.keyFor(db, await binaryOwner(db, rest as Resource), true) : undefined;
  const contentId = randomUUID();
  await db.query('INSERT INTO binary_upload (content_id) VALUES ($1)', [contentId]);
  try {
    const staged = await writeChunks(db, contentId, streamed, key);
    return { resource: { ...rest, [STAGED_CONTENT]: staged } as CarryingBinary, contentId };
  } catch (error) {
    await discardUnclaimedContent(db, contentId).catch(() => {});
    throw error;
  }
}

/** Removes staged bytes unless a version claimed them: its write failed, or a conditional create matched. */
export async function discardUnclaimedContent(db: SqlExecutor, contentId: string): Promise<void> {
  await db.query('DELETE FROM binary_chunk WHERE content_id = $1 AND EXISTS (SELECT 1 FROM binary_upload WHERE content_id = $1)', [contentId]);
  await db.query('DELETE FROM binary_upload WHERE content_id = $1', [contentId]);
}

/** Removes the bytes of uploads started over `olderThanSeconds` ago and never claimed (a server stopped mid-upload). */
export async function sweepStaleUploads(db: SqlExecutor, olderThanSeconds: number): Promise<number> {
  const { rows } = await db.query<{ content_id: string }>('SELECT content_id FROM binary_upload WHERE started < now() - make_interval(secs => $1)', [olderThanSeconds]);
  for (const { content_id } of rows) await discardUnclaimedContent(db, content_id);
  return rows.length;
}

/**
 * Ties the bytes of `content` to version `versionId` of Binary `id`, in the transaction that writes that
 * version. Staged bytes are claimed; bytes in hand or still arriving are written there and then, so they
 * commit or roll back with the version.
 */
export async function writeBinaryContent(tx: SqlExecutor, id: string, versionId: number, content: BinaryWrite['content'], key?: DataKey): Promise<void> {
  let staged: StagedContent;
  if ('contentId' in content) {
    staged = content;
    await tx.query('DELETE FROM binary_upload WHERE content_id = $1', [staged.contentId]);
  } else {
    staged = await writeChunks(tx, randomUUID(), content, key);
  }
  await tx.query(INSERT_CONTENT, [id, versionId, staged.contentId, staged.size, staged.sha1, staged.chunkCount]);
}

/** Writes `bytes` as chunk rows of `contentId` (sealed with `key` when given), working out their size and SHA-1 on the way. */
async function writeChunks(db: SqlExecutor, contentId: string, bytes: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, key?: DataKey): Promise<StagedContent> {
  const hash = createHash('sha1');
  let size = 0;
  let chunkCount = 0;
  let pending: Uint8Array[] = [];
  let pendingSize = 0;
  const writeChunk = async () => {
    const chunk = Buffer.concat(pending, pendingSize);
    pending = [];
    pendingSize = 0;
    const stored = key ? sealChunk(key, chunk) : chunk;
    await db.query(INSERT_CHUNK, [contentId, chunkCount++, stored.toString('base64'), key?.keyId ?? null], 'dossier_binary_chunk_insert');
  };
  for await (const piece of bytes) {
    hash.update(piece);
    size += piece.length;
    for (let offset = 0; offset < piece.length; ) {
      const take = Math.min(CHUNK_SIZE - pendingSize, piece.length - offset);
      pending.push(piece.subarray(offset, offset + take));
      pendingSize += take;
      offset += take;
      if (pendingSize === CHUNK_SIZE) await writeChunk();
    }
  }
  if (pendingSize > 0) await writeChunk();
  return { contentId, size, sha1: hash.digest('base64'), chunkCount };
}

/**
 * The bytes of Binary `id` version `versionId`, whose stored JSON is `json`. A Binary written before
 * its bytes moved out of line still has them inline, as `data`; one without content has none.
 * `db` must still be open when the chunks are read: outside a transaction, or before it ends.
 */
export async function readBinaryContent(db: SqlExecutor, id: string, versionId: number, json: string, keys?: DataKeys): Promise<BinaryContent> {
  const { rows } = await db.query<{ content_id: string; size: number | string; sha1: string; chunk_count: number }>(SELECT_CONTENT, [id, versionId], 'dossier_binary_content_of');
  const row = rows[0];
  if (row) {
    return {
      size: Number(row.size),
      sha1: row.sha1,
      async *chunks() {
        for (let chunkNo = 0; chunkNo < row.chunk_count; chunkNo++) {
          const chunk = await db.query<{ bytes: string; key_id: string | null }>(SELECT_CHUNK, [row.content_id, chunkNo], 'dossier_binary_chunk_of');
          if (!chunk.rows[0]) throw new Error(`Binary/${id}/_history/${versionId}: chunk ${chunkNo} of ${row.chunk_count} is missing`);
          yield await openStoredChunk(db, keys, chunk.rows[0].key_id, chunk.rows[0].bytes, id);
        }
      },
    };
  }
  const inline = Buffer.from((JSON.parse(json) as Binary).data ?? '', 'base64');
  return {
    size: inline.length,
    inline: true,
    sha1: createHash('sha1').update(inline).digest('base64'),
    async *chunks() {
      if (inline.length > 0) yield inline;
    },
  };
}

/**
 * The bytes of a Binary version as base64 `data`, put together by the database; undefined when it has
 * none. Over `limit` bytes, 406: the Binary exists, but not as JSON (R4 http.html: the server cannot
 * give the representation asked for); its own media type still downloads it.
 */
export async function binaryData(db: SqlExecutor, id: string, versionId: number, limit = DEFAULT_BINARY_INLINE_LIMIT, keys?: DataKeys): Promise<string | undefined> {
  const { size, data } = await binaryDataWithin(db, id, versionId, limit, keys);
  if (size > limit) {
    throw new FhirError(406, [
      { code: 'too-costly', diagnostics: `Binary/${id}/_history/${versionId} holds ${size} bytes, over the ${limit} that can be returned as FHIR JSON here: read it alone (GET Binary/${id}), as FHIR JSON or with Accept set to its content type` },
    ]);
  }
  return data;
}

/** The size of a Binary version's bytes, and their base64 when there are some and no more than `limit`. */
export async function binaryDataWithin(db: SqlExecutor, id: string, versionId: number, limit: number, keys?: DataKeys): Promise<{ size: number; data?: string }> {
  if (keys) {
    const sealed = await db.query<{ size: number | string; chunks: Array<[string | null, string]> | null }>(SELECT_SEALED_DATA, [id, versionId, limit], 'dossier_binary_sealed_data_within');
    const row = sealed.rows[0];
    const size = Number(row?.size ?? 0);
    if (!row?.chunks || row.chunks.length === 0) return { size };
    const found = await keys.keysById(db, row.chunks.flatMap(([keyId]) => (keyId ? [keyId] : [])));
    const bytes = row.chunks.map(([keyId, base64]) => openWith(found, keyId, base64, id));
    return { size, data: Buffer.concat(bytes).toString('base64') };
  }
  const { rows } = await db.query<{ size: number | string; data: string | null }>(SELECT_DATA, [id, versionId, limit], 'dossier_binary_data_within');
  const row = rows[0];
  return { size: Number(row?.size ?? 0), ...(row?.data ? { data: row.data } : {}) };
}

/** A stored chunk's bytes: opened with its data key, or as they are when written in clear. */
async function openStoredChunk(db: SqlExecutor, keys: DataKeys | undefined, keyId: string | null, base64: string, id: string): Promise<Buffer> {
  if (keyId === null) return Buffer.from(base64, 'base64');
  if (!keys) throw new Error(`Binary/${id} is encrypted and this store has no master key configured`);
  return openWith(await keys.keysById(db, [keyId]), keyId, base64, id);
}

function openWith(found: Map<string, Buffer>, keyId: string | null, base64: string, id: string): Buffer {
  if (keyId === null) return Buffer.from(base64, 'base64');
  const key = found.get(keyId);
  if (!key) throw FhirError.gone(`Binary/${id} belongs to an erased record`);
  return openChunk(key, Buffer.from(base64, 'base64'));
}

/** The JSON text of a stored Binary (which has no `data`) with `data` added, as its last element. */
export function jsonWithData(json: string, data: string): string {
  return `${json.slice(0, -1)},"data":${JSON.stringify(data)}}`;
}
