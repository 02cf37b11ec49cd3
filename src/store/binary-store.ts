import { createHash } from 'node:crypto';
import type { Binary, Resource } from 'fhir/r4';
import type { SqlExecutor } from './database.ts';

/**
 * Bytes per stored chunk: a 100 MB document is two hundred rows, and an upload or a download holds no
 * more than a chunk or two of it in memory at any moment.
 */
export const CHUNK_SIZE = 512 * 1024;

/**
 * Where the bytes of a Binary posted as itself (R4 binary.html) come from: the request body, still
 * arriving. JSON has no place for a stream, so it rides on the Binary object under this symbol key, which
 * validation and JSON.stringify never see and object spreads keep; the resource thus goes through the
 * write handlers (conditional create and update included) unchanged, and the repository reads the stream
 * into chunks while it writes the version.
 */
const STREAMED_BYTES = Symbol('Binary bytes, streamed');

type StreamedBinary = Binary & { [STREAMED_BYTES]?: AsyncIterable<Uint8Array> };

/** A Binary whose bytes are `bytes`, read only when the Binary is written. */
export function withStreamedBytes(binary: Binary, bytes: AsyncIterable<Uint8Array>): Binary {
  return { ...binary, [STREAMED_BYTES]: bytes } as StreamedBinary;
}

/** A Binary about to be written: the resource as it is stored (without `data`) and its bytes. */
export interface BinaryWrite {
  resource: Resource;
  bytes: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  /** The base64 `data` the Binary came with (written as JSON): it answers the write as a read would. */
  data?: string;
}

/** The bytes a Binary brings, from a stream or from base64 `data`; undefined for anything else. */
export function binaryWriteOf(resource: Resource): BinaryWrite | undefined {
  if (resource.resourceType !== 'Binary') return undefined;
  const { data, [STREAMED_BYTES]: streamed, ...stored } = resource as StreamedBinary;
  if (streamed) return { resource: stored, bytes: streamed };
  if (data !== undefined) return { resource: stored, bytes: [Buffer.from(data, 'base64')], data };
  return undefined;
}

/** What is known of one version's bytes without reading them, and how to read them. */
export interface BinaryContent {
  size: number;
  /** SHA-1 of the bytes, base64: what Attachment.hash holds. */
  sha1: string;
  /** The bytes in order, each chunk read from the database only when the previous one has been taken. */
  chunks(): AsyncIterable<Buffer>;
}

// Bytes cross both drivers as base64 text, decoded and encoded by PostgreSQL: PGlite would otherwise
// turn each byte of a bytea parameter or result into a JavaScript string of its own.
const INSERT_CHUNK = `INSERT INTO binary_chunk (binary_id, version_id, chunk_no, bytes) VALUES ($1, $2, $3, decode($4, 'base64'))`;
const INSERT_CONTENT = `INSERT INTO binary_content (binary_id, version_id, size, sha1, chunk_count) VALUES ($1, $2, $3, $4, $5)`;
const SELECT_CONTENT = `SELECT size, sha1, chunk_count FROM binary_content WHERE binary_id = $1 AND version_id = $2`;
const SELECT_CHUNK = `SELECT encode(bytes, 'base64') AS bytes FROM binary_chunk WHERE binary_id = $1 AND version_id = $2 AND chunk_no = $3`;
// PostgreSQL's base64 breaks lines every 76 characters; FHIR's base64Binary has none.
const SELECT_DATA = `SELECT translate(encode(string_agg(bytes, ''::bytea ORDER BY chunk_no), 'base64'), chr(10), '') AS data
  FROM binary_chunk WHERE binary_id = $1 AND version_id = $2`;

/**
 * Writes the bytes of Binary `id` version `versionId` as they arrive, chunk by chunk, with their size and
 * SHA-1 worked out on the way. Runs in the transaction that writes the version: if `bytes` fails (a body
 * over the limit, a client gone), the version and every chunk already written are rolled back with it.
 * That transaction lasts as long as the upload: on PostgreSQL it holds one pooled connection (and, for an
 * update, the Binary's row lock); PGlite runs one transaction at a time, so other requests wait for it.
 */
export async function writeBinaryContent(tx: SqlExecutor, id: string, versionId: number, bytes: BinaryWrite['bytes']): Promise<void> {
  const hash = createHash('sha1');
  let size = 0;
  let chunkCount = 0;
  let pending: Uint8Array[] = [];
  let pendingSize = 0;
  const writeChunk = async () => {
    const chunk = Buffer.concat(pending, pendingSize);
    pending = [];
    pendingSize = 0;
    await tx.query(INSERT_CHUNK, [id, versionId, chunkCount++, chunk.toString('base64')], 'dossier_binary_chunk_insert');
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
  await tx.query(INSERT_CONTENT, [id, versionId, size, hash.digest('base64'), chunkCount]);
}

/**
 * The bytes of Binary `id` version `versionId`, whose stored JSON is `json`. A Binary written before
 * its bytes moved out of line still has them inline, as `data`; one without content has none.
 * `db` must still be open when the chunks are read: outside a transaction, or before it ends.
 */
export async function readBinaryContent(db: SqlExecutor, id: string, versionId: number, json: string): Promise<BinaryContent> {
  const { rows } = await db.query<{ size: number | string; sha1: string; chunk_count: number }>(SELECT_CONTENT, [id, versionId], 'dossier_binary_content');
  const row = rows[0];
  if (row) {
    return {
      size: Number(row.size),
      sha1: row.sha1,
      async *chunks() {
        for (let chunkNo = 0; chunkNo < row.chunk_count; chunkNo++) {
          const chunk = await db.query<{ bytes: string }>(SELECT_CHUNK, [id, versionId, chunkNo], 'dossier_binary_chunk');
          if (!chunk.rows[0]) throw new Error(`Binary/${id}/_history/${versionId}: chunk ${chunkNo} of ${row.chunk_count} is missing`);
          yield Buffer.from(chunk.rows[0].bytes, 'base64');
        }
      },
    };
  }
  const inline = Buffer.from((JSON.parse(json) as Binary).data ?? '', 'base64');
  return {
    size: inline.length,
    sha1: createHash('sha1').update(inline).digest('base64'),
    async *chunks() {
      if (inline.length > 0) yield inline;
    },
  };
}

/** The bytes of a Binary version as base64 `data`, put together by the database; undefined when it has none. */
export async function binaryData(db: SqlExecutor, id: string, versionId: number): Promise<string | undefined> {
  const { rows } = await db.query<{ data: string | null }>(SELECT_DATA, [id, versionId], 'dossier_binary_data');
  return rows[0]?.data || undefined;
}

/** The JSON text of a stored Binary (which has no `data`) with `data` added, as its last element. */
export function jsonWithData(json: string, data: string): string {
  return `${json.slice(0, -1)},"data":${JSON.stringify(data)}}`;
}
