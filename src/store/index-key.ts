import { randomBytes, randomUUID } from 'node:crypto';
import { ofTypeKey, ofTypeParam } from '../search/extract.ts';
import type { IdentifierHash } from '../search/identifier-hash.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import type { Database, SqlExecutor } from './database.ts';
import { identifierHashUnder, KEY_BYTES, type DataKeys } from './encryption.ts';

/**
 * The search index key (issue 18): one random key per store, under which the index holds identifiers as keyed
 * hashes (search/identifier-hash.ts). It is a row of `data_key` (owner INDEX_KEY_OWNER), wrapped by the master
 * key like the data keys, so that a master-key rotation rewraps it and leaves the index rows as they are. Every
 * server process and script of a store loads the same one as it starts (`prepareIndexKey`).
 */
export const INDEX_KEY_OWNER = 'search-index';

// Arbitrary constant: processes starting together on one PostgreSQL take turns to create the key.
const INDEX_KEY_LOCK = 7_341_204_002;

const READ_KEY = `SELECT master_key_id, wrapped FROM data_key WHERE owner = $1 ORDER BY created, key_id LIMIT 1`;
const INSERT_KEY = `INSERT INTO data_key (key_id, owner, master_key_id, wrapped) VALUES ($1, $2, $3, $4)`;
const HASHED_TABLES = ['search_token', 'search_reference', 'search_composite'];

export interface PreparedIndexKey {
  /** The store had none: this call made it. */
  created: boolean;
  /** Index rows whose identifier it then hashed (a store written in clear, or before this version). */
  hashedRows: number;
}

/**
 * Loads the store's search index key into `keys`. A store that has none gets one, and in the same transaction
 * every identifier its index holds in clear is hashed under it (index rows written before this version, or with
 * FHIR_ENCRYPTION=off): the key's existence says the rows are hashed, so this never hashes a value twice, and
 * processes starting together take turns. The rows rewritten leave their clear values in dead tuples and in the
 * planner's statistics: the tables are then vacuumed and analysed (VACUUM FULL on PGlite, as encrypt-existing).
 */
export async function prepareIndexKey(db: Database, keys: DataKeys, registry: SearchParameterRegistry): Promise<PreparedIndexKey> {
  const stored = await storedIndexKey(db, keys);
  if (stored) {
    keys.useIndexKey(stored);
    return { created: false, hashedRows: 0 };
  }
  const made = await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [INDEX_KEY_LOCK]);
    const raced = await storedIndexKey(tx, keys);
    if (raced) return { key: raced, created: false, hashedRows: 0 };
    const key = randomBytes(KEY_BYTES);
    const { masterKeyId, wrapped } = await keys.wrapper.wrap(key);
    await tx.query(INSERT_KEY, [randomUUID(), INDEX_KEY_OWNER, masterKeyId, wrapped.toString('base64')]);
    return { key, created: true, hashedRows: await hashIdentifierRows(tx, identifierHashUnder(key), registry.identifierParams()) };
  });
  keys.useIndexKey(made.key);
  if (made.hashedRows > 0) await db.exec(`VACUUM (${db.driver === 'pglite' ? 'FULL, ' : ''}ANALYZE) ${HASHED_TABLES.join(', ')}`);
  return { created: made.created, hashedRows: made.hashedRows };
}

async function storedIndexKey(db: SqlExecutor, keys: DataKeys): Promise<Buffer | undefined> {
  const { rows } = await db.query<{ master_key_id: string; wrapped: string }>(READ_KEY, [INDEX_KEY_OWNER]);
  const row = rows[0];
  return row ? keys.wrapper.unwrap(Buffer.from(row.wrapped, 'base64'), row.master_key_id) : undefined;
}

/**
 * Hashes, as the writer would have (extract.ts), the identifiers the index holds in clear: the token rows and
 * `:of-type` rows of `params` (the parameters on identifiers), and the identifiers of reference rows. Each
 * distinct value is hashed once, then every row holding it is updated in one statement per table. Returns the
 * rows rewritten.
 */
async function hashIdentifierRows(tx: SqlExecutor, hash: IdentifierHash, params: Array<[resourceType: string, code: string]>): Promise<number> {
  const types = params.map(([type]) => type);
  const onIdentifiers = 'JOIN unnest($1::text[], $2::text[]) AS p(resource_type, param) ON t.resource_type = p.resource_type AND t.param = p.param';
  const tokens = await rewriteValues(
    tx,
    hash,
    `SELECT DISTINCT t.code FROM search_token t ${onIdentifiers} WHERE t.code IS NOT NULL`,
    `UPDATE search_token t SET code = m.hashed FROM identifier_rehash m, unnest($1::text[], $2::text[]) AS p(resource_type, param)
      WHERE t.resource_type = p.resource_type AND t.param = p.param AND t.code = m.clear`,
    [types, params.map(([, code]) => code)],
  );
  const ofType = await rewriteValues(
    tx,
    (key) => {
      const [typeSystem, typeCode, value] = JSON.parse(key) as [string, string, string];
      return ofTypeKey(typeSystem, typeCode, hash(value));
    },
    `SELECT DISTINCT t.key FROM search_composite t ${onIdentifiers}`,
    `UPDATE search_composite t SET key = m.hashed FROM identifier_rehash m, unnest($1::text[], $2::text[]) AS p(resource_type, param)
      WHERE t.resource_type = p.resource_type AND t.param = p.param AND t.key = m.clear`,
    [types, params.map(([, code]) => ofTypeParam(code))],
  );
  const references = await rewriteValues(
    tx,
    hash,
    'SELECT DISTINCT identifier_value FROM search_reference WHERE identifier_value IS NOT NULL',
    'UPDATE search_reference t SET identifier_value = m.hashed FROM identifier_rehash m WHERE t.identifier_value = m.clear',
    [],
  );
  return tokens + ofType + references;
}

const REHASH_BATCH = 5000;

/**
 * The distinct values `distinct` selects, each given its `transform`ed value in a temporary table (numbered, so
 * that batches are read in order whatever their length), then the rows holding them updated by `update`.
 */
async function rewriteValues(tx: SqlExecutor, transform: (value: string) => string, distinct: string, update: string, params: unknown[]): Promise<number> {
  await tx.query('CREATE TEMPORARY TABLE identifier_rehash (n bigserial PRIMARY KEY, clear text NOT NULL, hashed text) ON COMMIT DROP');
  await tx.query(`INSERT INTO identifier_rehash (clear) ${distinct}`, params);
  for (let after = 0; ; ) {
    const { rows } = await tx.query<{ n: string; clear: string }>('SELECT n::text AS n, clear FROM identifier_rehash WHERE n > $1::bigint ORDER BY n LIMIT $2::int', [after, REHASH_BATCH]);
    if (rows.length === 0) break;
    await tx.query('UPDATE identifier_rehash m SET hashed = x.hashed FROM unnest($1::bigint[], $2::text[]) AS x(n, hashed) WHERE m.n = x.n', [
      rows.map((row) => row.n),
      rows.map((row) => transform(row.clear)),
    ]);
    after = Number(rows[rows.length - 1]!.n);
  }
  const { rowCount } = await tx.query(update, params);
  await tx.query('DROP TABLE identifier_rehash');
  return rowCount;
}
