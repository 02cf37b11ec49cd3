import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import type { SqlExecutor } from './database.ts';
import { CONSENT_DELETE_CTES, CONSENT_DELETION_CTES, consentInsertCtes, consentParams, consentRowsOf, paramRows, type ConsentRows, type ConsentRowsOptions, type RowSource } from './consent-rows.ts';
import { membersOf, recordPatientOf } from '../search/compartment.ts';
import { CURRENT_VERSION, VERSION_DELETE_CTES, VERSION_DELETION_CTES, versionInsertCtes } from './version-rows.ts';
import { extractIndexRows, type ExtractOptions, type IndexRows, type IndexTable } from '../search/extract.ts';
import type { IdentifierHash } from '../search/identifier-hash.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';

/** Per index table: its columns after (resource_type, resource_id), their SQL types, and the row fields. */
const TABLES: Record<IndexTable, Array<[column: string, sqlType: string, field: string]>> = {
  token: [['param', 'text', 'param'], ['system', 'text', 'system'], ['code', 'text', 'code'], ['text', 'text', 'text']],
  string: [['param', 'text', 'param'], ['value', 'text', 'value'], ['normalized', 'text', 'normalized']],
  date: [['param', 'text', 'param'], ['low', 'timestamptz', 'low'], ['high', 'timestamptz', 'high'], ['composite_key', 'text', 'compositeKey']],
  reference: [
    ['param', 'text', 'param'],
    ['target_type', 'text', 'targetType'],
    ['target_id', 'text', 'targetId'],
    ['url', 'text', 'url'],
    ['identifier_system', 'text', 'identifierSystem'],
    ['identifier_value', 'text', 'identifierValue'],
  ],
  uri: [['param', 'text', 'param'], ['uri', 'text', 'uri']],
  number: [['param', 'text', 'param'], ['value', 'numeric', 'value']],
  quantity: [
    ['param', 'text', 'param'],
    ['value', 'numeric', 'value'],
    ['system', 'text', 'system'],
    ['code', 'text', 'code'],
    ['unit', 'text', 'unit'],
    ['canonical_value', 'numeric', 'canonicalValue'],
    ['canonical_unit', 'text', 'canonicalUnit'],
    ['composite_key', 'text', 'compositeKey'],
  ],
  composite: [['param', 'text', 'param'], ['key', 'text', 'key']],
  position: [['param', 'text', 'param'], ['latitude', 'float8', 'latitude'], ['longitude', 'float8', 'longitude']],
};
const TABLE_NAMES = Object.keys(TABLES) as IndexTable[];

/** Search index rows one resource may have unless configured otherwise (RESOURCE_MAX_INDEX_ROWS). */
export const DEFAULT_MAX_INDEX_ROWS = 10_000;

/** What a write keeps beside the resource: its search index rows and what its consent rules need (consent-rows.ts). */
export type WrittenRows = IndexRows & { consent?: ConsentRows };

/**
 * What the writer is told of a write: the server's base as reached, the SMART client writing, and the rows
 * themselves when the resource's writer built them (WriteOptions.indexRows), with identifiers in clear.
 */
export type WriteRowsOptions = Omit<ExtractOptions, 'identifierHash'> & ConsentRowsOptions & { indexRows?: IndexRows };

/** A resource's identity and the index rows extracted from it. */
export interface IndexedResource {
  resourceType: string;
  id: string;
  rows: WrittenRows;
}

/** Extracts a resource's search index rows and writes them inside the caller's transaction. */
export interface IndexWriter {
  /**
   * The index rows of a resource, computed without touching the database; `options.baseUrl` is the
   * server's own base as the writer reached it, so references to it index as local ones.
   */
  rowsOf(resource: Resource, options?: WriteRowsOptions): WrittenRows;
  /** Replaces a resource's index rows; `rows` undefined removes them (a deletion). */
  replace(tx: SqlExecutor, resourceType: string, id: string, rows: WrittenRows | undefined): Promise<void>;
}

export class SearchIndexWriter implements IndexWriter {
  /**
   * `maxRows`: most index rows one resource may have; a write beyond is refused (413), as its rows would
   * hold up every other write while they go in (a reindex of stored resources passes none).
   * `identifierHash`: with encryption at rest, the store's keyed hash identifiers are indexed under
   * (DataKeys.hashIdentifier); without, identifiers are indexed in clear.
   */
  constructor(
    private readonly registry: SearchParameterRegistry,
    private readonly maxRows = Infinity,
    private readonly identifierHash?: IdentifierHash,
  ) {}

  rowsOf(resource: Resource, options: WriteRowsOptions = {}): WrittenRows {
    const rows = options.indexRows
      ? this.withHashedIdentifiers(resource.resourceType, options.indexRows)
      : extractIndexRows(resource, this.registry, {
          ...(options.baseUrl !== undefined ? { baseUrl: options.baseUrl } : {}),
          ...(this.identifierHash ? { identifierHash: this.identifierHash } : {}),
        });
    const count = TABLE_NAMES.reduce((sum, table) => sum + rows[table].length, 0);
    if (count > this.maxRows) {
      throw new FhirError(413, [{ code: 'too-long', diagnostics: `This ${resource.resourceType} has ${count} search index entries; this server accepts at most ${this.maxRows} per resource (RESOURCE_MAX_INDEX_ROWS)` }]);
    }
    return { ...rows, consent: consentRowsOf(resource, rows, options) };
  }

  /** Rows built by the resource's writer, identifiers hashed as extraction would have (extract.ts addValue). */
  private withHashedIdentifiers(resourceType: string, rows: IndexRows): IndexRows {
    const hash = this.identifierHash;
    if (!hash) return rows;
    return {
      ...rows,
      token: rows.token.map((row) => (typeof row.code === 'string' && this.registry.get(resourceType, row.param)?.identifier ? { ...row, code: hash(row.code) } : row)),
      reference: rows.reference.map((row) => (typeof row.identifierValue === 'string' ? { ...row, identifierValue: hash(row.identifierValue) } : row)),
    };
  }

  async replace(tx: SqlExecutor, resourceType: string, id: string, rows: WrittenRows | undefined): Promise<void> {
    if (!rows) {
      await tx.query(DELETE_STATEMENT, [resourceType, id], 'dossier_index_delete');
      return;
    }
    await tx.query(REPLACE_STATEMENT, [resourceType, id, ...indexParams([{ resourceType, id, rows }])], 'dossier_index_replace');
  }
}

/**
 * The index rows of `resources` as statement parameters: one JSON array per index table, each row an array
 * `[resource_type, resource_id, patient_id, …columns]`, in the order `indexInsertCtes` reads them, then
 * their compartment memberships (`[compartment_type, compartment_id, resource_type, resource_id]`, from
 * the same reference rows: compartment.ts). Every row carries the patient whose record its resource is
 * part of, so that a search from a clinical record to its patient (a `_has`) needs no lookup of the
 * record's reference. JSON rather than one SQL array per column because the driver serialises it natively
 * in one pass, and the row count of a statement no longer changes its text, so it stays prepared.
 */
export function indexParams(resources: IndexedResource[]): string[] {
  const patients = resources.map(({ resourceType, id, rows }) => recordPatientOf(resourceType, id, rows.reference));
  const members = resources.flatMap(({ resourceType, id, rows }) => membersOf(resourceType, id, rows.reference).map(([type, member]) => [type, member, resourceType, id]));
  return [...indexTableParams(resources, patients), JSON.stringify(members), ...consentParams(resources.map(({ resourceType, id, rows }) => ({ resourceType, id, ...(rows.consent ? { consent: rows.consent } : {}) })))];
}

/** An index array without rows, as indexParams gives it. */
export const EMPTY_ARRAY = '[]';

/** Per index table, the row fields of its columns, in TABLES' order (built once: every write goes through here). */
const TABLE_FIELDS: string[][] = TABLE_NAMES.map((table) => TABLES[table].map(([, , field]) => field));

function indexTableParams(resources: IndexedResource[], patients: Array<string | null>): string[] {
  const params: string[] = [];
  for (let t = 0; t < TABLE_NAMES.length; t++) {
    const table = TABLE_NAMES[t]!;
    const fields = TABLE_FIELDS[t]!;
    const out: unknown[][] = [];
    for (let n = 0; n < resources.length; n++) {
      const { resourceType, id, rows } = resources[n]!;
      const patient = patients[n];
      for (const row of rows[table] as unknown as Array<Record<string, unknown>>) {
        const values: unknown[] = [resourceType, id, patient];
        for (const field of fields) values.push(row[field] ?? null);
        out.push(values);
      }
    }
    // An empty table's parameter is the same text every time: no call to JSON.stringify for it.
    params.push(out.length === 0 ? EMPTY_ARRAY : JSON.stringify(out));
  }
  return params;
}

/**
 * Data-modifying CTEs inserting the rows `indexParams` produced, the `k`th array's read from `rows(k)`
 * (`paramRows(first)`: statement parameters `$first`, `$first + 1`, …).
 * `rewrite`: the statement replaces a resource's rows (REPLACE_STATEMENT), whose deleted ones it may read;
 * else it writes first versions. Either way the version written gets its own rows too (version-rows.ts).
 * `has(k)`: whether the `k`th array has rows; the CTEs of those that have none are left out (and `rows(k)` is
 * not called for them).
 */
export function indexInsertCtes(rows: RowSource, rewrite = false, has: (k: number) => boolean = () => true): string[] {
  const memberIndex = TABLE_NAMES.length;
  const member = () =>
    `i_compartment AS (INSERT INTO compartment_member (compartment_type, compartment_id, resource_type, resource_id) ` +
    `SELECT x->>0, x->>1, x->>2, x->>3 FROM ${rows(memberIndex)} RETURNING *)`;
  const consentHas = (k: number) => has(memberIndex + 1 + k);
  const consentRows: RowSource = (k) => rows(memberIndex + 1 + k);
  const versions = versionInsertCtes(rewrite ? CURRENT_VERSION : '1');
  return [
    ...indexTableCtes(rows, has),
    ...(has(memberIndex) ? [member()] : []),
    ...consentInsertCtes(consentRows, rewrite, consentHas),
    // The version's rows copy what i_compartment and i_visibility (consent array 1) return.
    ...(has(memberIndex) ? [versions[0]!] : []),
    ...(consentHas(1) ? [versions[1]!] : []),
  ];
}

/**
 * The statement writing first versions of resources (their rows, history rows and index rows) with only the
 * insert CTEs of the index arrays that have rows: `present[k]` tells whether `indexParams`' `k`th array has any,
 * and the arrays that do are parameters `$2`, `$3`, … in their order (`$1` is the resources). A Patient fills
 * 6 of the 14 arrays; an empty array's CTE still cost each statement its executor node, its table opened and
 * locked and its parameter bound: about 8 % of the statement's execution and 12 % of its round trip, measured
 * on PostgreSQL 15 with one Patient a statement (0.31 -> 0.28 ms executing, 0.79 -> 0.70 ms a call).
 * Each combination is a text of its own, prepared under its own name; the combinations met are few
 * (a resource type fills the same arrays), and past MAX_INSERT_SHAPES the statement with every CTE is used.
 */
export function insertNewStatement(present: readonly boolean[]): InsertNewStatement {
  const key = present.map((has) => (has ? '1' : '0')).join('');
  let statement = insertNewStatements.get(key);
  if (statement === undefined) {
    if (insertNewStatements.size >= MAX_INSERT_SHAPES) return (everyInsertCte ??= buildInsertNew(present.map(() => true), 'dossier_insert_new'));
    statement = buildInsertNew(present, `dossier_insert_new_${key}`);
    insertNewStatements.set(key, statement);
  }
  return statement;
}

/** A first-versions statement and the index arrays it binds (`bound[k]`: the `k`th array is a parameter). */
export interface InsertNewStatement {
  sql: string;
  name: string;
  bound: readonly boolean[];
}

function buildInsertNew(bound: readonly boolean[], name: string): InsertNewStatement {
  const position = new Map<number, number>();
  for (let k = 0; k < bound.length; k++) if (bound[k]) position.set(k, position.size + 2);
  const rows: RowSource = (k) => `jsonb_array_elements($${position.get(k)}::jsonb) AS x`;
  const sql = `WITH new AS (
    SELECT x->>0 AS resource_type, x->>1 AS id, (x->>2)::timestamptz AS last_updated, x->>3 AS content, n
      FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(x, n)),
  r AS (INSERT INTO resource (resource_type, id, version_id, last_updated, content)
          SELECT resource_type, id, 1, last_updated, content FROM new),
  h AS (INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content)
          SELECT resource_type, id, 1, last_updated, 'POST', content FROM new ORDER BY n)${indexInsertCtes(rows, false, (k) => bound[k] === true).map((cte) => `,\n  ${cte}`).join('')}
SELECT 1`;
  return { sql, name, bound };
}
const insertNewStatements = new Map<string, InsertNewStatement>();
let everyInsertCte: InsertNewStatement | undefined;
const MAX_INSERT_SHAPES = 64;

function indexTableCtes(rows: RowSource, has: (k: number) => boolean): string[] {
  return TABLE_NAMES.flatMap((table, t) => {
    if (!has(t)) return [];
    const columns = TABLES[table];
    const values = columns.map(([, sqlType], c) => (sqlType === 'text' ? `x->>${c + 3}` : `(x->>${c + 3})::${sqlType}`));
    return (
      `i_${table} AS (INSERT INTO search_${table} (resource_type, resource_id, patient_id, ${columns.map(([column]) => column).join(', ')}) ` +
      `SELECT x->>0, x->>1, x->>2, ${values.join(', ')} FROM ${rows(t)})`
    );
  });
}

/**
 * One statement that deletes a resource's index rows and memberships and inserts its new ones (all
 * sub-statements see the same snapshot, so the deletes never touch the new rows): `$1` type, `$2` id, then
 * `indexParams`. A resource's memberships are its own compartment and targets of its old reference rows
 * (membersOf), so they are found by the compartment index from the reference rows the statement deletes:
 * a second index on compartment_member, by resource, would cost every write one more index entry per member.
 */
const INDEX_DELETE_CTES = [
  ...TABLE_NAMES.map((table) => `d_${table} AS (DELETE FROM search_${table} WHERE resource_type = $1 AND resource_id = $2${table === 'reference' ? ' RETURNING target_type, target_id' : ''})`),
  `d_compartment AS (DELETE FROM compartment_member WHERE resource_type = $1 AND resource_id = $2
      AND (compartment_type, compartment_id) IN (SELECT target_type, target_id FROM d_reference WHERE target_id IS NOT NULL UNION ALL SELECT $1, $2)
      RETURNING compartment_type, compartment_id)`,
];

const REPLACE_STATEMENT = `WITH ${[...INDEX_DELETE_CTES, ...CONSENT_DELETE_CTES, ...VERSION_DELETE_CTES, ...indexInsertCtes(paramRows(3), true)].join(',\n')}
SELECT 1`;

/** A deletion: the index rows and memberships go; what consent needs of the deleted resource's history stays (consent-rows.ts). */
const DELETE_STATEMENT = `WITH ${[...INDEX_DELETE_CTES, ...CONSENT_DELETION_CTES, ...VERSION_DELETION_CTES].join(',\n')}
SELECT 1`;
