import { FhirError } from '../fhir/outcome.ts';
import { ResourceText, type ResponseResource } from '../fhir/resource-text.ts';
import type { InteractionHook } from '../router/context.ts';
import type { Interaction } from '../router/interaction.ts';
import type { FhirRequest, FhirResponse } from '../router/request.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import { auditEventsOf, type AuditSource } from './audit-event.ts';
import { auditEventIndexRows } from './audit-index-rows.ts';

/**
 * Every interaction's AuditEvents (one per patient involved: audit-event.ts), recorded on the store the
 * interaction ran in (router.ts): for a write, its unit of work, so the events commit or roll back with what
 * they record; for a read, the server's store, which appends the events of concurrent requests to its audit
 * log in one statement and one commit, the answer waiting for that commit: an access is on record before its
 * data leaves (ResourceStore.recordAuditEvents). An interaction's events are recorded together. Their index
 * rows are built from the events themselves (audit-index-rows.ts), not extracted again.
 */
export class AuditTrail implements InteractionHook {
  constructor(private readonly source: AuditSource = { name: 'dossier' }) {}

  async audit(interaction: Interaction | undefined, request: FhirRequest, response: FhirResponse, store: ResourceStore): Promise<void> {
    const answered = await answeredPatients(interaction, response, store);
    const events = auditEventsOf(interaction, request, response, this.source, answered);
    await store.recordAuditEvents(events.map((event) => ({ resource: event, indexRows: auditEventIndexRows(event) })));
  }
}

/**
 * The patients whose records hold what a successful answer carried in a Bundle (a search page with its
 * includes, a history page, `$everything`, a `$summary` document), as the store keeps them: one statement,
 * no resource parsed. A single resource answered is looked at by auditEventsOf itself (its text is at hand:
 * cheaper than a statement). A transaction's or batch's answer is left out: each entry has its own events.
 */
async function answeredPatients(interaction: Interaction | undefined, response: FhirResponse, store: ResourceStore): Promise<string[]> {
  if (!interaction || response.status >= 400 || interaction.kind === 'transaction' || interaction.kind === 'batch') return [];
  const answered = identitiesIn(response.body);
  // A Patient is its own record's: a page of Patients (`Patient?identifier=`) needs no statement.
  const patients = answered.filter((r) => r.resourceType === 'Patient').map((r) => r.id);
  const others = answered.filter((r) => r.resourceType !== 'Patient');
  return others.length === 0 ? patients : [...patients, ...(await store.recordPatients(others))];
}

function identitiesIn(body: ResponseResource | undefined): Array<{ resourceType: string; id: string }> {
  if (!body || body instanceof ResourceText || body.resourceType !== 'Bundle' || !('entry' in body)) return [];
  const found: Array<{ resourceType: string; id: string }> = [];
  for (const entry of body.entry ?? []) {
    const resource = entry.resource;
    if (resource instanceof ResourceText) found.push({ resourceType: resource.resourceType, id: resource.id });
    else if (resource && typeof resource.id === 'string' && resource.resourceType !== 'OperationOutcome' && resource.resourceType !== 'Bundle') found.push({ resourceType: resource.resourceType, id: resource.id });
  }
  return found;
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
