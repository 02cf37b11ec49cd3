import { readdirSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/** A Synthea transaction Bundle as the fixture holds it: one patient, every entry a POST with a `urn:uuid` fullUrl. */
export interface SyntheaBundle {
  resourceType: 'Bundle';
  type: 'transaction';
  entry: Array<{ fullUrl: string; resource: { resourceType: string; id?: string; [element: string]: any }; request: { method: string; url: string } }>;
}

const SYNTHEA = new URL('../fixtures/synthea/', import.meta.url);

/**
 * The twenty Synthea bundles of test/fixtures/synthea (three plain JSON, seventeen gzip-compressed), by file
 * name without its extension, in name order.
 */
export function syntheaBundles(): Array<{ name: string; bundle: SyntheaBundle }> {
  return readdirSync(SYNTHEA)
    .filter((file) => file.endsWith('.json') || file.endsWith('.json.gz'))
    .sort()
    .map((file) => {
      const bytes = readFileSync(new URL(file, SYNTHEA));
      const text = (file.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
      return { name: file.replace(/\.json(\.gz)?$/, ''), bundle: JSON.parse(text) as SyntheaBundle };
    });
}
