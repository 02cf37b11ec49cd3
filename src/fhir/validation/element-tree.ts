import { compileConstraints, type CompiledConstraint } from './constraints.ts';
import type { ElementDefinition, StructureDefinition } from './definitions.ts';

export interface TypeRef {
  /** FHIR type code; FHIRPath system types (`http://hl7.org/fhirpath/System.String`) are mapped to `string` etc. */
  code: string;
  profiles: string[];
  targetProfiles: string[];
}

export interface Discriminator {
  type: 'value' | 'pattern' | 'type' | 'profile' | 'exists';
  path: string;
}

/** One ElementDefinition of a snapshot, linked to its children and slices, with everything precomputed. */
export interface ElementNode {
  id: string;
  path: string;
  /** JSON property name: the last path segment without `[x]` (for a choice, the prefix of `valueString`...). */
  name: string;
  /** `_name`: where a primitive's id and extensions sit in JSON. */
  underscoreName: string;
  choice: boolean;
  /** A choice element's allowed types by JSON suffix in lower case (`valuestring` → `string`). */
  choiceTypes?: Map<string, string>;
  /** Of a primitive type (or one of them): only then may the instance carry a `_name` for it. */
  primitive: boolean;
  /**
   * Of one primitive type, with nothing of its own to check (no fixed or pattern value, binding, maxLength,
   * constraint or slicing; not xhtml): an occurrence without a `_name` sibling needs only counting.
   */
  plainPrimitive: boolean;
  min: number;
  max: number;
  types: TypeRef[];
  fixed?: unknown;
  pattern?: unknown;
  maxLength?: number;
  binding?: { strength: 'required' | 'extensible' | 'preferred' | 'example'; valueSet: string };
  constraints: CompiledConstraint[];
  children: ElementNode[];
  sliceName?: string;
  slicing?: { discriminators: Discriminator[]; ordered: boolean; rules: 'open' | 'closed' | 'openAtEnd' };
  slices: ElementNode[];
  /** `#Questionnaire.item` style reuse of another element's definition. */
  contentReference?: string;
  profile: CompiledProfile;
}

export interface CompiledProfile {
  url: string;
  /** Name used in messages: the profile's title or name. */
  label: string;
  type: string;
  definition: StructureDefinition;
  root: ElementNode;
  byPath: Map<string, ElementNode>;
}

const SYSTEM_TYPES: Record<string, string> = {
  'http://hl7.org/fhirpath/System.String': 'string',
  'http://hl7.org/fhirpath/System.Boolean': 'boolean',
  'http://hl7.org/fhirpath/System.Integer': 'integer',
  'http://hl7.org/fhirpath/System.Decimal': 'decimal',
  'http://hl7.org/fhirpath/System.Date': 'date',
  'http://hl7.org/fhirpath/System.DateTime': 'dateTime',
  'http://hl7.org/fhirpath/System.Time': 'time',
};

const FHIR_TYPE_EXTENSION = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type';

/** Element ids, urls and primitive values are typed with FHIRPath system types; the FHIR type is in an extension. */
function fhirTypeOf(type: NonNullable<ElementDefinition['type']>[number]): string {
  const declared = (type as { extension?: { url: string; valueUrl?: string; valueUri?: string }[] }).extension?.find((e) => e.url === FHIR_TYPE_EXTENSION);
  return declared?.valueUrl ?? declared?.valueUri ?? SYSTEM_TYPES[type.code] ?? type.code;
}

const UNBOUNDED = Number.POSITIVE_INFINITY;

/** Builds the element tree of a StructureDefinition's snapshot. */
export function compileProfile(definition: StructureDefinition): CompiledProfile {
  const elements = definition.snapshot?.element;
  if (!elements || elements.length === 0) throw new Error(`StructureDefinition ${definition.url} has no snapshot`);
  const profile = {
    url: definition.url,
    label: definition.title ?? definition.name,
    type: definition.type,
    definition,
    byPath: new Map(),
  } as unknown as CompiledProfile;
  const byId = new Map<string, ElementNode>();
  for (const element of elements) {
    const id = element.id ?? element.path;
    const node = toNode(element, id, profile);
    byId.set(id, node);
    if (!element.sliceName) profile.byPath.set(element.path, profile.byPath.get(element.path) ?? node);
    if (!profile.root) {
      profile.root = node;
      continue;
    }
    const sliceOf = sliceParentId(id, element.sliceName);
    if (sliceOf) {
      const sliced = byId.get(sliceOf);
      if (!sliced) throw new Error(`${definition.url}: slice ${id} before its sliced element`);
      sliced.slices.push(node);
      continue;
    }
    const parent = byId.get(id.slice(0, lastSegmentStart(id) - 1));
    if (!parent) throw new Error(`${definition.url}: element ${id} has no parent in the snapshot`);
    parent.children.push(node);
  }
  return profile;
}

function toNode(element: ElementDefinition, id: string, profile: CompiledProfile): ElementNode {
  const lastName = element.path.slice(element.path.lastIndexOf('.') + 1);
  const choice = lastName.endsWith('[x]');
  let fixed: unknown;
  let pattern: unknown;
  const types = (element.type ?? []).map((type) => ({
    code: fhirTypeOf(type),
    profiles: type.profile ?? [],
    targetProfiles: type.targetProfile ?? [],
  }));
  for (const key of Object.keys(element)) {
    if (key.startsWith('fixed')) fixed = element[key];
    else if (key.startsWith('pattern')) pattern = element[key];
  }
  const binding = element.binding?.valueSet && element.binding.strength !== 'example'
    ? { strength: element.binding.strength, valueSet: element.binding.valueSet }
    : undefined;
  const constraints = compileConstraints(element);
  const plainPrimitive = !choice && types.length === 1 && isPrimitive(types[0]!.code) && types[0]!.code !== 'xhtml'
    && fixed === undefined && pattern === undefined && !binding && element.maxLength === undefined && constraints.length === 0
    && !element.slicing;
  return {
    id,
    path: element.path,
    name: choice ? lastName.slice(0, -3) : lastName,
    underscoreName: `_${choice ? lastName.slice(0, -3) : lastName}`,
    choice,
    ...(choice ? { choiceTypes: new Map([...types].reverse().map(({ code }) => [code.toLowerCase(), code])) } : {}),
    primitive: types.some((type) => isPrimitive(type.code)),
    plainPrimitive,
    min: element.min ?? 0,
    max: element.max === undefined || element.max === '*' ? UNBOUNDED : Number(element.max),
    types,
    fixed,
    pattern,
    maxLength: element.maxLength,
    binding,
    constraints,
    children: [],
    sliceName: element.sliceName,
    slicing: element.slicing
      ? {
          discriminators: (element.slicing.discriminator ?? []) as Discriminator[],
          ordered: element.slicing.ordered ?? false,
          rules: element.slicing.rules ?? 'open',
        }
      : undefined,
    slices: [],
    contentReference: element.contentReference,
    profile,
  };
}

/** Index where the last `.`-separated segment of an element id starts (slice names hold no dots here). */
function lastSegmentStart(id: string): number {
  return id.lastIndexOf('.') + 1;
}

/** For `Patient.identifier:INS-NIR` the id of the sliced element, `Patient.identifier`; re-slices `a:b/c` → `a:b`. */
function sliceParentId(id: string, sliceName: string | undefined): string | undefined {
  if (!sliceName) return undefined;
  const suffix = `:${sliceName}`;
  if (id.endsWith(suffix)) return id.slice(0, -suffix.length);
  const slash = sliceName.lastIndexOf('/');
  if (slash >= 0 && id.endsWith(sliceName.slice(slash))) return id.slice(0, id.length - (sliceName.length - slash));
  return undefined;
}

export const PRIMITIVE_TYPES = new Set([
  'base64Binary', 'boolean', 'canonical', 'code', 'date', 'dateTime', 'decimal', 'id', 'instant', 'integer',
  'markdown', 'oid', 'positiveInt', 'string', 'time', 'unsignedInt', 'uri', 'url', 'uuid', 'xhtml',
]);

export function isPrimitive(type: string): boolean {
  return PRIMITIVE_TYPES.has(type);
}
