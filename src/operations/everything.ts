import type { BundleLink } from 'fhir/r4';
import { randomUUID } from 'node:crypto';
import { FhirError } from '../fhir/outcome.ts';
import type { ResponseBundle } from '../fhir/resource-text.ts';
import { isServedResourceType } from '../fhir/resource-types.ts';
import type { Outcome } from '../router/context.ts';
import { parseCount } from '../router/history.ts';
import type { Compartment } from '../search/compartment.ts';
import { parseDateRange } from '../search/dates.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import type { RecordQuery } from '../store/resource-store.ts';
import { entries, text, valueOf } from './parameters.ts';
import type { OperationCall, OperationDefinition } from './registry.ts';

/**
 * `Patient/$everything` (R4 patient-operation-everything.html), at instance level for one patient and at
 * type level for every patient the caller sees (or those of `_id`): a `searchset` Bundle of the members of
 * their Patient compartments (search mode `match`) and the resources those reference that belong to no
 * patient's record (`include`: practitioners, organisations, medications, locations…), each once across
 * the pages a walk of `next` links reads (ResourceStore.readRecord). `start`/`end` keep the resources whose
 * clinical date (CARE_DATE_PARAMS) meets the period, or that have none; `_since` those updated since;
 * `_type` those of the listed types (the audit trail only then). A Binary is not part of the answer: it belongs to no compartment, and
 * a DocumentReference's attachment `url` reads it (with its own access rule, its securityContext).
 */
export const everythingOperation: OperationDefinition = {
  name: 'everything',
  levels: ['type', 'instance'],
  resourceTypes: ['Patient'],
  affectsState: false,
  invoke: everything,
};

/**
 * The search parameter holding a resource type's clinical date where it is not `date` (R4 gives most
 * clinical types a `date` parameter: Observation, Encounter, Procedure, Immunization, AllergyIntolerance…).
 * A type with neither has no clinical date, and `start`/`end` leave its resources in.
 */
const CARE_DATE_PARAMS: Record<string, string> = {
  Condition: 'onset-date',
  DocumentReference: 'period',
  MedicationRequest: 'authoredon',
  MedicationStatement: 'effective',
  MedicationAdministration: 'effective-time',
  MedicationDispense: 'whenhandedover',
  ServiceRequest: 'authored',
  Claim: 'created',
  ExplanationOfBenefit: 'created',
};

/**
 * Left out unless `_type` asks for them: the audit trail is in the Patient compartment (R4 gives AuditEvent a
 * `patient` parameter), but it is the record of who read the record, not part of it, and it grows with each
 * read, $everything's own included.
 */
const TRAIL_TYPES: readonly string[] = ['AuditEvent'];

const careDateParamsByRegistry = new WeakMap<SearchParameterRegistry, Map<string, string>>();

/** Per type of the Patient compartment, the date parameter of its clinical date, if it has one. */
export function careDateParams(registry: SearchParameterRegistry, patientCompartment: Compartment): Map<string, string> {
  let params = careDateParamsByRegistry.get(registry);
  if (!params) {
    params = new Map();
    for (const type of patientCompartment.params.keys()) {
      const code = CARE_DATE_PARAMS[type] ?? 'date';
      if (registry.get(type, code)?.type === 'date') params.set(type, code);
    }
    careDateParamsByRegistry.set(registry, params);
  }
  return params;
}

async function everything(call: OperationCall): Promise<Outcome> {
  const { store, deps } = call.ctx;
  const start = dateParameter(call, 'start');
  const end = dateParameter(call, 'end');
  const sinceText = text(call.parameters, '_since');
  const since = sinceText === undefined ? undefined : parseDateRange(sinceText)?.low;
  if (sinceText !== undefined && !since) {
    throw FhirError.badRequest(`_since must be an instant such as 2024-01-31T08:00:00Z, not '${sinceText}'`, ['_since']);
  }
  const types = listParameter(call, '_type');
  for (const type of types ?? []) if (!isServedResourceType(type)) throw FhirError.badRequest(`_type: '${type}' is not a resource type this server holds`, ['_type']);
  const count = parseCount(text(call.parameters, '_count'));
  const cursor = text(call.parameters, '_cursor');

  let patients: string[] | 'all';
  if (call.id) {
    if (entries(call.parameters, '_id').length > 0) throw FhirError.badRequest('_id selects patients at type level (Patient/$everything?_id=…), not on one patient', ['_id']);
    await store.read('Patient', call.id); // 404 when unknown or hidden, 410 when deleted
    patients = [call.id];
  } else {
    const ids = listParameter(call, '_id');
    // Patients the caller sees and that are not deleted: the records of others are no one's to list here.
    patients = ids ? [...(await store.existing(ids.map((id) => `Patient/${id}`)))].map((reference) => reference.slice('Patient/'.length)).sort() : 'all';
  }

  const compartment = deps.compartments.get('Patient')!;
  const query: RecordQuery = {
    patients,
    ...(types ? { types } : { exceptTypes: TRAIL_TYPES }),
    ...(since ? { since: since.toISOString() } : {}),
    ...(start || end ? { careDates: { params: careDateParams(deps.registry, compartment), from: start?.low.toISOString(), to: end?.high.toISOString() } } : {}),
    count,
    ...(cursor ? { cursor } : {}),
  };
  const page = await store.readRecord(query);

  // Links name the call as a GET with the parameters it was given, whichever way it came.
  const applied = new URLSearchParams();
  for (const name of ['start', 'end', '_since', '_type', '_id']) {
    const value = name === '_type' ? types?.join(',') : name === '_id' ? listParameter(call, '_id')?.join(',') : text(call.parameters, name);
    if (value !== undefined) applied.set(name, value);
  }
  applied.set('_count', String(count));
  const base = `${call.request.baseUrl}/Patient${call.id ? `/${call.id}` : ''}/$everything`;
  const url = (at?: string) => {
    const query = new URLSearchParams(applied);
    if (at) query.set('_cursor', at);
    return `${base}?${query.toString()}`;
  };
  const link: BundleLink[] = [
    { relation: 'self', url: url(cursor) },
    { relation: 'first', url: url() },
    ...(page.next ? [{ relation: 'next', url: url(page.next) }] : []),
  ];
  const bundle: ResponseBundle = {
    resourceType: 'Bundle',
    id: randomUUID(),
    meta: { lastUpdated: new Date().toISOString() },
    type: 'searchset',
    // A single page holding every entry has counted them; otherwise counting would read the whole record.
    ...(cursor === undefined && page.next === undefined ? { total: page.entries.filter((e) => e.mode === 'match').length } : {}),
    link,
    ...(page.entries.length > 0
      ? { entry: page.entries.map(({ resource, mode }) => ({ fullUrl: `${call.request.baseUrl}/${resource.resourceType}/${resource.id}`, resource, search: { mode } })) }
      : {}),
  };
  return { status: 200, resource: bundle };
}

/** A date parameter (`start`, `end`): a FHIR date or dateTime, as the range it stands for. */
function dateParameter(call: OperationCall, name: string) {
  const value = text(call.parameters, name);
  if (value === undefined) return undefined;
  const range = parseDateRange(value);
  if (!range) throw FhirError.badRequest(`Parameter '${name}' must be a date such as 2024-01-31, not '${value}'`, [name]);
  return range;
}

/** A parameter of comma-separated values, possibly repeated (`_type=Observation,Condition&_type=Encounter`): the values, each once. */
function listParameter(call: OperationCall, name: string): string[] | undefined {
  const found = entries(call.parameters, name);
  if (found.length === 0) return undefined;
  const values = new Set<string>();
  for (const entry of found) {
    const value = valueOf(entry);
    if (typeof value !== 'string') throw FhirError.badRequest(`Parameter '${name}' must be a comma-separated list`, [name]);
    for (const item of value.split(',')) {
      const trimmed = item.trim();
      if (trimmed === '') throw FhirError.badRequest(`Parameter '${name}' has an empty item: '${value}'`, [name]);
      values.add(trimmed);
    }
  }
  return [...values];
}
