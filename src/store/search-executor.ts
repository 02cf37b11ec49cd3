import { randomUUID } from 'node:crypto';
import type { BundleLink, Resource } from 'fhir/r4';
import summaryElements from '../fhir/summary-elements.json' with { type: 'json' };
import { operationOutcome } from '../fhir/outcome.ts';
import { ResourceText, type ResponseBundle, type ResponseBundleEntry } from '../fhir/resource-text.ts';
import type { Database, SqlExecutor } from './database.ts';
import { preparedName } from './prepared-name.ts';
import { encodeCursor } from '../search/parse.ts';
import { DEFAULT_COUNT_LIMIT, DEFAULT_HAS_LISTING, type HasListing } from '../search/planning.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import { Binder, buildSearchSql, hasIndexRowsStatement, hasSourcesStatement, type ScopePredicate, type SearchSql } from '../search/sql.ts';
import type { Filter, IncludeRule, SearchRequest } from '../search/types.ts';
import type { SearchContext } from './resource-store.ts';

/** Bounds on what includes may add to one page, so `_include:iterate=*` cannot read the whole store. */
const MAX_INCLUDE_ROUNDS = 4;
const MAX_INCLUDED = 1000;

/** The tag on a resource cut down by `_summary` or `_elements`. */
export const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };

interface Row {
  resource_type: string;
  id: string;
  content: string;
  [key: `c${number}`]: string | null;
  total_matches?: number;
}

export type { SearchContext };

/** The rows of a page: its statements run in turn until `wanted` rows are in hand (each stops at count + 1). */
export async function readPage<R>(db: SqlExecutor, sql: SearchSql, wanted: number): Promise<R[]> {
  const rows: R[] = [];
  for (const segment of sql.segments) {
    rows.push(...(await db.query<R>(segment.sql, segment.params, sql.plannedOnce ? preparedName(segment.sql) : undefined)).rows);
    if (rows.length >= wanted) break;
  }
  return rows;
}

/**
 * The statements of a search, once its `_has` filters with few sources have been replaced by the ids
 * they reach (read here, with the same scope); a `_has` with many stays a subquery for the planner.
 */
export async function planSearch(db: SqlExecutor, request: SearchRequest, scope?: ScopePredicate, listing = DEFAULT_HAS_LISTING): Promise<SearchSql> {
  if ((listing.sources <= 0 && listing.countedSources <= 0) || request.resourceTypes.length !== 1 || !request.filters.some((f) => f.kind === 'has')) return buildSearchSql(request, scope);
  const filters = await Promise.all(request.filters.map((filter) => listReverseChain(db, filter, request.resourceTypes, scope, listing)));
  return buildSearchSql({ ...request, filters }, scope);
}

/** A `_has` with few enough sources as the ids they reference; other filters as they are. */
async function listReverseChain(db: SqlExecutor, filter: Filter, types: string[], scope: ScopePredicate | undefined, listing: HasListing): Promise<Filter> {
  if (filter.kind !== 'has' || types.length !== 1) return filter;
  // Nested (`_has:A:x:_has:B:y:…`): the innermost first, so each level starts from what it reaches.
  const inner = await listReverseChain(db, filter.inner, [filter.sourceType], scope, listing);
  const narrowed = { ...filter, inner };
  let limit = listing.sources;
  const indexRows = hasIndexRowsStatement(narrowed, listing.countedSources + 1);
  if (indexRows) {
    const { rows } = await db.query<{ n: number }>(indexRows.sql, indexRows.params);
    if ((rows[0]?.n ?? 0) > listing.countedSources) return narrowed;
    limit = listing.countedSources;
  }
  const statement = hasSourcesStatement(narrowed, types, limit + 1, scope);
  const { rows } = await db.query<{ sources: number; targets: string | null }>(statement.sql, statement.params);
  const { sources, targets } = rows[0] ?? { sources: 0, targets: null };
  if (sources > limit) return narrowed;
  return { kind: 'id', values: targets ? targets.split(',') : [] };
}

/** Runs parsed searches against the index tables and shapes the `searchset` Bundle (R4 search.html). */
export class SearchEngine {
  constructor(
    private readonly db: Database,
    private readonly registry: SearchParameterRegistry,
    private readonly scope?: ScopePredicate,
    /** Matches counted for a first page's `total` when `_total` is not given; beyond it, no total. */
    private readonly countLimit = DEFAULT_COUNT_LIMIT,
    /** How many sources a `_has` may have to be read first and searched as ids (zeros: never). */
    private readonly hasListing = DEFAULT_HAS_LISTING,
  ) {}

  async search(request: SearchRequest, context: SearchContext): Promise<ResponseBundle> {
    const sql = await planSearch(this.db, request, this.scope, this.hasListing);
    const countOnly = request.summary === 'count';
    const rows = countOnly ? [] : await readPage<Row>(this.db, sql, request.count + 1);
    const backwards = request.cursor?.backwards ?? false;
    const more = rows.length > request.count;
    const page = rows.slice(0, request.count);
    if (backwards) page.reverse();

    // Counting every page of a large result costs a scan each time; the first page's total is what clients
    // show. Unasked, it is counted up to `countLimit` matches and left out beyond (`_total=accurate`
    // counts them all): a patient's records count at once, a whole type's would cost seconds a page.
    const totalMode = request.total ?? (request.cursor ? 'none' : 'bounded');
    // A first page that holds every match has counted them already (a patient's immunizations, say).
    const complete = !countOnly && !request.cursor && !more && totalMode !== 'estimate';
    const total =
      totalMode === 'none' && !countOnly ? undefined
      : complete ? page.length
      : sql.pageCounts && rows[0] ? rows[0].total_matches
      : await this.total(countOnly && totalMode === 'bounded' ? 'accurate' : totalMode, sql);
    const matches = page.map((row) => new ResourceText(row.resource_type, row.id, row.content));
    const included = countOnly ? [] : await this.includes(request, matches);

    const keyCount = sql.sortKeyCount + 2;
    const cursorOf = (row: Row | undefined) => (row ? Array.from({ length: keyCount }, (_, i) => row[`c${i}`] ?? null) : undefined);
    // Rows come back in the order of the query; when paging backwards its keys were read reversed too.
    const first = cursorOf(page[0]);
    const last = cursorOf(page[page.length - 1]);
    const hasNext = backwards ? request.cursor !== undefined : more;
    const hasPrevious = backwards ? more : request.cursor !== undefined;

    const link: BundleLink[] = [{ relation: 'self', url: this.url(request, context, request.cursor ? encodeCursor(request.cursor.values, backwards) : undefined) }];
    if (!countOnly) {
      link.push({ relation: 'first', url: this.url(request, context) });
      if (hasPrevious && first) link.push({ relation: 'previous', url: this.url(request, context, encodeCursor(first, true)) });
      if (hasNext && last) link.push({ relation: 'next', url: this.url(request, context, encodeCursor(last, false)) });
    }

    const entry: ResponseBundleEntry[] = [
      ...matches.map((resource) => this.entry(resource, 'match', request, context)),
      ...included.map((resource) => this.entry(resource, 'include', request, context)),
    ];
    if (request.ignored.length > 0) {
      entry.push({
        resource: operationOutcome(request.ignored.map(({ name, reason }) => ({ severity: 'warning', code: 'not-supported', diagnostics: `Ignored ${name}: ${reason}`, expression: [name] }))),
        search: { mode: 'outcome' },
      });
    }
    return {
      resourceType: 'Bundle',
      id: randomUUID(),
      meta: { lastUpdated: new Date().toISOString() },
      type: 'searchset',
      ...(total === undefined ? {} : { total }),
      link,
      ...(entry.length > 0 ? { entry } : {}),
    };
  }

  private async total(mode: 'none' | 'estimate' | 'accurate' | 'bounded', sql: SearchSql): Promise<number | undefined> {
    if (mode === 'estimate') {
      const { rows } = await this.db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${sql.matchSql}`, sql.countParams);
      const plan = rows[0]?.['QUERY PLAN'];
      const parsed = (typeof plan === 'string' ? JSON.parse(plan) : plan) as Array<{ Plan: { 'Plan Rows': number } }>;
      return Math.round(parsed[0]?.Plan['Plan Rows'] ?? 0);
    }
    if (mode === 'bounded') {
      const { rows } = await this.db.query<{ total: number }>(
        `SELECT count(*)::int AS total FROM (${sql.matchSql} LIMIT ${this.countLimit + 1}) m`,
        sql.countParams,
      );
      const total = rows[0]?.total ?? 0;
      return total > this.countLimit ? undefined : total;
    }
    const { rows } = await this.db.query<{ total: number }>(sql.countSql, sql.countParams);
    return rows[0]?.total ?? 0;
  }

  /** `_include` and `_revinclude` targets of the page, `:iterate` applied to what each round adds. */
  private async includes(request: SearchRequest, matches: ResourceText[]): Promise<ResourceText[]> {
    if (request.include.length === 0 && request.revinclude.length === 0) return [];
    const seen = new Set(matches.map((r) => `${r.resourceType}/${r.id}`));
    const included: ResourceText[] = [];
    let frontier = matches;
    for (let round = 0; round < MAX_INCLUDE_ROUNDS && frontier.length > 0 && included.length < MAX_INCLUDED; round++) {
      const rules = round === 0 ? [...request.include.map((r) => ({ rule: r, reverse: false })), ...request.revinclude.map((r) => ({ rule: r, reverse: true }))] : [...request.include.filter((r) => r.iterate).map((r) => ({ rule: r, reverse: false })), ...request.revinclude.filter((r) => r.iterate).map((r) => ({ rule: r, reverse: true }))];
      const added: ResourceText[] = [];
      for (const { rule, reverse } of rules) {
        for (const resource of await this.follow(rule, reverse, frontier)) {
          const key = `${resource.resourceType}/${resource.id}`;
          if (seen.has(key) || included.length + added.length >= MAX_INCLUDED) continue;
          seen.add(key);
          added.push(resource);
        }
      }
      included.push(...added);
      frontier = added;
    }
    return included;
  }

  private async follow(rule: IncludeRule, reverse: boolean, from: ResourceText[]): Promise<ResourceText[]> {
    const binder = new Binder();
    const params = rule.param === '*' ? undefined : rule.param;
    let sql: string;
    if (!reverse) {
      const sources = from.filter((r) => rule.sourceType === '*' || r.resourceType === rule.sourceType);
      if (sources.length === 0) return [];
      const scoped = this.scope?.('t', rule.targetType ? [rule.targetType] : [], binder);
      sql = `SELECT t.resource_type, t.id, t.content FROM search_reference i JOIN resource t ON t.resource_type = i.target_type AND t.id = i.target_id
        WHERE (i.resource_type, i.resource_id) IN (SELECT * FROM unnest(${binder.bind(sources.map((r) => r.resourceType), 'text[]')}, ${binder.bind(sources.map((r) => r.id), 'text[]')}))
          ${params ? `AND i.param = ${binder.bind(params)}` : ''} ${rule.targetType ? `AND i.target_type = ${binder.bind(rule.targetType)}` : ''}
          AND NOT t.deleted ${scoped ? `AND ${scoped}` : ''}`;
    } else {
      const targets = from.filter((r) => !rule.targetType || r.resourceType === rule.targetType);
      if (targets.length === 0) return [];
      const scoped = this.scope?.('s', [rule.sourceType], binder);
      sql = `SELECT s.resource_type, s.id, s.content FROM search_reference i JOIN resource s ON s.resource_type = i.resource_type AND s.id = i.resource_id
        WHERE i.resource_type = ${binder.bind(rule.sourceType)} ${params ? `AND i.param = ${binder.bind(params)}` : ''}
          AND (i.target_type, i.target_id) IN (SELECT * FROM unnest(${binder.bind(targets.map((r) => r.resourceType), 'text[]')}, ${binder.bind(targets.map((r) => r.id), 'text[]')}))
          AND NOT s.deleted ${scoped ? `AND ${scoped}` : ''}`;
    }
    const { rows } = await this.db.query<{ resource_type: string; id: string; content: string }>(sql, binder.params);
    return rows.map((row) => new ResourceText(row.resource_type, row.id, row.content));
  }

  private entry(resource: ResourceText, mode: 'match' | 'include', request: SearchRequest, context: SearchContext): ResponseBundleEntry {
    return {
      fullUrl: `${context.baseUrl}/${resource.resourceType}/${resource.id}`,
      resource: subset(resource, request),
      search: { mode },
    };
  }

  private url(request: SearchRequest, context: SearchContext, cursor?: string): string {
    const query = new URLSearchParams(request.applied);
    if (request.resourceTypes.length > 1 || context.path === '') query.set('_type', request.resourceTypes.join(','));
    if (cursor) query.set('_cursor', cursor);
    const text = query.toString();
    return `${context.baseUrl}${context.path ? `/${context.path}` : ''}${text ? `?${text}` : ''}`;
  }
}

/**
 * `_summary` and `_elements` (R4 search.html#summary, #elements): a subset, tagged SUBSETTED. Without
 * them the stored text is returned as it is, unparsed.
 */
export function subset(stored: ResourceText, request: Pick<SearchRequest, 'summary' | 'elements'>): ResourceText | Resource {
  const lists = (summaryElements as Record<string, { summary: string[]; mandatory: string[] }>)[stored.resourceType];
  let keep: Set<string> | undefined;
  if (request.summary === 'true') keep = new Set(lists?.summary ?? []);
  else if (request.summary === 'text') keep = new Set(['text', ...(lists?.mandatory ?? [])]);
  else if (request.summary === 'data') keep = new Set(Object.keys(stored.resource).filter((k) => k !== 'text'));
  else if (request.elements && request.summary !== 'false') keep = new Set(request.elements.map((e) => e.split('.').pop()!));
  if (!keep) return stored;
  const resource = stored.resource;
  const out: Record<string, unknown> = { resourceType: resource.resourceType };
  for (const [key, value] of Object.entries(resource)) {
    if (key === 'id' || key === 'meta' || keep.has(key)) out[key] = value;
  }
  const meta = (resource.meta ?? {}) as Resource['meta'] & object;
  out.meta = { ...meta, tag: [...(meta.tag ?? []), SUBSETTED] };
  return out as unknown as Resource;
}
