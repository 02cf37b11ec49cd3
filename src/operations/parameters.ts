import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';

/** One entry of a Parameters resource: a value[x], a resource or parts. */
export interface ParameterEntry {
  name: string;
  resource?: Resource;
  part?: ParameterEntry[];
  [valueX: string]: unknown;
}

/** The entries named `name` of an operation's input (a Parameters resource, built from the query for GET). */
export function entries(parameters: Resource, name: string): ParameterEntry[] {
  return ((parameters as { parameter?: ParameterEntry[] }).parameter ?? []).filter((p) => p.name === name);
}

/** The value[x] of an entry, whatever its type (a GET query gives valueString, a POST valueCode, valueUri…). */
export function valueOf(entry: ParameterEntry): unknown {
  for (const key of Object.keys(entry)) if (key.startsWith('value')) return entry[key];
  return undefined;
}

/** A parameter taken at most once, as text: 400 when repeated or not a primitive. */
export function text(parameters: Resource, name: string): string | undefined {
  const found = entries(parameters, name);
  if (found.length === 0) return undefined;
  if (found.length > 1) throw FhirError.badRequest(`Parameter '${name}' is given more than once`, [name]);
  const value = valueOf(found[0]!);
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw FhirError.badRequest(`Parameter '${name}' must have a primitive value`, [name]);
}

/** A non-negative integer parameter. */
export function integer(parameters: Resource, name: string): number | undefined {
  const value = text(parameters, name);
  if (value === undefined) return undefined;
  if (!/^\d{1,9}$/.test(value)) throw FhirError.badRequest(`Parameter '${name}' must be a non-negative integer, not '${value}'`, [name]);
  return Number(value);
}

/** A complex-typed parameter (Coding, CodeableConcept) given at most once. */
export function complex<T>(parameters: Resource, name: string): T | undefined {
  const found = entries(parameters, name);
  if (found.length > 1) throw FhirError.badRequest(`Parameter '${name}' is given more than once`, [name]);
  if (found.length === 0) return undefined;
  const value = valueOf(found[0]!);
  if (value === null || typeof value !== 'object') throw FhirError.badRequest(`Parameter '${name}' must be a ${name === 'coding' ? 'Coding' : 'complex value'}`, [name]);
  return value as T;
}

/** Output Parameters from name/value pairs; undefined values are left out. */
export function outputParameters(parameter: Array<ParameterEntry | undefined>): Resource {
  return { resourceType: 'Parameters', parameter: parameter.filter((p): p is ParameterEntry => p !== undefined) } as Resource;
}
