import { randomBytes } from 'node:crypto';
import { FhirError } from '../fhir/outcome.ts';
import type { AuthorizationStore } from '../store/resource-store.ts';

/** The records of EHR launches in the authorization server's store. */
export const LAUNCH = 'Launch';

/** An EHR's launch id is used at once, when the app it opens asks for authorization. */
export const LAUNCH_TTL = 300;

/** The longest an EHR may ask a launch id to live. */
export const MAX_LAUNCH_TTL = 3600;

/** The launch context an authorization carries into its tokens. */
export interface LaunchContext {
  /** The patient's id (no `Patient/`), as SMART's `patient` token response parameter. */
  patient?: string;
  encounter?: string;
  /** The user the EHR launched the app for (`Practitioner/7`): only that user's account may then log in. */
  fhirUser?: string;
}

/**
 * An EHR launch: a launch id bound to a patient (and encounter, and user), given to the app it opens as
 * `launch`; used up by the one authorization it opens.
 */
export async function createLaunch(store: AuthorizationStore, context: LaunchContext, expiresIn = LAUNCH_TTL): Promise<string> {
  const launch = randomBytes(16).toString('base64url');
  await store.saveRecord(LAUNCH, launch, { ...withoutPrefix(context), ...(context.fhirUser ? { fhirUser: context.fhirUser } : {}) }, expiresIn);
  return launch;
}

export function withoutPrefix(context: LaunchContext): Pick<LaunchContext, 'patient' | 'encounter'> {
  return {
    ...(context.patient ? { patient: context.patient.replace(/^Patient\//, '') } : {}),
    ...(context.encounter ? { encounter: context.encounter.replace(/^Encounter\//, '') } : {}),
  };
}

/** What an EHR asks a launch for: its context (references as `Type/id`) and how long the id lives. */
export interface LaunchRequest {
  /** `Patient/123`. */
  patient: string;
  /** `Encounter/9`. */
  encounter?: string;
  /** `Practitioner/7`, `PractitionerRole/3`. */
  fhirUser?: string;
  expiresIn: number;
}

const ID = '[A-Za-z0-9\\-.]{1,64}';
const USER_TYPES = ['Practitioner', 'PractitionerRole', 'Patient', 'RelatedPerson', 'Person'];

/**
 * An EHR's launch request (`POST /auth/launch`'s JSON body, or `npm run launch`'s options) checked: a patient
 * (`Patient/123` or `123`), optionally an encounter and the user, and a lifetime within an hour. 400 otherwise.
 */
export function parseLaunchRequest(body: unknown): LaunchRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw FhirError.badRequest('The body must be a JSON object: { "patient": "Patient/123", "encounter"?: "Encounter/9", "fhirUser"?: "Practitioner/7" }');
  const fields = body as Record<string, unknown>;
  // A patient or an encounter may be named by its id alone; a user, of several types, by type and id.
  const reference = (name: string, types: readonly string[], typeRequired = false): string | undefined => {
    const value = fields[name];
    if (value === undefined) return undefined;
    const match = typeof value === 'string' ? new RegExp(`^(?:(${types.join('|')})/)${typeRequired ? '' : '?'}(${ID})$`).exec(value) : null;
    if (!match) throw FhirError.badRequest(`'${name}' must be a reference like ${types[0]}/123`, [name]);
    return `${match[1] ?? types[0]}/${match[2]}`;
  };
  const patient = reference('patient', ['Patient']);
  if (!patient) throw FhirError.badRequest("'patient' is required: the patient the EHR shows", ['patient']);
  const encounter = reference('encounter', ['Encounter']);
  const fhirUser = reference('fhirUser', USER_TYPES, true);
  const expiresIn = fields.expires_in ?? LAUNCH_TTL;
  if (typeof expiresIn !== 'number' || !Number.isInteger(expiresIn) || expiresIn <= 0 || expiresIn > MAX_LAUNCH_TTL) {
    throw FhirError.badRequest(`'expires_in' must be a number of seconds from 1 to ${MAX_LAUNCH_TTL}`, ['expires_in']);
  }
  for (const name of Object.keys(fields)) {
    if (!['patient', 'encounter', 'fhirUser', 'expires_in'].includes(name)) throw FhirError.badRequest(`Unknown field '${name}'`, [name]);
  }
  return { patient, ...(encounter ? { encounter } : {}), ...(fhirUser ? { fhirUser } : {}), expiresIn };
}
