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
}

export class SearchIndexWriter implements IndexWriter {
  private readonly replaceSql: string;
  private readonly insertSql: string;

  constructor(private readonly registry: SearchParameterRegistry) {
    this.replaceSql = buildStatement(true);
    this.insertSql = buildStatement(false);
  }

  async write(tx: SqlExecutor, resourceType: string, id: string, resource: Resource | undefined, fresh = false): Promise<void> {
    const rows = resource ? extractIndexRows(resource, this.registry) : undefined;
    const params: unknown[] = [resourceType, id];
    for (const table of TABLE_NAMES) {
      const tableRows = (rows?.[table] ?? []) as unknown as Array<Record<string, unknown>>;
      for (const [, , field] of TABLES[table]) params.push(tableRows.map((row) => row[field] ?? null));
    }
    await tx.query(fresh ? this.insertSql : this.replaceSql, params);
  }
}

/**
 * One statement for the whole index of a resource: data-modifying CTEs delete the old rows and insert
 * the new ones (all sub-statements see the same snapshot, so the deletes never touch the new rows).
 */
function buildStatement(replace: boolean): string {
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
  return `WITH ${ctes.join(',\n')} SELECT 1`;
}
