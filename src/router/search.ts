import { FhirError } from '../fhir/outcome.ts';
import type { ResponseBundle } from '../fhir/resource-text.ts';
import { SERVED_RESOURCE_TYPES } from '../fhir/resource-types.ts';
import { parseSearch } from '../search/parse.ts';
import type { HandlerContext } from './context.ts';
import type { Interaction } from './interaction.ts';
import { strictHandling } from './prefer.ts';
import { FormParameters, UnsupportedBody, type FhirRequest } from './request.ts';

/** Type, system and compartment search (R4 http.html#search, search.html), by GET or form POST. */
export async function search(interaction: Extract<Interaction, { kind: `search-${string}` }>, request: FhirRequest, ctx: HandlerContext, given?: Array<[string, string]>): Promise<ResponseBundle> {
  const { registry, compartments } = ctx.deps;
  const pairs = given ?? searchPairs(request);
  // A trail is read newest first (issue 18: the patient's own trail) unless the client sorts it otherwise.
  if (interaction.kind !== 'search-system' && interaction.resourceType === 'AuditEvent' && !pairs.some(([name]) => name === '_sort')) pairs.push(['_sort', '-date']);
  const types = interaction.kind === 'search-system' ? [...SERVED_RESOURCE_TYPES] : [interaction.resourceType];
  const parsed = parseSearch(types, pairs, registry, { strict: strictHandling(request.prefer), baseUrl: request.baseUrl });
  if (interaction.kind === 'search-compartment') {
    // A type is in a compartment if its definition names parameters for it, or if it is the compartment's own type.
    const compartment = compartments.get(interaction.compartmentType);
    if (!compartment) throw FhirError.notFound(`${interaction.compartmentType} defines no compartment`);
    if (!compartment.params.has(interaction.resourceType) && interaction.resourceType !== interaction.compartmentType) {
      throw FhirError.notFound(`${interaction.resourceType} is not in the ${interaction.compartmentType} compartment`);
    }
    parsed.filters.unshift({ kind: 'compartment', compartmentType: interaction.compartmentType, id: interaction.id });
  }
  // Links name the search as a GET on the type or compartment, whichever way it was asked.
  const path = interaction.kind === 'search-system' ? '' : request.path.replace(/\/_search$/, '');
  return ctx.store.withBinaryData(await ctx.store.search(parsed, { baseUrl: request.baseUrl, path }), ctx.deps.limits.binaryInlineBytes, request.streamBinary);
}

/** A search's parameters: the query's, then a posted form's. */
export function searchPairs(request: FhirRequest): Array<[string, string]> {
  const pairs = queryPairs(request.query);
  if (request.body instanceof FormParameters) pairs.push(...request.body.entries);
  else if (request.body instanceof UnsupportedBody) {
    throw new FhirError(415, [{ code: 'not-supported', diagnostics: `A search is posted as application/x-www-form-urlencoded, not '${request.body.mediaType}'` }]);
  } else if (request.body !== undefined) {
    throw FhirError.badRequest('A search is posted as application/x-www-form-urlencoded parameters, not as a resource');
  }
  return pairs;
}

/** Query parameters as ordered (name, value) pairs; a repeated name is one pair per value (AND). */
export function queryPairs(query: FhirRequest['query']): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(query)) {
    for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, v]);
  }
  return pairs;
}
