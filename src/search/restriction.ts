import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { extractIndexRows, ofTypeKey, ofTypeParam, type IndexRows } from './extract.ts';
import { normalizeString } from './normalize.ts';
import { parseSearch } from './parse.ts';
import { isQuantityComposite, type SearchParameterRegistry } from './registry.ts';
import type { Filter, TokenValue } from './types.ts';

/**
 * SMART App Launch 2.0 search-restricted scopes (scopes-and-launch-context.html, "Finer-grained resource
 * constraints using search parameters": `patient/Observation.rs?category=laboratory`): the query of such a
 * scope as filters on its type. The same filters decide what the scope lets a caller see (inside the
 * store's SQL, access-scope.ts) and what it lets a caller write (here, in memory, on the index rows the
 * resource will have), so that a resource one may create is one the same scope shows.
 *
 * Only filters both sides decide alike are taken: tokens (codes, `:not`, `:text`, `:in`, `:not-in`,
 * `:above`, `:below`, `:of-type`), strings, references, uris, `_id`, composites compared whole and
 * `:missing`. A query with anything else (dates, numbers, quantities, chains, `_has`, `_lastUpdated`,
 * result parameters such as `_count`), or one that does not parse, gives no restriction: its scope grants
 * nothing rather than more than it says.
 */

/** A restriction's filters (all must hold); undefined when the query cannot be applied (see above). */
export type Restriction = Filter[];

/** The query of a scope (`category=laboratory&status=final`) as the filters a resource of `resourceType` must meet. */
export function parseRestriction(resourceType: string, query: string, registry: SearchParameterRegistry): Restriction | undefined {
  const pairs = [...new URLSearchParams(query)];
  if (pairs.length === 0) return undefined;
  let filters: Filter[];
  try {
    const request = parseSearch([resourceType], pairs, registry, { strict: true, baseUrl: '' });
    // Result parameters (_count, _sort, _include…) say nothing about which resources the scope is for.
    if (request.applied.length !== request.filters.length || request.filters.length !== pairs.length) return undefined;
    filters = request.filters;
  } catch (error) {
    if (error instanceof FhirError) return undefined;
    throw error;
  }
  return filters.every(decidedInMemory) ? filters : undefined;
}

/** Restrictions parsed once per (type, query): a token's scopes are the same on every request. */
export class RestrictionCache {
  private readonly parsed = new Map<string, Restriction | undefined>();

  constructor(private readonly registry: SearchParameterRegistry) {}

  get(resourceType: string, query: string): Restriction | undefined {
    const key = `${resourceType}?${query}`;
    if (this.parsed.has(key)) return this.parsed.get(key);
    const restriction = parseRestriction(resourceType, query, this.registry);
    // A bounded cache: queries come from tokens, which a client may vary at will.
    if (this.parsed.size >= 1000) this.parsed.clear();
    this.parsed.set(key, restriction);
    return restriction;
  }
}

function decidedInMemory(filter: Filter): boolean {
  switch (filter.kind) {
    case 'token':
    case 'string':
    case 'reference':
    case 'id':
      return true;
    case 'uri':
      return filter.modifier === undefined;
    case 'composite':
      return !('quantities' in filter);
    case 'missing':
      return !isQuantityComposite(filter.param);
    default:
      return false;
  }
}

/**
 * Whether `resource`, as it would be stored, meets every filter of `restriction`: decided on the index rows
 * the store would write for it, as the SQL of a search decides on the stored ones (sql.ts).
 */
export function meetsRestriction(resource: Resource, restriction: Restriction, registry: SearchParameterRegistry): boolean {
  const rows = extractIndexRows(resource, registry);
  return restriction.every((filter) => meets(resource, rows, filter));
}

function meets(resource: Resource, rows: IndexRows, filter: Filter): boolean {
  switch (filter.kind) {
    case 'id': {
      const listed = resource.id !== undefined && filter.values.includes(resource.id);
      return filter.not ? !listed : listed;
    }
    case 'token': {
      const of = (code: string) => rows.token.filter((row) => row.param === code);
      if (filter.modifier === 'of-type') {
        const keys = filter.values.map((v) => ofTypeKey(v.typeSystem, v.typeCode, v.value));
        return rows.composite.some((row) => row.param === ofTypeParam(filter.param.code) && keys.includes(row.key));
      }
      if (filter.modifier === 'in' || filter.modifier === 'not-in' || filter.modifier === 'above' || filter.modifier === 'below') {
        const sets = filter.values;
        const allCodes = sets.flatMap((set) => set.codes);
        const found = of(filter.param.code).some(
          (row) => row.code !== null && (row.system === null ? allCodes.includes(row.code) : sets.some((set) => set.system === row.system && set.codes.includes(row.code!))),
        );
        return filter.modifier === 'not-in' ? !found : found;
      }
      if (filter.modifier === 'text') {
        return of(filter.param.code).some((row) =>
          filter.values.some((v) => {
            const text = normalizeString(v.text ?? '');
            return row.text !== null && (row.text.startsWith(text) || row.text.includes(` ${text}`));
          }),
        );
      }
      const values = filter.values as TokenValue[];
      const found = of(filter.param.code).some((row) =>
        values.some((v) => (v.code === undefined || row.code === v.code) && (v.system === undefined || row.system === v.system)),
      );
      return filter.modifier === 'not' ? !found : found;
    }
    case 'string':
      return rows.string.some(
        (row) =>
          row.param === filter.param.code &&
          filter.values.some((v) =>
            filter.modifier === 'exact' ? row.value === v : filter.modifier === 'contains' ? row.normalized.includes(normalizeString(v)) : row.normalized.startsWith(normalizeString(v)),
          ),
      );
    case 'reference':
      return rows.reference.some((row) => {
        if (row.param !== filter.param.code) return false;
        if (filter.modifier === 'identifier') {
          return (filter.identifiers ?? []).some((v) => row.identifierValue === (v.code ?? '') && (!v.system || row.identifierSystem === v.system));
        }
        return filter.values.some((v) => (v.url !== undefined ? row.url === v.url : row.targetId === v.id && (!v.type || row.targetType === v.type)));
      });
    case 'uri':
      return rows.uri.some((row) => row.param === filter.param.code && filter.values.includes(row.uri));
    case 'composite':
      return 'values' in filter && rows.composite.some((row) => row.param === filter.param.code && filter.values.includes(row.key));
    case 'missing': {
      const table = filter.param.type as keyof IndexRows;
      const present = (rows[table] ?? []).some((row) => row.param === filter.param.code);
      return filter.missing ? !present : present;
    }
    default:
      return false;
  }
}
