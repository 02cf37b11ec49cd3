import { CreateCoalescer } from './create-coalescer.ts';
import type { Database, SqlExecutor } from './database.ts';
import { indexInsertCtes, indexParams } from './index-writer.ts';
import type { NewResource } from './repository.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import type { Filter, IncludeRule, SearchRequest } from '../search/types.ts';

/** Where the store reports what happens in the background: a failed drain, events drained without content. */
export interface StoreLog {
  warn(details: object, message: string): void;
  error(details: object, message: string): void;
}

/** Events one drain statement moves: its parameters stay small (one number), its work a few milliseconds per hundred. */
export const DRAIN_BATCH = 1000;
/** How long after this process appended the background drain runs: the appends of many requests go in one drain. */
const DRAIN_DELAY_MS = 250;
/**
 * Appends out at once: more at once are smaller batches, each costing PostgreSQL a statement and a commit of
 * its own. PostgreSQL CPU per audited read (16 readers; reads without the trail 0.10 ms): 0.18–0.20 ms with
 * one append out at a time, 0.21–0.26 with two, 0.29 with four; throughput no lower with one.
 */
const APPENDS_IN_FLIGHT = 1;
/** Events one append statement writes at most. */
const MAX_APPEND_BATCH = 1000;
// Arbitrary constant: drains take turns, across processes and connections (migrate.ts takes 7_341_204_001).
const DRAIN_LOCK = 7_341_204_002;

/**
 * The server's AuditEvents of interactions outside a unit of work (reads, searches, operations), made durable
 * first and searchable later (migration 0024). Appending writes one narrow row per event, the events of
 * concurrent requests in one INSERT and one commit (CreateCoalescer), and resolves once they are committed: an
 * access is on record before its answer leaves. Turning them into AuditEvent resources (the resource, history,
 * index rows that insertNew writes) costs three times as much per event and is deferred to the drain, which
 * moves them a thousand at a time: in the background shortly after this process appended, at start (what a
 * stopped process left), and before any read that could return or count an AuditEvent (`barrier`).
 */
export class AuditLog {
  private readonly appends: CreateCoalescer;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  /** A timer fired during a background drain: another is due once it ends. */
  private appendedWhileDraining = false;

  constructor(
    private readonly db: Database,
    private readonly log: StoreLog,
    appendsInFlight = APPENDS_IN_FLIGHT,
  ) {
    this.appends = new CreateCoalescer(db, appendsInFlight, MAX_APPEND_BATCH, appendToAuditLog);
  }

  /** Appends AuditEvents (version 1 as insertNew would write it): resolves once they are committed. */
  async append(events: NewResource[]): Promise<void> {
    await Promise.all(events.map((event) => this.appends.write(event)));
    this.drainSoon();
  }

  /**
   * Makes every event whose append committed before this call searchable: one statement when the log is
   * empty. A row being drained by another connection is still in the log for this one until that drain
   * commits, and a drain waits for the one before it: nothing is missed in between. `unit`: the transaction
   * of a unit of work reading, drained in (its lock then held until the unit ends: PGlite's one connection is
   * the unit's until then).
   */
  async barrier(unit?: SqlExecutor): Promise<void> {
    const db = unit ?? this.db;
    const { rows } = await db.query<{ pending: boolean }>('SELECT EXISTS (SELECT 1 FROM audit_log ORDER BY seq LIMIT 1) AS pending', [], 'dossier_audit_log_pending');
    if (!rows[0]?.pending) return;
    if (unit) await drainAll(unit, this.log);
    else await this.drain();
  }

  /** Moves the whole log into the resource tables, one transaction per batch; how many events moved. */
  drain(): Promise<number> {
    return drainAuditLog(this.db, this.log);
  }

  /** Stops the background drain, waiting for one under way; what is left in the log waits for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /**
   * One background drain at a time: a timer firing while one runs leaves the appends since to the next, armed
   * when it ends. Overlapping drains (one every DRAIN_DELAY_MS under load, each slower than that) queued on the
   * drain lock, each holding a pooled connection in an open transaction, and moved a few events each.
   */
  private drainSoon(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.running) {
        this.appendedWhileDraining = true;
        return;
      }
      // A failure (the database away) leaves the rows in the log: the next append, read or start drains them.
      this.running = this.drain().then(
        () => undefined,
        (error: unknown) => this.log.error({ err: error }, 'draining the audit log failed'),
      ).finally(() => {
        this.running = undefined;
        if (this.appendedWhileDraining) {
          this.appendedWhileDraining = false;
          this.drainSoon();
        }
      });
    }, DRAIN_DELAY_MS);
    this.timer.unref();
  }
}

/** Moves the whole log into the resource tables, one transaction per batch; how many events moved. */
export async function drainAuditLog(db: Database, log: StoreLog = QUIET): Promise<number> {
  let total = 0;
  for (;;) {
    const moved = await db.transaction((tx) => drainBatch(tx, log));
    total += moved;
    if (moved < DRAIN_BATCH) return total;
  }
}

const QUIET: StoreLog = { warn: () => {}, error: () => {} };

/**
 * Drains the whole log inside transaction `tx` (a unit of work's, an erasure's), holding the drain lock until
 * `tx` ends: what it moved and what the rest of `tx` does commit together.
 */
export async function drainAll(tx: SqlExecutor, log: StoreLog): Promise<void> {
  while ((await drainBatch(tx, log)) === DRAIN_BATCH);
}

async function drainBatch(tx: SqlExecutor, log: StoreLog): Promise<number> {
  // Drains take turns: a drain waiting here sees, once it has the lock, everything the one before moved.
  await tx.query('SELECT pg_advisory_xact_lock($1)', [DRAIN_LOCK], 'dossier_audit_log_lock');
  const { rows } = await tx.query<{ drained: number; unreadable: number }>(DRAIN_STATEMENT, [DRAIN_BATCH], 'dossier_audit_log_drain');
  const { drained = 0, unreadable = 0 } = rows[0] ?? {};
  if (unreadable > 0) log.warn({ unreadable }, 'AuditEvents appended as their record was erased were stored without content: their data key is destroyed');
  return drained;
}

/** Appends events in one statement; their index rows as the index statement will read them, one array per event. */
export async function appendToAuditLog(db: SqlExecutor, events: NewResource[]): Promise<void> {
  await db.query(
    APPEND_STATEMENT,
    [
      events.map(({ stored }) => stored.id),
      events.map(({ stored }) => stored.lastUpdated),
      events.map(({ stored, sealed }) => sealed ?? stored.json),
      events.map(({ stored, rows }) => (rows ? `[${indexParams([{ resourceType: stored.resourceType, id: stored.id, rows }]).join(',')}]` : '[]')),
    ],
    'dossier_audit_log_append',
  );
}

const APPEND_STATEMENT = `INSERT INTO audit_log (id, last_updated, content, index_rows)
  SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[])`;

/**
 * One statement deleting up to `$1` events from the log and inserting them as insertNew would have, their
 * index rows read from the deleted rows by the index writer's own CTEs: nothing travels through this process.
 * An event sealed under a key destroyed since it was appended (its append raced its record's erasure, which
 * drains first under the same lock) cannot be stored sealed (migration 0023) nor ever read: it is stored
 * without content, as its erased record's other events read (410), and without index rows, as erasure leaves
 * them.
 */
const DRAIN_STATEMENT = `WITH drained AS (
    DELETE FROM audit_log WHERE seq = ANY(ARRAY(SELECT seq FROM audit_log ORDER BY seq LIMIT $1))
    RETURNING id, last_updated, content, index_rows),
  new AS (
    SELECT id, last_updated, index_rows,
           CASE WHEN left(content, 1) <> '$' OR EXISTS (SELECT 1 FROM data_key k WHERE k.key_id = substr(content, 5, 36)::uuid) THEN content END AS content
      FROM drained),
  live AS (SELECT index_rows::jsonb AS index_rows FROM new WHERE content IS NOT NULL),
  r AS (INSERT INTO resource (resource_type, id, version_id, last_updated, content)
          SELECT 'AuditEvent', id, 1, last_updated, content FROM new),
  h AS (INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content)
          SELECT 'AuditEvent', id, 1, last_updated, 'POST', content FROM new ORDER BY last_updated, id),
  ${indexInsertCtes((k) => `live, jsonb_array_elements(live.index_rows->${k}) AS x`).join(',\n  ')}
SELECT count(*)::int AS drained, (count(*) - count(content))::int AS unreadable FROM new`;

const AUDIT_EVENT = 'AuditEvent';

/**
 * Whether a search may return, count or be decided by AuditEvents, so that the log must be drained first: a
 * search of the whole system, of AuditEvents (`_type` among them), or naming them in a chain, a `_has`, an
 * `_include` or `_revinclude` (one without a target type, when its parameter may reach one).
 */
export function searchReadsAuditEvents(request: SearchRequest, registry: SearchParameterRegistry): boolean {
  if (request.resourceTypes.length === 0 || request.resourceTypes.includes(AUDIT_EVENT)) return true;
  if (request.filters.some(filterReadsAuditEvents)) return true;
  const reaches = (rule: IncludeRule) => {
    if (rule.sourceType === AUDIT_EVENT || rule.sourceType === '*' || rule.targetType === AUDIT_EVENT) return true;
    if (rule.targetType !== undefined) return false;
    const targets = rule.param === '*' ? [] : (registry.get(rule.sourceType, rule.param)?.targets ?? []);
    return targets.length === 0 || targets.includes(AUDIT_EVENT);
  };
  return request.include.some(reaches) || request.revinclude.some((rule) => rule.sourceType === AUDIT_EVENT || rule.sourceType === '*');
}

function filterReadsAuditEvents(filter: Filter): boolean {
  if (filter.kind === 'chain') return filter.targets.some(({ type, inner }) => type === AUDIT_EVENT || filterReadsAuditEvents(inner));
  if (filter.kind === 'has') return filter.sourceType === AUDIT_EVENT || filterReadsAuditEvents(filter.inner);
  return false;
}

/** Whether any of `references` (`Type/id`) names an AuditEvent. */
export function namesAuditEvents(references: readonly string[]): boolean {
  return references.some((reference) => reference.startsWith(`${AUDIT_EVENT}/`));
}
