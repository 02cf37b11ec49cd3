/**
 * The records of the patient operations benchmarks (issue 19, item 6): patients of RECORD_SIZE resources
 * (ids `bench-po-…`) naming a population's practitioners and organisations (french-population.ts) and a few
 * medications and locations of their own. `patient-operations.ts` measures them over HTTP in the 1M-resource
 * population; `summary-cpu.ts` profiles `$summary` on the same records in a schema of its own.
 */
import { stableId } from './french-population.ts';

export const RECORD_SIZE = 200;
export const PREFIX = 'bench-po';

export type Json = Record<string, unknown>;

/** Patient `n`'s record: the patient and 199 resources naming it, the population's practitioners and organisations, and shared medications and locations. */
export function record(n: number, practitioners: number, organizations: number): Json[] {
  const patient = `${PREFIX}-${n}`;
  const practitioner = (k: number) => ({ reference: `Practitioner/${stableId('Practitioner', (n * 37 + k * 11) % practitioners)}` });
  const organization = (k: number) => ({ reference: `Organization/${stableId('Organization', (n * 13 + k * 7) % organizations)}` });
  const subject = { reference: `Patient/${patient}` };
  const day = (k: number) => new Date(Date.UTC(2015, 0, 1) + k * 17 * 86400_000).toISOString().slice(0, 10);
  const out: Json[] = [
    { resourceType: 'Patient', id: patient, name: [{ family: 'Opération', given: [`Bench${n}`] }], gender: 'female', birthDate: '1961-04-12', generalPractitioner: [practitioner(0)], managingOrganization: organization(0) },
  ];
  const add = (type: string, count: number, make: (k: number, id: string) => Json) => {
    for (let k = 0; k < count; k++) {
      const id = `${patient}-${type.toLowerCase()}-${k}`;
      out.push({ resourceType: type, id, ...make(k, id) });
    }
  };
  add('Encounter', 15, (k) => ({
    status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject,
    period: { start: `${day(k * 8)}T09:00:00Z`, end: `${day(k * 8)}T09:30:00Z` }, serviceProvider: organization(k), location: [{ location: { reference: `Location/${PREFIX}-loc-${k % 3}` } }],
    participant: [{ individual: practitioner(k) }],
  }));
  add('Observation', 90, (k) => ({
    status: 'final', code: { coding: [{ system: 'http://loinc.org', code: ['8867-4', '8480-6', '29463-7', '2339-0'][k % 4] }] }, subject,
    encounter: { reference: `Encounter/${patient}-encounter-${k % 15}` }, effectiveDateTime: `${day(k)}T10:00:00Z`, performer: [practitioner(k)],
    valueQuantity: { value: 60 + (k % 40), unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  }));
  add('Immunization', 25, (k) => ({
    status: 'completed', patient: subject, occurrenceDateTime: day(k * 5), vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '140' }] },
    performer: [{ actor: practitioner(k) }], location: { reference: `Location/${PREFIX}-loc-${k % 3}` },
  }));
  add('DocumentReference', 25, (k) => ({
    status: 'current', subject, author: [practitioner(k)], custodian: organization(k), date: `${day(k * 6)}T12:00:00Z`,
    type: { coding: [{ system: 'http://loinc.org', code: '11488-4' }] }, content: [{ attachment: { contentType: 'application/pdf', url: `https://documents.example/${patient}/${k}` } }],
  }));
  add('Condition', 15, (k) => ({ subject, code: { text: `problème ${k}` }, onsetDateTime: day(k * 9), recorder: practitioner(k) }));
  add('MedicationRequest', 20, (k) => ({
    status: 'active', intent: 'order', subject, medicationReference: { reference: `Medication/${PREFIX}-med-${k % 5}` }, authoredOn: day(k * 7), requester: practitioner(k),
  }));
  add('AllergyIntolerance', RECORD_SIZE - 1 - 15 - 90 - 25 - 25 - 15 - 20, (k) => ({
    patient: subject, code: { text: `allergie ${k}` }, recorder: practitioner(k),
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
  }));
  return out;
}

/** Resources shared by the bench's records, named by them: written before them (referential integrity). */
export function shared(): Json[] {
  return [
    ...Array.from({ length: 5 }, (_, k) => ({ resourceType: 'Medication', id: `${PREFIX}-med-${k}`, code: { text: `médicament ${k}` } })),
    ...Array.from({ length: 3 }, (_, k) => ({ resourceType: 'Location', id: `${PREFIX}-loc-${k}`, name: `Salle ${k}` })),
  ];
}

