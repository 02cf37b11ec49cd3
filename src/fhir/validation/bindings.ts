import type { TerminologyService } from '../terminology/terminology-service.ts';

export interface Coded {
  system?: string;
  code?: string;
}

/** The codes an element of `type` carries, or undefined for a type bindings do not apply to (e.g. Quantity: UCUM is not local). */
export function codesOf(value: unknown, type: string): Coded[] | undefined {
  switch (type) {
    case 'code':
    case 'string':
    case 'uri':
      return typeof value === 'string' ? [{ code: value }] : [];
    case 'Coding':
      return [value as Coded];
    case 'CodeableConcept':
      return ((value as { coding?: Coded[] }).coding ?? []).filter((coding) => coding && coding.code !== undefined);
    default:
      return undefined;
  }
}

/**
 * Binding membership: `true` when a code is in the value set, `false` when none is and every code could be
 * checked, `undefined` when it cannot be decided locally (unknown value set or code system).
 */
export function inValueSet(terminology: TerminologyService, value: unknown, type: string, valueSet: string): boolean | undefined {
  const codes = codesOf(value, type);
  if (codes === undefined || !terminology.hasValueSet(valueSet)) return undefined;
  if (codes.length === 0) return false;
  let undecided = false;
  for (const { system, code } of codes) {
    if (code === undefined) continue;
    // A Coding without a system cannot be placed in any code system (R4 terminologies.html §codings).
    if (type !== 'code' && type !== 'string' && type !== 'uri' && system === undefined) continue;
    const validity = terminology.validateCode(valueSet, system, code);
    if (validity === 'valid') return true;
    if (validity === 'unknown') undecided = true;
  }
  return undecided ? undefined : false;
}
