/**
 * Check keys of French identifiers, which no profile can express. Each function returns undefined when
 * the value is well formed, else a sentence saying what is wrong (including the expected key).
 */

/** INS-NIR / INS-NIA (and NIRs in general): 13 characters + a 2-digit key = 97 − (number mod 97). */
export function nirProblem(value: string): string | undefined {
  if (!/^[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{8}$/i.test(value)) {
    return `'${value}' is not a NIR: 15 characters expected (13 digits, the department may be 2A/2B, then a 2-digit key)`;
  }
  // Corsica: the departments 2A and 2B count as 19 and 18 in the key computation.
  const body = value.slice(0, 13).toUpperCase().replace(/^(.{5})2A/, '$119').replace(/^(.{5})2B/, '$118');
  const expected = 97 - Number(BigInt(body) % 97n);
  const actual = Number(value.slice(13));
  if (actual !== expected) {
    return `the key of '${value}' is ${value.slice(13)}, expected ${String(expected).padStart(2, '0')} (97 − ${value.slice(0, 13)} mod 97)`;
  }
  return undefined;
}

/** Luhn checksum over a string of digits, the last digit being the key. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let digit = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
  }
  return sum % 10 === 0;
}

/** FINESS: 9 characters (department, possibly 2A/2B, 6 digits, Luhn key). */
export function finessProblem(value: string): string | undefined {
  if (!/^(?:[0-9]{2}|2A|2B)[0-9]{7}$/i.test(value)) return `'${value}' is not a FINESS number: 9 characters expected (2-character department, 7 digits)`;
  // Corsican numbers: the key is computed with the department written 20 (its pre-1976 code).
  const digits = value.toUpperCase().replace(/^2[AB]/, '20');
  return luhnValid(digits) ? undefined : `the Luhn key of FINESS '${value}' is wrong`;
}

/** RPPS: 11 digits, the last one a Luhn key. */
export function rppsProblem(value: string): string | undefined {
  if (!/^[0-9]{11}$/.test(value)) return `'${value}' is not an RPPS number: 11 digits expected`;
  return luhnValid(value) ? undefined : `the Luhn key of RPPS '${value}' is wrong`;
}

/** SIREN (9 digits) and SIRET (14 digits): Luhn. */
function sirenProblem(value: string, digits: 9 | 14): string | undefined {
  const name = digits === 9 ? 'SIREN' : 'SIRET';
  if (!new RegExp(`^[0-9]{${digits}}$`).test(value)) return `'${value}' is not a ${name} number: ${digits} digits expected`;
  return luhnValid(value) ? undefined : `the Luhn key of ${name} '${value}' is wrong`;
}

/**
 * National health professional id (IdNatPS, urn:oid:1.2.250.1.71.4.2.1): a one-digit kind, then the
 * identifier — 8 + RPPS, 0 + ADELI (9 characters), 3/4/5 + FINESS/SIREN/SIRET + '/' + a local id.
 */
export function idNatPsProblem(value: string): string | undefined {
  const kind = value[0];
  const rest = value.slice(1);
  switch (kind) {
    case '8':
      return rppsProblem(rest)?.replace(/^/, `IdNatPS '${value}' (8 + RPPS): `);
    case '0':
      return /^[0-9A-Z]{9}$/i.test(rest) ? undefined : `IdNatPS '${value}' (0 + ADELI): 9 characters expected after the 0`;
    case '3':
    case '4':
    case '5':
      return /^[^/]+\/.+$/.test(rest) ? undefined : `IdNatPS '${value}' (${kind} + structure id): expected <structure id>/<local id>`;
    default:
      return `IdNatPS '${value}' must start with 8 (RPPS), 0 (ADELI), 3, 4 or 5 (structure-based)`;
  }
}

/** National structure id (IdNatSt, urn:oid:1.2.250.1.71.4.2.2): 1 + FINESS, 2 + SIREN, 3 + SIRET, 4 + RPPS-rang. */
export function idNatStProblem(value: string): string | undefined {
  const kind = value[0];
  const rest = value.slice(1);
  const prefix = `IdNatSt '${value}'`;
  switch (kind) {
    case '1':
      return finessProblem(rest)?.replace(/^/, `${prefix} (1 + FINESS): `);
    case '2':
      return sirenProblem(rest, 9)?.replace(/^/, `${prefix} (2 + SIREN): `);
    case '3':
      return sirenProblem(rest, 14)?.replace(/^/, `${prefix} (3 + SIRET): `);
    case '4':
      return rest.length > 0 ? undefined : `${prefix} (4 + RPPS-rang): an identifier is expected after the 4`;
    default:
      return `${prefix} must start with 1 (FINESS), 2 (SIREN), 3 (SIRET) or 4 (RPPS-rang)`;
  }
}

export const INS_NIR = 'urn:oid:1.2.250.1.213.1.4.8';
export const INS_NIA = 'urn:oid:1.2.250.1.213.1.4.9';
export const INS_NIR_TEST = 'urn:oid:1.2.250.1.213.1.4.10';
export const INS_NIR_DEMO = 'urn:oid:1.2.250.1.213.1.4.11';
/** NIR/NIA as health-insurance numbers (FR Core slices NSS-NIR / NSS-NIA): same key. */
export const NSS_NIR = 'urn:oid:1.2.250.1.213.1.4.13';
export const NSS_NIA = 'urn:oid:1.2.250.1.213.1.4.14';
export const INS_SYSTEMS = new Set([INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIR_DEMO]);

/** Identifier systems whose values have a checkable format, with the check and a short name for messages. */
export const IDENTIFIER_CHECKS = new Map<string, { name: string; problem: (value: string) => string | undefined }>([
  [INS_NIR, { name: 'INS-NIR', problem: nirProblem }],
  [INS_NIA, { name: 'INS-NIA', problem: nirProblem }],
  [INS_NIR_TEST, { name: 'INS-NIR (test)', problem: nirProblem }],
  [INS_NIR_DEMO, { name: 'INS-NIR (demo)', problem: nirProblem }],
  [NSS_NIR, { name: 'NIR', problem: nirProblem }],
  [NSS_NIA, { name: 'NIA', problem: nirProblem }],
  ['https://rpps.esante.gouv.fr', { name: 'RPPS', problem: rppsProblem }],
  ['urn:oid:1.2.250.1.71.4.2.1', { name: 'IdNatPS', problem: idNatPsProblem }],
  ['https://finess.esante.gouv.fr', { name: 'FINESS', problem: finessProblem }],
  ['urn:oid:1.2.250.1.71.4.2.2', { name: 'IdNatSt', problem: idNatStProblem }],
]);
