import { loadPatientCompartment } from '../search/compartment.ts';
import type { IdentifierHash } from '../search/identifier-hash.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import type { Binder, ScopePredicate } from '../search/sql-fragments.ts';
import { restrictionScope } from './access-restrictions.ts';
import { isConfined, isConfining, restrictsReads, type AccessContext } from './access.ts';
import { consentScope } from './consent-scope.ts';

/**
 * The SQL condition an access context puts on every resource row a read touches (`alias` names a row of
 * `resource` or `resource_history`: both have `resource_type` and `id`; `resourceTypes` are the types the
 * read is about, none for any); undefined when it restricts nothing, so that an all-access request runs the
 * very statements it ran before contexts existed.
 *
 * A resource is hidden when it is a member of a hidden compartment (compartment_member, written with the
 * index rows: a patient is a member of its own; of a history row, `versioned`, its version's version_member), when its type is not readable, or when its type is
 * confined to the launch patient's compartment and it is not a member of it. A Binary belongs to no
 * compartment: R4 gives it the access rules of its `securityContext` (binary.html#security), so a Binary
 * whose securityContext is a hidden resource, or a hidden compartment's own resource, is hidden too, and a
 * confined Binary is seen only when its securityContext is a member of the patient's compartment (local
 * `Type/id` references). A type under search restrictions is seen where it matches one (access-restrictions.ts).
 * The patients' consent (oppositions, closed records, visibility labels) is consentScope's condition, added to these.
 * `identifierHash`: the store's, when its index holds identifiers hashed (a restriction on one compares the hash).
 */
export function accessScope(access: AccessContext, registry: SearchParameterRegistry, identifierHash?: IdentifierHash): ScopePredicate | undefined {
  if (!restrictsReads(access)) return undefined;
  const restriction = restrictionScope(access, registry, identifierHash);
  const byType = new Map<string, string[]>();
  for (const { type, id } of access.hiddenCompartments) byType.set(type, [...(byType.get(type) ?? []), id]);
  const hidden = [...byType].sort(([a], [b]) => a.localeCompare(b));
  const confinement = isConfining(access) ? patientConfinement(access) : undefined;
  const consent = consentScope(access);
  const reaching = (resourceTypes: string[]) => (type: string) => resourceTypes.length === 0 || resourceTypes.includes(type);
  /**
   * The condition on a resource whose type and id are `type` and `id`, and its JSON `content` (needed for Binaries and
   * restrictions only); `alias` names its row, and `versioned` says it is a row of resource_history, judged by its
   * version's own compartments and label (migration 0022) rather than by its resource's current ones.
   */
  const condition = (keys: { type: string; id: string; content?: string; alias?: string; versioned?: boolean }, resourceTypes: string[], binder: Binder) => {
    const conditions: string[] = [];
    const reaches = reaching(resourceTypes);
    const membership = (m: string) =>
      keys.versioned
        ? `version_member ${m} WHERE ${m}.resource_type = ${keys.type} AND ${m}.resource_id = ${keys.id} AND ${m}.version_id = ${keys.alias}.version_id`
        : `compartment_member ${m} WHERE ${m}.resource_type = ${keys.type} AND ${m}.resource_id = ${keys.id}`;
    // A Binary's securityContext is read from binary_context (consent-rows.ts), not from its content, which is sealed (encryption.ts).
    const inContext = (b: string, c: string) => `${c}.binary_id = ${keys.id} AND ${b}.resource_type = ${c}.context_type AND ${b}.resource_id = ${c}.context_id`;
    if (access.readableTypes) {
      const readable = access.readableTypes;
      if (resourceTypes.length === 0 || !resourceTypes.every((type) => readable.includes(type))) {
        conditions.push(`${keys.type} = ANY(${binder.bind([...readable], 'text[]')})`);
      }
    }
    if (confinement) {
      const { compartmentTypes, binary, patientId, unseenWithoutPatient } = confinement;
      if (patientId === undefined) {
        if (unseenWithoutPatient === '*') conditions.push(`${keys.type} = ANY(${binder.bind([...(access.unconfinedTypes ?? [])], 'text[]')})`);
        else if (unseenWithoutPatient.some(reaches)) conditions.push(`${keys.type} <> ALL(${binder.bind(unseenWithoutPatient, 'text[]')})`);
      } else {
        const inPatient = (m: string) => `${m}.compartment_type = 'Patient' AND ${m}.compartment_id = ${binder.bind(patientId)}`;
        if (compartmentTypes.some(reaches)) {
          const m = binder.alias('access');
          conditions.push(`(${keys.type} <> ALL(${binder.bind(compartmentTypes, 'text[]')}) OR EXISTS (SELECT 1 FROM ${membership(m)} AND ${inPatient(m)}))`);
        }
        if (binary && reaches('Binary')) {
          const b = binder.alias('access');
          const c = binder.alias('access');
          conditions.push(
            `(${keys.type} <> 'Binary' OR EXISTS (SELECT 1 FROM binary_context ${c} JOIN compartment_member ${b} ON ${inContext(b, c)} ` +
              `WHERE ${inPatient(b)}))`,
          );
        }
      }
    }
    for (const [type, ids] of hidden) {
      const inHidden = (m: string) => `${m}.compartment_type = ${binder.bind(type)} AND ${m}.compartment_id = ANY(${binder.bind(ids, 'text[]')})`;
      const m = binder.alias('access');
      conditions.push(`NOT EXISTS (SELECT 1 FROM ${membership(m)} AND ${inHidden(m)})`);
      if (reaches('Binary')) {
        const b = binder.alias('access');
        const c = binder.alias('access');
        conditions.push(
          `(${keys.type} <> 'Binary' OR ${keys.content} IS NULL OR NOT EXISTS (SELECT 1 FROM binary_context ${c} JOIN compartment_member ${b} ON ${inContext(b, c)} ` +
            `WHERE ${inHidden(b)}))`,
        );
      }
    }
    const restricted = keys.alias !== undefined ? restriction?.(keys.alias, resourceTypes, binder, keys.versioned) : undefined;
    if (restricted) conditions.push(restricted);
    if (consent) conditions.push(consent(keys.type, keys.id, resourceTypes, binder, keys.versioned ? `${keys.alias}.version_id` : undefined));
    return conditions.length > 0 ? `(${conditions.join(' AND ')})` : undefined;
  };
  const scope: ScopePredicate = (alias, resourceTypes, binder, versioned) =>
    condition({ type: `${alias}.resource_type`, id: `${alias}.id`, content: `${alias}.content`, alias, versioned }, resourceTypes, binder);
  scope.onKeys = (resourceTypes) => {
    const reaches = reaching(resourceTypes);
    // A Binary is judged by its securityContext, a restricted type by its search: both read the resource row.
    const binaryByContent = reaches('Binary') && (hidden.length > 0 || confinement?.binary === true);
    if (binaryByContent || (restriction && (access.restrictedTypes ?? []).some(({ type }) => reaches(type)))) return undefined;
    return (type, id, binder) => condition({ type, id }, resourceTypes, binder);
  };
  return scope;
}

/** The confined types that can belong to a patient's compartment, whether Binaries are confined, and the patient's id. */
function patientConfinement(access: AccessContext) {
  const patientTypes = ['Patient', ...loadPatientCompartment().keys()];
  const compartmentTypes = [...new Set(patientTypes.filter((type) => isConfined(access, type)))].sort();
  const patientId = access.patient?.startsWith('Patient/') ? access.patient.slice('Patient/'.length) : access.patient;
  const unseenWithoutPatient: '*' | string[] = access.confinedTypes === '*' ? '*' : [...(access.confinedTypes ?? [])];
  return { compartmentTypes, binary: isConfined(access, 'Binary'), patientId, unseenWithoutPatient };
}
