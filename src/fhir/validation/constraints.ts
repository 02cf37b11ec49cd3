import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';
import type { ElementDefinition } from './definitions.ts';
import { compileFast, Fallback } from './fast-fhirpath.ts';

/** An ElementDefinition.constraint with its FHIRPath compiled once, at load. */
export interface CompiledConstraint {
  key: string;
  severity: 'error' | 'warning';
  human: string;
  expression: string;
  /** Where the constraint was defined (a profile's URL, or the base type's). */
  source?: string;
  /** true when the constraint holds on `node`; an empty result counts as holding (FHIRPath spec, §invariants). */
  holds(node: unknown, env: ConstraintEnvironment): boolean;
}

export interface ConstraintEnvironment {
  resource: unknown;
  rootResource: unknown;
}

/**
 * Constraints checked natively instead, because evaluating them on every element costs more than the
 * rest of validation: ele-1 ("All FHIR elements must have a @value or children") is the JSON rule the
 * schema stage already enforces (no empty object, array or string); ext-1 ("extension or value[x], not
 * both") is checked where extensions are validated.
 */
const NATIVE_CONSTRAINTS = new Set(['ele-1', 'ext-1']);

const cache = new Map<string, CompiledConstraint['holds'] | null>();

/** Compiled constraints of one element; the FHIRPath base is the element's path, for choice-type typing. */
export function compileConstraints(element: ElementDefinition): CompiledConstraint[] {
  const compiled: CompiledConstraint[] = [];
  const seen = new Set<string>();
  for (const constraint of element.constraint ?? []) {
    if (NATIVE_CONSTRAINTS.has(constraint.key) || !constraint.expression || seen.has(constraint.key)) continue;
    seen.add(constraint.key);
    // Two keys with the same expression (R4 txt-1 and txt-2 are both `htmlChecks()`) are one check, reported once under both keys.
    const same = compiled.find((c) => c.expression === constraint.expression);
    if (same) {
      same.key = `${same.key}, ${constraint.key}`;
      same.human = `${same.human} / ${constraint.human}`;
      continue;
    }
    const holds = compileExpression(element.path, constraint.expression);
    if (!holds) continue;
    compiled.push({
      key: constraint.key,
      severity: constraint.severity === 'warning' ? 'warning' : 'error',
      human: constraint.human,
      expression: constraint.expression,
      source: constraint.source,
      holds,
    });
  }
  return compiled;
}

/**
 * `resolve()` needs a server in fhirpath.js (async, over HTTP) and the validator never fetches: constraints
 * using it are not evaluated. A constraint fhirpath.js cannot compile is not evaluated either (it would
 * otherwise fail every write); both are rare in R4 and in the bundled profiles.
 */
function compileExpression(path: string, expression: string): CompiledConstraint['holds'] | undefined {
  const base = path.replace(/\[x\]/g, '');
  const cacheKey = `${base}\u0000${expression}`;
  const cached = cache.get(cacheKey);
  if (cached !== undefined) return cached ?? undefined;
  let holds: CompiledConstraint['holds'] | null = null;
  if (!/\bresolve\(\)/.test(expression)) {
    try {
      const evaluate = compileWithBase(base, expression);
      const slow: CompiledConstraint['holds'] = (node, env) => {
        const result = evaluate(node, env as unknown as Record<string, unknown>);
        return !(result.length === 1 && result[0] === false);
      };
      holds = fastPath(expression, slow) ?? slow;
    } catch {
      holds = null;
    }
  }
  cache.set(cacheKey, holds);
  return holds ?? undefined;
}

/**
 * R4 dom-3 (contained resources are referenced). fhirpath.js 5.2 cannot run it on any resource that has
 * contained resources (`descendants().as(canonical)` raises "Expected singleton"), so it was never
 * enforced; without contained resources it holds. Keeping that verdict costs nothing: answer it directly
 * instead of spending ~150 µs per resource in fhirpath.js to reach the same result.
 */
const DOM_3 = "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()";

/**
 * R4 ref-1 ("SHALL have a contained resource if a local reference is provided"), natively: run at every
 * Reference, fhirpath.js would cost more than the rest of the Reference's checks. `#` alone is the
 * container, as a contained resource names it (R4 references.html#contained; R5 says so in ref-1 itself).
 */
const REF_1 = "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))";

function localReferenceResolves(node: unknown, env: ConstraintEnvironment): boolean {
  const reference = (node as { reference?: unknown } | null)?.reference;
  if (typeof reference !== 'string' || !reference.startsWith('#')) return true;
  if (reference === '#') return env.rootResource !== env.resource;
  const contained = (env.rootResource as { contained?: unknown } | null)?.contained;
  return Array.isArray(contained) && contained.some((resource) => (resource as { id?: unknown } | null)?.id === reference.slice(1));
}

/**
 * The native evaluation of an expression when it is in the fast subset (fast-fhirpath.ts); fhirpath.js
 * (`slow`) decides whenever the fast path is unsure. Same verdicts, a fraction of the cost.
 */
function fastPath(expression: string, slow: CompiledConstraint['holds']): CompiledConstraint['holds'] | undefined {
  if (expression === DOM_3) return () => true;
  if (expression === REF_1) return localReferenceResolves;
  const fast = compileFast(expression);
  if (!fast) return undefined;
  return (node, env) => {
    try {
      const result = fast(node);
      return !(result.length === 1 && result[0] === false);
    } catch (error) {
      if (error instanceof Fallback) return slow(node, env);
      throw error;
    }
  };
}

/**
 * txt-1 and txt-2 (`htmlChecks()`) as the HL7 reference validator evaluates them. fhirpath.js refuses every
 * namespace-prefixed attribute, `xml:lang` included, though XHTML defines it and the IG Publisher writes it
 * on every narrative (`<div xmlns="…" xml:lang="fr" lang="fr">`): the official FR Core and ANS examples
 * all failed. The narrative is checked by fhirpath.js's own function with each `xml:lang="…"` of a start
 * tag set aside; every other rule (elements, attributes, other prefixes, well-formedness) stays its.
 */
const libraryHtmlChecks = fhirpath.compile('htmlChecks()', r4Model) as unknown as (node: unknown) => unknown[];
const XML_LANG_ATTRIBUTE = /\sxml:lang\s*=\s*(?:"[^"<>]*"|'[^'<>]*')/g;

export function withoutXmlLang(xhtml: string): string {
  return xhtml.replace(/<[A-Za-z][^<>]*>/g, (tag) => tag.replace(XML_LANG_ATTRIBUTE, ''));
}

function htmlChecksAllowingXmlLang(collection: Array<{ data?: unknown }>): unknown[] {
  const node = collection.length === 1 ? collection[0] : undefined;
  const value = node?.data;
  if (typeof value !== 'string' || !value.includes('xml:lang')) return libraryHtmlChecks(collection);
  // The same node (its type, its place) with the narrative the check should see.
  return libraryHtmlChecks([Object.create(node as object, { data: { value: withoutXmlLang(value) } })]);
}

/** dom-3 calls trace(): keep its output off stdout. */
const OPTIONS = {
  traceFn: () => {},
  userInvocationTable: { htmlChecks: { fn: htmlChecksAllowingXmlLang, arity: { 0: [] }, internalStructures: true } },
};

type Evaluator = (node: unknown, env: Record<string, unknown>) => unknown[];

function compileWithBase(base: string, expression: string): Evaluator {
  const isRoot = !base.includes('.');
  try {
    return fhirpath.compile(isRoot ? expression : { base, expression }, r4Model, OPTIONS) as unknown as Evaluator;
  } catch (error) {
    // A path the model does not know (a logical model, a profile on a datatype): evaluate untyped.
    if (isRoot) throw error;
    return fhirpath.compile(expression, r4Model, OPTIONS) as unknown as Evaluator;
  }
}
