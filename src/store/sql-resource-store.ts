import { randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import type { ResourceText, ResponseBundle } from '../fhir/resource-text.ts';
import { withHashedIdentifiers } from '../search/identifier-hash.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import type { SearchRequest } from '../search/types.ts';
import type { IndexRows } from '../search/index-rows.ts';
import type { ScopePredicate } from '../search/sql-fragments.ts';
import { ALL_ACCESS, restrictsReads, type AccessContext } from './access.ts';
import { accessScope } from './access-scope.ts';
import { CallerCache, changesIdentities } from './caller-identities.ts';
import { withBinaryData } from './binary-data.ts';
import { DEFAULT_BINARY_INLINE_LIMIT, discardUnclaimedContent, stageStreamedBytes, sweepStaleUploads } from './binary-store.ts';
import { readChanges, type ChangePage } from './change-feed.ts';
import { AuditLog, drainAll, namesAuditEvents, searchReadsAuditEvents, type StoreLog } from './audit-log.ts';
import { CreateCoalescer } from './create-coalescer.ts';
import type { Database } from './database.ts';
import { openingDatabase, type DataKeys } from './encryption.ts';
import { eraseRecord, type ErasedRecord } from './erase.ts';
import { prepareIndexKey } from './index-key.ts';
import { StartupRefused } from '../startup.ts';
import { SearchIndexWriter, type IndexWriter } from './index-writer.ts';
import { authorizationStore, type AuthorizationStore } from './authorization.ts';
import { issuerKeys, type IssuerKey } from './issuer-keys.ts';
import { migrate } from './migrate.ts';
import { BufferedTransaction, Repository, type DeleteResult, type Referrer, type HistoryPage, type HistoryQuery, type StoredBinary, type StoredResource, type UpdateResult, type WriteOptions } from './repository.ts';
import type { MatchCriteria, ResourceStore, SearchContext, ServerStore, StagedBinary, StoreSettings } from './resource-store.ts';
import { readRecordPage, recordPatients, type RecordPage, type RecordQuery } from './patient-record.ts';
import { planSearch, readPage, SearchEngine } from './search-executor.ts';

const AUDIT_EVENT = 'AuditEvent';

/** Background failures of a store opened without a log. */
const STDERR_LOG: StoreLog = {
  warn: (details, message) => console.warn(message, details),
  error: (details, message) => console.error(message, details),
};

export interface SqlStoreSettings {
  registry: SearchParameterRegistry;
  /** Keeps the search index in step with each write, in the write's own transaction. */
  indexWriter?: IndexWriter;
  /** The largest Binary a read gives with its `data` put together (a larger one is 406; HTTP streams it instead). */
  binaryInlineLimit?: number;
  /** Encryption at rest (encryption.ts): content and Binary bytes sealed with data keys; none, stored in clear. */
  dataKeys?: DataKeys;
  /** Where background failures are reported (a drain of the audit log); written to stderr without one. */
  log?: StoreLog;
}

/** The settings a server opens its store with, as the SQL store takes them; `dataKeys` when it encrypts (its index hashes identifiers). */
export function sqlStoreSettings(settings: StoreSettings, dataKeys?: DataKeys): SqlStoreSettings {
  return {
    registry: settings.registry,
    indexWriter: new SearchIndexWriter(settings.registry, settings.maxIndexRows, dataKeys?.hashIdentifier),
    binaryInlineLimit: settings.binaryInlineLimit,
    ...(dataKeys ? { dataKeys } : {}),
    ...(settings.log ? { log: settings.log } : {}),
  };
}

/**
 * The ResourceStore over the one SQL schema, on either driver (PGlite, PostgreSQL). Plain creates from
 * concurrent requests share statements (CreateCoalescer); inside a unit of work creates are held back
 * and written together just before the next statement or the commit (BufferedTransaction). The AuditEvents
 * of interactions outside a unit go to the audit log (audit-log.ts), drained into the resource tables before
 * any read that could return or count one.
 */
export class SqlResourceStore implements ServerStore {
  private readonly repo: Repository;
  private readonly engine: SearchEngine;
  /** The caller's access as a condition on every row read; undefined for all access. */
  private readonly scope: ScopePredicate | undefined;

  private constructor(
    private readonly db: Database,
    private readonly settings: SqlStoreSettings,
    /** The open unit of work this store runs in, when it does. */
    private readonly unit?: BufferedTransaction,
    private readonly access: AccessContext = ALL_ACCESS,
    /** The store's statement-sharing creates, which every caller's view of the store shares. */
    private readonly coalescer: CreateCoalescer | undefined = unit ? undefined : new CreateCoalescer(db),
    /** Callers' identities resolved lately, which every view of the store shares. */
    private readonly callers: CallerCache = new CallerCache(),
    /**
     * The views outside a unit, by access context: a token's context (cached with the token, smart-auth.ts)
     * comes back with each of its requests, whose view then need not build its access condition again.
     */
    private readonly views: WeakMap<AccessContext, SqlResourceStore> = new WeakMap(),
    /** The AuditEvents appended but not yet drained, which every view of the store shares. */
    private readonly auditLog: AuditLog = new AuditLog(db, settings.log ?? STDERR_LOG),
  ) {
    const binaryInlineLimit = settings.binaryInlineLimit ?? DEFAULT_BINARY_INLINE_LIMIT;
    this.scope = accessScope(access, settings.registry, settings.dataKeys?.hashIdentifier);
    // Creates outside transactions share statements under load; a unit's creates are its own.
    this.repo = new Repository(db, settings.indexWriter, unit ?? coalescer, binaryInlineLimit, this.scope, settings.dataKeys);
    this.engine = new SearchEngine(db, settings.registry, this.scope);
  }

  static over(db: Database, settings: SqlStoreSettings): SqlResourceStore {
    // Every statement's `content` column comes back opened: the readers of resources never see a sealed one.
    return new SqlResourceStore(settings.dataKeys ? openingDatabase(db, settings.dataKeys) : db, settings);
  }

  /**
   * Brings the schema up to date (migrations), loads the search index key of an encrypting store
   * (index-key.ts), and drains the AuditEvents a stopped process left in the audit log. A store once run with
   * encryption at rest is refused without it: its index holds identifiers as keyed hashes, which searches in
   * clear would never find, and its content is sealed.
   */
  async migrate(): Promise<void> {
    await migrate(this.db);
    if (this.settings.dataKeys) await prepareIndexKey(this.db, this.settings.dataKeys, this.settings.registry);
    else if ((await this.db.query('SELECT 1 FROM data_key LIMIT 1')).rows.length > 0) {
      throw new StartupRefused('This store was written with encryption at rest (sealed content, identifiers indexed as keyed hashes): start it with FHIR_ENCRYPTION=on and its master key');
    }
    await this.auditLog.drain();
  }

  /** Stops draining the audit log in the background (the storage closes it before its database). */
  close(): Promise<void> {
    return this.auditLog.close();
  }

  /**
   * Before a read that could return or count AuditEvents (`reads` true): every event appended before is
   * drained into the resource tables. Inside a unit, in its transaction.
   */
  private async auditEventsRead(reads: boolean): Promise<void> {
    if (reads) await this.auditLog.barrier(this.unit);
  }

  /** `request` as the index is searched: identifiers hashed when the store hashes them (search/identifier-hash.ts). */
  private indexed(request: SearchRequest): SearchRequest {
    return this.settings.dataKeys ? withHashedIdentifiers(request, this.settings.dataKeys.hashIdentifier) : request;
  }

  /** Removes Binary bytes staged over `olderThanSeconds` ago that no version claimed (a server stopped mid-upload). */
  sweepStaleUploads(olderThanSeconds: number): Promise<number> {
    return sweepStaleUploads(this.db, olderThanSeconds);
  }

  forAccess(access: AccessContext): ResourceStore {
    // All access is this store itself: the same statements, the same shared creates.
    if (!restrictsReads(access) && !restrictsReads(this.access)) return this;
    if (this.unit) return new SqlResourceStore(this.db, this.settings, this.unit, access, this.coalescer, this.callers, this.views, this.auditLog);
    let view = this.views.get(access);
    if (!view) {
      view = new SqlResourceStore(this.db, this.settings, undefined, access, this.coalescer, this.callers, this.views, this.auditLog);
      this.views.set(access, view);
    }
    return view;
  }

  async resolveCaller(access: AccessContext): Promise<AccessContext> {
    // A bundle's entries: the store is bound to the bundle's caller, resolved already.
    const known = this.access.callerIdentities;
    if (known && access.who === known.who && access.callerIdentities === undefined) return { ...access, callerIdentities: known };
    // Inside a unit its own uncommitted roles may be read: used, not kept.
    return this.callers.resolve(this.db, access, !this.unit);
  }

  /** A PractitionerRole written: callers' identities are read again (once more after its unit commits). */
  private wrote(resourceType: string): void {
    if (!changesIdentities(resourceType)) return;
    this.callers.forget();
    this.rolesWritten = true;
  }

  /** Whether this store (a unit's) wrote a PractitionerRole. */
  private rolesWritten = false;

  async read(resourceType: string, id: string): Promise<StoredResource> {
    await this.auditEventsRead(resourceType === AUDIT_EVENT);
    return this.repo.read(resourceType, id);
  }

  async vread(resourceType: string, id: string, versionId: number): Promise<StoredResource> {
    await this.auditEventsRead(resourceType === AUDIT_EVENT);
    return this.repo.vread(resourceType, id, versionId);
  }

  readBinary(id: string, versionId?: number): Promise<StoredBinary> {
    return this.repo.readBinary(id, versionId);
  }

  async existing(references: readonly string[], options: { lock?: boolean } = {}): Promise<Set<string>> {
    if (options.lock && !this.unit) throw new Error('existing with lock runs inside a unitOfWork: the locks last until it ends');
    await this.auditEventsRead(namesAuditEvents(references));
    return this.repo.existing(references, options.lock === true);
  }

  async readMany(references: readonly string[]): Promise<ResourceText[]> {
    await this.auditEventsRead(namesAuditEvents(references));
    return this.repo.readMany(references);
  }

  async referrers(targets: readonly string[], limit: number, ignoredTypes: readonly string[] = []): Promise<Referrer[]> {
    await this.auditEventsRead(!ignoredTypes.includes(AUDIT_EVENT));
    return this.repo.referrers(targets, limit, ignoredTypes);
  }

  async history(query: HistoryQuery): Promise<HistoryPage> {
    await this.auditEventsRead(query.resourceType === undefined || query.resourceType === AUDIT_EVENT);
    return this.repo.history(query);
  }

  async readChanges(cursor: string | undefined, limit: number): Promise<ChangePage> {
    // The feed is the server's own (subscriptions, export), read with all access: filtering it for a caller
    // would leave cursors behind hidden pages. Refused rather than given unfiltered.
    if (this.scope) throw new Error('The change feed is read with all access, not through a restricted store');
    await this.auditEventsRead(true);
    return readChanges(this.db, cursor, limit);
  }

  async search(request: SearchRequest, context: SearchContext): Promise<ResponseBundle> {
    await this.auditEventsRead(searchReadsAuditEvents(request, this.settings.registry));
    return this.engine.search(this.indexed(request), context);
  }

  recordPatients(resources: ReadonlyArray<{ resourceType: string; id: string }>): Promise<string[]> {
    return recordPatients(this.db, resources);
  }

  async readRecord(query: RecordQuery): Promise<RecordPage> {
    await this.auditEventsRead(query.types ? query.types.includes(AUDIT_EVENT) : !query.exceptTypes?.includes(AUDIT_EVENT));
    return readRecordPage(this.db, query, this.scope);
  }

  async match(criteria: MatchCriteria[], options: { lock?: boolean } = {}): Promise<string[][]> {
    if (options.lock) {
      if (!this.unit) throw new Error('match with lock runs inside a unitOfWork: the locks last until it ends');
      // One order for every unit, so that two units locking the same criteria queue rather than deadlock.
      for (const key of [...new Set(criteria.map((c) => c.lockKey))].sort()) {
        await this.db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [key]);
      }
    }
    await this.auditEventsRead(criteria.some(({ search }) => searchReadsAuditEvents(search, this.settings.registry)));
    const matches: string[][] = [];
    for (const { search } of criteria) {
      // A resource the caller may not see does not match: a conditional create whose criteria only a hidden
      // resource meets creates another one (as it would for a caller who never saw the first), and a
      // conditional update or delete cannot reach a hidden resource through its criteria.
      const rows = await readPage<{ id: string }>(this.db, await planSearch(this.db, this.indexed(search), this.scope), search.count);
      matches.push(rows.slice(0, search.count).map((row) => row.id));
    }
    return matches;
  }

  async create(resource: Resource, id?: string, options?: Pick<WriteOptions, 'baseUrl' | 'indexRows'>): Promise<StoredResource> {
    const created = await this.repo.create(resource, id, this.writing(options));
    this.wrote(resource.resourceType);
    return created;
  }

  async recordAuditEvents(events: ReadonlyArray<{ resource: Resource; indexRows: IndexRows }>): Promise<void> {
    if (this.unit) {
      // A unit's events commit or roll back with what they record: written as its other creates.
      await Promise.all(events.map(({ resource, indexRows }) => this.repo.create(resource, undefined, { indexRows })));
      return;
    }
    const created = await Promise.all(events.map(({ resource, indexRows }) => this.repo.firstVersion(resource, randomUUID(), { indexRows }, true)));
    await this.auditLog.append(created);
  }

  async update(resource: Resource & { id: string }, options?: WriteOptions): Promise<UpdateResult> {
    if (this.scope) await this.repo.assertNotHidden(resource.resourceType, resource.id);
    const updated = await this.repo.update(resource, this.writing(options));
    this.wrote(resource.resourceType);
    return updated;
  }

  /** A write's options with the client writing, which a labelled resource remembers (consent-rows.ts). */
  private writing<T extends Pick<WriteOptions, 'baseUrl' | 'indexRows'>>(options: T | undefined): T & Pick<WriteOptions, 'clientId'> {
    const clientId = this.access.clientId;
    return { ...(options ?? ({} as T)), ...(clientId !== undefined ? { clientId } : {}) };
  }

  async patch(
    resourceType: string,
    id: string,
    transform: (current: StoredResource, store: ResourceStore) => Promise<Resource>,
    options: WriteOptions = {},
  ): Promise<UpdateResult> {
    const patched = await this.unitOfWork(async (store) => {
      const { repo } = store as SqlResourceStore;
      const current = await repo.readForUpdate(resourceType, id);
      if (options.ifMatch !== undefined && options.ifMatch !== current.versionId) {
        throw FhirError.preconditionFailed(`If-Match W/"${options.ifMatch}" does not match the current version of ${resourceType}/${id} (W/"${current.versionId}")`);
      }
      const next = await transform(current, store);
      if (next.resourceType !== resourceType || next.id !== id) throw FhirError.badRequest(`A patch of ${resourceType}/${id} may not change its type or id`);
      return repo.update(next as Resource & { id: string }, this.writing({ ifMatch: current.versionId, ...(options.baseUrl !== undefined ? { baseUrl: options.baseUrl } : {}) }));
    });
    this.wrote(resourceType);
    return patched;
  }

  async delete(resourceType: string, id: string, options?: WriteOptions): Promise<DeleteResult> {
    if (this.scope) await this.repo.assertNotHidden(resourceType, id);
    const deleted = await this.repo.delete(resourceType, id, options);
    this.wrote(resourceType);
    return deleted;
  }

  async eraseRecord(patientId: string): Promise<ErasedRecord> {
    // Vacuuming runs outside any transaction: never a transaction Bundle's entry (a batch's entries run each on its own).
    if (this.unit) throw FhirError.badRequest('Patient/$erase cannot run inside a transaction Bundle: send it on its own');
    // The record's events still in the log are drained in the erasure's transaction, and handled as stored ones.
    return eraseRecord(this.db, patientId, this.settings.dataKeys, (tx) => drainAll(tx, this.settings.log ?? STDERR_LOG));
  }

  issuerKeys(generate: () => Promise<IssuerKey>): Promise<IssuerKey[]> {
    return issuerKeys(this.db, generate);
  }

  authorization(): AuthorizationStore {
    return authorizationStore(this.db);
  }

  async unitOfWork<T>(work: (store: ResourceStore) => Promise<T>): Promise<T> {
    if (this.unit) return work(this);
    let unitStore: SqlResourceStore | undefined;
    const result = await this.db.transaction(async (tx) => {
      // Creates are held back and written together: a bundle of fifty creates is one statement, not fifty.
      const unit = new BufferedTransaction(tx, this.db.driver);
      unitStore = new SqlResourceStore(unit, this.settings, unit, this.access, undefined, this.callers, this.views, this.auditLog);
      const result = await work(unitStore);
      await unit.flush();
      return result;
    });
    // Committed: a lookup that ran meanwhile may have read the roles as they were before.
    if (unitStore?.rolesWritten) this.callers.forget();
    return result;
  }

  async stageBinary(resource: Resource): Promise<StagedBinary | undefined> {
    const staged = await stageStreamedBytes(this.db, resource, this.settings.dataKeys);
    if (!staged) return undefined;
    return { resource: staged.resource, discardUnclaimed: () => discardUnclaimedContent(this.db, staged.contentId) };
  }

  withBinaryData(bundle: ResponseBundle, limit: number, streamed = false): Promise<ResponseBundle> {
    return withBinaryData(bundle, this.db, limit, streamed, this.settings.dataKeys);
  }

  ping(): Promise<void> {
    return this.repo.ping();
  }
}
