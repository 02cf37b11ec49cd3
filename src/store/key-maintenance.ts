import type { Resource } from 'fhir/r4';
import { recordPatientOf } from '../search/compartment.ts';
import { extractIndexRows } from '../search/extract.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import type { Database } from './database.ts';
import { prepareIndexKey } from './index-key.ts';
import { binaryOwner, isSealed, ownerOf, sealChunk, SYSTEM_OWNER, type DataKeys, type KeyWrapper } from './encryption.ts';

/**
 * Master-key rotation (`npm run rotate-master-key`): every data key not wrapped by `to` yet is unwrapped by
 * `from` and wrapped by `to`, in one transaction. The data itself is not touched. Returns how many were rewrapped.
 */
export async function rewrapDataKeys(db: Database, from: KeyWrapper, to: KeyWrapper): Promise<number> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<{ key_id: string; master_key_id: string; wrapped: string }>(
      'SELECT key_id::text AS key_id, master_key_id, wrapped FROM data_key WHERE master_key_id <> $1 FOR UPDATE',
      [to.currentKeyId],
    );
    const ids: string[] = [];
    const masterIds: string[] = [];
    const wrapped: string[] = [];
    for (const row of rows) {
      const { masterKeyId, wrapped: rewrapped } = await to.wrap(await from.unwrap(Buffer.from(row.wrapped, 'base64'), row.master_key_id));
      ids.push(row.key_id);
      masterIds.push(masterKeyId);
      wrapped.push(rewrapped.toString('base64'));
    }
    if (ids.length > 0) {
      await tx.query(
        `UPDATE data_key d SET master_key_id = n.master_key_id, wrapped = n.wrapped
           FROM unnest($1::uuid[], $2::text[], $3::text[]) AS n(key_id, master_key_id, wrapped) WHERE d.key_id = n.key_id`,
        [ids, masterIds, wrapped],
      );
    }
    return ids.length;
  });
}

export interface EncryptedCounts {
  versions: number;
  chunks: number;
  /** Index rows whose identifier was hashed (index-key.ts): those of a store that had no index key yet. */
  identifierRows: number;
}

const BATCH = 200;
const AUDIT_TRIGGERS = [
  ['resource', 'resource_audit_event_append_only'],
  ['resource_history', 'resource_history_audit_event_append_only'],
] as const;

/**
 * `npm run encrypt-existing`: seals what a store wrote in clear (before encryption at rest, or with
 * FHIR_ENCRYPTION=off): first the identifiers of its search index, hashed under a new index key in one
 * transaction (index-key.ts: a store that has its key has them hashed already), then resource content and
 * history in batches, each its own transaction, then Binary chunks.
 * The AuditEvents' append-only guard (migration 0016) is lifted inside each batch's transaction only, to seal
 * their text as it is. Meant for a store no server is writing to. Then vacuums, so that the clear rows' bytes
 * leave the table files (VACUUM FULL on PGlite).
 */
export async function encryptExisting(db: Database, keys: DataKeys, registry: SearchParameterRegistry, onProgress: (counts: EncryptedCounts) => void = () => {}): Promise<EncryptedCounts> {
  const { hashedRows } = await prepareIndexKey(db, keys, registry);
  const counts: EncryptedCounts = { versions: 0, chunks: 0, identifierRows: hashedRows };
  for (const table of ['resource', 'resource_history'] as const) {
    const versionColumn = table === 'resource' ? '0' : 'version_id';
    for (;;) {
      const done = await db.transaction(async (tx) => {
        const { rows } = await tx.query<{ resource_type: string; id: string; version: number; content: string }>(
          `SELECT resource_type, id, ${versionColumn} AS version, content FROM ${table} WHERE content IS NOT NULL AND left(content, 1) = '{' LIMIT ${BATCH} FOR UPDATE`,
        );
        if (rows.length === 0) return 0;
        for (const [onTable, trigger] of AUDIT_TRIGGERS) if (onTable === table) await tx.query(`ALTER TABLE ${table} DISABLE TRIGGER ${trigger}`);
        const sealed: string[] = [];
        for (const row of rows) {
          const resource = JSON.parse(row.content) as Resource;
          const owner = resource.resourceType === 'Binary'
            ? await binaryOwner(tx, resource)
            : ownerOf(resource, recordPatientOf(row.resource_type, row.id, extractIndexRows(resource, registry).reference));
          sealed.push(keys.seal(await keys.keyFor(tx, owner), row.content));
        }
        await tx.query(
          `UPDATE ${table} t SET content = n.content FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) AS n(resource_type, id, version, content)
            WHERE t.resource_type = n.resource_type AND t.id = n.id${table === 'resource_history' ? ' AND t.version_id = n.version' : ''}`,
          [rows.map((r) => r.resource_type), rows.map((r) => r.id), rows.map((r) => r.version), sealed],
        );
        for (const [onTable, trigger] of AUDIT_TRIGGERS) if (onTable === table) await tx.query(`ALTER TABLE ${table} ENABLE TRIGGER ${trigger}`);
        return rows.length;
      });
      if (done === 0) break;
      counts.versions += done;
      onProgress(counts);
    }
  }
  for (;;) {
    const done = await db.transaction(async (tx) => {
      // Claimed chunks only: staged bytes no version claimed are swept, not kept.
      const { rows } = await tx.query<{ content_id: string; chunk_no: number; bytes: string; binary_id: string; content: string | null }>(
        `SELECT k.content_id, k.chunk_no, encode(k.bytes, 'base64') AS bytes, c.binary_id, h.content
           FROM binary_chunk k JOIN binary_content c ON c.content_id = k.content_id
           LEFT JOIN resource_history h ON h.resource_type = 'Binary' AND h.id = c.binary_id AND h.version_id = c.version_id
          WHERE k.key_id IS NULL LIMIT ${BATCH} FOR UPDATE OF k`,
      );
      for (const row of rows) {
        const text = row.content === null ? null : (await keys.openAll(tx, [row.content]))[0] ?? null;
        const owner = text && !isSealed(text) ? await binaryOwner(tx, JSON.parse(text) as Resource) : SYSTEM_OWNER;
        const key = await keys.keyFor(tx, owner);
        await tx.query(`UPDATE binary_chunk SET bytes = decode($3, 'base64'), key_id = $4::uuid WHERE content_id = $1 AND chunk_no = $2`, [
          row.content_id,
          row.chunk_no,
          sealChunk(key, Buffer.from(row.bytes, 'base64')).toString('base64'),
          key.keyId,
        ]);
      }
      return rows.length;
    });
    if (done === 0) break;
    counts.chunks += done;
    onProgress(counts);
  }
  await db.exec(db.driver === 'pglite' ? 'VACUUM FULL resource, resource_history, binary_chunk' : 'VACUUM resource, resource_history, binary_chunk');
  return counts;
}
