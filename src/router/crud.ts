import type { Binary, Resource } from 'fhir/r4';
import { completeAttachments, type BinaryReader } from '../fhir/attachments.ts';
import { checkInput } from '../fhir/input-limits.ts';
import { FhirError, informational, withMoreIssues, type Issue } from '../fhir/outcome.ts';
import type { ResourceStore, StoredResource } from '../store/resource-store.ts';
import { lockAndMatch, parseCondition, severalMatches } from './conditional.ts';
import type { HandlerContext, Outcome } from './context.ts';
import type { Interaction } from './interaction.ts';
import { applyPatch } from './patch.ts';
import type { FhirRequest } from './request.ts';
import { checkReferences, refuseIfReferenced } from './references.ts';
import { checkResource } from './validate.ts';

type Of<K extends Interaction['kind']> = Extract<Interaction, { kind: K }>;

/** create (R4 http.html#create), conditional with `If-None-Exist` (http.html#ccreate). */
export async function create(interaction: Of<'create'>, request: FhirRequest, ctx: HandlerContext, checked: Resource): Promise<Outcome> {
  const body = await completeAttachments(checked, binaryReader(ctx.store));
  const condition = request.ifNoneExist;
  if (condition === undefined) return created(await ctx.store.create(body, request.assignedId, { baseUrl: request.baseUrl }), request);
  const parsed = parseCondition(ctx.deps, interaction.resourceType, condition, request.baseUrl);
  return ctx.store.unitOfWork(async (store) => {
    const matches = await lockAndMatch(store, parsed);
    if (matches.length > 1) throw severalMatches(parsed, matches, 'nothing created');
    if (matches.length === 1) {
      const existing = await store.read(interaction.resourceType, matches[0]!);
      return { status: 200, resource: existing, outcome: informational(`${interaction.resourceType}/${existing.id} already matches '${condition}'; nothing created`), headers: versionHeaders(existing, request.baseUrl) };
    }
    return created(await store.create(body, undefined, { baseUrl: request.baseUrl }), request);
  });
}

export async function read(interaction: Of<'read'>, request: FhirRequest, ctx: HandlerContext): Promise<Outcome> {
  const stored = streamsBinary(request, interaction) ? await ctx.store.readBinary(interaction.id) : await ctx.store.read(interaction.resourceType, interaction.id);
  return { status: 200, resource: stored, headers: versionHeaders(stored) };
}

export async function vread(interaction: Of<'vread'>, request: FhirRequest, ctx: HandlerContext): Promise<Outcome> {
  const stored = streamsBinary(request, interaction)
    ? await ctx.store.readBinary(interaction.id, interaction.versionId)
    : await ctx.store.vread(interaction.resourceType, interaction.id, interaction.versionId);
  return { status: 200, resource: stored, headers: versionHeaders(stored) };
}

/** update and update-as-create (R4 http.html#update). */
export async function update(interaction: Of<'update'>, request: FhirRequest, ctx: HandlerContext, checked: Resource): Promise<Outcome> {
  const body = await completeAttachments(checked, binaryReader(ctx.store));
  const { resource, created: isNew } = await ctx.store.update(body as Resource & { id: string }, { ifMatch: parseIfMatch(request.ifMatch), baseUrl: request.baseUrl });
  return updated(resource, isNew, request);
}

/** Conditional update (R4 http.html#cond-update): `PUT Patient?identifier=…`. */
export async function conditionalUpdate(interaction: Of<'update-conditional'>, request: FhirRequest, ctx: HandlerContext, checked: Resource): Promise<Outcome> {
  const condition = parseCondition(ctx.deps, interaction.resourceType, interaction.condition, request.baseUrl);
  return ctx.store.unitOfWork(async (store) => {
    const body = await completeAttachments(checked, binaryReader(store));
    const matches = await lockAndMatch(store, condition);
    if (matches.length > 1) throw severalMatches(condition, matches, 'nothing updated');
    const target = matches[0];
    if (target === undefined) {
      // No match: created, with the body's id if it has one (R4: "the server creates the resource").
      if (body.id !== undefined) {
        const { resource, created: isNew } = await store.update(body as Resource & { id: string }, { baseUrl: request.baseUrl });
        return updated(resource, isNew, request);
      }
      return created(await store.create(body, undefined, { baseUrl: request.baseUrl }), request);
    }
    if (body.id !== undefined && body.id !== target) {
      throw FhirError.badRequest(`The body's id '${body.id}' is not the matching resource's id '${target}'`, [`${interaction.resourceType}.id`]);
    }
    const { resource, created: isNew } = await store.update({ ...body, id: target }, { ifMatch: parseIfMatch(request.ifMatch), baseUrl: request.baseUrl });
    return updated(resource, isNew, request);
  });
}

export async function remove(interaction: Of<'delete'>, request: FhirRequest, ctx: HandlerContext): Promise<Outcome> {
  const target = `${interaction.resourceType}/${interaction.id}`;
  const ifMatch = parseIfMatch(request.ifMatch);
  if (!ctx.deps.referentialIntegrity) return deleted(target, (await ctx.store.delete(interaction.resourceType, interaction.id, { ifMatch })).versionId);
  return ctx.store.unitOfWork(async (store) => {
    const { versionId } = await store.delete(interaction.resourceType, interaction.id, { ifMatch });
    if (versionId !== undefined) await deletedReferenced(target, store, request);
    return deleted(target, versionId);
  });
}

/**
 * With referential integrity on, a deletion that leaves references to it is refused (409), checked in the
 * unit that deleted, once deleted (references.ts refuseIfReferenced); in a transaction, once every entry
 * has run.
 */
async function deletedReferenced(target: string, store: ResourceStore, request: FhirRequest): Promise<void> {
  if (request.deferDeleted) request.deferDeleted(target);
  else await refuseIfReferenced([target], store);
}

/** Conditional delete (R4 http.html#cdelete), single match only: several matches are 412. */
export async function conditionalDelete(interaction: Of<'delete-conditional'>, request: FhirRequest, ctx: HandlerContext): Promise<Outcome> {
  const condition = parseCondition(ctx.deps, interaction.resourceType, interaction.condition, request.baseUrl);
  return ctx.store.unitOfWork(async (store) => {
    const matches = await lockAndMatch(store, condition);
    if (matches.length > 1) throw severalMatches(condition, matches, 'nothing deleted');
    if (matches.length === 0) return deleted(`${interaction.resourceType}?${interaction.condition}`, undefined);
    const target = `${interaction.resourceType}/${matches[0]}`;
    const { versionId } = await store.delete(interaction.resourceType, matches[0]!, { ifMatch: parseIfMatch(request.ifMatch) });
    if (versionId !== undefined && ctx.deps.referentialIntegrity) await deletedReferenced(target, store, request);
    return deleted(target, versionId);
  });
}

/**
 * patch (R4 http.html#patch) with JSON Patch or FHIRPath Patch: applied to the current version, the
 * result validated and written like an update, all in one transaction; a failing patch writes nothing.
 * The current version is read locked, so concurrent patches queue and each applies to the one before's
 * result; only a client's own If-Match can make a patch fail for being late.
 */
export async function patch(interaction: Of<'patch'>, request: FhirRequest, ctx: HandlerContext): Promise<Outcome> {
  const ifMatch = parseIfMatch(request.ifMatch);
  let notes: Issue[] = [];
  const { resource: stored } = await ctx.store.patch(
    interaction.resourceType,
    interaction.id,
    async (current, store) => {
      const patched = applyPatch(structuredClone(current.resource), request.body);
      checkInput(patched, ctx.deps.inputLimits);
      const checked = checkResource(patched, interaction.resourceType, interaction.id, ctx.deps.validator);
      notes = checked.notes;
      // The checks after validation see what will be written: the patched resource, not the patch.
      for (const hook of ctx.deps.hooks ?? []) await hook.checkResource?.(interaction, request, checked.resource);
      if (ctx.deps.referentialIntegrity) {
        await checkReferences(checked.resource, { store, baseUrl: request.baseUrl, self: `${interaction.resourceType}/${interaction.id}`, defer: request.deferReferences, lock: true });
      }
      return completeAttachments(checked.resource, binaryReader(store));
    },
    { ifMatch, baseUrl: request.baseUrl },
  );
  const outcome = updated(stored, false, request);
  // A patch's warnings come back as an update's do (Prefer: return=OperationOutcome).
  return outcome.outcome ? { ...outcome, outcome: withMoreIssues(outcome.outcome, notes) } : outcome;
}

/**
 * A Binary read by a transport that streams its bytes, as themselves (R4 binary.html) or into FHIR JSON's
 * `data`: its content is read as the response goes out, not put together first.
 */
function streamsBinary(request: FhirRequest, interaction: Of<'read' | 'vread'>): boolean {
  return (request.rawBinary === true || request.streamBinary === true) && interaction.resourceType === 'Binary';
}

/** Binaries as attachment checks read them: in the writer's own store (a transaction's, in a bundle). */
function binaryReader(store: ResourceStore): BinaryReader {
  return async (id) => {
    try {
      const binary = await store.readBinary(id);
      return { contentType: (binary.resource as Binary).contentType, size: binary.content.size, hash: binary.content.sha1 };
    } catch (error) {
      if (error instanceof FhirError && (error.status === 404 || error.status === 410)) return undefined;
      throw error;
    }
  };
}

function created(stored: StoredResource, request: FhirRequest): Outcome {
  return { status: 201, resource: stored, outcome: informational(`Created ${stored.resourceType}/${stored.id}`), headers: versionHeaders(stored, request.baseUrl) };
}

function updated(stored: StoredResource, isNew: boolean, request: FhirRequest): Outcome {
  return {
    status: isNew ? 201 : 200,
    resource: stored,
    outcome: informational(`${isNew ? 'Created' : 'Updated'} ${stored.resourceType}/${stored.id} version ${stored.versionId}`),
    headers: versionHeaders(stored, isNew ? request.baseUrl : undefined),
  };
}

function deleted(target: string, versionId: number | undefined): Outcome {
  return {
    status: 204,
    outcome: informational(versionId === undefined ? `${target} did not exist; nothing to delete` : `Deleted ${target}`),
    headers: versionId === undefined ? {} : { etag: `W/"${versionId}"` },
  };
}

export function versionHeaders(stored: StoredResource, locationBase?: string): Record<string, string> {
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
