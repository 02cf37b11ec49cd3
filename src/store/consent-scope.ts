import { Binder } from '../search/sql-fragments.ts';
import { EMERGENCY_PURPOSES, type AccessContext, type CallerIdentities } from './access.ts';

/**
 * Who the patients' consent sees a caller as:
 * - `user`: a person who is not the patient, named by the token's `fhirUser` (a Practitioner or PractitionerRole
 *   is a professional; a RelatedPerson or Device without a patient context is a user all the same);
 * - `patient`: the patient (fhirUser `Patient/x`, or a patient launch context without a professional fhirUser);
 * - `system`: a backend service (no fhirUser, no patient): a feeding system.
 */
export type ConsentCaller =
  | { kind: 'user'; who: string; professional: boolean; emergency: boolean; identities?: CallerIdentities }
  | { kind: 'patient'; patientId: string }
  | { kind: 'system'; clientId: string | null };

/** How `access` stands before the patients' consent; undefined when it does not apply (the server itself). */
export function consentCaller(access: AccessContext): ConsentCaller | undefined {
  if (access.subjectToConsent !== true) return undefined;
  const who = access.who;
  const professional = who !== undefined && (who.startsWith('Practitioner/') || who.startsWith('PractitionerRole/'));
  if (!professional) {
    if (who?.startsWith('Patient/')) return { kind: 'patient', patientId: who.slice('Patient/'.length) };
    if (access.patient) return { kind: 'patient', patientId: access.patient.replace(/^Patient\//, '') };
  }
  if (who) {
    const emergency = professional && access.purposeOfUse.some((code) => EMERGENCY_PURPOSES.has(code));
    const identities = access.callerIdentities?.who === who ? access.callerIdentities : undefined;
    return { kind: 'user', who, professional, emergency, ...(identities ? { identities } : {}) };
  }
  return { kind: 'system', clientId: access.clientId ?? null };
}

/**
 * The EXISTS conditions, any of which hides a resource; `version`, a history row's version_id, judges that
 * version by its own compartments and label (version_member, version_visibility) instead of the resource's.
 */
type Hidden = (resourceType: string, id: string, version?: string) => string[];

/**
 * The condition the patients' consent puts on a resource (`type` and `id`: the columns of a row of `resource`,
 * `resource_history` or an index table), read from the tables the writes keep (migration 0017, consent-rows.ts); undefined when
 * consent does not apply to the caller. A resource is hidden from the caller:
 * - `user`: when it belongs to the record of a patient who opposed the caller (the caller's fhirUser, a
 *   PractitionerRole of that Practitioner or the Practitioner and Organization of that PractitionerRole, the
 *   Organization of one of the Practitioner's roles) or who closed the record, emergency or not; when it is
 *   labelled MASQUE_PS, unless the caller is one of its authors or the patient's médecin traitant
 *   (Patient.generalPractitioner), or a professional asserting an emergency (BTG, ETREAT);
 * - `patient`: when it is labelled INVISIBLE_PATIENT, or belongs to another patient's closed record (or is
 *   masked there);
 * - `system`: when it is labelled MASQUE_PS and the client did not send it (a feeding system matches and
 *   updates what it sent; no one reads masked documents without a user). Oppositions and closures name
 *   people, not feeding systems.
 * A Binary is hidden as its securityContext is now (binary.html#security). Labels and records are those of the
 * resource's current version (a deleted one keeps its last), or, for a history row (`versioned`), those of
 * its own version (a deletion's are those of the version it deleted); the consent rules are the patients' now.
 */
export function consentScope(access: AccessContext): ((type: string, id: string, resourceTypes: readonly string[], binder: Binder, version?: string) => string) | undefined {
  const caller = consentCaller(access);
  if (!caller) return undefined;
  // On the resource's keys alone (`type`, `id`: a row's columns, or an index row's): the rows the writes keep
  // say the rest, so the condition holds as well on a `_has` source's index row as on its resource row.
  // `version`: a history row's version_id, judged by that version's own rows.
  return (type, id, resourceTypes, binder, version) => {
    const hidden = hiddenFor(caller, binder);
    // Each its own NOT EXISTS at the top of the condition, which the planner may turn into an anti-join.
    const conditions = hidden(type, id, version).map((exists) => `NOT ${exists}`);
    if (resourceTypes.length === 0 || resourceTypes.includes('Binary')) {
      const b = binder.alias('consent');
      conditions.push(
        `(${type} <> 'Binary' OR NOT EXISTS (SELECT 1 FROM binary_context ${b} WHERE ${b}.binary_id = ${id} AND (${hidden(`${b}.context_type`, `${b}.context_id`).join(' OR ')})))`,
      );
    }
    return conditions.join(' AND ');
  };
}

function hiddenFor(caller: ConsentCaller, binder: Binder): Hidden {
  switch (caller.kind) {
    case 'system': {
      const client = binder.bind(caller.clientId, 'text');
      return (type, id, version) => {
        const v = binder.alias('consent');
        // OFFSET 0 keeps it a subplan probed row by row through the label index: as an anti-join, PostgreSQL
        // sorted every candidate of a search (content included) by id before the search's own filters
        // (Observation?patient&code on bench1m: 0.97 ms against 0.66 without the condition, 0.83 as a subplan).
        return [`EXISTS (SELECT 1 FROM ${labelOf(v, type, id, version)} AND ${v}.masked AND ${v}.sent_by IS DISTINCT FROM ${client} OFFSET 0)`];
      };
    }
    case 'patient': {
      const self = binder.bind(caller.patientId, 'text');
      const closedToMe = (c: string) => `${c}.actor IS NULL AND ${c}.patient_id <> ${self}`;
      return (type, id, version) => {
        const [v, c] = [binder.alias('consent'), binder.alias('consent')];
        const labelled = `EXISTS (SELECT 1 FROM ${labelOf(v, type, id, version)} AND (${v}.hidden_from_patient ` +
          `OR (${v}.masked AND ${v}.patient_id IS DISTINCT FROM ${self}) OR EXISTS (SELECT 1 FROM consent_rule ${c} WHERE ${c}.patient_id = ${v}.patient_id AND ${closedToMe(c)})))`;
        return [inDeniedRecord(type, id, version, closedToMe, binder), labelled];
      };
    }
    case 'user': {
      const resolved = caller.identities;
      const actors = resolved ? binder.bind([...resolved.opposable], 'text[]') : identities(caller.who, binder, true);
      // Every value bound must be used: an emergency has no masking condition, so no authors.
      const authors = caller.emergency ? '' : resolved ? binder.bind([...resolved.authoring], 'text[]') : identities(caller.who, binder, false);
      const deniesMe = (c: string) => `(${c}.actor IS NULL OR ${c}.actor = ANY(${actors}))`;
      return (type, id, version) => {
        const [v, c, g] = [binder.alias('consent'), binder.alias('consent'), binder.alias('consent')];
        const masked = caller.emergency
          ? []
          : [
              `(${v}.masked AND NOT (${v}.authors && ${authors}) AND NOT EXISTS (SELECT 1 FROM search_reference ${g} WHERE ${g}.resource_type = 'Patient' AND ${g}.resource_id = ${v}.patient_id ` +
                `AND ${g}.param = 'general-practitioner' AND ${g}.target_id IS NOT NULL AND (${g}.target_type || '/' || ${g}.target_id) = ANY(${authors})))`,
            ];
        const labelled = `EXISTS (SELECT 1 FROM ${labelOf(v, type, id, version)} AND (` +
          [...masked, `EXISTS (SELECT 1 FROM consent_rule ${c} WHERE ${c}.patient_id = ${v}.patient_id AND ${deniesMe(c)})`].join(' OR ') + '))';
        return [inDeniedRecord(type, id, version, deniesMe, binder), labelled];
      };
    }
  }
}

/** The label row (`v`) of a resource, or of one of its versions: `FROM` this, then more conditions with AND. */
function labelOf(v: string, type: string, id: string, version: string | undefined): string {
  return version === undefined
    ? `resource_visibility ${v} WHERE ${v}.resource_type = ${type} AND ${v}.resource_id = ${id}`
    : `version_visibility ${v} WHERE ${v}.resource_type = ${type} AND ${v}.resource_id = ${id} AND ${v}.version_id = ${version}`;
}

/** Whether the resource (of `version`, when given) belongs to a record whose consent rules (`applies`) hide it. */
function inDeniedRecord(type: string, id: string, version: string | undefined, applies: (c: string) => string, binder: Binder): string {
  const [m, c] = [binder.alias('consent'), binder.alias('consent')];
  const members = version === undefined ? `compartment_member ${m}` : `version_member ${m}`;
  return (
    `EXISTS (SELECT 1 FROM ${members} JOIN consent_rule ${c} ON ${c}.patient_id = ${m}.compartment_id ` +
    `WHERE ${m}.resource_type = ${type} AND ${m}.resource_id = ${id}${version === undefined ? '' : ` AND ${m}.version_id = ${version}`} AND ${m}.compartment_type = 'Patient' AND ${applies(c)})`
  );
}

/**
 * The caller's identities as a SQL text[] (evaluated once per statement): its fhirUser; for a Practitioner its
 * PractitionerRoles (and, for an opposition, their Organizations); for a PractitionerRole its Practitioner and
 * Organization. From the reference index, so a role changed is seen at the next request.
 */
function identities(who: string, binder: Binder, opposable: boolean): string {
  const slash = who.indexOf('/');
  const [type, id] = [who.slice(0, slash), who.slice(slash + 1)];
  const me = `SELECT ${binder.bind(who, 'text')}`;
  if (type === 'Practitioner') {
    const roles = `SELECT s.resource_id FROM search_reference s WHERE s.target_type = 'Practitioner' AND s.target_id = ${binder.bind(id, 'text')} AND s.resource_type = 'PractitionerRole' AND s.param = 'practitioner'`;
    const parts = [me, `SELECT 'PractitionerRole/' || r.resource_id FROM (${roles}) r`];
    if (opposable) {
      parts.push(
        `SELECT 'Organization/' || o.target_id FROM search_reference o WHERE o.resource_type = 'PractitionerRole' AND o.param = 'organization' AND o.target_type = 'Organization' AND o.target_id IS NOT NULL AND o.resource_id IN (${roles})`,
      );
    }
    return `ARRAY(${parts.join(' UNION ALL ')})`;
  }
  if (type === 'PractitionerRole') {
    return `ARRAY(${me} UNION ALL SELECT s.target_type || '/' || s.target_id FROM search_reference s WHERE s.resource_type = 'PractitionerRole' AND s.resource_id = ${binder.bind(id, 'text')} ` +
      `AND s.param IN ('practitioner', 'organization') AND s.target_type IN ('Practitioner', 'Organization') AND s.target_id IS NOT NULL)`;
  }
  return `ARRAY[${binder.bind(who, 'text')}]`;
}

/**
 * The statement resolving a user caller's identities once (ResourceStore.resolveCaller): one row of two
 * text[] columns, `opposable` and `authoring` (no statement for a user who is not a professional: itself
 * alone); undefined for a caller consent does not see as a user.
 */
export function callerIdentitiesStatement(access: AccessContext): { who: string; sql?: string; params: unknown[] } | undefined {
  const caller = consentCaller(access);
  if (caller?.kind !== 'user') return undefined;
  // Any other user is itself alone: nothing to look up.
  if (!caller.professional) return { who: caller.who, params: [] };
  const binder = new Binder();
  const sql = `SELECT ${identities(caller.who, binder, true)} AS opposable, ${identities(caller.who, binder, false)} AS authoring`;
  return { who: caller.who, sql, params: binder.params };
}

