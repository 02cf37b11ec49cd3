/**
 * The pieces every search statement is built from, whatever the parameter type: the binder of one
 * statement, the index rows a filter is decided by, and comparisons through the prefix indexes.
 */

/**
 * What one statement is compiled with: its bound parameters (every value reaches SQL as `$n`, never as
 * text in the statement) and its table aliases, numbered within the statement. A search thus compiles to
 * the same SQL text on every call, and searches differing only in their values to the same text: one
 * prepared statement, one pg_stat_statements entry.
 */
export class Binder {
  readonly params: unknown[] = [];
  private aliases = 0;
  bind(value: unknown, cast?: string): string {
    this.params.push(value);
    return `$${this.params.length}${cast ? `::${cast}` : ''}`;
  }
  /** A table alias not yet used in this statement. */
  alias(prefix: string): string {
    return `${prefix}${++this.aliases}`;
  }
}

/** Where a filter on a parameter is decided: the index table and parameter, its matching rows, and whether a match excludes. */
export interface IndexRows {
  table: string;
  param: string;
  rows: (i: string) => string;
  negate: boolean;
}

/**
 * Characters of a token code or system, string, uri or composite key that their btree index holds
 * (migration 0011): the whole of a longer value would not fit in an index entry (about 2.7 KB).
 */
export const INDEXED_PREFIX = 256;

/** The first INDEXED_PREFIX characters, counted as PostgreSQL's `left()` counts them (code points). */
export function indexedPrefix(value: string): string {
  return value.length <= INDEXED_PREFIX ? value : Array.from(value).slice(0, INDEXED_PREFIX).join('');
}

/**
 * `column = value`, through the index on the column's prefix: a value shorter than the prefix equals a
 * stored one exactly when their prefixes do; a longer one is then compared whole.
 */
export function indexedEqual(column: string, value: string, binder: Binder): string {
  const onIndex = `left(${column}, ${INDEXED_PREFIX}) = ${binder.bind(indexedPrefix(value))}`;
  return shorterThanPrefix(value) ? onIndex : `(${onIndex} AND ${column} = ${binder.bind(value)})`;
}

/** `column` is one of `values`, through the index on the column's prefix (as `indexedEqual`). */
export function indexedAmong(column: string, values: string[], binder: Binder): string {
  const onIndex = `left(${column}, ${INDEXED_PREFIX}) = ANY(${binder.bind([...new Set(values.map(indexedPrefix))], 'text[]')})`;
  return values.every(shorterThanPrefix) ? onIndex : `(${onIndex} AND ${column} = ANY(${binder.bind(values, 'text[]')}))`;
}

const shorterThanPrefix = (value: string) => value.length < INDEXED_PREFIX || Array.from(value).length < INDEXED_PREFIX;

/** `column` starts with `value`, through the index on the column's prefix, the whole compared where longer. */
export function indexedStartsWith(column: string, value: string, binder: Binder): string {
  const prefix = indexedPrefix(value);
  const onIndex = `left(${column}, ${INDEXED_PREFIX}) LIKE ${binder.bind(likePrefix(prefix))}`;
  return prefix === value ? onIndex : `(${onIndex} AND ${column} LIKE ${binder.bind(likePrefix(value))})`;
}

export const anyOf = (parts: string[]) => (parts.length === 1 ? parts[0]! : `(${parts.join(' OR ')})`);

/** A LIKE pattern matching strings that start with `value` (its own %, _ and \ taken literally). */
export function likePrefix(value: string): string {
  return `${value.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * A condition every query adds for each resource it reads (`alias` is the resource table's alias):
 * how access control and consent narrow a search inside the SQL, so paging and counts stay right.
 * `versioned`: `alias` is a row of resource_history, judged as that version was (its own compartments and
 * label, migration 0022) rather than as its resource is now.
 */
export interface ScopePredicate {
  (alias: string, resourceTypes: string[], binder: Binder, versioned?: boolean): string | undefined;
  /**
   * The same condition on a resource's keys alone (`type`, `id`: SQL expressions, an index row's columns),
   * for resources of `resourceTypes`; undefined when it needs the resource row itself (a Binary's
   * securityContext, a search restriction). A `_has` then filters its sources on their index rows, without
   * reading each source's resource row.
   */
  onKeys?(resourceTypes: string[]): KeyPredicate | undefined;
}

/** A condition on a resource's keys (ScopePredicate.onKeys); undefined when it restricts nothing. */
export type KeyPredicate = (type: string, id: string, binder: Binder) => string | undefined;
