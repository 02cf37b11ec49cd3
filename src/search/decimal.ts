/**
 * Decimal search values as written (`5.4`, `100.00`, `1e2`), handled as text or exact integers scaled
 * by a power of ten: a product computed in floating point would turn 5400 µg into 0.005399999… g, and
 * `ge5.4 mg` would miss it.
 */
export interface Decimal {
  coefficient: bigint;
  exponent: number;
}

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/** `-1.25e3` → { coefficient: -125n, exponent: 1 }; undefined when the text is not a decimal. */
export function parseDecimal(text: string): Decimal | undefined {
  const match = DECIMAL.exec(text);
  if (!match || (match[2] === '' && !match[3])) return undefined;
  const fraction = match[3] ?? '';
  return { coefficient: BigInt(`${match[1]}${match[2]}${fraction}`), exponent: Number(match[4] ?? 0) - fraction.length };
}

export function multiply(a: Decimal, b: Decimal): Decimal {
  let coefficient = a.coefficient * b.coefficient;
  let exponent = a.exponent + b.exponent;
  // Trailing zeros only lengthen the text that goes to SQL.
  while (coefficient !== 0n && coefficient % 10n === 0n) {
    coefficient /= 10n;
    exponent++;
  }
  return { coefficient, exponent };
}

/** The text PostgreSQL reads as that exact numeric (`54e-4`). */
export const decimalText = (d: Decimal) => `${d.coefficient}e${d.exponent}`;

/**
 * Numbers carry their precision (R4 search.html#number): `100` means [99.5, 100.5), so the half-width
 * is half the unit of the last digit written. `100` → `5e-1`, `1.25` → `5e-3`, `1e2` → `5e1`.
 */
export function halfUnitOfLastDigit(value: string): string {
  const match = /^[+-]?(\d*)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(value);
  const decimals = match?.[2]?.length ?? 0;
  const exponent = Number(match?.[3] ?? 0);
  return `5e${exponent - decimals - 1}`;
}
