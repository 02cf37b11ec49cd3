import type { Resource } from 'fhir/r4';
import { FhirError, operationOutcome, type Issue } from '../fhir/outcome.ts';
import { SERVED_RESOURCE_TYPES } from '../fhir/resource-types.ts';
import { entries, text } from './parameters.ts';
import type { OperationCall, OperationDefinition } from './registry.ts';
import type { Outcome } from '../router/context.ts';

const MODES = ['create', 'update', 'delete'] as const;
type Mode = (typeof MODES)[number];

/**
 * `$validate` (R4 resource-operations.html#validate) at system, type and instance level: the resource (as
 * the `resource` parameter or as the body itself; at instance level, by default the stored one) checked
 * the way a write would check it, optionally against a nominated `profile`, and for a `mode`. A Bundle of
 * any type is checked whole: its own rules and each entry's resource against that resource's profiles.
 * 200 with an OperationOutcome whether or not the resource is valid (the operation's comments: "A 4xx
 * or 5xx error means that the validation itself could not be performed"; HAPI FHIR too, since hapi-fhir#4662);
 * 400 only for a malformed call. Nothing is written.
 */
export const validateOperation: OperationDefinition = {
  name: 'validate',
  levels: ['system', 'type', 'instance'],
  // Bundle, beside the stored types: a document or message is validated before it is sent or stored.
  resourceTypes: [...new Set<string>([...SERVED_RESOURCE_TYPES, 'Bundle'])],
  affectsState: false,
  invoke: validate,
};

async function validate(call: OperationCall): Promise<Outcome> {
  const mode = text(call.parameters, 'mode') as Mode | undefined;
  if (mode !== undefined && !MODES.includes(mode)) {
    throw FhirError.badRequest(`Parameter 'mode' must be one of ${MODES.join(', ')}, not '${mode}'`, ['mode'], 'value');
  }
  const profile = text(call.parameters, 'profile');
  const issues = mode === 'delete' ? await deletable(call, call.resourceType!) : await contentIssues(call, mode, profile);
  if (issues.length === 0) issues.push({ severity: 'information', code: 'informational', diagnostics: 'All OK' });
  return { status: 200, resource: operationOutcome(issues) };
}

/** mode=delete: whether the instance could be deleted. No referential rule applies here: an existing resource can be. */
async function deletable(call: OperationCall, type: string): Promise<Issue[]> {
  if (!call.id) throw FhirError.badRequest('mode=delete validates the deletion of an instance: invoke it as POST [type]/[id]/$validate', ['mode'], 'value');
  try {
    await call.ctx.store.read(type, call.id);
    return [];
  } catch (error) {
    if (!(error instanceof FhirError) || (error.status !== 404 && error.status !== 410)) throw error;
    const state = error.status === 404 ? 'does not exist' : 'is already deleted';
    return [{ severity: 'information', code: 'informational', diagnostics: `${type}/${call.id} ${state}: deleting it would change nothing` }];
  }
}

async function contentIssues(call: OperationCall, mode: Mode | undefined, profile: string | undefined): Promise<Issue[]> {
  const given = entries(call.parameters, 'resource');
  if (given.length > 1) throw FhirError.badRequest("Parameter 'resource' is given more than once", ['resource']);
  let resource: unknown = given[0]?.resource;
  if (given.length === 1 && !isResource(resource)) throw FhirError.badRequest("Parameter 'resource' must carry a resource (a JSON object with a resourceType)", ['resource']);
  if (resource === undefined) {
    const what = call.resourceType ? `the ${call.resourceType} itself` : 'the resource itself';
    if (!call.id) throw FhirError.badRequest(`$validate needs the resource to validate: a 'resource' parameter, or ${what} as the body`, ['resource'], 'required');
    resource = (await call.ctx.store.read(call.resourceType!, call.id)).resource as Resource; // 404 / 410 when there is none
  }
  const { resourceType, id } = resource as { resourceType: string; id?: unknown };
  // At system level the resource says what it is; an unknown type is then the validator's finding (no R4 definition).
  const type = call.resourceType ?? resourceType;
  if (resourceType !== type) {
    return [{ severity: 'error', code: 'invalid', expression: ['resourceType'], diagnostics: `resourceType '${String(resourceType)}' does not match '${type}' in the URL` }];
  }
  const issues: Issue[] = [];
  if (mode === 'update') {
    if (id === undefined) issues.push({ severity: 'error', code: 'required', expression: [`${type}.id`], diagnostics: `${type}.id: an update needs the resource's id` });
    else if (call.id !== undefined && id !== call.id) {
      issues.push({ severity: 'error', code: 'invalid', expression: [`${type}.id`], diagnostics: `${type}.id: id '${String(id)}' does not match '${call.id}' in the URL` });
    }
  }
  const validator = call.ctx.deps.validator;
  if (validator.check) {
    issues.push(...validator.check(type, resource, profile === undefined ? undefined : { profile }).issues);
  } else {
    if (profile !== undefined) issues.push({ severity: 'error', code: 'not-supported', diagnostics: `Profile ${profile} cannot be checked: this server's validator does not take nominated profiles` });
    issues.push(...validator.validate(type, resource));
  }
  return issues;
}

function isResource(value: unknown): value is Resource {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && typeof (value as { resourceType?: unknown }).resourceType === 'string';
}
