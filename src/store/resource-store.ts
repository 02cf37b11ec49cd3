import type { Resource } from 'fhir/r4';
import type { ResourceText, ResponseBundle } from '../fhir/resource-text.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import type { SearchRequest } from '../search/types.ts';
import type { AccessContext } from './access.ts';
import type { ChangePage } from './change-feed.ts';
import type { RecordPage, RecordQuery } from './patient-record.ts';
import type { DeleteResult, HistoryPage, HistoryQuery, Referrer, StoredBinary, StoredResource, UpdateResult, WriteOptions } from './repository.ts';
import type { AuthorizationStore } from './authorization.ts';
import type { IssuerKey } from './issuer-keys.ts';
import type { ErasedRecord } from './erase.ts';
import type { StoreLog } from './audit-log.ts';
import type { IndexRows } from '../search/index-rows.ts';

export type { Change, ChangePage } from './change-feed.ts';
export type { RecordPage, RecordQuery, RecordToken } from './patient-record.ts';
export type { DeleteResult, HistoryEntry, HistoryPage, HistoryQuery, Referrer, UpdateResult, WriteMethod, WriteOptions } from './repository.ts';
export { StoredBinary, StoredResource } from './repository.ts';
export type { IssuerKey } from './issuer-keys.ts';
export type { ErasedRecord } from './erase.ts';
export type { AuthorizationClient, AuthorizationRecord, AuthorizationStore, LocalAccount } from './authorization.ts';
export { ALL_ACCESS, type AccessContext, type CompartmentRef } from './access.ts';

/** Where a search's links point: the base the client used and the path below it that was searched. */
export interface SearchContext {
  baseUrl: string;
  /** Path below the base that was searched (`Patient`, `Patient/123/Immunization`, ``), for links. */
  path: string;
}

/** The criteria of a conditional interaction, parsed above the store (a 400 is refused before the store sees it). */
export interface MatchCriteria {
  resourceType: string;
  /** The parsed search; its `count` bounds how many ids a match returns. */
  search: SearchRequest;
  /** Equal for criteria selecting the same resources however they were written: what a lock is taken on. */
  lockKey: string;
}

/** Bytes of a Binary posted as itself, written ahead of its version's transaction (see Binary content staging). */
export interface StagedBinary {
  /** The Binary to write: it now carries the staged bytes, which the write claims. */
  resource: Resource;
  /** Drops the staged bytes if no version claimed them (the write failed or never happened). */
  discardUnclaimed(): Promise<void>;
}

/**
 * The resource store every interaction runs against, whatever holds the data. Nothing above `src/store`
 * knows how it is stored: no SQL, no driver, no lock. Its test suite (test/helpers/store-contract.ts)
 * is what another engine must pass.
 *
 * Reads fail with FhirError 404 (never known) or 410 (deleted); writes with 412 when `ifMatch` is not the
 * current version. A store obtained from `unitOfWork` runs everything in that unit's one transaction.
 */
export interface ResourceStore {
  /**
   * This store as `access` sees it: every read (read, vread, Binary, history, search with its totals,
   * includes, chains and `_has`, conditional matches) leaves out what it hides, inside the storage's own
   * queries, and a hidden resource reads as unknown (404). Its units of work stay bound to `access`.
   */
  forAccess(access: AccessContext): ResourceStore;
  /**
   * `access` with its caller's identities as the patients' consent sees them (`callerIdentities`: a
   * professional's roles and organisations), looked up once for a request rather than in each of its
   * statements, and kept a few seconds for the caller's next requests (a PractitionerRole written through the
   * store is seen at once). `access` as it is when there is nothing to resolve (all access, a patient, a system).
   */
  resolveCaller(access: AccessContext): Promise<AccessContext>;
  read(resourceType: string, id: string): Promise<StoredResource>;
  vread(resourceType: string, id: string, versionId: number): Promise<StoredResource>;
  /** A Binary as stored (without `data`) with its bytes to stream; the current version or `versionId`. */
  readBinary(id: string, versionId?: number): Promise<StoredBinary>;
  /** Versions newest first, paged by `before` (a place in the change feed; a versionId for one resource), with their total. */
  history(query: HistoryQuery): Promise<HistoryPage>;
  /**
   * Up to `limit` committed writes after `cursor` (from the start of the feed without one), oldest first:
   * across successive reads, each committed write exactly once whatever commits meanwhile, a rolled-back one
   * never (change-feed.ts). A cursor the store did not issue is a 400.
   */
  readChanges(cursor: string | undefined, limit: number): Promise<ChangePage>;
  /**
   * Of `references` (`Type/id`), those naming a live resource this store's access sees (a hidden one is
   * as unknown as it reads), in one query however many: what a write's referential integrity checks.
   * Inside a unit of work its own writes count, those not yet flushed included. With `lock` (inside a
   * unitOfWork), the live ones found are held against their deletion until the unit ends (see `referrers`).
   */
  existing(references: readonly string[], options?: { lock?: boolean }): Promise<Set<string>>;
  /**
   * Live resources whose current version references one of `targets` (`Type/id`) through a reference
   * search parameter (the index of every write), at most `limit` of them: what refuses the delete of a
   * resource others still name (referential integrity on delete). Looked up whatever this store's access
   * hides, since a hidden resource's reference dangles as much as a visible one's; each says whether the
   * access sees it, so that a refusal names only those. Inside a unit of work its own writes count.
   *
   * Integrity against concurrent writers, with referential integrity on: a write checks its targets with
   * `existing(…, { lock: true })` in the unit that writes it, a delete runs `referrers` in the unit that
   * deleted, after the delete. The lock holds each live target until the unit ends against its deletion
   * (not against updates): a delete of it waits, then finds the new reference; a write that waits on a
   * delete finds the target gone. So a write naming a resource and that resource's delete never both commit.
   * Referrers of the `ignoredTypes` are not looked at.
   */
  referrers(targets: readonly string[], limit: number, ignoredTypes?: readonly string[]): Promise<Referrer[]>;
  /**
   * The live resources `references` (`Type/id`) name, as this store's access sees them and as stored (a Binary
   * without its bytes), in (type, id) order, in one query however many: what a search by `_id` over their
   * types finds, without the search. Unknown, deleted and hidden ones are left out.
   */
  readMany(references: readonly string[]): Promise<ResourceText[]>;
  /** A searchset Bundle: matches, `_include`/`_revinclude` targets, total as `request.total` asks (estimate included). */
  search(request: SearchRequest, context: SearchContext): Promise<ResponseBundle>;
  /**
   * A page of patients' records (`Patient/$everything`): the live members of their Patient compartments in
   * (type, id) order, then the live resources those reference that belong to no patient's record, each
   * once across the pages a walk of `next` cursors reads, whatever is written meanwhile; as `access` sees
   * them. A cursor the store did not issue is a 400.
   */
  readRecord(query: RecordQuery): Promise<RecordPage>;
  /**
   * The patients (ids) whose records hold any of `resources` (their Patient compartments, as the store keeps
   * them with each write: a Patient is in its own), in one statement: whose data an interaction answered, for
   * the audit trail, without reading the resources again. Memberships only, whatever the store's access.
   */
  recordPatients(resources: ReadonlyArray<{ resourceType: string; id: string }>): Promise<string[]>;

  /**
   * Ids of the live resources matching each of `criteria` (at most `search.count` each), in their order.
   * With `lock` (inside a unitOfWork), the criteria are first locked in a stable order until the unit ends:
   * two units matching the same criteria queue, the second seeing what the first wrote, so a conditional
   * create or update that finds nothing creates one resource, not two. Units locking several criteria
   * wait for each other rather than deadlock.
   */
  match(criteria: MatchCriteria[], options?: { lock?: boolean }): Promise<string[][]>;

  /**
   * The server's own AuditEvents of an interaction (security/audit-trail.ts), each with its index rows (as
   * WriteOptions.indexRows), under new ids. Resolves once they are durable: committed, or inside a unit of
   * work written in it, committing or rolling back with it. Outside a unit they may be stored as resources
   * later, but every read that could return or count AuditEvents (read, history, searches, includes,
   * `$everything`, the change feed, `eraseRecord`) sees every event recorded before it began.
   */
  recordAuditEvents(events: ReadonlyArray<{ resource: Resource; indexRows: IndexRows }>): Promise<void>;

  /** A new resource under `id` (a new server id by default): version 1. */
  create(resource: Resource, id?: string, options?: Pick<WriteOptions, 'baseUrl' | 'indexRows'>): Promise<StoredResource>;
  /** A new version, or the resource created with the client's id when it does not exist (or was deleted). */
  update(resource: Resource & { id: string }, options?: WriteOptions): Promise<UpdateResult>;
  /**
   * Read-modify-write: `transform` gets the current version, read under lock, and returns the next one,
   * which is written as an update; concurrent patches queue and each sees the one before's result.
   * `transform` may use `store` (the unit's) to read; what it throws writes nothing.
   */
  patch(
    resourceType: string,
    id: string,
    transform: (current: StoredResource, store: ResourceStore) => Promise<Resource>,
    options?: WriteOptions,
  ): Promise<UpdateResult>;
  delete(resourceType: string, id: string, options?: WriteOptions): Promise<DeleteResult>;

  /**
   * Runs `work` as one all-or-nothing transaction against the store it is given: committed when it
   * resolves, nothing of it kept when it throws. Inside a unit, a nested unitOfWork joins it.
   */
  unitOfWork<T>(work: (store: ResourceStore) => Promise<T>): Promise<T>;

  /**
   * The bytes of a Binary posted as itself, written before its version's transaction (a slow sender
   * holds nothing the other requests need); undefined when `resource` carries no streamed bytes.
   */
  stageBinary(resource: Resource): Promise<StagedBinary | undefined>;
  /**
   * A page of resources as stored has Binaries without `data`: it is put back, streamed when `streamed`
   * (the transport writes it as the page goes out), else inline up to `limit` bytes (larger: SUBSETTED).
   */
  withBinaryData(bundle: ResponseBundle, limit: number, streamed?: boolean): Promise<ResponseBundle>;

  /**
   * Closes a patient's record for good (`Patient/{id}/$erase`): the patient, its record's members and their
   * Binaries are deleted with their history, index and consent rows, and the record's data keys destroyed, so
   * that nothing of it stays readable, the append-only AuditEvents about it included (encryption.ts). Not in a
   * unit of work. 404 when the patient was never known.
   */
  eraseRecord(patientId: string): Promise<ErasedRecord>;

  // readChanges(cursor, limit): the change feed in commit order (issue 15, item 5; src/store/change-feed.ts)
  // goes here when it is merged.

  /** Resolves when the storage answers (readiness). */
  ping(): Promise<void>;
}

/** What a server's store is opened with. */
export interface StoreSettings {
  /** The search parameters the store indexes and searches by. */
  registry: SearchParameterRegistry;
  /** The most index rows one resource may have (a larger one is refused, 422). */
  maxIndexRows: number;
  /** The largest Binary a read gives with its `data` put together (a larger one is 406; HTTP streams it instead). */
  binaryInlineLimit: number;
  /** Where the store reports what goes wrong in the background (draining the audit log). */
  log?: StoreLog;
}

/** A store as a server runs it: brought up to date and tidied when the server starts. */
export interface ServerStore extends ResourceStore {
  /** Brings the stored form up to date (migrations). */
  migrate(): Promise<void>;
  /** Removes Binary bytes staged over `olderThanSeconds` ago that no version claimed (a server stopped mid-upload). */
  sweepStaleUploads(olderThanSeconds: number): Promise<number>;
  /** The embedded token issuer's keys, signing one first; `generate` makes the first when there is none. */
  issuerKeys(generate: () => Promise<IssuerKey>): Promise<IssuerKey[]>;
  /** The embedded authorization server's clients, local accounts and records. */
  authorization(): AuthorizationStore;
}

/** Where a server keeps its resources, opened by the process (src/main.ts) and handed to the app. */
export interface Storage {
  open(settings: StoreSettings): Promise<ServerStore>;
  close(): Promise<void>;
}
