import type { ElementDefinition, StructureDefinition } from 'fhir/r4';
import { r4Resources } from '../../src/fhir/r4/r4-definitions.ts';
import { loadValidationContext } from '../../src/fhir/validation/profile-validator.ts';

type Json = Record<string, unknown>;

const structures = new Map<string, StructureDefinition>();
for (const file of ['profiles-resources.json', 'profiles-types.json'] as const) {
  for (const definition of r4Resources<StructureDefinition>(file)) {
    if (definition.resourceType === 'StructureDefinition' && definition.derivation === 'specialization') structures.set(definition.type, definition);
  }
}

const PRIMITIVES: Record<string, unknown> = {
  boolean: true,
  integer: 1,
  unsignedInt: 1,
  positiveInt: 1,
  decimal: 1.5,
  string: 'x',
  markdown: 'x',
  code: 'x',
  id: 'x1',
  uri: 'http://example.org/x',
  url: 'http://example.org/x',
  canonical: 'http://example.org/x',
  oid: 'urn:oid:1.2.3',
  uuid: 'urn:uuid:9d1b8d2e-7c1a-4f53-9d5b-1f2e3d4c5b6a',
  date: '2024-01-15',
  dateTime: '2024-01-15T10:00:00Z',
  instant: '2024-01-15T10:00:00Z',
  time: '10:00:00',
  base64Binary: 'aGVsbG8=',
  xhtml: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
};

/** Values a generic walk cannot guess: elements constrained by invariants rather than by cardinality. */
const KNOWN_VALUES: Record<string, unknown> = {
  Reference: { display: 'someone' },
  Attachment: { contentType: 'text/plain', data: 'aGVsbG8=' },
  Quantity: { value: 1, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' },
  Duration: { value: 1, unit: 'd', system: 'http://unitsofmeasure.org', code: 'd' },
  Age: { value: 30, unit: 'a', system: 'http://unitsofmeasure.org', code: 'a' },
  Distance: { value: 1, unit: 'm', system: 'http://unitsofmeasure.org', code: 'm' },
  Count: { value: 1, system: 'http://unitsofmeasure.org', code: '1' },
  SimpleQuantity: { value: 1, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' },
  Money: { value: 10, currency: 'EUR' },
  Period: { start: '2024-01-15' },
  Range: { low: { value: 1, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' } },
  Ratio: { numerator: { value: 1 }, denominator: { value: 2 } },
  Identifier: { system: 'http://example.org/ids', value: 'x' },
  HumanName: { family: 'Martin', given: ['Anne'] },
  ContactPoint: { system: 'phone', value: '+33100000000' },
  Address: { city: 'Lyon' },
  Annotation: { text: 'note' },
  Timing: { event: ['2024-01-15T10:00:00Z'] },
  Dosage: { text: 'one a day' },
  Narrative: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' },
  Expression: { language: 'text/fhirpath', expression: 'true' },
  Signature: { type: [{ system: 'urn:iso-astm:E1762-95:2013', code: '1.2.840.10065.1.12.1.1' }], when: '2024-01-15T10:00:00Z', who: { display: 'someone' } },
  SampledData: { origin: { value: 0 }, period: 1, dimensions: 1 },
  Meta: { tag: [{ system: 'http://example.org/tags', code: 'x' }] },
};

/** What invariants (not cardinalities) require of a few types: the R4 rule each answers is named. */
const INVARIANT_FIELDS: Record<string, Json> = {
  AllergyIntolerance: { clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] } }, // ait-1
  Appointment: { participant: [{ status: 'accepted', actor: { display: 'someone' } }] }, // app-1
  Binary: { contentType: 'text/plain' },
  AppointmentResponse: { actor: { display: 'someone' } }, // apr-1
  Bundle: { type: 'collection' }, // a document needs a Composition first (bdl-9, bdl-10, bdl-11)
  CapabilityStatement: { kind: 'capability', fhirVersion: '4.0.1', software: { name: 'x' }, rest: [{ mode: 'server' }] }, // cpb-1, cpb-2, cpb-14
  Consent: { policyRule: { text: 'x' } }, // ppc-1
  EvidenceVariable: { characteristic: [{ definitionCodeableConcept: { text: 'x' } }] },
  ImmunizationRecommendation: { recommendation: [{ forecastStatus: { text: 'x' }, vaccineCode: [{ text: 'x' }] }] }, // imr-1
  EventDefinition: { trigger: [{ type: 'named-event', name: 'x' }] }, // trd-3 (TriggerDefinition's own invariant)
  InsurancePlan: { name: 'x' }, // ipn-1
  Linkage: { item: [{ type: 'source', resource: { display: 'a' } }, { type: 'alternate', resource: { display: 'b' } }] }, // lnk-1
  Organization: { name: 'x' }, // org-1
  // sdf-6 (a differential or a snapshot), sdf-0 (a name usable as an identifier), a type defined-types knows:
  // a profile on Patient asking for a birth date.
  StructureDefinition: {
    url: 'http://example.org/fhir/StructureDefinition/test-patient',
    name: 'TestPatient',
    kind: 'resource',
    abstract: false,
    type: 'Patient',
    baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Patient',
    derivation: 'constraint',
    differential: { element: [{ id: 'Patient.birthDate', path: 'Patient.birthDate', min: 1 }] },
  },
  TerminologyCapabilities: { kind: 'capability', software: { name: 'x' } }, // tcp-2, tcp-3
};

/**
 * A small valid instance of an R4 resource type, built from its StructureDefinition: every required element
 * (min ≥ 1), recursively, with a value of its first type (codes from the required value set). Not meant to be
 * realistic: it is what a conformance tester sends to see that the type is served at all.
 */
export function generatedResource(type: string): Json & { resourceType: string } {
  const definition = structures.get(type);
  if (!definition?.snapshot) throw new Error(`No R4 definition for ${type}`);
  return { resourceType: type, ...requiredChildren(definition.snapshot.element, type), ...structuredClone(INVARIANT_FIELDS[type] ?? {}) } as Json & { resourceType: string };
}

function requiredChildren(elements: ElementDefinition[], path: string): Json {
  const out: Json = {};
  for (const element of elements) {
    if (!isChildOf(element.path, path) || (element.min ?? 0) < 1) continue;
    const name = element.path.slice(path.length + 1);
    const type = element.type?.[0]?.code;
    if (!type) continue;
    const key = name.endsWith('[x]') ? name.slice(0, -3) + type[0]!.toUpperCase() + type.slice(1) : name;
    const value = valueOf(element, type, elements);
    out[key] = element.max === '1' ? value : [value];
  }
  return out;
}

function isChildOf(childPath: string, parentPath: string): boolean {
  return childPath.startsWith(`${parentPath}.`) && !childPath.slice(parentPath.length + 1).includes('.');
}

function valueOf(element: ElementDefinition, type: string, elements: ElementDefinition[]): unknown {
  if (type === 'code') return codeFrom(element.binding?.valueSet) ?? 'x';
  if (type in PRIMITIVES) return PRIMITIVES[type];
  if (type === 'CodeableConcept') {
    const coding = codingFrom(element.binding?.strength === 'required' ? element.binding.valueSet : undefined);
    return coding ? { coding: [coding] } : { text: 'x' };
  }
  if (type === 'Coding') return codingFrom(element.binding?.valueSet) ?? { system: 'http://example.org/codes', code: 'x' };
  if (type in KNOWN_VALUES) return structuredClone(KNOWN_VALUES[type]);
  if (type === 'BackboneElement' || type === 'Element') {
    const children = requiredChildren(elements, element.path);
    return Object.keys(children).length > 0 ? children : { extension: [{ url: 'http://example.org/x', valueString: 'x' }] };
  }
  const definition = structures.get(type);
  if (!definition?.snapshot) throw new Error(`No definition for data type ${type}`);
  const children = requiredChildren(definition.snapshot.element, type);
  return Object.keys(children).length > 0 ? children : { extension: [{ url: 'http://example.org/x', valueString: 'x' }] };
}

const terminology = loadValidationContext().terminology;

function codingFrom(valueSet: string | undefined): { system: string; code: string } | undefined {
  if (!valueSet) return undefined;
  const first = terminology.expandValueSet(valueSet.split('|')[0]!)?.contains?.[0];
  return first?.system && first.code ? { system: first.system, code: first.code } : undefined;
}

function codeFrom(valueSet: string | undefined): string | undefined {
  return codingFrom(valueSet)?.code;
}
