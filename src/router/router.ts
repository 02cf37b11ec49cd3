import type { Bundle, CapabilityStatement, OperationOutcome, Resource } from 'fhir/r4';
import { instanceCapabilityStatement } from '../fhir/capability.ts';
import { FhirError, informational } from '../fhir/outcome.ts';
import { SERVED_RESOURCE_TYPES } from '../fhir/resource-types.ts';
import type { ResourceValidator } from '../fhir/validation/validator.ts';
import type { SearchEngine } from '../search/execute.ts';
import { parseSearch } from '../search/parse.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import { StoredResource, type Repository } from '../store/repository.ts';
import { history } from './history.ts';
import type { Interaction } from './interaction.ts';
import { parseInteraction } from './parse.ts';
import { returnPreference, strictHandling } from './prefer.ts';
import { FormParameters, UnsupportedBody, type FhirRequest, type FhirResponse } from './request.ts';

/**
 * A step every interaction passes through, bundles' entries included: authorisation and consent decide
 * before anything is read or written; audit sees every outcome, refusals and failures too.
 */
export interface InteractionHook {
  authorise?(interaction: Interaction, request: FhirRequest): Promise<void>;
  audit?(interaction: Interaction | undefined, request: FhirRequest, response: FhirResponse): Promise<void>;
}

export interface RouterDependencies {
  repo: Repository;
  validator: ResourceValidator;
  capabilityStatement: CapabilityStatement;
  search: { registry: SearchParameterRegistry; engine: SearchEngine; patientCompartment: Map<string, string[]> };
  hooks?: InteractionHook[];
}

/** What an interaction produced, before `Prefer: return` picks the body. */
interface Outcome {
  status: number;
  resource?: Resource | StoredResource;
  outcome?: OperationOutcome;
  headers?: Record<string, string>;
}

/**
 * The FHIR REST API without HTTP: parse → validate → authorise → execute (store) → audit → respond.
 * The HTTP layer and, later, each transaction/batch entry call `handle` the same way.
 */
export class FhirRouter {
  private readonly hooks: InteractionHook[];

  constructor(private readonly deps: RouterDependencies) {
    this.hooks = deps.hooks ?? [];
  }

  async handle(request: FhirRequest): Promise<FhirResponse> {
    let interaction: Interaction | undefined;
    let response: FhirResponse;
    try {
      interaction = parseInteraction(request);
      const resource = this.validate(interaction, request);
      for (const hook of this.hooks) await hook.authorise?.(interaction, request);
      response = respond(await this.execute(interaction, request, resource), request, interaction);
    } catch (error) {
      if (!(error instanceof FhirError)) throw error;
      response = { status: error.status, body: error.outcome, headers: error.headers };
    }
    for (const hook of this.hooks) await hook.audit?.(interaction, request, response);
    return response;
  }

  /** The body a write carries, checked against the URL and the R4 definitions; undefined for reads. */
  private validate(interaction: Interaction, request: FhirRequest): Resource | undefined {
    if (interaction.kind !== 'create' && interaction.kind !== 'update') return undefined;
    const body = request.body;
    if (body instanceof UnsupportedBody || body instanceof FormParameters) {
      const mediaType = body instanceof UnsupportedBody ? body.mediaType : 'application/x-www-form-urlencoded';
      throw new FhirError(415, [{ code: 'not-supported', diagnostics: `Unsupported Content-Type '${mediaType}': send application/fhir+json (or application/json)` }]);
    }
    if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw FhirError.badRequest('The request body must be a FHIR resource (a JSON object)', undefined, 'structure');
    }
    const { resourceType, id } = body as { resourceType?: unknown; id?: unknown };
    if (resourceType !== interaction.resourceType) {
      throw FhirError.badRequest(
        `resourceType '${String(resourceType)}' in the body does not match '${interaction.resourceType}' in the URL`,
        ['resourceType'],
      );
    }
    if (interaction.kind === 'update') {
      if (id === undefined) throw FhirError.badRequest(`The body must carry id '${interaction.id}' to update it`, [`${interaction.resourceType}.id`], 'required');
      if (id !== interaction.id) {
        throw FhirError.badRequest(`id '${String(id)}' in the body does not match '${interaction.id}' in the URL`, [`${interaction.resourceType}.id`]);
      }
    }
    const issues = this.deps.validator.validate(interaction.resourceType, body);
    const errors = issues.filter((issue) => issue.severity === undefined || issue.severity === 'error' || issue.severity === 'fatal');
    if (errors.length > 0) throw new FhirError(400, issues);
    return body as Resource;
  }

  private async execute(interaction: Interaction, request: FhirRequest, body: Resource | undefined): Promise<Outcome> {
    const { repo } = this.deps;
    switch (interaction.kind) {
      case 'capabilities':
        return { status: 200, resource: instanceCapabilityStatement(this.deps.capabilityStatement, request.baseUrl) };
      case 'create': {
        const stored = await repo.create(body as Resource);
        return {
          status: 201,
          resource: stored,
          outcome: informational(`Created ${stored.resourceType}/${stored.id}`),
          headers: versionHeaders(stored, request.baseUrl),
        };
      }
      case 'read': {
        const stored = await repo.read(interaction.resourceType, interaction.id);
        return { status: 200, resource: stored, headers: versionHeaders(stored) };
      }
      case 'vread': {
        const stored = await repo.vread(interaction.resourceType, interaction.id, interaction.versionId);
        return { status: 200, resource: stored, headers: versionHeaders(stored) };
      }
      case 'update': {
        const { resource: stored, created } = await repo.update(body as Resource & { id: string }, {
          ifMatch: parseIfMatch(request.ifMatch),
        });
        return {
          status: created ? 201 : 200,
          resource: stored,
          outcome: informational(`${created ? 'Created' : 'Updated'} ${stored.resourceType}/${stored.id} version ${stored.versionId}`),
          headers: versionHeaders(stored, created ? request.baseUrl : undefined),
        };
      }
      case 'delete': {
        const { versionId } = await repo.delete(interaction.resourceType, interaction.id, { ifMatch: parseIfMatch(request.ifMatch) });
        const target = `${interaction.resourceType}/${interaction.id}`;
        return {
          status: 204,
          outcome: informational(versionId === undefined ? `${target} did not exist; nothing to delete` : `Deleted ${target}`),
          headers: versionId === undefined ? {} : { etag: `W/"${versionId}"` },
        };
      }
      case 'history-instance':
      case 'history-type':
      case 'history-system':
        return { status: 200, resource: await history(interaction, request, repo) };
      case 'search-type':
      case 'search-system':
      case 'search-compartment':
        return { status: 200, resource: await this.search(interaction, request) };
    }
  }

  /** Type, system and compartment search (R4 http.html#search, search.html), by GET or form POST. */
  private async search(interaction: Extract<Interaction, { kind: `search-${string}` }>, request: FhirRequest): Promise<Bundle> {
    const { registry, engine, patientCompartment } = this.deps.search;
    const pairs = queryPairs(request.query);
    if (request.body instanceof FormParameters) pairs.push(...request.body.entries);
    else if (request.body instanceof UnsupportedBody) {
      throw new FhirError(415, [{ code: 'not-supported', diagnostics: `A search is posted as application/x-www-form-urlencoded, not '${request.body.mediaType}'` }]);
    } else if (request.body !== undefined) {
      throw FhirError.badRequest('A search is posted as application/x-www-form-urlencoded parameters, not as a resource');
    }
    const types = interaction.kind === 'search-system' ? [...SERVED_RESOURCE_TYPES] : [interaction.resourceType];
    const parsed = parseSearch(types, pairs, registry, { strict: strictHandling(request.prefer), baseUrl: request.baseUrl });
    if (interaction.kind === 'search-compartment') {
      const params = interaction.compartmentType === 'Patient' ? patientCompartment.get(interaction.resourceType) : undefined;
      if (!params) throw FhirError.notFound(`${interaction.resourceType} is not in the ${interaction.compartmentType} compartment`);
      parsed.filters.unshift({ kind: 'compartment', compartmentType: interaction.compartmentType, id: interaction.id, params });
    }
    // Links name the search as a GET on the type or compartment, whichever way it was asked.
    const path = interaction.kind === 'search-system' ? '' : request.path.replace(/\/_search$/, '');
    return engine.search(parsed, { baseUrl: request.baseUrl, path });
  }
}

/** Applies `Prefer: return` to writes (R4 http.html#ops); reads always return their resource. */
function respond(result: Outcome, request: FhirRequest, interaction: Interaction): FhirResponse {
  const headers = result.headers ?? {};
  const isWrite = interaction.kind === 'create' || interaction.kind === 'update' || interaction.kind === 'delete';
  if (!isWrite) return { status: result.status, body: result.resource, headers };
  switch (returnPreference(request.prefer)) {
    case 'minimal':
      return { status: result.status, headers };
    case 'OperationOutcome':
      return { status: result.status === 204 ? 200 : result.status, body: result.outcome, headers };
    case 'representation':
      return { status: result.status, body: result.resource, headers };
  }
}

function versionHeaders(stored: StoredResource, locationBase?: string): Record<string, string> {
  return {
    etag: `W/"${stored.versionId}"`,
    'last-modified': new Date(stored.lastUpdated).toUTCString(),
    ...(locationBase ? { location: `${locationBase}/${stored.resourceType}/${stored.id}/_history/${stored.versionId}` } : {}),
  };
}

/** Query parameters as ordered (name, value) pairs; a repeated name is one pair per value (AND). */
function queryPairs(query: FhirRequest['query']): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(query)) {
    for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, v]);
  }
  return pairs;
}

/** `If-Match: W/"3"` (or `"3"`, or `3`) → 3. */
export function parseIfMatch(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const match = header.trim().match(/^(?:W\/)?"?([1-9]\d{0,8})"?$/);
  if (!match) throw FhirError.badRequest(`If-Match must be a version ETag such as W/"3", not '${header}'`, undefined, 'invalid');
  return Number(match[1]);
}
