// The authorization server's own pages: login, patient picker, approval. Plain HTML, in French, no script,
// no style, nothing loaded; every value written into them is escaped, and every form carries the
// interaction's anti-forgery token.
import { escapeXml } from '../fhir/xml-text.ts';
import { INTERACTION_PATH } from '../security/authorization-server.ts';
import type { PatientChoice } from '../security/patient-directory.ts';
import { parseScopes } from '../security/scopes.ts';

/** Scopes the user may leave out of an approval: resource access, and keeping it beyond the session. */
export function isOptionalScope(scope: string): boolean {
  return scope === 'offline_access' || scope === 'online_access' || parseScopes([scope]).length > 0;
}

const NAMED_SCOPE_WORDS: Record<string, string> = {
  openid: 'connaître votre identifiant de connexion',
  profile: 'connaître votre nom d’utilisateur et qui vous êtes dans le dossier',
  fhirUser: 'savoir qui vous êtes dans le dossier (votre fiche de patient ou de professionnel)',
  launch: 'recevoir le contexte du logiciel qui l’ouvre (patient, venue)',
  'launch/patient': 'savoir de quel patient il s’agit',
  'launch/encounter': 'savoir de quelle venue (consultation, séjour) il s’agit',
  offline_access: 'garder cet accès 30 jours, même quand vous ne l’utilisez pas',
  online_access: 'garder cet accès tant que vous l’utilisez (8 heures au plus)',
};

const PERMISSION_WORDS: Record<string, string> = { c: 'créer', r: 'lire', u: 'modifier', d: 'supprimer', s: 'rechercher' };
const CONTEXT_WORDS: Record<string, string> = {
  patient: 'dans le dossier du patient concerné',
  user: 'dans les dossiers auxquels vous avez accès',
  system: 'dans tous les dossiers',
};

/** A scope in plain words: `patient/Observation.rs` is "lire et rechercher les Observation dans le dossier du patient concerné". */
function scopeInWords(scope: string): string {
  const named = NAMED_SCOPE_WORDS[scope];
  if (named) return named;
  const [parsed] = parseScopes([scope]);
  if (!parsed) return scope;
  const verbs = [...'cruds'].filter((letter) => parsed.permissions.has(letter as never)).map((letter) => PERMISSION_WORDS[letter]!);
  const list = verbs.length > 1 ? `${verbs.slice(0, -1).join(', ')} et ${verbs.at(-1)}` : verbs[0]!;
  const what = parsed.resourceType === '*' ? 'toutes les données' : `les données de type ${parsed.resourceType}`;
  const only = parsed.restriction ? ` (seulement celles répondant à ${parsed.restriction})` : '';
  return `${list} ${what}${only} ${CONTEXT_WORDS[parsed.context]}`;
}

function action(uid: string): string {
  return `${INTERACTION_PATH}/${encodeURIComponent(uid)}`;
}

function csrfField(csrf: string): string {
  return `<input type="hidden" name="csrf" value="${escapeXml(csrf)}">`;
}

export function loginForm(uid: string, csrf: string, clientName: string): string {
  return `<p>L’application <strong>${escapeXml(clientName)}</strong> demande l’accès au dossier.</p>
<form method="post" action="${action(uid)}">
${csrfField(csrf)}
<p><label>Identifiant <input name="username" autocomplete="username" required autofocus></label></p>
<p><label>Mot de passe <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Se connecter</button></p>
</form>`;
}

function describePatient(patient: PatientChoice): string {
  return [patient.name, patient.birthDate ? `né(e) le ${patient.birthDate.split('-').reverse().join('/')}` : '', patient.ins ? `INS ${patient.ins}` : ''].filter(Boolean).map(escapeXml).join(', ');
}

/**
 * The patient picker of a standalone launch by a professional: a search (GET, by family name or INS) and
 * the patients found, each chosen by a POST back to the interaction.
 */
export function patientPicker(uid: string, csrf: string, clientName: string, query: string, found: readonly PatientChoice[] | undefined): string {
  const results =
    found === undefined
      ? ''
      : found.length === 0
        ? `<p role="status">Aucun patient trouvé pour « ${escapeXml(query)} ».</p>`
        : `<form method="post" action="${action(uid)}">
${csrfField(csrf)}
<ul>
${found.map((patient) => `<li><button type="submit" name="patient" value="${escapeXml(patient.id)}">${describePatient(patient)}</button></li>`).join('\n')}
</ul>
</form>`;
  return `<p>L’application <strong>${escapeXml(clientName)}</strong> s’ouvre pour un patient : lequel ?</p>
<form method="get" action="${action(uid)}">
<p><label>Nom de famille ou INS <input name="q" value="${escapeXml(query)}" required autofocus></label> <button type="submit">Rechercher</button></p>
</form>
${results}`;
}

export interface ApprovalView {
  uid: string;
  csrf: string;
  clientName: string;
  /** Who is logged in. */
  username: string;
  /** The patient the access is for, when there is one. */
  patient?: PatientChoice;
  /** The scopes asked, within the registration. */
  scopes: readonly string[];
}

/** The approval page: the app, the patient, what it asks in plain words (resource scopes each with a box), Approve or Deny. */
export function approvalForm(view: ApprovalView): string {
  const item = (scope: string) =>
    isOptionalScope(scope)
      ? `<li><label><input type="checkbox" name="scope" value="${escapeXml(scope)}" checked> ${escapeXml(scopeInWords(scope))}</label> <small>(${escapeXml(scope)})</small></li>`
      : `<li>${escapeXml(scopeInWords(scope))} <small>(${escapeXml(scope)})</small></li>`;
  return `<p>Connecté(e) en tant que <strong>${escapeXml(view.username)}</strong>.</p>
<p>L’application <strong>${escapeXml(view.clientName)}</strong> demande à${view.patient ? ` propos de <strong>${describePatient(view.patient)}</strong>` : ''} :</p>
<form method="post" action="${action(view.uid)}">
${csrfField(view.csrf)}
<ul>
${view.scopes.map(item).join('\n')}
</ul>
<p>Votre accord est gardé pour cette application : elle ne vous le redemandera que pour d’autres accès.</p>
<p><button type="submit" name="decision" value="approve">Autoriser</button> <button type="submit" name="decision" value="deny">Refuser</button></p>
</form>`;
}
