import type { CapabilityStatement, OperationOutcome, Resource } from 'fhir/r4';
import { instanceCapabilityStatement } from '../fhir/capability.ts';
import { FhirError, informational } from '../fhir/outcome.ts';
import type { ResourceValidator } from '../fhir/validation/validator.ts';
import { StoredResource, type Repository } from '../store/repository.ts';
import { history } from './history.ts';
import type { Interaction } from './interaction.ts';
import { parseInteraction } from './parse.ts';
import { returnPreference } from './prefer.ts';
import { UnsupportedBody, type FhirRequest, type FhirResponse } from './request.ts';

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
    if (body instanceof UnsupportedBody) {
      throw new FhirError(415, [{ code: 'not-supported', diagnostics: `Unsupported Content-Type '${body.mediaType}': send application/fhir+json (or application/json)` }]);
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
    }
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

/** `If-Match: W/"3"` (or `"3"`, or `3`) → 3. */
export function parseIfMatch(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const match = header.trim().match(/^(?:W\/)?"?([1-9]\d{0,8})"?$/);
  if (!match) throw FhirError.badRequest(`If-Match must be a version ETag such as W/"3", not '${header}'`, undefined, 'invalid');
  return Number(match[1]);
}
