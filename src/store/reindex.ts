import type { Resource } from 'fhir/r4';
import type { Database } from './database.ts';
import type { IndexWriter } from './index-writer.ts';

export interface ReindexProgress {
  done: number;
  total: number;
}

export interface ReindexOptions {
  onProgress?: (p: ReindexProgress) => void;
  batchSize?: number;
  /**
   * The server's own base URL, so absolute references to it are indexed as local ones, as they were when
   * written. Without it they become URLs: the base a request came in by is not kept with the resource.
   */
  baseUrl?: string;
}

/**
 * Rebuilds the search index of every current resource of `types` (after a SearchParameter definition
 * changed), in keyset-ordered batches, each its own transaction, so a running server keeps serving.
 */
export async function reindex(db: Database, writer: IndexWriter, types: string[], { onProgress = () => {}, batchSize = 500, baseUrl }: ReindexOptions = {}): Promise<number> {
  const { rows: counts } = await db.query<{ total: number }>(
    'SELECT count(*)::int AS total FROM resource WHERE resource_type = ANY($1::text[]) AND NOT deleted',
    [types],
  );
  const total = counts[0]?.total ?? 0;
  let done = 0;
  let position: [string, string] = ['', ''];
  for (;;) {
    const { rows } = await db.query<{ resource_type: string; id: string; content: string }>(
      `SELECT resource_type, id, content FROM resource
        WHERE resource_type = ANY($1::text[]) AND NOT deleted AND (resource_type, id) > ($2, $3)
        ORDER BY resource_type, id LIMIT $4::int`,
      [types, position[0], position[1], batchSize],
    );
    if (rows.length === 0) break;
    await db.transaction(async (tx) => {
      for (const row of rows) await writer.replace(tx, row.resource_type, row.id, writer.rowsOf(JSON.parse(row.content) as Resource, { baseUrl }));
    });
    done += rows.length;
    const last = rows[rows.length - 1]!;
    position = [last.resource_type, last.id];
    onProgress({ done, total });
  }
  return done;
}
