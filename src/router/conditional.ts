import { unstorableCharacter } from '../fhir/input-limits.ts';
import { FhirError } from '../fhir/outcome.ts';
import { parseSearch } from '../search/parse.ts';
import { normalizeString } from '../search/normalize.ts';
import type { Filter } from '../search/types.ts';
import type { MatchCriteria, ResourceStore } from '../store/resource-store.ts';
import type { RouterDependencies } from './context.ts';

/** How many matching resources a 412 for several matches names; more are counted as "and more". */
export const MATCHES_NAMED = 10;

/** The search criteria of a conditional interaction, parsed: refused (400) before anything is locked or read. */
export interface Condition extends MatchCriteria {
  /** As the client wrote it, for messages. */
  text: string;
}

export function parseCondition(deps: RouterDependencies, resourceType: string, condition: string, baseUrl: string): Condition {
  const pairs = conditionPairs(condition);
  if (pairs.length === 0) throw FhirError.badRequest(`A conditional ${resourceType} interaction needs search criteria`, undefined, 'required');
  // A condition that does not select what its author meant would update or delete the wrong resource.
  const search = parseSearch([resourceType], pairs, deps.registry, { strict: true, baseUrl });
  search.count = MATCHES_NAMED + 1;
  search.total = 'none';
  return { resourceType, text: condition, search, lockKey: `${resourceType}?${canonicalCriteria(search.filters)}` };
}

/**
 * Conditional interactions (R4 http.html#cond-update) find their target by a search. Two requests with the
 * same condition may come at once, to one server or two sharing one store (a sender's retry): each locks
 * the condition in its unit of work first (ResourceStore.match), so the second waits, then sees the
 * first's committed result. The lock is on the parsed criteria, so that conditions written differently but
 * selecting the same resources (another parameter order, `%7C` for `|`, a name in other case) queue too.
 * Ids matched are at most MATCHES_NAMED + 1: enough to tell "several" and name them.
 */
export async function lockAndMatch(store: ResourceStore, condition: Condition): Promise<string[]> {
  const [matches = []] = await store.match([condition], { lock: true });
  return matches;
}

/** 412 for a condition that must select one resource but selects several, naming them (R4 http.html#cond-update). */
export function severalMatches(condition: Condition, matches: string[], consequence: string): FhirError {
  const named = matches.slice(0, MATCHES_NAMED).map((id) => `${condition.resourceType}/${id}`);
  const more = matches.length > MATCHES_NAMED ? ' and more' : '';
  return new FhirError(412, [
    // The ids come before the client's criteria, which are what a length bound on diagnostics may cut.
    { code: 'multiple-matches', diagnostics: `Several ${condition.resourceType} resources match (${named.join(', ')}${more}); ${consequence}. The criteria: '${condition.text}'` },
  ]);
}

/**
 * The criteria as one string, equal for equal searches: the typed filters with their values decoded,
 * each filter's values (ORed) and the filters themselves (ANDed) sorted and without repeats, strings in
 * the form string search compares. Result parameters (`_count`, `_sort`…) select nothing and are left out.
 */
function canonicalCriteria(filters: Filter[]): string {
  return canonicalJson(filters.map(comparedForm));
}

/** A string filter's values as the search compares them (R4 search.html#string: case, accents and spacing ignored). */
function comparedForm(filter: Filter): unknown {
  if (filter.kind === 'string' && filter.modifier !== 'exact') return { ...filter, values: filter.values.map(normalizeString) };
  if (filter.kind === 'token' && filter.modifier === 'text') return { ...filter, values: filter.values.map((value) => ({ text: normalizeString(value.text ?? '') })) };
  if (filter.kind === 'chain') return { ...filter, targets: filter.targets.map((target) => ({ ...target, inner: comparedForm(target.inner) })) };
  if (filter.kind === 'has') return { ...filter, inner: comparedForm(filter.inner) };
  return filter;
}

/** JSON with object keys sorted, arrays sorted and deduplicated (every array in a filter is a set), a parameter by its URL. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(canonicalValue(value));
}

function canonicalValue(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return [...new Set(value.map(canonicalJson))].sort().map((text) => JSON.parse(text) as unknown);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value).filter(([, item]) => item !== undefined && typeof item !== 'function');
  return Object.fromEntries(
    entries
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, item]) => [key, key === 'param' && item !== null && typeof item === 'object' ? (item as { url: string }).url : canonicalValue(item)]),
  );
}

/** The search parameters of a condition, decoded; one PostgreSQL could not take as text is refused (400). */
function conditionPairs(condition: string): Array<[string, string]> {
  const pairs = [...new URLSearchParams(criteriaOf(condition))];
  for (const [name, value] of pairs) {
    const problem = unstorableCharacter(name) ?? unstorableCharacter(value);
    if (problem) throw FhirError.badRequest(`The condition '${condition}' contains ${problem}`);
  }
  return pairs;
}

/** Criteria may be sent as `identifier=…` or `Patient?identifier=…` (If-None-Exist allows both). */
function criteriaOf(condition: string): string {
  const q = condition.indexOf('?');
  return q >= 0 ? condition.slice(q + 1) : condition;
}
