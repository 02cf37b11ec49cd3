/**
 * SMART App Launch 2.0 scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), in
 * their v2 form (`patient/Observation.rs`, `system/*.cruds`) and their v1 form (`patient/Observation.read`,
 * `user/*.write`, `user/*.*`), which v2 defines in terms of its letters: read = rs, write = cud, * = cruds.
 * Scopes that name no resource access (`openid`, `fhirUser`, `launch/patient`, `offline_access`) grant none.
 */

/** c create, r read (read, vread, instance history), u update (update, patch), d delete, s search (search, type and system history). */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

export type ScopeContext = 'patient' | 'user' | 'system';

export interface ResourceScope {
  context: ScopeContext;
  /** A resource type, or `*` for every type. */
  resourceType: string;
  permissions: ReadonlySet<Permission>;
}

const V1_PERMISSIONS: Record<string, Permission[]> = { read: ['r', 's'], write: ['c', 'u', 'd'], '*': ['c', 'r', 'u', 'd', 's'] };
const SCOPE = /^(patient|user|system)\/(\*|[A-Z][A-Za-z]{0,63})\.(read|write|\*|c?r?u?d?s?)(\?.*)?$/;

/** The resource scopes among `scopes`; anything else (other scopes, malformed ones) grants nothing. */
export function parseScopes(scopes: readonly string[]): ResourceScope[] {
  const parsed: ResourceScope[] = [];
  for (const scope of scopes) {
    const match = SCOPE.exec(scope);
    if (!match || match[3] === '') continue;
    const [, context, resourceType, access, restriction] = match;
    // v2 search restrictions (`?category=laboratory`) are not applied yet: such a scope grants nothing
    // rather than more than it says.
    if (restriction !== undefined) continue;
    const permissions = V1_PERMISSIONS[access!] ?? (access!.split('') as Permission[]);
    parsed.push({ context: context as ScopeContext, resourceType: resourceType!, permissions: new Set(permissions) });
  }
  return parsed;
}

/** How a permission on a type is granted: not at all, or only within the launch patient's compartment, or fully. */
export type Grant = 'none' | 'patient' | 'full';

/**
 * What a token's scopes grant, per type and permission. `patient/` scopes grant only within the launch
 * context's patient, so without a `patient` they grant nothing; `user/` and `system/` scopes grant fully
 * (what a user may see beyond that is the consent's business, which comes next).
 */
export class Grants {
  private readonly scopes: ResourceScope[];

  constructor(
    scopes: readonly string[],
    readonly patient: string | undefined,
  ) {
    this.scopes = parseScopes(scopes).filter((scope) => scope.context !== 'patient' || patient !== undefined);
  }

  grant(resourceType: string, permission: Permission): Grant {
    let best: Grant = 'none';
    for (const scope of this.scopes) {
      if (!scope.permissions.has(permission) || (scope.resourceType !== '*' && scope.resourceType !== resourceType)) continue;
      if (scope.context !== 'patient') return 'full';
      best = 'patient';
    }
    return best;
  }

  /** Whether any scope grants `permission` on any type. */
  grantsAny(permission: Permission): boolean {
    return this.scopes.some((scope) => scope.permissions.has(permission));
  }

  /** Whether some scope grants `permission` on every type (`*`), fully or within the patient. */
  grantsEveryType(permission: Permission): boolean {
    return this.scopes.some((scope) => scope.resourceType === '*' && scope.permissions.has(permission));
  }

  /**
   * The types whose resources the caller may see at all (read or search: an included resource is seen as
   * a search result is; undefined: every type), and of those the ones seen only within the patient's
   * compartment (`*` for every type but `unconfined`).
   */
  visibility(): { readable?: string[]; confined: '*' | string[]; unconfined: string[] } {
    const sees = (scope: ResourceScope) => scope.permissions.has('r') || scope.permissions.has('s');
    const visible = this.scopes.filter(sees);
    const fullTypes = new Set(visible.filter((scope) => scope.context !== 'patient').map((scope) => scope.resourceType));
    const patientTypes = new Set(visible.filter((scope) => scope.context === 'patient').map((scope) => scope.resourceType));
    if (fullTypes.has('*')) return { confined: [], unconfined: [] };
    const readable = fullTypes.has('*') || patientTypes.has('*') ? undefined : [...new Set([...fullTypes, ...patientTypes])].sort();
    if (patientTypes.has('*')) return { readable, confined: '*', unconfined: [...fullTypes].sort() };
    return { readable, confined: [...patientTypes].filter((type) => !fullTypes.has(type)).sort(), unconfined: [] };
  }
}
