const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const SPECIAL = /[&<>"']/;

/** Text as XML (or HTML) character data or attribute value: the five predefined entities. */
export function escapeXml(text: string): string {
  // Most text (a patient summary's cells) has none of them: returned as it is, nothing allocated.
  return SPECIAL.test(text) ? text.replace(/[&<>"']/g, (c) => ENTITIES[c]!) : text;
}
