import r4Model from 'fhirpath/fhir-context/r4';
import { splitTopLevel, type CompiledPath, type PathNode } from './registry.ts';

interface Model {
  path2Type: Record<string, string>;
  choiceTypePaths: Record<string, string[]>;
  pathsDefinedElsewhere: Record<string, string>;
}
const MODEL = r4Model as unknown as Model;

const PRIMITIVES = new Set([
  'base64Binary', 'boolean', 'canonical', 'code', 'date', 'dateTime', 'decimal', 'id', 'instant', 'integer',
  'markdown', 'oid', 'positiveInt', 'string', 'time', 'unsignedInt', 'uri', 'url', 'uuid', 'xhtml',
]);

/** One step of a path: an element name, or a filter on the nodes reached so far. */
type Token =
  | { kind: 'name'; name: string }
  | { kind: 'equals'; field: string; value: string }
  | { kind: 'startsWith'; field: string; prefix: string }
  | { kind: 'ofType'; type: string };

const NAME = /^[a-z][A-Za-z0-9]*$/;
const EQUALS = /^where\(([a-z][A-Za-z0-9]*)\s*=\s*'([^'\\]*)'\)$/;
const STARTS_WITH = /^where\(([a-z][A-Za-z0-9]*)\.startsWith\('([^'\\]*)'\)\)$/;
const OF_TYPE = /^ofType\(([A-Za-z]+)\)$/;
/** `Patient.deceased.exists() and Patient.deceased != false`: a flag computed from a choice element. */
const PRESENT_AND_NOT_FALSE = /^([A-Z][A-Za-z]+(?:\.[a-z][A-Za-z0-9]*)+)\.exists\(\) and \1 != false$/;

/**
 * Most search parameter expressions are paths (`Immunization.lotNumber`, `Patient.name.given`), some
 * with a simple filter (`.where(system='email')`, `.where(reference.startsWith('Patient/'))`,
 * `.ofType(dateTime)`), or a union of such. Walking them directly over the JSON, typed by fhirpath.js's
 * own R4 model, gives the nodes fhirpath.js would give at a fraction of the cost (extraction runs on
 * every write). Anything else returns undefined: fhirpath.js evaluates it.
 */
export function compileFastPath(expression: string): CompiledPath | undefined {
  const presence = PRESENT_AND_NOT_FALSE.exec(expression.trim());
  if (presence) {
    const inner = compileFastPath(presence[1]!);
    if (!inner) return undefined;
    // FHIRPath's answer: false when absent or a lone `false`, true for any other single value (a date);
    // with several values `!=` is an error, which indexes nothing.
    return (resource: unknown) => {
      const nodes = inner(resource);
      if (nodes.length > 1) return [];
      return [{ data: nodes.length === 1 && nodes[0]!.data !== false }];
    };
  }
  const paths: Array<{ root: string; tokens: Token[] }> = [];
  for (const part of expression.split(' | ')) {
    const parsed = parsePath(part.trim().replace(/^\((.*)\)$/, '$1'));
    if (!parsed || !resolvable(parsed.root, parsed.tokens)) return undefined;
    paths.push(parsed);
  }
  return (resource: unknown) => paths.flatMap(({ root, tokens }) => walk(resource, root, tokens));
}

function parsePath(text: string): { root: string; tokens: Token[] } | undefined {
  const pieces = splitTopLevel(text, '.');
  const root = pieces.shift();
  if (!root || !/^[A-Z][A-Za-z]+$/.test(root) || pieces.length === 0) return undefined;
  const tokens: Token[] = [];
  for (const piece of pieces) {
    let match: RegExpExecArray | null;
    if (NAME.test(piece)) tokens.push({ kind: 'name', name: piece });
    else if ((match = EQUALS.exec(piece))) tokens.push({ kind: 'equals', field: match[1]!, value: match[2]! });
    else if ((match = STARTS_WITH.exec(piece))) tokens.push({ kind: 'startsWith', field: match[1]!, prefix: match[2]! });
    else if ((match = OF_TYPE.exec(piece))) tokens.push({ kind: 'ofType', type: match[1]! });
    else return undefined;
  }
  return { root, tokens };
}

/** Whether every named step is known to the model (else fhirpath.js decides what it means). */
function resolvable(root: string, tokens: Token[]): boolean {
  let typePaths = [root];
  for (const token of tokens) {
    if (token.kind !== 'name') continue;
    const next: string[] = [];
    for (const typePath of typePaths) {
      const step = stepOf(typePath, token.name);
      if (!step) return false;
      next.push(...step.keys.map(([, type]) => step.next || type));
    }
    typePaths = next;
  }
  return true;
}

interface Step {
  /** The JSON keys this element may appear under, with the type each key means. */
  keys: Array<[key: string, type: string]>;
  /** Where the next segment is looked up: the element path for backbone elements, else the type name. */
  next: string;
}

const steps = new Map<string, Step | undefined>();

function stepOf(typePath: string, segment: string): Step | undefined {
  const cacheKey = `${typePath}.${segment}`;
  if (steps.has(cacheKey)) return steps.get(cacheKey);
  let step: Step | undefined;
  const path = MODEL.pathsDefinedElsewhere[cacheKey] ?? cacheKey;
  const choices = MODEL.choiceTypePaths[path];
  if (choices) {
    const keys = choices.map((suffix): [string, string] => {
      const lowered = suffix[0]!.toLowerCase() + suffix.slice(1);
      return [segment + suffix, PRIMITIVES.has(lowered) ? lowered : suffix];
    });
    step = { keys, next: '' }; // after a choice, the next step is looked up in the chosen type
  } else {
    const type = MODEL.path2Type[path];
    if (type && !type.startsWith('System.')) {
      const backbone = type === 'BackboneElement' || type === 'Element';
      step = { keys: [[segment, type]], next: backbone ? path : type };
    }
  }
  steps.set(cacheKey, step);
  return step;
}

interface Located {
  data: unknown;
  typePath: string;
  node?: PathNode;
}

function walk(resource: unknown, root: string, tokens: Token[]): PathNode[] {
  if (!resource || typeof resource !== 'object' || (resource as { resourceType?: string }).resourceType !== root) return [];
  let current: Located[] = [{ data: resource, typePath: root }];
  for (const token of tokens) {
    switch (token.kind) {
      case 'name': {
        const next: Located[] = [];
        for (const { data, typePath } of current) {
          const step = stepOf(typePath, token.name);
          if (!step || typeof data !== 'object' || data === null) continue;
          for (const [key, type] of step.keys) {
            const value = (data as Record<string, unknown>)[key];
            if (value === undefined || value === null) continue;
            for (const item of Array.isArray(value) ? value : [value]) {
              if (item === null) continue;
              // The shape fhirpath.js gives: the value, its FHIR type, and where it sits (for implicit code systems).
              const node = { data: item, fhirNodeDataType: type, parentResNode: { path: typePath }, propName: token.name } as PathNode;
              next.push({ data: item, typePath: step.next || type, node });
            }
          }
        }
        current = next;
        break;
      }
      case 'equals':
        current = current.filter(({ data }) => (data as Record<string, unknown>)?.[token.field] === token.value);
        break;
      case 'startsWith':
        current = current.filter(({ data }) => {
          const value = (data as Record<string, unknown>)?.[token.field];
          return typeof value === 'string' && value.startsWith(token.prefix);
        });
        break;
      case 'ofType':
        current = current.filter(({ node }) => node?.fhirNodeDataType === token.type);
        break;
    }
  }
  return current.map(({ node }) => node!).filter(Boolean);
}
