/**
 * SMART App Launch 2.0 scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), in
 * their v2 form (`patient/Observation.rs`, `system/*.cruds`) and their v1 form (`patient/Observation.read`,
 * `user/*.write`, `user/*.*`), which v2 defines in terms of its letters: read = rs, write = cud, * = cruds.
 * Scopes that name no resource access (`openid`, `fhirUser`, `launch/patient`, `offline_access`) grant none.
 * A v2 scope may be restricted by a search query (`patient/Observation.rs?category=laboratory`, §"Finer-grained
 * resource constraints using search parameters"): it grants only on the resources of its type that match.
 */

/** c create, r read (read, vread, instance history), u update (update, patch), d delete, s search (search, type and system history). */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

export type ScopeContext = 'patient' | 'user' | 'system';

export interface ResourceScope {
  context: ScopeContext;
  /** A resource type, or `*` for every type. */
  resourceType: string;
  permissions: ReadonlySet<Permission>;
  /**
   * The search query restricting the scope (`category=laboratory`), on a named type only: it grants only on
   * the resources that match (search/restriction.ts decides which queries can apply).
   */
  restriction?: string;
}

/** The search restrictions that limit a type: the resources seen or written must match one of `queries`. */
export interface TypeRestriction {
  type: string;
  queries: readonly string[];
}

const V1_PERMISSIONS: Record<string, Permission[]> = { read: ['r', 's'], write: ['c', 'u', 'd'], '*': ['c', 'r', 'u', 'd', 's'] };
const SCOPE = /^(patient|user|system)\/(\*|[A-Z][A-Za-z]{0,63})\.(read|write|\*|c?r?u?d?s?)(\?.*)?$/;

/** The resource scopes among `scopes`; anything else (other scopes, malformed ones) grants nothing. */
export function parseScopes(scopes: readonly string[]): ResourceScope[] {
  const parsed: ResourceScope[] = [];
  for (const scope of scopes) {
    const match = SCOPE.exec(scope);
    if (!match || match[3] === '') continue;
    const [, context, resourceType, access, query] = match;
    const restriction = query?.slice(1);
    // SMART defines restrictions for v2 scopes; on `*` a query could only use the parameters every type has,
    // and on a v1 scope it is not defined: either grants nothing rather than more than it says.
    if (restriction !== undefined && (resourceType === '*' || V1_PERMISSIONS[access!] !== undefined || restriction === '')) continue;
    const permissions = V1_PERMISSIONS[access!] ?? (access!.split('') as Permission[]);
    parsed.push({ context: context as ScopeContext, resourceType: resourceType!, permissions: new Set(permissions), ...(restriction !== undefined ? { restriction } : {}) });
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

  /** Whether a `system/` scope grants `permission` on every type, unrestricted: an administrator's token. */
  isAdministrator(permission: Permission): boolean {
    return this.scopes.some((scope) => scope.context === 'system' && scope.resourceType === '*' && scope.restriction === undefined && scope.permissions.has(permission));
  }

  /** The scopes granting `permission` on `resourceType` (named, or `*`), restricted or not. */
  scopesGranting(resourceType: string, permission: Permission): ResourceScope[] {
    return this.scopes.filter((scope) => scope.permissions.has(permission) && (scope.resourceType === '*' || scope.resourceType === resourceType));
  }

  /**
   * The types whose resources the caller may see at all (read or search: an included resource is seen as
   * a search result is; undefined: every type), of those the ones seen only within the patient's
   * compartment (`*` for every type but `unconfined`), and the types seen only where they match a search
   * restriction (one of its scopes' queries).
   *
   * Scopes add up, except in one case the access context cannot say: a type granted by restricted
   * `user/`/`system/` scopes and by a `patient/` scope is seen as the `patient/` scopes say, its restricted
   * `user/`/`system/` scopes left aside (the caller then sees less than all its scopes allow, never more).
   */
  visibility(): { readable?: string[]; confined: '*' | string[]; unconfined: string[]; restricted: TypeRestriction[] } {
    const sees = (scope: ResourceScope) => scope.permissions.has('r') || scope.permissions.has('s');
    const visible = this.scopes.filter(sees);
    const patientScopes = visible.filter((scope) => scope.context === 'patient');
    const patientTypes = new Set(patientScopes.map((scope) => scope.resourceType));
    const fullScopes = visible.filter((scope) => scope.context !== 'patient');
    const openFullTypes = new Set(fullScopes.filter((scope) => scope.restriction === undefined).map((scope) => scope.resourceType));
    if (openFullTypes.has('*')) return { confined: [], unconfined: [], restricted: [] };
    const restrictedFull = fullScopes.filter((scope) => scope.restriction !== undefined && !openFullTypes.has(scope.resourceType) && !patientTypes.has(scope.resourceType) && !patientTypes.has('*'));
    const fullTypes = new Set([...openFullTypes, ...restrictedFull.map((scope) => scope.resourceType)]);
    const restrictions = new Map<string, string[]>();
    for (const scope of restrictedFull) restrictions.set(scope.resourceType, [...(restrictions.get(scope.resourceType) ?? []), scope.restriction!]);
    if (!patientTypes.has('*')) {
      // A type seen only through patient scopes, all of them restricted (a `*` scope never is).
      for (const type of patientTypes) {
        if (fullTypes.has(type)) continue;
        const onType = patientScopes.filter((scope) => scope.resourceType === type);
        if (onType.every((scope) => scope.restriction !== undefined)) restrictions.set(type, onType.map((scope) => scope.restriction!));
      }
    }
    const restricted = [...restrictions].sort(([a], [b]) => a.localeCompare(b)).map(([type, queries]) => ({ type, queries: [...new Set(queries)] }));
    const readable = patientTypes.has('*') ? undefined : [...new Set([...fullTypes, ...patientTypes])].sort();
    if (patientTypes.has('*')) return { readable, confined: '*', unconfined: [...fullTypes].sort(), restricted };
    return { readable, confined: [...patientTypes].filter((type) => !fullTypes.has(type)).sort(), unconfined: [], restricted };
  }
}
