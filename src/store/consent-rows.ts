import type { Resource } from 'fhir/r4';
import { recordPatientOf } from '../search/compartment.ts';
import type { IndexRows } from '../search/extract.ts';

/** DMP document visibility (TRE_A07), in `meta.security` or a DocumentReference's `securityLabel`. */
export const VISIBILITY_SYSTEM = 'https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument';
/** Masked from professionals (but the document's authors and the patient's médecin traitant). */
export const MASKED_FROM_PROFESSIONALS = 'MASQUE_PS';
/** Not shown to the patient (until the label is removed: a diagnosis yet to be announced). */
export const INVISIBLE_TO_PATIENT = 'INVISIBLE_PATIENT';

/** R4 consent scope of the patient's privacy choices (consent.html#scope). */
export const CONSENT_SCOPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/consentscope';
/** Who a patient may oppose: professionals and the organisations they work for. */
export const OPPOSABLE_TYPES: ReadonlySet<string> = new Set(['Practitioner', 'PractitionerRole', 'Organization']);
/** The reference parameters whose targets author a resource, for a masked one (the first a type has counts). */
export const AUTHOR_PARAMS: readonly string[] = ['author', 'recorder', 'performer'];

/** What the reads need to know of a resource's consent (migration 0017), computed from it and its index rows. */
export interface ConsentRows {
  /** A patient-privacy Consent's rules: an opposed actor (`Type/id`), or null for the whole record closed. */
  rules: Array<{ patientId: string; actor: string | null }>;
  /** A resource with a DMP visibility label. */
  label?: { patientId: string | null; masked: boolean; hiddenFromPatient: boolean; authors: string[]; sentBy: string | null };
  /** A Binary's local securityContext. */
  binaryContext?: { type: string; id: string };
}

export interface ConsentRowsOptions {
  /** The server's own base: a reference below it is the local one. */
  baseUrl?: string;
  /** The SMART client writing (its `client_id`), remembered on a labelled resource. */
  clientId?: string;
}

type Json = any;

/** The consent rows of `resource`, whose search index rows are `rows`. */
export function consentRowsOf(resource: Resource, rows: IndexRows, options: ConsentRowsOptions = {}): ConsentRows {
  const out: ConsentRows = { rules: [] };
  const id = resource.id ?? '';
  if (resource.resourceType === 'Consent') out.rules = consentRules(resource as Json, recordPatientOf('Consent', id, rows.reference), options.baseUrl);
  if (resource.resourceType === 'Binary') {
    const context = localReference((resource as Json).securityContext?.reference, options.baseUrl);
    if (context) out.binaryContext = context;
  }
  const codes = visibilityCodes(resource as Json);
  const masked = codes.has(MASKED_FROM_PROFESSIONALS);
  const hiddenFromPatient = codes.has(INVISIBLE_TO_PATIENT);
  if (masked || hiddenFromPatient) {
    const authors = rows.reference
      .filter((row) => AUTHOR_PARAMS.includes(row.param) && row.targetType !== null && row.targetId !== null)
      .map((row) => `${row.targetType}/${row.targetId}`);
    out.label = { patientId: recordPatientOf(resource.resourceType, id, rows.reference), masked, hiddenFromPatient, authors: [...new Set(authors)].sort(), sentBy: options.clientId ?? null };
  }
  return out;
}

function visibilityCodes(resource: Json): Set<string> {
  const codings: Json[] = [...(Array.isArray(resource.meta?.security) ? resource.meta.security : [])];
  if (resource.resourceType === 'DocumentReference' && Array.isArray(resource.securityLabel)) {
    for (const label of resource.securityLabel) if (Array.isArray(label?.coding)) codings.push(...label.coding);
  }
  return new Set(codings.filter((coding) => coding?.system === VISIBILITY_SYSTEM && typeof coding.code === 'string').map((coding) => coding.code as string));
}

/**
 * The rules of an active patient-privacy Consent (R4 consent.html): every actor of a `deny` provision, at any
 * depth (a nested provision without a type has its parent's), that is a Practitioner, PractitionerRole or
 * Organization; and the record closed when the root provision denies without naming an actor or narrowing
 * what it denies. What else a deny provision says (period, action, class, code, data, securityLabel, purpose)
 * does not narrow an opposition: it hides the whole record from the actor, on the patient's side of doubt.
 */
function consentRules(consent: Json, patientId: string | null, baseUrl: string | undefined): ConsentRows['rules'] {
  if (consent.status !== 'active' || !patientId) return [];
  const scope = (consent.scope?.coding ?? []) as Json[];
  if (!scope.some((coding) => coding?.system === CONSENT_SCOPE_SYSTEM && coding.code === 'patient-privacy')) return [];
  const root = consent.provision;
  if (!root || typeof root !== 'object') return [];
  const rules: ConsentRows['rules'] = [];
  const seen = new Set<string>();
  const add = (actor: string | null) => {
    if (seen.has(String(actor))) return;
    seen.add(String(actor));
    rules.push({ patientId, actor });
  };
  // Closed: the root denies everything to everyone, with no exception permitted below it.
  if (root.type === 'deny' && !NARROWING.some((key) => root[key] !== undefined) && !hasPermit(root)) add(null);
  const walk = (provision: Json, inherited: string | undefined, depth: number) => {
    if (!provision || typeof provision !== 'object' || depth > 20) return;
    const type = provision.type ?? inherited;
    if (type === 'deny') {
      for (const actor of Array.isArray(provision.actor) ? provision.actor : []) {
        const target = localReference(actor?.reference?.reference, baseUrl);
        if (target && OPPOSABLE_TYPES.has(target.type)) add(`${target.type}/${target.id}`);
      }
    }
    for (const nested of Array.isArray(provision.provision) ? provision.provision : []) walk(nested, type, depth + 1);
  };
  walk(root, undefined, 0);
  return rules;
}

/** What a provision may say to deny less than everything to everyone. */
const NARROWING = ['actor', 'securityLabel', 'class', 'code', 'data', 'purpose', 'action', 'dataPeriod', 'period'];

/** Whether a provision has, below it, an exception that permits something. */
function hasPermit(provision: Json): boolean {
  return (Array.isArray(provision.provision) ? provision.provision : []).some((nested: Json) => nested?.type === 'permit' || hasPermit(nested ?? {}));
}

/** `Type/id` of a local reference (relative, or absolute below the server's base), version left out. */
function localReference(reference: unknown, baseUrl: string | undefined): { type: string; id: string } | undefined {
  if (typeof reference !== 'string') return undefined;
  let relative = reference;
  if (baseUrl && reference.startsWith(`${baseUrl}/`)) relative = reference.slice(baseUrl.length + 1);
  const match = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(relative);
  return match ? { type: match[1]!, id: match[2]! } : undefined;
}

/** The consent rows of `resources` as three statement parameters (JSON arrays), in the order consentInsertCtes reads them. */
export function consentParams(resources: Array<{ resourceType: string; id: string; consent?: ConsentRows }>): string[] {
  const rules: unknown[][] = [];
  const labels: unknown[][] = [];
  const contexts: unknown[][] = [];
  for (const { resourceType, id, consent } of resources) {
    if (!consent) continue;
    for (const rule of consent.rules) rules.push([id, rule.patientId, rule.actor]);
    const { label, binaryContext } = consent;
    if (label) labels.push([resourceType, id, label.patientId, label.masked, label.hiddenFromPatient, label.authors, label.sentBy]);
    if (binaryContext) contexts.push([id, binaryContext.type, binaryContext.id]);
  }
  return [JSON.stringify(rules), JSON.stringify(labels), JSON.stringify(contexts)];
}

/**
 * Data-modifying CTEs inserting what consentParams produced, each of its three arrays' rows read as `x` from
 * `rows(0)` to `rows(2)` (`paramRows`: statement parameters from `$first`; `i_visibility` returns its rows,
 * which version-rows.ts stamps with the version). In a rewrite (`rewrite`: the statement also has
 * `d_visibility`, the rows it deleted) a labelled resource keeps the client that first labelled it.
 */
export function consentInsertCtes(rows: RowSource, rewrite: boolean, has: (k: number) => boolean = () => true): string[] {
  const sentBy = rewrite ? `COALESCE((SELECT o.sent_by FROM d_visibility o WHERE o.sent_by IS NOT NULL LIMIT 1), x->>6)` : `x->>6`;
  const ctes = [
    () => `i_consent_rule AS (INSERT INTO consent_rule (consent_id, patient_id, actor) SELECT x->>0, x->>1, x->>2 FROM ${rows(0)})`,
    () =>
      `i_visibility AS (INSERT INTO resource_visibility (resource_type, resource_id, patient_id, masked, hidden_from_patient, authors, sent_by) ` +
      `SELECT x->>0, x->>1, x->>2, (x->>3)::boolean, (x->>4)::boolean, ARRAY(SELECT jsonb_array_elements_text(x->5)), ${sentBy} FROM ${rows(1)} RETURNING *)`,
    () => `i_binary_context AS (INSERT INTO binary_context (binary_id, context_type, context_id) SELECT x->>0, x->>1, x->>2 FROM ${rows(2)})`,
  ];
  return ctes.flatMap((cte, k) => (has(k) ? [cte()] : []));
}

/**
 * Where an insert CTE reads the rows of the `k`th JSON array it consumes: a FROM item naming each row `x`.
 * Usually statement parameters (paramRows); the audit log's drain reads them from the rows it deletes.
 */
export type RowSource = (k: number) => string;

/** The `k`th array is statement parameter `$first + k`. */
export function paramRows(first: number): RowSource {
  return (k) => `jsonb_array_elements($${first + k}::jsonb) AS x`;
}

/** CTEs deleting the consent rows of resource `$1`/`$2` before consentInsertCtes writes its new ones. */
export const CONSENT_DELETE_CTES = [
  `d_consent_rule AS (DELETE FROM consent_rule WHERE $1 = 'Consent' AND consent_id = $2)`,
  `d_visibility AS (DELETE FROM resource_visibility WHERE resource_type = $1 AND resource_id = $2 RETURNING sent_by)`,
  `d_binary_context AS (DELETE FROM binary_context WHERE $1 = 'Binary' AND binary_id = $2)`,
];

/**
 * A deletion's statement part (`$1`/`$2` the resource, `d_compartment` the memberships it removes): its rules
 * go, a labelled resource keeps its label row and a member of a patient's record gets one naming the patient,
 * so that its history stays hidden as the record's consent says; a Binary keeps its securityContext.
 */
export const CONSENT_DELETION_CTES = [
  `d_consent_rule AS (DELETE FROM consent_rule WHERE $1 = 'Consent' AND consent_id = $2)`,
  `i_tombstone AS (INSERT INTO resource_visibility (resource_type, resource_id, patient_id, masked, hidden_from_patient, authors, sent_by)
      SELECT $1, $2, d.compartment_id, false, false, '{}', NULL FROM d_compartment d
       WHERE d.compartment_type = 'Patient' AND NOT EXISTS (SELECT 1 FROM resource_visibility v WHERE v.resource_type = $1 AND v.resource_id = $2 AND v.patient_id = d.compartment_id))`,
];
