import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { r4Resources } from '../r4/r4-definitions.ts';
import type { CodeSystemResource, ValueSetResource } from '../terminology/terminology-service.ts';
import { stripVersion } from '../terminology/terminology-service.ts';

/** The parts of an R4 ElementDefinition the validator reads. */
export interface ElementDefinition {
  id?: string;
  path: string;
  sliceName?: string;
  min?: number;
  max?: string;
  base?: { path: string; min: number; max: string };
  type?: { code: string; profile?: string[]; targetProfile?: string[] }[];
  contentReference?: string;
  maxLength?: number;
  slicing?: { discriminator?: { type: string; path: string }[]; ordered?: boolean; rules?: 'open' | 'closed' | 'openAtEnd' };
  binding?: { strength: 'required' | 'extensible' | 'preferred' | 'example'; valueSet?: string };
  constraint?: { key: string; severity: 'error' | 'warning'; human: string; expression?: string; source?: string }[];
  [fixedOrPattern: string]: unknown;
}

export interface StructureDefinition {
  resourceType: 'StructureDefinition';
  url: string;
  name: string;
  title?: string;
  version?: string;
  kind: 'primitive-type' | 'complex-type' | 'resource' | 'logical';
  abstract?: boolean;
  type: string;
  baseDefinition?: string;
  derivation?: 'specialization' | 'constraint';
  context?: { type: string; expression: string }[];
  fhirVersion?: string;
  snapshot?: { element: ElementDefinition[] };
  differential?: { element: ElementDefinition[] };
}

/** Folder of the bundled profiles (`profiles/` at the repository root). */
export const PROFILES_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../../profiles');

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/** Every `.json` file under `dir`, recursively, parsed. */
export function jsonFilesUnder(dir: string): unknown[] {
  const out: unknown[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...jsonFilesUnder(path));
    else if (name.endsWith('.json')) out.push(readJson(path));
  }
  return out;
}

/**
 * Every StructureDefinition the validator can resolve by canonical URL: the base R4 types, resources and
 * core extensions (src/fhir/r4, unmodified HL7 content), then the profiles bundled in `profiles/`.
 * Canonicals are looked up without their `|version`: one version of each is loaded.
 */
export class DefinitionRegistry {
  /** The built-in definitions (loaded from files). */
  private readonly byUrl = new Map<string, StructureDefinition>();
  /** StructureDefinitions stored through the API, by `StructureDefinition/id`: they win over a built-in of the same URL. */
  private readonly stored = new Map<string, StructureDefinition>();
  private readonly storedByUrl = new Map<string, StructureDefinition>();
  /** Changes with every stored definition written or removed: what was compiled from the registry is stale. */
  generation = 0;
  readonly codeSystems: CodeSystemResource[] = [];
  readonly valueSets: ValueSetResource[] = [];

  static load(profilesDir = PROFILES_DIR): DefinitionRegistry {
    const registry = new DefinitionRegistry();
    for (const file of ['profiles-types.json', 'profiles-resources.json', 'extension-definitions.json'] as const) {
      for (const resource of r4Resources<StructureDefinition>(file)) {
        if (resource.resourceType === 'StructureDefinition') registry.add(resource);
      }
    }
    for (const resource of jsonFilesUnder(profilesDir) as { resourceType?: string }[]) {
      if (resource.resourceType === 'StructureDefinition') registry.add(resource as StructureDefinition);
      else if (resource.resourceType === 'CodeSystem') registry.codeSystems.push(resource as CodeSystemResource);
      else if (resource.resourceType === 'ValueSet') registry.valueSets.push(resource as ValueSetResource);
    }
    return registry;
  }

  add(definition: StructureDefinition): void {
    this.byUrl.set(definition.url, definition);
  }

  get(canonical: string): StructureDefinition | undefined {
    const url = stripVersion(canonical);
    return this.storedByUrl.get(url) ?? this.byUrl.get(url);
  }

  /** A StructureDefinition stored through the API (`StructureDefinition/id`), or undefined when it was deleted. */
  putStored(key: string, definition: StructureDefinition | undefined): void {
    this.stored.delete(key);
    if (definition?.url) this.stored.set(key, definition);
    this.storedByUrl.clear();
    for (const stored of this.stored.values()) this.storedByUrl.set(stored.url, stored);
    this.generation++;
  }

  /** The base definition of a type or resource, e.g. `Patient` or `HumanName`. */
  baseOf(type: string): StructureDefinition | undefined {
    return this.byUrl.get(type.includes('/') ? type : `http://hl7.org/fhir/StructureDefinition/${type}`);
  }

  /** The built-in definitions (base R4 and those shipped in `profiles/`), not the stored ones. */
  all(): StructureDefinition[] {
    return [...this.byUrl.values()];
  }
}
