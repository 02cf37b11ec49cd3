/**
 * French instances for the validation tests: each builder returns a fresh, valid resource that the
 * tests then break one rule at a time. Identifier values have correct keys (computed once, by hand).
 */
const FR_CORE = 'https://hl7.fr/ig/fhir/core';
const NOS = 'https://mos.esante.gouv.fr/NOS';

/** A valid NIR: 2 84 07 63 220 042, key 66. */
export const VALID_NIR = '284076322004266';
/** A Corsican NIR (department 2A counts as 19): key 08. */
export const CORSICAN_NIR = '185022A00412308';
/** RPPS 1000123456 + Luhn key 5. */
export const VALID_RPPS = '10001234565';
export const VALID_FINESS = '350005179';

export const INS_PATIENT_PROFILE = `${FR_CORE}/StructureDefinition/fr-core-patient-ins`;

export function insPatient(): any {
  return {
    resourceType: 'Patient',
    meta: { profile: [INS_PATIENT_PROFILE] },
    extension: [
      {
        url: 'http://hl7.org/fhir/StructureDefinition/patient-birthPlace',
        valueAddress: {
          extension: [{ url: `${FR_CORE}/StructureDefinition/fr-core-address-insee-code`, valueCoding: { system: `${NOS}/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM`, code: '63113' } }],
          city: 'Clermont-Ferrand',
        },
      },
      {
        url: `${FR_CORE}/StructureDefinition/fr-core-identity-reliability`,
        extension: [{ url: 'identityStatus', valueCoding: { system: `${FR_CORE}/CodeSystem/fr-core-cs-v2-0445`, code: 'VALI' } }],
      },
    ],
    identifier: [
      {
        use: 'official',
        type: { coding: [{ system: `${FR_CORE}/CodeSystem/fr-core-cs-v2-0203`, code: 'INS-NIR' }] },
        system: 'urn:oid:1.2.250.1.213.1.4.8',
        value: VALID_NIR,
      },
    ],
    name: [
      {
        extension: [{ url: `${FR_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name`, valueString: 'Marie Anne' }],
        use: 'official',
        family: 'Martin',
        given: ['Marie'],
      },
    ],
    gender: 'female',
    birthDate: '1984-07-12',
  };
}

export const PRACTITIONER_REFERENCE = {
  identifier: { system: 'urn:oid:1.2.250.1.71.4.2.1', value: `8${VALID_RPPS}` },
  display: 'Dr Jeanne Durand',
};

export function practitioner(): any {
  return {
    resourceType: 'Practitioner',
    identifier: [
      { type: { coding: [{ system: `${FR_CORE}/CodeSystem/fr-core-cs-v2-0203`, code: 'IDNPS' }] }, system: 'urn:oid:1.2.250.1.71.4.2.1', value: `8${VALID_RPPS}` },
      { type: { coding: [{ system: `${FR_CORE}/CodeSystem/fr-core-cs-v2-0203`, code: 'RPPS' }] }, system: 'https://rpps.esante.gouv.fr', value: VALID_RPPS },
    ],
    name: [{ family: 'Durand', given: ['Jeanne'] }],
  };
}

export function organization(): any {
  return {
    resourceType: 'Organization',
    identifier: [{ system: 'https://finess.esante.gouv.fr', value: VALID_FINESS }],
    name: 'Centre hospitalier de test',
  };
}

export function pdsmDocument(): any {
  return {
    resourceType: 'DocumentReference',
    contained: [
      {
        resourceType: 'Patient',
        id: 'source-patient',
        identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.8', value: VALID_NIR }],
        name: [{ family: 'Martin', given: ['Marie'] }],
      },
    ],
    masterIdentifier: { system: 'urn:ietf:rfc:3986', value: 'urn:oid:1.2.250.1.999.1.2.3.4' },
    status: 'current',
    type: { coding: [{ system: 'http://loinc.org', code: '11488-4', display: 'CR ou fiche de consultation ou de visite' }] },
    category: [{ coding: [{ system: `${NOS}/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument`, code: '10', display: 'Compte rendu' }] }],
    subject: { reference: 'Patient/p1' },
    date: '2026-01-15T10:00:00+01:00',
    author: [PRACTITIONER_REFERENCE],
    custodian: { identifier: { system: 'https://finess.esante.gouv.fr', value: VALID_FINESS } },
    securityLabel: [{ coding: [{ system: `${NOS}/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality`, code: 'N' }] }],
    content: [
      {
        attachment: {
          contentType: 'application/pdf',
          language: 'fr-FR',
          url: 'Binary/doc1',
          size: 1024,
          hash: 'MmNmNDcxNTRlNzg0ZDJiMGJiMzg3YzQ5YjU2ZmM2NjcxNmI0YzY5Ng==',
          title: 'Compte rendu de consultation',
          creation: '2026-01-15T09:00:00+01:00',
        },
        format: { system: `${NOS}/TRE_A06-FormatCodeComplementaire/FHIR/TRE-A06-FormatCodeComplementaire`, code: 'urn:ans:ci-sis:cse-mde:2023' },
      },
    ],
    context: {
      period: { start: '2026-01-15T09:00:00+01:00' },
      facilityType: { coding: [{ system: `${NOS}/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite`, code: 'SA01' }] },
      practiceSetting: { coding: [{ system: `${NOS}/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice`, code: 'AMBULATOIRE' }] },
      sourcePatientInfo: { reference: '#source-patient' },
    },
  };
}

export function immunization(): any {
  return {
    resourceType: 'Immunization',
    status: 'completed',
    vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '141' }], text: 'Grippe' },
    patient: { reference: 'Patient/p1' },
    occurrenceDateTime: '2025-11-03',
    lotNumber: 'AB1234',
    performer: [{ actor: PRACTITIONER_REFERENCE }],
  };
}

export function allergy(): any {
  return {
    resourceType: 'AllergyIntolerance',
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
    verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', code: 'confirmed' }] },
    code: { coding: [{ system: 'http://snomed.info/sct', code: '91936005', display: 'Allergy to penicillin' }] },
    patient: { reference: 'Patient/p1' },
    recorder: PRACTITIONER_REFERENCE,
  };
}

export function medicationStatement(): any {
  return {
    resourceType: 'MedicationStatement',
    status: 'active',
    medicationCodeableConcept: { text: 'Paracétamol 500 mg' },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: '2026-01-10',
    informationSource: { type: 'Practitioner', ...PRACTITIONER_REFERENCE },
  };
}

export function consent(): any {
  return {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: 'Patient/p1' },
    dateTime: '2026-01-01T12:00:00+01:00',
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    provision: {
      type: 'deny',
      actor: [
        {
          role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP' }] },
          reference: PRACTITIONER_REFERENCE,
        },
      ],
    },
  };
}
