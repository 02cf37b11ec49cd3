import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';

/**
 * A native evaluator for the subset of FHIRPath that invariants mostly use (paths, `where`, `exists`,
 * `empty`, `count`, `not`, `extension(url)`, `startsWith`, `=`, `!=`, `in`, `|`, `and`, `or`, `xor`,
 * `implies`, literals), running on the JSON itself: about a hundred times cheaper than fhirpath.js,
 * whose per-call set-up (resource nodes, context cloning) dominated validation.
 *
 * It never decides alone what it is not sure of: an expression outside the subset is not compiled
 * (undefined: the caller uses fhirpath.js), and at run time anything whose meaning depends on FHIR
 * types the JSON does not show (a primitive's `_name` extensions, dates compared as strings, objects
 * compared, several items where one is expected) throws `Fallback`, and the caller asks fhirpath.js.
 * So verdicts are fhirpath.js's.
 */
export class Fallback extends Error {}

class Unsupported extends Error {}

type Collection = unknown[];
type Evaluate = (input: Collection) => Collection;

/** Compiles `expression` for the fast path, or undefined when it uses anything outside the subset. */
export function compileFast(expression: string): ((node: unknown) => Collection) | undefined {
  try {
    const evaluate = compileNode(fhirpath.parse(expression) as AstNode);
    return (node) => evaluate(node === undefined ? [] : [node]);
  } catch (error) {
    if (error instanceof Unsupported) return undefined;
    return undefined; // a parse failure: fhirpath.js reports it its own way
  }
}

interface AstNode {
  type: string;
  text?: string;
  children?: AstNode[];
}

const CHOICE_NAMES = new Set(Object.keys((r4Model as { choiceTypePaths: Record<string, unknown> }).choiceTypePaths).map((path) => path.slice(path.lastIndexOf('.') + 1)));

const TYPE_SUFFIXES = new Set([
  'Base64Binary', 'Boolean', 'Canonical', 'Code', 'Date', 'DateTime', 'Decimal', 'Id', 'Instant', 'Integer', 'Markdown', 'Oid',
  'PositiveInt', 'String', 'Time', 'UnsignedInt', 'Uri', 'Url', 'Uuid', 'Address', 'Age', 'Annotation', 'Attachment',
  'CodeableConcept', 'Coding', 'ContactPoint', 'Count', 'Distance', 'Duration', 'HumanName', 'Identifier', 'Money', 'Period',
  'Quantity', 'Range', 'Ratio', 'Reference', 'SampledData', 'Signature', 'Timing', 'ContactDetail', 'Contributor',
  'DataRequirement', 'Expression', 'ParameterDefinition', 'RelatedArtifact', 'TriggerDefinition', 'UsageContext', 'Dosage', 'Meta',
]);

/** Strings fhirpath.js would type as date, dateTime or time when read through the model: never compared natively. */
const TEMPORAL = /^\d{4}(-\d{2}(-\d{2})?)?(T|$)|^\d{2}:\d{2}/;

function only(node: AstNode, index = 0): AstNode {
  const child = node.children?.[index];
  if (!child) throw new Unsupported(node.type);
  return child;
}

function compileNode(node: AstNode): Evaluate {
  switch (node.type) {
    case 'EntireExpression':
    case 'TermExpression':
      if (node.children?.length !== 1) throw new Unsupported(node.type);
      return compileNode(only(node));
    case 'ParenthesizedTerm':
      return compileNode(only(node));
    case 'InvocationTerm':
      return compileInvocation(only(node));
    case 'LiteralTerm':
      return literal(only(node));
    case 'InvocationExpression': {
      const base = compileNode(only(node, 0));
      const invocation = compileInvocation(only(node, 1));
      return (input) => invocation(base(input));
    }
    case 'EqualityExpression':
      return equality(node);
    case 'MembershipExpression':
      return membership(node);
    case 'UnionExpression': {
      const left = compileNode(only(node, 0));
      const right = compileNode(only(node, 1));
      return (input) => union(left(input), right(input));
    }
    case 'AndExpression':
    case 'OrExpression':
    case 'XorExpression':
    case 'ImpliesExpression':
      return logic(node);
    default:
      throw new Unsupported(node.type);
  }
}

function literal(node: AstNode): Evaluate {
  const text = node.text ?? '';
  let value: unknown;
  switch (node.type) {
    case 'StringLiteral':
      value = unquote(text);
      break;
    case 'NumberLiteral':
      if (!/^\d+(\.\d+)?$/.test(text)) throw new Unsupported(text);
      value = Number(text);
      break;
    case 'BooleanLiteral':
      value = text === 'true';
      break;
    default:
      throw new Unsupported(node.type);
  }
  const result = [value];
  return () => result;
}

function unquote(text: string): string {
  const body = text.slice(1, -1);
  if (!body.includes('\\')) return body;
  if (/\\u|\\[^'"`\\/fnrt]/.test(body)) throw new Unsupported(text);
  return body.replace(/\\(.)/g, (_, c: string) => ({ f: '\f', n: '\n', r: '\r', t: '\t' })[c] ?? c);
}

function compileInvocation(node: AstNode): Evaluate {
  if (node.type === 'MemberInvocation') {
    let name = only(node).text ?? '';
    if (name.startsWith('`')) name = name.slice(1, -1);
    // A type name (`Patient.x`) filters by type in fhirpath.js: not in the subset.
    if (!/^[a-z][A-Za-z0-9_]*$/.test(name)) throw new Unsupported(name);
    return member(name);
  }
  if (node.type === 'FunctionInvocation') return functionCall(only(node));
  throw new Unsupported(node.type);
}

function member(name: string): Evaluate {
  const choice = CHOICE_NAMES.has(name);
  const hidden = `_${name}`;
  return (input) => {
    const out: unknown[] = [];
    for (const item of input) {
      if (item === null || typeof item !== 'object' || Array.isArray(item)) continue; // a primitive has no children here
      const object = item as Record<string, unknown>;
      if (object[hidden] !== undefined) throw new Fallback(hidden);
      let value = object[name];
      if (value === undefined && choice) value = choiceValue(object, name);
      if (value === undefined || value === null) continue;
      if (Array.isArray(value)) {
        for (const v of value) if (v !== null && v !== undefined) out.push(v);
      } else {
        out.push(value);
      }
    }
    return out;
  };
}

/** `value` → `valueCoding`: the one property named after the choice and a FHIR type. */
function choiceValue(object: Record<string, unknown>, name: string): unknown {
  for (const key in object) {
    if (key.length > name.length && key.startsWith(name) && TYPE_SUFFIXES.has(key.slice(name.length))) return object[key];
    if (key.length > name.length + 1 && key.startsWith(`_${name}`) && TYPE_SUFFIXES.has(key.slice(name.length + 1))) throw new Fallback(key);
  }
  return undefined;
}

function functionCall(node: AstNode): Evaluate {
  const name = only(node, 0).text;
  const params = node.children?.[1]?.children ?? [];
  const arg = (index: number) => compileNode(params[index] ?? (() => { throw new Unsupported(`${name} argument`); })());
  const literalString = (index: number): string => {
    const param = params[index];
    const term = param?.type === 'TermExpression' ? param.children?.[0] : undefined;
    const lit = term?.type === 'LiteralTerm' ? term.children?.[0] : undefined;
    if (lit?.type !== 'StringLiteral') throw new Unsupported(`${name} takes a string literal here`);
    return unquote(lit.text ?? '');
  };
  switch (name) {
    case 'exists':
      if (params.length === 0) return (input) => [input.length > 0];
      if (params.length === 1) {
        const criteria = arg(0);
        return (input) => [input.some((item) => truthy(criteria([item])))];
      }
      break;
    case 'empty':
      if (params.length === 0) return (input) => [input.length === 0];
      break;
    case 'count':
      if (params.length === 0) return (input) => [input.length];
      break;
    case 'where':
      if (params.length === 1) {
        const criteria = arg(0);
        return (input) => input.filter((item) => truthy(criteria([item])));
      }
      break;
    case 'not':
      if (params.length === 0) {
        return (input) => {
          const value = toBoolean(input);
          return value === undefined ? [] : [!value];
        };
      }
      break;
    case 'extension':
      if (params.length === 1) {
        const url = literalString(0);
        return (input) => {
          const out: unknown[] = [];
          for (const item of input) {
            if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new Fallback('extension() on a primitive');
            const extensions = (item as { extension?: unknown }).extension;
            if (!Array.isArray(extensions)) continue;
            for (const extension of extensions) if ((extension as { url?: unknown })?.url === url) out.push(extension);
          }
          return out;
        };
      }
      break;
    case 'startsWith':
      if (params.length === 1) {
        const prefix = literalString(0);
        return (input) => {
          if (input.length === 0) return [];
          if (input.length > 1 || typeof input[0] !== 'string') throw new Fallback('startsWith()');
          return [(input[0] as string).startsWith(prefix)];
        };
      }
      break;
  }
  throw new Unsupported(`${name}()`);
}

/** `where` / `exists` criteria: true only for a single `true`; anything but empty, true or false goes to fhirpath.js. */
function truthy(result: Collection): boolean {
  if (result.length === 0) return false;
  if (result.length === 1 && typeof result[0] === 'boolean') return result[0];
  throw new Fallback('non-boolean criteria');
}

/** A collection in a boolean context: empty → undefined; one boolean → it; anything else → fhirpath.js. */
function toBoolean(collection: Collection): boolean | undefined {
  if (collection.length === 0) return undefined;
  if (collection.length === 1 && typeof collection[0] === 'boolean') return collection[0];
  throw new Fallback('not a boolean');
}

function primitive(value: unknown): string | number | boolean {
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'string' && !TEMPORAL.test(value)) return value;
  throw new Fallback('not a comparable primitive');
}

function equal(a: unknown, b: unknown): boolean {
  const x = primitive(a);
  const y = primitive(b);
  if (typeof x !== typeof y) throw new Fallback('mixed types');
  return x === y;
}

function equality(node: AstNode): Evaluate {
  const operator = node.text;
  if (operator !== '=' && operator !== '!=') throw new Unsupported(operator);
  const left = compileNode(only(node, 0));
  const right = compileNode(only(node, 1));
  return (input) => {
    const l = left(input);
    const r = right(input);
    if (l.length === 0 || r.length === 0) return [];
    if (l.length !== 1 || r.length !== 1) throw new Fallback('collection equality');
    const same = equal(l[0], r[0]);
    return [operator === '=' ? same : !same];
  };
}

function membership(node: AstNode): Evaluate {
  const operator = node.text;
  if (operator !== 'in' && operator !== 'contains') throw new Unsupported(operator);
  const left = compileNode(only(node, 0));
  const right = compileNode(only(node, 1));
  return (input) => {
    const [item, collection] = operator === 'in' ? [left(input), right(input)] : [right(input), left(input)];
    if (item.length === 0) return [];
    if (item.length > 1) throw new Fallback(`${operator} with several items`);
    return [collection.some((c) => equal(item[0], c))];
  };
}

function union(a: Collection, b: Collection): Collection {
  const out: unknown[] = [];
  for (const value of [...a, ...b]) {
    if (!out.some((v) => equal(v, value))) out.push(value);
  }
  return out;
}

function logic(node: AstNode): Evaluate {
  const operator = node.text;
  const left = compileNode(only(node, 0));
  const right = compileNode(only(node, 1));
  // Both sides are always evaluated, as fhirpath.js does: an operand it would fail on must fall back, not be skipped.
  switch (operator) {
    case 'and':
      return (input) => {
        const l = toBoolean(left(input));
        const r = toBoolean(right(input));
        if (l === false || r === false) return [false];
        return l === true && r === true ? [true] : [];
      };
    case 'or':
      return (input) => {
        const l = toBoolean(left(input));
        const r = toBoolean(right(input));
        if (l === true || r === true) return [true];
        return l === false && r === false ? [false] : [];
      };
    case 'xor':
      return (input) => {
        const l = toBoolean(left(input));
        const r = toBoolean(right(input));
        return l === undefined || r === undefined ? [] : [l !== r];
      };
    case 'implies':
      return (input) => {
        const l = toBoolean(left(input));
        const r = toBoolean(right(input));
        if (l === false) return [true];
        if (l === true) return r === undefined ? [] : [r];
        return r === true ? [true] : [];
      };
    default:
      throw new Unsupported(operator);
  }
}
