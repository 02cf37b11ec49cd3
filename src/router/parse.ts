import { FhirError } from '../fhir/outcome.ts';
import { isServedResourceType, isValidId } from '../fhir/resource-types.ts';
import { isCompartmentType } from '../search/compartment.ts';
import { ROUTES, type Interaction, type InteractionKind } from './interaction.ts';
import type { FhirRequest, HttpMethod } from './request.ts';

interface CompiledRoute {
  segments: string[];
  methods: Partial<Record<HttpMethod, InteractionKind>>;
}

const COMPILED: CompiledRoute[] = ROUTES.map((route) => ({ segments: route.pattern === '' ? [] : route.pattern.split('/'), methods: route.methods }));

/** Which interaction a request asks for: 404 for an unknown path or type, 405 for a method the path lacks. */
export function parseInteraction(request: FhirRequest): Interaction {
  const segments = request.path.split('/').filter((s) => s.length > 0).map(decodeSegment);
  const route = COMPILED.find((candidate) => matches(candidate.segments, segments));
  if (!route) throw FhirError.notFound(`No FHIR endpoint at /${request.path}`);

  const params: Record<string, string> = {};
  route.segments.forEach((segment, index) => {
    if (segment.startsWith(':')) params[segment.slice(1)] = segments[index] as string;
    else if (segment.startsWith('$:')) params[segment.slice(2)] = (segments[index] as string).slice(1);
  });
  // A compartment is searched by its id (`Encounter/7/DocumentReference`) whether or not its type is stored here.
  const compartment = params.compartmentType !== undefined && params.type !== undefined && isCompartmentType(params.type);
  // An operation names the types it is offered on (`Bundle/$validate`); the registry answers for the others.
  const operation = params.operation !== undefined;
  for (const type of [compartment || operation ? undefined : params.type, params.compartmentType]) {
    if (type !== undefined && !isServedResourceType(type)) throw FhirError.notFound(`Resource type '${type}' is not served by this server`);
  }
  const method = request.method === 'HEAD' ? 'GET' : request.method;
  const kind = route.methods[method];
  if (!kind) {
    const allow = Object.keys(route.methods);
    throw FhirError.methodNotAllowed(`${request.method} is not allowed on /${request.path}; allowed: ${allow.join(', ')}`, allow);
  }
  if (params.id !== undefined && !isValidId(params.id)) {
    throw FhirError.badRequest(`'${params.id}' is not a valid resource id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')`);
  }
  const resourceType = params.type as string;
  const id = params.id as string;
  switch (kind) {
    case 'capabilities':
    case 'history-system':
    case 'search-system':
      return { kind };
    case 'transaction':
    case 'batch': {
      const type = (request.body as { type?: unknown } | undefined)?.type;
      if (type === 'transaction' || type === 'batch') return { kind: type };
      throw FhirError.badRequest(`POST to the base takes a Bundle of type transaction or batch, not ${type === undefined ? 'this body' : `'${String(type)}'`}`, ['Bundle.type']);
    }
    case 'update-conditional':
    case 'delete-conditional': {
      const condition = conditionOf(request.query);
      if (!condition) {
        const allow = Object.keys(route.methods).filter((m) => m === 'GET' || m === 'POST');
        throw FhirError.methodNotAllowed(`${request.method} on /${request.path} needs search criteria (a conditional ${kind === 'update-conditional' ? 'update' : 'delete'})`, allow);
      }
      return { kind, resourceType, condition };
    }
    case 'create':
    case 'history-type':
    case 'search-type':
      return { kind, resourceType };
    case 'search-compartment':
      return { kind, compartmentType: resourceType, id, resourceType: params.compartmentType as string };
    case 'operation':
      return { kind, name: params.operation as string, ...(resourceType ? { resourceType } : {}), ...(id ? { id } : {}) };
    case 'read':
    case 'patch':
    case 'update':
    case 'delete':
    case 'history-instance':
      return { kind, resourceType, id };
    case 'vread': {
      const vid = params.vid as string;
      if (!/^[1-9]\d{0,8}$/.test(vid)) throw FhirError.badRequest(`'${vid}' is not a valid version id`);
      return { kind, resourceType, id, versionId: Number(vid) };
    }
  }
}

/** The search criteria of a conditional interaction, without the parameters only HTTP reads. */
function conditionOf(query: FhirRequest['query']): string {
  const criteria = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (name === '_format' || name === '_pretty') continue;
    for (const v of Array.isArray(value) ? value : [value]) criteria.append(name, v);
  }
  return criteria.toString();
}

function matches(pattern: string[], segments: string[]): boolean {
  if (pattern.length !== segments.length) return false;
  // A parameter never takes a `_name` or `$name` segment: those are interactions and operations.
  return pattern.every((p, i) => {
    const segment = segments[i] as string;
    if (p.startsWith('$:')) return /^\$[A-Za-z][A-Za-z0-9-]*$/.test(segment);
    return p.startsWith(':') ? !/^[_$]/.test(segment) : p === segment;
  });
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw FhirError.badRequest(`Malformed percent-encoding in URL segment '${segment}'`);
  }
}
