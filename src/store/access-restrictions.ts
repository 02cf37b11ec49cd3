import { hashedFilters, type IdentifierHash } from '../search/identifier-hash.ts';
import { RestrictionCache } from '../search/restriction.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import { filtersCondition, type ScopePredicate } from '../search/sql.ts';
import { anyOf } from '../search/sql-fragments.ts';
import type { Filter } from '../search/types.ts';
import type { AccessContext } from './access.ts';

const caches = new WeakMap<SearchParameterRegistry, RestrictionCache>();

/**
 * The condition an access context's search restrictions (`restrictedTypes`) put on a row (`alias`): a
 * resource of a restricted type is seen when it matches one of its queries, decided on its index rows by
 * the search's own SQL; a query that cannot apply matches nothing. Undefined when nothing is restricted.
 * Of a history row (`versioned`), only a current version can match: the index holds no earlier one's rows.
 */
export function restrictionScope(access: AccessContext, registry: SearchParameterRegistry, identifierHash?: IdentifierHash): ScopePredicate | undefined {
  if (!access.restrictedTypes || access.restrictedTypes.length === 0) return undefined;
  let cache = caches.get(registry);
  if (!cache) caches.set(registry, (cache = new RestrictionCache(registry)));
  // Parsed and cached in clear (a write is checked on the clear rows it will have: restriction.ts); compared with the index, hashed.
  const indexed = (filters: Filter[] | undefined) => (filters && identifierHash ? hashedFilters(filters, identifierHash) : filters);
  const restrictions = access.restrictedTypes.map(({ type, queries }) => ({ type, filters: queries.map((query) => indexed(cache.get(type, query))) }));
  return (alias, resourceTypes, binder, versioned = false) => {
    const conditions: string[] = [];
    for (const { type, filters } of restrictions) {
      if (resourceTypes.length > 0 && !resourceTypes.includes(type)) continue;
      const matches = filters.map((each) => (each ? `(${filtersCondition(alias, type, each, binder)})` : 'false'));
      // The index rows are the current version's: what an earlier version matched is not known, so of a
      // history (`versioned`) only the current version is seen, when it matches.
      const current = versioned ? ` AND ${alias}.version_id = (SELECT c.version_id FROM resource c WHERE c.resource_type = ${alias}.resource_type AND c.id = ${alias}.id)` : '';
      conditions.push(`(${alias}.resource_type <> ${binder.bind(type)} OR (${anyOf(matches)}${current}))`);
    }
    return conditions.length > 0 ? conditions.join(' AND ') : undefined;
  };
}
