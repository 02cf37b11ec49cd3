import type { Issue, IssueCode, IssueSeverity } from '../outcome.ts';
import { stripVersion, type TerminologyService } from '../terminology/terminology-service.ts';
import { inValueSet } from './bindings.ts';
import type { DefinitionRegistry, StructureDefinition } from './definitions.ts';
import { compileProfile, isPrimitive, type CompiledProfile, type ElementNode } from './element-tree.ts';
import { collectItems, deepEqual, matchesPattern, occurrenceCount, show, type Item } from './instance.ts';
import { narrativeProblems } from './narrative.ts';
import { findSlice, type SliceOracle } from './slicing.ts';

export interface StructureValidatorOptions {
  /** Extensions whose definition is not loaded: reported at this severity unless their URL is in an allowed domain. */
  unknownExtensions: 'error' | 'warning' | 'ignore';
  /** URL prefixes of extensions accepted without a definition (the reference validator's `-allow-extension-domain`). */
  allowedExtensionDomains: readonly string[];
  /** When false, `example.org` style URLs are refused, as the reference validator does outside examples. */
  allowExampleUrls: boolean;
}

const URL_TYPES = new Set(['uri', 'url', 'canonical']);

const EXAMPLE_URL = /^https?:\/\/([^/]*\.)?(example\.(org|com|net)|acme\.(com|org))(\/|$)/;

type Resource = Record<string, unknown> & { resourceType: string };

/**
 * Rules of one validation reported as warnings where they would be errors, each with `note` (why, and how
 * to make it an error): a default profile's own rules, under FHIR_PROJECT_RULES=warning.
 */
export interface RelaxedRules {
  /** Whether the rule `rule` (as reported: `min:…`, `constraint:key`, `pattern`…) of `node` is relaxed. */
  relaxes(node: ElementNode, rule: string): boolean;
  note: string;
}

/** Issues of one validation, deduplicated: a base rule restated by a profile is reported once. */
class Report {
  readonly issues: Issue[] = [];
  private readonly keys = new Set<string>();

  add(severity: IssueSeverity, code: IssueCode, expression: string, rule: string, message: string): void {
    const key = `${severity}\u0000${expression}\u0000${rule}`;
    if (this.keys.has(key)) return;
    this.keys.add(key);
    this.issues.push({ severity, code, diagnostics: `${expression}: ${message}`, expression: [expression] });
  }

  hasErrors(): boolean {
    return this.issues.some((issue) => issue.severity === 'error' || issue.severity === 'fatal');
  }
}

interface Scope {
  report: Report;
  resource: Resource;
  rootResource: Resource;
  relaxed?: RelaxedRules;
  /** False when the caller validates the resources inside (a Bundle's entries) with their own type's validator. */
  nestedResources?: boolean;
  /** Decides slices by profile; the validator itself (by validating the value) unless given. */
  oracle?: SliceOracle;
}

/**
 * Validates JSON instances against StructureDefinition snapshots: cardinality, types and choice types,
 * fixed/pattern values, maxLength, bindings, slicing, extensions (resolved by URL) and FHIRPath constraints.
 * Profiles are compiled on first use and kept.
 */
export class StructureValidator implements SliceOracle {
  private readonly compiled = new Map<string, CompiledProfile | null>();
  /** A datatype's child definitions by type code: looked up for every occurrence of every datatype. */
  private readonly typeChildren = new Map<string, ElementNode[]>();
  /** A datatype's root definition by type code, for its invariants. */
  private readonly typeRoots = new Map<string, ElementNode | null>();
  private compiledGeneration = 0;

  constructor(
    readonly registry: DefinitionRegistry,
    private readonly terminology: TerminologyService,
    private readonly options: StructureValidatorOptions,
  ) {}

  /** The compiled profile for a canonical URL (version ignored), or undefined when it is not loaded. */
  profile(canonical: string): CompiledProfile | undefined {
    if (this.compiledGeneration !== this.registry.generation) {
      // A StructureDefinition was stored or deleted since: compile again what may have changed.
      this.compiled.clear();
      this.typeChildren.clear();
      this.typeRoots.clear();
      this.compiledGeneration = this.registry.generation;
    }
    const url = stripVersion(canonical);
    let profile = this.compiled.get(url);
    if (profile === undefined) {
      const definition = this.registry.get(url);
      profile = definition?.snapshot ? compileProfile(definition) : null;
      this.compiled.set(url, profile);
    }
    return profile ?? undefined;
  }

  /**
   * Issues of `resource` against `profile` (a resource profile of the resource's type). With
   * `nestedResources: false` the resources it holds are left to the caller; its invariants still see them.
   * `relaxed`: the rules reported as warnings (a default profile's own rules, FHIR_PROJECT_RULES=warning).
   * `oracle`: what decides slices by profile, when the resources inside are not validated here.
   */
  validate(
    resource: Resource,
    profile: CompiledProfile,
    expression = resource.resourceType,
    options: { nestedResources?: boolean; relaxed?: RelaxedRules; oracle?: SliceOracle } = {},
  ): Issue[] {
    const report = new Report();
    this.checkResource(resource, profile, expression, { report, resource, rootResource: resource, relaxed: options.relaxed, nestedResources: options.nestedResources ?? true, oracle: options.oracle });
    return report.issues;
  }

  // --- SliceOracle ---

  inValueSet(value: unknown, type: string, valueSet: string): boolean | undefined {
    return inValueSet(this.terminology, value, type, valueSet);
  }

  conformsTo(value: unknown, type: string, profileUrl: string): boolean {
    const profile = this.profile(profileUrl);
    if (!profile || value === null || typeof value !== 'object') return false;
    const report = new Report();
    const resource = value as Resource;
    const item: Item = { value, type, expression: type, elementPath: type };
    this.checkItem(profile.root, item, { report, resource, rootResource: resource });
    return !report.hasErrors();
  }

  // --- walking ---

  private checkResource(resource: Resource, profile: CompiledProfile, expression: string, outer: Scope): void {
    const scope: Scope = { report: outer.report, resource, rootResource: outer.rootResource, relaxed: outer.relaxed, nestedResources: outer.nestedResources, oracle: outer.oracle };
    const item: Item = { value: resource, type: resource.resourceType, expression, elementPath: resource.resourceType };
    this.checkItem(profile.root, item, scope);
  }

  /** Checks one occurrence against the definition it matched, then walks its children. */
  private checkItem(node: ElementNode, item: Item, scope: Scope): void {
    if (node.fixed !== undefined && item.value !== undefined && !deepEqual(item.value, node.fixed)) {
      this.issue(scope, 'error', 'value', item, node, 'fixed', `Value is ${show(item.value)} but is fixed to ${show(node.fixed)}`);
    }
    if (node.pattern !== undefined && item.value !== undefined && !matchesPattern(item.value, node.pattern)) {
      this.issue(scope, 'error', 'value', item, node, 'pattern', `Value ${show(item.value)} does not match the pattern ${show(node.pattern)}`);
    }
    if (node.binding && item.value !== undefined) this.checkBinding(node, item, scope);

    if (isPrimitive(item.type)) {
      this.checkPrimitive(node, item, scope);
      return;
    }
    const object = item.value as Record<string, unknown>;
    if (object === null || typeof object !== 'object') return;
    this.checkConstraints(node, item, scope);

    if (typeof object.resourceType === 'string' && item.elementPath !== object.resourceType) {
      if (scope.nestedResources !== false) this.checkNestedResource(object as Resource, item.expression, scope);
      return;
    }
    // A profiled type (e.g. HumanName → fr-core-human-name) brings its own element tree.
    let coveredByProfile = false;
    for (const url of node.types.find((t) => t.code === item.type)?.profiles ?? []) {
      const profile = this.profile(url);
      if (!profile || profile === node.profile) continue;
      coveredByProfile = true;
      this.checkChildren(profile.root.children, object, item, scope);
      this.checkConstraints(profile.root, item, scope);
    }
    // R4 snapshots give the elements that use a datatype ele-1 only: the type's own invariants (Reference's
    // ref-1, Period's per-1, Quantity's qty-3…) are on its definition's root, checked for every occurrence,
    // inside another datatype (Annotation.authorReference, Identifier.assigner) as in a resource. A profiled
    // type's profile restates them.
    if (!coveredByProfile) {
      const root = this.typeRoot(item.type);
      if (root && root !== node) this.checkConstraints(root, item, scope);
    }
    const children = this.childrenOf(node, item.type);
    if (node.children.length > 0 || !coveredByProfile) this.checkChildren(children, object, item, scope);
  }

  /** The root of a datatype's base definition, with its invariants; undefined for an unknown type. */
  private typeRoot(type: string): ElementNode | undefined {
    let root = this.typeRoots.get(type);
    if (root === undefined) this.typeRoots.set(type, (root = this.profile(`http://hl7.org/fhir/StructureDefinition/${type}`)?.root ?? null));
    return root ?? undefined;
  }

  private checkPrimitive(node: ElementNode, item: Item, scope: Scope): void {
    const value = item.value;
    if (typeof value === 'string') {
      if (node.maxLength !== undefined && value.length > node.maxLength) {
        this.issue(scope, 'error', 'too-long', item, node, 'maxLength', `Value is ${value.length} characters long, more than the maximum ${node.maxLength}`);
      }
      if (!this.options.allowExampleUrls && URL_TYPES.has(item.type) && EXAMPLE_URL.test(value)) {
        this.issue(scope, 'error', 'invalid', item, node, 'example-url', `Example URLs are not allowed in this context (${value})`);
      }
    }
    if (value !== undefined) {
      this.checkConstraints(node, item, scope);
      if (item.type === 'xhtml' && typeof value === 'string') {
        for (const problem of narrativeProblems(value)) this.issue(scope, 'error', 'security', item, node, `xhtml:${problem}`, problem);
      }
    }
    if (item.element) {
      const children = this.childrenOf(node, item.type).filter((child) => child.name !== 'value');
      this.checkChildren(children, item.element, item, scope);
    }
  }

  /** Children definitions that apply inside an occurrence: the profile's own, else those of the type's base definition. */
  private childrenOf(node: ElementNode, type: string): ElementNode[] {
    if (node.children.length > 0) return node.children;
    if (node.contentReference) {
      const target = node.profile.byPath.get(node.contentReference.replace(/^#/, '').replace(/^.*#/, ''));
      if (target) return target.children;
    }
    let children = this.typeChildren.get(type);
    if (!children) this.typeChildren.set(type, (children = this.profile(`http://hl7.org/fhir/StructureDefinition/${type}`)?.root.children ?? []));
    return children;
  }

  private checkChildren(children: ElementNode[], object: Record<string, unknown>, parent: Item, scope: Scope): void {
    for (const child of children) {
      // Most definitions have no occurrence in a given instance: settle those without reading anything.
      if (!child.choice && object[child.name] === undefined && (!child.primitive || object[child.underscoreName] === undefined)) {
        if (child.min > 0) this.checkCardinality(child, 0, parent, scope);
        continue;
      }
      // Most of an instance's values are plain primitives: counted in place, no occurrence built for each.
      if (child.plainPrimitive && object[child.underscoreName] === undefined && (this.options.allowExampleUrls || !URL_TYPES.has(child.types[0]!.code))) {
        this.checkCardinality(child, occurrenceCount(object[child.name]), parent, scope);
        continue;
      }
      const { items, disallowedTypes } = collectItems(object, child, parent.expression, parent.elementPath);
      for (const wrong of disallowedTypes) {
        const allowed = child.types.map((t) => t.code).join(', ');
        this.issue(scope, 'error', 'structure', { ...parent, expression: wrong.expression }, child, `type:${wrong.key}`,
          `The definition allows for the types [${allowed}] but found type ${wrong.type}`);
      }
      for (const item of items) item.definitionPath = child.path;
      // An occurrence of a disallowed type is still an occurrence: it is reported once, as a type error.
      this.checkCardinality(child, items.length + disallowedTypes.length, parent, scope);
      if (items.length === 0) continue;
      const isExtension = (child.name === 'extension' || child.name === 'modifierExtension') && child.types[0]?.code === 'Extension';
      if (child.slices.length > 0 || child.slicing) {
        this.checkSlices(child, items, parent, scope, isExtension);
      } else {
        for (const item of items) {
          if (isExtension) this.checkExtension(child, item, parent, scope);
          else this.checkItem(child, item, scope);
        }
      }
    }
  }

  private checkCardinality(node: ElementNode, count: number, parent: Item, scope: Scope, label = node.path): void {
    if (count >= node.min && count <= node.max) return;
    const at = { expression: `${parent.expression}.${node.name}` };
    if (count < node.min) {
      this.issue(scope, 'error', 'required', at, node, `min:${label}`, `${label}: minimum required = ${node.min}, but only found ${count}`);
    } else if (count > node.max) {
      this.issue(scope, 'error', 'structure', at, node, `max:${label}`, `${label}: maximum allowed = ${node.max}, but found ${count}`);
    }
  }

  private checkSlices(sliced: ElementNode, items: Item[], parent: Item, scope: Scope, isExtension: boolean): void {
    const assigned = items.map((item) => findSlice(sliced, item, scope.oracle ?? this));
    for (const slice of sliced.slices) {
      const count = assigned.filter((s) => s === slice).length;
      this.checkCardinality(slice, count, parent, scope, `${sliced.path}:${slice.sliceName}`);
    }
    const rules = sliced.slicing?.rules ?? 'open';
    let lastIndex = -1;
    let unmatchedSeen = false;
    items.forEach((item, position) => {
      const slice = assigned[position];
      if (!slice) {
        unmatchedSeen = true;
        if (rules === 'closed') {
          this.issue(scope, 'error', 'structure', item, sliced, 'closed-slicing', `This element does not match any known slice of ${sliced.path} and the slicing is closed`);
        }
      } else {
        const index = sliced.slices.indexOf(slice);
        if (sliced.slicing?.ordered && index < lastIndex) {
          this.issue(scope, 'error', 'structure', item, sliced, 'ordered-slicing', `Slice ${slice.sliceName} is out of order: the slicing of ${sliced.path} is ordered`);
        }
        if (rules === 'openAtEnd' && unmatchedSeen) {
          this.issue(scope, 'error', 'structure', item, sliced, 'open-at-end', `Slice ${slice.sliceName} comes after an element that matches no slice: the slicing of ${sliced.path} is openAtEnd`);
        }
        lastIndex = Math.max(lastIndex, index);
      }
      const definition = slice ?? sliced;
      if (isExtension) this.checkExtension(definition, item, parent, scope);
      else this.checkItem(definition, item, scope);
    });
  }

  /** An extension: resolved by its url, checked against its definition and its allowed contexts. */
  private checkExtension(node: ElementNode, item: Item, parent: Item, scope: Scope): void {
    const extension = item.value as Record<string, unknown>;
    if (extension === null || typeof extension !== 'object') return;
    const url = extension.url;
    const hasValue = Object.keys(extension).some((key) => key.startsWith('value'));
    if (hasValue === (Array.isArray(extension.extension) && extension.extension.length > 0)) {
      this.issue(scope, 'error', 'invariant', item, node, 'ext-1', 'Constraint failed: ext-1: Must have either extensions or value[x], not both');
    }
    if (typeof url !== 'string') {
      this.issue(scope, 'error', 'structure', item, node, 'extension-url', 'Extension.url is required in order to identify, use and validate the extension');
      this.checkItem(node, item, scope);
      return;
    }
    const sliceProfile = node.sliceName ? node.types[0]?.profiles[0] : undefined;
    const definition = this.registry.get(sliceProfile ?? url);
    if (url.includes('|')) {
      this.issue(scope, 'error', 'structure', item, node, 'extension-version', `The extension URL must not contain a version (${url})`);
    }
    if (!definition) {
      if (!node.sliceName) this.unknownExtension(url, item, node, scope, node.name === 'modifierExtension');
      this.checkItem(node, item, scope);
      return;
    }
    if (!sliceProfile) this.checkContext(definition, url, item, parent, node, scope);
    const profile = this.profile(definition.url);
    // Nested extensions (a complex extension's parts) use relative urls their parent's definition slices.
    if (profile && profile !== node.profile) this.checkItem(profile.root, item, scope);
    if (node.children.length > 0 || !profile) this.checkItem(node, item, scope);
  }

  /** An unknown modifier extension is always an error: its meaning may change the resource's (R4 extensibility.html §modifierExtension). */
  private unknownExtension(url: string, item: Item, node: ElementNode, scope: Scope, modifier: boolean): void {
    if (!/^[a-z][a-z0-9+.-]*:/i.test(url)) return; // a relative url names a part of a complex extension
    if (this.options.allowedExtensionDomains.some((domain) => url.startsWith(domain))) return;
    if (this.options.allowExampleUrls && EXAMPLE_URL.test(url)) return;
    const severity = modifier ? 'error' : this.options.unknownExtensions;
    if (severity === 'ignore') return;
    this.issue(scope, severity, 'structure', item, node, 'unknown-extension', `The extension ${url} could not be found so is not allowed here`);
  }

  /** StructureDefinition.context: where an extension may be used (R4 extensibility.html §context). */
  private checkContext(definition: StructureDefinition, url: string, item: Item, parent: Item, node: ElementNode, scope: Scope): void {
    const contexts = definition.context ?? [];
    if (contexts.length === 0) return;
    const parentExtensionUrl = parent.type === 'Extension' ? (parent.value as { url?: string })?.url : undefined;
    const path = parent.elementPath;
    const isResource = path === scope.resource.resourceType;
    const allowed = contexts.some(({ type, expression }) => {
      if (type === 'fhirpath') return true;
      if (type === 'extension') return expression === parentExtensionUrl;
      // An element context names a type (`HumanName`), a path in a resource (`Patient.name`) or in a type (`HumanName.family`).
      const wanted = expression.replace(/\[x\]/g, '');
      return wanted === 'Element' || wanted === parent.type || wanted === path || wanted === parent.definitionPath?.replace(/\[x\]/g, '')
        || ((wanted === 'Resource' || wanted === 'DomainResource') && isResource);
    });
    if (!allowed) {
      const list = contexts.map((c) => `${c.type === 'element' ? 'e' : c.type}:${c.expression}`).join(', ');
      this.issue(scope, 'error', 'structure', parent, node, `context:${url}`,
        `The extension ${url} is not allowed to be used at this point (this element is [${parent.type}, ${path}]; allowed = ${list})`);
    }
  }

  private checkBinding(node: ElementNode, item: Item, scope: Scope): void {
    const binding = node.binding!;
    const member = inValueSet(this.terminology, item.value, item.type, binding.valueSet);
    if (member !== false) return;
    const severity = binding.strength === 'required' ? 'error' : 'warning';
    const codes = show(item.value);
    const valueSet = stripVersion(binding.valueSet);
    this.issue(scope, severity, 'code-invalid', item, node, `binding:${valueSet}`, `${codes} is not in the value set ${valueSet} (${binding.strength} binding)`);
  }

  private checkConstraints(node: ElementNode, item: Item, scope: Scope): void {
    if (node.constraints.length === 0) return;
    const env = { resource: scope.resource, rootResource: scope.rootResource };
    for (const constraint of node.constraints) {
      let holds: boolean;
      try {
        holds = constraint.holds(item.value, env);
      } catch {
        continue; // an expression fhirpath.js cannot run on this data is not a fault of the data
      }
      if (!holds) {
        this.issue(scope, constraint.severity, 'invariant', item, node, `constraint:${constraint.key}`,
          `Constraint failed: ${constraint.key}: ${constraint.human}`);
      }
    }
  }

  /** contained resources, Bundle.entry.resource...: checked against their own type's definition. */
  private checkNestedResource(resource: Resource, expression: string, scope: Scope): void {
    const base = this.profile(`http://hl7.org/fhir/StructureDefinition/${resource.resourceType}`);
    if (!base) {
      this.issue(scope, 'error', 'not-supported', { expression }, undefined, 'unknown-type',
        `Unknown resource type ${resource.resourceType}`);
      return;
    }
    this.checkResource(resource, base, expression, scope);
  }

  private issue(scope: Scope, severity: IssueSeverity, code: IssueCode, item: Pick<Item, 'expression'>, node: ElementNode | undefined, rule: string, message: string): void {
    const origin = node ? ` [${node.profile.label} ${node.profile.url}, element ${node.id}]` : '';
    if (severity === 'error' && node && scope.relaxed?.relaxes(node, rule)) {
      scope.report.add('warning', code, item.expression, rule, `${message}${origin} (${scope.relaxed.note})`);
      return;
    }
    scope.report.add(severity, code, item.expression, rule, `${message}${origin}`);
  }
}
