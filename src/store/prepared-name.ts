import { createHash } from 'node:crypto';

/**
 * The name a statement is prepared under, from its text: a connection then parses and plans it once and reuses
 * the plan for every later call of that text. An access-checked read or vread has one text per shape of access
 * (its values are parameters), and so has a search whose plan does not depend on its values (by identifier:
 * planning.ts, plansAlike): each shape is planned once per connection, its consent sub-plans included.
 */
export function preparedName(sql: string): string {
  let name = preparedNames.get(sql);
  if (name === undefined) {
    name = `dossier_${createHash('sha1').update(sql).digest('hex').slice(0, 32)}`;
    // The shapes (of access, of identifier search) are few; should texts multiply, the names are hashed again rather than kept.
    if (preparedNames.size >= MAX_PREPARED_NAMES) preparedNames.clear();
    preparedNames.set(sql, name);
  }
  return name;
}

/** The names of the texts named lately: each access-checked read and identifier search names its text, hashed once. */
const preparedNames = new Map<string, string>();
const MAX_PREPARED_NAMES = 1000;
