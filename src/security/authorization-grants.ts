import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { AuthorizationClient, AuthorizationStore, LocalAccount } from '../store/resource-store.ts';
import { LAUNCH, withoutPrefix, type LaunchContext } from './launch.ts';
import { parseScopes, type ResourceScope } from './scopes.ts';

/**
 * The scopes the provider knows by name (OpenID Connect and SMART's launch ones); resource scopes
 * (`patient/Observation.rs`) are the FHIR server's, granted within what each client was registered with.
 */
export const NAMED_SCOPES = ['openid', 'profile', 'fhirUser', 'offline_access', 'online_access', 'launch', 'launch/patient', 'launch/encounter'];

/** The records of each authorization's launch context, by grant id. */
export const LAUNCH_CONTEXT = 'LaunchContext';

/** The records of what a user approved for a client, by `account client`. */
const APPROVAL = 'Approval';

/** A grant, its launch context and a user's approval last as long as the longest refresh token: 30 days. */
export const GRANT_TTL = 30 * 24 * 3600;

/** What one authorization request asks of the user, within the client's registration. */
export interface RequestedAccess {
  client: AuthorizationClient;
  /** Named scopes asked for and registered (`openid`, `launch/patient`, `offline_access`…). */
  named: string[];
  /** Resource scopes asked for and covered by the registration (`patient/*.rs`). */
  resource: string[];
  /** Named scopes asked for that the client was not registered for: refused without asking. */
  unregistered: string[];
}

/** What an authorization request (its `client_id` and `scope`) asks, within what the client was registered for. */
export async function requestedAccess(store: AuthorizationStore, clientId: string, scope: string): Promise<RequestedAccess | undefined> {
  const client = await store.client(clientId);
  if (!client) return undefined;
  const requested = [...new Set(scope.split(' ').filter(Boolean))];
  const registered = new Set(client.allowedScopes.split(' '));
  return {
    client,
    named: requested.filter((name) => NAMED_SCOPES.includes(name) && registered.has(name)),
    resource: grantableScopes(requested, client),
    unregistered: requested.filter((name) => NAMED_SCOPES.includes(name) && !registered.has(name)),
  };
}

/** The resource scopes among `requested` that the client's registration covers. */
export function grantableScopes(requested: readonly string[], client: AuthorizationClient | undefined): string[] {
  if (!client) return [];
  const allowed = parseScopes(client.allowedScopes.split(' ').filter(Boolean));
  return requested.filter((scope) => {
    const [wanted] = parseScopes([scope]);
    return wanted !== undefined && allowed.some((grant) => covers(grant, wanted));
  });
}

function covers(grant: ResourceScope, wanted: ResourceScope): boolean {
  if (grant.context !== wanted.context) return false;
  if (grant.resourceType !== '*' && grant.resourceType !== wanted.resourceType) return false;
  if (grant.restriction !== undefined && grant.restriction !== wanted.restriction) return false;
  for (const permission of wanted.permissions) if (!grant.permissions.has(permission)) return false;
  return true;
}

/** The scopes `account` approved for `clientId` earlier (each approval adds to them). */
export async function approvedScopes(store: AuthorizationStore, accountId: string, clientId: string): Promise<Set<string>> {
  const record = await store.record(APPROVAL, approvalId(accountId, clientId));
  const scopes = record?.payload.scopes;
  return new Set(Array.isArray(scopes) ? scopes.filter((scope): scope is string => typeof scope === 'string') : []);
}

/** Whether every scope `access` asks was approved already: the user is not asked again. */
export function coveredByApproval(access: RequestedAccess, approved: ReadonlySet<string>): boolean {
  return [...access.named, ...access.resource].every((scope) => approved.has(scope));
}

async function rememberApproval(store: AuthorizationStore, accountId: string, clientId: string, scopes: readonly string[]): Promise<void> {
  const approved = await approvedScopes(store, accountId, clientId);
  for (const scope of scopes) approved.add(scope);
  await store.saveRecord(APPROVAL, approvalId(accountId, clientId), { accountId, clientId, scopes: [...approved] }, GRANT_TTL);
}

function approvalId(accountId: string, clientId: string): string {
  return JSON.stringify([accountId, clientId]);
}

/** The patient a standalone launch asking `launch/patient` gets without a picker: a patient's own record. */
export function ownPatient(account: LocalAccount | undefined): string | undefined {
  if (account?.patient) return account.patient;
  return account?.fhirUser?.startsWith('Patient/') ? account.fhirUser : undefined;
}

/** An EHR launch still unused, or undefined (unknown, expired or used). */
export async function pendingLaunch(store: AuthorizationStore, launch: string): Promise<LaunchContext | undefined> {
  const record = await store.record(LAUNCH, launch);
  return record && !record.consumed ? (record.payload as LaunchContext) : undefined;
}

export interface GrantRequest {
  accountId: string;
  access: RequestedAccess;
  /** The scopes the user approves among those asked (the others are refused); remembered for later requests. */
  approved: ReadonlySet<string>;
  /** The EHR launch id the request came with: used up by this grant. */
  launch?: string;
  /** The patient a standalone launch was given (the account's own, or the one picked). */
  patient?: string;
}

/**
 * The grant of one authorization: the approved scopes among those asked (and registered), the others
 * refused, with its launch context (the EHR launch's, which is used up, or the standalone patient) and the
 * user's fhirUser kept beside it for the tokens it gives.
 */
export async function grantAuthorization(provider: Provider, store: AuthorizationStore, fhirBase: string, request: GrantRequest): Promise<string> {
  const { accountId, access, approved } = request;
  let context: LaunchContext = {};
  if (request.launch !== undefined) {
    const launch = await pendingLaunch(store, request.launch);
    // Single use: of two authorizations racing with one launch id, one consumes it.
    if (!launch || !(await store.consumeRecord(LAUNCH, request.launch))) throw new errors.InvalidRequest('the launch is unknown, used or expired');
    context = launch;
  } else if (request.patient !== undefined && access.named.includes('launch/patient') && approved.has('launch/patient')) {
    context = { patient: request.patient };
  }
  const grant = new provider.Grant({ clientId: access.client.clientId, accountId });
  const named = access.named.filter((scope) => approved.has(scope));
  const resource = access.resource.filter((scope) => approved.has(scope));
  const refusedNamed = [...access.named.filter((scope) => !approved.has(scope)), ...access.unregistered];
  const refusedResource = access.resource.filter((scope) => !approved.has(scope));
  // Refused scopes are recorded as such: the provider then asks no more for them in this authorization.
  if (named.length > 0) grant.addOIDCScope(named.join(' '));
  if (refusedNamed.length > 0) grant.rejectOIDCScope(refusedNamed.join(' '));
  if (resource.length > 0) grant.addResourceScope(fhirBase, resource.join(' '));
  if (refusedResource.length > 0) grant.rejectResourceScope(fhirBase, refusedResource.join(' '));
  const grantId = await grant.save();
  const account = await store.account(accountId);
  const fhirUser = account?.fhirUser;
  await store.saveRecord(LAUNCH_CONTEXT, grantId, { grantId, ...withoutPrefix(context), ...(fhirUser ? { fhirUser } : {}) }, GRANT_TTL);
  await rememberApproval(store, accountId, access.client.clientId, [...named, ...resource]);
  return grantId;
}

export interface SilentRequest {
  accountId: string;
  clientId: string;
  /** The request's scopes (offline_access already left out by the provider: OpenID Connect grants it with prompt=consent only). */
  scope: string;
  /** The request's `launch` parameter, if any. */
  launch?: unknown;
}

/**
 * The grant of an authorization that may show no page (`prompt=none`): made when the account approved
 * every scope asked for this client before and the launch context needs no page either (an EHR launch for
 * this user, or the account's own patient); otherwise undefined, and the provider answers consent_required.
 */
export async function rememberedGrant(provider: Provider, store: AuthorizationStore, fhirBase: string, request: SilentRequest): Promise<string | undefined> {
  const { accountId, clientId } = request;
  const access = await requestedAccess(store, clientId, request.scope);
  if (!access || !coveredByApproval(access, await approvedScopes(store, accountId, clientId))) return undefined;
  const approved = new Set([...access.named, ...access.resource]);
  const account = await store.account(accountId);
  if (request.launch !== undefined) {
    const launch = typeof request.launch === 'string' ? await pendingLaunch(store, request.launch) : undefined;
    if (!launch || (launch.fhirUser !== undefined && launch.fhirUser !== account?.fhirUser)) return undefined;
    return grantAuthorization(provider, store, fhirBase, { accountId, access, approved, launch: request.launch as string });
  }
  if (!access.named.includes('launch/patient')) return grantAuthorization(provider, store, fhirBase, { accountId, access, approved });
  // A professional's patient is picked on a page: not without one.
  const patient = ownPatient(account);
  return patient ? grantAuthorization(provider, store, fhirBase, { accountId, access, approved, patient }) : undefined;
}
