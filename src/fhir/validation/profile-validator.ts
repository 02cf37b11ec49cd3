import type { Issue } from '../outcome.ts';
import { loadTerminology } from '../terminology/load-terminology.ts';
import { stripVersion, type TerminologyService } from '../terminology/terminology-service.ts';
import { bundleIssues } from './bundle-rules.ts';
import { ALTERNATIVES_TO_DEFAULT, DOSSIER_PROFILE_BASE, parseDefaultProfiles, type DefaultProfiles } from './default-profiles.ts';
import { DefinitionRegistry, PROFILES_DIR } from './definitions.ts';
import type { CompiledProfile } from './element-tree.ts';
import { identifierIssues, identityIssues, valueSetRuleIssues } from './french-rules.ts';
import { ownRules } from './own-rules.ts';
import { SchemaValidator } from './schema-validator.ts';
import { StructureValidator, type RelaxedRules, type StructureValidatorOptions } from './structure-validator.ts';
import { findSlice, type SliceOracle } from './slicing.ts';
import { isError, type BundleProfileCheck, type CheckOptions, type ResourceValidator, type ValidationResult } from './validator.ts';

/**
 * Options; the structure options default to: unknown extensions → warning (French data carries ANS extensions
 * whose definitions are not bundled; unknown modifier extensions are always errors), no allowed domains,
 * example URLs allowed.
 */
export interface ProfileValidatorOptions extends Partial<StructureValidatorOptions> {
  /** Resource types whose schema is compiled up front. */
  resourceTypes?: readonly string[];
  /**
   * Profile per resource type applied in addition to the claimed ones: a map, or the `FHIR_DEFAULT_PROFILES`
   * syntax (`none`, or `Type=url,...`). Default: `process.env.FHIR_DEFAULT_PROFILES`, else the French set.
   */
  defaultProfiles?: DefaultProfiles | string;
  /** Severity for a `meta.profile` the server does not know. Default `warning`: R4 lets servers ignore profiles they do not know. */
  unknownProfiles?: 'error' | 'warning';
  /** Folder of StructureDefinitions, ValueSets and CodeSystems to load (default: the repository's `profiles/`). */
  profilesDir?: string;
  /**
   * Severity of the project's own rules (the `dossier-*` profiles: a vaccine's lot number, French identifiers
   * on recorders and performers) when they apply only as a type's default profile. Default `warning`: they
   * go beyond FR Core and ANS, and ordinary R4 data from a hospital or a lab must not be refused for them.
   * A resource that claims such a profile in `meta.profile` is always held to it.
   */
  projectRules?: 'error' | 'warning';
}

/** Loaded definitions and terminology, shared by every validator built on them (loading takes about a second). */
export interface ValidationContext {
  registry: DefinitionRegistry;
  terminology: TerminologyService;
}

let sharedContext: ValidationContext | undefined;

export function loadValidationContext(profilesDir = PROFILES_DIR): ValidationContext {
  if (profilesDir === PROFILES_DIR && sharedContext) return sharedContext;
  const registry = DefinitionRegistry.load(profilesDir);
  const context = { registry, terminology: loadTerminology([...registry.valueSets, ...registry.codeSystems]) };
  if (profilesDir === PROFILES_DIR) sharedContext = context;
  return context;
}

/**
 * Validation on every write: the base R4 JSON schema first (a failure there stops, HTTP 400), then the
 * resource's profiles — the known profiles it claims in `meta.profile` plus the default profile of its
 * type — and the French rules (HTTP 422 when they fail). Warnings never block.
 */
export class ProfileValidator implements ResourceValidator {
  private readonly schema: SchemaValidator;
  private readonly structure: StructureValidator;
  private readonly defaults: DefaultProfiles;
  private readonly unknownProfiles: 'error' | 'warning';
  private readonly projectRules: 'error' | 'warning';

  constructor(options: ProfileValidatorOptions = {}, context: ValidationContext = loadValidationContext(options.profilesDir)) {
    this.schema = new SchemaValidator(options.resourceTypes ?? []);
    this.structure = new StructureValidator(context.registry, context.terminology, {
      unknownExtensions: options.unknownExtensions ?? 'warning',
      allowedExtensionDomains: options.allowedExtensionDomains ?? [],
      allowExampleUrls: options.allowExampleUrls ?? true,
    });
    const defaults = options.defaultProfiles ?? process.env.FHIR_DEFAULT_PROFILES;
    this.defaults = typeof defaults === 'string' || defaults === undefined ? parseDefaultProfiles(defaults) : defaults;
    this.unknownProfiles = options.unknownProfiles ?? 'warning';
    this.projectRules = options.projectRules ?? 'warning';
    this.context = context;
    // Compile what every write will need now, not on the first request: fails fast on a broken profile.
    for (const [type, url] of Object.entries(this.defaults)) {
      const profile = this.structure.profile(url);
      if (!profile) throw new Error(`Default profile for ${type} not found: ${url}`);
      if (profile.type !== type) throw new Error(`Default profile for ${type} is a profile of ${profile.type}: ${url}`);
    }
    for (const type of options.resourceTypes ?? []) this.structure.profile(`http://hl7.org/fhir/StructureDefinition/${type}`);
  }

  private readonly context: ValidationContext;
  /** A project profile's own rules, relaxed to warnings where it applies only by default; built on first use. */
  private readonly projectRulesOf = new Map<CompiledProfile, RelaxedRules>();

  validate(resourceType: string, resource: unknown): Issue[] {
    return this.check(resourceType, resource).issues;
  }

  check(resourceType: string, resource: unknown, options: CheckOptions = {}): ValidationResult {
    const nominated = options.profile === undefined ? undefined : this.nominatedProfile(options.profile, resourceType);
    if (resourceType === 'Bundle' && Array.isArray((resource as { entry?: unknown } | null)?.entry)) return this.checkBundle(resource as Json, nominated);
    const schemaIssues = this.schemaIssues(resourceType, resource);
    if (schemaIssues.some(isError)) return { issues: [...(nominated?.issues ?? []), ...schemaIssues], failedStage: 'schema' };
    const issues = [...schemaIssues, ...this.profileIssues(resourceType, resource as Json & { resourceType: string }, nominated, resource as Json, options.requiredProfiles)];
    return { issues, failedStage: issues.some(isError) ? 'profile' : undefined };
  }

  /**
   * A Bundle is checked as its shell (the Bundle without its entries' resources: schema, profiles, the bdl-*
   * invariants, which still see the resources, and the bundle rules), then each entry's resource as a
   * resource of its own type would be (its claimed profiles and its type's default), its issues placed at
   * `Bundle.entry[i].resource`. Through the schema's ResourceList `oneOf` an entry of the wrong shape gave
   * one error per R4 type, and a two-entry Bundle took seconds.
   */
  private checkBundle(bundle: Json, nominated?: { profile?: CompiledProfile; issues: Issue[] }): ValidationResult {
    const entries = bundle.entry as unknown[];
    const shell = { ...bundle, entry: entries.map((entry) => (isObject(entry) && 'resource' in entry ? withoutResource(entry) : entry)) };
    // The Bundle profiles that apply (nominated, claimed) may slice the entries by profile (IPS: the Composition
    // slice takes a Composition-uv-ips): each entry's resource is then held to its slice's profile, and the slices
    // are decided as for a transaction, without validating each resource twice.
    const oracles = new Map<CompiledProfile, SliceOracle>();
    const entryProfiles = entries.map((): string[] => []);
    for (const profile of this.profilesFor(bundle as Json & { resourceType: string }, nominated).profiles) {
      if (profile.type !== 'Bundle' || !(profile.byPath.get('Bundle.entry')?.slices.length ?? 0)) continue;
      const oracle = this.entrySliceOracle(profile);
      oracles.set(profile, oracle);
      this.collectEntryProfiles(profile, entries, oracle, entryProfiles);
    }
    const entryIssues: Issue[] = [];
    let entrySchemaFailed = false;
    entries.forEach((entry, index) => {
      if (!isObject(entry) || !('resource' in entry)) return;
      const at = `Bundle.entry[${index}].resource`;
      const resource = entry.resource;
      if (!isObject(resource) || typeof resource.resourceType !== 'string') {
        entrySchemaFailed = true;
        entryIssues.push({ severity: 'error', code: 'structure', expression: [at], diagnostics: `${at}: must be a resource (a JSON object with a resourceType)` });
        return;
      }
      const required = entryProfiles[index]!;
      const result = this.check(resource.resourceType, resource, required.length > 0 ? { requiredProfiles: required } : {});
      if (result.failedStage === 'schema') entrySchemaFailed = true;
      entryIssues.push(...result.issues.map((issue) => rebased(issue, resource.resourceType as string, at)));
    });
    // An entry holding only its resource is empty in the shell, not in the Bundle.
    const emptied = new Set(entries.flatMap((entry, index) => (isObject(entry) && Object.keys(entry).length === 1 && 'resource' in entry ? [`Bundle.entry[${index}]`] : [])));
    const schemaIssues = this.schema.validate('Bundle', shell).filter((issue) => !(emptied.has(issue.expression?.[0] ?? '') && issue.diagnostics.endsWith('Objects must not be empty')));
    if (schemaIssues.some(isError) || entrySchemaFailed) {
      return { issues: [...(nominated?.issues ?? []), ...schemaIssues, ...entryIssues], failedStage: 'schema' };
    }
    const issues = [...schemaIssues, ...this.profileIssues('Bundle', bundle as Json & { resourceType: string }, nominated, shell, undefined, oracles), ...entryIssues];
    return { issues, failedStage: issues.some(isError) ? 'profile' : undefined };
  }

  /**
   * The profiles a resource of `resourceType` is held to here (CapabilityStatement.rest.resource.supportedProfile):
   * its type's default profile first, then every other profile of the type the server has loaded, which a
   * resource claiming it is checked against. Base R4 is left out: every resource is held to it.
   */
  supportedProfiles(resourceType: string): string[] {
    const loaded = this.context.registry
      .all()
      .filter((definition) => definition.kind === 'resource' && definition.derivation === 'constraint' && definition.type === resourceType && definition.snapshot)
      .map((definition) => definition.url)
      .sort();
    const fallback = this.defaults[resourceType];
    return fallback === undefined ? loaded : [fallback, ...loaded.filter((url) => url !== fallback)];
  }

  /** A profile asked for by canonical ($validate's `profile`): unknown, or of another type, is an error. */
  private nominatedProfile(canonical: string, resourceType: string): { profile?: CompiledProfile; issues: Issue[] } {
    const profile = this.structure.profile(canonical);
    if (!profile) {
      return { issues: [{ severity: 'error', code: 'not-supported', diagnostics: `Profile ${canonical} is not known to this server: the resource cannot be validated against it` }] };
    }
    if (profile.type !== resourceType) {
      return { issues: [{ severity: 'error', code: 'invalid', diagnostics: `Profile ${canonical} is a profile of ${profile.type}, not ${resourceType}` }] };
    }
    return { profile, issues: [] };
  }

  /**
   * The profiles applied to a resource: claimed and known, then its type's default (or, when `nominated`
   * is given, that profile instead of the default); unknown claims are reported. `relaxed` is the default
   * when it is a project profile applied under FHIR_PROJECT_RULES=warning: its own rules only warn.
   */
  profilesFor(
    resource: { resourceType: string; meta?: { profile?: string[] } },
    nominated?: { profile?: CompiledProfile; issues: Issue[] },
    required: readonly string[] = [],
  ): { profiles: CompiledProfile[]; issues: Issue[]; relaxed?: CompiledProfile } {
    const profiles: CompiledProfile[] = [];
    const issues: Issue[] = [...(nominated?.issues ?? [])];
    if (nominated?.profile) profiles.push(nominated.profile);
    const claimed = resource.meta?.profile ?? [];
    [...claimed, ...required].forEach((url, index) => {
      const profile = this.structure.profile(url);
      const isClaim = index < claimed.length;
      const expression = isClaim ? `${resource.resourceType}.meta.profile[${index}]` : resource.resourceType;
      const what = isClaim ? `${expression}: profile ${url}` : `${expression}: profile ${url} (required of this entry by the Bundle's profile)`;
      if (!profile) {
        issues.push({ severity: this.unknownProfiles, code: 'not-supported', expression: [expression], diagnostics: `${what} is not known to this server, so the resource was not checked against it` });
      } else if (profile.type !== resource.resourceType) {
        issues.push({ severity: 'error', code: 'invalid', expression: [expression], diagnostics: `${what} is a profile of ${profile.type}, not ${resource.resourceType}` });
      } else if (!profiles.includes(profile)) {
        profiles.push(profile);
      }
    });
    const baseType = `http://hl7.org/fhir/StructureDefinition/${resource.resourceType}`;
    const fallback = nominated ? baseType : this.defaults[resource.resourceType] ?? baseType;
    // A claimed profile derived from the default (fr-core-patient-ins from fr-core-patient) already holds all its
    // rules; one derived from an alternative the default set names (MHD Simplified Publish) replaces it.
    const base = this.structure.profile(fallback);
    const replacedBy = base ? [base.url, ...(nominated ? [] : ALTERNATIVES_TO_DEFAULT[stripVersion(base.url)] ?? [])] : [];
    if (!base || profiles.some((profile) => replacedBy.some((url) => this.derivesFrom(profile.url, url)))) return { profiles, issues };
    profiles.push(base);
    // Held to base R4 as errors; what the project's profile adds is reported, as warnings.
    if (this.projectRules === 'warning' && isProjectProfile(base.url)) return { profiles, issues, relaxed: base };
    return { profiles, issues };
  }

  checkBundleProfiles(bundle: unknown): BundleProfileCheck {
    const object = bundle as Json & { resourceType: string; meta?: { profile?: unknown } };
    const entries = Array.isArray(object.entry) ? (object.entry as unknown[]) : [];
    const entryProfiles = entries.map((): string[] => []);
    const issues: Issue[] = [];
    const claimed = Array.isArray(object.meta?.profile) ? (object.meta.profile as unknown[]).filter((url): url is string => typeof url === 'string') : [];
    claimed.forEach((url, index) => {
      const profile = this.structure.profile(url);
      const expression = `Bundle.meta.profile[${index}]`;
      if (!profile) {
        issues.push({ severity: this.unknownProfiles, code: 'not-supported', expression: [expression], diagnostics: `${expression}: profile ${url} is not known to this server, so the Bundle was not checked against it` });
        return;
      }
      if (profile.type !== 'Bundle') {
        issues.push({ severity: 'error', code: 'invalid', expression: [expression], diagnostics: `${expression}: profile ${url} is a profile of ${profile.type}, not Bundle` });
        return;
      }
      const oracle = this.entrySliceOracle(profile);
      issues.push(...this.structure.validate(object, profile, 'Bundle', { nestedResources: false, oracle }));
      this.collectEntryProfiles(profile, entries, oracle, entryProfiles);
    });
    return { issues, entryProfiles };
  }

  /** Adds to `entryProfiles` (by entry index) the profiles the slice each entry falls in requires of its resource. */
  private collectEntryProfiles(bundleProfile: CompiledProfile, entries: unknown[], oracle: SliceOracle, entryProfiles: string[][]): void {
    const sliced = bundleProfile.byPath.get('Bundle.entry');
    if (!sliced || sliced.slices.length === 0) return;
    entries.forEach((entry, position) => {
      const slice = findSlice(sliced, { value: entry, type: 'BackboneElement', expression: `Bundle.entry[${position}]`, elementPath: 'Bundle.entry' }, oracle);
      const resourceDefinition = slice?.children.find((child) => child.name === 'resource');
      for (const type of resourceDefinition?.types ?? []) {
        for (const required of type.profiles) {
          if (stripVersion(required) !== `http://hl7.org/fhir/StructureDefinition/${type.code}` && !entryProfiles[position]!.includes(required)) entryProfiles[position]!.push(required);
        }
      }
    });
  }

  /**
   * How a Bundle profile's entry slices that tell resources apart by profile are decided without validating
   * each resource twice: a resource claiming the slice's profile (or one derived from it) is in the slice, and
   * so is any resource of a type only one such slice takes, its conformance then checked when its entry runs.
   * Only where several slices take the type (PDSm: a SubmissionSet or a Folder, both Lists) and the resource
   * claims neither is it validated here to tell which. A slice's profile the server does not know is decided
   * by type alone.
   */
  private entrySliceOracle(bundleProfile: CompiledProfile): SliceOracle {
    const slicesByType = new Map<string, number>();
    for (const slice of bundleProfile.byPath.get('Bundle.entry')?.slices ?? []) {
      for (const type of slice.children.find((child) => child.name === 'resource')?.types ?? []) slicesByType.set(type.code, (slicesByType.get(type.code) ?? 0) + 1);
    }
    return {
      inValueSet: (value, type, valueSet) => this.structure.inValueSet(value, type, valueSet),
      conformsTo: (value, type, profileUrl) => {
        const resource = value as { resourceType?: unknown; meta?: { profile?: unknown } } | null;
        if (!resource || typeof resource !== 'object' || resource.resourceType !== type) return false;
        const profile = this.structure.profile(profileUrl);
        if (!profile) return true;
        const claims = Array.isArray(resource.meta?.profile) ? (resource.meta.profile as unknown[]) : [];
        if (claims.some((url) => typeof url === 'string' && this.derivesFrom(stripVersion(url), profile.url))) return true;
        if ((slicesByType.get(type) ?? 0) <= 1) return true;
        return this.structure.conformsTo(value, type, profileUrl);
      },
    };
  }

  /** Whether `url` is `ancestor` or constrains it, through baseDefinition (snapshots carry every inherited rule). */
  private derivesFrom(url: string, ancestor: string): boolean {
    // A constraint's snapshot carries every rule of its type's base definition, whether or not each profile
    // between them is loaded (PDSm's SubmissionSet constrains IHE MHD's, which is not shipped).
    const definition = this.context.registry.get(url);
    if (definition?.derivation === 'constraint' && definition.snapshot && ancestor === `http://hl7.org/fhir/StructureDefinition/${definition.type}`) return true;
    for (let current: string | undefined = url; current; current = this.context.registry.get(current)?.baseDefinition) {
      if (stripVersion(current) === ancestor) return true;
    }
    return false;
  }

  /**
   * The JSON schema, with contained resources checked by their own type's validator: through the schema's
   * ResourceList `oneOf` a PDSm document with one contained Patient took 2 ms; per type it takes microseconds.
   */
  private schemaIssues(resourceType: string, resource: unknown): Issue[] {
    const contained = (resource as { contained?: unknown }).contained;
    if (!Array.isArray(contained) || contained.some((c) => typeof c?.resourceType !== 'string')) return this.schema.validate(resourceType, resource);
    const { contained: _checkedOneByOne, ...container } = resource as Record<string, unknown>;
    const issues = this.schema.validate(resourceType, container);
    contained.forEach((inner: { resourceType: string }, index: number) => {
      const prefix = `${resourceType}.contained[${index}]`;
      for (const issue of this.schema.validate(inner.resourceType, inner)) issues.push(rebased(issue, inner.resourceType, prefix, false));
    });
    return issues;
  }

  /**
   * `own`: the part of `resource` these checks walk, when the resources it holds are checked apart (a
   * Bundle's shell); structure checks still read `resource` whole for its invariants, without entering them.
   */
  private profileIssues(
    resourceType: string,
    resource: Json & { resourceType: string },
    nominated?: { profile?: CompiledProfile; issues: Issue[] },
    own: Json = resource,
    required?: readonly string[],
    oracles?: ReadonlyMap<CompiledProfile, SliceOracle>,
  ): Issue[] {
    const { profiles, issues, relaxed } = this.profilesFor(resource as { resourceType: string; meta?: { profile?: string[] } }, nominated, required);
    const nestedResources = own === resource;
    const seen = new Set<string>();
    // The message without its origin ` [label url, element id]`, whose id may hold a choice's `[x]`.
    const text = (issue: Issue) => issue.diagnostics.replace(/ \[[^[\]]*(?:\[x\][^[\]]*)*\]$/, '');
    for (const profile of profiles) {
      for (const issue of this.structure.validate(resource, profile, resourceType, { nestedResources, relaxed: profile === relaxed ? this.projectRulesAsWarnings(profile) : undefined, oracle: oracles?.get(profile) })) {
        // The same base rule fails the same way under each profile: report it once.
        const key = `${issue.severity}\u0000${text(issue)}`;
        if (seen.has(key)) continue;
        seen.add(key);
        issues.push(issue);
      }
    }
    const urls = profiles.map((p) => stripVersion(p.url));
    issues.push(...valueSetRuleIssues(own, urls, this.context.terminology, (url) => this.structure.profile(url)?.label ?? url));
    issues.push(...identifierIssues(own), ...identityIssues(own));
    if (resourceType === 'Bundle') issues.push(...bundleIssues(resource));
    return issues;
  }

  private projectRulesAsWarnings(profile: CompiledProfile): RelaxedRules {
    let rules = this.projectRulesOf.get(profile);
    if (!rules) {
      rules = {
        relaxes: ownRules(profile, this.context.registry),
        note: "a rule of this server's default profile: claim the profile in meta.profile, or set FHIR_PROJECT_RULES=error, to make it an error",
      };
      this.projectRulesOf.set(profile, rules);
    }
    return rules;
  }
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function withoutResource(entry: Json): Json {
  const { resource: _checkedApart, ...rest } = entry;
  return rest;
}

/**
 * An issue found on a resource of type `type`, placed where that resource sits (`Bundle.entry[2].resource`,
 * `Patient.contained[0]`): its expressions and diagnostics start with the type's name. `locate`: an issue
 * with no expression is given the resource's place.
 */
function rebased(issue: Issue, type: string, at: string, locate = true): Issue {
  const rebase = (text: string) => (text === type || text.startsWith(`${type}.`) || text.startsWith(`${type}:`) ? at + text.slice(type.length) : text);
  const expression = issue.expression?.map(rebase) ?? (locate ? [at] : undefined);
  return { ...issue, diagnostics: rebase(issue.diagnostics), ...(expression ? { expression } : {}) };
}

/** The project's own profiles (profiles/dossier), as opposed to the FR Core and ANS ones it also applies. */
function isProjectProfile(url: string): boolean {
  return url.startsWith(`${DOSSIER_PROFILE_BASE}/`);
}

/** The validator the server uses by default (see ProfileValidatorOptions for the options and their defaults). */
export function createProfileValidator(options: ProfileValidatorOptions = {}): ProfileValidator {
  return new ProfileValidator(options);
}
