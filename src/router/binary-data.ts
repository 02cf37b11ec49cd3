import type { Binary } from 'fhir/r4';
import { resourceObject, type ResponseBundle } from '../fhir/resource-text.ts';
import { SUBSETTED } from '../search/execute.ts';
import { binaryData } from '../store/binary-store.ts';
import type { SqlExecutor } from '../store/database.ts';

/**
 * A search reads resources as stored, and a stored Binary has no `data`: its bytes go back in, as a read
 * would put them, in each Binary of the page that is whole (not cut down by `_summary` or `_elements`).
 */
export async function withBinaryData(bundle: ResponseBundle, db: SqlExecutor): Promise<ResponseBundle> {
  for (const entry of bundle.entry ?? []) {
    if (entry.resource?.resourceType !== 'Binary') continue;
    const binary = resourceObject(entry.resource) as Binary;
    if (binary.data !== undefined || !binary.id || !binary.meta?.versionId) continue;
    if (binary.meta.tag?.some((tag) => tag.system === SUBSETTED.system && tag.code === SUBSETTED.code)) continue;
    const data = await binaryData(db, binary.id, Number(binary.meta.versionId));
    if (data !== undefined) entry.resource = { ...binary, data } as Binary;
  }
  return bundle;
}
