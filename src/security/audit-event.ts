import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding, OperationOutcome, Resource } from 'fhir/r4';
import { ResourceText, type ResponseResource } from '../fhir/resource-text.ts';
import { CAPABILITY_CODE, type Interaction } from '../router/interaction.ts';
import { FormParameters, type FhirRequest, type FhirResponse } from '../router/request.ts';
import { loadPatientCompartment } from '../search/compartment.ts';
import { ALL_ACCESS, EMERGENCY_PURPOSES, type AccessContext } from '../store/access.ts';
import { StoredResource } from '../store/resource-store.ts';

// The AuditEvents of one interaction as IHE BALP (Basic Audit Log Patterns, profiles.ihe.net/ITI/BALP)
// describes a RESTful one: type `rest`, the FHIR interaction as subtype, the user (requestor), the client
// (Source Role ID) and this server (Destination Role ID) as agents, the resource touched, the patient as
// an entity of its own (one event per patient), and a search's query base64. Plain data built from the
// router's view of the interaction: no transport, no store.

const AUDIT_EVENT_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-event-type';
const RESTFUL_INTERACTION = 'http://hl7.org/fhir/restful-interaction';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const DICOM = 'http://dicom.nema.org/resources/ontology/DCM';
const PARTICIPATION_TYPE = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType';
const SOURCE_TYPE = 'http://terminology.hl7.org/CodeSystem/security-source-type';
/** HL7 PurposeOfUse (v3 ActReason), for purposeOfEvent and the emergency label. */
export const ACT_REASON = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';
/** Purposes of use that break the glass (store/access.ts): such accesses are labelled so that they stand out in a patient's trail. */
export { EMERGENCY_PURPOSES };

const BALP = 'https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.';

/** The server as it names itself in its trail (AuditEvent.source and the Destination Role ID agent). */
export interface AuditSource {
  /** A name for this server: `dossier` unless configured. */
  name: string;
}

type Kind = Interaction['kind'];

/** BALP's action for each interaction: a search or an operation executes a query, reads read. */
const ACTION: Record<Kind, AuditEvent['action']> = {
  capabilities: 'R',
  create: 'C',
  read: 'R',
  vread: 'R',
  update: 'U',
  'update-conditional': 'U',
  patch: 'U',
  delete: 'D',
  'delete-conditional': 'D',
  transaction: 'E',
  batch: 'E',
  operation: 'E',
  'history-instance': 'R',
  'history-type': 'R',
  'history-system': 'R',
  'search-type': 'E',
  'search-system': 'E',
  'search-compartment': 'E',
};

/** The BALP profile an event of this action is, when it succeeded (BALP profiles successes only). */
const PROFILE: Partial<Record<NonNullable<AuditEvent['action']>, string>> = { C: 'Create', R: 'Read', U: 'Update', D: 'Delete', E: 'Query' };

/**
 * The outcome code of R4 AuditEvent.outcome: 0 success; 4 minor failure (the client's request was refused
 * or wrong: 4xx); 8 serious failure (the server failed it: 5xx). 12 (major failure) is left to a server
 * that stopped working, which then writes nothing.
 */
export function auditOutcome(status: number): NonNullable<AuditEvent['outcome']> {
  return status < 400 ? '0' : status < 500 ? '4' : '8';
}

/**
 * The AuditEvents that record `interaction` (undefined when the request did not even parse) and its answer,
 * as BALP records an interaction involving several patients: one event per patient, each naming that patient
 * alone (and sealed under its data key: encryption.ts), the same in all else; one naming no patient when it
 * involved none. Its patients are those it names (patientsOf) and `answered`, the patients whose records hold
 * what it answered (a search page and its includes, an operation's output, a history page), which the trail
 * asks the store for (audit-trail.ts).
 */
export function auditEventsOf(
  interaction: Interaction | undefined,
  request: FhirRequest,
  response: FhirResponse,
  source: AuditSource,
  answered: readonly string[] = [],
  recorded = new Date(),
): AuditEvent[] {
  const access = request.access ?? ALL_ACCESS;
  const action = interaction ? ACTION[interaction.kind] : 'E';
  const outcome = auditOutcome(response.status);
  const target = targetOf(interaction, request, response);
  const patients = new Set(patientsOf(interaction, request, response.body, target));
  for (const id of answered) patients.add(`Patient/${id}`);
  const emergency = access.purposeOfUse.filter((code) => EMERGENCY_PURPOSES.has(code));
  const profile = outcome === '0' && action ? PROFILE[action] : undefined;
  const query = queryOf(interaction, request);
  const queryEntity: AuditEventEntity | undefined = query === undefined ? undefined : {
    type: coding(ENTITY_TYPE, '2', 'System Object'),
    role: coding(OBJECT_ROLE, '24', 'Query'),
    ...(interaction?.kind === 'operation' ? { description: `$${interaction.name}` } : {}),
    query: Buffer.from(query, 'utf8').toString('base64'),
  };
  const targetPatient = target?.startsWith('Patient/') ? target.split('/').slice(0, 2).join('/') : undefined;
  const security = emergency.map((code) => coding(ACT_REASON, code, code === 'BTG' ? 'break the glass' : 'emergency treatment'));
  const purposeOfEvent = access.purposeOfUse.map((code) => ({ coding: [coding(ACT_REASON, code)] }));
  const agent = agentsOf(access, request, source);
  const eventSource: AuditEvent['source'] = { site: request.baseUrl, observer: { display: source.name }, type: [coding(SOURCE_TYPE, '4', 'Application Server')] };

  const eventAbout = (patient: string | undefined): AuditEvent => {
    const entity: AuditEventEntity[] = [];
    // A Patient the interaction was on is named in its own event only: another patient's event (a record
    // that answered them) outlives that patient's erasure, and must not name them.
    if (target && (targetPatient === undefined || patient === undefined || targetPatient === patient)) {
      entity.push({ what: { reference: target }, type: coding(ENTITY_TYPE, '2', 'System Object'), role: coding(OBJECT_ROLE, '4', 'Domain Resource') });
    }
    if (patient) entity.push({ what: { reference: patient }, type: coding(ENTITY_TYPE, '1', 'Person'), role: coding(OBJECT_ROLE, '1', 'Patient') });
    if (queryEntity) entity.push(queryEntity);
    const meta: AuditEvent['meta'] = {
      ...(profile ? { profile: [`${BALP}${patient ? `Patient${profile}` : profile}`] } : {}),
      // The emergency label makes a break-the-glass access findable (`_security=…|BTG`) and visible at a glance.
      ...(security.length > 0 ? { security } : {}),
    };
    return {
      resourceType: 'AuditEvent',
      ...(Object.keys(meta).length > 0 ? { meta } : {}),
      type: coding(AUDIT_EVENT_TYPE, 'rest', 'Restful Operation'),
      subtype: [coding(RESTFUL_INTERACTION, interaction ? CAPABILITY_CODE[interaction.kind] : 'operation')],
      action,
      recorded: recorded.toISOString(),
      outcome,
      ...(outcome === '0' ? {} : { outcomeDesc: `${response.status} ${firstDiagnostics(response.body) ?? ''}`.trim().slice(0, 500) }),
      ...(purposeOfEvent.length > 0 ? { purposeOfEvent } : {}),
      agent,
      source: eventSource,
      entity,
    };
  };
  return patients.size === 0 ? [eventAbout(undefined)] : [...patients].map(eventAbout);
}

/**
 * The user (requestor, with their purpose of use), the client application they use (BALP's Source Role
 * ID) and this server (Destination Role ID). Unknown callers are recorded as such rather than left out:
 * until authorisation fills the access context, every request is anonymous.
 */
function agentsOf(access: AccessContext, request: FhirRequest, source: AuditSource): AuditEventAgent[] {
  const purposeOfUse = access.purposeOfUse.map((code) => ({ coding: [coding(ACT_REASON, code)] }));
  return [
    {
      type: { coding: [coding(PARTICIPATION_TYPE, 'IRCP', 'information recipient')] },
      // The user's kind (a Practitioner, a Patient…) is their role here until the token carries a profession.
      ...(access.who ? { who: { reference: access.who }, role: [{ coding: [{ system: 'http://hl7.org/fhir/resource-types', code: access.who.split('/')[0]! }] }] } : { who: { display: 'anonymous' } }),
      requestor: true,
      ...(purposeOfUse.length > 0 ? { purposeOfUse } : {}),
    },
    {
      type: { coding: [coding(DICOM, '110153', 'Source Role ID')] },
      who: access.clientId ? { identifier: { system: 'urn:ietf:params:oauth:client-id', value: access.clientId } } : { display: 'unknown client' },
      requestor: false,
    },
    {
      type: { coding: [coding(DICOM, '110152', 'Destination Role ID')] },
      who: { display: source.name },
      requestor: false,
      network: { address: request.baseUrl, type: '5' },
    },
  ];
}

/**
 * `Type/id` (with `/_history/v` once a version is known) of the one resource the interaction was on:
 * the resource answered, else the one the URL names. Searches, histories of types and bundles have none.
 */
function targetOf(interaction: Interaction | undefined, request: FhirRequest, response: FhirResponse): string | undefined {
  if (!interaction) return undefined;
  const answered = response.status < 400 ? identityOf(response.body) : undefined;
  switch (interaction.kind) {
    case 'create':
    case 'update':
    case 'update-conditional':
    case 'patch':
    case 'read':
    case 'vread':
      if (answered && answered.resourceType === interaction.resourceType && answered.id) {
        return `${answered.resourceType}/${answered.id}${answered.versionId ? `/_history/${answered.versionId}` : ''}`;
      }
      if (interaction.kind === 'vread') return `${interaction.resourceType}/${interaction.id}/_history/${interaction.versionId}`;
      if ('id' in interaction) return `${interaction.resourceType}/${interaction.id}`;
      return locationTarget(response);
    case 'delete':
    case 'history-instance':
      return `${interaction.resourceType}/${interaction.id}`;
    case 'operation':
      return interaction.resourceType && interaction.id ? `${interaction.resourceType}/${interaction.id}` : undefined;
    default:
      return undefined;
  }
}

/** A write answered without a body (`Prefer: return=minimal`) still says what it wrote, in Location. */
function locationTarget(response: FhirResponse): string | undefined {
  const location = response.headers.location ?? response.headers.Location;
  const match = location ? /\/([A-Za-z]+\/[A-Za-z0-9\-.]{1,64}\/_history\/\d+)$/.exec(location) : null;
  return match?.[1];
}

/** Type, id and version of the one resource answered, without parsing a stored one's text. */
function identityOf(body: ResponseResource | undefined): { resourceType: string; id?: string; versionId?: string } | undefined {
  if (body instanceof StoredResource) return { resourceType: body.resourceType, id: body.id, versionId: String(body.versionId) };
  const resource = resourceOf(body);
  return resource && { resourceType: resource.resourceType, ...(resource.id ? { id: resource.id } : {}), ...(resource.meta?.versionId ? { versionId: resource.meta.versionId } : {}) };
}

/** The answered resource as an object, when the answer is one resource (not a Bundle of results). */
function resourceOf(body: ResponseResource | undefined): Resource | undefined {
  if (body instanceof ResourceText) return body.resource;
  if (!body || typeof body !== 'object' || (body as Resource).resourceType === 'Bundle' || (body as Resource).resourceType === 'OperationOutcome') return undefined;
  return body as Resource;
}

let patientCompartment: Map<string, string[]> | undefined;

/**
 * The patients whose record the interaction touched (`Patient/id`): the patient read or written itself, the
 * compartment searched, the patients a search or operation names (`patient=`, `subject=`, `_id` of a Patient
 * search), and the patients the resource read or written refers to by the Patient CompartmentDefinition's
 * parameters, read as the elements of the same name (`patient`, `subject`, `performer`…): most of them are.
 */
function patientsOf(interaction: Interaction | undefined, request: FhirRequest, body: ResponseResource | undefined, target: string | undefined): string[] {
  const patients = new Set<string>();
  if (!interaction) return [];
  if (target?.startsWith('Patient/')) patients.add(target.split('/').slice(0, 2).join('/'));
  if (interaction.kind === 'search-compartment' && interaction.compartmentType === 'Patient') patients.add(`Patient/${interaction.id}`);
  if (interaction.kind.startsWith('search') || interaction.kind === 'operation') {
    const resourceType = 'resourceType' in interaction ? interaction.resourceType : undefined;
    for (const [name, value] of queryPairs(request)) {
      const param = name.split(':')[0]!.split('.')[0]!;
      for (const one of value.split(',')) {
        if ((param === 'patient' || param === 'subject') && one.length > 0) {
          const reference = one.includes('/') ? one.replace(/^.*\b(Patient\/[^/]+)(\/.*)?$/, '$1') : `Patient/${one}`;
          if (/^Patient\/[A-Za-z0-9\-.]{1,64}$/.test(reference)) patients.add(reference);
        } else if (param === '_id' && resourceType === 'Patient' && /^[A-Za-z0-9\-.]{1,64}$/.test(one)) patients.add(`Patient/${one}`);
      }
    }
  }
  // A Patient answered is its own patient (the target, above): its text is not parsed for references.
  if (body instanceof ResourceText && body.resourceType === 'Patient') return [...patients];
  const resource = resourceOf(body) ?? (isWrite(interaction.kind) ? (request.body as Resource | undefined) : undefined);
  if (resource && typeof resource === 'object' && typeof resource.resourceType === 'string' && resource.resourceType !== 'Patient') {
    patientCompartment ??= loadPatientCompartment();
    for (const element of patientCompartment.get(resource.resourceType) ?? []) {
      for (const reference of referencesIn((resource as unknown as Record<string, unknown>)[element])) {
        if (/^Patient\/[A-Za-z0-9\-.]{1,64}$/.test(reference)) patients.add(reference);
      }
    }
  }
  return [...patients];
}

function isWrite(kind: Kind): boolean {
  return kind === 'create' || kind === 'update' || kind === 'update-conditional' || kind === 'patch';
}

/** The `reference` strings of an element: a Reference, a list of them, or a list of backbone elements holding `actor`/`who` (one level). */
function referencesIn(value: unknown): string[] {
  const found: string[] = [];
  for (const item of Array.isArray(value) ? value : [value]) {
    if (!item || typeof item !== 'object') continue;
    const record = item as Record<string, unknown>;
    if (typeof record.reference === 'string') found.push(record.reference);
    for (const inner of [record.actor, record.who, record.individual]) {
      if (inner && typeof inner === 'object' && typeof (inner as Record<string, unknown>).reference === 'string') found.push((inner as { reference: string }).reference);
    }
  }
  return found;
}

/** The query of a search, history or operation as the client sent it (its form body for POST `_search`); undefined otherwise. */
function queryOf(interaction: Interaction | undefined, request: FhirRequest): string | undefined {
  if (!interaction) return undefined;
  const kind = interaction.kind;
  if (!kind.startsWith('search') && !kind.startsWith('history') && kind !== 'operation') return undefined;
  const query = new URLSearchParams(queryPairs(request)).toString();
  return kind === 'operation' ? `${request.method} ${request.path}${query ? `?${query}` : ''}` : query;
}

function queryPairs(request: FhirRequest): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(request.query)) for (const one of Array.isArray(value) ? value : [value]) pairs.push([name, one]);
  if (request.body instanceof FormParameters) pairs.push(...request.body.entries);
  return pairs;
}

function firstDiagnostics(body: ResponseResource | undefined): string | undefined {
  if (!body || body instanceof ResourceText || (body as Resource).resourceType !== 'OperationOutcome') return undefined;
  return (body as OperationOutcome).issue?.[0]?.diagnostics;
}

function coding(system: string, code: string, display?: string): Coding {
  return { system, code, ...(display ? { display } : {}) };
}
