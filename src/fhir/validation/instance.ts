import type { ElementNode } from './element-tree.ts';
import { isPrimitive } from './element-tree.ts';

/**
 * One occurrence of an element in a JSON instance. A primitive's value and its `_name` sibling (id,
 * extensions) are read together, as FHIR's JSON format defines them.
 */
export interface Item {
  /** The JSON value: an object for complex types, a string/number/boolean for primitives (undefined when only `_name` is present). */
  value: unknown;
  /** The `_name` object of a primitive (its id and extensions). */
  element?: Record<string, unknown>;
  /** The FHIR type of this occurrence (for a choice element, taken from the JSON property name). */
  type: string;
  /** FHIRPath-style location for OperationOutcome.issue.expression, e.g. `Patient.identifier[0].value`. */
  expression: string;
  /** Element path without indexes, for extension contexts, e.g. `Patient.name`. */
  elementPath: string;
  /** Path of the ElementDefinition the occurrence was read with, e.g. `HumanName.family` inside a datatype. */
  definitionPath?: string;
}

/** Result of reading a choice element: its items, plus JSON properties that use a type the element does not allow. */
export interface CollectedItems {
  items: Item[];
  disallowedTypes: { key: string; type: string; expression: string }[];
}

/** Reads the occurrences of `node` (a child definition) in `object`. */
export function collectItems(object: Record<string, unknown>, node: ElementNode, parentExpression: string, parentPath: string): CollectedItems {
  const result: CollectedItems = { items: [], disallowedTypes: [] };
  if (!node.choice) {
    const type = node.types[0]?.code ?? (node.contentReference ? 'BackboneElement' : 'Element');
    read(object, node.name, node.underscoreName, type, parentExpression, `${parentPath}.${node.name}`, result.items);
    return result;
  }
  for (const key of Object.keys(object)) {
    const jsonKey = key.startsWith('_') ? key.slice(1) : key;
    if (key.startsWith('_') && jsonKey in object) continue; // read together with its value
    if (!jsonKey.startsWith(node.name) || jsonKey.length === node.name.length) continue;
    const suffix = jsonKey.slice(node.name.length);
    if (suffix[0] !== suffix[0]!.toUpperCase()) continue;
    const type = node.choiceTypes?.get(suffix.toLowerCase());
    if (!type) {
      result.disallowedTypes.push({ key: jsonKey, type: typeFromSuffix(suffix), expression: `${parentExpression}.${jsonKey}` });
      continue;
    }
    read(object, jsonKey, `_${jsonKey}`, type, parentExpression, `${parentPath}.${node.name}`, result.items);
  }
  return result;
}

/** Reads `key` (a primitive together with `underscoreKey`, its `_key` sibling) into items. */
function read(object: Record<string, unknown>, key: string, underscoreKey: string, type: string, parentExpression: string, elementPath: string, into: Item[]): void {
  const value = object[key];
  const element = isPrimitive(type) ? object[underscoreKey] : undefined;
  if (value === undefined && element === undefined) return;
  if (Array.isArray(value) || Array.isArray(element)) {
    const values = Array.isArray(value) ? value : [];
    const elements = Array.isArray(element) ? element : [];
    const length = Math.max(values.length, elements.length);
    for (let index = 0; index < length; index++) {
      const v = values[index] ?? undefined;
      const e = (elements[index] ?? undefined) as Record<string, unknown> | undefined;
      if (v === undefined && e === undefined) continue;
      into.push({ value: v, element: e, type, expression: `${parentExpression}.${key}[${index}]`, elementPath });
    }
    return;
  }
  into.push({ value, element: element as Record<string, unknown> | undefined, type, expression: `${parentExpression}.${key}`, elementPath });
}

/**
 * How many occurrences a value without a `_name` sibling holds, counted as `read` would find them: in an
 * array, null only holds a place (for a `_name` entry) and is no occurrence.
 */
export function occurrenceCount(value: unknown): number {
  if (value === undefined) return 0;
  if (!Array.isArray(value)) return 1;
  let count = 0;
  for (const entry of value) if (entry !== null && entry !== undefined) count++;
  return count;
}

/** `String` → `string`, `DateTime` → `dateTime`, `CodeableConcept` stays. */
export function typeFromSuffix(suffix: string): string {
  const lower = suffix.charAt(0).toLowerCase() + suffix.slice(1);
  return isPrimitive(lower) ? lower : suffix;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((item, index) => deepEqual(item, other[index]));
  }
  const keysA = Object.keys(a as object);
  const keysB = Object.keys(b as object);
  return keysA.length === keysB.length && keysA.every((key) => deepEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]));
}

/** pattern[x] semantics: every value the pattern states is in the instance; each pattern array item matches some instance item. */
export function matchesPattern(instance: unknown, pattern: unknown): boolean {
  if (pattern === null || typeof pattern !== 'object') return instance === pattern;
  if (instance === null || typeof instance !== 'object') return false;
  if (Array.isArray(pattern)) {
    const items = Array.isArray(instance) ? instance : [instance];
    return pattern.every((wanted) => items.some((item) => matchesPattern(item, wanted)));
  }
  if (Array.isArray(instance)) return false;
  const object = instance as Record<string, unknown>;
  return Object.entries(pattern as Record<string, unknown>).every(([key, wanted]) => key in object && matchesPattern(object[key], wanted));
}

/** Compact JSON for messages. */
export function show(value: unknown): string {
  const text = JSON.stringify(value);
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}
