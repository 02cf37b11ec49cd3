/**
 * What the registry and the fast path both build on: the node shape of an evaluated FHIRPath expression
 * and the splitting of an expression's text. Apart from both so that neither imports the other.
 */

/** A FHIRPath node as fhirpath.js returns it when asked to keep types (`resolveInternalTypes: false`). */
export interface PathNode {
  data: unknown;
  fhirNodeDataType?: string;
  path?: string;
}

export type CompiledPath = (resource: unknown) => PathNode[];

/** Splits a FHIRPath expression on `separator` where it is not inside parentheses or a string literal. */
export function splitTopLevel(expression: string, separator: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === "'" && expression[i - 1] !== '\\') quoted = !quoted;
    else if (!quoted && c === '(') depth++;
    else if (!quoted && c === ')') depth--;
    else if (!quoted && depth === 0 && c === separator) {
      parts.push(expression.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(expression.slice(start));
  return parts;
}
