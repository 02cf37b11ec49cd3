import type { DefinitionRegistry } from './definitions.ts';
import { compileProfile, type CompiledProfile, type ElementNode } from './element-tree.ts';
import { generateSnapshot } from './snapshot-generator.ts';

/**
 * Which failures of a profile come from its own rules, those its differential adds over its base: as
 * `(node, rule)` → true, for the rule names the StructureValidator reports (`min:…`, `constraint:key`...).
 * Each element is compared with what the base alone says of it (the same snapshot generated from a
 * differential that names the elements and changes nothing). A failure counts as the profile's own only
 * when the base could not have reported it: a minimum raised from 0, a maximum set where the base has none,
 * a fixed value or pattern where the base has none, an invariant key the base lacks, slicing the base does
 * not define, a binding where the base binds nothing, or not required. Anything else (a type narrowed, a
 * minimum raised from 1 to 2, extension rules) is the base's: a base error is never told apart from a
 * profile's by the count or value it failed on, it stays an error.
 *
 * For profiles whose snapshot comes from `generateSnapshot` over their baseDefinition (the project's own).
 */
export function ownRules(profile: CompiledProfile, registry: DefinitionRegistry): (node: ElementNode, rule: string) => boolean {
  const definition = profile.definition;
  const base = definition.baseDefinition ? registry.get(definition.baseDefinition) : undefined;
  if (!base) throw new Error(`${profile.url}: base ${definition.baseDefinition} not found`);
  const unchanged = (definition.differential?.element ?? []).map(({ id, path }) => ({ id, path }));
  const element = generateSnapshot({ ...definition, differential: { element: unchanged } }, base, (type) => registry.baseOf(type));
  const baseline = byId(compileProfile({ ...definition, snapshot: { element } }));

  return (node, rule) => {
    if (node.profile !== profile) return false;
    const before = baseline.get(node.id);
    if (!before) return false;
    const kind = rule.slice(0, rule.includes(':') ? rule.indexOf(':') : undefined);
    switch (kind) {
      case 'min':
        return before.min === 0 && node.min > 0;
      case 'max':
        return before.max === Number.POSITIVE_INFINITY && node.max < before.max;
      case 'fixed':
      case 'pattern':
        return before.fixed === undefined && before.pattern === undefined;
      case 'maxLength':
        return before.maxLength === undefined;
      case 'binding':
        return before.binding?.strength !== 'required';
      case 'constraint': {
        const baseKeys = new Set(before.constraints.flatMap((constraint) => constraint.key.split(', ')));
        return rule.slice('constraint:'.length).split(', ').every((key) => !baseKeys.has(key));
      }
      case 'closed-slicing':
      case 'ordered-slicing':
      case 'open-at-end':
        return before.slicing === undefined;
      default:
        return false;
    }
  };
}

function byId(profile: CompiledProfile): Map<string, ElementNode> {
  const nodes = new Map<string, ElementNode>();
  const visit = (node: ElementNode) => {
    nodes.set(node.id, node);
    node.children.forEach(visit);
    node.slices.forEach(visit);
  };
  visit(profile.root);
  return nodes;
}
