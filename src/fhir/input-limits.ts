import { FhirError } from './outcome.ts';

/** Bounds on the work one request body can ask of the server, whatever its size in bytes. */
export interface InputLimits {
  /** Deepest nesting of objects and arrays in a body (1,000 nested extensions overflowed the stack). */
  maxDepth: number;
  /** Most items in one array of a body, `Bundle.entry` of the body itself aside (BUNDLE_MAX_ENTRIES bounds it). */
  maxArrayLength: number;
}

export const DEFAULT_INPUT_LIMITS: InputLimits = { maxDepth: 100, maxArrayLength: 1_000 };

/**
 * C0 control characters other than tab, CR and LF (which FHIR strings may not hold, R4 datatypes.html#string,
 * and PostgreSQL refuses NUL in text and jsonb), and UTF-16 surrogates without their other half (which
 * have no UTF-8 encoding). Without the `u` flag a regex sees surrogates one by one.
 */
const UNSTORABLE = /[\0-\x08\x0B\x0C\x0E-\x1F]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `text` cannot be stored or searched as a FHIR string, or undefined when it can. */
export function unstorableCharacter(text: string): string | undefined {
  const found = UNSTORABLE.exec(text);
  if (!found) return undefined;
  const unit = found[0].charCodeAt(0);
  const code = `U+${unit.toString(16).toUpperCase().padStart(4, '0')}`;
  return unit < 0x20 ? `the control character ${code}, which FHIR strings may not contain` : `the unpaired surrogate ${code}, which is not a Unicode character`;
}

interface Pending {
  value: unknown;
  depth: number;
  parent?: Pending;
  key?: string | number;
}

/**
 * Refuses a parsed JSON body deeper, wider or holding characters beyond what the server accepts, before
 * anything recursive (validation, FHIRPath, patching) walks it: 413 naming the limit exceeded, 400 for a
 * character. The walk keeps its own stack, so no depth overflows it.
 */
export function checkInput(body: unknown, limits: InputLimits): void {
  if (body === null || typeof body !== 'object') return;
  const topBundleEntries = (body as { resourceType?: unknown }).resourceType === 'Bundle' ? (body as { entry?: unknown }).entry : undefined;
  const stack: Pending[] = [{ value: body, depth: 1 }];
  // Strings, most of a body, are checked where they are met: only objects and arrays go on the stack.
  const visit = (value: unknown, parent: Pending, key: string | number) => {
    if (typeof value === 'string') {
      const problem = unstorableCharacter(value);
      if (problem) {
        const path = pathOf({ value, depth: parent.depth + 1, parent, key });
        throw FhirError.badRequest(`${path} contains ${problem}`, [path]);
      }
    } else if (value !== null && typeof value === 'object') {
      stack.push({ value, depth: parent.depth + 1, parent, key });
    }
  };
  for (let item = stack.pop(); item; item = stack.pop()) {
    const { value, depth } = item;
    if (depth > limits.maxDepth) {
      throw new FhirError(413, [{ code: 'too-long', diagnostics: `${pathOf(item)} is nested ${depth} levels deep; this server accepts at most ${limits.maxDepth} levels (RESOURCE_MAX_DEPTH)`, expression: [pathOf(item)] }]);
    }
    if (Array.isArray(value)) {
      if (value.length > limits.maxArrayLength && value !== topBundleEntries) {
        throw new FhirError(413, [{ code: 'too-long', diagnostics: `${pathOf(item)} has ${value.length} items; this server accepts at most ${limits.maxArrayLength} in one array (RESOURCE_MAX_ARRAY_LENGTH)`, expression: [pathOf(item)] }]);
      }
      for (let index = value.length - 1; index >= 0; index--) visit(value[index], item, index);
      continue;
    }
    for (const key in value as Record<string, unknown>) {
      const problem = unstorableCharacter(key);
      if (problem) throw FhirError.badRequest(`A property name in ${pathOf(item)} contains ${problem}`, [pathOf(item)]);
      visit((value as Record<string, unknown>)[key], item, key);
    }
  }
}

/** A FHIRPath-like location (`Organization.identifier[3].value`), built only for a refusal. */
function pathOf(item: Pending): string {
  const parts: string[] = [];
  let at = item;
  for (; at.parent; at = at.parent) parts.push(typeof at.key === 'number' ? `[${at.key}]` : `.${at.key}`);
  const resourceType = (at.value as { resourceType?: unknown }).resourceType;
  return (typeof resourceType === 'string' ? resourceType : '(body)') + parts.reverse().join('');
}
