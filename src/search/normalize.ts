const ASCII = /^[\x00-\x7f]*$/;

/**
 * The form string search compares (R4 search.html#string: case- and accent-insensitive):
 * lower case, diacritics removed, whitespace collapsed. "Hélène  Lefèvre" → "helene lefevre".
 */
export function normalizeString(value: string): string {
  // ASCII has no diacritics or ligatures to take apart: most codes and many names are plain ASCII.
  if (ASCII.test(value)) return value.toLowerCase().replace(/\s+/g, ' ').trim();
  return value
    .normalize('NFD')
    .replace(/\p{Mn}/gu, '')
    .toLowerCase()
    // Ligatures NFD leaves whole, common in French names ("Lœvenbruck").
    .replace(/œ/g, 'oe')
    .replace(/æ/g, 'ae')
    .replace(/\s+/g, ' ')
    .trim();
}
