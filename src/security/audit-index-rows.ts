import type { AuditEvent, Coding, Reference } from 'fhir/r4';
import { parseDateRange } from '../search/dates.ts';
import { emptyRows, referenceOf, type IndexRows } from '../search/extract.ts';
import { normalizeString } from '../search/normalize.ts';

// The search index rows of an AuditEvent, read off its parts instead of evaluating each of the AuditEvent
// search parameters' expressions on it (search/extract.ts). Every interaction writes at least one event: the
// extraction cost as much node time as sealing and writing the event together, for values the server had in
// hand. The rows are exactly those extraction gives (same tables, values, order; test/audit-index-rows.test.ts
// compares both on every shape the trail writes and on the elements it never fills), so `npm run reindex`
// rebuilds the same rows and every declared AuditEvent parameter finds what it found.

/** The `code` elements' systems, as their required bindings give them (search/implicit-code-systems.json). */
const ACTION_SYSTEM = 'http://hl7.org/fhir/audit-event-action';
const OUTCOME_SYSTEM = 'http://hl7.org/fhir/audit-event-outcome';

type Rows = IndexRows;

/** The index rows of `event`, in the order extraction writes them (parameters by code, then values in document order). */
export function auditEventIndexRows(event: AuditEvent, baseUrl?: string): IndexRows {
  const rows = emptyRows();
  const agents = event.agent ?? [];
  const entities = event.entity ?? [];
  for (const profile of event.meta?.profile ?? []) if (typeof profile === 'string') rows.uri.push({ param: '_profile', uri: profile });
  codings(rows, '_security', event.meta?.security);
  if (typeof event.meta?.source === 'string') rows.uri.push({ param: '_source', uri: event.meta.source });
  codings(rows, '_tag', event.meta?.tag);
  code(rows, 'action', event.action, ACTION_SYSTEM);
  for (const agent of agents) text(rows, 'address', agent.network?.address);
  for (const agent of agents) reference(rows, 'agent', agent.who, baseUrl);
  for (const agent of agents) text(rows, 'agent-name', agent.name);
  for (const agent of agents) for (const role of agent.role ?? []) concept(rows, 'agent-role', role);
  for (const agent of agents) code(rows, 'altid', agent.altId);
  const recorded = typeof event.recorded === 'string' ? instantRange(event.recorded) : undefined;
  if (recorded) rows.date.push({ param: 'date', ...recorded, compositeKey: null });
  for (const entity of entities) reference(rows, 'entity', entity.what, baseUrl);
  for (const entity of entities) text(rows, 'entity-name', entity.name);
  for (const entity of entities) codings(rows, 'entity-role', entity.role ? [entity.role] : undefined);
  for (const entity of entities) codings(rows, 'entity-type', entity.type ? [entity.type] : undefined);
  code(rows, 'outcome', event.outcome, OUTCOME_SYSTEM);
  for (const agent of agents) if (isPatientReference(agent.who)) reference(rows, 'patient', agent.who, baseUrl);
  for (const entity of entities) if (isPatientReference(entity.what)) reference(rows, 'patient', entity.what, baseUrl);
  for (const agent of agents) for (const policy of agent.policy ?? []) if (typeof policy === 'string') rows.uri.push({ param: 'policy', uri: policy });
  code(rows, 'site', event.source?.site);
  reference(rows, 'source', event.source?.observer, baseUrl);
  codings(rows, 'subtype', event.subtype);
  codings(rows, 'type', event.type ? [event.type] : undefined);
  return withoutRepeats(rows);
}

/**
 * The range a `recorded` instant covers: the trail writes them as Date.toISOString does (to the millisecond,
 * UTC), which is then the range's low end as the index stores it; anything else is parsed as extraction does.
 */
function instantRange(value: string): { low: string; high: string } | undefined {
  const at = Date.parse(value);
  if (value.length === 24 && !Number.isNaN(at) && new Date(at).toISOString() === value) return { low: value, high: new Date(at + 1).toISOString() };
  const range = parseDateRange(value);
  return range && { low: range.low.toISOString(), high: range.high.toISOString() };
}

function codings(rows: Rows, param: string, list: Coding[] | undefined): void {
  for (const coding of list ?? []) {
    if (!coding || typeof coding !== 'object') continue;
    rows.token.push({ param, system: coding.system ?? null, code: coding.code ?? null, text: typeof coding.display === 'string' ? normalizeString(coding.display) : null });
  }
}

function concept(rows: Rows, param: string, value: { coding?: Coding[]; text?: string }): void {
  for (const coding of value.coding ?? []) {
    const display = coding.display ?? value.text;
    rows.token.push({ param, system: coding.system ?? null, code: coding.code ?? null, text: typeof display === 'string' ? normalizeString(display) : null });
  }
  if (value.text) rows.token.push({ param, system: null, code: null, text: normalizeString(value.text) });
}

function code(rows: Rows, param: string, value: unknown, system: string | null = null): void {
  if (typeof value === 'string') rows.token.push({ param, system, code: value, text: null });
}

function text(rows: Rows, param: string, value: unknown): void {
  if (typeof value === 'string' && value.length > 0) rows.string.push({ param, value, normalized: normalizeString(value) });
}

function reference(rows: Rows, param: string, value: Reference | undefined, baseUrl: string | undefined): void {
  const found = value && referenceOf('Reference', value, baseUrl);
  if (found) rows.reference.push({ param, ...found });
}

/** The `patient` parameter's filter, `.where(reference.startsWith('Patient/'))`. */
function isPatientReference(value: Reference | undefined): boolean {
  return typeof value?.reference === 'string' && value.reference.startsWith('Patient/');
}

/** Each row once, the first kept (as extraction dedupes: two agents at one address give one row); a few rows a table, compared pairwise. */
function withoutRepeats(rows: Rows): Rows {
  for (const table of TABLES) {
    const list = rows[table] as unknown as Array<Record<string, unknown>>;
    if (list.length < 2) continue;
    (rows[table] as unknown[]) = list.filter((row, index) => {
      for (let earlier = 0; earlier < index; earlier++) if (sameRow(list[earlier]!, row)) return false;
      return true;
    });
  }
  return rows;
}

const TABLES = ['token', 'string', 'date', 'reference', 'uri'] as const;

function sameRow(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  for (const field in a) if (a[field] !== b[field]) return false;
  return true;
}
