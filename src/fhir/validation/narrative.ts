/**
 * Narrative safety (R4 narrative.html §rules): only basic formatting elements, no scripts, forms, frames
 * or event-handler attributes. txt-1 (htmlChecks()) says the narrative is not conformant; these issues
 * say what in it is dangerous, one per offending element or attribute.
 */
const ALLOWED_ELEMENTS = new Set([
  'p', 'br', 'div', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'a', 'span', 'b', 'em', 'i', 'strong', 'small', 'big',
  'tt', 'dfn', 'q', 'var', 'abbr', 'acronym', 'cite', 'blockquote', 'hr', 'address', 'bdo', 'kbd', 'sub', 'sup',
  'ul', 'ol', 'li', 'dl', 'dt', 'dd', 'pre', 'table', 'caption', 'colgroup', 'col', 'thead', 'tr', 'tfoot',
  'tbody', 'th', 'td', 'code', 'samp', 'img',
]);

export function narrativeProblems(xhtml: string): string[] {
  const problems: string[] = [];
  for (const match of xhtml.matchAll(/<([A-Za-z][\w:.-]*)([^>]*)>/g)) {
    const name = match[1]!.toLowerCase();
    if (!ALLOWED_ELEMENTS.has(name)) problems.push(`Invalid element name in the XHTML ('${name}')`);
    for (const attribute of match[2]!.matchAll(/\s(on[a-z]+)\s*=/gi)) problems.push(`Invalid attribute name in the XHTML ('${attribute[1]}' on '${name}')`);
    if (/\s(?:href|src)\s*=\s*["']\s*javascript:/i.test(match[2]!)) problems.push(`javascript: URL in the XHTML (on '${name}')`);
  }
  return problems;
}
