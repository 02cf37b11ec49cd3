import { randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { ResourceText } from '../fhir/resource-text.ts';
import { EMPTY_ARRAY, insertNewStatement, indexParams, type IndexWriter, type WrittenRows } from './index-writer.ts';
import type { IndexRows } from '../search/index-rows.ts';
import { binaryData, binaryWriteOf, DEFAULT_BINARY_INLINE_LIMIT, jsonWithData, readBinaryContent, writeBinaryContent, type BinaryContent, type BinaryWrite } from './binary-store.ts';
import { FEED_HORIZON, formatPosition, parsePosition, type FeedPosition } from './change-feed.ts';
import { joinTransaction, type Database, type SqlExecutor } from './database.ts';
import { preparedName } from './prepared-name.ts';
import { Binder, type ScopePredicate } from '../search/sql-fragments.ts';
import { recordPatientOf } from '../search/compartment.ts';
import { binaryOwner, ownerOf, type DataKeys } from './encryption.ts';

/** Writes first versions some other way than one statement each: shared between requests, or held back to the commit. */
export interface CreateWriter {
  write(created: NewResource): Promise<void>;
}

/** One stored version of a resource: its JSON text as stored, parsed only when someone needs the object. */
export class StoredResource extends ResourceText {
  constructor(
    resourceType: string,
    id: string,
    readonly versionId: number,
    readonly lastUpdated: string,
    json: string,
    parsed?: Resource,
  ) {
    super(resourceType, id, json, parsed);
  }
}

/** A stored Binary (its JSON without `data`) with its bytes, to stream rather than to hold. */
export class StoredBinary extends StoredResource {
  constructor(
    stored: StoredResource,
    readonly content: BinaryContent,
  ) {
    super(stored.resourceType, stored.id, stored.versionId, stored.lastUpdated, stored.json);
  }

  /** As FHIR JSON, a stored Binary has its bytes as `data`, streamed from the store. */
  override dataBytes(): AsyncIterable<Uint8Array> | undefined {
    return this.content.inline ? undefined : this.content.chunks();
  }
}

export type WriteMethod = 'POST' | 'PUT' | 'DELETE' | 'PATCH';

export interface HistoryEntry {
  /** Where this version stands in the change feed (change-feed.ts). */
  position: FeedPosition;
  resourceType: string;
  id: string;
  versionId: number;
  lastUpdated: string;
  method: WriteMethod;
  /** Absent when this version is a deletion. */
  resource?: StoredResource;
}

export interface HistoryQuery {
  resourceType?: string;
  id?: string;
  /** Only versions stamped (meta.lastUpdated) at or after this instant. */
  since?: string;
  /** Only versions before the page that gave this cursor (its `nextBefore`); one this store did not issue is a 400. */
  before?: string;
  count: number;
}

export interface HistoryPage {
  entries: HistoryEntry[];
  total: number;
  /** Cursor for the next (older) page, when there is one. */
  nextBefore?: string;
}

export interface UpdateResult {
  resource: StoredResource;
  created: boolean;
}

/** A resource whose current version references a resource (ResourceStore.referrers). */
export interface Referrer {
  /** `Type/id` of the referencing resource. */
  source: string;
  /** `Type/id` it references. */
  target: string;
  /** The search parameter of the reference (`subject`, `patient`…). */
  param: string;
  /** Whether the store's access sees the referencing resource. */
  visible: boolean;
}

export interface DeleteResult {
  /** The version the deletion created; absent when there was nothing to delete. */
  versionId?: number;
}

export interface WriteOptions {
  /** Version the caller expects to be current (from `If-Match`); a mismatch fails with 412. */
  ifMatch?: number;
  /** The server's own base URL as the writer reached it: references below it are indexed as local ones. */
  baseUrl?: string;
  /** The SMART client writing (its `client_id`): a labelled resource remembers which one sent it (consent-rows.ts). */
  clientId?: string;
  /**
   * A create's search index rows when its writer built them (the server's own AuditEvents,
   * security/audit-index-rows.ts): written as they are instead of extracted again. They must be the rows
   * extraction gives, or searches and a reindex would disagree.
   */
  indexRows?: IndexRows;
}

/** A read by type and id: its text, the name it is prepared under, and the values bound after $1 and $2. */
interface ReadStatement {
  sql: string;
  name: string;
  scopeParams: readonly unknown[];
}

/** Index rows read per referrer asked for: a resource references one target under a few parameters at most. */
const REFERRER_ROWS_PER_RESOURCE = 4;

const LAST_UPDATED_TEXT = `to_char(last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * The resource store over the one SQL schema, on either driver. Each write is one transaction that locks
 * the resource's current row, so concurrent writers to one resource queue up and never lose a version.
 */
export class Repository {
  constructor(
    private readonly db: Database,
    /** Keeps the search index in step with each write, in the write's own transaction. */
    private readonly index?: IndexWriter,
    /**
     * How creates are written, when not one statement each: a CreateCoalescer shares statements between
     * concurrent requests (on a Database that is not a transaction); a BufferedTransaction holds them back.
     */
    private readonly creates?: CreateWriter,
    /** The largest Binary a read gives with its `data` put together (a larger one is 406; HTTP streams it instead). */
    private readonly binaryInlineLimit = DEFAULT_BINARY_INLINE_LIMIT,
    /**
     * The caller's access (accessScope) on every row read. A resource it hides answers 404 as if it were
     * unknown, never 403: a refusal would tell the caller that it exists.
     */
    private readonly scope?: ScopePredicate,
    /** Seals what is written (encryption.ts); reads get clear content from the database itself (openingDatabase). */
    private readonly keys?: DataKeys,
  ) {}

  /**
   * Creates a resource under a new server id (or `id`, chosen by a transaction that needed it first).
   * Through `creates` the write may wait, to go out with other creates in one statement.
   */
  async create(resource: Resource, id: string = randomUUID(), options: Pick<WriteOptions, 'baseUrl' | 'clientId' | 'indexRows'> = {}): Promise<StoredResource> {
    const binary = binaryWriteOf(resource);
    if (binary) return this.createBinary(binary, id, options);
    // Creates shared between requests run outside any transaction: a key they create commits at once.
    const autocommit = this.creates !== undefined && !(this.creates instanceof BufferedTransaction);
    const created = await this.firstVersion(resource, id, options, autocommit);
    if (this.creates) await this.creates.write(created);
    else await insertNew(this.db, [created]);
    return created.stored;
  }

  /**
   * Version 1 of a resource (not a Binary) as insertNew writes it: stamped, with its index rows, its text
   * sealed. `autocommit`: the caller writes it outside any transaction (a data key created commits at once).
   */
  async firstVersion(resource: Resource, id: string, options: Pick<WriteOptions, 'baseUrl' | 'clientId' | 'indexRows'>, autocommit: boolean): Promise<NewResource> {
    const stamped = stamp(resource, id, 1);
    const rows = this.index?.rowsOf(stamped.resource, rowOptions(options));
    // The answer keeps the text only: the object, which shares its parts with the request's body, can go.
    const stored = new StoredResource(stamped.resourceType, id, 1, stamped.lastUpdated, stamped.json);
    const sealed = await this.seal(this.db, stamped, rows, autocommit);
    return { stored, ...(rows ? { rows } : {}), ...(sealed !== stamped.json ? { sealed } : {}) };
  }

  async read(resourceType: string, id: string): Promise<StoredResource> {
    return this.withBinaryData(await this.readStored(resourceType, id));
  }

  /**
   * The current version, its row locked until the transaction ends: a read-modify-write (PATCH) in that
   * transaction writes its change on the version it read, while concurrent writers of the resource wait.
   */
  async readForUpdate(resourceType: string, id: string): Promise<StoredResource> {
    return this.withBinaryData(await this.readStored(resourceType, id, true));
  }

  /** The current version as stored: a Binary without its bytes. */
  private async readStored(resourceType: string, id: string, forUpdate = false): Promise<StoredResource> {
    const { sql, name, scopeParams } = this.readStatement(resourceType, forUpdate);
    const { rows } = await this.db.query<{ version_id: number; last_updated: string; deleted: boolean; content: string | null }>(sql, [resourceType, id, ...scopeParams], name);
    const row = rows[0];
    if (!row) throw FhirError.notFound(`${resourceType}/${id} is not known`);
    if (row.deleted || row.content === null) {
      if (!row.deleted) throw FhirError.gone(`${resourceType}/${id} belongs to an erased record`, { etag: `W/"${row.version_id}"` });
      throw FhirError.gone(`${resourceType}/${id} was deleted`, { etag: `W/"${row.version_id}"` });
    }
    return new StoredResource(resourceType, id, row.version_id, row.last_updated, row.content);
  }

  /**
   * The statement reading a resource of `resourceType` by its type and id ($1, $2), and the values its access
   * condition binds after them: the same for every read of the type through this repository (its scope is
   * one caller's, and a token's view of the store serves all its requests), so built once per type.
   */
  private readStatement(resourceType: string, forUpdate: boolean): ReadStatement {
    const key = forUpdate ? `${resourceType} for update` : resourceType;
    let statement = this.readStatements.get(key);
    if (!statement) {
      const binder = new Binder();
      binder.bind(resourceType);
      binder.bind('');
      const scoped = this.scope?.('r', [resourceType], binder);
      const sql = `SELECT version_id, ${LAST_UPDATED_TEXT} AS last_updated, deleted, content FROM resource${scoped ? ` r` : ''} WHERE resource_type = $1 AND id = $2${scoped ? ` AND ${scoped}` : ''}${forUpdate ? ' FOR NO KEY UPDATE' : ''}`;
      // A prepared statement's name stands for one text: a scoped read is named by its own.
      statement = { sql, name: scoped ? preparedName(sql) : forUpdate ? 'dossier_read_for_update' : 'dossier_read', scopeParams: binder.params.slice(2) };
      this.readStatements.set(key, statement);
    }
    return statement;
  }

  private readonly readStatements = new Map<string, ReadStatement>();

  /**
   * The live resources `references` (`Type/id`) name that the scope lets through, as stored (a Binary without
   * its bytes), in (type, id) order: one statement for them all. Unknown, deleted, erased and hidden ones are
   * left out, as a search by `_id` would leave them.
   */
  async readMany(references: readonly string[]): Promise<ResourceText[]> {
    const { types, ids } = splitReferences(references);
    if (types.length === 0) return [];
    const binder = new Binder();
    const pairs = `SELECT * FROM unnest(${binder.bind(types, 'text[]')}, ${binder.bind(ids, 'text[]')})`;
    const scoped = this.scope?.('r', [...new Set(types)].sort(), binder);
    const sql = `SELECT r.resource_type, r.id, r.content FROM resource r WHERE (r.resource_type, r.id) IN (${pairs}) AND NOT r.deleted AND r.content IS NOT NULL${scoped ? ` AND ${scoped}` : ''} ORDER BY r.resource_type, r.id`;
    // The text changes with the types only through the access condition: prepared once per text, as a read is.
    const { rows } = await this.db.query<{ resource_type: string; id: string; content: string }>(sql, binder.params, scoped ? preparedName(sql) : 'dossier_read_many');
    return rows.map((row) => new ResourceText(row.resource_type, row.id, row.content));
  }

  /**
   * Refuses, as unknown (404), a write to a resource that exists (deleted or not) but that the scope hides:
   * an update would otherwise overwrite, and move into the caller's view, what the caller may not see.
   */
  async assertNotHidden(resourceType: string, id: string): Promise<void> {
    const binder = new Binder();
    binder.bind(resourceType);
    binder.bind(id);
    const scoped = this.scope?.('r', [resourceType], binder);
    if (!scoped) return;
    const { rows } = await this.db.query<{ seen: boolean }>(`SELECT (${scoped}) AS seen FROM resource r WHERE resource_type = $1 AND id = $2`, binder.params);
    if (rows[0] && rows[0].seen !== true) throw FhirError.notFound(`${resourceType}/${id} is not known`);
  }

  /**
   * Of `references` (`Type/id`), those naming a live resource the scope lets through: one statement for them
   * all. `lock` takes a key-share lock on each live one until the transaction ends: a delete, which locks
   * its row FOR UPDATE, waits for the transaction (then sees its index rows), and this statement, waiting on
   * a delete, re-reads the row and finds it deleted. Updates lock with FOR NO KEY UPDATE, which a key-share
   * lock does not block: naming a resource does not hold up its updates.
   */
  async existing(references: readonly string[], lock = false): Promise<Set<string>> {
    const { types, ids } = splitReferences(references);
    if (types.length === 0) return new Set();
    const binder = new Binder();
    const pairs = `SELECT * FROM unnest(${binder.bind(types, 'text[]')}, ${binder.bind(ids, 'text[]')})`;
    const scoped = this.scope?.('r', [...new Set(types)], binder);
    const { rows } = await this.db.query<{ resource_type: string; id: string }>(
      `SELECT r.resource_type, r.id FROM resource r WHERE (r.resource_type, r.id) IN (${pairs}) AND NOT r.deleted${scoped ? ` AND ${scoped}` : ''}${lock ? ' FOR KEY SHARE OF r' : ''}`,
      binder.params,
      scoped ? undefined : lock ? 'dossier_existing_locked' : 'dossier_existing',
    );
    return new Set(rows.map((row) => `${row.resource_type}/${row.id}`));
  }

  /**
   * Resources whose indexed references name one of `targets`, from the reference index (its rows are the
   * current versions' only: a deletion removes them), at most `limit`, each with whether the scope sees it.
   */
  async referrers(targets: readonly string[], limit: number, ignoredTypes: readonly string[] = []): Promise<Referrer[]> {
    const wanted = [...new Set(targets)];
    if (wanted.length === 0 || limit <= 0) return [];
    const binder = new Binder();
    const types = binder.bind(wanted.map((target) => target.slice(0, target.indexOf('/'))), 'text[]');
    const ids = binder.bind(wanted.map((target) => target.slice(target.indexOf('/') + 1)), 'text[]');
    const scoped = this.scope?.('r', [], binder);
    // Index rows, not resources: a resource may reference a target under several parameters (a document's
    // `subject` and `patient`). Read without sorting or grouping, so that a patient referenced by a million
    // observations costs a few index entries, and made distinct here.
    const { rows } = await this.db.query<{ resource_type: string; resource_id: string; target_type: string; target_id: string; param: string; visible: boolean }>(
      `SELECT s.resource_type, s.resource_id, s.target_type, s.target_id, s.param, ${scoped ?? 'true'} AS visible
         FROM search_reference s${scoped ? ' JOIN resource r ON r.resource_type = s.resource_type AND r.id = s.resource_id' : ''}
        WHERE (s.target_type, s.target_id) IN (SELECT * FROM unnest(${types}, ${ids}))${ignoredTypes.length > 0 ? ` AND s.resource_type <> ALL(${binder.bind([...ignoredTypes], 'text[]')})` : ''}
        LIMIT ${binder.bind(limit * REFERRER_ROWS_PER_RESOURCE)}`,
      binder.params,
    );
    const referrers = new Map<string, Referrer>();
    for (const row of rows) {
      const source = `${row.resource_type}/${row.resource_id}`;
      const target = `${row.target_type}/${row.target_id}`;
      if (!referrers.has(`${source} ${target}`)) referrers.set(`${source} ${target}`, { source, target, param: row.param, visible: row.visible });
    }
    return [...referrers.values()].slice(0, limit);
  }

  async vread(resourceType: string, id: string, versionId: number): Promise<StoredResource> {
    return this.withBinaryData(await this.vreadStored(resourceType, id, versionId));
  }

  /** A version as stored: a Binary without its bytes. */
  private async vreadStored(resourceType: string, id: string, versionId: number): Promise<StoredResource> {
    const binder = new Binder();
    for (const value of [resourceType, id, versionId]) binder.bind(value);
    // The version is judged as it was (its own compartments and label), not as the resource is now.
    const scoped = this.scope?.('h', [resourceType], binder, true);
    const sql = `SELECT ${LAST_UPDATED_TEXT} AS last_updated, content FROM resource_history${scoped ? ` h` : ''}
        WHERE resource_type = $1 AND id = $2 AND version_id = $3${scoped ? ` AND ${scoped}` : ''}`;
    const { rows } = await this.db.query<{ last_updated: string; content: string | null }>(sql, binder.params, scoped ? preparedName(sql) : 'dossier_vread');
    const row = rows[0];
    if (!row) throw FhirError.notFound(`${resourceType}/${id}/_history/${versionId} is not known`);
    if (row.content === null) throw FhirError.gone(`${resourceType}/${id}/_history/${versionId} is a deletion`);
    return new StoredResource(resourceType, id, versionId, row.last_updated, row.content);
  }

  /** Update, or create with the client's id when the resource does not exist (or was deleted). */
  async update(resource: Resource & { id: string }, options: WriteOptions = {}): Promise<UpdateResult> {
    const binary = binaryWriteOf(resource);
    if (binary) return this.updateBinary(binary, resource.id, options);
    return this.db.transaction(async (tx) => {
      const { resourceType, id } = resource;
      let current = await lockCurrent(tx, resourceType, id);
      if (!current && options.ifMatch === undefined) {
        const stored = stamp(resource, id, 1);
        const rows = this.index?.rowsOf(stored.resource, rowOptions(options));
        const sealed = await this.seal(tx, stored, rows, false);
        const inserted = await tx.query(
          `INSERT INTO resource (resource_type, id, version_id, last_updated, content) VALUES ($1, $2, 1, $3, $4)
           ON CONFLICT (resource_type, id) DO NOTHING`,
          [resourceType, id, stored.lastUpdated, sealed],
        );
        if (inserted.rowCount === 1) {
          await insertHistory(tx, stored, 'PUT', sealed);
          await this.index?.replace(tx, resourceType, id, rows);
          return { resource: stored, created: true };
        }
        // A concurrent writer created it between our lock attempt and our insert: update its version instead.
        current = await lockCurrent(tx, resourceType, id);
      }
      if (options.ifMatch !== undefined && (!current || current.deleted || current.version_id !== options.ifMatch)) {
        throw preconditionFailed(resourceType, id, options.ifMatch, current);
      }
      if (!current) throw new Error(`${resourceType}/${id} vanished while locked`);
      const stored = stamp(resource, id, current.version_id + 1);
      const rows = this.index?.rowsOf(stored.resource, rowOptions(options));
      const sealed = await this.seal(tx, stored, rows, false);
      await tx.query(
        `UPDATE resource SET version_id = $3, last_updated = $4, deleted = false, content = $5
          WHERE resource_type = $1 AND id = $2`,
        [resourceType, id, stored.versionId, stored.lastUpdated, sealed],
      );
      await insertHistory(tx, stored, 'PUT', sealed);
      await this.index?.replace(tx, resourceType, id, rows);
      return { resource: stored, created: current.deleted };
    });
  }

  async delete(resourceType: string, id: string, options: WriteOptions = {}): Promise<DeleteResult> {
    return this.db.transaction(async (tx) => {
      const current = await lockCurrent(tx, resourceType, id, true);
      const live = current && !current.deleted ? current : undefined;
      if (options.ifMatch !== undefined && live?.version_id !== options.ifMatch) {
        throw preconditionFailed(resourceType, id, options.ifMatch, current);
      }
      if (!live) return {};
      const versionId = live.version_id + 1;
      const lastUpdated = new Date().toISOString();
      await tx.query(
        `UPDATE resource SET version_id = $3, last_updated = $4, deleted = true, content = NULL
          WHERE resource_type = $1 AND id = $2`,
        [resourceType, id, versionId, lastUpdated],
      );
      await tx.query(
        `INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content)
         VALUES ($1, $2, $3, $4, 'DELETE', NULL)`,
        [resourceType, id, versionId, lastUpdated],
      );
      await this.index?.replace(tx, resourceType, id, undefined);
      return { versionId };
    });
  }

  /**
   * Versions newest first. A type or the whole system is listed in change-feed order (change-feed.ts) and
   * only as far as the feed's horizon: a page never shows a write while one that began writing before it is
   * still in flight, and every version below a page's last one was final when that page was read, so
   * following `next` links neither skips nor repeats a version however many writes commit meanwhile. The
   * price: a write shows there once the transactions that began writing before it have ended.
   * One resource is listed by versionId, all committed versions at once: its writers queue on its row lock,
   * so its versions commit in versionId order and a later page cannot miss one.
   */
  async history(query: HistoryQuery): Promise<HistoryPage> {
    const instance = query.id !== undefined;
    const conditions: string[] = instance ? [] : [`xid < ${FEED_HORIZON}`];
    const binder = new Binder();
    const params = binder.params;
    const bind = (value: unknown) => binder.bind(value);
    if (query.resourceType) conditions.push(`resource_type = ${bind(query.resourceType)}`);
    if (query.id) conditions.push(`id = ${bind(query.id)}`);
    if (query.since) conditions.push(`last_updated >= ${bind(query.since)}`);
    // Hidden versions are neither listed nor counted; `h` names the history row, each judged as its version was.
    const scoped = this.scope?.('h', query.resourceType ? [query.resourceType] : [], binder, true);
    if (scoped) conditions.push(scoped);
    const from = scoped ? 'resource_history h' : 'resource_history';
    const where = (all: string[]) => (all.length ? `WHERE ${all.join(' AND ')}` : '');
    const totalRows = await this.db.query<{ total: number }>(`SELECT count(*)::int AS total FROM ${from} ${where(conditions)}`, params);

    const pageConditions = [...conditions];
    if (query.before !== undefined) {
      // One resource pages by versionId, anything wider by place in the change feed.
      const before = instance ? (/^[1-9]\d{0,8}$/.test(query.before) ? Number(query.before) : undefined) : parsePosition(query.before);
      if (before === undefined) throw FhirError.badRequest(`Invalid _cursor '${query.before}'`, ['_cursor']);
      if (typeof before === 'number') pageConditions.push(`version_id < ${bind(before)}`);
      else pageConditions.push(`(xid, seq) < (${bind(before.xid)}::xid8, ${bind(before.seq)}::bigint)`);
    }
    // One row more than asked tells whether a next page exists without counting.
    const { rows } = await this.db.query<{
      xid: string;
      seq: string;
      resource_type: string;
      id: string;
      version_id: number;
      last_updated: string;
      method: WriteMethod;
      content: string | null;
    }>(
      `SELECT xid::text AS xid, seq::text AS seq, resource_type, id, version_id, ${LAST_UPDATED_TEXT} AS last_updated, method, content
         FROM ${from} ${where(pageConditions)}
        ORDER BY ${instance ? 'version_id DESC' : 'xid DESC, seq DESC'} LIMIT ${bind(query.count + 1)}`,
      params,
    );
    const page = rows.slice(0, query.count);
    const entries = page.map((row) => ({
      position: { xid: row.xid, seq: row.seq },
      resourceType: row.resource_type,
      id: row.id,
      versionId: row.version_id,
      lastUpdated: row.last_updated,
      method: row.method,
      ...(row.content === null
        ? {}
        : { resource: new StoredResource(row.resource_type, row.id, row.version_id, row.last_updated, row.content) }),
    }));
    const last = entries[entries.length - 1];
    return {
      entries,
      total: totalRows.rows[0]?.total ?? 0,
      ...(rows.length > query.count && last ? { nextBefore: instance ? String(last.versionId) : formatPosition(last.position) } : {}),
    };
  }

  /**
   * A Binary as stored (without `data`) with its bytes to stream: for a raw download, which sends them
   * chunk by chunk, and for attachment checks, which need only their size and SHA-1.
   */
  async readBinary(id: string, versionId?: number): Promise<StoredBinary> {
    const stored = versionId === undefined ? await this.readStored('Binary', id) : await this.vreadStored('Binary', id, versionId);
    return new StoredBinary(stored, await readBinaryContent(this.db, id, stored.versionId, stored.json, this.keys));
  }

  /** A Binary's bytes go out of line, tied to its version in the transaction that writes it. */
  private async createBinary(binary: BinaryWrite, id: string, options: Pick<WriteOptions, 'baseUrl' | 'clientId'>): Promise<StoredResource> {
    return this.db.transaction(async (tx) => {
      const stored = await this.joining(tx).create(binary.resource, id, options);
      await writeBinaryContent(tx, id, stored.versionId, binary.content, await this.chunkKey(tx, binary.resource));
      return withData(stored, binary.data);
    });
  }

  private async updateBinary(binary: BinaryWrite, id: string, options: WriteOptions): Promise<UpdateResult> {
    return this.db.transaction(async (tx) => {
      const result = await this.joining(tx).update({ ...binary.resource, id }, options);
      await writeBinaryContent(tx, id, result.resource.versionId, binary.content, await this.chunkKey(tx, binary.resource));
      return { ...result, resource: withData(result.resource, binary.data) };
    });
  }

  /**
   * This repository inside transaction `tx`: its writes join it instead of opening their own. A
   * repository already in a transaction (whose `transaction` runs work on itself) is that repository.
   */
  private joining(tx: SqlExecutor): Repository {
    if (tx === this.db) return this;
    return new Repository(joinTransaction(tx, this.db.driver), this.index, undefined, this.binaryInlineLimit, this.scope, this.keys);
  }

  /** A Binary read as a resource has its bytes back as base64 `data`. */
  private async withBinaryData(stored: StoredResource): Promise<StoredResource> {
    if (stored.resourceType !== 'Binary') return stored;
    return withData(stored, await binaryData(this.db, stored.id, stored.versionId, this.binaryInlineLimit, this.keys));
  }

  /**
   * The text stored for a version: its JSON sealed with its owner's data key (encryption.ts), or as it is
   * without encryption. `autocommit`: `db` runs each statement on its own (a key it creates is committed).
   */
  private async seal(db: SqlExecutor, stored: StoredResource, rows: WrittenRows | undefined, autocommit: boolean): Promise<string> {
    if (!this.keys) return stored.json;
    const resource = stored.resource;
    const owner = resource.resourceType === 'Binary'
      ? await binaryOwner(db, resource)
      : ownerOf(resource, rows ? recordPatientOf(stored.resourceType, stored.id, rows.reference) : null);
    return this.keys.seal(await this.keys.keyFor(db, owner, autocommit), stored.json);
  }

  /** The data key a Binary's bytes are sealed with, when the store encrypts. */
  private async chunkKey(tx: SqlExecutor, resource: Resource) {
    return this.keys ? this.keys.keyFor(tx, await binaryOwner(tx, resource)) : undefined;
  }

  /** Liveness of the storage: resolves when a query round-trips. */
  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }
}

/** A first version about to be written: its stored form and, when the store is indexed, its index rows. */
export interface NewResource {
  stored: StoredResource;
  rows?: WrittenRows;
  /** The text stored, when not the JSON itself: sealed with its owner's data key. */
  sealed?: string;
}

function rowOptions(options: Pick<WriteOptions, 'baseUrl' | 'clientId' | 'indexRows'>): { baseUrl?: string; clientId?: string; indexRows?: IndexRows } {
  return {
    ...(options.baseUrl !== undefined ? { baseUrl: options.baseUrl } : {}),
    ...(options.clientId !== undefined ? { clientId: options.clientId } : {}),
    ...(options.indexRows !== undefined ? { indexRows: options.indexRows } : {}),
  };
}

/**
 * Writes first versions (current row, history row, index rows) in one statement: one round trip, and
 * atomic without BEGIN/COMMIT. History rows keep the order of `created`.
 */
export async function insertNew(db: SqlExecutor, created: NewResource[]): Promise<void> {
  const resources = JSON.stringify(created.map(({ stored, sealed }) => [stored.resourceType, stored.id, stored.lastUpdated, sealed ?? stored.json]));
  const indexed = created.flatMap(({ stored, rows }) => (rows ? [{ resourceType: stored.resourceType, id: stored.id, rows }] : []));
  const arrays = indexParams(indexed);
  const statement = insertNewStatement(arrays.map((array) => array !== EMPTY_ARRAY));
  await db.query(statement.sql, [resources, ...arrays.filter((_, k) => statement.bound[k])], statement.name);
}

/**
 * Most JSON text of held-back creates written in one statement. A 60 MB transaction Bundle was one
 * statement of 60 MB of parameters, serialised again by the driver: 4 MB statements cost a few more
 * round trips and hold a fifteenth of it.
 */
export const MAX_BUFFERED_JSON = 4 * 1024 * 1024;

/**
 * A transaction's view of the database in which creates are held back and written together, in one
 * statement, just before the next query runs (so whatever reads next sees them), once they hold
 * MAX_BUFFERED_JSON of text, or when `flush` is called before commit. A transaction bundle of fifty
 * creates costs one round trip instead of fifty.
 */
export class BufferedTransaction implements Database, CreateWriter {
  private pending: NewResource[] = [];
  private pendingJson = 0;

  constructor(
    private readonly tx: SqlExecutor,
    readonly driver: Database['driver'],
  ) {}

  async write(created: NewResource): Promise<void> {
    this.pending.push(created);
    this.pendingJson += created.stored.json.length;
    if (this.pendingJson >= MAX_BUFFERED_JSON) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const created = this.pending;
    this.pending = [];
    this.pendingJson = 0;
    await insertNew(this.tx, created);
  }

  async query<Row>(sql: string, params?: unknown[], name?: string) {
    await this.flush();
    return this.tx.query<Row>(sql, params, name);
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return work(this);
  }

  async exec(): Promise<void> {
    throw new Error('exec is not available inside a transaction');
  }

  async close(): Promise<void> {}
}

interface CurrentRow {
  version_id: number;
  deleted: boolean;
}

/**
 * Locks the current row of a resource until the transaction ends; concurrent writers of it wait here. An
 * update takes FOR NO KEY UPDATE, which the key-share locks of writes naming the resource (`existing` with
 * lock) do not wait for; a deletion takes FOR UPDATE, which waits for them (referential integrity).
 */
async function lockCurrent(tx: SqlExecutor, resourceType: string, id: string, forDeletion = false): Promise<CurrentRow | undefined> {
  const { rows } = await tx.query<CurrentRow>(
    `SELECT version_id, deleted FROM resource WHERE resource_type = $1 AND id = $2 ${forDeletion ? 'FOR UPDATE' : 'FOR NO KEY UPDATE'}`,
    [resourceType, id],
  );
  return rows[0];
}

function withData(stored: StoredResource, data: string | undefined): StoredResource {
  if (data === undefined) return stored;
  return new StoredResource(stored.resourceType, stored.id, stored.versionId, stored.lastUpdated, jsonWithData(stored.json, data));
}

/** Sets the server-owned parts of a resource (id, meta.versionId, meta.lastUpdated) and serialises it. */
function stamp(resource: Resource, id: string, versionId: number): StoredResource {
  const lastUpdated = new Date().toISOString();
  const { resourceType, id: _clientId, meta, ...rest } = resource;
  const stamped = { resourceType, id, meta: { ...meta, versionId: String(versionId), lastUpdated }, ...rest } as Resource;
  return new StoredResource(resourceType, id, versionId, lastUpdated, JSON.stringify(stamped), stamped);
}

function preconditionFailed(resourceType: string, id: string, expected: number, current?: CurrentRow): FhirError {
  const actual = current && !current.deleted ? `W/"${current.version_id}"` : 'none, the resource does not exist';
  return FhirError.preconditionFailed(
    `If-Match W/"${expected}" does not match the current version of ${resourceType}/${id} (${actual})`,
  );
}

async function insertHistory(tx: SqlExecutor, stored: StoredResource, method: WriteMethod, content: string): Promise<void> {
  await tx.query(
    `INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [stored.resourceType, stored.id, stored.versionId, stored.lastUpdated, method, content],
  );
}

/** Distinct `Type/id` references as the two arrays a statement unnests, in the same order. */
function splitReferences(references: readonly string[]): { types: string[]; ids: string[] } {
  const types: string[] = [];
  const ids: string[] = [];
  for (const reference of new Set(references)) {
    const slash = reference.indexOf('/');
    types.push(reference.slice(0, slash));
    ids.push(reference.slice(slash + 1));
  }
  return { types, ids };
}
