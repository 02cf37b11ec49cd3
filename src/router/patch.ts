import type { Parameters, ParametersParameter, Resource } from 'fhir/r4';
import jsonpatch, { type Operation } from 'fast-json-patch';
import { FhirError } from '../fhir/outcome.ts';
import r4Model from 'fhirpath/fhir-context/r4';
import { compilePath, type PathNode } from '../search/registry.ts';
import { JsonPatchBody, UnsupportedBody } from './request.ts';

/**
 * Applies a PATCH body to a copy of the current resource (R4 http.html#patch): JSON Patch (RFC 6902,
 * `application/json-patch+json`) or FHIRPath Patch (a Parameters resource, R4 fhirpatch.html).
 * Throws a 4xx FhirError for a patch that cannot apply; nothing is written then.
 */
export function applyPatch(resource: Resource, body: unknown): Resource {
  if (body instanceof JsonPatchBody) return applyJsonPatch(resource, body.operations);
  if (body instanceof UnsupportedBody) {
    throw new FhirError(415, [{ code: 'not-supported', diagnostics: `PATCH takes application/json-patch+json or a FHIRPath Patch Parameters resource, not '${body.mediaType}'` }]);
  }
  if (body && typeof body === 'object' && (body as Resource).resourceType === 'Parameters') return applyFhirPathPatch(resource, body as Parameters);
  throw FhirError.badRequest('PATCH takes a JSON Patch document (application/json-patch+json) or a FHIRPath Patch Parameters resource');
}

function applyJsonPatch(resource: Resource, operations: unknown): Resource {
  if (!Array.isArray(operations)) throw FhirError.badRequest('A JSON Patch document is an array of operations');
  let error: ReturnType<typeof jsonpatch.validate>;
  try {
    error = jsonpatch.validate(operations as Operation[], resource);
  } catch (cause) {
    // fast-json-patch throws (rather than reports) a path through __proto__ or constructor.prototype.
    throw new FhirError(422, [{ code: 'processing', diagnostics: `JSON Patch cannot apply: ${(cause as Error).message.split('.')[0]}` }]);
  }
  if (error) throw new FhirError(422, [{ code: 'processing', diagnostics: `JSON Patch operation ${Number(error.index) + 1} (${error.operation?.op ?? '?'} ${error.operation?.path ?? ''}) cannot apply: ${error.name}` }]);
  try {
    // banPrototypeModifications: a patch may not reach Object.prototype through __proto__ paths.
    return jsonpatch.applyPatch(resource, operations as Operation[], false, true, true).newDocument;
  } catch (cause) {
    throw new FhirError(422, [{ code: 'processing', diagnostics: `JSON Patch cannot apply: ${(cause as Error).message}` }]);
  }
}

// ---- FHIRPath Patch -------------------------------------------------------------------------------

/** Element paths that are lists in R4 (`Patient.contact`), from fhirpath.js's R4 model. */
const REPEATING = (r4Model as unknown as { path2Repeating: Record<string, boolean> }).path2Repeating;

interface FhirPathOperation {
  type: string;
  path: string;
  name?: string;
  value?: unknown;
  index?: number;
  source?: number;
  destination?: number;
}

function applyFhirPathPatch(resource: Resource, parameters: Parameters): Resource {
  const operations = (parameters.parameter ?? []).filter((p) => p.name === 'operation');
  if (operations.length === 0) throw FhirError.badRequest('A FHIRPath Patch has at least one `operation` parameter');
  operations.forEach((operation, index) => applyOperation(resource, readOperation(operation, index), index));
  return resource;
}

function readOperation(parameter: ParametersParameter, index: number): FhirPathOperation {
  const parts = parameter.part ?? [];
  const part = (name: string) => parts.find((p) => p.name === name);
  const type = part('type')?.valueCode;
  const path = part('path')?.valueString;
  if (!type || !path) throw FhirError.badRequest(`FHIRPath Patch operation ${index + 1} needs a type and a path`);
  const valuePart = part('value');
  return {
    type,
    path,
    name: part('name')?.valueString,
    value: valuePart ? valueOf(valuePart) : undefined,
    index: part('index')?.valueInteger,
    source: part('source')?.valueInteger,
    destination: part('destination')?.valueInteger,
  };
}

/** A patch value: `value[x]` as given, or an anonymous element built from nested parts. */
function valueOf(parameter: ParametersParameter): unknown {
  const key = Object.keys(parameter).find((k) => k.startsWith('value'));
  if (key) return (parameter as unknown as Record<string, unknown>)[key];
  if (parameter.part) {
    const element: Record<string, unknown> = {};
    for (const part of parameter.part) element[part.name] = valueOf(part);
    return element;
  }
  return undefined;
}

function applyOperation(resource: Resource, op: FhirPathOperation, index: number): void {
  const fail = (why: string) => new FhirError(422, [{ code: 'processing', diagnostics: `FHIRPath Patch operation ${index + 1} (${op.type} ${op.path}): ${why}` }]);
  let nodes: PathNode[];
  try {
    nodes = compilePath(op.path)(resource);
  } catch (cause) {
    throw FhirError.badRequest(`FHIRPath Patch operation ${index + 1}: invalid path '${op.path}': ${(cause as Error).message}`);
  }
  const node = nodes[0] as (PathNode & { parentResNode?: { data: Record<string, unknown> }; propName?: string; index?: number | null }) | undefined;
  switch (op.type) {
    case 'add': {
      if (nodes.length !== 1 || typeof node!.data !== 'object' || node!.data === null) throw fail('the path must select exactly one element');
      if (!op.name || op.value === undefined) throw fail('add needs a name and a value');
      const target = node!.data as Record<string, unknown>;
      const existing = target[op.name];
      if (existing !== undefined && !Array.isArray(existing)) throw fail('the element already has a value; use replace');
      const repeats = Array.isArray(existing) || REPEATING[`${node!.path}.${op.name}`] === true;
      target[op.name] = repeats ? [...((existing as unknown[]) ?? []), op.value] : op.value;
      return;
    }
    case 'insert': {
      const list = containerOf(node, fail);
      if (!Array.isArray(list.value) || op.index === undefined || op.value === undefined) throw fail('insert needs a list, an index and a value');
      if (op.index < 0 || op.index > list.value.length) throw fail(`index ${op.index} is outside the list`);
      list.value.splice(op.index, 0, op.value);
      return;
    }
    case 'delete': {
      if (nodes.length === 0) return; // R4: deleting nothing is not an error
      if (nodes.length > 1) throw fail('the path selects several elements');
      const { parent, name, position } = locate(node, fail);
      const current = parent[name];
      if (Array.isArray(current) && position !== null && position !== undefined) {
        current.splice(position, 1);
        if (current.length === 0) delete parent[name];
      } else delete parent[name];
      return;
    }
    case 'replace': {
      if (nodes.length !== 1) throw fail('the path must select exactly one element');
      if (op.value === undefined) throw fail('replace needs a value');
      const { parent, name, position } = locate(node, fail);
      const current = parent[name];
      if (Array.isArray(current) && position !== null && position !== undefined) current[position] = op.value;
      else parent[name] = op.value;
      return;
    }
    case 'move': {
      const list = containerOf(node, fail);
      const { source, destination } = op;
      if (!Array.isArray(list.value) || source === undefined || destination === undefined) throw fail('move needs a list, a source and a destination');
      if (source < 0 || source >= list.value.length || destination < 0 || destination >= list.value.length) throw fail('source or destination is outside the list');
      const [moved] = list.value.splice(source, 1);
      list.value.splice(destination, 0, moved);
      return;
    }
    default:
      throw FhirError.badRequest(`FHIRPath Patch operation ${index + 1}: unknown type '${op.type}'`);
  }
}

/** The object holding a selected element, and the element's name (and position in its list) there. */
function locate(node: unknown, fail: (why: string) => FhirError): { parent: Record<string, unknown>; name: string; position?: number | null } {
  const n = node as { parentResNode?: { data: unknown }; propName?: string; index?: number | null } | undefined;
  const parent = n?.parentResNode?.data;
  if (!n || !parent || typeof parent !== 'object' || !n.propName) throw fail('the path must select an element of the resource');
  // fhirpath.js names a choice element by its base name (`value`); the JSON key carries the type.
  const name = n.propName in (parent as object) ? n.propName : Object.keys(parent as object).find((k) => k.startsWith(n.propName!) && /^[A-Z]/.test(k.slice(n.propName!.length))) ?? n.propName;
  return { parent: parent as Record<string, unknown>, name, position: n.index };
}

/** For list operations the path selects the list itself (`Patient.identifier`): the whole array. */
function containerOf(node: unknown, fail: (why: string) => FhirError): { value: unknown } {
  const { parent, name } = locate(node, fail);
  return { value: parent[name] };
}
