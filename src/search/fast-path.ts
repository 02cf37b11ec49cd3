import r4Model from 'fhirpath/fhir-context/r4';
import { splitTopLevel, type CompiledPath, type PathNode } from './paths.ts';

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
  const walks: Array<{ root: string; walk: Walk }> = [];
  for (const part of expression.split(' | ')) {
    const parsed = parsePath(part.trim().replace(/^\((.*)\)$/, '$1'));
    const walk = parsed && compileWalk(parsed.root, groupsOf(parsed.tokens), 0);
    if (!walk) return undefined;
    walks.push({ root: parsed.root, walk });
  }
  return (resource: unknown) => {
    const out: PathNode[] = [];
    if (!resource || typeof resource !== 'object') return out;
    const resourceType = (resource as { resourceType?: string }).resourceType;
    for (const { root, walk } of walks) if (resourceType === root) walk(resource as Record<string, unknown>, out);
    return out;
  };
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

/** An element name and the filters on the values it reaches (`name.where(…).ofType(…)`). */
interface Group {
  name: string;
  filters: Exclude<Token, { kind: 'name' }>[];
}

/** Groups the tokens by element name; undefined when a filter comes before any name (fhirpath.js decides). */
function groupsOf(tokens: Token[]): Group[] | undefined {
  const groups: Group[] = [];
  for (const token of tokens) {
    if (token.kind === 'name') groups.push({ name: token.name, filters: [] });
    else if (groups.length === 0) return undefined;
    else groups[groups.length - 1]!.filters.push(token);
  }
  return groups;
}

/** Pushes onto `out` the nodes a path reaches from one element's JSON object. */
type Walk = (data: Record<string, unknown>, out: PathNode[]) => void;

/**
 * The walk from an element of type (or backbone path) `typePath` through `groups[g…]`, resolved against the
 * model once, here: at run time it only reads JSON keys. Undefined when a step is not in the model.
 */
function compileWalk(typePath: string, groups: Group[] | undefined, g: number): Walk | undefined {
  if (!groups) return undefined;
  const { name, filters } = groups[g]!;
  const step = stepOf(typePath, name);
  if (!step) return undefined;
  const last = g === groups.length - 1;
  // The shape fhirpath.js gives a node: the value, its FHIR type, and where it sits (for implicit code systems).
  const parentResNode = { path: typePath };
  const branches: Array<{ key: string; type: string; next: Walk | undefined }> = [];
  for (const [key, type] of step.keys) {
    const next = last ? undefined : compileWalk(step.next || type, groups, g + 1);
    if (!last && !next) return undefined;
    // `ofType` tests the type each key stands for, known now.
    if (filters.every((filter) => filter.kind !== 'ofType' || filter.type === type)) branches.push({ key, type, next });
  }
  const valueFilters = filters.filter((filter) => filter.kind !== 'ofType');
  const passes = (item: unknown) =>
    valueFilters.every((filter) => {
      const value = typeof item === 'object' ? (item as Record<string, unknown>)[filter.field] : undefined;
      return filter.kind === 'equals' ? value === filter.value : typeof value === 'string' && value.startsWith(filter.prefix);
    });
  const visit = (item: unknown, type: string, next: Walk | undefined, out: PathNode[]) => {
    if (item === null || (valueFilters.length > 0 && !passes(item))) return;
    if (next) {
      if (typeof item === 'object') next(item as Record<string, unknown>, out);
    } else {
      out.push({ data: item, fhirNodeDataType: type, parentResNode, propName: name } as PathNode);
    }
  };
  return (data, out) => {
    for (const { key, type, next } of branches) {
      const value = data[key];
      if (value === undefined || value === null) continue;
      if (Array.isArray(value)) for (const item of value) visit(item, type, next, out);
      else visit(value, type, next, out);
    }
  };
}
