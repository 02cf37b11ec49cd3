import { RestrictionCache } from '../search/restriction.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import { filtersCondition, type ScopePredicate } from '../search/sql.ts';
import { anyOf } from '../search/sql-fragments.ts';
import type { AccessContext } from './access.ts';

const caches = new WeakMap<SearchParameterRegistry, RestrictionCache>();

/**
 * The condition an access context's search restrictions (`restrictedTypes`) put on a row (`alias`): a
 * resource of a restricted type is seen when it matches one of its queries, decided on its index rows by
 * the search's own SQL; a query that cannot apply matches nothing. Undefined when nothing is restricted.
 */
export function restrictionScope(access: AccessContext, registry: SearchParameterRegistry): ScopePredicate | undefined {
  if (!access.restrictedTypes || access.restrictedTypes.length === 0) return undefined;
  let cache = caches.get(registry);
  if (!cache) caches.set(registry, (cache = new RestrictionCache(registry)));
  const restrictions = access.restrictedTypes.map(({ type, queries }) => ({ type, filters: queries.map((query) => cache.get(type, query)) }));
  return (alias, resourceTypes, binder) => {
    const conditions: string[] = [];
    for (const { type, filters } of restrictions) {
      if (resourceTypes.length > 0 && !resourceTypes.includes(type)) continue;
      const matches = filters.map((each) => (each ? `(${filtersCondition(alias, type, each, binder)})` : 'false'));
      conditions.push(`(${alias}.resource_type <> ${binder.bind(type)} OR ${anyOf(matches)})`);
    }
    return conditions.length > 0 ? conditions.join(' AND ') : undefined;
  };
}
