import r4Model from 'fhirpath/fhir-context/r4';
import { splitTopLevel } from './paths.ts';

/** The R4 model fhirpath.js ships: each element path's type, and where a repeated structure is defined. */
const model = r4Model as unknown as {
  path2Type: Record<string, string>;
  pathsDefinedElsewhere: Record<string, string>;
};

/**
 * Whether every element a token parameter's expression (one type's part: registry.ts expressionFor) reaches is
 * an Identifier (`Patient.identifier`, `DocumentReference.masterIdentifier | DocumentReference.identifier`,
 * `(Composition.relatesTo.target.ofType(Identifier))`), by the element types of the R4 model. Those are the
 * parameters whose values the index holds as keyed hashes when encryption is on (identifier-hash.ts): a part
 * this cannot type (a function, an extension's value) makes the answer no, and the parameter stays in clear.
 */
export function reachesOnlyIdentifiers(expression: string): boolean {
  return splitTopLevel(expression, '|').every((part) => elementType(part.trim()) === 'Identifier');
}

/** The type of the element one path reaches, when the model and the path's form tell it. */
function elementType(part: string): string | undefined {
  let path = part;
  while (/^\(.*\)$/.test(path) && splitTopLevel(path.slice(1, -1), '|').length === 1) path = path.slice(1, -1).trim();
  // A path ending with a type test names its type (`target.ofType(Identifier)`, `value as Identifier`).
  const typed = /(?:\.(?:ofType|as)\(([A-Za-z]+)\)|\s+as\s+([A-Za-z]+))$/.exec(path);
  if (typed) return typed[1] ?? typed[2];
  const plain = withoutWhere(path);
  if (plain === undefined || !/^[A-Z][A-Za-z]*(\.[a-z][A-Za-z]*)+$/.test(plain)) return undefined;
  return typeOfPath(plain);
}

/** `path` without its `.where(…)` filters (they select elements, not change their type); undefined if unbalanced. */
function withoutWhere(path: string): string | undefined {
  let out = '';
  for (let i = 0; i < path.length; ) {
    if (!path.startsWith('.where(', i)) {
      out += path[i++];
      continue;
    }
    let depth = 0;
    let j = i + '.where'.length;
    for (; j < path.length; j++) {
      if (path[j] === '(') depth++;
      else if (path[j] === ')' && --depth === 0) break;
    }
    if (depth !== 0) return undefined;
    i = j + 1;
  }
  return out;
}

/** `Patient.contact.name` → HumanName: through backbone elements defined elsewhere and through data types. */
function typeOfPath(path: string): string | undefined {
  const direct = model.path2Type[path];
  if (direct) return direct;
  const steps = path.split('.');
  for (let n = steps.length - 1; n > 0; n--) {
    const head = steps.slice(0, n).join('.');
    const rest = steps.slice(n);
    const elsewhere = model.pathsDefinedElsewhere[head];
    if (elsewhere) return typeOfPath([elsewhere, ...rest].join('.'));
    const type = model.path2Type[head];
    if (type && type !== 'BackboneElement' && type !== 'Element') return typeOfPath([type, ...rest].join('.'));
  }
  return undefined;
}
