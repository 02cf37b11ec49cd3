import { randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { resourceObject, ResourceText, type ResponseBundle, type ResponseResource } from '../fhir/resource-text.ts';
import { isServedResourceType } from '../fhir/resource-types.ts';
import { parseSearch } from '../search/parse.ts';
import { MAX_PAGE_SIZE } from '../router/history.ts';
import type { Outcome } from '../router/context.ts';
import { text } from './parameters.ts';
import type { OperationCall, OperationDefinition } from './registry.ts';
import { div, formatDate, formatName, labels, systemName, table, type SummaryLanguage } from './summary-narrative.ts';
import { LOINC, patientContactRows, SECTIONS, type PatientRecord, type RowContext, type SectionSpec } from './summary-sections.ts';
import { escapeXml } from '../fhir/xml-text.ts';
import type { RecordToken } from '../store/resource-store.ts';

/**
 * `Patient/$summary` (IPS 2.0.0 OperationDefinition http://hl7.org/fhir/uv/ips/OperationDefinition/summary):
 * the GP's one page, composed on demand from what the sources pushed. A `document` Bundle whose first entry
 * is an IPS Composition, then every resource its sections reference and every resource those reference in
 * turn (a document contains what it references), each once.
 *
 * Everything is read through `call.ctx.store`, the store bound to the caller's access context: what the
 * caller may not see is not in the summary either, and hidden references are not followed.
 */
export const summaryOperation: OperationDefinition = {
  name: 'summary',
  levels: ['type', 'instance'],
  resourceTypes: ['Patient'],
  affectsState: false,
  invoke: summarise,
};

export const IPS_COMPOSITION_PROFILE = 'http://hl7.org/fhir/uv/ips/StructureDefinition/Composition-uv-ips';
export const IPS_BUNDLE_PROFILE = 'http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips';
const LIST_EMPTY_REASON = 'http://terminology.hl7.org/CodeSystem/list-empty-reason';
/** The Device this server is as the summary's author (IPS: author is a Device when a system composed it). */
const GENERATOR_NAME = 'dossier — synthèse patient';

type Json = Record<string, any>;

async function summarise(call: OperationCall): Promise<Outcome> {
  const language = summaryLanguage(call);
  const profile = text(call.parameters, 'profile');
  if (profile !== undefined && profile.split('|')[0] !== IPS_COMPOSITION_PROFILE) {
    throw FhirError.badRequest(`Profile ${profile} is not supported: this server composes summaries to ${IPS_COMPOSITION_PROFILE}`, ['profile'], 'not-supported');
  }
  // References worked out once for the whole summary: the record's `subject`s and what the sections reference.
  const local = localReferences(call.request.baseUrl);
  const { patientText, record, texts } = await readPatientRecord(call, local);
  const patient = patientText.resource as Json;
  const baseUrl = call.request.baseUrl;

  const chosen = SECTIONS.map((spec) => ({ spec, entries: spec.select(record) }));
  const contactRows = patientContactRows(patient);
  const present = chosen.filter(({ spec, entries }) => spec.presence !== 'optional' || entries.length > 0 || (spec.key === 'sectionEmergencyContacts' && contactRows.length > 0));

  // What the sections reference, and what that references in turn, read once each.
  const included = new Map<string, ResourceText>([[`Patient/${patient.id}`, patientText]]);
  for (const { entries } of present) for (const resource of entries) included.set(`${resource.resourceType}/${resource.id}`, texts.get(resource)!);
  await includeReferenced(call, included, local);

  const resolve = (reference: string | undefined) => (reference === undefined ? undefined : (included.get(local(reference) ?? '')?.resource as Json | undefined));
  const context: RowContext = { language, labels: labels(language), resolve };
  const now = new Date().toISOString();
  const generator = generatorDevice();
  const generatorUrl = `urn:uuid:${generator.id}`;

  const sections = present.map(({ spec, entries }) => section(spec, entries, context, spec.key === 'sectionEmergencyContacts' ? contactRows : []));
  const composition: Json = {
    resourceType: 'Composition',
    id: randomUUID(),
    meta: { profile: [IPS_COMPOSITION_PROFILE] },
    language,
    text: { status: 'generated', div: compositionNarrative(patient, present, context, now) },
    status: 'final',
    type: { coding: [{ system: LOINC, code: '60591-5', display: 'Patient summary Document' }] },
    subject: { reference: `Patient/${patient.id}` },
    date: now,
    author: [{ reference: generatorUrl }],
    title: language === 'fr' ? `Synthèse médicale de ${formatName(patient.name) || patient.id}` : `Patient summary of ${formatName(patient.name) || patient.id}`,
    confidentiality: 'N',
    section: sections,
  };
  const bundleId = randomUUID();
  const bundle: ResponseBundle = {
    resourceType: 'Bundle',
    id: bundleId,
    meta: { profile: [IPS_BUNDLE_PROFILE] },
    language,
    identifier: { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${bundleId}` },
    type: 'document',
    timestamp: now,
    entry: [
      { fullUrl: `urn:uuid:${composition.id}`, resource: composition as Resource },
      // The stored texts, written out as they are: no resource of the record is serialised again.
      ...[...included.entries()].map(([reference, resource]) => ({ fullUrl: `${baseUrl}/${reference}`, resource })),
      { fullUrl: generatorUrl, resource: generator as Resource },
    ],
  };
  return { status: 200, resource: bundle };
}

/**
 * `language` parameter (`fr`, `en`, or a tag of either such as `en-GB`); French by default. A parameter rather
 * than Accept-Language: an operation is transport-free, and a bundle entry or a saved link asks the same way.
 */
function summaryLanguage(call: OperationCall): SummaryLanguage {
  const asked = text(call.parameters, 'language');
  if (asked === undefined) return 'fr';
  const primary = asked.toLowerCase().split('-')[0];
  if (primary !== 'fr' && primary !== 'en') throw FhirError.badRequest(`Parameter 'language' must be fr or en, not '${asked}'`, ['language'], 'value');
  return primary;
}

/**
 * The patient and its record. At instance level the patient comes with its record, in the same statement
 * (a patient is a member of its own compartment); when it does not (unknown, deleted, hidden), reading it
 * says which (404, 410). At type level it is found first by `identifier` (system|value: an INS).
 */
async function readPatientRecord(call: OperationCall, local: LocalReferences): Promise<RecordResources & { patientText: ResourceText }> {
  const identifier = text(call.parameters, 'identifier');
  if (call.id !== undefined) {
    if (identifier !== undefined) throw FhirError.badRequest("Parameter 'identifier' selects the patient at type level (Patient/$summary); here the id does", ['identifier']);
    const { patientText, ...record } = await readRecord(call, call.id, true, local);
    return { patientText: patientText ?? (await call.ctx.store.read('Patient', call.id)), ...record };
  }
  if (identifier === undefined || identifier === '') {
    throw FhirError.badRequest('Patient/$summary needs the patient: an identifier parameter (system|value), or invoke Patient/[id]/$summary', ['identifier'], 'required');
  }
  const search = parseSearch(['Patient'], [['identifier', identifier], ['_count', '2']], call.ctx.deps.registry, { strict: true, baseUrl: call.request.baseUrl });
  const found = matches(await call.ctx.store.search(search, { baseUrl: call.request.baseUrl, path: 'Patient' }));
  if (found.length === 0) throw FhirError.notFound(`No patient has the identifier ${identifier}`);
  if (found.length > 1) throw new FhirError(422, [{ severity: 'error', code: 'multiple-matches', expression: ['identifier'], diagnostics: `Several patients have the identifier ${identifier}: name one by its id` }]);
  const patientText = found[0]!;
  return { patientText, ...(await readRecord(call, patientText.id, false, local)) };
}

/**
 * The resources of the patient's compartment the sections read, entered-in-error ones left out: one
 * statement for the whole record (the compartment index, members only), not a search per type; with
 * `withPatient`, the patient too. Each is kept as its stored text, parsed once, and written out as it was stored.
 */
async function readRecord(call: OperationCall, patientId: string, withPatient: boolean, local: LocalReferences): Promise<RecordResources & { patientText?: ResourceText }> {
  const recordTypes = [...new Set(SECTIONS.flatMap((spec) => spec.types))];
  const types = (withPatient ? [...recordTypes, 'Patient'] : recordTypes).sort();
  const record = new Map<string, Json[]>(recordTypes.map((type) => [type, []]));
  const texts = new Map<Json, ResourceText>();
  let patientText: ResourceText | undefined;
  let cursor: string | undefined;
  do {
    const page = await call.ctx.store.readRecord({ patients: [patientId], types, tokens: RECORD_TOKENS, count: MAX_PAGE_SIZE, membersOnly: true, ...(cursor ? { cursor } : {}) });
    for (const { resource: text } of page.entries) {
      if (text.resourceType === 'Patient') {
        // Another patient may be a member too (Patient.link): only this one is the summary's.
        if (text.id === patientId) patientText = text;
        continue;
      }
      const resource = text.resource as Json;
      if (enteredInError(resource) || !isAbout(resource, patientId, local)) continue;
      record.get(text.resourceType)!.push(resource);
      texts.set(resource, text);
    }
    cursor = page.next;
  } while (cursor);
  return { record, texts, ...(patientText ? { patientText } : {}) };
}

/**
 * The tokens the record is read with: a type's members are read only when they hold one of its tokens, if
 * every section that reads the type keeps only such members: an Observation of no category the sections show
 * (and no pregnancy code) is neither read nor parsed.
 */
const RECORD_TOKENS: readonly RecordToken[] = (() => {
  const readWhole = new Set(SECTIONS.flatMap((spec) => spec.types.filter((type) => !spec.tokens?.some((token) => token.type === type))));
  return SECTIONS.flatMap((spec) => spec.tokens ?? []).filter((token) => !readWhole.has(token.type));
})();

/** The record by type, and the stored text of each of its resources (what the Bundle carries). */
interface RecordResources {
  record: PatientRecord;
  texts: ReadonlyMap<Json, ResourceText>;
}

/**
 * Whether a member of the patient's compartment is about the patient (its `patient` or `subject`), not only
 * one of the patient's doing: a pulse a patient took of another is in both compartments (Observation.performer)
 * but in the summary of the one whose pulse it is.
 */
function isAbout(resource: Json, patientId: string, local: LocalReferences): boolean {
  const about = resource.patient?.reference ?? resource.subject?.reference;
  return typeof about === 'string' && local(about) === `Patient/${patientId}`;
}

/** IPS: entered-in-error never, whether it says so by status or by verification status. */
function enteredInError(resource: Json): boolean {
  return resource.status === 'entered-in-error' || resource.verificationStatus?.coding?.some((c: Json) => c.code === 'entered-in-error') === true;
}

/** The matches of a search page as stored texts: not `_include`d resources, nor an OperationOutcome about the search. */
function matches(page: ResponseBundle): ResourceText[] {
  return (page.entry ?? []).filter((entry) => (entry.search?.mode ?? 'match') === 'match' && entry.resource).map((entry) => asText(entry.resource!));
}

function asText(resource: ResponseResource): ResourceText {
  if (resource instanceof ResourceText) return resource;
  const object = resourceObject(resource);
  return new ResourceText(object.resourceType, object.id!, JSON.stringify(object), object);
}

/**
 * `Type/id` for a reference to this server (relative, or absolute below its base), undefined otherwise;
 * each reference worked out once per summary (a record names its few practitioners hundreds of times).
 */
type LocalReferences = (reference: string) => string | undefined;

function localReferences(baseUrl: string): LocalReferences {
  const known = new Map<string, string | undefined>();
  return (reference) => {
    if (known.has(reference)) return known.get(reference);
    const relative = reference.startsWith(`${baseUrl}/`) ? reference.slice(baseUrl.length + 1) : reference;
    const match = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9.-]{1,64})(?:\/_history\/[^/]+)?$/.exec(relative);
    const local = match && isServedResourceType(match[1]!) ? `${match[1]}/${match[2]}` : undefined;
    known.set(reference, local);
    return local;
  };
}

/** Calls `found` with each `reference` string in `value`, contained resources and narrative left out. */
function referencesIn(value: unknown, found: (reference: string) => void): void {
  if (Array.isArray(value)) {
    for (const item of value) if (item !== null && typeof item === 'object') referencesIn(item, found);
    return;
  }
  const object = value as Record<string, unknown>;
  for (const key in object) {
    const child = object[key];
    if (key === 'reference' && typeof child === 'string') found(child);
    else if (child !== null && typeof child === 'object' && key !== 'contained' && key !== 'text') referencesIn(child, found);
  }
}

/**
 * False when the resource's text has no `reference` member anywhere, so nothing to follow: then it is not
 * parsed for nothing (most of what a record names, organisations, locations and medications, references
 * nothing). Stored texts are JSON.stringify's, which escapes no letter: a member `reference` is always
 * written `"reference"` (the text holding it otherwise, in a string, is only parsed as before).
 */
function mayReference(text: ResourceText): boolean {
  return text.json.includes('"reference"');
}

/**
 * Adds to `included` what its resources reference, until nothing new is referenced: a document holds what it
 * references (R4 bundle.html, document). Each round reads every new reference in one statement, through the
 * caller's store: a reference to what the caller may not see (or to nothing) is left as it is. Resources
 * come in the order they were first referenced by type, each type's in id order.
 */
async function includeReferenced(call: OperationCall, included: Map<string, ResourceText>, local: LocalReferences): Promise<void> {
  const looked = new Set<string>(included.keys());
  let pending = [...included.values()];
  while (pending.length > 0) {
    // New references, and their types in the order first referenced.
    const wanted: string[] = [];
    const byType = new Map<string, ResourceText[]>();
    const note = (reference: string) => {
      const key = local(reference);
      if (key === undefined || looked.has(key)) return;
      looked.add(key);
      wanted.push(key);
      const type = key.slice(0, key.indexOf('/'));
      if (!byType.has(type)) byType.set(type, []);
    };
    for (const text of pending) if (mayReference(text)) referencesIn(text.resource, note);
    for (let start = 0; start < wanted.length; start += MAX_PAGE_SIZE) {
      for (const text of await call.ctx.store.readMany(wanted.slice(start, start + MAX_PAGE_SIZE))) byType.get(text.resourceType)!.push(text);
    }
    pending = [];
    for (const [type, texts] of byType) {
      for (const text of texts) {
        included.set(`${type}/${text.id}`, text);
        pending.push(text);
      }
    }
  }
}

function section(spec: SectionSpec, entries: Json[], context: RowContext, extraRows: string[][]): Json {
  const rows = [...entries.map((resource) => spec.row(resource, context)), ...extraRows];
  const title = spec.title[context.language];
  const body = rows.length > 0 ? table(spec.columns(context.labels), rows) : `<p>${escapeXml(context.labels.noData)}</p>`;
  return {
    title,
    code: { coding: [{ system: LOINC, code: spec.code, display: spec.display }] },
    text: { status: 'generated', div: div(`<h3>${escapeXml(title)}</h3>${body}`, context.language) },
    ...(entries.length > 0
      ? { entry: entries.map((resource) => ({ reference: `${resource.resourceType}/${resource.id}` })) }
      : rows.length > 0
        ? {}
        : { emptyReason: { coding: [{ system: LIST_EMPTY_REASON, code: 'unavailable', display: 'Unavailable' }] } }),
  };
}

function compositionNarrative(patient: Json, present: Array<{ spec: SectionSpec; entries: Json[] }>, context: RowContext, now: string): string {
  const l = context.labels;
  const birth = patient.birthDate ? `, ${l.born} ${formatDate(patient.birthDate, context.language)}` : '';
  const identifiers = (patient.identifier ?? []).filter((i: Json) => i.value).map((i: Json) => `${i.system ? `${systemName(i.system)} ` : ''}${i.value}`);
  const items = present.map(({ spec, entries }) => `<li>${escapeXml(`${spec.title[context.language]} : ${l.entries(entries.length)}`)}</li>`).join('');
  return div(
    `<p><b>${escapeXml(`${l.summaryOf} ${formatName(patient.name) || patient.id}${birth}`)}</b></p>` +
      (identifiers.length > 0 ? `<p>${escapeXml(`${l.identifier} : ${identifiers.join(', ')}`)}</p>` : '') +
      `<p>${escapeXml(`${l.generated} ${formatDate(now, context.language)} ${l.by} ${GENERATOR_NAME}`)}</p>` +
      `<p>${escapeXml(l.sections)}</p><ul>${items}</ul>`,
    context.language,
  );
}

/** This server, as the Device that composed the summary. */
function generatorDevice(): Json {
  const id = randomUUID();
  return {
    resourceType: 'Device',
    id,
    text: { status: 'generated', div: div(`<p>${escapeXml(GENERATOR_NAME)}</p>`, 'fr') },
    deviceName: [{ name: GENERATOR_NAME, type: 'user-friendly-name' }],
    type: { text: 'FHIR server composing patient summaries' },
  };
}
