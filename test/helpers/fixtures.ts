/** Plain JSON as a client sends it. */
export type ResourceJson = { resourceType: string; id?: string; [element: string]: unknown };

/** A small valid instance of each served type, enough to exercise every interaction on it. */
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
      return { resourceType, patient, code: { text: 'Pénicilline' } };
    case 'MedicationStatement':
      return { resourceType, status: 'active', medicationCodeableConcept: { text: 'Paracétamol 1 g' }, subject: patient };
    case 'Consent':
      return {
        resourceType,
        status: 'active',
        scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
        patient,
      };
    case 'Practitioner':
      return { resourceType, name: [{ family: 'Durand', prefix: ['Dr'] }] };
    case 'Organization':
      return { resourceType, name: 'Centre hospitalier de Test' };
    default:
      throw new Error(`no fixture for ${resourceType}`);
  }
}
