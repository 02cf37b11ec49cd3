import { randomUUID } from 'node:crypto';
import type { Coding, CodeableConcept, Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import { loadValidationContext } from '../fhir/validation/profile-validator.ts';
import type { TerminologyService } from '../fhir/terminology/terminology-service.ts';
import type { Outcome } from '../router/context.ts';
import { conformanceCatalogue, noteStoredDefinition } from './conformance.ts';
import { resourceObject } from '../fhir/resource-text.ts';
import { complex, entries, integer, outputParameters, text, type ParameterEntry } from './parameters.ts';
import type { OperationCall, OperationDefinition } from './registry.ts';

/** Terminology operations on the local terminology service (the one the validator uses): no remote server. */
function terminology(): TerminologyService {
  return loadValidationContext().terminology;
}

/** The value set an operation is about: the instance (`ValueSet/[id]/$op`) or the `url` parameter. */
async function valueSetUrl(call: OperationCall, operation: string): Promise<string> {
  if (call.id) {
    let valueSet: Resource | undefined = conformanceCatalogue().find('ValueSet', call.id);
    if (!valueSet) {
      const stored = await call.ctx.store.read('ValueSet', call.id);
      valueSet = resourceObject(stored);
      // One this process has not seen written (another worker's write, before a restart) is in effect from its first use here.
      const storedUrl = (valueSet as { url?: string }).url;
      if (storedUrl && !terminology().hasValueSet(storedUrl)) noteStoredDefinition('ValueSet', call.id, stored);
    }
    const url = (valueSet as { url?: string }).url;
    if (!url) throw FhirError.notFound(`ValueSet/${call.id} has no canonical URL`);
    return url;
  }
  const url = text(call.parameters, 'url');
  if (url === undefined) {
    if (entries(call.parameters, 'valueSet').length > 0) {
      throw new FhirError(400, [{ code: 'not-supported', diagnostics: `${operation} takes a value set by its url here, not inline` }]);
    }
    throw FhirError.badRequest(`${operation} needs the value set: a 'url' parameter, or invoke it on ValueSet/[id]`, ['url'], 'required');
  }
  const version = text(call.parameters, 'valueSetVersion');
  const canonical = version ? `${url}|${version}` : url;
  const known = terminology().valueSet(canonical);
  if (!known) throw FhirError.notFound(`ValueSet ${url} is not known to this server`);
  if (version !== undefined && (known as { version?: string }).version !== version) throw FhirError.notFound(`ValueSet ${url} version ${version} is not known to this server`);
  return url;
}

/** ValueSet/$expand (R4 valueset-operation-expand): `url` or instance, `filter`, `count`, `offset`. */
export const expandOperation: OperationDefinition = {
  name: 'expand',
  levels: ['type', 'instance'],
  resourceTypes: ['ValueSet'],
  affectsState: false,
  async invoke(call): Promise<Outcome> {
    const url = await valueSetUrl(call, '$expand');
    const expansion = terminology().expandValueSet(url)!;
    if (!expansion.complete) {
      throw new FhirError(422, [{ code: 'too-costly', diagnostics: `ValueSet ${url} cannot be expanded by this server: it draws on code systems or filters that are not available locally` }]);
    }
    const filter = text(call.parameters, 'filter');
    const count = integer(call.parameters, 'count');
    const offset = integer(call.parameters, 'offset') ?? 0;
    const wanted = filter === undefined ? undefined : normalise(filter).split(/\s+/).filter((w) => w.length > 0);
    const matching = wanted
      ? expansion.contains.filter(({ code, display }) => {
          const words = normalise(`${code} ${display ?? ''}`).split(/[^\p{L}\p{N}]+/u);
          return wanted.every((w) => words.some((word) => word.startsWith(w)) || normalise(code) === w);
        })
      : expansion.contains;
    const page = matching.slice(offset, count === undefined ? undefined : offset + count);
    const { valueSet } = expansion;
    const parameter = [
      ...(filter !== undefined ? [{ name: 'filter', valueString: filter }] : []),
      ...(count !== undefined ? [{ name: 'count', valueInteger: count }] : []),
      ...(offset > 0 ? [{ name: 'offset', valueInteger: offset }] : []),
    ];
    const expanded = {
      resourceType: 'ValueSet',
      ...(valueSet.id ? { id: valueSet.id } : {}),
      url: valueSet.url,
      ...(valueSet.version ? { version: valueSet.version } : {}),
      ...(valueSet.name ? { name: valueSet.name } : {}),
      ...(valueSet.title ? { title: valueSet.title } : {}),
      status: valueSet.status ?? 'unknown',
      expansion: {
        identifier: `urn:uuid:${randomUUID()}`,
        timestamp: new Date().toISOString(),
        total: matching.length,
        offset,
        ...(parameter.length > 0 ? { parameter } : {}),
        ...(page.length > 0 ? { contains: page.map(({ system, code, display }) => ({ system, code, ...(display ? { display } : {}) })) } : {}),
      },
    };
    return { status: 200, resource: expanded as Resource };
  },
};

/** ValueSet/$validate-code (R4 valueset-operation-validate-code): `code`+`system` (+`display`) or `coding` or `codeableConcept`. */
export const validateCodeOperation: OperationDefinition = {
  name: 'validate-code',
  levels: ['type', 'instance'],
  resourceTypes: ['ValueSet'],
  affectsState: false,
  async invoke(call): Promise<Outcome> {
    const url = await valueSetUrl(call, '$validate-code');
    const codings = codingsOf(call.parameters);
    const service = terminology();
    const messages: string[] = [];
    for (const coding of codings) {
      const verdict = checkCoding(service, url, coding);
      if (verdict.result) {
        return { status: 200, resource: outputParameters([
          { name: 'result', valueBoolean: true },
          verdict.display ? { name: 'display', valueString: verdict.display } : undefined,
        ]) };
      }
      messages.push(verdict.message);
      if (codings.length === 1 && verdict.display) {
        return { status: 200, resource: outputParameters([
          { name: 'result', valueBoolean: false },
          { name: 'message', valueString: verdict.message },
          { name: 'display', valueString: verdict.display },
        ]) };
      }
    }
    return { status: 200, resource: outputParameters([{ name: 'result', valueBoolean: false }, { name: 'message', valueString: messages.join('; ') }]) };
  },
};

function codingsOf(parameters: Resource): Coding[] {
  const code = text(parameters, 'code');
  const coding = complex<Coding>(parameters, 'coding');
  const concept = complex<CodeableConcept>(parameters, 'codeableConcept');
  const given = [code !== undefined, coding !== undefined, concept !== undefined].filter(Boolean).length;
  if (given !== 1) throw FhirError.badRequest("Give exactly one of 'code' (with 'system'), 'coding' or 'codeableConcept'", ['code'], given === 0 ? 'required' : 'invalid');
  if (code !== undefined) {
    const system = text(parameters, 'system');
    const display = text(parameters, 'display');
    return [{ code, ...(system !== undefined ? { system } : {}), ...(display !== undefined ? { display } : {}) }];
  }
  if (coding) return [coding];
  const codings = concept!.coding ?? [];
  if (codings.length === 0) throw FhirError.badRequest("'codeableConcept' has no coding to validate", ['codeableConcept']);
  return codings;
}

function checkCoding(service: TerminologyService, url: string, coding: Coding): { result: boolean; message: string; display?: string } {
  const { system, code, display } = coding;
  if (typeof code !== 'string' || code.length === 0) return { result: false, message: 'A coding without a code cannot be validated' };
  const label = system ? `${system}#${code}` : `'${code}'`;
  const validity = service.validateCode(url, system, code);
  if (validity === 'unknown') {
    return { result: false, message: `Unable to check whether ${label} is in the value set ${url}: it draws on code systems or filters that are not available on this server` };
  }
  if (validity === 'invalid') return { result: false, message: `The code ${label} is not in the value set ${url}` };
  const expected = displayFor(service, url, system, code);
  if (display !== undefined && expected && !displays(service, system, code, expected).some((d) => d.toLowerCase() === display.toLowerCase())) {
    return { result: false, message: `Wrong display '${display}' for ${label}: it should be '${expected}'`, display: expected };
  }
  return { result: true, message: '', ...(expected ? { display: expected } : {}) };
}

/** The display of a member: the code system's, else the one the value set gives. */
function displayFor(service: TerminologyService, url: string, system: string | undefined, code: string): string | undefined {
  if (system) {
    const concept = service.lookup(system, code)?.concept;
    if (concept?.display) return concept.display;
  }
  return service.expandValueSet(url)?.contains.find((c) => c.code === code && (system === undefined || c.system === system))?.display;
}

/** Acceptable displays: the preferred one and the designations. */
function displays(service: TerminologyService, system: string | undefined, code: string, preferred: string): string[] {
  const designations = system ? service.lookup(system, code)?.concept.designation ?? [] : [];
  return [preferred, ...designations.map((d) => d.value)];
}

/** CodeSystem/$lookup (R4 codesystem-operation-lookup): `system` + `code`, or `coding`; unknown → 404. */
export const lookupOperation: OperationDefinition = {
  name: 'lookup',
  levels: ['type'],
  resourceTypes: ['CodeSystem'],
  affectsState: false,
  async invoke(call): Promise<Outcome> {
    const coding = complex<Coding>(call.parameters, 'coding');
    const system = coding?.system ?? text(call.parameters, 'system');
    const code = coding?.code ?? text(call.parameters, 'code');
    if (!system || !code) throw FhirError.badRequest("$lookup needs 'system' and 'code' (or a 'coding' with both)", [system ? 'code' : 'system'], 'required');
    const service = terminology();
    const codeSystem = service.codeSystem(system);
    if (!codeSystem) throw FhirError.notFound(`CodeSystem ${system} is not known to this server`);
    const version = text(call.parameters, 'version');
    if (version !== undefined && codeSystem.version !== version) throw FhirError.notFound(`CodeSystem ${system} version ${version} is not known to this server`);
    const found = service.lookup(system, code);
    if (!found) throw FhirError.notFound(`Code '${code}' is not in the CodeSystem ${system}`);
    const { concept } = found;
    const property = (name: string, value: Record<string, unknown>): ParameterEntry => ({ name: 'property', part: [{ name: 'code', valueCode: name }, { name: 'value', ...value }] });
    const conceptProperties = (concept.property ?? []).flatMap((p) => {
      const valueKey = Object.keys(p).find((k) => k.startsWith('value'));
      return valueKey && p.code !== 'parent' && p.code !== 'subsumedBy' ? [property(p.code, { [valueKey]: p[valueKey] })] : [];
    });
    return { status: 200, resource: outputParameters([
      { name: 'name', valueString: codeSystem.name ?? codeSystem.title ?? codeSystem.url },
      codeSystem.version ? { name: 'version', valueString: codeSystem.version } : undefined,
      concept.display ? { name: 'display', valueString: concept.display } : { name: 'display', valueString: concept.code },
      concept.definition ? { name: 'definition', valueString: concept.definition } : undefined,
      ...(concept.designation ?? []).map((d): ParameterEntry => ({
        name: 'designation',
        part: [
          ...(d.language ? [{ name: 'language', valueCode: d.language }] : []),
          ...(d.use ? [{ name: 'use', valueCoding: d.use }] : []),
          { name: 'value', valueString: d.value },
        ],
      })),
      ...found.parents.map((parent) => property('parent', { valueCode: parent })),
      ...found.children.map((child) => property('child', { valueCode: child })),
      ...conceptProperties,
    ]) };
  },
};

function normalise(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}
