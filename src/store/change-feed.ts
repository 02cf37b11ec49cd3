import { FhirError } from '../fhir/outcome.ts';
import type { SqlExecutor } from './database.ts';

/**
 * The change feed: every committed write (a row of resource_history) exactly once, readable from a cursor,
 * with any number of server processes writing.
 *
 * `resource_history.seq` is taken inside the writing transaction and `meta.lastUpdated` before it commits:
 * a transaction that commits late can hold a smaller number than one a reader has already passed. The feed
 * orders rows by (xid, seq) instead, `xid` being the writing transaction's id (migration 0013), and reads
 * only below a horizon (FEED_HORIZON), the oldest transaction the reading statement's own snapshot sees
 * running: every transaction of this database with a smaller id has finished (committed, and visible to
 * that snapshot, or rolled back, its rows gone), and every transaction that writes later gets a larger id.
 * The rows below the horizon are therefore final, and a cursor that moves up through them never skips or
 * repeats one.
 *
 * The order is that of transaction ids, the order in which transactions took their first lock or wrote
 * their first row, not strictly the order of their commits: a write shows once every transaction that
 * began before it has finished, so one long transaction holds back the feed (never loses anything) until it
 * ends. A consumer keeping the latest version of each resource compares versionIds, which follow commit
 * order: a transaction that began first and then waited for a resource's lock writes its later version
 * under the smaller id.
 */

/** A place in the feed: after the row (xid, seq). Opaque to clients, who get it as `xid.seq`. */
export interface FeedPosition {
  xid: string;
  seq: string;
}

export interface Change {
  resourceType: string;
  id: string;
  versionId: number;
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  lastUpdated: string;
}

export interface ChangePage {
  changes: Change[];
  /** Where the next read starts. Given back unchanged when nothing new is final yet. */
  next: string;
}

export const MAX_CHANGES_PER_READ = 10_000;

/** The start of the feed: before every row, those written before migration 0013 (xid 0) included. */
export const FEED_START: FeedPosition = { xid: '0', seq: '0' };

/**
 * SQL for the feed's horizon as the running statement sees it: rows of history below it (`xid < FEED_HORIZON`)
 * are final. It is the oldest transaction the statement's snapshot sees running (pg_snapshot_xmin), except
 * that a transaction known to be unable to write history is passed over: one in another database (a backend
 * stays in its database and cannot write this one's tables), so that a long write elsewhere on the server
 * does not hold this feed back, and autovacuum's (its ANALYZE takes an id to write statistics, never
 * resource rows). One that pg_stat_activity does not show (it hides other roles' transactions) counts.
 * No transaction running when the snapshot was taken is missing from its list, so none is passed over by
 * mistake. The oldest running transaction of this database, any role's, still holds the feed back.
 */
export const FEED_HORIZON = `(SELECT coalesce(
    (SELECT min(running) FROM pg_snapshot_xip(pg_current_snapshot()) AS running
      WHERE NOT EXISTS (SELECT FROM pg_stat_activity a
                         WHERE a.backend_xid = running::xid
                           AND (a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
                                OR a.backend_type = 'autovacuum worker'))),
    pg_snapshot_xmax(pg_current_snapshot())))`;

// xid8 and bigint are unsigned 64-bit and signed 64-bit: at most 20 and 19 digits.
const POSITION_PATTERN = /^(\d{1,20})\.(\d{1,19})$/;
const XID8_MAX = 2n ** 64n - 1n;
const BIGINT_MAX = 2n ** 63n - 1n;

export function formatPosition(position: FeedPosition): string {
  return `${position.xid}.${position.seq}`;
}

/** A cursor this server issued, or undefined for anything else (edited, truncated, out of range). */
export function parsePosition(cursor: string): FeedPosition | undefined {
  const match = POSITION_PATTERN.exec(cursor);
  if (!match) return undefined;
  const xid = BigInt(match[1]!);
  const seq = BigInt(match[2]!);
  if (xid > XID8_MAX || seq > BIGINT_MAX) return undefined;
  return { xid: xid.toString(), seq: seq.toString() };
}

function comparePositions(a: FeedPosition, b: FeedPosition): number {
  const byXid = BigInt(a.xid) - BigInt(b.xid);
  if (byXid !== 0n) return byXid < 0n ? -1 : 1;
  const bySeq = BigInt(a.seq) - BigInt(b.seq);
  return bySeq === 0n ? 0 : bySeq < 0n ? -1 : 1;
}

const READ_CHANGES = `WITH horizon AS MATERIALIZED (SELECT ${FEED_HORIZON} AS xid)
SELECT horizon.xid::text AS horizon, c.xid::text AS xid, c.seq::text AS seq, c.resource_type, c.id, c.version_id, c.method,
       to_char(c.last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_updated
  FROM horizon LEFT JOIN LATERAL (
    SELECT h.xid, h.seq, h.resource_type, h.id, h.version_id, h.method, h.last_updated
      FROM resource_history h
     WHERE (h.xid, h.seq) > ($1::xid8, $2::bigint) AND h.xid < horizon.xid
     ORDER BY h.xid, h.seq
     LIMIT $3) c ON true
 ORDER BY c.xid, c.seq`;

interface ChangeRow {
  horizon: string;
  xid: string | null;
  seq: string | null;
  resource_type: string;
  id: string;
  version_id: number;
  method: Change['method'];
  last_updated: string;
}

/**
 * Up to `limit` writes after `cursor` (from the start of the feed without one), oldest first, in one
 * statement: the rows and the horizon they are read below come from one snapshot. A cursor this server
 * did not issue is a 400.
 */
export async function readChanges(db: SqlExecutor, cursor: string | undefined, limit: number): Promise<ChangePage> {
  const after = cursor === undefined ? FEED_START : parsePosition(cursor);
  if (!after) throw FhirError.badRequest('The change feed cursor is not one this server issued');
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_CHANGES_PER_READ) {
    throw FhirError.badRequest(`A change feed read takes 1 to ${MAX_CHANGES_PER_READ} changes, not ${limit}`);
  }
  const { rows } = await db.query<ChangeRow>(READ_CHANGES, [after.xid, after.seq, limit], 'dossier_read_changes');
  const found = rows.filter((row): row is ChangeRow & { xid: string; seq: string } => row.xid !== null && row.seq !== null);
  const changes = found.map((row) => ({
    resourceType: row.resource_type,
    id: row.id,
    versionId: row.version_id,
    method: row.method,
    lastUpdated: row.last_updated,
  }));
  const last = found[found.length - 1];
  let next: FeedPosition;
  if (found.length === limit && last) {
    // There may be more below the horizon: the next read continues right after the last row.
    next = { xid: last.xid, seq: last.seq };
  } else {
    // Everything final after the cursor was read: the next read starts at the horizon, which no later
    // writer can come in under (a page of an idle feed then costs one index probe, not a rescan).
    const horizon: FeedPosition = { xid: rows[0]!.horizon, seq: '0' };
    next = comparePositions(horizon, after) > 0 ? horizon : after;
  }
  return { changes, next: formatPosition(next) };
}
