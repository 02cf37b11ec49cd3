import type { AccessContext, CallerIdentities } from './access.ts';
import { callerIdentitiesStatement } from './consent-scope.ts';
import type { SqlExecutor } from './database.ts';

/** How long a caller's resolved identities serve its next requests. */
export const CALLER_TTL_MS = 10_000;

/** Callers kept at most; beyond, the expired ones go first, then all. */
const MAX_CALLERS = 10_000;

/**
 * The identities of callers resolved lately (ResourceStore.resolveCaller), for CALLER_TTL_MS: a caller's
 * requests within seconds look up its roles and organisations once, not in every statement of every request.
 * A PractitionerRole written through the store forgets them all, so a role changed is seen by the next
 * request on this server (on another server sharing the database, within CALLER_TTL_MS). A lookup that began
 * before such a write is not kept: it may have read the roles as they were.
 */
export class CallerCache {
  private readonly entries = new Map<string, { identities: CallerIdentities; expires: number }>();
  private generation = 0;

  constructor(
    private readonly ttlMs = CALLER_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** `access` with its caller's identities; as it is when consent does not see the caller as a user. `keep`: cache what is read. */
  async resolve(db: SqlExecutor, access: AccessContext, keep: boolean): Promise<AccessContext> {
    const statement = callerIdentitiesStatement(access);
    if (!statement || access.callerIdentities?.who === statement.who) return access;
    const cached = keep ? this.entries.get(statement.who) : undefined;
    if (cached && cached.expires > this.now()) return { ...access, callerIdentities: cached.identities };
    if (statement.sql === undefined) return { ...access, callerIdentities: { who: statement.who, opposable: [statement.who], authoring: [statement.who] } };
    const generation = this.generation;
    const { rows } = await db.query<{ opposable: string[] | null; authoring: string[] | null }>(statement.sql, statement.params);
    const identities: CallerIdentities = { who: statement.who, opposable: rows[0]?.opposable ?? [statement.who], authoring: rows[0]?.authoring ?? [statement.who] };
    if (keep && generation === this.generation) this.keep(statement.who, identities);
    return { ...access, callerIdentities: identities };
  }

  /** Forgets every caller: a PractitionerRole was written. */
  forget(): void {
    this.generation++;
    this.entries.clear();
  }

  private keep(who: string, identities: CallerIdentities): void {
    const now = this.now();
    if (this.entries.size >= MAX_CALLERS) {
      for (const [key, entry] of this.entries) if (entry.expires <= now) this.entries.delete(key);
      if (this.entries.size >= MAX_CALLERS) this.entries.clear();
    }
    this.entries.set(who, { identities, expires: now + this.ttlMs });
  }
}

/** Whether a write of `resourceType` may change a caller's identities (the reference index of PractitionerRoles). */
export const changesIdentities = (resourceType: string): boolean => resourceType === 'PractitionerRole';
