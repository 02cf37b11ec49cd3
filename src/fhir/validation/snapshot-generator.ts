import type { ElementDefinition, StructureDefinition } from './definitions.ts';

/**
 * A small snapshot generator (R4 profiling.html §snapshot), enough for the project's own profiles: a
 * differential on a base resource definition, constraining elements (cardinality, types, fixed/pattern,
 * bindings, constraints), reaching into datatypes (`Immunization.performer.actor.identifier`), and
 * declaring slices. Not handled: re-slicing, profiles on profiles, contentReference unfolding.
 */
export function generateSnapshot(
  differential: StructureDefinition,
  base: StructureDefinition,
  typeDefinition: (type: string) => StructureDefinition | undefined,
): ElementDefinition[] {
  if (!base.snapshot) throw new Error(`Base ${base.url} has no snapshot`);
  const elements: ElementDefinition[] = structuredClone(base.snapshot.element);
  const indexOf = (id: string) => elements.findIndex((element) => (element.id ?? element.path) === id);

  /** Index of the element with `id`, creating it (and its ancestors) from the datatype definitions when needed. */
  const materialize = (id: string): number => {
    const existing = indexOf(id);
    if (existing >= 0) return existing;
    const lastDot = id.lastIndexOf('.');
    const last = id.slice(lastDot + 1);
    const colon = last.indexOf(':');
    if (colon >= 0) {
      const slicedId = id.slice(0, lastDot + 1 + colon);
      const sliced = elements[materialize(slicedId)]!;
      const slice: ElementDefinition = { ...structuredClone(sliced), id, sliceName: last.slice(colon + 1) };
      delete slice.slicing;
      elements.splice(endOfSubtree(slicedId), 0, slice);
      return indexOf(id);
    }
    const parentId = id.slice(0, lastDot);
    const parentIndex = materialize(parentId);
    const parent = elements[parentIndex]!;
    const typeCode = parent.type?.[0]?.code;
    const type = typeCode ? typeDefinition(typeCode) : undefined;
    if (!type?.snapshot || parent.type!.length !== 1) throw new Error(`${differential.url}: cannot reach ${id} (parent ${parentId} has no single datatype)`);
    const children = type.snapshot.element.slice(1).map((child) => ({
      ...structuredClone(child),
      id: parentId + (child.id ?? child.path).slice(type.type.length),
      path: parent.path + child.path.slice(type.type.length),
    }));
    elements.splice(parentIndex + 1, 0, ...children);
    const index = indexOf(id);
    if (index < 0) throw new Error(`${differential.url}: ${id} is not an element of ${typeCode}`);
    return index;
  };

  /** Index just after the element `id`, its children and its slices. */
  const endOfSubtree = (id: string): number => {
    let end = indexOf(id) + 1;
    while (end < elements.length) {
      const next = elements[end]!.id ?? elements[end]!.path;
      if (!next.startsWith(`${id}.`) && !next.startsWith(`${id}:`)) break;
      end++;
    }
    return end;
  };

  for (const change of differential.differential?.element ?? []) {
    const id = change.id ?? change.path;
    const target = elements[materialize(id)]!;
    merge(target, change, differential.url);
  }
  return elements;
}

function merge(target: ElementDefinition, change: ElementDefinition, source: string): void {
  const replacesValue = Object.keys(change).some((key) => key.startsWith('fixed') || key.startsWith('pattern'));
  if (replacesValue) for (const key of Object.keys(target)) if (key.startsWith('fixed') || key.startsWith('pattern')) delete target[key];
  for (const [key, value] of Object.entries(change)) {
    if (key === 'id' || key === 'path') continue;
    if (key === 'constraint') {
      const added = (value as NonNullable<ElementDefinition['constraint']>).map((constraint) => ({ ...constraint, source }));
      target.constraint = [...(target.constraint ?? []), ...added];
    } else {
      target[key] = structuredClone(value);
    }
  }
}
