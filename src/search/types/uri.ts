/**
 * The uri parameter type (R4 search.html#uri) in one module: the filter a searched value makes, the index
 * rows a resource's value gives, and the SQL deciding a filter on those rows. The pattern each parameter
 * type is to follow (issue 15, item 6), as HAPI's predicate builders and Blaze's search-param protocol
 * keep one type's handling together; parse.ts, extract.ts and sql.ts dispatch to it.
 */
import type { IndexRows as ResourceIndexRows } from '../index-rows.ts';
import type { SearchParamDefinition } from '../registry.ts';
import { anyOf, indexedEqual, indexedStartsWith, type Binder, type IndexRows } from '../sql-fragments.ts';
import type { Filter } from '../types.ts';

export type UriFilter = Extract<Filter, { kind: 'uri' }>;

/** `:below`: the stored uri starts with the value; `:above`: the value starts with the stored uri. */
export const URI_MODIFIERS: ReadonlySet<string> = new Set(['above', 'below']);

/** The filter of `values` (unescaped) searched with `modifier` (one of URI_MODIFIERS, or none). */
export function uriFilter(param: SearchParamDefinition, modifier: string | undefined, values: string[]): UriFilter {
  return { kind: 'uri', param, ...(modifier ? { modifier: modifier as UriFilter['modifier'] } : {}), values };
}

/** The index row of one value a uri parameter's expression reached: a uri, canonical or url is a string. */
export function uriRows(code: string, data: unknown, rows: ResourceIndexRows['uri']): void {
  if (typeof data === 'string') rows.push({ param: code, uri: data });
}

/** The `search_uri` rows deciding `filter`; a value longer than the indexed prefix is compared whole. */
export function uriIndexRows(filter: UriFilter, binder: Binder): IndexRows {
  return {
    table: 'search_uri',
    param: filter.param.code,
    negate: false,
    rows: (i) =>
      anyOf(
        filter.values.map((v) => {
          if (filter.modifier === 'below') return indexedStartsWith(`${i}.uri`, v, binder);
          if (filter.modifier === 'above') return `${binder.bind(v)} LIKE replace(replace(replace(${i}.uri, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%'`;
          return indexedEqual(`${i}.uri`, v, binder);
        }),
      ),
  };
}
