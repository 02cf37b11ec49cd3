import {
  formatConcept,
  formatDate,
  formatDosage,
  formatName,
  formatQuantity,
  statusText,
  type Labels,
  type SummaryLanguage,
} from './summary-narrative.ts';
import type { RecordToken } from '../store/resource-store.ts';

/**
 * The sections of the patient summary: the IPS 2.0.0 ones (Composition-uv-ips slices, with their LOINC codes)
 * and two the DMP showed, each with the rule that selects its entries from the patient's record (IPS
 * "Generation and Data Inclusion": current and recent only, entered-in-error never) and how an entry reads.
 * README.md § "Patient summary" states the same rules for readers.
 */

type Json = Record<string, any>;

export const LOINC = 'http://loinc.org';
const OBSERVATION_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const CONSENT_SCOPE = 'http://terminology.hl7.org/CodeSystem/consentscope';
const V2_DIAGNOSTIC_SERVICE = 'http://terminology.hl7.org/CodeSystem/v2-0074';
const observationCategory = (code: string): RecordToken => ({ type: 'Observation', param: 'category', system: OBSERVATION_CATEGORY, code });

/** The patient's record, by resource type, entered-in-error resources already left out. */
export type PatientRecord = ReadonlyMap<string, readonly Json[]>;

/** What a row needs besides its resource: referenced resources (a Medication, an author) and the labels. */
export interface RowContext {
  language: SummaryLanguage;
  labels: Labels;
  resolve(reference: string | undefined): Json | undefined;
}

export interface SectionSpec {
  /** Composition-uv-ips slice name, or the project's own for the DMP sections. */
  key: string;
  code: string;
  display: string;
  title: Record<SummaryLanguage, string>;
  /** `required`: always present (IPS SHALL); `recommended`: present even empty (IPS SHOULD); `optional`: only with data. */
  presence: 'required' | 'recommended' | 'optional';
  /** The resource types read for it. */
  types: readonly string[];
  /**
   * For some of `types`, the tokens (indexed codings) of which a resource must hold one for `select` to keep it:
   * the store reads only those of that type, unless another section reads the type whole. A narrowing of the
   * read, not the rule: `select` still decides.
   */
  tokens?: readonly RecordToken[];
  select(record: PatientRecord): Json[];
  columns(labels: Labels): string[];
  row(resource: Json, context: RowContext): string[];
}

const codeOf = (concept: Json | undefined): string | undefined => concept?.coding?.find((c: Json) => c.code !== undefined)?.code;
const hasCode = (concept: Json | undefined, system: string, codes: readonly string[]): boolean =>
  (concept?.coding ?? []).some((c: Json) => c.system === system && codes.includes(c.code));
const inCategory = (resource: Json, system: string, code: string): boolean => (resource.category ?? []).some((c: Json) => hasCode(c, system, [code]));

/** The instant a clinical statement is about, for ordering: its effective/occurrence/onset/recorded date. */
export function clinicalDate(resource: Json): string {
  return (
    resource.effectiveDateTime ??
    resource.effectiveInstant ??
    resource.effectivePeriod?.start ??
    resource.occurrenceDateTime ??
    resource.performedDateTime ??
    resource.performedPeriod?.start ??
    resource.onsetDateTime ??
    resource.onsetPeriod?.start ??
    resource.authoredOn ??
    resource.recordedDate ??
    resource.dateAsserted ??
    resource.recordedOn ??
    resource.date ??
    resource.issued ??
    resource.period?.start ??
    resource.dateTime ??
    resource.context?.period?.start ??
    resource.meta?.lastUpdated ??
    ''
  );
}

/**
 * Newest first (dates compare as text here: ISO 8601 values of one record share a form closely enough to sort);
 * each resource's date worked out once, not at each comparison. The sort is stable: ties keep their order.
 */
const newestFirst = (resources: readonly Json[]): Json[] =>
  resources
    .map((resource) => ({ resource, date: clinicalDate(resource) }))
    .sort((a, b) => (b.date < a.date ? -1 : b.date > a.date ? 1 : 0))
    .map(({ resource }) => resource);

/**
 * The newest of each code (IPS: the last result per test), newest first. Several of one code at that same
 * instant (a panel run twice in one draw) are all the latest: each is kept.
 */
function lastPerCode(resources: readonly Json[]): Json[] {
  const newest = new Map<string, Json[]>();
  for (const resource of newestFirst(resources)) {
    const coding = resource.code?.coding?.[0];
    const key = coding ? `${coding.system ?? ''}|${coding.code ?? ''}` : `text|${resource.code?.text ?? resource.id}`;
    const kept = newest.get(key);
    if (!kept) newest.set(key, [resource]);
    else if (clinicalDate(kept[0]!) === clinicalDate(resource)) kept.push(resource);
  }
  return newestFirst([...newest.values()].flat());
}

const of = (record: PatientRecord, type: string): readonly Json[] => record.get(type) ?? [];
const clinicalStatus = (resource: Json) => codeOf(resource.clinicalStatus);
const verificationStatus = (resource: Json) => codeOf(resource.verificationStatus);
const period = (start: unknown, end: unknown, context: RowContext) =>
  [start ? `${context.labels.since} ${formatDate(start, context.language)}` : '', end ? `${context.labels.until} ${formatDate(end, context.language)}` : ''].filter(Boolean).join(' ');

/** Results (laboratory) and vital signs read alike: what, value, when. */
function observationValue(observation: Json): string {
  if (observation.valueQuantity) return formatQuantity(observation.valueQuantity);
  if (observation.valueCodeableConcept) return formatConcept(observation.valueCodeableConcept);
  if (observation.valueString !== undefined) return String(observation.valueString);
  if (observation.valueBoolean !== undefined) return String(observation.valueBoolean);
  if (observation.valueInteger !== undefined) return String(observation.valueInteger);
  if (observation.valueDateTime !== undefined) return String(observation.valueDateTime);
  const components = (observation.component ?? []) as Json[];
  return components.map((component) => `${formatConcept(component.code)}: ${observationValue(component)}`).join(' ; ');
}

const observationRow = (observation: Json, context: RowContext): string[] => [
  formatConcept(observation.code),
  observationValue(observation) + (observation.interpretation ? ` (${observation.interpretation.map(formatConcept).join(', ')})` : ''),
  formatDate(clinicalDate(observation), context.language),
  statusText(observation.status, context.language),
];

const observationsIn = (record: PatientRecord, category: string) =>
  of(record, 'Observation').filter((o) => inCategory(o, OBSERVATION_CATEGORY, category) && ['final', 'amended', 'corrected', 'preliminary'].includes(o.status));

/** Pregnancy status, outcome and expected delivery date: the LOINC codes of the IPS pregnancy profiles. */
const PREGNANCY_CODES = ['82810-3', '11449-6', '11778-8', '11779-6', '11780-4', '11636-8', '11637-6', '11638-4', '11639-2', '11640-0', '11612-9', '11613-7', '11614-5', '33065-4'];
const ADVANCE_DIRECTIVE_DOCUMENTS = ['42348-3', '75320-2'];

/** How many documents the "recent documents" section lists: what a GP scans at a glance. */
export const RECENT_DOCUMENTS = 20;

const documentAuthors = (document: Json, context: RowContext) =>
  (document.author ?? [])
    .map((reference: Json) => {
      const author = context.resolve(reference.reference);
      return author ? formatName(author.name) || String(author.name ?? '') : reference.display ?? '';
    })
    .filter(Boolean)
    .join(', ');

export const SECTIONS: readonly SectionSpec[] = [
  {
    key: 'sectionAllergies',
    code: '48765-2',
    display: 'Allergies and adverse reactions Document',
    title: { fr: 'Allergies et intolérances', en: 'Allergies and intolerances' },
    presence: 'required',
    types: ['AllergyIntolerance'],
    // Active ones, and statements without a clinical status ("no known allergies" has none); refuted never.
    select: (record) =>
      newestFirst(of(record, 'AllergyIntolerance').filter((a) => verificationStatus(a) !== 'refuted' && (clinicalStatus(a) === undefined || clinicalStatus(a) === 'active'))),
    columns: (l) => [l.what, l.status, l.criticality, l.reaction, l.date],
    row: (a, c) => [
      formatConcept(a.code),
      [clinicalStatus(a), verificationStatus(a)].map((code) => statusText(code, c.language)).filter(Boolean).join(', '),
      statusText(a.criticality, c.language),
      (a.reaction ?? []).flatMap((r: Json) => (r.manifestation ?? []).map(formatConcept)).join(', '),
      formatDate(a.onsetDateTime ?? a.recordedDate, c.language),
    ],
  },
  {
    key: 'sectionMedications',
    code: '10160-0',
    display: 'History of Medication use Narrative',
    title: { fr: 'Traitements en cours', en: 'Medication summary' },
    presence: 'required',
    types: ['MedicationStatement', 'MedicationRequest'],
    select: (record) =>
      newestFirst([
        ...of(record, 'MedicationStatement').filter((m) => ['active', 'intended', 'on-hold', 'unknown'].includes(m.status)),
        ...of(record, 'MedicationRequest').filter((m) => ['active', 'on-hold'].includes(m.status)),
      ]),
    columns: (l) => [l.what, l.dose, l.date, l.status],
    row: (m, c) => {
      const medication = m.medicationCodeableConcept ?? c.resolve(m.medicationReference?.reference)?.code;
      const dates = m.effectivePeriod ? period(m.effectivePeriod.start, m.effectivePeriod.end, c) : formatDate(m.effectiveDateTime ?? m.authoredOn ?? m.dateAsserted, c.language);
      return [formatConcept(medication) || (m.medicationReference?.display ?? ''), formatDosage(m.dosage ?? m.dosageInstruction, c.language), dates, [m.resourceType === 'MedicationRequest' ? statusText('prescribed', c.language) : '', statusText(m.status, c.language)].filter(Boolean).join(', ')];
    },
  },
  {
    key: 'sectionProblems',
    code: '11450-4',
    display: 'Problem list - Reported',
    title: { fr: 'Problèmes actifs', en: 'Problems' },
    presence: 'required',
    types: ['Condition'],
    select: (record) => newestFirst(of(record, 'Condition').filter((p) => verificationStatus(p) !== 'refuted' && ['active', 'recurrence', 'relapse'].includes(clinicalStatus(p) ?? ''))),
    columns: (l) => [l.what, l.status, l.date],
    row: (p, c) => [formatConcept(p.code), [clinicalStatus(p), verificationStatus(p)].map((code) => statusText(code, c.language)).filter(Boolean).join(', '), formatDate(p.onsetDateTime ?? p.onsetPeriod?.start ?? p.recordedDate, c.language)],
  },
  {
    key: 'sectionImmunizations',
    code: '11369-6',
    display: 'History of Immunization Narrative',
    title: { fr: 'Vaccinations', en: 'Immunizations' },
    presence: 'recommended',
    types: ['Immunization'],
    select: (record) => newestFirst(of(record, 'Immunization')),
    columns: (l) => [l.what, l.date, l.lot, l.status],
    row: (i, c) => [formatConcept(i.vaccineCode), formatDate(i.occurrenceDateTime ?? i.occurrenceString, c.language), i.lotNumber ?? '', statusText(i.status, c.language)],
  },
  {
    key: 'sectionProceduresHx',
    code: '47519-4',
    display: 'History of Procedures Document',
    title: { fr: 'Actes et interventions', en: 'History of procedures' },
    presence: 'recommended',
    types: ['Procedure'],
    select: (record) => newestFirst(of(record, 'Procedure').filter((p) => ['completed', 'in-progress'].includes(p.status))),
    columns: (l) => [l.what, l.date, l.status],
    row: (p, c) => [formatConcept(p.code), formatDate(p.performedDateTime ?? p.performedPeriod?.start, c.language), statusText(p.status, c.language)],
  },
  {
    key: 'sectionMedicalDevices',
    code: '46264-8',
    display: 'History of medical device use',
    title: { fr: 'Dispositifs médicaux', en: 'Medical devices' },
    presence: 'recommended',
    types: ['DeviceUseStatement'],
    select: (record) => newestFirst(of(record, 'DeviceUseStatement').filter((d) => ['active', 'completed', 'intended', 'on-hold'].includes(d.status))),
    columns: (l) => [l.what, l.date, l.status],
    row: (d, c) => {
      const device = c.resolve(d.device?.reference);
      return [formatConcept(device?.type) || (device?.deviceName?.[0]?.name ?? d.device?.display ?? ''), formatDate(d.timingPeriod?.start ?? d.timingDateTime ?? d.recordedOn, c.language), statusText(d.status, c.language)];
    },
  },
  {
    key: 'sectionResults',
    code: '30954-2',
    display: 'Relevant diagnostic tests/laboratory data Narrative',
    title: { fr: 'Résultats (derniers par examen)', en: 'Results (latest per test)' },
    presence: 'recommended',
    types: ['Observation', 'DiagnosticReport'],
    tokens: [observationCategory('laboratory'), { type: 'DiagnosticReport', param: 'category', system: V2_DIAGNOSTIC_SERVICE }],
    select: (record) => [
      ...lastPerCode(observationsIn(record, 'laboratory')),
      ...lastPerCode(
        of(record, 'DiagnosticReport').filter(
          (r) => ['final', 'amended', 'corrected', 'partial', 'preliminary'].includes(r.status) && (r.category ?? []).some((c: Json) => (c.coding ?? []).some((x: Json) => x.system === V2_DIAGNOSTIC_SERVICE)),
        ),
      ),
    ],
    columns: (l) => [l.what, l.value, l.date, l.status],
    row: (r, c) => (r.resourceType === 'DiagnosticReport' ? [formatConcept(r.code), r.conclusion ?? c.labels.results((r.result ?? []).length), formatDate(clinicalDate(r), c.language), statusText(r.status, c.language)] : observationRow(r, c)),
  },
  {
    key: 'sectionVitalSigns',
    code: '8716-3',
    display: 'Vital signs',
    title: { fr: 'Signes vitaux (dernières mesures)', en: 'Vital signs (latest)' },
    presence: 'optional',
    types: ['Observation'],
    tokens: [observationCategory('vital-signs')],
    select: (record) => lastPerCode(observationsIn(record, 'vital-signs')),
    columns: (l) => [l.what, l.value, l.date, l.status],
    row: observationRow,
  },
  {
    key: 'sectionPastIllnessHx',
    code: '11348-0',
    display: 'History of Past illness Narrative',
    title: { fr: 'Antécédents', en: 'History of past illness' },
    presence: 'optional',
    types: ['Condition'],
    select: (record) => newestFirst(of(record, 'Condition').filter((p) => verificationStatus(p) !== 'refuted' && ['inactive', 'remission', 'resolved'].includes(clinicalStatus(p) ?? ''))),
    columns: (l) => [l.what, l.status, l.date],
    row: (p, c) => [formatConcept(p.code), statusText(clinicalStatus(p), c.language), period(p.onsetDateTime ?? p.onsetPeriod?.start, p.abatementDateTime ?? p.abatementPeriod?.end, c)],
  },
  {
    key: 'sectionPregnancyHx',
    code: '10162-6',
    display: 'History of pregnancies Narrative',
    title: { fr: 'Grossesses', en: 'History of pregnancy' },
    presence: 'optional',
    types: ['Observation'],
    tokens: PREGNANCY_CODES.map((code) => ({ type: 'Observation', param: 'code', system: LOINC, code })),
    select: (record) => lastPerCode(of(record, 'Observation').filter((o) => hasCode(o.code, LOINC, PREGNANCY_CODES) && o.status !== 'cancelled')),
    columns: (l) => [l.what, l.value, l.date, l.status],
    row: observationRow,
  },
  {
    key: 'sectionSocialHistory',
    code: '29762-2',
    display: 'Social history Narrative',
    title: { fr: 'Mode de vie', en: 'Social history' },
    presence: 'optional',
    types: ['Observation'],
    tokens: [observationCategory('social-history')],
    select: (record) => lastPerCode(observationsIn(record, 'social-history')),
    columns: (l) => [l.what, l.value, l.date, l.status],
    row: observationRow,
  },
  {
    key: 'sectionPlanOfCare',
    code: '18776-5',
    display: 'Plan of care note',
    title: { fr: 'Projet de soins', en: 'Plan of care' },
    presence: 'optional',
    types: ['CarePlan'],
    select: (record) => newestFirst(of(record, 'CarePlan').filter((p) => ['active', 'on-hold', 'draft'].includes(p.status))),
    columns: (l) => [l.what, l.date, l.status],
    row: (p, c) => [p.title ?? (p.category ?? []).map(formatConcept).join(', '), period(p.period?.start, p.period?.end, c), statusText(p.status, c.language)],
  },
  {
    key: 'sectionAdvanceDirectives',
    code: '42348-3',
    display: 'Advance healthcare directives',
    title: { fr: 'Directives anticipées', en: 'Advance directives' },
    presence: 'optional',
    types: ['Consent', 'DocumentReference'],
    select: (record) =>
      newestFirst([
        ...of(record, 'Consent').filter((c) => c.status === 'active' && hasCode(c.scope, CONSENT_SCOPE, ['adr'])),
        ...of(record, 'DocumentReference').filter((d) => d.status === 'current' && hasCode(d.type, LOINC, ADVANCE_DIRECTIVE_DOCUMENTS)),
      ]),
    columns: (l) => [l.what, l.date, l.status],
    row: (d, c) => [
      d.resourceType === 'Consent' ? (d.category ?? []).map(formatConcept).join(', ') || formatConcept(d.scope) : d.description ?? formatConcept(d.type),
      formatDate(d.dateTime ?? d.date, c.language),
      statusText(d.status, c.language),
    ],
  },
  {
    // Not an IPS section: what the DMP's first page listed. LOINC 11503-0 "Medical records" is the document
    // ontology's code for a patient's records in general, the closest to "the documents of the record".
    key: 'sectionRecentDocuments',
    code: '11503-0',
    display: 'Medical records',
    title: { fr: 'Documents récents', en: 'Recent documents' },
    presence: 'optional',
    types: ['DocumentReference'],
    select: (record) => newestFirst(of(record, 'DocumentReference').filter((d) => d.status === 'current')).slice(0, RECENT_DOCUMENTS),
    columns: (l) => [l.type, l.author, l.date, l.details],
    row: (d, c) => [formatConcept(d.type), documentAuthors(d, c), formatDate(clinicalDate(d), c.language), d.description ?? d.content?.[0]?.attachment?.title ?? ''],
  },
  {
    // Not an IPS section: whom to call. LOINC has no section code for a patient's contacts; 55188-7 "Patient
    // data Document" is the patient's own (administrative) data, where Patient.contact belongs.
    key: 'sectionEmergencyContacts',
    code: '55188-7',
    display: 'Patient data Document',
    title: { fr: 'Personnes à prévenir', en: 'Emergency contacts' },
    presence: 'optional',
    types: ['RelatedPerson'],
    select: (record) => of(record, 'RelatedPerson').filter((p) => p.active !== false),
    columns: (l) => [l.name, l.relation, l.phone],
    row: (p) => [formatName(p.name), (p.relationship ?? []).map(formatConcept).join(', '), (p.telecom ?? []).map((t: Json) => t.value).filter(Boolean).join(', ')],
  },
];

/** Patient.contact as rows of the contacts section (they are not resources: shown, not referenced). */
export function patientContactRows(patient: Json): string[][] {
  return (patient.contact ?? []).map((contact: Json) => [
    formatName(contact.name ? [contact.name] : undefined),
    (contact.relationship ?? []).map(formatConcept).join(', '),
    (contact.telecom ?? []).map((t: Json) => t.value).filter(Boolean).join(', '),
  ]);
}


