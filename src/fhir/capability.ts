import { readFileSync } from 'node:fs';
import type { CapabilityStatement } from 'fhir/r4';

const ROOT = new URL('../../', import.meta.url);

/** The server's software version, from package.json. */
export const SOFTWARE_VERSION: string = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')).version;

/** capability-statement.json, the declaration of what this server does, kept true by test. */
export function loadCapabilityStatement(): CapabilityStatement {
  return JSON.parse(readFileSync(new URL('capability-statement.json', ROOT), 'utf8')) as CapabilityStatement;
}

/** The statement as served: the declared file plus what only the running instance knows. */
export function instanceCapabilityStatement(declared: CapabilityStatement, baseUrl: string): CapabilityStatement {
  return {
    ...declared,
    software: { ...declared.software, name: declared.software?.name ?? 'dossier', version: SOFTWARE_VERSION },
    implementation: { description: declared.implementation?.description ?? 'dossier FHIR server', url: baseUrl },
  };
}
