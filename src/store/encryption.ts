import { createCipheriv, createDecipheriv, createHash, createHmac, createSecretKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { AuditEvent, Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import type { IdentifierHash } from '../search/identifier-hash.ts';
import type { Database, QueryResult, SqlExecutor } from './database.ts';

/**
 * Encryption at rest (issue 18): every resource version's content, and every Binary chunk, is sealed with
 * AES-256-GCM under a data key of its own patient's record (one per patient, `Patient/{id}`), or under the
 * shared system data key for what belongs to no patient (Practitioner, Organization…). Data keys are stored
 * wrapped by a master key (KeyWrapper): rotating the master key rewraps data keys, never data. Destroying a
 * patient's data keys (`Patient/{id}/$erase`) leaves whatever was sealed under them unreadable for good,
 * the append-only AuditEvents about that patient included.
 */

/** Wraps and unwraps data keys with a master key: the local one below, or a KMS behind the same interface. */
export interface KeyWrapper {
  /** Id of the master key new data keys are wrapped with (stored beside each wrapped key). */
  readonly currentKeyId: string;
  wrap(dataKey: Buffer): Promise<{ masterKeyId: string; wrapped: Buffer }>;
  /** Fails when the master key `masterKeyId` is not one this wrapper holds. */
  unwrap(wrapped: Buffer, masterKeyId: string): Promise<Buffer>;
}

/** Bytes of an AES-256 key; of a GCM nonce; of its tag; of an identifier's hash in the search index. */
export const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const IDENTIFIER_HASH_BYTES = 16;

/** AES-256-GCM: nonce, tag, then ciphertext, in one buffer. */
export function sealBytes(key: Buffer, plain: Buffer, aad?: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  if (aad) cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

export function openBytes(key: Buffer, sealed: Buffer, aad?: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES));
  if (aad) decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
}

const WRAP_AAD = Buffer.from('dossier data key');

/** A master key's id: a fingerprint that names it without revealing it. */
export function masterKeyId(key: Buffer): string {
  return `local:${createHash('sha256').update('dossier master key id\u0000').update(key).digest('hex').slice(0, 16)}`;
}

/** Master keys held in memory (FHIR_MASTER_KEY / FHIR_MASTER_KEY_FILE): the current one and older ones still unwrapping. */
export class LocalKeyWrapper implements KeyWrapper {
  private readonly keys = new Map<string, Buffer>();
  readonly currentKeyId: string;

  constructor(current: Buffer, previous: Buffer[] = []) {
    for (const key of [current, ...previous]) {
      if (key.length !== KEY_BYTES) throw new Error(`A master key is ${KEY_BYTES} bytes (base64 of 32 random bytes: openssl rand -base64 32), not ${key.length}`);
      this.keys.set(masterKeyId(key), key);
    }
    this.currentKeyId = masterKeyId(current);
  }

  async wrap(dataKey: Buffer): Promise<{ masterKeyId: string; wrapped: Buffer }> {
    return { masterKeyId: this.currentKeyId, wrapped: sealBytes(this.keys.get(this.currentKeyId)!, dataKey, WRAP_AAD) };
  }

  async unwrap(wrapped: Buffer, id: string): Promise<Buffer> {
    const key = this.keys.get(id);
    if (!key) throw new Error(`A data key is wrapped by master key ${id}, which is not configured (FHIR_MASTER_KEY, FHIR_PREVIOUS_MASTER_KEYS)`);
    return openBytes(key, wrapped, WRAP_AAD);
  }
}

/** Parses a master key given as base64 (32 bytes). */
export function parseMasterKey(text: string, where: string): Buffer {
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== KEY_BYTES) throw new Error(`${where} must be the base64 of ${KEY_BYTES} bytes (openssl rand -base64 32)`);
  return key;
}

/**
 * An identifier's value as the search index holds it (search/identifier-hash.ts): HMAC-SHA-256 under `key`,
 * its first 128 bits in base64url (22 characters). Truncated because 128 bits are plenty here: two different
 * identifiers share a hash with odds of about n²/2¹²⁹ (1.5e-21 for a billion values), which would only make a
 * search find one resource too many, never miss one; and guessing a value from its hash needs the key, whatever
 * the length. It halves what each identifier costs the token index (22 characters instead of 43).
 */
export function identifierHashUnder(key: Buffer): IdentifierHash {
  const secret: KeyObject = createSecretKey(key);
  return (value) => createHmac('sha256', secret).update(value, 'utf8').digest().subarray(0, IDENTIFIER_HASH_BYTES).toString('base64url');
}

export interface DataKey {
  keyId: string;
  key: Buffer;
}

/** Whose data key seals a resource: `Patient/{id}` for a patient's record, SYSTEM_OWNER for the rest. */
export const SYSTEM_OWNER = 'system';

/**
 * Sealed content is text (the `content` columns): a prefix, the data key's id, `$`, then base64. Clear JSON
 * starts with `{`. Ciphertext does not compress, so the database's own compression of large values (TOAST,
 * lz4 since migration 0010) no longer applies: JSON over COMPRESS_ABOVE characters is deflated before it is
 * sealed (prefix `$z1$`), as PostgreSQL would have compressed it; smaller JSON is sealed as it is (`$e1$`).
 * PostgreSQL compresses a row once it passes about 2 KB (TOAST_TUPLE_THRESHOLD), and then, ciphertext not
 * compressing, moves the value out of line (a TOAST row and its index entry more, in both resource and
 * resource_history). Sealing grows text by a third (base64) and some 80 characters: JSON of 1,400 characters is
 * sealed to about 1,950, so the threshold is taken there. An AuditEvent (1.5–2.5 KB of JSON) then stays in
 * its row; writing it so was measured at 25 % less database time per event on PostgreSQL 15.
 */
const SEALED_PREFIX = '$e1$';
const DEFLATED_PREFIX = '$z1$';
const PREFIX_LENGTH = 4;
const KEY_ID_LENGTH = 36;
const COMPRESS_ABOVE = 1400;

export function isSealed(text: string): boolean {
  return text.startsWith(SEALED_PREFIX) || text.startsWith(DEFLATED_PREFIX);
}

function sealedKeyId(text: string): string {
  return text.slice(PREFIX_LENGTH, PREFIX_LENGTH + KEY_ID_LENGTH);
}

/**
 * Where erasing a record announces the owner whose keys it destroyed (erase.ts, `pg_notify` in its transaction,
 * heard once it commits): every server process on the database forgets them at once (listenForDestroyedKeys).
 */
export const DESTROYED_KEYS_CHANNEL = 'dossier_data_key_destroyed';

/**
 * The SQLSTATE of a write sealed under a data key that no longer exists (migration 0023's triggers): a
 * process that had not heard of the destruction yet. Nothing is stored; the write fails (409) and is not
 * sealed under that key again.
 */
const DESTROYED_KEY_ERROR = 'DK001';

/** Makes `keys` forget each owner whose keys another process (or this one) destroys, as it commits. */
export async function listenForDestroyedKeys(db: Database, keys: DataKeys): Promise<void> {
  await db.listen?.(DESTROYED_KEYS_CHANNEL, (owner) => keys.forget(owner), () => keys.forgetAll());
}

/** Unwrapped data keys held at most this long, a bound on top of the notifications (a process not listening). */
const CACHE_TTL_MS = 5 * 60_000;
const DEFAULT_CACHE_SIZE = 10_000;

interface CachedKey extends DataKey {
  owner: string;
  at: number;
}

/** Own keys not committed yet (created by this transaction), per transaction executor. */
const uncommitted = new WeakMap<object, Map<string, DataKey>>();

const KEY_BY_OWNER = `SELECT key_id::text AS key_id, master_key_id, wrapped,
    COALESCE(xmin::text::bigint = pg_current_xact_id_if_assigned()::text::bigint % 4294967296, false) AS own
  FROM data_key WHERE owner = $1 ORDER BY created, key_id LIMIT 1`;
const KEYS_BY_ID = `SELECT key_id::text AS key_id, owner, master_key_id, wrapped FROM data_key WHERE key_id = ANY($1::uuid[])`;
const INSERT_KEY = `INSERT INTO data_key (key_id, owner, master_key_id, wrapped) VALUES ($1, $2, $3, $4)`;

/**
 * The data keys of a store: unwrapped ones cached in memory (bounded, least recently used out first), so
 * that a read or write of a known patient costs no statement of its own; a key not cached is read in one
 * statement for a whole page of rows.
 */
export class DataKeys {
  private readonly byId = new Map<string, CachedKey>();
  private readonly byOwner = new Map<string, CachedKey>();
  /** The hash under the store's search index key (index-key.ts), once the key is loaded at start. */
  private indexHash: IdentifierHash | undefined;

  constructor(
    readonly wrapper: KeyWrapper,
    private readonly capacity = DEFAULT_CACHE_SIZE,
  ) {}

  /** Takes the store's search index key, unwrapped (index-key.ts loads it at start). */
  useIndexKey(key: Buffer): void {
    this.indexHash = identifierHashUnder(key);
  }

  /** An identifier's value as the search index holds it (identifierHashUnder the store's index key). */
  readonly hashIdentifier = (value: string): string => {
    if (!this.indexHash) throw new Error('The search index key is not loaded: a store loads it as it migrates (index-key.ts, prepareIndexKey)');
    return this.indexHash(value);
  };

  /**
   * The data key sealing what `owner` writes, created when there is none. `db` is the executor the write
   * runs on: inside a transaction, a key it creates commits or rolls back with it, and is remembered for
   * that transaction only until it is read back committed. `autocommit`: `db` runs each statement on its own.
   */
  async keyFor(db: SqlExecutor, owner: string, autocommit = false): Promise<DataKey> {
    const cached = this.fresh(this.byOwner.get(owner));
    if (cached) return cached;
    const own = uncommitted.get(db)?.get(owner);
    if (own) return own;
    const { rows } = await db.query<{ key_id: string; master_key_id: string; wrapped: string; own: boolean }>(KEY_BY_OWNER, [owner], 'dossier_data_key_of');
    const row = rows[0];
    if (row) {
      const key = { keyId: row.key_id, key: await this.wrapper.unwrap(Buffer.from(row.wrapped, 'base64'), row.master_key_id) };
      if (row.own) this.rememberUncommitted(db, owner, key);
      else this.remember(owner, key, true);
      return key;
    }
    const key = { keyId: randomUUID(), key: randomBytes(KEY_BYTES) };
    const { masterKeyId, wrapped } = await this.wrapper.wrap(key.key);
    await db.query(INSERT_KEY, [key.keyId, owner, masterKeyId, wrapped.toString('base64')], 'dossier_data_key_insert');
    // Created in the caller's transaction, which may yet roll back: not shared with other writers until committed.
    if (!autocommit) this.rememberUncommitted(db, owner, key);
    this.remember(owner, key, autocommit);
    return key;
  }

  /** The keys of `keyIds` known (cached or stored); a key absent from the result was destroyed. */
  async keysById(db: SqlExecutor, keyIds: Iterable<string>): Promise<Map<string, Buffer>> {
    const found = new Map<string, Buffer>();
    const missing: string[] = [];
    for (const keyId of new Set(keyIds)) {
      const cached = this.fresh(this.byId.get(keyId));
      if (cached) found.set(keyId, cached.key);
      else missing.push(keyId);
    }
    if (missing.length === 0) return found;
    const { rows } = await db.query<{ key_id: string; owner: string; master_key_id: string; wrapped: string }>(KEYS_BY_ID, [missing]);
    for (const row of rows) {
      const key = await this.wrapper.unwrap(Buffer.from(row.wrapped, 'base64'), row.master_key_id);
      // A key read by id, even one not committed yet, only ever opens what was sealed with it.
      this.remember(row.owner, { keyId: row.key_id, key }, false);
      found.set(row.key_id, key);
    }
    return found;
  }

  /** Drops an owner's keys from memory (its record was erased). */
  forget(owner: string): void {
    this.byOwner.delete(owner);
    for (const [keyId, cached] of this.byId) if (cached.owner === owner) this.byId.delete(keyId);
  }

  /** Drops the owner of key `keyId` from memory: a write found that key destroyed (DESTROYED_KEY_ERROR). */
  forgetKey(keyId: string): void {
    const cached = this.byId.get(keyId);
    if (cached) this.forget(cached.owner);
  }

  /** Drops every key from memory: destructions may have gone unheard (DESTROYED_KEYS_CHANNEL lost). */
  forgetAll(): void {
    this.byId.clear();
    this.byOwner.clear();
  }

  seal(key: DataKey, json: string): string {
    const plain = Buffer.from(json, 'utf8');
    if (json.length > COMPRESS_ABOVE) return `${DEFLATED_PREFIX}${key.keyId}$${sealBytes(key.key, deflateRawSync(plain, { level: 1 })).toString('base64')}`;
    return `${SEALED_PREFIX}${key.keyId}$${sealBytes(key.key, plain).toString('base64')}`;
  }

  /** The clear text of each of `texts` (clear ones as they are); null for one whose data key was destroyed. */
  async openAll(db: SqlExecutor, texts: ReadonlyArray<string | null>): Promise<Array<string | null>> {
    const keyIds = texts.filter((text): text is string => text !== null && isSealed(text)).map(sealedKeyId);
    if (keyIds.length === 0) return [...texts];
    const keys = await this.keysById(db, keyIds);
    return texts.map((text) => {
      if (text === null || !isSealed(text)) return text;
      const key = keys.get(sealedKeyId(text));
      if (!key) return null;
      const plain = openBytes(key, Buffer.from(text.slice(PREFIX_LENGTH + KEY_ID_LENGTH + 1), 'base64'));
      return (text.startsWith(DEFLATED_PREFIX) ? inflateRawSync(plain) : plain).toString('utf8');
    });
  }

  private fresh(cached: CachedKey | undefined): CachedKey | undefined {
    if (!cached) return undefined;
    if (Date.now() - cached.at > CACHE_TTL_MS) {
      this.byId.delete(cached.keyId);
      if (this.byOwner.get(cached.owner) === cached) this.byOwner.delete(cached.owner);
      return undefined;
    }
    // Least recently used goes first: a Map iterates in insertion order.
    this.byId.delete(cached.keyId);
    this.byId.set(cached.keyId, cached);
    return cached;
  }

  private remember(owner: string, key: DataKey, sealing: boolean): void {
    const cached = { ...key, owner, at: Date.now() };
    this.byId.set(key.keyId, cached);
    if (sealing) this.byOwner.set(owner, cached);
    while (this.byId.size > this.capacity) {
      const oldest = this.byId.keys().next().value as string;
      const evicted = this.byId.get(oldest)!;
      this.byId.delete(oldest);
      if (this.byOwner.get(evicted.owner) === evicted) this.byOwner.delete(evicted.owner);
    }
  }

  private rememberUncommitted(db: SqlExecutor, owner: string, key: DataKey): void {
    let keys = uncommitted.get(db);
    if (!keys) uncommitted.set(db, (keys = new Map()));
    keys.set(owner, key);
  }
}

/**
 * `db` whose results have their `content` column (a resource version's JSON) opened: every reader of
 * resources (reads, history, search pages, includes, $everything, reindex) gets clear JSON without
 * knowing about keys, and a page's unknown keys are read in one statement. Content whose key was
 * destroyed comes back NULL, as a deletion's does.
 */
export function openingDatabase(db: Database, keys: DataKeys): Database {
  return {
    driver: db.driver,
    query: openingQuery(db, keys),
    transaction: (work) => db.transaction((tx) => work({ query: openingQuery(tx, keys) })),
    exec: (sql) => db.exec(sql),
    close: () => db.close(),
  };
}

function openingQuery(db: SqlExecutor, keys: DataKeys): SqlExecutor['query'] {
  return async <Row>(sql: string, params?: unknown[], name?: string): Promise<QueryResult<Row>> => {
    const result = await db.query<Row>(sql, params, name).catch((error: unknown) => {
      throw destroyedKeyConflict(error, keys) ?? error;
    });
    const rows = result.rows as Array<Row & { content?: unknown }>;
    if (rows.length === 0 || typeof rows[0] !== 'object' || rows[0] === null || !('content' in rows[0])) return result;
    if (!rows.some((row) => typeof row.content === 'string' && isSealed(row.content))) return result;
    const opened = await keys.openAll(db, rows.map((row) => (typeof row.content === 'string' ? row.content : null)));
    rows.forEach((row, n) => {
      if (typeof row.content === 'string') row.content = opened[n];
    });
    return result;
  };
}

/**
 * A write refused for sealing under a destroyed data key, as the 409 it answers, the key forgotten so that
 * the write, tried again, gets its owner's current key (a new one when the record was erased).
 */
function destroyedKeyConflict(error: unknown, keys: DataKeys): FhirError | undefined {
  if ((error as { code?: unknown } | null)?.code !== DESTROYED_KEY_ERROR) return undefined;
  const keyId = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/.exec(String((error as Error).message))?.[0];
  if (keyId) keys.forgetKey(keyId);
  return new FhirError(409, [{ code: 'conflict', diagnostics: 'The record this was written to was erased meanwhile: nothing was stored; try again' }]);
}

/** The owner whose data key seals a resource, when its content alone tells (a Binary's may need the database). */
export function ownerOf(resource: Resource, recordPatient: string | null): string {
  if (resource.resourceType === 'Patient' && resource.id) return `Patient/${resource.id}`;
  if (recordPatient) return `Patient/${recordPatient}`;
  if (resource.resourceType === 'AuditEvent') {
    // An AuditEvent about one patient is that patient's: erasing the record leaves its trail unreadable. The
    // trail writes one event per patient, its patient the entity of role Patient (object-role 1); an event
    // without one (written otherwise) is the patient's its entities name, when they name one.
    const entities = (resource as AuditEvent).entity ?? [];
    const ofRole = patientsNamed(entities.filter((entity) => entity.role?.system === OBJECT_ROLE && entity.role.code === '1'));
    const patients = ofRole.size > 0 ? ofRole : patientsNamed(entities);
    if (patients.size === 1) return [...patients][0]!;
  }
  return SYSTEM_OWNER;
}

const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';

function patientsNamed(entities: NonNullable<AuditEvent['entity']>): Set<string> {
  return new Set(
    entities
      .map((entity) => entity.what?.reference)
      .filter((reference): reference is string => typeof reference === 'string' && /^Patient\/[A-Za-z0-9\-.]{1,64}$/.test(reference)),
  );
}

const CONTEXT_PATIENT = `SELECT patient_id FROM search_token WHERE resource_type = $1 AND resource_id = $2 AND patient_id IS NOT NULL
  UNION ALL SELECT patient_id FROM search_reference WHERE resource_type = $1 AND resource_id = $2 AND patient_id IS NOT NULL LIMIT 1`;

/**
 * A Binary is its securityContext's (R4 binary.html#security): the patient it names, or the patient whose
 * record holds the resource it names (read from that resource's index rows); otherwise the system's.
 */
export async function binaryOwner(db: SqlExecutor, resource: Resource): Promise<string> {
  const reference = (resource as { securityContext?: { reference?: string } }).securityContext?.reference;
  const match = typeof reference === 'string' ? /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(reference) : null;
  if (!match) return SYSTEM_OWNER;
  if (match[1] === 'Patient') return reference!;
  const { rows } = await db.query<{ patient_id: string }>(CONTEXT_PATIENT, [match[1], match[2]], 'dossier_binary_context_patient');
  return rows[0] ? `Patient/${rows[0].patient_id}` : SYSTEM_OWNER;
}

/** Binary chunk bytes sealed with a data key (binary_chunk.key_id names it): nonce, tag, ciphertext. */
export function sealChunk(key: DataKey, bytes: Buffer): Buffer {
  return sealBytes(key.key, bytes);
}

export function openChunk(key: Buffer, sealed: Buffer): Buffer {
  return openBytes(key, sealed);
}
