import type { Binary, Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import type { Issue } from '../fhir/outcome.ts';
import { isError, type ResourceValidator } from '../fhir/validation/validator.ts';
import { withStreamedBytes } from '../store/binary-store.ts';
import { FormParameters, RawBody, UnsupportedBody } from './request.ts';

export interface CheckedResource {
  resource: Resource;
  /** Warnings and information from validation: returned to the client, never blocking. */
  notes: Issue[];
}

/**
 * A resource about to be written, checked against where it is going (type, id), the R4 definitions and
 * the profiles that apply. Not R4 at all: 400; valid R4 that breaks a profile or a French rule: 422.
 * `id`: the id the URL names (update), `null` when the URL names none (create, conditional update).
 */
export function checkResource(
  body: unknown,
  resourceType: string,
  id: string | null,
  validator: ResourceValidator,
  securityContext?: string,
  requiredProfiles?: readonly string[],
): CheckedResource {
  if (body instanceof RawBody && resourceType === 'Binary') body = binaryOf(body, id, securityContext);
  if (body instanceof UnsupportedBody || body instanceof RawBody || body instanceof FormParameters) {
    const mediaType = body instanceof UnsupportedBody ? body.mediaType : body instanceof RawBody ? body.contentType : 'application/x-www-form-urlencoded';
    throw new FhirError(415, [{ code: 'not-supported', diagnostics: `Unsupported Content-Type '${mediaType}': send application/fhir+json (or application/json)` }]);
  }
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw FhirError.badRequest('The request body must be a FHIR resource (a JSON object)', undefined, 'structure');
  }
  const { resourceType: bodyType, id: bodyId } = body as { resourceType?: unknown; id?: unknown };
  if (bodyType !== resourceType) {
    throw FhirError.badRequest(`resourceType '${String(bodyType)}' in the body does not match '${resourceType}' in the URL`, ['resourceType']);
  }
  if (id !== null) {
    if (bodyId === undefined) throw FhirError.badRequest(`The body must carry id '${id}' to update it`, [`${resourceType}.id`], 'required');
    if (bodyId !== id) throw FhirError.badRequest(`id '${String(bodyId)}' in the body does not match '${id}' in the URL`, [`${resourceType}.id`]);
  }
  if (resourceType === 'Bundle') assertStorableBundle(body as { type?: unknown });
  const options = requiredProfiles?.length ? { requiredProfiles } : undefined;
  const { issues, failedStage } = validator.check?.(resourceType, body, options) ?? { issues: validator.validate(resourceType, body), failedStage: undefined };
  if (issues.some(isError)) throw new FhirError(failedStage === 'profile' ? 422 : 400, issues);
  return { resource: body as Resource, notes: issues };
}

/** Bundle types stored as resources, as HAPI FHIR stores them by default: the others are messages to the server or its answers. */
const STORABLE_BUNDLE_TYPES = ['document', 'collection', 'message'];

/** A transaction or batch is posted to the base to be processed; a searchset or history is an answer, not a record. */
function assertStorableBundle(bundle: { type?: unknown }): void {
  if (typeof bundle.type !== 'string' || STORABLE_BUNDLE_TYPES.includes(bundle.type)) return;
  const hint = bundle.type === 'transaction' || bundle.type === 'batch' ? ': to have its entries processed, POST it to the base URL instead' : '';
  throw new FhirError(422, [
    { code: 'business-rule', expression: ['Bundle.type'], diagnostics: `A Bundle of type '${bundle.type}' is not stored here; stored Bundles are of type ${STORABLE_BUNDLE_TYPES.join(', ')}${hint}` },
  ]);
}

/**
 * The Binary resource for content posted in its own media type (R4 binary.html#rest). Its bytes are not
 * read here: they stay a stream, which the router writes as chunks before the write (binary-store.ts).
 */
function binaryOf(raw: RawBody, id: string | null, securityContext: string | undefined): Resource {
  const binary: Binary = {
    resourceType: 'Binary',
    ...(id !== null ? { id } : {}),
    contentType: raw.contentType.split(';')[0]!.trim(),
    ...(securityContext ? { securityContext: { reference: securityContext } } : {}),
  };
  return withStreamedBytes(binary, raw.bytes);
}
