/**
 * The search planner's thresholds and heuristics, in one place, each with the measurement or reason
 * behind it. PostgreSQL plans each statement; these decide which statement it is given: what is read
 * first, what is counted where, what is left to its planner. Change one here and rerun the search
 * benchmark (scripts/bench/search.ts).
 */
import type { Filter } from './types.ts';

/**
 * A filter that pins down a few resources (a patient's records, ids, an identifier): sorting what it
 * finds is cheaper than walking a sort index past everything else, and the simpler statement plans
 * faster (the walk's statement took 7 ms to plan for a patient's seven immunizations).
 */
export function isNarrow(filter: Filter): boolean {
  switch (filter.kind) {
    case 'reference':
    case 'compartment':
    case 'chain':
      return true;
    case 'id':
      return !filter.not;
    case 'token':
      return filter.param.code === 'identifier' && filter.modifier === undefined;
    default:
      return false;
  }
}

/**
 * Whether a search's statements plan alike whatever its values, so that a connection may plan each once and run
 * the kept plan after (a prepared statement's generic plan): a filter on an identifier's value pins the matches
 * down to a handful for any value. Planning is most of what such a search costs the database: warm,
 * Patient?identifier on 1M resources plans in 0.21–0.37 ms and runs in 0.04–0.06 ms (pgbench, one client), and
 * a caller's access conditions add their sub-queries to the planning, not to the running; on PGlite the server's
 * CPU per identifier search fell from 1,617–1,939 to 1,391 µs (bench:trust, off). A filter whose selectivity
 * depends on its value must not be planned once: a generic plan drove Observation?patient&code from the code
 * index (a LOINC code shared by a third of the Observations), 0.9 -> 14.8 ms a search. Nor `_id`: the ids a
 * `_has` lists stand in for it (planSearch), as many as its sources, and with a generic plan
 * Patient?_has:Immunization:patient:vaccine-code&birthdate fell from 137/124 to 90/112 searches a second at 1M.
 */
export function plansAlike(filters: readonly Filter[]): boolean {
  return filters.some(
    (filter) => filter.kind === 'token' && filter.param.code === 'identifier' && filter.modifier === undefined && filter.values.every((value) => value.code !== undefined && value.code !== ''),
  );
}

/**
 * A filter decided by one parameter's index rows that, with another such filter of the same search, is
 * intersected with it on resource ids before any resource is read (sql.ts, joinedIndexRows): two broad
 * filters each matching thousands (a common surname, a birth year) may keep a handful together, which
 * PostgreSQL finds only when it may join their index rows directly. Narrow filters keep their own
 * subquery: they already start the plan, and the plans of those searches were measured as they are.
 */
export function intersectsOnIds(filter: Filter): boolean {
  if (isNarrow(filter)) return false;
  switch (filter.kind) {
    case 'string':
    case 'date':
    case 'token':
    case 'number':
    case 'quantity':
    case 'uri':
    case 'composite':
      return true;
    default:
      return false;
  }
}

/**
 * Ids up to which a search limited to them counts its matches in its page statement (a window count over
 * rows it reads to sort anyway), not in a second statement that would read them all again.
 */
export const MAX_COUNTED_IN_PAGE = 5_000;

/**
 * Ids beyond which a list travels as one comma-separated string split by PostgreSQL rather than as an
 * array literal: for thousands of ids (a `_has` read first) a third cheaper to build and parse; for a
 * few, the array keeps the statement plain.
 */
export const IDS_AS_ONE_STRING_FROM = 101;

/** Matches counted for a first page's `total` when `_total` is not given (R4 leaves it to the server). */
export const DEFAULT_COUNT_LIMIT = 10_000;

/**
 * How many sources a `_has` may have to be read first and given to the search as ids. PostgreSQL cannot
 * know how few resources a reverse chain reaches: it misjudged a birth-date range 60 times and probed
 * every patient's immunizations (2 s) where starting from a rare vaccine's 2,000 rows takes 20 ms.
 * Reading the sources costs a reference lookup each (about 12 µs here), wasted when there are too many:
 * a `_has` on one parameter's index (a code, a date, a reference…) first counts its matching index rows,
 * which costs little, and so can afford a higher bound (a vaccine on 27,000 immunizations: 0.4 s read
 * first, 1 s left to the planner).
 */
export interface HasListing {
  sources: number;
  /** For a `_has` whose matching index rows were counted first. */
  countedSources: number;
}

export const DEFAULT_HAS_LISTING: HasListing = { sources: 5_000, countedSources: 30_000 };
