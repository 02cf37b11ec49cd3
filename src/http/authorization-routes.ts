import type { FastifyInstance, FastifyReply } from 'fastify';
import type Provider from 'oidc-provider';
import { escapeXml } from '../fhir/xml-text.ts';
import { AUTHORIZATION_PATH, INTERACTION_PATH, page } from '../security/authorization-server.ts';
import { verifyPassword } from '../security/passwords.ts';
import type { AuthorizationStore } from '../store/resource-store.ts';
import { SECURITY_HEADERS } from './security-headers.ts';

export interface AuthorizationRoutesOptions {
  provider: Provider;
  store: AuthorizationStore;
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
export async function authorizationRoutes(app: FastifyInstance, { provider, store }: AuthorizationRoutesOptions): Promise<void> {
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

  // The login page, on which the provider sends the browser when an authorization needs a user.
  await app.register(async (login) => {
    login.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    login.get<{ Params: { uid: string } }>(`${INTERACTION_PATH}/:uid`, async (request, reply) => {
      const details = await interaction(provider, request.raw, reply.raw);
      if (!details) return htmlPage(reply.code(400), 'Connexion', '<p>Cette demande de connexion a expiré : revenez à l’application.</p>');
      if (details.prompt.name !== 'login') {
        // A registered client's scopes are approved for the user (loadExistingGrant): nothing to ask.
        return reply.redirect(await provider.interactionResult(request.raw, reply.raw, { consent: {} }, { mergeWithLastSubmission: true }), 303);
      }
      return htmlPage(reply, 'Connexion', loginForm(request.params.uid, String(details.params.client_id ?? '')));
    });
    login.post<{ Params: { uid: string }; Body: Record<string, string> }>(`${INTERACTION_PATH}/:uid`, async (request, reply) => {
      const details = await interaction(provider, request.raw, reply.raw);
      if (!details) return htmlPage(reply.code(400), 'Connexion', '<p>Cette demande de connexion a expiré : revenez à l’application.</p>');
      const username = String(request.body?.username ?? '').slice(0, MAX_CREDENTIAL_LENGTH);
      const password = String(request.body?.password ?? '').slice(0, MAX_CREDENTIAL_LENGTH);
      const account = username ? await store.account(username) : undefined;
      // Unknown user and wrong password look alike, and cost alike (a hash is checked either way).
      const valid = await verifyPassword(password, account?.passwordHash ?? UNKNOWN_ACCOUNT_HASH);
      if (!account || !valid) {
        request.log.info({ client: details.params.client_id }, 'login refused');
        return htmlPage(reply.code(401), 'Connexion', `<p role="alert">Identifiant ou mot de passe incorrect.</p>\n${loginForm(request.params.uid, String(details.params.client_id ?? ''))}`);
      }
      // The consent goes with the login: a registered client's scopes are approved (loadExistingGrant).
      const redirectTo = await provider.interactionResult(request.raw, reply.raw, { login: { accountId: account.username }, consent: {} }, { mergeWithLastSubmission: false });
      return reply.redirect(redirectTo, 303);
    });
  });
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

function loginForm(uid: string, clientId: string): string {
  return `<p>L’application <strong>${escapeXml(clientId)}</strong> demande l’accès au dossier.</p>
<form method="post" action="${INTERACTION_PATH}/${encodeURIComponent(uid)}">
<p><label>Identifiant <input name="username" autocomplete="username" required autofocus></label></p>
<p><label>Mot de passe <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Se connecter</button></p>
</form>`;
}
