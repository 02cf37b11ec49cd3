import { unstorableCharacter } from '../fhir/input-limits.ts';
import { FhirError } from '../fhir/outcome.ts';
import { parseSearch } from '../search/parse.ts';
import { planSearch, readPage } from '../search/execute.ts';
import type { SqlExecutor } from '../store/database.ts';
import type { RouterDependencies } from './context.ts';

/**
 * Conditional interactions (R4 http.html#cond-update) find their target by a search. Two servers sharing
 * one PostgreSQL may get the same conditional create at once (a sender's retry): each takes a transaction
 * advisory lock on the condition first, so the second waits, then sees the first's committed result.
 */
export async function lockCondition(tx: SqlExecutor, resourceType: string, condition: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${resourceType}?${normalizeCondition(criteriaOf(condition))}`]);
}

/** Ids of the live resources of `resourceType` matching the search `condition` (at most `limit`). */
export async function findMatches(tx: SqlExecutor, deps: RouterDependencies, resourceType: string, condition: string, baseUrl: string, limit = 2): Promise<string[]> {
  const pairs = conditionPairs(condition);
  if (pairs.length === 0) throw FhirError.badRequest(`A conditional ${resourceType} interaction needs search criteria`, undefined, 'required');
  // A condition that does not select what its author meant would update or delete the wrong resource.
  const request = parseSearch([resourceType], pairs, deps.registry, { strict: true, baseUrl });
  request.count = limit;
  request.total = 'none';
  const rows = await readPage<{ id: string }>(tx, await planSearch(tx, request), limit);
  return rows.slice(0, limit).map((row) => row.id);
}

/** The same condition however its parameters are ordered, so equal conditions take the same lock. */
function normalizeCondition(condition: string): string {
  return conditionPairs(condition).map(([k, v]) => `${k}=${v}`).sort().join('&');
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
