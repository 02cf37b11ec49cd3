import type { FastifyInstance } from 'fastify';
import { FhirError } from '../fhir/outcome.ts';
import { AUTHORIZATION_PATH, EHR_LAUNCH_METADATA } from '../security/authorization-server.ts';
import { createLaunch, parseLaunchRequest } from '../security/launch.ts';
import type { PatientDirectory } from '../security/patient-directory.ts';
import { parseScopes } from '../security/scopes.ts';
import type { TokenVerifier } from '../security/tokens.ts';
import type { AuthorizationStore } from '../store/resource-store.ts';
import { bearerToken, refusal } from './smart-auth.ts';

/** Where an EHR asks for a launch id. */
export const EHR_LAUNCH_PATH = `${AUTHORIZATION_PATH}/launch`;

export interface EhrLaunchOptions {
  verifier: TokenVerifier;
  /** The FHIR base URL: the realm of a 401's challenge. */
  realm: string;
  /** The issuers whose client ids are this server's registrations: the embedded issuer's and /auth's. */
  embeddedIssuers: readonly string[];
  store: AuthorizationStore;
  directory: PatientDirectory;
}

/**
 * SMART EHR launch over HTTP: the EHR, a registered client marked as one (`npm run client -- --ehr`), asks
 * with a token it got as a backend service (a `system/` scope reading Patient) for a launch id bound to the
 * patient it shows (and the encounter, and the user), then opens the app with `?iss=…&launch=<id>`. The id is
 * short-lived and used up by the one authorization it opens (src/security/authorization-grants.ts).
 * Answers `{ "launch": "…", "expires_in": 300 }`; a refusal is an OperationOutcome (401 with a challenge for
 * a missing or refused token, 403 for a token of a client that is not an EHR, 400 for a bad body, 422 for a
 * patient, encounter or user that does not exist, or an encounter of another patient).
 */
export async function ehrLaunchRoutes(app: FastifyInstance, options: EhrLaunchOptions): Promise<void> {
  app.post(EHR_LAUNCH_PATH, { bodyLimit: 4096 }, async (request, reply) => {
    const token = bearerToken(request, options.realm);
    let verified;
    try {
      verified = await options.verifier.verify(token);
    } catch (error) {
      throw refusal(error, request, options.realm);
    }
    const client = verified.clientId && options.embeddedIssuers.includes(verified.issuer) ? await options.store.client(verified.clientId) : undefined;
    if (client?.metadata[EHR_LAUNCH_METADATA] !== true) {
      throw new FhirError(403, [{ code: 'forbidden', diagnostics: 'Only a client of this server registered as an EHR (npm run client -- --ehr) mints launches' }]);
    }
    const readsPatients = parseScopes(verified.scopes).some((scope) => scope.context === 'system' && (scope.resourceType === '*' || scope.resourceType === 'Patient') && scope.permissions.has('r') && scope.restriction === undefined);
    if (!readsPatients) throw new FhirError(403, [{ code: 'forbidden', diagnostics: 'Minting a launch needs a system/ scope reading Patient (system/Patient.rs, system/*.rs)' }]);
    const launch = parseLaunchRequest(request.body ?? null);
    // The EHR names what it shows: it must exist here (a system/ client is not subject to the patients' consent).
    for (const reference of [launch.patient, launch.encounter, launch.fhirUser]) {
      if (reference !== undefined && !(await options.directory.exists(reference))) {
        throw new FhirError(422, [{ code: 'not-found', diagnostics: `${reference} does not exist on this server` }]);
      }
    }
    // The encounter is the launch patient's: an app told of another patient's encounter would read into that record.
    if (launch.encounter !== undefined && (await options.directory.encounterPatient(launch.encounter)) !== launch.patient) {
      throw new FhirError(422, [{ code: 'business-rule', diagnostics: `${launch.encounter} is not an encounter of ${launch.patient}`, expression: ['encounter'] }]);
    }
    const id = await createLaunch(options.store, launch, launch.expiresIn);
    request.log.info({ client: client.clientId }, 'EHR launch minted');
    return reply.header('cache-control', 'no-store').send({ launch: id, expires_in: launch.expiresIn });
  });
}
