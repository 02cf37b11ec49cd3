import { FhirError } from '../fhir/outcome.ts';
import type { InteractionHook } from '../router/context.ts';
import type { Interaction } from '../router/interaction.ts';
import type { FhirRequest, FhirResponse } from '../router/request.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { auditEventOf, type AuditSource } from './audit-event.ts';

/**
 * Every interaction's AuditEvent, written on the store the interaction ran in (router.ts): for a write, its
 * unit of work, so the event commits or rolls back with what it records; for a read, the server's store,
 * whose creates from concurrent requests share one statement and one commit (CreateCoalescer), the
 * answer waiting for that commit: an access is on record before its data leaves.
 */
export class AuditTrail implements InteractionHook {
  constructor(private readonly source: AuditSource = { name: 'dossier' }) {}

  async audit(interaction: Interaction | undefined, request: FhirRequest, response: FhirResponse, store: ResourceStore): Promise<void> {
    await store.create(auditEventOf(interaction, request, response, this.source));
  }
}

const WRITES = new Set<Interaction['kind']>(['create', 'update', 'update-conditional', 'patch', 'delete', 'delete-conditional']);

/**
 * The trail is append-only and the server's own: no client creates, changes or deletes an AuditEvent
 * through the API, whether or not auditing is on. Updates and deletes are not allowed at all (405; the
 * database refuses them too, migration 0016); a create is forbidden (403) rather than not allowed, since
 * trusted systems may one day be let in to record events of their own.
 */
export const auditEventsAppendOnly: InteractionHook = {
  async authorise(interaction) {
    if (!WRITES.has(interaction.kind) || !('resourceType' in interaction) || interaction.resourceType !== 'AuditEvent') return;
    if (interaction.kind === 'create') {
      throw new FhirError(403, [{ code: 'forbidden', diagnostics: 'AuditEvents are written by the server itself, not through the API' }]);
    }
    throw FhirError.methodNotAllowed('AuditEvents are append-only: they are never updated, patched or deleted', ['GET', 'HEAD']);
  },
};
