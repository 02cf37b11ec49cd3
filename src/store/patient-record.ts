import { FhirError } from '../fhir/outcome.ts';
import { ResourceText } from '../fhir/resource-text.ts';
import { Binder, type ScopePredicate } from '../search/sql-fragments.ts';
import type { SqlExecutor } from './database.ts';

/**
 * What `Patient/$everything` reads (R4 patient-operation-everything.html), one page at a time: the members
 * of patients' compartments and the resources they reference that belong to no patient's record.
 */
export interface RecordQuery {
  /**
   * The patients whose records are read, as given (the caller checks they exist); `all` for every live
   * patient's (type-level `$everything` without `_id`).
   */
  patients: readonly string[] | 'all';
  /** Only resources of these types (`_type`); every type when absent. */
  types?: readonly string[];
  /** Never resources of these types, as members nor as what references others in. */
  exceptTypes?: readonly string[];
  /** Only resources last updated at or after this instant (`_since`, ISO 8601). */
  since?: string;
  /**
   * Care dates (`start`/`end`): a member whose clinical date (the date parameter `params` names for its type)
   * lies wholly outside [from, to) is left out, together with what only it references; one without a
   * clinical date stays. Instants (ISO 8601); either end may be open.
   */
  careDates?: { params: ReadonlyMap<string, string>; from?: string; to?: string };
  /** Entries per page. */
  count: number;
  /** The members only, no referenced resources: for a caller that follows the references it needs itself ($summary). */
  membersOnly?: boolean;
  /**
   * Members of a type named here are read only when they hold one of its tokens (an indexed coding: a search
   * parameter, a system, and a code, or any code of the system when absent); other types are read whole. A
   * caller that keeps few of a type's members says which can be kept ($summary: the Observations of a few
   * categories), so the others are neither read nor parsed.
   */
  tokens?: readonly RecordToken[];
  /** Where the previous page ended (RecordPage.next); the first page without it. */
  cursor?: string;
}

export interface RecordToken {
  type: string;
  param: string;
  system: string;
  code?: string;
}

export interface RecordPage {
  /** Members (`match`) then referenced resources (`include`), each once across all the pages of one walk. */
  entries: Array<{ resource: ResourceText; mode: 'match' | 'include' }>;
  /** The cursor of the next page, when there is one. */
  next?: string;
}

/**
 * The walk goes over the members in (type, id) order, then over the referenced resources in (type, id)
 * order, so a cursor is the phase and the last key read: a resource written meanwhile before the cursor
 * is not seen, none is repeated or skipped, and no page reads more than it returns (plus one).
 */
interface RecordCursor {
  phase: 'member' | 'referenced';
  after?: [type: string, id: string];
}

function encode(cursor: RecordCursor): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

function decode(text: string | undefined): RecordCursor {
  if (text === undefined) return { phase: 'member' };
  try {
    const parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as RecordCursor;
    const keyOk = parsed.after === undefined || (Array.isArray(parsed.after) && parsed.after.length === 2 && parsed.after.every((k) => typeof k === 'string'));
    if ((parsed.phase === 'member' || parsed.phase === 'referenced') && keyOk) return { phase: parsed.phase, after: parsed.after };
  } catch {
    // fall through
  }
  throw FhirError.badRequest('_cursor is not a cursor this server issued for $everything', ['_cursor']);
}

interface Row {
  resource_type: string;
  id: string;
  content: string;
}

export async function readRecordPage(db: SqlExecutor, query: RecordQuery, scope: ScopePredicate | undefined): Promise<RecordPage> {
  if ((Array.isArray(query.patients) && query.patients.length === 0) || query.count <= 0) return { entries: [] };
  let cursor = decode(query.cursor);
  if (query.membersOnly && cursor.phase !== 'member') return { entries: [] };
  const entries: RecordPage['entries'] = [];
  if (cursor.phase === 'member') {
    const rows = await run(db, memberStatement(query, cursor.after, query.count + 1, scope));
    for (const row of rows.slice(0, query.count)) entries.push({ resource: new ResourceText(row.resource_type, row.id, row.content), mode: 'match' });
    if (rows.length > query.count) return { entries, next: encode({ phase: 'member', after: lastKey(entries) }) };
    if (query.membersOnly) return { entries };
    cursor = { phase: 'referenced' };
  }
  // What room the members left goes to the referenced resources; with none left, one is read to know whether a next page has any.
  const room = query.count - entries.length;
  const rows = await run(db, referencedStatement(query, cursor.after, room + 1, scope));
  for (const row of rows.slice(0, room)) entries.push({ resource: new ResourceText(row.resource_type, row.id, row.content), mode: 'include' });
  if (rows.length <= room) return { entries };
  return { entries, next: encode(room === 0 ? cursor : { phase: 'referenced', after: lastKey(entries) }) };
}

function lastKey(entries: RecordPage['entries']): [string, string] {
  const last = entries[entries.length - 1]!.resource;
  return [last.resourceType, last.id];
}

async function run(db: SqlExecutor, statement: { sql: string; params: unknown[] }): Promise<Row[]> {
  return (await db.query<Row>(statement.sql, statement.params)).rows;
}

/**
 * Conditions on `m.resource_type` (each starting with AND, or empty) whose index ranges together hold every type
 * but the left-out ones: one left-out type gives the ranges below and above it, which an index scan reads without
 * visiting the left-out type's entries. Several are checked entry by entry instead: splitting by them would need
 * their order under the database's collation.
 */
function typeRanges(exceptTypes: readonly string[] | undefined, binder: Binder): string[] {
  if (!exceptTypes?.length) return [''];
  if (new Set(exceptTypes).size > 1) return [` AND m.resource_type <> ALL(${binder.bind(exceptTypes, 'text[]')})`];
  const left = binder.bind(exceptTypes[0]);
  return [` AND m.resource_type < ${left}`, ` AND m.resource_type > ${left}`];
}

/** The condition on `m`, a compartment_member row, that it is a membership of one of the query's patients. */
function membershipOf(query: RecordQuery, binder: Binder): string {
  // Every patient's: those of a patient that is no more (deleted, or never stored) are no one's record.
  if (query.patients === 'all') {
    return `m.compartment_type = 'Patient' AND EXISTS (SELECT 1 FROM resource p WHERE p.resource_type = 'Patient' AND p.id = m.compartment_id AND NOT p.deleted)`;
  }
  if (query.patients.length === 1) return `m.compartment_type = 'Patient' AND m.compartment_id = ${binder.bind(query.patients[0])}`;
  return `m.compartment_type = 'Patient' AND m.compartment_id = ANY(${binder.bind(query.patients, 'text[]')})`;
}

/** The row conditions on a resource `r` the caller sees, by its own type, update time and the key it follows. */
function rowConditions(query: RecordQuery, r: string, after: [string, string] | undefined, binder: Binder, scope: ScopePredicate | undefined): string[] {
  const conditions = [`NOT ${r}.deleted`];
  if (after) conditions.push(`(${r}.resource_type, ${r}.id) > (${binder.bind(after[0])}, ${binder.bind(after[1])})`);
  if (query.types) conditions.push(`${r}.resource_type = ANY(${binder.bind(query.types, 'text[]')})`);
  if (query.exceptTypes?.length) conditions.push(`${r}.resource_type <> ALL(${binder.bind(query.exceptTypes, 'text[]')})`);
  if (query.since) conditions.push(`${r}.last_updated >= ${binder.bind(query.since)}::timestamptz`);
  const scoped = scope?.(r, query.types ? [...query.types] : [], binder);
  if (scoped) conditions.push(scoped);
  return conditions;
}

/**
 * A member `r` whose clinical date falls in the care period, or that has none: the date index rows of its
 * type's clinical date parameter (search_date holds each value as [low, high)) overlap [from, to).
 */
function careDateCondition(query: RecordQuery, r: string, binder: Binder): string | undefined {
  const care = query.careDates;
  if (!care || (care.from === undefined && care.to === undefined) || care.params.size === 0) return undefined;
  const pairs = [...care.params];
  const ofType = (d: string) =>
    `${d}.resource_type = ${r}.resource_type AND ${d}.resource_id = ${r}.id AND (${d}.resource_type, ${d}.param) IN (SELECT * FROM unnest(${binder.bind(pairs.map(([type]) => type), 'text[]')}, ${binder.bind(pairs.map(([, param]) => param), 'text[]')}))`;
  const overlap = [care.from === undefined ? '' : ` AND d2.high > ${binder.bind(care.from)}::timestamptz`, care.to === undefined ? '' : ` AND d2.low < ${binder.bind(care.to)}::timestamptz`].join('');
  return `(NOT EXISTS (SELECT 1 FROM search_date d1 WHERE ${ofType('d1')}) OR EXISTS (SELECT 1 FROM search_date d2 WHERE ${ofType('d2')}${overlap}))`;
}

/**
 * A member (its type and id columns) of a type `query.tokens` does not name, or one with a token index row
 * (search_token, probed by its resource index) matching one of its type's tokens. Tested on the membership
 * before its resource is read: at 1M resources, a $summary page of a patient with 90 Observations of no shown
 * category then reads 95 resources instead of 185 (1,435 -> 985 buffers, 2.4 -> 1.7 ms). On a store of a few
 * thousand resources the probe's estimated cost can tip the planner into reading the type's resources first
 * and looking each up in the compartment (a 4-patient store: ~2.4 -> ~10 ms a page); as a lateral join instead
 * it did not tip the plan but, at 1M, probed after reading every resource (2.4-3.6 ms).
 */
function tokenCondition(query: RecordQuery, type: string, id: string, binder: Binder): string | undefined {
  const tokens = query.tokens;
  if (!tokens?.length) return undefined;
  const column = (pick: (token: RecordToken) => string | undefined) => binder.bind(tokens.map((token) => pick(token) ?? null), 'text[]');
  const types = binder.bind([...new Set(tokens.map((token) => token.type))], 'text[]');
  return `(${type} <> ALL(${types}) OR EXISTS (SELECT 1 FROM search_token k
      JOIN unnest(${column((t) => t.type)}, ${column((t) => t.param)}, ${column((t) => t.system)}, ${column((t) => t.code)}) AS f(type, param, system, code)
        ON f.type = k.resource_type AND f.param = k.param AND f.system = k.system AND (f.code IS NULL OR f.code = k.code)
      WHERE k.resource_type = ${type} AND k.resource_id = ${id}))`;
}

function memberStatement(query: RecordQuery, after: [string, string] | undefined, limit: number, scope: ScopePredicate | undefined) {
  const binder = new Binder();
  const conditions = rowConditions(query, 'r', after, binder, scope);
  const care = careDateCondition(query, 'r', binder);
  if (care) conditions.push(care);
  let sql: string;
  if (Array.isArray(query.patients) && query.patients.length === 1) {
    const tokens = tokenCondition(query, 'm.resource_type', 'm.resource_id', binder);
    if (tokens) conditions.push(tokens);
    // One patient: its memberships in (type, id) order straight from the compartment index, each row joined
    // to its resource until the page is full (a member is in one patient's compartment once).
    const keyAfter = after ? ` AND (m.resource_type, m.resource_id) > (${binder.bind(after[0])}, ${binder.bind(after[1])})` : '';
    if (query.types) {
      // Only some types (`_type`; $summary asks for the dozen its sections read): one index range per type, each
      // joined to its resources, rather than one walk over the whole compartment filtering types. A patient's
      // audit trail holds thousands of members, and how the planner walked past them depended on the statistics
      // of the day: bench1m's $summary page took 5 ms, then 88 ms once ANALYZE had run (a bitmap scan over every
      // member's heap page). Each type's range is bounded by the page size, so a page reads at most that many
      // rows per type.
      const inRange = `m.resource_type = t.type${keyAfter}`;
      sql = `SELECT x.resource_type, x.id, x.content FROM unnest(${binder.bind([...new Set(query.types)].sort(), 'text[]')}) AS t(type)
      CROSS JOIN LATERAL (SELECT r.resource_type, r.id, r.content FROM compartment_member m
        JOIN resource r ON r.resource_type = m.resource_type AND r.id = m.resource_id
        WHERE ${membershipOf(query, binder)} AND ${inRange} AND ${conditions.join(' AND ')}
        ORDER BY m.resource_id LIMIT ${limit}) x`;
    } else {
      // Left-out types are skipped in the index itself, not row by row after the join: a patient's audit trail
      // holds thousands of members, sorted among the others (bench1m: 6,800 AuditEvents beside 200 clinical
      // members, 35 ms to walk past them). One left-out type (the trail) splits the compartment's index range in
      // two, read in order and merged; more types, rare, are checked entry by entry.
      const ranges = typeRanges(query.exceptTypes, binder);
      const membership = membershipOf(query, binder);
      const branch = (range: string) => `SELECT r.resource_type, r.id, r.content FROM compartment_member m
      JOIN resource r ON r.resource_type = m.resource_type AND r.id = m.resource_id
      WHERE ${membership}${keyAfter}${range} AND ${conditions.join(' AND ')}`;
      sql = ranges.length === 1 ? branch(ranges[0]!) : `SELECT * FROM (${ranges.map((range) => `(${branch(range)} ORDER BY m.resource_type, m.resource_id LIMIT ${limit})`).join(' UNION ALL ')}) x`;
    }
  } else {
    // Several patients share members (an Appointment is in each participant's): resources in key order,
    // each once, that are members of any of them.
    const tokens = tokenCondition(query, 'r.resource_type', 'r.id', binder);
    if (tokens) conditions.push(tokens);
    sql = `SELECT r.resource_type, r.id, r.content FROM resource r WHERE ${conditions.join(' AND ')}
      AND EXISTS (SELECT 1 FROM compartment_member m WHERE ${membershipOf(query, binder)} AND m.resource_type = r.resource_type AND m.resource_id = r.id)`;
  }
  return { sql: `${sql} ORDER BY 1, 2 LIMIT ${limit}`, params: binder.params };
}

/**
 * The resources the members reference (search_reference rows: references a search parameter indexes) that
 * are members of no patient's compartment: practitioners, organisations, medications, locations… Another
 * patient, or a resource of another patient's record, is never brought in this way. The members they are
 * referenced from are those of the care period the caller sees, whatever their type or update time (a
 * practitioner updated since `_since` is sent even when the observation naming them was not).
 */
function referencedStatement(query: RecordQuery, after: [string, string] | undefined, limit: number, scope: ScopePredicate | undefined) {
  const binder = new Binder();
  const sourceConditions = ['NOT s.deleted'];
  const sourceScope = scope?.('s', [], binder);
  if (sourceScope) sourceConditions.push(sourceScope);
  const care = careDateCondition(query, 's', binder);
  if (care) sourceConditions.push(care);
  const membership = membershipOf(query, binder);
  // The left-out types' members (the audit trail) are skipped by index range, as in memberStatement.
  const targets = typeRanges(query.exceptTypes, binder)
    .map(
      (range) => `SELECT i.target_type, i.target_id FROM compartment_member m
    JOIN search_reference i ON i.resource_type = m.resource_type AND i.resource_id = m.resource_id
    JOIN resource s ON s.resource_type = m.resource_type AND s.id = m.resource_id
    WHERE ${membership}${range} AND i.target_type IS NOT NULL AND ${sourceConditions.join(' AND ')}`,
    )
    .join(' UNION ALL ');
  const conditions = rowConditions(query, 't', after, binder, scope);
  const sql = `SELECT t.resource_type, t.id, t.content FROM resource t WHERE (t.resource_type, t.id) IN (${targets})
    AND ${conditions.join(' AND ')}
    AND NOT EXISTS (SELECT 1 FROM compartment_member o WHERE o.resource_type = t.resource_type AND o.resource_id = t.id AND o.compartment_type = 'Patient')
    ORDER BY 1, 2 LIMIT ${limit}`;
  return { sql, params: binder.params };
}

/**
 * The patients whose records hold any of `resources`: their Patient compartment memberships
 * (compartment_member, read by its index on the member), each patient once.
 */
export async function recordPatients(db: SqlExecutor, resources: ReadonlyArray<{ resourceType: string; id: string }>): Promise<string[]> {
  if (resources.length === 0) return [];
  const { rows } = await db.query<{ patient: string }>(
    `SELECT DISTINCT compartment_id AS patient FROM compartment_member
      WHERE compartment_type = 'Patient' AND (resource_type, resource_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    [resources.map((r) => r.resourceType), resources.map((r) => r.id)],
    'dossier_record_patients',
  );
  return rows.map((row) => row.patient);
}
