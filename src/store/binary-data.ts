import type { Binary } from 'fhir/r4';
import { ResourceText, resourceObject, type ResponseBundle } from '../fhir/resource-text.ts';
import { SUBSETTED } from './search-executor.ts';
import { binaryDataWithin, readBinaryContent } from './binary-store.ts';
import { StoredBinary, StoredResource } from './repository.ts';
import type { SqlExecutor } from './database.ts';
import type { DataKeys } from './encryption.ts';

/**
 * A search or history page reads resources as stored, and a stored Binary has no `data`: its bytes go
 * back in, as a read would put them, in each Binary of the page that is whole (not cut down by
 * `_summary` or `_elements`).
 * - `streamed` (HTTP, where `db` is still open while the answer is written): as base64 written chunk by
 *   chunk while the page goes out, whatever their size.
 * - Otherwise (a search in a batch entry, answered within the bundle's transaction): put together when
 *   there are no more than `limit` bytes. A larger Binary is left without its `data` and tagged
 *   SUBSETTED, as `_elements` would leave it (R4 search.html#summary): R4's Binary has no element to
 *   point at its content, but the entry's fullUrl reads it whole, streamed (R4 binary.html).
 */
export async function withBinaryData(bundle: ResponseBundle, db: SqlExecutor, limit: number, streamed = false, keys?: DataKeys): Promise<ResponseBundle> {
  for (const entry of bundle.entry ?? []) {
    if (entry.resource?.resourceType !== 'Binary') continue;
    const binary = resourceObject(entry.resource) as Binary;
    if (binary.data !== undefined || !binary.id || !binary.meta?.versionId) continue;
    if (binary.meta.tag?.some((tag) => tag.system === SUBSETTED.system && tag.code === SUBSETTED.code)) continue;
    const versionId = Number(binary.meta.versionId);
    if (streamed) {
      const text = entry.resource instanceof ResourceText ? entry.resource.json : JSON.stringify(binary);
      const stored = new StoredResource('Binary', binary.id, versionId, binary.meta.lastUpdated ?? '', text);
      entry.resource = new StoredBinary(stored, await readBinaryContent(db, binary.id, versionId, text, keys));
      continue;
    }
    const { size, data } = await binaryDataWithin(db, binary.id, versionId, limit, keys);
    if (data !== undefined) entry.resource = { ...binary, data } as Binary;
    else if (size > limit) entry.resource = { ...binary, meta: { ...binary.meta, tag: [...(binary.meta.tag ?? []), SUBSETTED] } } as Binary;
  }
  return bundle;
}
