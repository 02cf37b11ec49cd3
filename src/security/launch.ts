import { randomBytes } from 'node:crypto';
import type { AuthorizationStore } from '../store/resource-store.ts';

/** The records of EHR launches in the authorization server's store. */
export const LAUNCH = 'Launch';

/** An EHR's launch id is used at once, when the app it opens asks for authorization. */
export const LAUNCH_TTL = 300;

/** The launch context an authorization carries into its tokens. */
export interface LaunchContext {
  /** The patient's id (no `Patient/`), as SMART's `patient` token response parameter. */
  patient?: string;
  encounter?: string;
}

/** An EHR launch: a launch id bound to a patient (and encounter), given to the app it opens as `launch`. */
export async function createLaunch(store: AuthorizationStore, context: LaunchContext, expiresIn = LAUNCH_TTL): Promise<string> {
  const launch = randomBytes(16).toString('base64url');
  await store.saveRecord(LAUNCH, launch, { ...withoutPrefix(context) }, expiresIn);
  return launch;
}

export function withoutPrefix(context: LaunchContext): LaunchContext {
  return {
    ...(context.patient ? { patient: context.patient.replace(/^Patient\//, '') } : {}),
    ...(context.encounter ? { encounter: context.encounter.replace(/^Encounter\//, '') } : {}),
  };
}

