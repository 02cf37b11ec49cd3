import { generatedResource } from './minimal-resources.ts';

/** Plain JSON as a client sends it. */
export type ResourceJson = { resourceType: string; id?: string; [element: string]: unknown };

/** A small valid instance of each served type, enough to exercise every interaction on it: written by hand for the DMP's types, else built from the R4 definition. */
export function minimalResource(resourceType: string): ResourceJson {
  const patient = { reference: 'Patient/example' };
  switch (resourceType) {
    case 'Patient':
      return { resourceType, name: [{ family: 'Martin', given: ['Jeanne'] }], gender: 'female', birthDate: '1984-03-12' };
    case 'DocumentReference':
      return { resourceType, status: 'current', subject: patient, content: [{ attachment: { contentType: 'text/plain', data: 'Q29tcHRlIHJlbmR1' } }] };
    case 'Immunization':
      return { resourceType, status: 'completed', vaccineCode: { text: 'DTP' }, patient, occurrenceDateTime: '2024-05-02', lotNumber: 'A123' };
    case 'AllergyIntolerance':
      return {
        resourceType,
        clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
        patient,
        code: { text: 'Pénicilline' },
      };
    case 'MedicationStatement':
      return { resourceType, status: 'active', medicationCodeableConcept: { text: 'Paracétamol 1 g' }, subject: patient };
    case 'Consent':
      return {
        resourceType,
        status: 'active',
        scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
        patient,
        policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
      };
    case 'Practitioner':
      return { resourceType, name: [{ family: 'Durand', prefix: ['Dr'] }] };
    case 'Organization':
      return { resourceType, name: 'Centre hospitalier de Test' };
    case 'Binary':
      return { resourceType, contentType: 'application/pdf', data: 'JVBERi0xLjQKJcOkw7zDtsOfCg==' };
    default:
      return generatedResource(resourceType);
  }
}

/** A 15-character INS-NIR: the 13 given digits and their key, 97 − (digits mod 97), as the French rules check it. */
export function nir(digits: string): string {
  const key = 97 - Number(BigInt(digits) % 97n);
  return `${digits}${String(key).padStart(2, '0')}`;
}

/** An 11-digit RPPS number: the 10 given digits and their Luhn check digit. */
export function rpps(digits: string): string {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    // Doubling starts from the rightmost given digit, since the check digit will follow it.
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return `${digits}${(10 - (sum % 10)) % 10}`;
}

/** What minimalResource's references name: a server checking references (its default) needs them to exist. */
export const REFERENCE_TARGETS: ResourceJson[] = [{ ...minimalResource('Patient'), id: 'example' }];

/** Writes `targets` (REFERENCE_TARGETS by default, or `Type/id` of minimal resources) on a test server, under their ids. */
export async function createReferenceTargets(
  server: { inject(options: { method: 'PUT'; url: string; payload: string; headers: Record<string, string> }): Promise<{ statusCode: number; body: string }> },
  targets: Array<ResourceJson | string> = REFERENCE_TARGETS,
): Promise<void> {
  for (const given of targets) {
    const target = typeof given === 'string' ? { ...minimalResource(given.split('/')[0]!), id: given.split('/')[1] } : given;
    const res = await server.inject({ method: 'PUT', url: `/fhir/${target.resourceType}/${target.id}`, payload: JSON.stringify(target), headers: { 'content-type': 'application/fhir+json' } });
    if (res.statusCode >= 300) throw new Error(`PUT ${target.resourceType}/${target.id}: ${res.statusCode} ${res.body}`);
  }
}
