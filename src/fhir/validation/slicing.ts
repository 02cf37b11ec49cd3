import type { Discriminator, ElementNode } from './element-tree.ts';
import { stripVersion } from '../terminology/terminology-service.ts';
import { deepEqual, matchesPattern, type Item } from './instance.ts';

/** Everything slice matching needs from the validator, kept behind an interface so this module stays pure. */
export interface SliceOracle {
  /** Membership of a code/Coding/CodeableConcept in a value set; undefined when it cannot be decided. */
  inValueSet(value: unknown, type: string, valueSet: string): boolean | undefined;
  /** Whether `value` (of `type`) conforms to the profile, validated without reporting. */
  conformsTo(value: unknown, type: string, profileUrl: string): boolean;
}

/** Extensions are sliced by url even when a profile forgets to say so (R4 profiling.html §extensions). */
const EXTENSION_DISCRIMINATOR: Discriminator[] = [{ type: 'value', path: 'url' }];

export function discriminatorsOf(sliced: ElementNode): Discriminator[] {
  const declared = sliced.slicing?.discriminators ?? [];
  if (declared.length > 0) return declared;
  return sliced.types[0]?.code === 'Extension' ? EXTENSION_DISCRIMINATOR : [];
}

/**
 * The slice an item belongs to, by the slicing's discriminators (value, pattern, type, profile, exists).
 * An item no slice claims is `undefined`: allowed by open slicing, an error for closed slicing.
 */
export function findSlice(sliced: ElementNode, item: Item, oracle: SliceOracle): ElementNode | undefined {
  const discriminators = discriminatorsOf(sliced);
  if (discriminators.length === 0) return undefined;
  return sliced.slices.find((slice) => discriminators.every((d) => matchesDiscriminator(d, slice, item, oracle)));
}

function matchesDiscriminator(discriminator: Discriminator, slice: ElementNode, item: Item, oracle: SliceOracle): boolean {
  const steps = parsePath(discriminator.path);
  if (!steps) return false;
  const values = evaluatePath(item.value, steps);
  const target = cachedElementAt(slice, discriminator.path, steps);
  switch (discriminator.type) {
    case 'value':
    case 'pattern': {
      const expected = target?.fixed ?? target?.pattern ?? impliedValue(slice, steps);
      if (expected !== undefined) {
        const exact = target?.fixed !== undefined && discriminator.type === 'value';
        return values.some((value) => (exact ? deepEqual(value, expected) : matchesPattern(value, expected)));
      }
      // A slice can also be told apart by a required binding on the discriminated element.
      if (target?.binding?.strength === 'required') {
        const type = target.types[0]?.code ?? item.type;
        return values.some((value) => oracle.inValueSet(value, type, target.binding!.valueSet) === true);
      }
      return false;
    }
    case 'exists': {
      if (!target) return false;
      if (target.min > 0) return values.length > 0;
      if (target.max === 0) return values.length === 0;
      return false;
    }
    case 'type': {
      const wanted = target?.types.map((t) => t.code) ?? [];
      if (steps.length === 0) return wanted.includes(item.type);
      return values.some((value) => typeof value === 'object' && value !== null && wanted.includes((value as { resourceType?: string }).resourceType ?? ''));
    }
    case 'profile': {
      const profiles = target?.types.flatMap((t) => t.profiles) ?? [];
      if (profiles.length === 0) return false;
      const type = target?.types[0]?.code ?? item.type;
      return values.some((value) => profiles.some((profile) => oracle.conformsTo(value, type, profile)));
    }
    default:
      return false;
  }
}

/** For an extension slice, the url discriminator's value is the extension's canonical (its `url` is fixed there). */
function impliedValue(slice: ElementNode, steps: Step[]): unknown {
  const [first] = steps;
  if (steps.length !== 1 || !first || !('name' in first) || first.name !== 'url' || slice.types[0]?.code !== 'Extension') return undefined;
  const profile = slice.types[0].profiles[0];
  return profile ? stripVersion(profile) : undefined;
}

type Step = { name: string } | { extension: string } | { ofType: string };

/** Discriminator paths are a restricted FHIRPath: names, `$this`, `extension('url')`, `ofType(T)`. `resolve()` is not supported (no fetching). */
const parsedPaths = new Map<string, Step[] | undefined>();

/** parsePath, once per distinct path: slices are matched on every occurrence of every sliced element. */
function parsePath(path: string): Step[] | undefined {
  if (parsedPaths.has(path)) return parsedPaths.get(path);
  const steps = parsePathUncached(path);
  parsedPaths.set(path, steps);
  return steps;
}

function parsePathUncached(path: string): Step[] | undefined {
  const steps: Step[] = [];
  for (const part of path.match(/(?:[^.(]+(?:\([^)]*\))?)/g) ?? []) {
    if (part === '$this') continue;
    const extension = /^extension\('([^']+)'\)$/.exec(part);
    const ofType = /^ofType\(([^)]+)\)$/.exec(part);
    if (extension) steps.push({ extension: extension[1]! });
    else if (ofType) steps.push({ ofType: ofType[1]! });
    else if (/^[A-Za-z][A-Za-z0-9]*$/.test(part)) steps.push({ name: part });
    else return undefined;
  }
  return steps;
}

function evaluatePath(root: unknown, steps: Step[]): unknown[] {
  let current: unknown[] = root === undefined ? [] : [root];
  for (const step of steps) {
    const next: unknown[] = [];
    for (const value of current) {
      if (value === null || typeof value !== 'object') continue;
      const object = value as Record<string, unknown>;
      if ('extension' in step) {
        for (const extension of (object.extension as Record<string, unknown>[] | undefined) ?? []) {
          if (extension?.url === step.extension) next.push(extension);
        }
      } else if ('ofType' in step) {
        next.push(value);
      } else if (step.name === 'value' && !('value' in object)) {
        // `value` on an extension means its value[x], whatever the type suffix.
        for (const key of Object.keys(object)) if (/^value[A-Z]/.test(key)) next.push(object[key]);
      } else {
        const child = object[step.name];
        if (Array.isArray(child)) next.push(...child);
        else if (child !== undefined) next.push(child);
      }
    }
    current = next;
  }
  return current;
}

/** The definition, inside a slice, of the element a discriminator path designates. */
const targets = new WeakMap<ElementNode, Map<string, ElementNode | undefined>>();

/** elementAt, once per (slice, discriminator path): the compiled profile does not change. */
function cachedElementAt(slice: ElementNode, path: string, steps: Step[]): ElementNode | undefined {
  let byPath = targets.get(slice);
  if (!byPath) targets.set(slice, (byPath = new Map()));
  if (byPath.has(path)) return byPath.get(path);
  const target = elementAt(slice, steps);
  byPath.set(path, target);
  return target;
}

function elementAt(slice: ElementNode, steps: Step[]): ElementNode | undefined {
  let node: ElementNode | undefined = slice;
  for (const step of steps) {
    if (!node) return undefined;
    if ('ofType' in step) continue;
    if ('extension' in step) {
      const extensions: ElementNode | undefined = node.children.find((child) => child.name === 'extension');
      node = extensions?.slices.find(
        (s) => s.types[0]?.profiles.some((p) => stripVersion(p) === step.extension) || s.children.some((c) => c.name === 'url' && c.fixed === step.extension),
      );
      continue;
    }
    node = node.children.find((child) => child.name === step.name);
  }
  return node;
}
