import { randomUUID } from 'node:crypto';

const FAMILIES = ['Martin', 'Bernard', 'Dubois', 'Thomas', 'Robert', 'Richard', 'Petit', 'Durand', 'Leroy', 'Moreau'];
const GIVEN = [
  ['Jeanne', 'female'],
  ['Marie', 'female'],
  ['Camille', 'female'],
  ['Louise', 'female'],
  ['Lucas', 'male'],
  ['Hugo', 'male'],
  ['Jules', 'male'],
  ['Gabriel', 'male'],
] as const;
const PLACES = [
  { city: 'Lyon', postalCode: '69002', department: '69', commune: '382' },
  { city: 'Paris', postalCode: '75011', department: '75', commune: '111' },
  { city: 'Marseille', postalCode: '13005', department: '13', commune: '205' },
  { city: 'Rennes', postalCode: '35000', department: '35', commune: '238' },
  { city: 'Toulouse', postalCode: '31000', department: '31', commune: '555' },
];

/** OID of the French national health identifier (INS-NIR), as an identifier system. */
export const INS_NIR_SYSTEM = 'urn:oid:1.2.250.1.213.1.4.8';

/** A 15-digit NIR: sex, year, month, birthplace, order number, then the key 97 - (first 13 digits mod 97). */
function nir(sex: 1 | 2, birthDate: string, department: string, commune: string, order: number): string {
  const body = `${sex}${birthDate.slice(2, 4)}${birthDate.slice(5, 7)}${department}${commune}${String(order).padStart(3, '0')}`;
  const key = 97n - (BigInt(body) % 97n);
  return body + String(key).padStart(2, '0');
}

/** The `index`-th patient as a client would POST it: varied, valid R4, French identifiers and address. */
export function frenchPatient(index: number): Record<string, unknown> {
  const family = FAMILIES[index % FAMILIES.length]!;
  const [given, gender] = GIVEN[index % GIVEN.length]!;
  const place = PLACES[index % PLACES.length]!;
  const birthDate = `${1940 + (index % 80)}-${String(1 + (index % 12)).padStart(2, '0')}-${String(1 + (index % 28)).padStart(2, '0')}`;
  return {
    resourceType: 'Patient',
    identifier: [
      {
        use: 'official',
        type: { coding: [{ system: 'http://interopsante.org/fhir/CodeSystem/fr-v2-0203', code: 'INS-NIR' }] },
        system: INS_NIR_SYSTEM,
        value: nir(gender === 'male' ? 1 : 2, birthDate, place.department, place.commune, 1 + (index % 999)),
      },
    ],
    active: true,
    name: [{ use: 'official', family, given: [given] }],
    telecom: [{ system: 'phone', value: `+33 6 ${String(10_000_000 + index).slice(-8).replace(/(\d\d)(?=\d)/g, '$1 ')}`, use: 'mobile' }],
    gender,
    birthDate,
    address: [{ use: 'home', line: [`${1 + (index % 120)} rue de la République`], city: place.city, postalCode: place.postalCode, country: 'FRA' }],
  };
}

/** The same patient as the server would store it (id and meta set), for the raw baselines. */
export function storedFrenchPatient(index: number): { id: string; json: string } {
  const id = randomUUID();
  const { resourceType, ...rest } = frenchPatient(index);
  const meta = { versionId: '1', lastUpdated: new Date().toISOString() };
  return { id, json: JSON.stringify({ resourceType, id, meta, ...rest }) };
}
