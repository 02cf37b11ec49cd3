import type { Encounter, HumanName, Identifier, Patient } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { resourceObject } from '../fhir/resource-text.ts';
import { parseSearch } from '../search/parse.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import { ALL_ACCESS, type ResourceStore } from '../store/resource-store.ts';
import { accessFromToken } from './authorisation.ts';

/** The French national health identifier (INS-NIR) system. */
export const INS_NIR_SYSTEM = 'urn:oid:1.2.250.1.213.1.4.8';

/** Most patients a picker search lists. */
const MAX_CHOICES = 20;

/** A patient as the picker shows it. */
export interface PatientChoice {
  id: string;
  name: string;
  birthDate?: string;
  ins?: string;
}

/**
 * What the authorization server reads of the FHIR store: whether a launch's references exist, and the
 * patients a user may choose for a standalone launch, as that user (the patients' consent applies: a
 * record closed to them is not listed).
 */
export interface PatientDirectory {
  /** Whether `Type/id` exists (gone or unknown: false). */
  exists(reference: string): Promise<boolean>;
  /** The patient (`Patient/123`) whose encounter `Encounter/id` is (its subject), if it exists and names one. */
  encounterPatient(reference: string): Promise<string | undefined>;
  /** Patients `user` may see whose family name starts with `text`, or whose INS is `text` (15 digits). */
  find(text: string, user: string | undefined): Promise<PatientChoice[]>;
  /** The patient `id`, if `user` may see it. */
  describe(id: string, user: string | undefined): Promise<PatientChoice | undefined>;
}

export function storePatientDirectory(store: ResourceStore, registry: SearchParameterRegistry): PatientDirectory {
  // The user's view of patients, as a token with `user/Patient.rs` for that fhirUser would have.
  const asUser = async (user: string | undefined) => store.forAccess(user ? await store.resolveCaller(accessFromToken({ scopes: ['user/Patient.rs'], fhirUser: user, purposeOfUse: [] })) : ALL_ACCESS);
  const read = async (view: ResourceStore, type: string, id: string) => {
    try {
      return resourceObject((await view.read(type, id)).resource);
    } catch (error) {
      if (error instanceof FhirError && error.status < 500) return undefined;
      throw error;
    }
  };
  return {
    async exists(reference) {
      const [type, id] = reference.split('/');
      return (await read(store.forAccess(ALL_ACCESS), type!, id!)) !== undefined;
    },
    async encounterPatient(reference) {
      const encounter = (await read(store.forAccess(ALL_ACCESS), 'Encounter', reference.replace(/^Encounter\//, ''))) as Encounter | undefined;
      const subject = encounter?.subject?.reference;
      // A relative reference, or an absolute one on a FHIR base: its last two segments.
      const match = typeof subject === 'string' ? /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(subject) : null;
      return match ? `Patient/${match[1]}` : undefined;
    },
    async find(text, user) {
      const query = text.trim();
      if (query === '') return [];
      const ins = query.replace(/\s/g, '');
      const criteria: Array<[string, string]> = /^[0-9]{13}[0-9]{2}$|^[12][0-9]{12}$/.test(ins) ? [['identifier', `${INS_NIR_SYSTEM}|${ins}`]] : [['family', query]];
      const view = await asUser(user);
      const search = parseSearch(['Patient'], [...criteria, ['_count', String(MAX_CHOICES)], ['_sort', 'family']], registry, { strict: true, baseUrl: 'http://localhost' });
      const page = await view.search(search, { baseUrl: 'http://localhost', path: 'Patient' });
      return (page.entry ?? []).filter((entry) => entry.resource && (entry.search?.mode ?? 'match') === 'match').map((entry) => choiceOf(resourceObject(entry.resource!) as Patient));
    },
    async describe(id, user) {
      const patient = await read(await asUser(user), 'Patient', id);
      return patient ? choiceOf(patient as Patient) : undefined;
    },
  };
}

function choiceOf(patient: Patient): PatientChoice {
  const ins = patient.identifier?.find((identifier: Identifier) => identifier.system === INS_NIR_SYSTEM)?.value;
  return { id: patient.id!, name: displayName(patient.name), ...(patient.birthDate ? { birthDate: patient.birthDate } : {}), ...(ins ? { ins } : {}) };
}

/** The official name (else the first) as `FAMILY Given Given`. */
function displayName(names: HumanName[] | undefined): string {
  const name = names?.find((candidate) => candidate.use === 'official') ?? names?.[0];
  if (!name) return '(sans nom)';
  if (name.text && !name.family) return name.text;
  return [name.family?.toUpperCase(), ...(name.given ?? [])].filter(Boolean).join(' ');
}
