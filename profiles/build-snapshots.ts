/**
 * Regenerates the snapshots of the project's own profiles (profiles/dossier/) from their differentials:
 *   node --import tsx profiles/build-snapshots.ts
 * test/profile-snapshots.test.ts fails when a committed snapshot is out of date.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DefinitionRegistry, PROFILES_DIR, type StructureDefinition } from '../src/fhir/validation/definitions.ts';
import { generateSnapshot } from '../src/fhir/validation/snapshot-generator.ts';

export const DOSSIER_PROFILES_DIR = join(PROFILES_DIR, 'dossier');

/** Each project profile with its snapshot regenerated: [file path, definition]. */
export function buildSnapshots(registry = DefinitionRegistry.load()): [string, StructureDefinition][] {
  return readdirSync(DOSSIER_PROFILES_DIR)
    .filter((name) => name.startsWith('StructureDefinition-') && name.endsWith('.json'))
    .map((name) => {
      const path = join(DOSSIER_PROFILES_DIR, name);
      const definition = JSON.parse(readFileSync(path, 'utf8')) as StructureDefinition;
      const base = registry.get(definition.baseDefinition!);
      if (!base) throw new Error(`${name}: base ${definition.baseDefinition} not found`);
      const element = generateSnapshot(definition, base, (type) => registry.baseOf(type));
      return [path, { ...definition, snapshot: { element } }];
    });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const [path, definition] of buildSnapshots()) {
    writeFileSync(path, `${JSON.stringify(definition, null, 2)}\n`);
    console.log(`${path}: ${definition.snapshot!.element.length} elements`);
  }
}
