import type { DateRange } from './dates.ts';
import { halfUnitOfLastDigit } from './decimal.ts';
import { ofTypeKey, ofTypeParam } from './extract.ts';
import { normalizeString } from './normalize.ts';
import type { SearchParamDefinition } from './registry.ts';
import type { Filter, Prefix, SearchRequest, SortRule, TokenValue } from './types.ts';

/** Collects bound parameters: every value reaches SQL as `$n`, never as text in the statement. */
export class Binder {
  readonly params: unknown[] = [];
  bind(value: unknown, cast?: string): string {
    this.params.push(value);
    return `$${this.params.length}${cast ? `::${cast}` : ''}`;
  }
}

/**
 * A condition every query adds for each resource it reads (`alias` is the resource table's alias):
 * how access control and consent narrow a search inside the SQL, so paging and counts stay right.
 */
export type ScopePredicate = (alias: string, resourceTypes: string[], binder: Binder) => string | undefined;

interface SortKey {
  expression: string;
  descending: boolean;
  nullsFirst: boolean;
  cast: 'text' | 'timestamptz' | 'numeric';
}

export interface SearchSql {
  pageSql: string;
  countSql: string;
  params: unknown[];
  countParams: unknown[];
  /** How many sort keys precede the (resource_type, id) tie-break in each row's `k0…` columns. */
  sortKeyCount: number;
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
};

/** Builds the page query (keyset-paged, no OFFSET) and the count query of a parsed search. */
export function buildSearchSql(request: SearchRequest, scope?: ScopePredicate): SearchSql {
  const where = (binder: Binder) => whereClause('r', request.resourceTypes, request.filters, binder, scope);

  const countBinder = new Binder();
  const countSql = `SELECT count(*)::int AS total FROM resource r WHERE ${where(countBinder)}`;

  const binder = new Binder();
  const keys = sortKeys(request.sort, binder);
  const tieBreak: SortKey[] = [
    { expression: 'r.resource_type', descending: false, nullsFirst: false, cast: 'text' },
    { expression: 'r.id', descending: false, nullsFirst: false, cast: 'text' },
  ];
  const backwards = request.cursor?.backwards ?? false;
  // Paging backwards reads the same order reversed, then the caller reverses the rows back.
  const ordered = [...keys, ...tieBreak].map((k) => (backwards ? { ...k, descending: !k.descending, nullsFirst: !k.nullsFirst } : k));
  const filter = where(binder);
  const columns = ordered.map((k, i) => `${k.expression} AS k${i}, (${k.expression})::text AS c${i}`).join(', ');
  // OFFSET 0 keeps the subquery from being merged into the outer one, so each row's sort keys are
  // computed once, not again inside the cursor condition and the ORDER BY.
  const inner = `SELECT r.resource_type, r.id, r.content, ${columns} FROM resource r WHERE ${filter} OFFSET 0`;
  const after = request.cursor ? cursorCondition(ordered, request.cursor.values, binder) : 'true';
  const orderBy = ordered.map((k, i) => `q.k${i} ${k.descending ? 'DESC' : 'ASC'} NULLS ${k.nullsFirst ? 'FIRST' : 'LAST'}`).join(', ');
  const pageSql = `SELECT q.* FROM (${inner}) q WHERE ${after} ORDER BY ${orderBy} LIMIT ${binder.bind(request.count + 1, 'int')}`;
  return { pageSql, countSql, params: binder.params, countParams: countBinder.params, sortKeyCount: keys.length };
}

/** The WHERE clause selecting live resources of `types` (under `alias`) that match every filter. */
export function whereClause(alias: string, types: string[], filters: Filter[], binder: Binder, scope?: ScopePredicate): string {
  const conditions = [
    typeTest(`${alias}.resource_type`, types, binder),
    `NOT ${alias}.deleted`,
    ...filters.map((filter) => condition(filter, alias, types, binder, scope)),
  ];
  const scoped = scope?.(alias, types, binder);
  if (scoped) conditions.push(scoped);
  return conditions.join(' AND ');
}

/**
 * `column` holds one of `types`, as a bound constant: never correlated to an outer row, which would make
 * PostgreSQL rerun a subquery for every candidate (a `_has` took minutes at a million resources).
 */
function typeTest(column: string, types: string[], binder: Binder): string {
  return types.length === 1 ? `${column} = ${binder.bind(types[0])}` : `${column} = ANY(${binder.bind(types, 'text[]')})`;
}

let aliasCounter = 0;
const nextAlias = (prefix: string) => `${prefix}${++aliasCounter % 1_000_000}`;

/** `alias` is among the resources of `types` having index rows in `table` that satisfy `rowCondition`. */
function indexed(alias: string, types: string[], table: string, param: string, binder: Binder, rowCondition: (i: string) => string, negate = false): string {
  const i = nextAlias('i');
  const typeTest = types.length === 1 ? `${i}.resource_type = ${binder.bind(types[0])}` : `${i}.resource_type = ANY(${binder.bind(types, 'text[]')})`;
  const subquery = `SELECT ${i}.resource_type, ${i}.resource_id FROM ${table} ${i} WHERE ${typeTest} AND ${i}.param = ${binder.bind(param)} AND (${rowCondition(i)})`;
  const member = types.length === 1 ? `${alias}.id ${negate ? 'NOT IN' : 'IN'} (${subquery.replace(`SELECT ${i}.resource_type, ${i}.resource_id`, `SELECT ${i}.resource_id`)})` : `(${alias}.resource_type, ${alias}.id) ${negate ? 'NOT IN' : 'IN'} (${subquery})`;
  return member;
}

function condition(filter: Filter, alias: string, types: string[], binder: Binder, scope?: ScopePredicate): string {
  switch (filter.kind) {
    case 'id':
      return `${alias}.id ${filter.not ? '<>' : '='} ${filter.not ? 'ALL' : 'ANY'}(${binder.bind(filter.values, 'text[]')})`;
    case 'lastUpdated':
      return anyOf(filter.values.map(({ prefix, range }) => dateCondition(prefix, range, `${alias}.last_updated`, `(${alias}.last_updated + interval '1 millisecond')`, binder)));
    case 'token': {
      if (filter.modifier === 'of-type') {
        // Indexed apart (extract.ts): one key per identifier type coding, with the identifier's value.
        const keys = filter.values.map((v) => ofTypeKey(v.typeSystem, v.typeCode, v.value));
        return indexed(alias, types, 'search_composite', ofTypeParam(filter.param.code), binder, (i) => `${i}.key = ANY(${binder.bind(keys, 'text[]')})`);
      }
      if (filter.modifier === 'in' || filter.modifier === 'not-in' || filter.modifier === 'above' || filter.modifier === 'below') {
        // Expanded at parse time: a token matches when its (system, code) is one of the pairs; a code without
        // a system (none implied by a binding) matches a code of any system of the set.
        const sets = filter.values;
        const allCodes = [...new Set(sets.flatMap((v) => v.codes))];
        const rows = (i: string) =>
          allCodes.length === 0
            ? 'false'
            : anyOf([
                ...sets.map((v) => `(${i}.system = ${binder.bind(v.system)} AND ${i}.code = ANY(${binder.bind(v.codes, 'text[]')}))`),
                `(${i}.system IS NULL AND ${i}.code = ANY(${binder.bind(allCodes, 'text[]')}))`,
              ]);
        return indexed(alias, types, 'search_token', filter.param.code, binder, rows, filter.modifier === 'not-in');
      }
      const rows = (i: string) =>
        anyOf(
          (filter.values as Array<TokenValue & { text?: string }>).map((v) => {
            if (filter.modifier === 'text') {
              const text = likePrefix(normalizeString(v.text ?? ''));
              return `(${i}.text LIKE ${binder.bind(text)} OR ${i}.text LIKE ${binder.bind(`% ${text}`)})`;
            }
            const parts: string[] = [];
            if (v.code !== undefined) parts.push(`${i}.code = ${binder.bind(v.code)}`);
            if (v.system === null) parts.push(`${i}.system IS NULL`);
            else if (v.system !== undefined) parts.push(`${i}.system = ${binder.bind(v.system)}`);
            return parts.length > 0 ? `(${parts.join(' AND ')})` : 'true';
          }),
        );
      return indexed(alias, types, 'search_token', filter.param.code, binder, rows, filter.modifier === 'not');
    }
    case 'string':
      return indexed(alias, types, 'search_string', filter.param.code, binder, (i) =>
        anyOf(
          filter.values.map((v) => {
            if (filter.modifier === 'exact') return `${i}.value = ${binder.bind(v)}`;
            const normalized = likePrefix(normalizeString(v));
            return filter.modifier === 'contains' ? `${i}.normalized LIKE ${binder.bind(`%${normalized}`)}` : `${i}.normalized LIKE ${binder.bind(normalized)}`;
          }),
        ),
      );
    case 'date':
      return indexed(alias, types, 'search_date', filter.param.code, binder, (i) =>
        anyOf(filter.values.map(({ prefix, range }) => dateCondition(prefix, range, `${i}.low`, `${i}.high`, binder))),
      );
    case 'reference':
      return indexed(alias, types, 'search_reference', filter.param.code, binder, (i) => {
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
      return indexed(alias, types, 'search_uri', filter.param.code, binder, (i) =>
        anyOf(
          filter.values.map((v) => {
            if (filter.modifier === 'below') return `${i}.uri LIKE ${binder.bind(likePrefix(v))}`;
            if (filter.modifier === 'above') return `${binder.bind(v)} LIKE replace(replace(replace(${i}.uri, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%'`;
            return `${i}.uri = ${binder.bind(v)}`;
          }),
        ),
      );
    case 'number':
      return indexed(alias, types, 'search_number', filter.param.code, binder, (i) =>
        anyOf(filter.values.map(({ prefix, value }) => numberCondition(prefix, value, `${i}.value`, binder))),
      );
    case 'quantity':
      return indexed(alias, types, 'search_quantity', filter.param.code, binder, (i) =>
        anyOf(
          filter.values.map(({ prefix, value, system, code, canonical }) => {
            if (canonical) {
              // Base units against base units: the canonical unit stands for the UCUM system and every code
              // convertible to it (mg, ug, g…); a quantity in another dimension (mL) has another.
              return `(${i}.canonical_unit = ${binder.bind(canonical.unit)} AND ${numberCondition(prefix, canonical.value, `${i}.canonical_value`, binder, canonical.halfWidth)})`;
            }
            const parts = [numberCondition(prefix, value, `${i}.value`, binder)];
            if (system) parts.push(`${i}.system = ${binder.bind(system)}`);
            if (code) parts.push(system ? `${i}.code = ${binder.bind(code)}` : `(${i}.code = ${binder.bind(code)} OR ${i}.unit = ${binder.bind(code)})`);
            return `(${parts.join(' AND ')})`;
          }),
        ),
      );
    case 'composite':
      return indexed(alias, types, 'search_composite', filter.param.code, binder, (i) => `${i}.key = ANY(${binder.bind(filter.values, 'text[]')})`);
    case 'missing': {
      const table = TABLE_OF_TYPE[filter.param.type]!;
      return indexed(alias, types, table, filter.param.code, binder, () => 'true', filter.missing);
    }
    case 'chain':
      return indexed(alias, types, 'search_reference', filter.param.code, binder, (i) =>
        anyOf(
          filter.targets.map(({ type, inner }) => {
            const c = nextAlias('c');
            const target = `SELECT ${c}.id FROM resource ${c} WHERE ${whereClause(c, [type], [inner], binder, scope)}`;
            return `(${i}.target_type = ${binder.bind(type)} AND ${i}.target_id IN (${target}))`;
          }),
        ),
      );
    case 'has': {
      const i = nextAlias('h');
      const s = nextAlias('s');
      const sources = `SELECT ${i}.target_id FROM search_reference ${i} JOIN resource ${s} ON ${s}.resource_type = ${i}.resource_type AND ${s}.id = ${i}.resource_id
        WHERE ${i}.resource_type = ${binder.bind(filter.sourceType)} AND ${i}.param = ${binder.bind(filter.param.code)}
          AND ${typeTest(`${i}.target_type`, types, binder)} AND ${whereClause(s, [filter.sourceType], [filter.inner], binder, scope)}`;
      return `${alias}.id IN (${sources})`;
    }
    case 'compartment': {
      const i = nextAlias('p');
      const own = filter.compartmentType === types[0] ? ` OR ${alias}.id = ${binder.bind(filter.id)}` : '';
      return `(${alias}.id IN (SELECT ${i}.resource_id FROM search_reference ${i} WHERE ${i}.resource_type = ${binder.bind(types[0])}
        AND ${i}.param = ANY(${binder.bind(filter.params, 'text[]')}) AND ${i}.target_type = ${binder.bind(filter.compartmentType)} AND ${i}.target_id = ${binder.bind(filter.id)})${own})`;
    }
  }
}

const anyOf = (parts: string[]) => (parts.length === 1 ? parts[0]! : `(${parts.join(' OR ')})`);

/** A LIKE pattern matching strings that start with `value` (its own %, _ and \ taken literally). */
function likePrefix(value: string): string {
  return `${value.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
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
      return eq();
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
    if (param === '_id') return { expression: 'r.id', descending, nullsFirst: false, cast: 'text' };
    if (param === '_lastUpdated') return { expression: 'r.last_updated', descending, nullsFirst: false, cast: 'timestamptz' };
    return { ...sortExpression(param, descending, binder), descending, nullsFirst: false };
  });
}

/** The value a resource sorts by: its lowest value ascending, its highest descending (dates: low/high bound). */
function sortExpression(param: SearchParamDefinition, descending: boolean, binder: Binder): Pick<SortKey, 'expression' | 'cast'> {
  const agg = descending ? 'max' : 'min';
  const s = nextAlias('o');
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
      return { expression: `(SELECT ${agg}(${s}.value) ${from('search_quantity')})`, cast: 'numeric' };
    case 'reference':
      return { expression: `(SELECT ${agg}(coalesce(${s}.target_type || '/' || ${s}.target_id, ${s}.url)) ${from('search_reference')})`, cast: 'text' };
    default:
      return { expression: `(SELECT ${agg}(${s}.uri) ${from('search_uri')})`, cast: 'text' };
  }
}

/** Rows strictly after the cursor in the given order (keys compared lexicographically, NULLs placed as ordered). */
function cursorCondition(keys: SortKey[], values: Array<string | null>, binder: Binder): string {
  if (values.length !== keys.length) return 'false';
  const alternatives: string[] = [];
  for (let n = 0; n < keys.length; n++) {
    const equalBefore = keys.slice(0, n).map((k, i) => `q.k${i} IS NOT DISTINCT FROM ${binder.bind(values[i], k.cast)}`);
    const key = keys[n]!;
    const value = values[n];
    const column = `q.k${n}`;
    let after: string;
    if (value === null) after = key.nullsFirst ? `${column} IS NOT NULL` : 'false';
    else {
      const comparison = `${column} ${key.descending ? '<' : '>'} ${binder.bind(value, key.cast)}`;
      after = key.nullsFirst ? comparison : `(${comparison} OR ${column} IS NULL)`;
    }
    alternatives.push([...equalBefore, after].join(' AND '));
  }
  return `(${alternatives.join(' OR ')})`;
}
