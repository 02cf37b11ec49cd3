import type { Resource } from 'fhir/r4';
import type { SqlExecutor } from '../store/database.ts';
import { extractIndexRows, type IndexRows, type IndexTable } from './extract.ts';
import type { SearchParameterRegistry } from './registry.ts';

/** Per index table: its columns after (resource_type, resource_id), their SQL array types, and the row fields. */
const TABLES: Record<IndexTable, Array<[column: string, sqlType: string, field: string]>> = {
  token: [['param', 'text', 'param'], ['system', 'text', 'system'], ['code', 'text', 'code'], ['text', 'text', 'text']],
  string: [['param', 'text', 'param'], ['value', 'text', 'value'], ['normalized', 'text', 'normalized']],
  date: [['param', 'text', 'param'], ['low', 'timestamptz', 'low'], ['high', 'timestamptz', 'high']],
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
  quantity: [['param', 'text', 'param'], ['value', 'numeric', 'value'], ['system', 'text', 'system'], ['code', 'text', 'code'], ['unit', 'text', 'unit']],
  composite: [['param', 'text', 'param'], ['key', 'text', 'key']],
};
const TABLE_NAMES = Object.keys(TABLES) as IndexTable[];

/** Writes a resource's search index rows, replacing the previous ones, inside the caller's transaction. */
export interface IndexWriter {
  /** `resource` undefined removes the rows (deletion); `fresh` skips deleting rows that cannot exist. */
  write(tx: SqlExecutor, resourceType: string, id: string, resource: Resource | undefined, fresh?: boolean): Promise<void>;
  /**
   * The same write as CTEs for a caller to put in a statement of its own (one round trip for a whole
   * create): `$1` is the resource type, `$2` the id, then `params` continue the numbering.
   */
  insertCtes?(resourceType: string, id: string, resource: Resource): { ctes: string[]; params: unknown[] };
}

export class SearchIndexWriter implements IndexWriter {
  private readonly replaceCteList: string;
  private readonly insertCteList: string;
  private readonly insertCtesText: string[];

  constructor(private readonly registry: SearchParameterRegistry) {
    this.replaceCteList = indexCtes(true).join(',\n');
    this.insertCtesText = indexCtes(false);
    this.insertCteList = this.insertCtesText.join(',\n');
  }

  async write(tx: SqlExecutor, resourceType: string, id: string, resource: Resource | undefined, fresh = false): Promise<void> {
    const params = [resourceType, id, ...this.arrays(resource)];
    await tx.query(`WITH ${fresh ? this.insertCteList : this.replaceCteList} SELECT 1`, params, fresh ? 'dossier_index_insert' : 'dossier_index_replace');
  }

  insertCtes(resourceType: string, id: string, resource: Resource): { ctes: string[]; params: unknown[] } {
    return { ctes: this.insertCtesText, params: [resourceType, id, ...this.arrays(resource)] };
  }

  /** One array per index column, in the order the statements number them from `$3`. */
  private arrays(resource: Resource | undefined): unknown[][] {
    const rows = resource ? extractIndexRows(resource, this.registry) : undefined;
    const arrays: unknown[][] = [];
    for (const table of TABLE_NAMES) {
      const tableRows = (rows?.[table] ?? []) as unknown as Array<Record<string, unknown>>;
      for (const [, , field] of TABLES[table]) arrays.push(tableRows.map((row) => row[field] ?? null));
    }
    return arrays;
  }
}

/**
 * The whole index of a resource as data-modifying CTEs of one statement: they delete the old rows and
 * insert the new ones (all sub-statements see the same snapshot, so the deletes never touch the new rows).
 */
function indexCtes(replace: boolean): string[] {
  const ctes: string[] = [];
  let next = 3;
  for (const table of TABLE_NAMES) {
    const columns = TABLES[table];
    if (replace) ctes.push(`d_${table} AS (DELETE FROM search_${table} WHERE resource_type = $1 AND resource_id = $2)`);
    const arrays = columns.map(([, sqlType]) => `$${next++}::${sqlType}[]`);
    ctes.push(
      `i_${table} AS (INSERT INTO search_${table} (resource_type, resource_id, ${columns.map(([c]) => c).join(', ')}) ` +
        `SELECT $1, $2, * FROM unnest(${arrays.join(', ')}))`,
    );
  }
  return ctes;
}
