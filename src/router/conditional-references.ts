import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { isServedResourceType } from '../fhir/resource-types.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { parseCondition } from './conditional.ts';
import type { HandlerContext } from './context.ts';
import type { FhirRequest } from './request.ts';

/** A conditional reference (R4 http.html#trules): `Patient?identifier=sys|val`, a search in place of an id. */
const CONDITIONAL_REFERENCE = /^[A-Z][A-Za-z]+\?/;

/**
 * The distinct conditional references of a resource (each Reference.reference that is a search URL), but
 * those inside the entries of a Bundle stored as a resource: a document is kept as it was written.
 */
export function conditionalReferences(value: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const item of value) conditionalReferences(item, found);
  else if (value && typeof value === 'object') {
    const isBundle = (value as { resourceType?: unknown }).resourceType === 'Bundle';
    for (const [key, item] of Object.entries(value)) {
      if (isBundle && key === 'entry') continue;
      if (key === 'reference' && typeof item === 'string' && CONDITIONAL_REFERENCE.test(item)) found.add(item);
      else conditionalReferences(item, found);
    }
  }
  return found;
}

/**
 * Each conditional reference of a plain create or update (outside a transaction, which resolves them
 * itself before its entries run), resolved as R4 http.html#trules has it for transactions and as HAPI FHIR
 * does for plain writes too: the search is run, and the one resource it matches replaces it (`Type/id`).
 * No match or several: 412, as for a conditional update's criteria (http.html#cond-update); the search
 * first passes the caller's authorisation to search that type. Returns a map from each to its `Type/id`.
 */
export async function resolveConditionalReferences(resource: Resource, store: ResourceStore, request: FhirRequest, ctx: HandlerContext): Promise<Map<string, string>> {
  const resolved = new Map<string, string>();
  for (const reference of conditionalReferences(resource)) {
    const [type = '', query = ''] = [reference.slice(0, reference.indexOf('?')), reference.slice(reference.indexOf('?') + 1)];
    if (!isServedResourceType(type)) throw FhirError.badRequest(`Conditional reference '${reference}': ${type} is not a type this server holds`);
    const search: FhirRequest = { ...request, method: 'GET', path: type, query: queryOf(query), body: undefined, ifMatch: undefined, ifNoneExist: undefined, assignedId: undefined };
    for (const hook of ctx.deps.hooks ?? []) await hook.authorise?.({ kind: 'search-type', resourceType: type }, search);
    const [matches = []] = await store.match([parseCondition(ctx.deps, type, query, request.baseUrl)]);
    if (matches.length !== 1) {
      throw new FhirError(412, [{
        code: matches.length === 0 ? 'not-found' : 'multiple-matches',
        diagnostics: `Conditional reference '${reference}' matches ${matches.length === 0 ? 'no' : 'several'} ${type} resources; it must match exactly one`,
      }]);
    }
    resolved.set(reference, `${type}/${matches[0]}`);
  }
  return resolved;
}

function queryOf(query: string): Record<string, string | string[]> {
  const parameters: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(query)) {
    const previous = parameters[name];
    parameters[name] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
  }
  return parameters;
}
