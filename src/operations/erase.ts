import { informational } from '../fhir/outcome.ts';
import type { Outcome } from '../router/context.ts';
import type { OperationCall, OperationDefinition } from './registry.ts';

/**
 * `Patient/{id}/$erase` (POST): closes the patient's record for good (ResourceStore.eraseRecord). The patient,
 * the members of its compartment and their Binaries are deleted with their history, and the record's data key
 * is destroyed, which leaves the append-only AuditEvents about it unreadable. Allowed to the patient (a token
 * whose fhirUser is this Patient, with a scope granting `d` on Patient) and to an administrator (a `system/`
 * scope granting `d` on every type): security/authorisation.ts. Answers an OperationOutcome saying what went.
 */
export const eraseOperation: OperationDefinition = {
  name: 'erase',
  levels: ['instance'],
  resourceTypes: ['Patient'],
  affectsState: true,
  invoke: erase,
};

async function erase(call: OperationCall): Promise<Outcome> {
  const erased = await call.ctx.store.eraseRecord(call.id!);
  const outcome = informational(
    `The record of Patient/${call.id} is erased: ${erased.resources} resources deleted with their history, ${erased.dataKeys} data keys destroyed, ${erased.auditEvents} AuditEvents about it kept unreadable, ${erased.authorizations} authorization records (sessions, approvals, grants, refresh tokens, launches) forgotten`,
  );
  return { status: 200, resource: outcome };
}
