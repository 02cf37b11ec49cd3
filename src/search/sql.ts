import type { DateRange } from './dates.ts';
import { halfUnitOfLastDigit } from './decimal.ts';
import { ofTypeKey, ofTypeParam } from './extract.ts';
import { followsRecordPatient } from './compartment.ts';
import { normalizeString } from './normalize.ts';
import { invalidCursor } from './parse.ts';
import { IDS_AS_ONE_STRING_FROM, intersectsOnIds, isNarrow, MAX_COUNTED_IN_PAGE, plansAlike } from './planning.ts';
import { isDateComposite, isQuantityComposite, type SearchParamDefinition } from './registry.ts';
import { anyOf, Binder, INDEXED_PREFIX, indexedAmong, indexedEqual, indexedStartsWith, likePrefix, type IndexRows, type ScopePredicate } from './sql-fragments.ts';
import type { Filter, Prefix, QuantityValue, SearchRequest, SortRule, TokenValue } from './types.ts';
import { uriIndexRows } from './types/uri.ts';

export { Binder };
// In the module without imports, so that the store's reads take it without an import cycle.
export type { ScopePredicate } from './sql-fragments.ts';

interface SortKey {
  expression: string;
  descending: boolean;
  nullsFirst: boolean;
  cast: 'text' | 'timestamptz' | 'numeric';
  /** A plain column that is never NULL (no correlated subquery behind it). */
  column?: boolean;
}

/** One statement of a page: rows in the search's order, at most `count + 1` of them. */
export interface PageSegment {
  sql: string;
  params: unknown[];
}

export interface SearchSql {
  /**
   * The page's statements, to run in turn until `count + 1` rows are in hand. Usually one; a sort on
   * an indexed parameter has two: the resources that have a value, walked in that index's order, then
   * those that have none (which sort last).
   */
  segments: PageSegment[];
  /** `SELECT 1` for every match, with `countParams`: what counts and estimates are made of. */
  matchSql: string;
  /** The exact count of matches, with `countParams`. */
  countSql: string;
  countParams: unknown[];
  /** How many sort keys precede the (resource_type, id) tie-break in each row's `k0…` columns. */
  sortKeyCount: number;
  /**
   * The page statement also counts every match, in each row's `total_matches` column: a first page of a
   * search limited to a few ids, which reads all its matches to sort them anyway.
   */
  pageCounts: boolean;
  /** The page statements plan alike for any values (planning.ts, plansAlike): each may be prepared and its plan kept. */
  plannedOnce: boolean;
}

const TABLE_OF_TYPE: Record<string, string> = {
  token: 'search_token',
  string: 'search_string',
  date: 'search_date',
  reference: 'search_reference',
  uri: 'search_uri',
  number: 'search_number',
  quantity: 'search_quantity',
  composite: 'search_composite',
  special: 'search_position',
};

/** Builds the page statements (keyset-paged, no OFFSET) and the count query of a parsed search. */
export function buildSearchSql(request: SearchRequest, scope?: ScopePredicate): SearchSql {
  const countBinder = new Binder();
  const matchSql = `SELECT 1 FROM resource r WHERE ${whereClause('r', request.resourceTypes, request.filters, countBinder, scope)}`;
  const countSql = `SELECT count(*)::int AS total FROM (${matchSql}) m`;
  const [first, ...others] = request.sort;
  const driving = first && !request.filters.some(isNarrow) ? drivingIndexOf(first.param) : undefined;
  const pageCounts = !driving && !request.cursor && request.resourceTypes.length === 1 && request.filters.some((f) => f.kind === 'id' && !f.not && f.values.length <= MAX_COUNTED_IN_PAGE);
  const segments = driving && first ? drivenSegments(request, driving, first.descending, others, scope) : [plainSegment(request, request.sort, scope, pageCounts)];
  const sortKeyCount = request.sort.length + (driving?.prefixed ? 1 : 0);
  return { segments, matchSql, countSql, countParams: countBinder.params, sortKeyCount, pageCounts, plannedOnce: plansAlike(request.filters) };
}

const TIE_BREAK: SortKey[] = [
  { expression: 'r.resource_type', descending: false, nullsFirst: false, cast: 'text', column: true },
  { expression: 'r.id', descending: false, nullsFirst: false, cast: 'text', column: true },
];

/** Paging backwards reads the same order reversed; the caller reverses the rows back. */
const reversed = (keys: SortKey[], backwards: boolean) => (backwards ? keys.map((k) => ({ ...k, descending: !k.descending, nullsFirst: !k.nullsFirst })) : keys);

const orderBy = (keys: SortKey[]) => keys.map((k) => `${k.expression} ${k.descending ? 'DESC' : 'ASC'} NULLS ${k.nullsFirst ? 'FIRST' : 'LAST'}`).join(', ');

const keyColumns = (keys: SortKey[]) => keys.map((k, i) => `${k.expression} AS k${i}, (${k.expression})::text AS c${i}`).join(', ');

/**
 * One page statement: the resources of `source` meeting `conditions`, with every key as columns
 * `k0…`/`c0…`, ordered by the keys from `keys[compareFrom]` on (those before are equal on every row),
 * after `cursor`, at most `count + 1`. With `fence`, keys that are correlated subqueries (a resource's
 * lowest value of a parameter) are computed once per row inside a subquery that OFFSET 0 keeps from being
 * merged, then ordered and compared outside; without, keys are ordered and compared in place, so an
 * index serves both the order and the cursor.
 */
function pageStatement(binder: Binder, source: string, conditions: string[], keys: SortKey[], options: { compareFrom: number; cursor?: Array<string | null>; fence: boolean; count: number; countAll?: boolean }): PageSegment {
  const { compareFrom, cursor, fence, count, countAll } = options;
  const columns = `r.resource_type, r.id, r.content, ${keyColumns(keys)}${countAll ? ', (count(*) OVER ())::int AS total_matches' : ''}`;
  const compared = keys.slice(compareFrom).map((k, i) => (fence ? { ...k, expression: `q.k${compareFrom + i}` } : k));
  const after = cursor ? [keysetAfter(compared, cursor.slice(compareFrom), binder)] : [];
  const order = `ORDER BY ${orderBy(compared)} LIMIT ${binder.bind(count + 1, 'int')}`;
  const sql = fence
    ? `SELECT q.* FROM (SELECT ${columns} FROM ${source} WHERE ${conditions.join(' AND ')} OFFSET 0) q WHERE ${after[0] ?? 'true'} ${order}`
    : `SELECT ${columns} FROM ${source} WHERE ${[...conditions, ...after].join(' AND ')} ${order}`;
  return { sql, params: binder.params };
}

/** The one statement of a search whose first sort key is not an indexed parameter. */
function plainSegment(request: SearchRequest, rules: SortRule[], scope: ScopePredicate | undefined, countAll: boolean): PageSegment {
  const binder = new Binder();
  const keys = reversed([...sortKeys(rules, binder), ...TIE_BREAK], request.cursor?.backwards ?? false);
  const options = { compareFrom: 0, cursor: request.cursor?.values, fence: !keys.every((k) => k.column), count: request.count, countAll };
  if (countAll && scope) {
    // A page that counts its matches reads them all (a few ids): found first as with all access, behind an
    // OFFSET 0 fence, then checked against the access. Merged into one plan, the access's anti-joins changed
    // the planner's estimates and it looped over their rows for every id (125 ms instead of 36 for 2,400 ids).
    const found = `(SELECT * FROM resource r WHERE ${matchConditions('r', request.resourceTypes, request.filters, binder, scope).join(' AND ')} OFFSET 0) r`;
    return pageStatement(binder, found, [scope('r', request.resourceTypes, binder) ?? 'true'], keys, options);
  }
  const conditions = [whereClause('r', request.resourceTypes, request.filters, binder, scope)];
  return pageStatement(binder, 'resource r', conditions, keys, options);
}

/** An index table whose ordered index can drive a sort: its table and the column a resource sorts by. */
interface DrivingIndex {
  table: string;
  param: string;
  /** Column ascending / descending (dates: the range's low bound ascending, its high bound descending). */
  column: (descending: boolean) => string;
  cast: SortKey['cast'];
  /**
   * The index holds the column's first INDEXED_PREFIX characters only (token codes): the walk orders by
   * that prefix, then by the whole value among rows sharing it, as two keys.
   */
  prefixed?: boolean;
}

function drivingIndexOf(param: SortRule['param']): DrivingIndex | undefined {
  if (typeof param === 'string') return undefined; // _id, _lastUpdated: columns of the resource table
  switch (param.type) {
    case 'date':
      return { table: 'search_date', param: param.code, column: (descending) => (descending ? 'high' : 'low'), cast: 'timestamptz' };
    case 'number':
      return { table: 'search_number', param: param.code, column: () => 'value', cast: 'numeric' };
    case 'token':
      return { table: 'search_token', param: param.code, column: () => 'code', cast: 'text', prefixed: true };
    default:
      return undefined; // strings and uris are indexed with text_pattern_ops, an order ORDER BY cannot use
  }
}

/**
 * A sort whose first key is a date, number or token parameter: the parameter's ordered index walks the
 * resources in sort order, so a page costs its own rows, not a sort of every match (`_sort=date` over a
 * whole type, page 50). A resource sorts by its lowest value ascending and its highest descending: it
 * is read at the index row holding that value, the other rows of the resource being skipped. Resources
 * without a value come last, in a second statement that runs only once the first is exhausted.
 */
function drivenSegments(request: SearchRequest, driving: DrivingIndex, descending: boolean, others: SortRule[], scope?: ScopePredicate): PageSegment[] {
  const backwards = request.cursor?.backwards ?? false;
  const cursor = request.cursor?.values;
  const cursorHasValue = cursor !== undefined && cursor[0] !== null;
  const present = (withCursor: boolean): PageSegment => {
    const binder = new Binder();
    const column = driving.column(descending);
    const param = binder.bind(driving.param);
    // The segment holds no NULLs; placing them where a backward index scan puts them lets the index
    // give the descending order too (a btree read backwards is DESC NULLS FIRST).
    const first: SortKey = { expression: `o.${column}`, descending, nullsFirst: descending, cast: driving.cast, column: true };
    const leading = driving.prefixed ? [{ ...first, expression: `left(o.${column}, ${INDEXED_PREFIX})` }, first] : [first];
    const keys = reversed([...leading, ...sortKeys(others, binder), ...TIE_BREAK], backwards);
    // The row holding the resource's sort value: no other row of it sorts before (ties: the first by ctid).
    const better = `e.${column} ${descending ? '>' : '<'} o.${column} OR (e.${column} = o.${column} AND e.ctid < o.ctid)`;
    const conditions = [
      typeTest('o.resource_type', request.resourceTypes, binder),
      `o.param = ${param}`,
      `o.${column} IS NOT NULL`,
      `NOT EXISTS (SELECT 1 FROM ${driving.table} e WHERE e.resource_type = o.resource_type AND e.resource_id = o.resource_id AND e.param = o.param AND (${better}))`,
      whereClause('r', request.resourceTypes, request.filters, binder, scope),
    ];
    // Never fenced: the walk down the index is the point, the keys after the first are only tie-breaks.
    const source = `${driving.table} o JOIN resource r ON r.resource_type = o.resource_type AND r.id = o.resource_id`;
    return pageStatement(binder, source, conditions, keys, { compareFrom: 0, cursor: withCursor ? cursor : undefined, fence: false, count: request.count });
  };
  const missing = (withCursor: boolean): PageSegment => {
    const binder = new Binder();
    const rest = reversed([...sortKeys(others, binder), ...TIE_BREAK], backwards);
    const nullKey: SortKey = { expression: `NULL::${driving.cast}`, descending, nullsFirst: false, cast: driving.cast };
    const conditions = [
      whereClause('r', request.resourceTypes, request.filters, binder, scope),
      `NOT EXISTS (SELECT 1 FROM ${driving.table} e WHERE e.resource_type = r.resource_type AND e.resource_id = r.id AND e.param = ${binder.bind(driving.param)} AND e.${driving.column(descending)} IS NOT NULL)`,
    ];
    // Every row's driving keys are NULL: the order and the cursor start after them.
    const nullKeys = driving.prefixed ? [nullKey, nullKey] : [nullKey];
    return pageStatement(binder, 'resource r', conditions, [...nullKeys, ...rest], { compareFrom: nullKeys.length, cursor: withCursor ? cursor : undefined, fence: !rest.every((k) => k.column), count: request.count });
  };
  // Forward: valued resources, then valueless ones. Backwards: the same, read from the other end.
  if (!backwards) return cursor && !cursorHasValue ? [missing(true)] : [present(true), missing(false)];
  return cursorHasValue ? [present(true)] : [missing(true), present(false)];
}

/** The WHERE clause selecting live resources of `types` (under `alias`) that match every filter. */
export function whereClause(alias: string, types: string[], filters: Filter[], binder: Binder, scope?: ScopePredicate): string {
  const conditions = matchConditions(alias, types, filters, binder, scope);
  const scoped = scope?.(alias, types, binder);
  if (scoped) conditions.push(scoped);
  return conditions.join(' AND ');
}

/** The conditions of whereClause but the access's on the row itself (`scope` still applies inside chains and `_has`). */
function matchConditions(alias: string, types: string[], filters: Filter[], binder: Binder, scope?: ScopePredicate): string[] {
  const listed = types.length === 1 ? filters.find((f): f is Extract<Filter, { kind: 'id' }> => f.kind === 'id' && !f.not) : undefined;
  const conditions = [typeTest(`${alias}.resource_type`, types, binder), `NOT ${alias}.deleted`];
  if (listed) conditions.push(...listedConditions(alias, types, listed, filters, binder, scope));
  else conditions.push(...filterConditions(filters, alias, types, binder, scope));
  return conditions;
}

/** `alias`, a resource of `resourceType`, matches every filter: a search restriction of an access context (search/restriction.ts). */
export function filtersCondition(alias: string, resourceType: string, filters: Filter[], binder: Binder): string {
  return filters.length === 0 ? 'true' : filterConditions(filters, alias, [resourceType], binder).join(' AND ');
}

/**
 * The conditions of a search limited to a list of ids (`_id`, or a `_has` read first). The other filters
 * are checked on the ids alone, in a subquery kept apart (OFFSET 0), before any resource row is read; and
 * the ids limit each filter's index subquery too. Left to itself the planner misjudges how many of the
 * ids a range keeps (the ids are all patients, the range's rows are every birth date): it read 2,565
 * patients to keep 173, at 45 ms, where checking the ids first takes 17 ms.
 */
function listedConditions(alias: string, types: string[], listed: Extract<Filter, { kind: 'id' }>, filters: Filter[], binder: Binder, scope?: ScopePredicate): string[] {
  const ids = bindIds(listed.values, binder);
  const others = filters.filter((f) => f !== listed);
  // A _lastUpdated filter is on the resource row itself.
  const onRow = others.filter((f) => f.kind === 'lastUpdated').map((f) => condition(f, alias, types, binder, scope, ids));
  const onIds = others.filter((f) => f.kind !== 'lastUpdated');
  if (onIds.length === 0) return [`${alias}.id = ANY(${ids})`, ...onRow];
  const x = binder.alias('x');
  const checks = filterConditions(onIds, x, types, binder, scope, ids).join(' AND ');
  return [`${alias}.id IN (SELECT ${x}.id FROM unnest(${ids}) ${x}(id) WHERE ${checks} OFFSET 0)`, ...onRow];
}

/**
 * `column` holds one of `types`, as a bound constant: never correlated to an outer row, which would make
 * PostgreSQL rerun a subquery for every candidate (a `_has` took minutes at a million resources).
 */
function typeTest(column: string, types: string[], binder: Binder): string {
  return types.length === 1 ? `${column} = ${binder.bind(types[0])}` : `${column} = ANY(${binder.bind(types, 'text[]')})`;
}

/**
 * A list of ids as a text array; a long one (planning.ts) as one comma-separated string split by
 * PostgreSQL. FHIR ids have no commas; a searched value that does keeps the array form.
 */
function bindIds(ids: string[], binder: Binder): string {
  return ids.length >= IDS_AS_ONE_STRING_FROM && !ids.some((id) => id.includes(',')) ? `string_to_array(${binder.bind(ids.join(','))}::text, ',')` : binder.bind(ids, 'text[]');
}

/** `alias` is among the resources of `types` having index rows in `table` that satisfy `rowCondition`. */
function indexed(alias: string, types: string[], table: string, param: string, binder: Binder, rowCondition: (i: string) => string, negate: boolean, ids: string | undefined): string {
  const i = binder.alias('i');
  const typeTest = types.length === 1 ? `${i}.resource_type = ${binder.bind(types[0])}` : `${i}.resource_type = ANY(${binder.bind(types, 'text[]')})`;
  const among = ids ? ` AND ${i}.resource_id = ANY(${ids})` : '';
  const subquery = `SELECT ${i}.resource_type, ${i}.resource_id FROM ${table} ${i} WHERE ${typeTest} AND ${i}.param = ${binder.bind(param)}${among} AND (${rowCondition(i)})`;
  const member = types.length === 1 ? `${alias}.id ${negate ? 'NOT IN' : 'IN'} (${subquery.replace(`SELECT ${i}.resource_type, ${i}.resource_id`, `SELECT ${i}.resource_id`)})` : `(${alias}.resource_type, ${alias}.id) ${negate ? 'NOT IN' : 'IN'} (${subquery})`;
  return member;
}

/**
 * The AND of `filters` as conditions on the resource row `alias`. Date filters repeated on a parameter
 * that gives a resource at most one index row (`singleRow`: `birthdate`, an immunization's `date`) must all
 * hold on that one row, so one index subquery decides them: a range `ge…&lt…` is then read once, as one
 * range, instead of as two half-open ones each joined to the other. Filters that intersect on ids
 * (planning.ts) are given to PostgreSQL as one join of their index rows (`joinedIndexRows`).
 */
function filterConditions(filters: Filter[], alias: string, types: string[], binder: Binder, scope?: ScopePredicate, ids?: string): string[] {
  const sameRow = new Map<string, Array<Extract<Filter, { kind: 'date' }>>>();
  for (const filter of filters) {
    if (filter.kind === 'date' && filter.param.singleRow) sameRow.set(filter.param.code, [...(sameRow.get(filter.param.code) ?? []), filter]);
  }
  const merged = new Set<Filter>();
  // A condition, or index rows to be joined with the search's other joinable ones.
  const slots: Array<string | IndexRows> = [];
  const joins = types.length === 1 && ids === undefined;
  for (const group of sameRow.values()) {
    if (group.length < 2) continue;
    for (const filter of group) merged.add(filter);
    const each = group.map((filter) => indexRowsOf(filter, binder, scope));
    const rows = { ...each[0]!, rows: (i: string) => each.map((r) => r.rows(i)).join(' AND ') };
    slots.push(joins && group.every(intersectsOnIds) && !rows.negate ? rows : onIndexRows(rows, alias, types, binder, ids));
  }
  for (const filter of filters) {
    if (merged.has(filter)) continue;
    const rows = joins && isIndexedFilter(filter) && intersectsOnIds(filter) ? indexRowsOf(filter, binder, scope) : undefined;
    slots.push(rows && !rows.negate ? rows : condition(filter, alias, types, binder, scope, ids));
  }
  const joined = slots.filter((slot): slot is IndexRows => typeof slot !== 'string');
  if (joined.length < 2) return slots.map((slot) => (typeof slot === 'string' ? slot : onIndexRows(slot, alias, types, binder, ids)));
  const at = slots.indexOf(joined[0]!);
  const conditions = slots.filter((slot): slot is string => typeof slot === 'string');
  conditions.splice(at, 0, joinedIndexRows(joined, alias, types[0]!, binder));
  return conditions;
}

/**
 * `alias` has index rows matching each of `each`, decided as one join of those rows on the resource id
 * before any resource row is read. As separate `IN` subqueries, each semi-joined to the resource row,
 * PostgreSQL read the resource of every candidate the first filter found before checking the second
 * (`family=Martin&birthdate=1980`: 1,100 patients read to keep 16); joined, it can intersect the ids
 * (a hash join of both index scans) or probe one index from the other, whichever its statistics favour.
 */
function joinedIndexRows(each: IndexRows[], alias: string, resourceType: string, binder: Binder): string {
  const aliases = each.map(() => binder.alias('i'));
  const [first] = aliases as [string];
  const from = each.map((rows, n) => (n === 0 ? `${rows.table} ${first}` : `JOIN ${rows.table} ${aliases[n]} ON ${aliases[n]}.resource_type = ${first}.resource_type AND ${aliases[n]}.resource_id = ${first}.resource_id`));
  const where = each.map((rows, n) => `${aliases[n]}.resource_type = ${binder.bind(resourceType)} AND ${aliases[n]}.param = ${binder.bind(rows.param)} AND (${rows.rows(aliases[n]!)})`);
  return `${alias}.id IN (SELECT ${first}.resource_id FROM ${from.join(' ')} WHERE ${where.join(' AND ')})`;
}

/** `alias` has (or, negated, has not) index rows matching `rows`. */
function onIndexRows(rows: IndexRows, alias: string, types: string[], binder: Binder, ids?: string): string {
  return indexed(alias, types, rows.table, rows.param, binder, rows.rows, rows.negate, ids);
}

/** `filter` as a condition on the resource row `alias`; `ids`, when bound, are the only ids it can have. */
function condition(filter: Filter, alias: string, types: string[], binder: Binder, scope?: ScopePredicate, ids?: string): string {
  switch (filter.kind) {
    case 'id':
      return `${alias}.id ${filter.not ? '<>' : '='} ${filter.not ? 'ALL' : 'ANY'}(${bindIds(filter.values, binder)})`;
    case 'lastUpdated':
      return anyOf(filter.values.map(({ prefix, range }) => dateCondition(prefix, range, `${alias}.last_updated`, `(${alias}.last_updated + interval '1 millisecond')`, binder)));
    case 'has':
      return `${alias}.id IN (${hasSources(filter, types, binder, scope)})`;
    case 'compartment': {
      // The members written with each resource (compartment_member, compartment.ts): its own resource included.
      const i = binder.alias('p');
      return `${alias}.id IN (SELECT ${i}.resource_id FROM compartment_member ${i} WHERE ${i}.compartment_type = ${binder.bind(filter.compartmentType)}
        AND ${i}.compartment_id = ${binder.bind(filter.id)} AND ${i}.resource_type = ${binder.bind(types[0])})`;
    }
    default:
      return onIndexRows(indexRowsOf(filter, binder, scope), alias, types, binder, ids);
  }
}

type IndexedFilter = Exclude<Filter, { kind: 'id' | 'lastUpdated' | 'has' | 'compartment' }>;

const isIndexedFilter = (filter: Filter): filter is IndexedFilter => !['id', 'lastUpdated', 'has', 'compartment'].includes(filter.kind);

function indexRowsOf(filter: IndexedFilter, binder: Binder, scope?: ScopePredicate): IndexRows {
  const index = (table: string, param: string, rows: (i: string) => string, negate = false): IndexRows => ({ table, param, rows, negate });
  switch (filter.kind) {
    case 'token': {
      if (filter.modifier === 'of-type') {
        // Indexed apart (extract.ts): one key per identifier type coding, with the identifier's value.
        const keys = filter.values.map((v) => ofTypeKey(v.typeSystem, v.typeCode, v.value));
        return index('search_composite', ofTypeParam(filter.param.code), (i) => indexedAmong(`${i}.key`, keys, binder));
      }
      if (filter.modifier === 'in' || filter.modifier === 'not-in' || filter.modifier === 'above' || filter.modifier === 'below') {
        return index('search_token', filter.param.code, codeSetRows(filter.values, binder), filter.modifier === 'not-in');
      }
      if (filter.modifier === 'text') {
        const rows = (i: string) =>
          anyOf(
            filter.values.map((v) => {
              const text = likePrefix(normalizeString(v.text ?? ''));
              return `(${i}.text LIKE ${binder.bind(text)} OR ${i}.text LIKE ${binder.bind(`% ${text}`)})`;
            }),
          );
        return index('search_token', filter.param.code, rows);
      }
      return index('search_token', filter.param.code, codeRows(filter.values, binder), filter.modifier === 'not');
    }
    case 'string':
      return index('search_string', filter.param.code, (i) =>
        anyOf(
          filter.values.map((v) => {
            if (filter.modifier === 'exact') return `${i}.value = ${binder.bind(v)}`;
            if (filter.modifier === 'contains') return `${i}.normalized LIKE ${binder.bind(`%${likePrefix(normalizeString(v))}`)}`;
            return indexedStartsWith(`${i}.normalized`, normalizeString(v), binder);
          }),
        ),
      );
    case 'date':
      return index('search_date', filter.param.code, (i) =>
        anyOf(filter.values.map(({ prefix, range }) => dateCondition(prefix, range, `${i}.low`, `${i}.high`, binder))),
      );
    case 'reference':
      return index('search_reference', filter.param.code, (i) => {
        if (filter.modifier === 'identifier') {
          return anyOf(
            (filter.identifiers ?? []).map((v) => {
              const parts = [`${i}.identifier_value = ${binder.bind(v.code ?? '')}`];
              if (v.system) parts.push(`${i}.identifier_system = ${binder.bind(v.system)}`);
              return `(${parts.join(' AND ')})`;
            }),
          );
        }
        return anyOf(
          filter.values.map((v) => {
            if (v.url !== undefined) return `${i}.url = ${binder.bind(v.url)}`;
            const parts = [`${i}.target_id = ${binder.bind(v.id)}`];
            if (v.type) parts.push(`${i}.target_type = ${binder.bind(v.type)}`);
            return `(${parts.join(' AND ')})`;
          }),
        );
      });
    case 'uri':
      return uriIndexRows(filter, binder);
    case 'number':
      return index('search_number', filter.param.code, (i) =>
        anyOf(filter.values.map(({ prefix, value }) => numberCondition(prefix, value, `${i}.value`, binder))),
      );
    case 'quantity':
      return index('search_quantity', filter.param.code, (i) => anyOf(filter.values.map((value) => quantityCondition(value, i, binder))));
    case 'composite':
      if ('dates' in filter) {
        // Indexed as date rows beside the key of the other components (extract.ts).
        return index('search_date', filter.param.code, (i) =>
          anyOf(filter.dates.map(({ key, prefix, range }) => `(${i}.composite_key = ${binder.bind(key)} AND ${dateCondition(prefix, range, `${i}.low`, `${i}.high`, binder)})`)),
        );
      }
      if ('quantities' in filter) {
        // Indexed as quantity rows beside the key of the other components (extract.ts).
        return index('search_quantity', filter.param.code, (i) =>
          anyOf(filter.quantities.map(({ key, quantity }) => `(${i}.composite_key = ${binder.bind(key)} AND ${quantityCondition(quantity, i, binder)})`)),
        );
      }
      return index('search_composite', filter.param.code, (i) => indexedAmong(`${i}.key`, filter.values, binder));
    case 'near':
      return index('search_position', filter.param.code, (i) => anyOf(filter.values.map((point) => nearCondition(point, i, binder))));
    case 'missing': {
      const table = isQuantityComposite(filter.param) ? 'search_quantity' : isDateComposite(filter.param) ? 'search_date' : TABLE_OF_TYPE[filter.param.type]!;
      return index(table, filter.param.code, () => 'true', filter.missing);
    }
    case 'chain':
      return index('search_reference', filter.param.code, (i) =>
        anyOf(
          filter.targets.map(({ type, inner }) => {
            const c = binder.alias('c');
            const target = `SELECT ${c}.id FROM resource ${c} WHERE ${whereClause(c, [type], [inner], binder, scope)}`;
            return `(${i}.target_type = ${binder.bind(type)} AND ${i}.target_id IN (${target}))`;
          }),
        ),
      );
  }
}

type HasFilter = Extract<Filter, { kind: 'has' }>;

/** The ids of `types` that the resources matching a `_has` filter reference: one row per referring resource. */
function hasSources(filter: HasFilter, types: string[], binder: Binder, scope?: ScopePredicate): string {
  const i = binder.alias('h');
  // A restricted caller's access, when it can be decided on the sources' keys (not for a Binary or a
  // restricted type): then the sources are filtered on their index rows, as for all access, and not
  // joined to their resource rows first (a parallel scan of the whole reference index, 6x slower).
  const onKeys = scope ? scope.onKeys?.([filter.sourceType]) : (() => undefined);
  const scopedOn = (type: string, id: string) => {
    const scoped = onKeys?.(type, id, binder);
    return scoped ? ` AND ${scoped}` : '';
  };
  const toRecordPatient = onKeys !== undefined && types.length === 1 && types[0] === 'Patient' && followsRecordPatient(filter.sourceType, filter.param.code);
  const onRows = toRecordPatient && isIndexedFilter(filter.inner) ? indexRowsOf(filter.inner, binder, scope) : undefined;
  if (onRows && !onRows.negate) {
    // From records to the patient they are about (`_has:Immunization:patient:…`): every index row names
    // that patient, so the rows that match are enough. One row per matching index row, not per record.
    return `SELECT ${i}.patient_id AS target_id ${matchingRows(onRows, filter.sourceType, i, binder)} AND ${i}.patient_id IS NOT NULL${scopedOn(`${i}.resource_type`, `${i}.resource_id`)}`;
  }
  const links = `${i}.resource_type = ${binder.bind(filter.sourceType)} AND ${i}.param = ${binder.bind(filter.param.code)} AND ${typeTest(`${i}.target_type`, types, binder)}`;
  if (onKeys !== undefined && filter.inner.kind !== 'lastUpdated') {
    // Index rows exist for live resources only, so a filter on index rows needs no lookup of the source
    // itself (one per source: a third of the time of a `_has` on 2,000 immunizations). The source's id is
    // named `id`, as on a resource row, for the filter's condition.
    return `SELECT ${i}.target_id FROM (SELECT resource_type, resource_id AS id, param, target_type, target_id FROM search_reference) ${i}
        WHERE ${links} AND ${condition(filter.inner, i, [filter.sourceType], binder, scope)}${scopedOn(`${i}.resource_type`, `${i}.id`)}`;
  }
  const s = binder.alias('s');
  return `SELECT ${i}.target_id FROM search_reference ${i} JOIN resource ${s} ON ${s}.resource_type = ${i}.resource_type AND ${s}.id = ${i}.resource_id
        WHERE ${links} AND ${whereClause(s, [filter.sourceType], [filter.inner], binder, scope)}`;
}

/**
 * How many sources a `_has` filter has (counted up to `limit`: `limit` or more is too many to list) and,
 * in one comma-separated string, the distinct ids they reference (indexed references have FHIR ids,
 * which hold no comma). One row: thousands of rows cost the server more to take apart than the search.
 */
export function hasSourcesStatement(filter: HasFilter, types: string[], limit: number, scope?: ScopePredicate): PageSegment {
  const binder = new Binder();
  const sources = `${hasSources(filter, types, binder, scope)} LIMIT ${binder.bind(limit, 'int')}`;
  return { sql: `SELECT count(*)::int AS sources, string_agg(DISTINCT s.target_id, ',') AS targets FROM (${sources}) s`, params: binder.params };
}

/** Token rows holding one of `values` (`[system]|[code]`, `|code` for no system, `system|` for any code). */
function codeRows(values: TokenValue[], binder: Binder): (i: string) => string {
  return (i) =>
    anyOf(
      values.map((v) => {
        const parts: string[] = [];
        if (v.code !== undefined) parts.push(indexedEqual(`${i}.code`, v.code, binder));
        if (v.system === null) parts.push(`${i}.system IS NULL`);
        else if (v.system !== undefined) parts.push(indexedEqual(`${i}.system`, v.system, binder));
        return parts.length > 0 ? `(${parts.join(' AND ')})` : 'true';
      }),
    );
}

/**
 * Token rows holding a (system, code) pair of `sets`, expanded at parse time from `:in`, `:not-in`,
 * `:above` or `:below`; a code stored without a system (none implied by a binding) matches a code of any
 * system of the set.
 */
function codeSetRows(sets: Array<{ system: string; codes: string[] }>, binder: Binder): (i: string) => string {
  const allCodes = [...new Set(sets.flatMap((v) => v.codes))];
  return (i) =>
    allCodes.length === 0
      ? 'false'
      : anyOf([
          ...sets.map((v) => `(${indexedEqual(`${i}.system`, v.system, binder)} AND ${indexedAmong(`${i}.code`, v.codes, binder)})`),
          `(${i}.system IS NULL AND ${indexedAmong(`${i}.code`, allCodes, binder)})`,
        ]);
}

/**
 * For a `_has` whose inner filter is decided by one parameter's index rows (a code, a date, a reference…,
 * not a chain and not a negation): how many rows match, counted up to `limit` without looking up any
 * reference (from the index alone where it holds the columns compared), a bound on the sources that costs
 * milliseconds even for a code on 200,000 immunizations. Undefined for any other inner filter.
 */
export function hasIndexRowsStatement(filter: HasFilter, limit: number): PageSegment | undefined {
  const inner = filter.inner;
  if (!isIndexedFilter(inner) || inner.kind === 'chain') return undefined;
  const binder = new Binder();
  const rows = indexRowsOf(inner, binder);
  if (rows.negate) return undefined;
  const sql = `SELECT count(*)::int AS n FROM (SELECT 1 ${matchingRows(rows, filter.sourceType, 'i', binder)} LIMIT ${binder.bind(limit, 'int')}) c`;
  return { sql, params: binder.params };
}

/** `FROM … WHERE …` of the index rows of `resourceType` matching `rows`, under alias `i`. */
function matchingRows(rows: IndexRows, resourceType: string, i: string, binder: Binder): string {
  return `FROM ${rows.table} ${i} WHERE ${i}.resource_type = ${binder.bind(resourceType)} AND ${i}.param = ${binder.bind(rows.param)} AND (${rows.rows(i)})`;
}

/**
 * R4 search.html#prefix for ranges: the target [low, high) against the search value's range [ql, qh).
 * eq: the search range contains the target; gt/lt: the target reaches above/below it; sa/eb: the target
 * starts after / ends before it; ap: the ranges overlap once widened by 10% of the distance to now.
 */
function dateCondition(prefix: Prefix, range: DateRange, low: string, high: string, binder: Binder): string {
  // Bound on first use only: a parameter the statement never mentions has no type PostgreSQL can infer,
  // and the whole query fails ("could not determine data type of parameter").
  let qlBound: string | undefined;
  let qhBound: string | undefined;
  const ql = () => (qlBound ??= binder.bind(range.low.toISOString(), 'timestamptz'));
  const qh = () => (qhBound ??= binder.bind(range.high.toISOString(), 'timestamptz'));
  const eq = () => `(${low} >= ${ql()} AND ${high} <= ${qh()})`;
  switch (prefix) {
    case 'eq':
      // `low < qh` follows from `high <= qh` (a range ends after it starts) but bounds the index on `low`
      // at both ends: without it the index read every later birth date, the planner saw a filter keeping
      // a quarter of the rows, and `family=Martin&birthdate=1980-05-01` started from the surname's 1,700
      // patients (86 ms at 100,000 patients) rather than from the date's few.
      return `(${low} >= ${ql()} AND ${low} < ${qh()} AND ${high} <= ${qh()})`;
    case 'ne':
      return `NOT ${eq()}`;
    case 'gt':
      return `${high} > ${qh()}`;
    case 'lt':
      return `${low} < ${ql()}`;
    // The leading bound is implied by the disjunction; stated alone, an index on high (low) can use it.
    case 'ge':
      return `(${high} > ${ql()} AND (${high} > ${qh()} OR ${eq()}))`;
    case 'le':
      return `(${low} < ${qh()} AND (${low} < ${ql()} OR ${eq()}))`;
    case 'sa':
      return `${low} >= ${qh()}`;
    case 'eb':
      return `${high} <= ${ql()}`;
    case 'ap': {
      const gap = Math.abs(Date.now() - range.low.getTime()) * 0.1;
      const wideLow = binder.bind(new Date(range.low.getTime() - gap).toISOString(), 'timestamptz');
      const wideHigh = binder.bind(new Date(range.high.getTime() + gap).toISOString(), 'timestamptz');
      return `(${low} < ${wideHigh} AND ${high} > ${wideLow})`;
    }
  }
}

/**
 * Numbers carry their precision (R4 search.html#number): `100` means [99.5, 100.5), `100.00` means
 * [99.995, 100.005); `halfWidth` is given when the value was converted (a quantity in base units).
 * Comparisons other than eq/ne/ap use the value as written.
 */
/** A quantity search value on the quantity index row `i`. */
function quantityCondition({ prefix, value, system, code, canonical }: QuantityValue, i: string, binder: Binder): string {
  if (canonical) {
    // Base units against base units: the canonical unit stands for the UCUM system and every code
    // convertible to it (mg, ug, g…); a quantity in another dimension (mL) has another.
    return `(${i}.canonical_unit = ${binder.bind(canonical.unit)} AND ${numberCondition(prefix, canonical.value, `${i}.canonical_value`, binder, canonical.halfWidth)})`;
  }
  const parts = [numberCondition(prefix, value, `${i}.value`, binder)];
  if (system) parts.push(`${i}.system = ${binder.bind(system)}`);
  if (code) parts.push(system ? `${i}.code = ${binder.bind(code)}` : `(${i}.code = ${binder.bind(code)} OR ${i}.unit = ${binder.bind(code)})`);
  return `(${parts.join(' AND ')})`;
}

function numberCondition(prefix: Prefix, value: string, column: string, binder: Binder, halfWidth = halfUnitOfLastDigit(value)): string {
  const q = binder.bind(value, 'numeric');
  switch (prefix) {
    case 'eq':
    case 'ne': {
      const half = binder.bind(halfWidth, 'numeric');
      const within = `(${column} >= ${q} - ${half} AND ${column} < ${q} + ${half})`;
      return prefix === 'eq' ? within : `NOT ${within}`;
    }
    case 'gt':
    case 'sa':
      return `${column} > ${q}`;
    case 'lt':
    case 'eb':
      return `${column} < ${q}`;
    case 'ge':
      return `${column} >= ${q}`;
    case 'le':
      return `${column} <= ${q}`;
    case 'ap':
      return `${column} BETWEEN ${q} - abs(${q}) * 0.1 AND ${q} + abs(${q}) * 0.1`;
  }
}

function sortKeys(rules: SortRule[], binder: Binder): SortKey[] {
  return rules.map(({ param, descending }) => {
    // Never NULL: NULLs placed as a backward index scan has them, so the index serves `-_id` and `-_lastUpdated`.
    if (param === '_id') return { expression: 'r.id', descending, nullsFirst: descending, cast: 'text', column: true };
    if (param === '_lastUpdated') return { expression: 'r.last_updated', descending, nullsFirst: descending, cast: 'timestamptz', column: true };
    return { ...sortExpression(param, descending, binder), descending, nullsFirst: false };
  });
}

/** The value a resource sorts by: its lowest value ascending, its highest descending (dates: low/high bound). */
function sortExpression(param: SearchParamDefinition, descending: boolean, binder: Binder): Pick<SortKey, 'expression' | 'cast'> {
  const agg = descending ? 'max' : 'min';
  const s = binder.alias('o');
  const from = (table: string) => `FROM ${table} ${s} WHERE ${s}.resource_type = r.resource_type AND ${s}.resource_id = r.id AND ${s}.param = ${binder.bind(param.code)}`;
  switch (param.type) {
    case 'string':
      return { expression: `(SELECT ${agg}(${s}.normalized) ${from('search_string')})`, cast: 'text' };
    case 'token':
      return { expression: `(SELECT ${agg}(${s}.code) ${from('search_token')})`, cast: 'text' };
    case 'date':
      return { expression: `(SELECT ${agg}(${s}.${descending ? 'high' : 'low'}) ${from('search_date')})`, cast: 'timestamptz' };
    case 'number':
      return { expression: `(SELECT ${agg}(${s}.value) ${from('search_number')})`, cast: 'numeric' };
    case 'quantity':
      // In base units where UCUM gives them (1 g after 500 mg), else as written.
      return { expression: `(SELECT ${agg}(coalesce(${s}.canonical_value, ${s}.value)) ${from('search_quantity')})`, cast: 'numeric' };
    case 'reference':
      return { expression: `(SELECT ${agg}(coalesce(${s}.target_type || '/' || ${s}.target_id, ${s}.url)) ${from('search_reference')})`, cast: 'text' };
    default:
      return { expression: `(SELECT ${agg}(${s}.uri) ${from('search_uri')})`, cast: 'text' };
  }
}

/** A sort key's value as PostgreSQL writes it as text: a timestamptz (`2024-03-01 10:00:00+00`), a numeric. */
const TIMESTAMPTZ_TEXT = /^(\d{4,})-(\d\d)-(\d\d) ([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?[+-]\d\d(:[0-5]\d){0,2}( BC)?$/;
const NUMERIC_TEXT = /^-?(\d{1,131072}(\.\d{0,16383})?|\.\d{1,16383})$|^NaN$/;

function fitsKey(key: SortKey, value: string | null): boolean {
  if (value === null || key.cast === 'text') return true;
  if (key.cast === 'numeric') return NUMERIC_TEXT.test(value);
  if (value === 'infinity' || value === '-infinity') return true;
  const date = TIMESTAMPTZ_TEXT.exec(value);
  if (!date) return false;
  const [year, month, day] = [Number(date[1]), Number(date[2]), Number(date[3])];
  const calendar = new Date(Date.UTC(year, month - 1, day));
  return calendar.getUTCMonth() === month - 1 && calendar.getUTCDate() === day;
}

/**
 * Rows strictly after the cursor in the order of `keys` (compared lexicographically, NULLs placed as
 * ordered). A key that is a plain column is bounded first (`k >= v AND (k > v OR …)`), so the index
 * that gives the order also starts the scan at the cursor instead of filtering everything before it.
 */
function keysetAfter(keys: SortKey[], values: Array<string | null>, binder: Binder): string {
  // A cursor this server issued has one value per key, each the text of that key's type.
  if (values.length !== keys.length || keys.some((key, n) => !fitsKey(key, values[n]!))) throw invalidCursor();
  const after = (n: number): string => {
    if (n === keys.length) return 'false'; // equal on every key: the cursor's own row
    const key = keys[n]!;
    const value = values[n];
    const rest = after(n + 1);
    const k = key.expression;
    if (value === null) {
      return key.nullsFirst ? `(${k} IS NOT NULL OR (${k} IS NULL AND ${rest}))` : `(${k} IS NULL AND ${rest})`;
    }
    const v = binder.bind(value, key.cast);
    const [beyond, from] = key.descending ? ['<', '<='] : ['>', '>='];
    if (key.column) return rest === 'false' ? `${k} ${beyond} ${v}` : `(${k} ${from} ${v} AND (${k} ${beyond} ${v} OR ${rest}))`;
    const nullsAfter = key.nullsFirst ? '' : ` OR ${k} IS NULL`;
    return `(${k} ${beyond} ${v}${nullsAfter} OR (${k} = ${v} AND ${rest}))`;
  };
  return after(0);
}

/** Mean earth radius (IUGG, km), for the great-circle distance: WGS84 points, within about 0.5 % of the ellipsoid's. */
const EARTH_RADIUS_KM = 6371.0088;
const KM_PER_DEGREE = (Math.PI * EARTH_RADIUS_KM) / 180;

/**
 * A position within `km` of a point: first a latitude/longitude box the index reads (search_position_point),
 * then the haversine distance. The longitude bound is left out where the box would reach a pole or cross
 * the antimeridian (the distance alone decides there).
 */
function nearCondition(point: { latitude: number; longitude: number; km: number }, i: string, binder: Binder): string {
  const dLat = point.km / KM_PER_DEGREE;
  const parts = [`${i}.latitude BETWEEN ${binder.bind(point.latitude - dLat, 'float8')} AND ${binder.bind(point.latitude + dLat, 'float8')}`];
  const cosLat = Math.cos((point.latitude * Math.PI) / 180);
  const dLong = cosLat > 0 ? point.km / (KM_PER_DEGREE * cosLat) : Infinity;
  if (Math.abs(point.latitude) + dLat < 90 && point.longitude - dLong >= -180 && point.longitude + dLong <= 180) {
    parts.push(`${i}.longitude BETWEEN ${binder.bind(point.longitude - dLong, 'float8')} AND ${binder.bind(point.longitude + dLong, 'float8')}`);
  }
  const lat = binder.bind(point.latitude, 'float8');
  const long = binder.bind(point.longitude, 'float8');
  parts.push(
    `2 * ${EARTH_RADIUS_KM} * asin(least(1, sqrt(power(sin(radians(${i}.latitude - ${lat}) / 2), 2) + cos(radians(${lat})) * cos(radians(${i}.latitude)) * power(sin(radians(${i}.longitude - ${long}) / 2), 2)))) <= ${binder.bind(point.km, 'float8')}`,
  );
  return `(${parts.join(' AND ')})`;
}
