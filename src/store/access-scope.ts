import type { Binder, ScopePredicate } from '../search/sql-fragments.ts';
import { restrictsReads, type AccessContext } from './access.ts';

/**
 * The SQL condition an access context puts on every resource row a read touches (`alias` names a row of
 * `resource` or `resource_history`: both have `resource_type` and `id`); undefined when it restricts
 * nothing, so that an all-access request runs the very statements it ran before contexts existed.
 *
 * A resource is hidden when it is a member of a hidden compartment (compartment_member, written with the
 * index rows: a patient is a member of its own). A Binary belongs to no compartment: R4 gives it the
 * access rules of its `securityContext` (binary.html#security), so a Binary whose securityContext is a
 * hidden resource, or a hidden compartment's own resource, is hidden too (local `Type/id` references).
 */
export function accessScope(access: AccessContext): ScopePredicate | undefined {
  if (!restrictsReads(access)) return undefined;
  const byType = new Map<string, string[]>();
  for (const { type, id } of access.hiddenCompartments) byType.set(type, [...(byType.get(type) ?? []), id]);
  const hidden = [...byType].sort(([a], [b]) => a.localeCompare(b));
  return (alias: string, resourceTypes: string[], binder: Binder) => {
    const conditions: string[] = [];
    for (const [type, ids] of hidden) {
      const inHidden = (m: string) => `${m}.compartment_type = ${binder.bind(type)} AND ${m}.compartment_id = ANY(${binder.bind(ids, 'text[]')})`;
      const m = binder.alias('access');
      conditions.push(`NOT EXISTS (SELECT 1 FROM compartment_member ${m} WHERE ${m}.resource_type = ${alias}.resource_type AND ${m}.resource_id = ${alias}.id AND ${inHidden(m)})`);
      if (resourceTypes.length === 0 || resourceTypes.includes('Binary')) {
        const reference = `(${alias}.content::jsonb #>> '{securityContext,reference}')`;
        const b = binder.alias('access');
        conditions.push(
          `(${alias}.resource_type <> 'Binary' OR ${alias}.content IS NULL OR NOT EXISTS (SELECT 1 FROM compartment_member ${b} ` +
            `WHERE ${inHidden(b)} AND ${b}.resource_type = split_part(${reference}, '/', 1) AND ${b}.resource_id = split_part(${reference}, '/', 2)))`,
        );
      }
    }
    return conditions.length > 0 ? `(${conditions.join(' AND ')})` : undefined;
  };
}
