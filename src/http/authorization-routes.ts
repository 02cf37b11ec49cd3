import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type Provider from 'oidc-provider';
import { escapeXml } from '../fhir/xml-text.ts';
import { approvedScopes, coveredByApproval, grantAuthorization, ownPatient, pendingLaunch, requestedAccess, type RequestedAccess } from '../security/authorization-grants.ts';
import { AUTHORIZATION_PATH, INTERACTION_PATH, INTERACTION_TTL, page } from '../security/authorization-server.ts';
import { verifyPassword } from '../security/passwords.ts';
import type { PatientDirectory } from '../security/patient-directory.ts';
import type { AuthorizationStore, LocalAccount } from '../store/resource-store.ts';
import { approvalForm, isOptionalScope, loginForm, patientPicker } from './authorization-pages.ts';
import { SECURITY_HEADERS } from './security-headers.ts';

export interface AuthorizationRoutesOptions {
  provider: Provider;
  store: AuthorizationStore;
  /** The FHIR base URL: the resource the grants are for. */
  fhirBase: string;
  /** The FHIR store's patients, for the patient picker; without it a standalone launch/patient needs an account's own patient. */
  directory?: PatientDirectory;
}

/**
 * The login page's policy: nothing loaded, no script, no style, not framed; its form posts to this origin
 * (no `form-action`: after it, the browser is redirected to the app, whose origin it would otherwise refuse).
 */
const LOGIN_PAGE_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/** What the provider's own answers may do in a browser. */
const PROVIDER_POLICY = "default-src 'none'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Longest username or password read from the login form. */
const MAX_CREDENTIAL_LENGTH = 256;

/**
 * The embedded authorization server on the FHIR server's origin: oidc-provider (a Koa application) answers
 * every request under /auth but the login page, which is ours. Its requests are handed over raw, before
 * Fastify reads their bodies (the provider reads its own).
 */
export async function authorizationRoutes(app: FastifyInstance, { provider, store, fhirBase, directory }: AuthorizationRoutesOptions): Promise<void> {
  const callback = provider.callback();
  const handOver = async (request: { raw: FastifyReply['request']['raw'] }, reply: FastifyReply) => {
    reply.hijack();
    const raw = request.raw as typeof request.raw & { originalUrl?: string };
    // The provider routes on the path below its mount point and finds the mount point in originalUrl.
    raw.originalUrl = raw.url;
    raw.url = raw.url!.slice(AUTHORIZATION_PATH.length) || '/';
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) reply.raw.setHeader(name, value);
    // The provider's pages (errors, form_post) load nothing; form_post adds its inline script's hash to script-src.
    reply.raw.setHeader('content-security-policy', PROVIDER_POLICY);
    reply.raw.setHeader('x-request-id', String(reply.request.id));
    // The provider answers (and logs) its own errors; the promise never rejects.
    void callback(raw, reply.raw);
  };
  app.route({ method: ['GET', 'POST', 'DELETE'], url: `${AUTHORIZATION_PATH}/*`, onRequest: handOver, handler: async () => undefined });

  // The pages on which the provider sends the browser when an authorization needs the user: login, then the
  // patient picker (a professional's standalone launch) and the approval of what the app asks.
  await app.register(async (pages) => {
    pages.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 8192 }, (_request, body, done) => {
      const form: Record<string, string | string[]> = {};
      for (const [name, value] of new URLSearchParams(body as string)) {
        const previous = form[name];
        form[name] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value];
      }
      done(null, form);
    });
    const steps = new InteractionSteps(provider, store, fhirBase, directory);
    pages.get<{ Params: { uid: string }; Querystring: { q?: string } }>(`${INTERACTION_PATH}/:uid`, async (request, reply) => {
      const details = await interaction(provider, request.raw, reply.raw);
      if (!details) return expired(reply);
      const form = await formState(store, request.params.uid);
      const launchRefusal = await steps.launchRefusal(details);
      if (launchRefusal) return steps.finish(request, reply, { error: 'invalid_request', error_description: launchRefusal });
      if (details.prompt.name === 'login') return htmlPage(reply, 'Connexion', loginForm(request.params.uid, form.csrf, await steps.clientName(details)));
      return steps.consent(request, reply, details, form, typeof request.query.q === 'string' ? request.query.q.slice(0, 100) : undefined);
    });
    pages.post<{ Params: { uid: string }; Body: Record<string, string | string[]> | undefined }>(`${INTERACTION_PATH}/:uid`, async (request, reply) => {
      const details = await interaction(provider, request.raw, reply.raw);
      if (!details) return expired(reply);
      const form = await formState(store, request.params.uid);
      const body = request.body ?? {};
      // The form's token, which only a page this server sent holds (besides the interaction's SameSite cookie).
      if (!sameText(field(body, 'csrf'), form.csrf)) return htmlPage(reply.code(403), 'Connexion', '<p role="alert">Ce formulaire n’est pas valide : rechargez la page.</p>');
      if (details.prompt.name === 'login') return steps.logIn(request, reply, details, form, body);
      return steps.decide(request, reply, details, form, body);
    });
  });
}

/** What one interaction's forms keep between requests: their anti-forgery token and the patient picked. */
interface FormState {
  uid: string;
  csrf: string;
  patient?: string;
}

const FORM_STATE = 'InteractionForm';

async function formState(store: AuthorizationStore, uid: string): Promise<FormState> {
  const record = await store.record(FORM_STATE, uid);
  if (record) return record.payload as unknown as FormState;
  const state = { uid, csrf: randomBytes(24).toString('base64url') };
  await store.saveRecord(FORM_STATE, uid, state, INTERACTION_TTL);
  return state;
}

type Details = Awaited<ReturnType<Provider['interactionDetails']>>;
type Form = Record<string, string | string[]>;

function field(form: Form, name: string): string {
  const value = form[name];
  return String((Array.isArray(value) ? value[0] : value) ?? '');
}

function fields(form: Form, name: string): string[] {
  const value = form[name];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function sameText(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/** The steps of an interaction after the page is known: login, the patient, the approval. */
class InteractionSteps {
  constructor(
    private readonly provider: Provider,
    private readonly store: AuthorizationStore,
    private readonly fhirBase: string,
    private readonly directory: PatientDirectory | undefined,
  ) {}

  async clientName(details: Details): Promise<string> {
    const clientId = String(details.params.client_id ?? '');
    const client = await this.store.client(clientId);
    return typeof client?.metadata.client_name === 'string' ? client.metadata.client_name : clientId;
  }

  /** Why the EHR launch the request names cannot be used (unknown, used, expired), if it cannot. */
  async launchRefusal(details: Details): Promise<string | undefined> {
    const launch = details.params.launch;
    if (launch === undefined) return undefined;
    return typeof launch === 'string' && (await pendingLaunch(this.store, launch)) ? undefined : 'the launch is unknown, used or expired';
  }

  /** Ends the interaction: back to the provider, which goes on (or answers the app with the result's error). */
  async finish(request: FastifyRequest, reply: FastifyReply, result: Record<string, unknown>, merge = true): Promise<FastifyReply> {
    return reply.redirect(await this.provider.interactionResult(request.raw, reply.raw, result, { mergeWithLastSubmission: merge }), 303);
  }

  async logIn(request: FastifyRequest, reply: FastifyReply, details: Details, form: FormState, body: Form): Promise<FastifyReply> {
    const username = field(body, 'username').slice(0, MAX_CREDENTIAL_LENGTH);
    const password = field(body, 'password').slice(0, MAX_CREDENTIAL_LENGTH);
    const account = username ? await this.store.account(username) : undefined;
    // Unknown user and wrong password look alike, and cost alike (a hash is checked either way).
    const valid = await verifyPassword(password, account?.passwordHash ?? UNKNOWN_ACCOUNT_HASH);
    const again = async (status: number, message: string) =>
      htmlPage(reply.code(status), 'Connexion', `<p role="alert">${escapeXml(message)}</p>\n${loginForm(form.uid, form.csrf, await this.clientName(details))}`);
    if (!account || !valid) {
      request.log.info({ client: details.params.client_id }, 'login refused');
      return again(401, 'Identifiant ou mot de passe incorrect.');
    }
    const launchUser = await this.launchUser(details);
    if (launchUser && launchUser !== account.fhirUser) {
      request.log.info({ client: details.params.client_id }, 'login refused: the launch is for another user');
      return again(403, 'Ce lancement a été fait pour un autre utilisateur : connectez-vous avec son compte.');
    }
    return this.finish(request, reply, { login: { accountId: account.username } }, false);
  }

  /** The user an EHR launched the app for, if it named one. */
  private async launchUser(details: Details): Promise<string | undefined> {
    const launch = typeof details.params.launch === 'string' ? await pendingLaunch(this.store, details.params.launch) : undefined;
    return launch?.fhirUser;
  }

  /**
   * After login: the patient first (a standalone `launch/patient` by a user without a record of their own),
   * then the approval, unless every scope asked was approved before for this app, when the grant is made at once.
   */
  async consent(request: FastifyRequest, reply: FastifyReply, details: Details, form: FormState, query: string | undefined): Promise<FastifyReply> {
    const situation = await this.situation(details, form);
    if ('error' in situation) return this.finish(request, reply, situation.error);
    const { accountId, access, patient, clientName } = situation;
    if (situation.needsPatient) {
      const found = query !== undefined && query.trim() !== '' ? await this.directory!.find(query, situation.account?.fhirUser) : undefined;
      return htmlPage(reply, 'Choix du patient', patientPicker(form.uid, form.csrf, clientName, query ?? '', found));
    }
    const approved = await approvedScopes(this.store, accountId, access.client.clientId);
    if (coveredByApproval(access, approved)) return this.grant(request, reply, details, situation, new Set([...access.named, ...access.resource]));
    const shown = patient ? await this.directory?.describe(patient.replace(/^Patient\//, ''), undefined) : undefined;
    return htmlPage(reply, 'Autorisation', approvalForm({ uid: form.uid, csrf: form.csrf, clientName, username: accountId, ...(shown ? { patient: shown } : {}), scopes: [...access.named, ...access.resource] }));
  }

  /** A POST on the consent step: a patient picked, or the approval (Approve with the boxes left ticked, or Deny). */
  async decide(request: FastifyRequest, reply: FastifyReply, details: Details, form: FormState, body: Form): Promise<FastifyReply> {
    const situation = await this.situation(details, form);
    if ('error' in situation) return this.finish(request, reply, situation.error);
    const picked = field(body, 'patient');
    if (picked !== '') {
      // Only a patient the user may see, and only while a patient is to be picked.
      const patient = situation.needsPatient ? await this.directory!.describe(picked, situation.account?.fhirUser) : undefined;
      if (!patient) return htmlPage(reply.code(400), 'Choix du patient', `<p role="alert">Ce patient ne peut pas être choisi.</p>\n${patientPicker(form.uid, form.csrf, situation.clientName, '', undefined)}`);
      await this.store.saveRecord(FORM_STATE, form.uid, { ...form, patient: `Patient/${patient.id}` }, INTERACTION_TTL);
      return reply.redirect(`${INTERACTION_PATH}/${encodeURIComponent(form.uid)}`, 303);
    }
    const decision = field(body, 'decision');
    if (decision === 'deny') {
      request.log.info({ client: situation.access.client.clientId }, 'authorization denied by the user');
      return this.finish(request, reply, { error: 'access_denied', error_description: 'The user denied the request' });
    }
    if (decision !== 'approve' || situation.needsPatient) return htmlPage(reply.code(400), 'Autorisation', '<p role="alert">Cette réponse n’est pas comprise : revenez à l’application.</p>');
    const ticked = new Set(fields(body, 'scope'));
    const asked = [...situation.access.named, ...situation.access.resource];
    return this.grant(request, reply, details, situation, new Set(asked.filter((scope) => !isOptionalScope(scope) || ticked.has(scope))));
  }

  private async grant(request: FastifyRequest, reply: FastifyReply, details: Details, situation: Situation, approved: ReadonlySet<string>): Promise<FastifyReply> {
    const launch = typeof details.params.launch === 'string' ? details.params.launch : undefined;
    const grantId = await grantAuthorization(this.provider, this.store, this.fhirBase, {
      accountId: situation.accountId,
      access: situation.access,
      approved,
      ...(launch ? { launch } : {}),
      ...(situation.patient && !launch ? { patient: situation.patient } : {}),
    });
    return this.finish(request, reply, { consent: { grantId } });
  }

  /** Who is asking what for whom, in this interaction; or the error that ends it. */
  private async situation(details: Details, form: FormState): Promise<Situation | { error: Record<string, string> }> {
    const accountId = details.session?.accountId;
    const access = await requestedAccess(this.store, String(details.params.client_id ?? ''), String(details.params.scope ?? ''));
    if (!accountId || !access) return { error: { error: 'invalid_request', error_description: 'the authorization request is no longer valid' } };
    const account = await this.store.account(accountId);
    const launch = typeof details.params.launch === 'string' ? await pendingLaunch(this.store, details.params.launch) : undefined;
    if (launch?.fhirUser && launch.fhirUser !== account?.fhirUser) return { error: { error: 'access_denied', error_description: 'the launch was made for another user' } };
    const clientName = await this.clientName(details);
    const launchPatient = launch?.patient ? `Patient/${launch.patient}` : undefined;
    const standalonePatient = details.params.launch === undefined && access.named.includes('launch/patient') ? (ownPatient(account) ?? form.patient) : undefined;
    const needsPatient = details.params.launch === undefined && access.named.includes('launch/patient') && standalonePatient === undefined;
    if (needsPatient && !this.directory) return { error: { error: 'invalid_request', error_description: 'no patient is known for this user: launch the app from an EHR' } };
    const patient = launchPatient ?? standalonePatient;
    return { accountId, account, access, clientName, needsPatient, ...(patient ? { patient } : {}) };
  }
}

interface Situation {
  accountId: string;
  account: LocalAccount | undefined;
  access: RequestedAccess;
  clientName: string;
  /** A standalone launch/patient whose patient is still to be picked. */
  needsPatient: boolean;
  /** The patient of the access (`Patient/123`): the launch's, the account's own, or the one picked. */
  patient?: string;
}

function expired(reply: FastifyReply): FastifyReply {
  return htmlPage(reply.code(400), 'Connexion', '<p>Cette demande de connexion a expiré : revenez à l’application.</p>');
}

/** A hash no password matches, checked for an unknown username so that the answer takes as long. */
const UNKNOWN_ACCOUNT_HASH = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

async function interaction(provider: Provider, req: Parameters<Provider['interactionDetails']>[0], res: Parameters<Provider['interactionDetails']>[1]) {
  try {
    return await provider.interactionDetails(req, res);
  } catch {
    // No interaction cookie, or an interaction that expired.
    return undefined;
  }
}

function htmlPage(reply: FastifyReply, title: string, body: string): FastifyReply {
  return reply.type('text/html; charset=utf-8').header('content-security-policy', LOGIN_PAGE_POLICY).header('cache-control', 'no-store').send(page(title, body));
}
