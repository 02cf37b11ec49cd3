import type { Resource } from 'fhir/r4';
import { instanceCapabilityStatement } from '../fhir/capability.ts';
import { FhirError, withMoreIssues } from '../fhir/outcome.ts';
import { isConformanceResourceType } from '../fhir/resource-types.ts';
import { builtInRead, noteDefinitionWrite, refuseBuiltInWrite, searchWithBuiltIns } from '../operations/conformance.ts';
import { processBundle, rewriteReferences } from './bundle.ts';
import { resolveConditionalReferences } from './conditional-references.ts';
import { ALL_ACCESS, type ResourceStore } from '../store/resource-store.ts';
import { failureAnswer } from '../store/unavailable.ts';
import type { HandlerContext, InteractionHook, Outcome, RouterDependencies } from './context.ts';
import * as crud from './crud.ts';
import { history } from './history.ts';
import type { Interaction } from './interaction.ts';
import { parseInteraction } from './parse.ts';
import { returnPreference } from './prefer.ts';
import type { FhirRequest, FhirResponse } from './request.ts';
import { search } from './search.ts';
import { missingTargets, referencesToCheck, unknownTargets } from './references.ts';
import { checkResource, type CheckedResource } from './validate.ts';

export type { InteractionHook, RouterDependencies } from './context.ts';

/**
 * The FHIR REST API without HTTP: parse → validate → authorise → execute (store) → audit → respond.
 * The HTTP layer and every entry of a transaction or batch Bundle call `handle` the same way; an entry
 * of a transaction passes the store of the bundle's one database transaction.
 */
export class FhirRouter {
  private readonly hooks: InteractionHook[];
  /** Some hook keeps a trail: writes then run in a unit of work that their audit joins. */
  private readonly auditing: boolean;

  constructor(private readonly deps: RouterDependencies) {
    this.hooks = deps.hooks ?? [];
    this.auditing = this.hooks.some((hook) => hook.audit !== undefined);
  }

  /** Runs `request` on `store` (a bundle's), by default the server's store bound to the request's access. */
  async handle(request: FhirRequest, store: ResourceStore = this.deps.store.forAccess(request.access ?? ALL_ACCESS)): Promise<FhirResponse> {
    let interaction: Interaction | undefined;
    let response: FhirResponse;
    let audited = false;
    try {
      const parsed = parseInteraction(request);
      interaction = parsed;
      for (const hook of this.hooks) await hook.authorise?.(interaction, request);
      // Allowed: who the caller is to the patients' consent (roles, organisations) is looked up once for the
      // request, not in each of its statements. The request keeps its access; the store binds the resolved one.
      if (request.access) {
        const resolved = await store.resolveCaller(request.access);
        if (resolved !== request.access) store = store.forAccess(resolved);
      }
      // A built-in definition is read-only whatever the body says: refused before it is validated.
      refuseBuiltInWrite(interaction);
      const checked = this.validate(interaction, request);
      if (checked) for (const hook of this.hooks) await hook.checkResource?.(interaction, request, checked.resource);
      const context: HandlerContext = { deps: this.deps, store, handle: (r, s) => this.handle(r, s) };
      if (checked && !request.deferReferences) {
        // A transaction has resolved its entries' conditional references before running them.
        const resolved = await resolveConditionalReferences(checked.resource, store, request, context);
        if (resolved.size > 0) checked.resource = rewriteReferences(checked.resource, resolved) as Resource;
      }
      const targets = checked && this.deps.referentialIntegrity ? referencesToCheck(checked.resource, request.baseUrl, ownReference(interaction, request, checked.resource)) : [];
      if (targets.length > 0 && request.deferReferences) request.deferReferences(targets);
      // The targets are looked up in the unit that writes, and held there against their deletion until it
      // commits: a concurrent delete of one either waits and then sees this reference (409), or goes first
      // and this write finds the target gone (422). Never both, never a dangling reference.
      const holdTargets = targets.length > 0 && !request.deferReferences;
      // The bytes of a Binary posted as itself are written before its version's transaction, which
      // then only claims them: a slow sender holds nothing the other requests need.
      const staged = checked && (await store.stageBinary(checked.resource));
      const body = staged ? staged.resource : checked?.resource;
      const run = async (on: ResourceStore): Promise<FhirResponse> => {
        if (holdTargets) {
          const missing = await missingTargets(targets, on, true);
          if (missing.length > 0) throw unknownTargets(missing);
        }
        const result = await execute(parsed, request, { ...context, store: on }, body);
        noteDefinitionWrite(parsed, result);
        if (checked && result.outcome) result.outcome = withMoreIssues(result.outcome, checked.notes);
        return respond(result, request, parsed);
      };
      try {
        const auditInUnit = this.auditing && WRITES.has(parsed.kind);
        if (auditInUnit || holdTargets) {
          // A write and its audit are one transaction: an entry a transaction Bundle rolls back is never on
          // record as a success (its failure is recorded instead, below, on the store outside the write).
          response = await store.unitOfWork(async (unit) => {
            const written = await run(unit);
            if (auditInUnit) for (const hook of this.hooks) await hook.audit?.(parsed, request, written, unit);
            return written;
          });
          audited = auditInUnit;
        } else {
          response = await run(store);
        }
      } finally {
        // Failing here leaves the bytes to the sweep at start; the answer stays the write's own.
        if (staged) await staged.discardUnclaimed().catch(() => {});
      }
    } catch (error) {
      if (!(error instanceof FhirError)) {
        // The error handler answers (500, or 503 for an outage); the trail records the failure first.
        const { status, outcome, headers } = failureAnswer(error);
        const failed: FhirResponse = { status, body: outcome, headers };
        for (const hook of this.hooks) await hook.audit?.(interaction, request, failed, store).catch(() => {});
        throw error;
      }
      response = { status: error.status, body: error.outcome, headers: error.headers };
    }
    if (!audited) for (const hook of this.hooks) await hook.audit?.(interaction, request, response, store);
    return response;
  }

  /** The body a create or update carries, checked before anything else happens; undefined otherwise. */
  private validate(interaction: Interaction, request: FhirRequest): CheckedResource | undefined {
    switch (interaction.kind) {
      case 'create':
      case 'update-conditional':
        return checkResource(request.body, interaction.resourceType, null, this.deps.validator, request.securityContext, request.requiredProfiles);
      case 'update':
        return checkResource(request.body, interaction.resourceType, interaction.id, this.deps.validator, request.securityContext, request.requiredProfiles);
      default:
        return undefined;
    }
  }
}

/** `Type/id` of the resource a create or update writes, when known before it is written: it may name itself. */
function ownReference(interaction: Interaction, request: FhirRequest, resource: Resource): string | undefined {
  const id = interaction.kind === 'update' ? interaction.id : interaction.kind === 'create' ? request.assignedId : resource.id;
  return id === undefined ? undefined : `${resource.resourceType}/${id}`;
}

async function execute(interaction: Interaction, request: FhirRequest, ctx: HandlerContext, body: Resource | undefined): Promise<Outcome> {
  switch (interaction.kind) {
    case 'capabilities':
      return { status: 200, resource: instanceCapabilityStatement(ctx.deps.capabilityStatement, request.baseUrl) };
    case 'create':
      return crud.create(interaction, request, ctx, body!);
    case 'read':
      return (isConformanceResourceType(interaction.resourceType) && builtInRead(interaction)) || crud.read(interaction, request, ctx);
    case 'vread':
      return crud.vread(interaction, request, ctx);
    case 'update':
      return crud.update(interaction, request, ctx, body!);
    case 'update-conditional':
      return crud.conditionalUpdate(interaction, request, ctx, body!);
    case 'patch':
      return crud.patch(interaction, request, ctx);
    case 'delete':
      return crud.remove(interaction, request, ctx);
    case 'delete-conditional':
      return crud.conditionalDelete(interaction, request, ctx);
    case 'history-instance':
    case 'history-type':
    case 'history-system':
      return { status: 200, resource: await history(interaction, request, ctx.store, ctx.deps.limits.binaryInlineBytes) };
    case 'search-type':
      if (isConformanceResourceType(interaction.resourceType)) return searchWithBuiltIns(interaction.resourceType, request, (pairs) => search(interaction, request, ctx, pairs));
      return { status: 200, resource: await search(interaction, request, ctx) };
    case 'search-system':
    case 'search-compartment':
      return { status: 200, resource: await search(interaction, request, ctx) };
    case 'transaction':
    case 'batch':
      return { status: 200, resource: await processBundle(interaction.kind, request, ctx) };
    case 'operation':
      return invokeOperation(interaction, request, ctx);
  }
}

/** `$operation` calls (R4 operations.html): input as Parameters whether it came by POST body or GET query. */
async function invokeOperation(interaction: Extract<Interaction, { kind: 'operation' }>, request: FhirRequest, ctx: HandlerContext): Promise<Outcome> {
  const level = interaction.id ? 'instance' : interaction.resourceType ? 'type' : 'system';
  const operation = ctx.deps.operations.resolve(interaction.name, level, interaction.resourceType, request.method === 'HEAD' ? 'GET' : request.method);
  return operation.invoke({ ...interaction, level, parameters: operationInput(request), request, ctx });
}

function operationInput(request: FhirRequest): Resource {
  const body = request.body as Resource | undefined;
  if (body && typeof body === 'object' && body.resourceType === 'Parameters') return wellFormedParameters(body);
  const parameter: Array<Record<string, unknown>> = [];
  for (const [name, values] of Object.entries(request.query)) {
    if (name === '_format' || name === '_pretty') continue;
    for (const value of Array.isArray(values) ? values : [values]) parameter.push({ name, valueString: value });
  }
  // Some operations ($validate) also take the resource itself as the body.
  if (body && typeof body === 'object' && typeof body.resourceType === 'string') parameter.push({ name: 'resource', resource: body });
  else if (body !== undefined) throw FhirError.badRequest('An operation takes a Parameters resource (or, for some, a resource) as its body');
  return { resourceType: 'Parameters', parameter } as Resource;
}

/** A Parameters body whose `parameter` list operations can read: each a named object (R4 parameters.html, inv-1 aside). */
function wellFormedParameters(body: Resource): Resource {
  const parameter = (body as { parameter?: unknown }).parameter;
  if (parameter === undefined) return body;
  if (!Array.isArray(parameter)) throw FhirError.badRequest('Parameters.parameter must be a list of parameters', ['Parameters.parameter'], 'structure');
  parameter.forEach((entry: unknown, index) => {
    const name = (entry as { name?: unknown } | null)?.name;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry) || typeof name !== 'string' || name === '') {
      throw FhirError.badRequest(`Parameters.parameter[${index}] must be an object with a name`, [`Parameters.parameter[${index}]`], 'structure');
    }
  });
  return body;
}

const WRITES = new Set<Interaction['kind']>(['create', 'update', 'update-conditional', 'patch', 'delete', 'delete-conditional']);

/** Applies `Prefer: return` to writes (R4 http.html#ops); reads always return their resource. */
function respond(result: Outcome, request: FhirRequest, interaction: Interaction): FhirResponse {
  const headers = result.headers ?? {};
  if (!WRITES.has(interaction.kind)) return { status: result.status, body: result.resource, headers };
  switch (returnPreference(request.prefer)) {
    case 'minimal':
      return { status: result.status, headers };
    case 'OperationOutcome':
      return { status: result.status === 204 ? 200 : result.status, body: result.outcome, headers };
    case 'representation':
      return { status: result.status, body: result.resource, headers };
  }
}
