/**
 * Transaction bundles as a French hospital system sends them, valid against the server's default French
 * profiles (FR Core patient with INS, PDSm document, the project's clinical profiles): the patient found by
 * INS or created (conditional create), then clinical resources that reference it by `urn:uuid:`.
 *
 * Every clinical resource carries the identifier `MARKER_SYSTEM|<marker>`, so a test (or benchmark) can
 * count, after the fact, how many resources of one bundle were stored. Used by test/durability.test.ts,
 * test/concurrent-servers.test.ts and scripts/bench/ingest.ts.
 */
import { createHash } from 'node:crypto';
import { allergy, immunization, insPatient, medicationStatement, pdsmDocument } from './validation-fixtures.ts';
import { nir } from './fixtures.ts';

export const INS_SYSTEM = 'urn:oid:1.2.250.1.213.1.4.8';
export const MARKER_SYSTEM = 'urn:oid:1.2.250.1.999.77.1';
/** The clinical types a bundle holds, in the order they are dealt. */
export const CLINICAL_TYPES = ['Immunization', 'AllergyIntolerance', 'MedicationStatement', 'DocumentReference'] as const;
export type ClinicalType = (typeof CLINICAL_TYPES)[number];

/** A valid NIR for patient number `index` (sex, year, month, département, commune, order all derived from it). */
export function patientNir(index: number): string {
  const sex = 1 + (index % 2);
  const year = String(40 + (index % 60)).padStart(2, '0');
  const month = String(1 + (index % 12)).padStart(2, '0');
  const department = String(10 + (Math.floor(index / 12) % 80)).padStart(2, '0');
  const commune = String(1 + (Math.floor(index / 960) % 990)).padStart(3, '0');
  const order = String(1 + (index % 997)).padStart(3, '0');
  return nir(`${sex}${year}${month}${department}${commune}${order}`);
}

export interface BundleOptions {
  /** Clinical resources after the patient (default 4: one of each type). */
  clinical?: number;
  /** Bytes of PDF carried inline by each DocumentReference, as a contained Binary its attachment points to
   * (PDSm forbids Attachment.data); default 512. */
  pdfBytes?: number;
  /** Per-bundle value put in every clinical resource's identifier (default `b<index>`). */
  marker?: string;
  /** Patient family name (default derived from the index). */
  family?: string;
}

const FAMILIES = ['Martin', 'Lefèvre', 'Dubois', 'Guérin', 'Rousseau', 'Chevalier', 'Moreau', 'Girard'];

/** The clinical type of the `n`-th clinical entry: immunizations dominate, as in a real record. */
const DEAL: ClinicalType[] = ['Immunization', 'AllergyIntolerance', 'MedicationStatement', 'DocumentReference', 'Immunization', 'Immunization', 'MedicationStatement', 'Immunization', 'DocumentReference', 'Immunization'];

/** The clinical type of the `n`-th clinical entry: one of each first, then immunizations dominate, as in a real record. */
export function clinicalType(n: number): ClinicalType {
  return DEAL[n % DEAL.length]!;
}

/** A PDF-looking base64 payload of about `bytes` bytes (deterministic per seed). */
export function pdfBase64(bytes: number, seed: number): string {
  const header = '%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n';
  const body = Buffer.alloc(Math.max(0, bytes - header.length));
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < body.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    body[i] = x >>> 24;
  }
  return Buffer.concat([Buffer.from(header, 'latin1'), body]).toString('base64');
}

/** The `index`-th patient's transaction bundle. Same index, same patient (and same INS). */
export function frenchTransaction(index: number, options: BundleOptions = {}): { resourceType: 'Bundle'; type: 'transaction'; entry: any[] } {
  const clinical = options.clinical ?? 4;
  const marker = options.marker ?? `b${index}`;
  const ins = patientNir(index);
  const patientUrn = `urn:uuid:00000000-0000-4000-8000-${String(index).padStart(12, '0').slice(-12)}`;
  const patient = insPatient();
  patient.identifier[0].value = ins;
  patient.name[0].family = options.family ?? FAMILIES[index % FAMILIES.length];
  patient.gender = index % 2 === 0 ? 'male' : 'female';
  const mark = [{ system: MARKER_SYSTEM, value: marker }];
  const entries: any[] = [
    { fullUrl: patientUrn, resource: patient, request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${INS_SYSTEM}|${ins}` } },
  ];
  const subject = { reference: patientUrn };
  for (let n = 0; n < clinical; n++) {
    const type = clinicalType(n);
    let resource: any;
    switch (type) {
      case 'Immunization':
        resource = { ...immunization(), identifier: mark, patient: subject, lotNumber: `L${index}-${n}`, occurrenceDateTime: `20${String(10 + (n % 15)).padStart(2, '0')}-0${1 + (n % 9)}-1${n % 10}` };
        break;
      case 'AllergyIntolerance':
        resource = { ...allergy(), identifier: mark, patient: subject };
        break;
      case 'MedicationStatement':
        resource = { ...medicationStatement(), identifier: mark, subject };
        break;
      case 'DocumentReference': {
        resource = pdsmDocument();
        resource.identifier = mark;
        resource.subject = subject;
        resource.masterIdentifier = { system: 'urn:ietf:rfc:3986', value: `urn:oid:1.2.250.1.999.1.${index}.${n}` };
        resource.contained[0].identifier[0].value = ins;
        // PDSm forbids inline Attachment.data and requires a url: the PDF travels as a contained Binary.
        const data = pdfBase64(options.pdfBytes ?? 512, index * 1000 + n);
        resource.contained.push({ resourceType: 'Binary', id: 'pdf', contentType: 'application/pdf', data });
        const bytes = Buffer.from(data, 'base64');
        const hash = createHash('sha1').update(bytes).digest('base64');
        resource.content[0].attachment = { ...resource.content[0].attachment, url: '#pdf', size: bytes.length, hash };
        break;
      }
    }
    entries.push({ fullUrl: `urn:uuid:00000000-0000-4000-9${String(n).padStart(3, '0')}-${String(index).padStart(12, '0').slice(-12)}`, resource, request: { method: 'POST', url: type } });
  }
  return { resourceType: 'Bundle', type: 'transaction', entry: entries };
}

/** How many resources of each clinical type `frenchTransaction(…, { clinical })` holds. */
export function clinicalCounts(clinical: number): Record<ClinicalType, number> {
  const counts = Object.fromEntries(CLINICAL_TYPES.map((type) => [type, 0])) as Record<ClinicalType, number>;
  for (let n = 0; n < clinical; n++) counts[clinicalType(n)]++;
  return counts;
}
