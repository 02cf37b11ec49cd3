import type { Issue } from '../outcome.ts';
import type { TerminologyService } from '../terminology/terminology-service.ts';
import { inValueSet } from './bindings.ts';
import { IDENTIFIER_CHECKS, INS_SYSTEMS } from './french-identifiers.ts';

const IDENTITY_RELIABILITY = 'https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability';
const PDSM_DOCUMENT = 'https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-document-reference';
const PDSM_SIMPLIFIED_PUBLISH = 'https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-simplified-publish';
const NOS = 'https://mos.esante.gouv.fr/NOS';

/**
 * Rules that PDSm states in prose only (constraints `constr-bind-*` have no FHIRPath; their bindings are
 * "preferred"), and the DMP's confidentiality value set (PDSm4DMP DocumentEntry model: JDV_J58). Each says
 * the element must carry a code of the value set the rule names as the default for its metadata.
 */
interface ValueSetRule {
  profile: string;
  key: string;
  path: string[];
  type: 'CodeableConcept' | 'Coding';
  valueSet: string;
  /** Codes of another system accepted as the same concepts. */
  equivalents?: { system: string; codes: string[] };
}

const VALUE_SET_RULES: ValueSetRule[] = [
  { profile: PDSM_DOCUMENT, key: 'constr-bind-type', path: ['type'], type: 'CodeableConcept', valueSet: `${NOS}/JDV_J07-XdsTypeCode-CISIS/FHIR/JDV-J07-XdsTypeCode-CISIS` },
  { profile: PDSM_DOCUMENT, key: 'constr-bind-category', path: ['category'], type: 'CodeableConcept', valueSet: `${NOS}/JDV_J06-XdsClassCode-CISIS/FHIR/JDV-J06-XdsClassCode-CISIS` },
  { profile: PDSM_DOCUMENT, key: 'constr-bind-format', path: ['content', 'format'], type: 'Coding', valueSet: `${NOS}/JDV_J10-XdsFormatCode-CISIS/FHIR/JDV-J10-XdsFormatCode-CISIS` },
  { profile: PDSM_DOCUMENT, key: 'constr-bind-ProducteurDoc', path: ['context', 'facilityType'], type: 'CodeableConcept', valueSet: `${NOS}/JDV_J02-XdsHealthcareFacilityTypeCode-CISIS/FHIR/JDV-J02-XdsHealthcareFacilityTypeCode-CISIS` },
  { profile: PDSM_DOCUMENT, key: 'constr-bind-ProducteurDoc', path: ['context', 'practiceSetting'], type: 'CodeableConcept', valueSet: `${NOS}/JDV_J04-XdsPracticeSettingCode-CISIS/FHIR/JDV-J04-XdsPracticeSettingCode-CISIS` },
  // Simplified Publish states the same type, class and format rules; its facility and practice setting codes are only recommended.
  { profile: PDSM_SIMPLIFIED_PUBLISH, key: 'constr-bind-type', path: ['type'], type: 'CodeableConcept', valueSet: `${NOS}/JDV_J07-XdsTypeCode-CISIS/FHIR/JDV-J07-XdsTypeCode-CISIS` },
  { profile: PDSM_SIMPLIFIED_PUBLISH, key: 'constr-bind-category', path: ['category'], type: 'CodeableConcept', valueSet: `${NOS}/JDV_J06-XdsClassCode-CISIS/FHIR/JDV-J06-XdsClassCode-CISIS` },
  { profile: PDSM_SIMPLIFIED_PUBLISH, key: 'constr-bind-format', path: ['content', 'format'], type: 'Coding', valueSet: `${NOS}/JDV_J10-XdsFormatCode-CISIS/FHIR/JDV-J10-XdsFormatCode-CISIS` },
  // TRE_A08 is the NOS transcription of HL7 v3 Confidentiality; PDSm4DMP's own examples use the HL7 system.
  {
    profile: PDSM_DOCUMENT,
    key: 'dmp-confidentiality',
    path: ['securityLabel'],
    type: 'CodeableConcept',
    valueSet: `${NOS}/JDV_J58-ConfidentialityCode-DMP/FHIR/JDV-J58-ConfidentialityCode-DMP`,
    equivalents: { system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', codes: ['N', 'R', 'V'] },
  },
];

type Json = Record<string, unknown>;

/** French identifier formats and keys, wherever an Identifier appears (contained resources included). */
export function identifierIssues(resource: Json): Issue[] {
  const issues: Issue[] = [];
  // Where the walk is (`.identifier`, `[0]`…); an expression is only written out for an identifier reported.
  const path: string[] = [resource.resourceType as string];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) {
      for (let index = 0; index < value.length; index++) {
        path.push(`[${index}]`);
        walk(value[index]);
        path.pop();
      }
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const object = value as Json;
    if (typeof object.system === 'string' && typeof object.value === 'string') {
      const check = IDENTIFIER_CHECKS.get(object.system);
      const problem = check?.problem(object.value);
      if (problem) {
        const at = `${path.join('')}.value`;
        issues.push({ severity: 'error', code: 'value', expression: [at], diagnostics: `${at}: invalid ${check!.name} identifier (${object.system}): ${problem}` });
      }
    }
    for (const key in object) {
      const child = object[key];
      if (typeof child !== 'object' || child === null || key.startsWith('_')) continue;
      path.push(`.${key}`);
      walk(child);
      path.pop();
    }
  };
  walk(resource);
  return issues;
}

/**
 * A patient whose identity is validated (FR Core identity reliability `VALI`) must carry its INS:
 * the rule of the INS referential (identitovigilance), enforced whatever profile the Patient claims.
 */
export function identityIssues(resource: Json, expression = resource.resourceType as string): Issue[] {
  const issues: Issue[] = [];
  if (resource.resourceType === 'Patient' && isValidatedIdentity(resource)) {
    const identifiers = (resource.identifier as Json[] | undefined) ?? [];
    if (!identifiers.some((identifier) => INS_SYSTEMS.has(identifier.system as string) && identifier.value)) {
      issues.push({
        severity: 'error',
        code: 'business-rule',
        expression: [expression],
        diagnostics: `${expression}: the identity is validated (identityReliability VALI) but the Patient carries no INS identifier (INS-NIR ${[...INS_SYSTEMS][0]} or INS-NIA) [INS referential]`,
      });
    }
  }
  ((resource.contained as Json[] | undefined) ?? []).forEach((contained, index) => {
    issues.push(...identityIssues(contained, `${expression}.contained[${index}]`));
  });
  return issues;
}

function isValidatedIdentity(patient: Json): boolean {
  return ((patient.extension as Json[] | undefined) ?? []).some(
    (extension) =>
      extension.url === IDENTITY_RELIABILITY &&
      ((extension.extension as Json[] | undefined) ?? []).some(
        (part) => part.url === 'identityStatus' && ((part.valueCoding as Json | undefined)?.code === 'VALI' || part.valueCode === 'VALI'),
      ),
  );
}

/** The prose-only value-set rules of the profiles applied to `resource`. */
export function valueSetRuleIssues(resource: Json, profileUrls: readonly string[], terminology: TerminologyService, profileLabel: (url: string) => string): Issue[] {
  const issues: Issue[] = [];
  for (const rule of VALUE_SET_RULES) {
    if (!profileUrls.includes(rule.profile)) continue;
    for (const { value, expression } of occurrences(resource, rule.path, resource.resourceType as string)) {
      if (inValueSet(terminology, value, rule.type, rule.valueSet) !== false || hasEquivalent(value, rule)) continue;
      issues.push({
        severity: 'error',
        code: 'code-invalid',
        expression: [expression],
        diagnostics: `${expression}: no code from ${rule.valueSet.split('/FHIR/')[1] ?? rule.valueSet} (rule ${rule.key} of ${profileLabel(rule.profile)} ${rule.profile})`,
      });
    }
  }
  return issues;
}

function occurrences(object: Json, path: string[], expression: string): { value: unknown; expression: string }[] {
  const [name, ...rest] = path;
  if (name === undefined) return [];
  const child = object[name];
  if (child === undefined) return [];
  const items = Array.isArray(child) ? child.map((value, index) => ({ value, expression: `${expression}.${name}[${index}]` })) : [{ value: child, expression: `${expression}.${name}` }];
  if (rest.length === 0) return items;
  return items.flatMap((item) => (item.value && typeof item.value === 'object' ? occurrences(item.value as Json, rest, item.expression) : []));
}

function hasEquivalent(value: unknown, rule: ValueSetRule): boolean {
  if (!rule.equivalents || value === null || typeof value !== 'object') return false;
  const codings = rule.type === 'Coding' ? [value as Json] : (((value as Json).coding as Json[] | undefined) ?? []);
  return codings.some((coding) => coding.system === rule.equivalents!.system && rule.equivalents!.codes.includes(coding.code as string));
}
