import ucum, { type UcumLhcUtils } from '@lhncbc/ucum-lhc';
import { decimalText, multiply, parseDecimal, type Decimal } from './decimal.ts';

export const UCUM_SYSTEM = 'http://unitsofmeasure.org';

/** A quantity in UCUM base units: its value as exact decimal text, and the base units (`g`, `m-3.g`, `1`). */
export interface CanonicalQuantity {
  value: string;
  unit: string;
}

interface Conversion {
  factor: Decimal;
  unit: string;
}

/**
 * Per unit code, its conversion to base units, or null when it has none. Search values bring codes from
 * outside, so the cache is bounded: past the bound it starts again rather than grow without end.
 */
const conversions = new Map<string, Conversion | null>();
const MAX_CACHED_UNITS = 10_000;

/**
 * Created on first use: building the unit tables reads the whole UCUM definition file, once per process.
 * fhirpath's ESM build bundles a copy of its own, which this module cannot reach as the same instance.
 */
let utils: UcumLhcUtils | undefined;

/**
 * `value` in `code` (a UCUM code) converted to base units, as R4 search.html#quantity recommends
 * comparing them ("the server SHOULD support canonical units"): 5400 `ug` and 5.4 `mg` are both
 * 0.0054 `g`. Undefined when the unit has no such form, and the quantity is then compared as written:
 * a code that is not valid UCUM, an arbitrary unit (`[iU]`), a special unit whose conversion is not a
 * product (`Cel`, `[degF]`, `[pH]`), or an annotated dimensionless unit (`{tbl}`, `{drop}`), whose
 * annotation is all that says what is counted though UCUM makes every such unit equal to 1.
 */
export function toCanonical(value: string, code: string): CanonicalQuantity | undefined {
  const conversion = conversionOf(code);
  const decimal = parseDecimal(value);
  if (!conversion || !decimal) return undefined;
  return { value: decimalText(multiply(decimal, conversion.factor)), unit: conversion.unit };
}

function conversionOf(code: string): Conversion | undefined {
  let conversion = conversions.get(code);
  if (conversion === undefined) {
    conversion = computeConversion(code) ?? null;
    if (conversions.size >= MAX_CACHED_UNITS) conversions.clear();
    conversions.set(code, conversion);
  }
  return conversion ?? undefined;
}

/** UCUM expressions are printable US-ASCII without spaces (UCUM §1); anything else is no UCUM code. */
const UCUM_CHARACTERS = /^[!-~]+$/;

function computeConversion(code: string): Conversion | undefined {
  if (!UCUM_CHARACTERS.test(code)) return undefined;
  utils ??= ucum.UcumLhcUtils.getInstance();
  const converter = utils;
  const result = withoutConsoleLog(() => converter.convertToBaseUnits(code, 1));
  if (result.status !== 'succeeded' || result.fromUnitIsSpecial || result.magnitude === undefined || !result.unitToExp) return undefined;
  const unit = Object.entries(result.unitToExp).map(([base, exponent]) => (exponent === 1 ? base : `${base}${exponent}`)).join('.') || '1';
  if (unit === '1' && code.includes('{')) return undefined;
  // The library multiplies prefixes in floating point (`{cells}/uL` gives 999999999.9999999): 15 significant
  // digits are what a double holds exactly, and drop that noise.
  const factor = parseDecimal(result.magnitude.toPrecision(15));
  return factor ? { factor, unit } : undefined;
}

/**
 * The library reports some unparsable units (`()`) with console.log: a line on stdout among the server's
 * JSON log lines, carrying the client's text. The status it returns says the same, so the line is dropped
 * (the call is synchronous: nothing else can log meanwhile).
 */
function withoutConsoleLog<T>(work: () => T): T {
  const log = console.log;
  console.log = () => {};
  try {
    return work();
  } finally {
    console.log = log;
  }
}
