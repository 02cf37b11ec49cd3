/**
 * A deterministic, realistic French population for the search benchmark: patients with an INS (NIR) identifier,
 * accented names, birth dates and addresses, each with 10–50 Immunizations, DocumentReferences (LOINC / DMP-like
 * codes), AllergyIntolerances, MedicationStatements and 5–30 Observations (vital signs, blood pressure panels
 * with their components, lab results), pointing at a shared pool of Practitioners (RPPS) and Organizations (FINESS).
 *
 * Everything derives from a seed and an index (`patientBundle(i)` is the same on every call and in every
 * process), so loader processes can each generate their own share without talking to one another.
 */
import { createHash } from 'node:crypto';

export const INS_NIR_SYSTEM = 'urn:oid:1.2.250.1.213.1.4.8';
export const RPPS_SYSTEM = 'urn:oid:1.2.250.1.71.4.2.1';
export const FINESS_SYSTEM = 'urn:oid:1.2.250.1.71.4.2.2';
export const ATC_SYSTEM = 'http://www.whocc.no/atc';
export const LOINC_SYSTEM = 'http://loinc.org';
export const SNOMED_SYSTEM = 'http://snomed.info/sct';
/** DMP class codes (JDV_J06-XdsClassCode-CISIS), the DocumentReference category. */
export const DMP_CLASS_SYSTEM = 'urn:oid:1.2.250.1.213.1.1.4.1';

type Json = Record<string, unknown>;
export interface GeneratedResource extends Json {
  resourceType: string;
  id: string;
}

/** mulberry32: small, fast, good enough for synthetic data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Random = () => number;
const int = (r: Random, min: number, max: number) => min + Math.floor(r() * (max - min + 1));
const pick = <T>(r: Random, items: readonly T[]): T => items[Math.floor(r() * items.length)]!;
function weighted<T extends { weight: number }>(r: Random, items: readonly T[]): T {
  const total = items.reduce((sum, item) => sum + item.weight, 0);
  let x = r() * total;
  for (const item of items) {
    x -= item.weight;
    if (x < 0) return item;
  }
  return items[items.length - 1]!;
}
const pad = (n: number, width = 2) => String(n).padStart(width, '0');
const isoDate = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const isoInstant = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, '+00:00');

/** A stable UUID-shaped id for the `index`-th resource of a kind (the server would assign a random one). */
export function stableId(kind: string, index: number): string {
  const h = createHash('md5').update(`${kind}/${index}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const FAMILIES = [
  'Martin', 'Bernard', 'Dubois', 'Thomas', 'Robert', 'Richard', 'Petit', 'Durand', 'Leroy', 'Moreau', 'Simon', 'Laurent',
  'Lefèvre', 'Michel', 'Garcia', 'David', 'Bertrand', 'Roux', 'Vincent', 'Fournier', 'Morel', 'Girard', 'André', 'Lefebvre',
  'Mercier', 'Dupont', 'Lambert', 'Bonnet', 'François', 'Martinez', 'Legrand', 'Garnier', 'Faure', 'Rousseau', 'Blanc',
  'Guérin', 'Muller', 'Henry', 'Roussel', 'Nicolas', 'Perrin', 'Morin', 'Mathieu', 'Clément', 'Gauthier', 'Dumont', 'Lopez',
  'Fontaine', 'Chevalier', 'Robin', 'Masson', 'Sanchez', 'Gérard', 'Nguyen', 'Boyer', 'Denis', 'Lemaire', 'Duval', 'Joly',
  'Gautier', 'Roger', 'Roche', 'Roy', 'Noël', 'Meyer', 'Lucas', 'Meunier', 'Jean', 'Pérez', 'Marchand', 'Dufour', 'Blanchard',
  'Marie', 'Barbier', 'Brun', 'Dumas', 'Brunet', 'Schmitt', 'Leroux', 'Colin', 'Fernandez', 'Pierre', 'Renard', 'Arnaud',
  'Rolland', 'Caron', 'Aubert', 'Giraud', 'Leclerc', 'Vidal', 'Bourgeois', 'Renaud', 'Lemoine', 'Picard', 'Gaillard',
  'Philippe', 'Leclercq', 'Lacroix', 'Fabre', 'Dupuis', 'Olivier', 'Rodriguez', 'Da Silva', 'Hubert', 'Louis', 'Charles',
  'Guillot', 'Rivière', 'Le Gall', 'Guillaume', 'Adam', 'Rey', 'Moulin', 'Gonzalez', 'Berger', 'Lecomte', 'Ménard', 'Fleury',
  'Deschamps', 'Carpentier', 'Julien', 'Benoît', 'Paris', 'Maillard', 'Marchal', 'Aubry', 'Vasseur', 'Le Roux', 'Renault',
  'Jacquet', 'Collet', 'Prévost', 'Poirier', 'Charpentier', 'Royer', 'Huet', 'Baron', 'Dupuy', 'Pons', 'Paul', 'Laine',
  'Carré', 'Bréton', 'Rémy', 'Schneider', 'Perrot', 'Guyot', 'Barré', 'Marty', 'Cousin', 'Lévêque', 'Hamon', 'Étienne',
  'Lemaître', 'Bénard', 'Maréchal', 'Barthélemy', 'Hoarau', 'Payet', 'Grondin', 'Le Goff', 'Pelletier', 'Chauvin', 'Gillet',
];
/**
 * The most common surnames, shared by COMMON_FAMILY_SHARE of patients (in France the 20 commonest cover a
 * few percent; here more, so that a surname alone selects thousands at 100,000 patients): a search by
 * surname and birth date must then start from the date, as a peer's does.
 */
export const COMMON_FAMILIES = FAMILIES.slice(0, 20);
const OTHER_FAMILIES = FAMILIES.slice(20);
export const COMMON_FAMILY_SHARE = 0.3;

/** A patient's surname, from one draw (as `pick` makes): the rest of the patient is drawn as before. */
function familyName(r: Random): string {
  const x = r();
  return x < COMMON_FAMILY_SHARE
    ? COMMON_FAMILIES[Math.floor((x / COMMON_FAMILY_SHARE) * COMMON_FAMILIES.length)]!
    : OTHER_FAMILIES[Math.floor(((x - COMMON_FAMILY_SHARE) / (1 - COMMON_FAMILY_SHARE)) * OTHER_FAMILIES.length)]!;
}
const FEMALE = ['Marie', 'Jeanne', 'Françoise', 'Monique', 'Catherine', 'Nathalie', 'Isabelle', 'Sylvie', 'Chloé', 'Léa', 'Émilie', 'Inès', 'Zoé', 'Anaïs', 'Hélène', 'Cécile', 'Agnès', 'Geneviève', 'Thérèse', 'Margaux', 'Élodie', 'Maëlle', 'Noémie', 'Joséphine'];
const MALE = ['Jean', 'Pierre', 'Michel', 'André', 'Philippe', 'René', 'Louis', 'Alain', 'Jacques', 'Bernard', 'François', 'Jérôme', 'Frédéric', 'Stéphane', 'Sébastien', 'Clément', 'Théo', 'Noé', 'Raphaël', 'Maël', 'Loïc', 'Gaëtan', 'Hervé', 'Benoît'];
const STREETS = ['rue de la République', 'avenue Jean-Jaurès', 'boulevard Gambetta', 'rue Victor-Hugo', 'place de l’Église', 'chemin des Écoliers', 'rue du Général-de-Gaulle', 'allée des Châtaigniers', 'rue Émile-Zola', 'impasse des Tilleuls', 'quai Saint-Étienne', 'route de Besançon'];
/** City, postal code, département, INSEE commune number (its last three digits). */
const PLACES: Array<[city: string, postalCode: string, department: string, commune: number]> = [
  ['Paris', '75011', '75', 111], ['Lyon', '69003', '69', 383], ['Marseille', '13005', '13', 205], ['Toulouse', '31000', '31', 555],
  ['Nice', '06000', '06', 88], ['Nantes', '44000', '44', 109], ['Montpellier', '34000', '34', 172], ['Strasbourg', '67000', '67', 482],
  ['Bordeaux', '33000', '33', 63], ['Lille', '59000', '59', 350], ['Rennes', '35000', '35', 238], ['Reims', '51100', '51', 454],
  ['Saint-Étienne', '42000', '42', 218], ['Le Havre', '76600', '76', 351], ['Toulon', '83000', '83', 137], ['Grenoble', '38000', '38', 185],
  ['Dijon', '21000', '21', 231], ['Angers', '49000', '49', 7], ['Nîmes', '30000', '30', 189], ['Villeurbanne', '69100', '69', 266],
  ['Clermont-Ferrand', '63000', '63', 113], ['Le Mans', '72000', '72', 181], ['Aix-en-Provence', '13100', '13', 1], ['Brest', '29200', '29', 19],
  ['Tours', '37000', '37', 261], ['Amiens', '80000', '80', 21], ['Limoges', '87000', '87', 85], ['Besançon', '25000', '25', 56],
  ['Orléans', '45000', '45', 234], ['Rouen', '76000', '76', 540], ['Mulhouse', '68100', '68', 224], ['Caen', '14000', '14', 118],
  ['Saint-Denis', '97400', '97', 411], ['Pointe-à-Pitre', '97110', '97', 120], ['Ajaccio', '20000', '2A', 4], ['Évry', '91000', '91', 228],
];

/** Vaccines by ATC code; weights roughly follow how often each is given (rare ones make selective searches). */
export const VACCINES = [
  { code: 'J07BB02', display: 'Vaccin grippal inactivé, antigène de surface', weight: 30 },
  { code: 'J07BN01', display: 'Vaccin COVID-19 à ARN messager', weight: 18 },
  { code: 'J07CA09', display: 'Vaccin diphtérie-Haemophilus-coqueluche-poliomyélite-tétanos-hépatite B (hexavalent)', weight: 10 },
  { code: 'J07CA02', display: 'Vaccin diphtérie-coqueluche-poliomyélite-tétanos', weight: 9 },
  { code: 'J07BD52', display: 'Vaccin rougeole-oreillons-rubéole (ROR)', weight: 7 },
  { code: 'J07AL02', display: 'Vaccin pneumococcique conjugué', weight: 7 },
  { code: 'J07BC01', display: 'Vaccin hépatite B', weight: 5 },
  { code: 'J07AH08', display: 'Vaccin méningococcique conjugué ACWY', weight: 4 },
  { code: 'J07BM03', display: 'Vaccin papillomavirus humain 9-valent', weight: 3 },
  { code: 'J07AM51', display: 'Vaccin tétanos associé à l’anatoxine diphtérique', weight: 3 },
  { code: 'J07BK03', display: 'Vaccin zona recombinant', weight: 1.5 },
  { code: 'J07BC02', display: 'Vaccin hépatite A', weight: 1.5 },
  { code: 'J07AP03', display: 'Vaccin typhoïdique polysaccharidique', weight: 0.5 },
  { code: 'J07BL01', display: 'Vaccin fièvre jaune vivant atténué', weight: 0.3 },
  { code: 'J07BG01', display: 'Vaccin rabique inactivé', weight: 0.1 },
  { code: 'J07BA02', display: 'Vaccin encéphalite japonaise inactivé', weight: 0.05 },
] as const;

/** DMP document types (LOINC) and their DMP class (category). */
export const DOCUMENT_TYPES = [
  { code: '11488-4', display: 'Compte rendu de consultation', classCode: '10', classDisplay: 'Compte rendu', weight: 30 },
  { code: '11502-2', display: 'CR d’examens biologiques', classCode: '10', classDisplay: 'Compte rendu', weight: 25 },
  { code: '18748-4', display: 'CR d’imagerie médicale', classCode: '10', classDisplay: 'Compte rendu', weight: 12 },
  { code: '57833-6', display: 'Prescription de médicaments', classCode: '13', classDisplay: 'Prescription', weight: 12 },
  { code: '34133-9', display: 'Synthèse d’épisode de soins', classCode: '11', classDisplay: 'Synthèse', weight: 6 },
  { code: '11490-0', display: 'Lettre de liaison à la sortie d’un établissement de soins', classCode: '11', classDisplay: 'Synthèse', weight: 6 },
  { code: '60591-5', display: 'Synthèse médicale', classCode: '11', classDisplay: 'Synthèse', weight: 4 },
  { code: '11526-1', display: 'CR d’anatomie et de cytologie pathologiques', classCode: '10', classDisplay: 'Compte rendu', weight: 2 },
  { code: '11369-6', display: 'Historique des vaccinations', classCode: '11', classDisplay: 'Synthèse', weight: 2 },
  { code: '15508-5', display: 'CR d’accouchement', classCode: '10', classDisplay: 'Compte rendu', weight: 1 },
] as const;

const ALLERGENS = [
  { code: '764146007', display: 'Pénicilline', category: 'medication' },
  { code: '387458008', display: 'Acide acétylsalicylique', category: 'medication' },
  { code: '256349002', display: 'Arachide', category: 'food' },
  { code: '102263004', display: 'Œufs', category: 'food' },
  { code: '111088007', display: 'Latex', category: 'environment' },
  { code: '256259004', display: 'Pollen', category: 'environment' },
  { code: '227493005', display: 'Noix de cajou', category: 'food' },
  { code: '372687004', display: 'Amoxicilline', category: 'medication' },
] as const;
const REACTIONS = [['271807003', 'Éruption cutanée'], ['39579001', 'Anaphylaxie'], ['267036007', 'Dyspnée'], ['418363000', 'Prurit']] as const;

const MEDICATIONS = [
  ['C09AA05', 'Ramipril', '1 comprimé de 5 mg le matin'], ['A10BA02', 'Metformine', '1 comprimé de 850 mg matin et soir'],
  ['N02BE01', 'Paracétamol', '1 g jusqu’à 3 fois par jour si douleur'], ['C10AA05', 'Atorvastatine', '1 comprimé de 20 mg le soir'],
  ['B01AC06', 'Acide acétylsalicylique', '75 mg par jour'], ['R03AC02', 'Salbutamol', '2 bouffées si gêne respiratoire'],
  ['H03AA01', 'Lévothyroxine sodique', '75 µg à jeun le matin'], ['N06AB04', 'Citalopram', '20 mg par jour'],
  ['C07AB07', 'Bisoprolol', '2,5 mg par jour'], ['A02BC01', 'Oméprazole', '20 mg avant le petit-déjeuner'],
  ['C08CA01', 'Amlodipine', '5 mg par jour'], ['N05BA12', 'Alprazolam', '0,25 mg au coucher'],
] as const;

const SPECIALTIES = [['SM26', 'Qualifié en Médecine Générale'], ['SM54', 'Pédiatrie'], ['SM40', 'Médecine interne'], ['SM04', 'Cardiologie'], ['SM15', 'Gynécologie-obstétrique'], ['SM44', 'Radiodiagnostic']] as const;
const ORG_KINDS = ['Centre hospitalier', 'Clinique', 'Centre de santé', 'Laboratoire de biologie médicale', 'Cabinet de radiologie', 'Maison de santé pluriprofessionnelle'];

const YEAR_MS = 365.25 * 86400_000;
const NOW = Date.UTC(2024, 11, 31);

/** A 15-digit NIR: sex, year, month, département, commune, order, then the key 97 − (first 13 digits mod 97). */
export function nir(sex: 1 | 2, birthDate: string, department: string, commune: number, order: number): string {
  const dep = department === '2A' ? '19' : department === '2B' ? '18' : department; // Corsica: key computed on 19/18
  const written = `${sex}${birthDate.slice(2, 4)}${birthDate.slice(5, 7)}${department}${pad(commune, 3)}${pad(order, 3)}`;
  const numeric = `${sex}${birthDate.slice(2, 4)}${birthDate.slice(5, 7)}${dep}${pad(commune, 3)}${pad(order, 3)}`;
  return written + pad(Number(97n - (BigInt(numeric) % 97n)));
}

export interface PopulationPlan {
  practitioners: number;
  organizations: number;
  patients: number;
  /** Resources of the last patient's bundle that are kept (the total stops exactly at the target). */
  lastPatientKeeps: number;
  total: number;
}

const SEED = 0x0d055e;
const patientRandom = (index: number) => rng(SEED ^ Math.imul(index + 1, 0x9e3779b1));
/**
 * Observations draw from a generator of their own, so that adding them left every other resource of the
 * population as it was (the same draws in the same order).
 */
const observationRandom = (index: number) => rng((SEED + 0x0b5) ^ Math.imul(index + 1, 0x85ebca6b));
const observationCount = (r: Random) => int(r, 5, 30);

const UCUM_SYSTEM = 'http://unitsofmeasure.org';
const OBSERVATION_CATEGORY_SYSTEM = 'http://terminology.hl7.org/CodeSystem/observation-category';
/** Observation kinds (LOINC), with the range of their value; a blood pressure panel carries two components. */
export const OBSERVATION_KINDS = [
  { code: '29463-7', display: 'Poids corporel', category: 'vital-signs', unit: 'kg', low: 3, high: 120, weight: 5 },
  { code: '8302-2', display: 'Taille', category: 'vital-signs', unit: 'cm', low: 50, high: 195, weight: 2 },
  { code: '8867-4', display: 'Fréquence cardiaque', category: 'vital-signs', unit: '/min', low: 50, high: 120, weight: 3 },
  { code: '85354-6', display: 'Pression artérielle', category: 'vital-signs', unit: 'mm[Hg]', low: 0, high: 0, weight: 5 },
  { code: '2339-0', display: 'Glycémie', category: 'laboratory', unit: 'mg/dL', low: 60, high: 250, weight: 2 },
  { code: '4548-4', display: 'Hémoglobine glyquée (HbA1c)', category: 'laboratory', unit: '%', low: 4, high: 11, weight: 1 },
  { code: '2160-0', display: 'Créatinine', category: 'laboratory', unit: 'mg/dL', low: 0.5, high: 2.5, weight: 1 },
] as const;

/** How many resources the `index`-th patient's bundle holds (patient included), without generating it. */
export function bundleSize(index: number): number {
  const r = patientRandom(index);
  r(); // the draws below are the first ones patientBundle makes, in the same order
  const immunizations = int(r, 10, 50);
  const documents = int(r, 2, 15);
  const allergies = int(r, 0, 3);
  const medications = int(r, 0, 6);
  return 1 + immunizations + documents + allergies + medications + observationCount(observationRandom(index));
}

/** Splits `total` resources into practitioners (0.3 %), organizations (0.1 %) and patient bundles. */
export function planPopulation(total: number): PopulationPlan {
  const practitioners = Math.max(20, Math.round(total * 0.003));
  const organizations = Math.max(10, Math.round(total * 0.001));
  let remaining = total - practitioners - organizations;
  let patients = 0;
  let lastPatientKeeps = 0;
  while (remaining > 0) {
    const size = bundleSize(patients);
    lastPatientKeeps = Math.min(size, remaining);
    remaining -= size;
    patients++;
  }
  return { practitioners, organizations, patients, lastPatientKeeps, total };
}

export function organization(index: number): GeneratedResource {
  const r = rng(SEED + 7 * index + 1);
  const [city, postalCode, department] = pick(r, PLACES);
  return {
    resourceType: 'Organization',
    id: stableId('Organization', index),
    identifier: [{ system: FINESS_SYSTEM, value: `${department.replace(/\D/g, '0')}0${pad(100000 + index, 6)}` }],
    active: true,
    type: [{ coding: [{ system: 'http://interopsante.org/fhir/CodeSystem/fr-organization-type', code: 'GEOGRAPHICAL-ENTITY' }] }],
    name: `${pick(r, ORG_KINDS)} de ${city}${index >= PLACES.length ? ` ${index}` : ''}`,
    telecom: [{ system: 'phone', value: `+33 ${int(r, 1, 5)} ${pad(int(r, 10, 99))} ${pad(int(r, 10, 99))} ${pad(int(r, 10, 99))} ${pad(int(r, 10, 99))}` }],
    address: [{ line: [`${int(r, 1, 200)} ${pick(r, STREETS)}`], city, postalCode, country: 'FRA' }],
  };
}

export function practitioner(index: number, organizations: number): GeneratedResource {
  const r = rng(SEED + 13 * index + 5);
  const female = r() < 0.55;
  const [code, display] = pick(r, SPECIALTIES);
  const rpps = `8${pad(1000000000 + index, 10)}`;
  return {
    resourceType: 'Practitioner',
    id: stableId('Practitioner', index),
    identifier: [
      { use: 'official', type: { coding: [{ system: 'http://interopsante.org/fhir/CodeSystem/fr-v2-0203', code: 'IDNPS' }] }, system: RPPS_SYSTEM, value: rpps },
    ],
    active: true,
    name: [{ use: 'official', prefix: ['Dr'], family: pick(r, FAMILIES), given: [pick(r, female ? FEMALE : MALE)] }],
    telecom: [{ system: 'email', value: `praticien.${index}@mssante.example.fr` }],
    gender: female ? 'female' : 'male',
    qualification: [
      { code: { coding: [{ system: 'https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale', code, display }] }, issuer: { reference: `Organization/${stableId('Organization', index % organizations)}` } },
    ],
  };
}

/**
 * The `index`-th patient and the resources about them, patient first. `practitioners`/`organizations` are the
 * sizes of the shared pools its references point into.
 */
export function patientBundle(index: number, practitioners: number, organizations: number): GeneratedResource[] {
  const r = patientRandom(index);
  const female = r() < 0.52;
  const immunizations = int(r, 10, 50);
  const documents = int(r, 2, 15);
  const allergies = int(r, 0, 3);
  const medications = int(r, 0, 6);

  const patientId = stableId('Patient', index);
  const patientRef = { reference: `Patient/${patientId}` };
  const practitionerRef = () => ({ reference: `Practitioner/${stableId('Practitioner', int(r, 0, practitioners - 1))}` });
  const organizationRef = () => ({ reference: `Organization/${stableId('Organization', int(r, 0, organizations - 1))}` });
  // Ages spread over 0–95 years (a little more weight on adults).
  const birthMs = NOW - (r() < 0.2 ? r() * 18 : 18 + r() * 77) * YEAR_MS;
  const birthDate = isoDate(birthMs);
  const [city, postalCode, department] = pick(r, PLACES);
  const family = familyName(r);
  const given = [pick(r, female ? FEMALE : MALE), ...(r() < 0.3 ? [pick(r, female ? FEMALE : MALE)] : [])];
  // The commune and order number make NIRs unique for the first ~990,000 patients.
  const nirValue = nir(female ? 2 : 1, birthDate, department, 1 + (Math.floor(index / 999) % 990), 1 + (index % 999));

  const patient: GeneratedResource = {
    resourceType: 'Patient',
    id: patientId,
    identifier: [
      { use: 'official', type: { coding: [{ system: 'http://interopsante.org/fhir/CodeSystem/fr-v2-0203', code: 'INS-NIR' }] }, system: INS_NIR_SYSTEM, value: nirValue },
    ],
    active: true,
    name: [
      { use: 'official', family, given },
      ...(female && r() < 0.3 ? [{ use: 'maiden', family: familyName(r), given }] : []),
    ],
    telecom: [{ system: 'phone', value: `+33 6 ${pad(int(r, 10, 99))} ${pad(int(r, 10, 99))} ${pad(int(r, 10, 99))} ${pad(int(r, 10, 99))}`, use: 'mobile' }],
    gender: female ? 'female' : 'male',
    birthDate,
    address: [{ use: 'home', line: [`${int(r, 1, 150)} ${pick(r, STREETS)}`], city, postalCode, country: 'FRA' }],
    generalPractitioner: [practitionerRef()],
    managingOrganization: organizationRef(),
  };
  const bundle: GeneratedResource[] = [patient];
  // Clinical events happen between birth (or 2000, when the records start) and now.
  const since = Math.max(birthMs, Date.UTC(2000, 0, 1));
  const when = () => since + r() * (NOW - since);

  for (let n = 0; n < immunizations; n++) {
    const vaccine = weighted(r, VACCINES);
    const at = when();
    bundle.push({
      resourceType: 'Immunization',
      id: stableId(`Immunization/${index}`, n),
      status: r() < 0.98 ? 'completed' : 'not-done',
      vaccineCode: { coding: [{ system: ATC_SYSTEM, code: vaccine.code, display: vaccine.display }], text: vaccine.display },
      patient: patientRef,
      occurrenceDateTime: isoInstant(at),
      recorded: isoInstant(at + r() * 7 * 86400_000),
      primarySource: r() < 0.9,
      lotNumber: `${String.fromCharCode(65 + int(r, 0, 25))}${String.fromCharCode(65 + int(r, 0, 25))}${int(r, 1000, 9999)}${String.fromCharCode(65 + int(r, 0, 25))}`,
      expirationDate: isoDate(at + int(r, 60, 720) * 86400_000),
      site: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActSite', code: r() < 0.5 ? 'LA' : 'RA', display: r() < 0.5 ? 'Bras gauche' : 'Bras droit' }] },
      route: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration', code: 'IM', display: 'Injection intramusculaire' }] },
      performer: [{ function: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0443', code: 'AP', display: 'Administering Provider' }] }, actor: practitionerRef() }],
      protocolApplied: [{ doseNumberPositiveInt: int(r, 1, 3) }],
    });
  }
  for (let n = 0; n < documents; n++) {
    const type = weighted(r, DOCUMENT_TYPES);
    const start = when();
    const end = start + r() * 5 * 86400_000;
    const id = stableId(`DocumentReference/${index}`, n);
    bundle.push({
      resourceType: 'DocumentReference',
      id,
      masterIdentifier: { system: 'urn:ietf:rfc:3986', value: `urn:oid:1.2.250.1.999.${index}.${n}` },
      status: 'current',
      docStatus: 'final',
      type: { coding: [{ system: LOINC_SYSTEM, code: type.code, display: type.display }] },
      category: [{ coding: [{ system: DMP_CLASS_SYSTEM, code: type.classCode, display: type.classDisplay }] }],
      subject: patientRef,
      date: isoInstant(end + r() * 2 * 86400_000),
      author: [practitionerRef()],
      custodian: organizationRef(),
      securityLabel: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: r() < 0.9 ? 'N' : 'R' }] }],
      content: [{ attachment: { contentType: 'application/pdf', language: 'fr-FR', url: `Binary/${id}`, title: type.display, creation: isoInstant(end) }, format: { system: 'urn:oid:1.2.250.1.213.1.1.4.2.282', code: 'urn:ihe:iti:xds:2017:mimeTypeSufficient' } }],
      context: { period: { start: isoInstant(start), end: isoInstant(end) }, facilityType: { coding: [{ system: 'urn:oid:1.2.250.1.213.1.1.4.9', code: 'SA01', display: 'Etablissement public de santé' }] } },
    });
  }
  for (let n = 0; n < allergies; n++) {
    const allergen = pick(r, ALLERGENS);
    const reaction = pick(r, REACTIONS);
    const at = when();
    bundle.push({
      resourceType: 'AllergyIntolerance',
      id: stableId(`AllergyIntolerance/${index}`, n),
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: r() < 0.85 ? 'active' : 'resolved' }] },
      verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', code: r() < 0.7 ? 'confirmed' : 'unconfirmed' }] },
      type: 'allergy',
      category: [allergen.category],
      criticality: pick(r, ['low', 'high', 'unable-to-assess']),
      code: { coding: [{ system: SNOMED_SYSTEM, code: allergen.code, display: allergen.display }], text: allergen.display },
      patient: patientRef,
      recordedDate: isoInstant(at),
      recorder: practitionerRef(),
      reaction: [{ manifestation: [{ coding: [{ system: SNOMED_SYSTEM, code: reaction[0], display: reaction[1] }] }], severity: pick(r, ['mild', 'moderate', 'severe']) }],
    });
  }
  for (let n = 0; n < medications; n++) {
    const [code, display, dosage] = pick(r, MEDICATIONS);
    const start = when();
    const ongoing = r() < 0.5;
    bundle.push({
      resourceType: 'MedicationStatement',
      id: stableId(`MedicationStatement/${index}`, n),
      status: ongoing ? 'active' : 'completed',
      medicationCodeableConcept: { coding: [{ system: ATC_SYSTEM, code, display }], text: display },
      subject: patientRef,
      effectivePeriod: ongoing ? { start: isoDate(start) } : { start: isoDate(start), end: isoDate(start + int(r, 5, 400) * 86400_000) },
      dateAsserted: isoInstant(start + r() * 30 * 86400_000),
      informationSource: practitionerRef(),
      dosage: [{ text: dosage }],
    });
  }
  bundle.push(...observations(index, patientRef, since, practitioners));
  return bundle;
}

const quantity = (value: number, unit: string) => ({ value: Math.round(value * 10) / 10, unit, system: UCUM_SYSTEM, code: unit });

function observations(index: number, subject: { reference: string }, since: number, practitioners: number): GeneratedResource[] {
  const r = observationRandom(index);
  const count = observationCount(r);
  const out: GeneratedResource[] = [];
  for (let n = 0; n < count; n++) {
    const kind = weighted(r, OBSERVATION_KINDS);
    const at = since + r() * (NOW - since);
    const loinc = (code: string, display: string) => ({ coding: [{ system: LOINC_SYSTEM, code, display }], text: display });
    const systolic = int(r, 95, 175);
    out.push({
      resourceType: 'Observation',
      id: stableId(`Observation/${index}`, n),
      status: 'final',
      category: [{ coding: [{ system: OBSERVATION_CATEGORY_SYSTEM, code: kind.category }] }],
      code: loinc(kind.code, kind.display),
      subject,
      effectiveDateTime: isoInstant(at),
      issued: isoInstant(at + r() * 2 * 86400_000),
      performer: [{ reference: `Practitioner/${stableId('Practitioner', int(r, 0, practitioners - 1))}` }],
      ...(kind.code === '85354-6'
        ? {
            component: [
              { code: loinc('8480-6', 'Pression artérielle systolique'), valueQuantity: quantity(systolic, 'mm[Hg]') },
              { code: loinc('8462-4', 'Pression artérielle diastolique'), valueQuantity: quantity(systolic - int(r, 30, 60), 'mm[Hg]') },
            ],
          }
        : { valueQuantity: quantity(kind.low + r() * (kind.high - kind.low), kind.unit) }),
    });
  }
  return out;
}
