/**
 * The human-readable part of `Patient/$summary`: XHTML a GP reads without any other view of the data
 * (R4 narrative.html: only basic formatting, here tables and lists). Every piece of text from the record
 * goes through `escapeXml`: a display holding `<script>` comes out as text, never as markup.
 */

import { INS_NIA, INS_NIR, INS_NIR_DEMO, INS_NIR_TEST } from '../fhir/validation/french-identifiers.ts';
import { escapeXml } from '../fhir/xml-text.ts';

export type SummaryLanguage = 'fr' | 'en';

const XHTML = 'http://www.w3.org/1999/xhtml';

type Json = Record<string, any>;

/** Labels of the narrative, per language. Section titles are in `SECTION_TITLES` (summary-sections.ts). */
const LABELS = {
  fr: {
    summaryOf: 'Synthèse médicale de',
    born: 'né(e) le',
    generated: 'Générée le',
    by: 'par',
    identifier: 'Identifiant',
    sections: 'Rubriques',
    entries: (n: number) => (n === 0 ? 'aucune entrée' : n === 1 ? '1 entrée' : `${n} entrées`),
    noData: 'Aucune information disponible dans le dossier.',
    what: 'Élément',
    status: 'Statut',
    date: 'Date',
    details: 'Détails',
    author: 'Auteur',
    type: 'Type',
    value: 'Valeur',
    name: 'Nom',
    relation: 'Lien',
    phone: 'Téléphone',
    criticality: 'Criticité',
    reaction: 'Réaction',
    dose: 'Posologie',
    lot: 'Lot',
    since: 'depuis',
    until: "jusqu'au",
    unknown: 'inconnu',
    asNeeded: 'si besoin',
    results: (n: number) => (n === 1 ? '1 résultat' : `${n} résultats`),
  },
  en: {
    summaryOf: 'Patient summary of',
    born: 'born',
    generated: 'Generated on',
    by: 'by',
    identifier: 'Identifier',
    sections: 'Sections',
    entries: (n: number) => (n === 0 ? 'no entry' : n === 1 ? '1 entry' : `${n} entries`),
    noData: 'No information available in the record.',
    what: 'Item',
    status: 'Status',
    date: 'Date',
    details: 'Details',
    author: 'Author',
    type: 'Type',
    value: 'Value',
    name: 'Name',
    relation: 'Relationship',
    phone: 'Phone',
    criticality: 'Criticality',
    reaction: 'Reaction',
    dose: 'Dosage',
    lot: 'Lot',
    since: 'since',
    until: 'until',
    unknown: 'unknown',
    asNeeded: 'as needed',
    results: (n: number) => (n === 1 ? '1 result' : `${n} results`),
  },
} as const;

export type Labels = (typeof LABELS)[SummaryLanguage];

export function labels(language: SummaryLanguage): Labels {
  return LABELS[language];
}

/** A narrative `div` around already-escaped markup. */
export function div(inner: string, language: SummaryLanguage): string {
  return `<div xmlns="${XHTML}" lang="${language}" xml:lang="${language}">${inner}</div>`;
}

/** A table of rows of plain text cells (each escaped here). */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const head = `<thead><tr>${header.map((h) => `<th>${escapeXml(h)}</th>`).join('')}</tr></thead>`;
  const body = `<tbody>${rows.map((row) => `<tr>${row.map((cell) => `<td>${escapeXml(cell)}</td>`).join('')}</tr>`).join('')}</tbody>`;
  return `<table>${head}${body}</table>`;
}

/** A date or dateTime as a GP reads it: `12/03/2024` (fr) or `2024-03-12` (en), with the time when there is one. */
export function formatDate(value: unknown, language: SummaryLanguage): string {
  if (typeof value !== 'string' || value === '') return '';
  const match = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}))?)?)?/.exec(value);
  if (!match) return value;
  const [, year, month, day, hour, minute] = match;
  const time = hour !== undefined ? ` ${hour}:${minute}` : '';
  if (language === 'fr') return [day, month, year].filter((part) => part !== undefined).join('/') + time;
  return [year, month, day].filter((part) => part !== undefined).join('-') + time;
}

/** A Coding as `display (system code)`, the code named by its system's usual short name. */
export function formatCoding(coding: Json | undefined): string {
  if (!coding) return '';
  const system = shortSystem(coding.system);
  const code = coding.code !== undefined ? `${system ? `${system} ` : ''}${coding.code}` : '';
  if (coding.display && code) return `${coding.display} (${code})`;
  return coding.display ?? code;
}

/** A CodeableConcept: its text, else each coding with its display and code. */
export function formatConcept(concept: Json | undefined): string {
  if (!concept) return '';
  const codings = (concept.coding ?? []) as Json[];
  const coded = codings.map(formatCoding).filter((text) => text !== '');
  // The text is often a coding's display again: then the codings say it all.
  if (concept.text && !codings.some((coding) => coding.display === concept.text)) return coded.length > 0 ? `${concept.text} [${coded.join('; ')}]` : String(concept.text);
  return coded.join('; ');
}

const SYSTEMS: Record<string, string> = {
  'http://loinc.org': 'LOINC',
  'http://snomed.info/sct': 'SNOMED CT',
  'http://www.whocc.no/atc': 'ATC',
  'http://hl7.org/fhir/sid/cvx': 'CVX',
  'http://www.nlm.nih.gov/research/umls/rxnorm': 'RxNorm',
  'http://hl7.org/fhir/sid/icd-10': 'CIM-10',
  'http://unitsofmeasure.org': 'UCUM',
  'http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips': 'IPS',
  // French national identifiers (ANS): the INS, as a GP knows it.
  [INS_NIR]: 'INS-NIR',
  [INS_NIA]: 'INS-NIA',
  [INS_NIR_TEST]: 'INS-NIR (test)',
  [INS_NIR_DEMO]: 'INS-NIR (démonstration)',
};

/** A system by the short name a GP knows it by (LOINC, INS-NIR…), else as written. */
export function systemName(system: unknown): string {
  return shortSystem(system);
}

function shortSystem(system: unknown): string {
  if (typeof system !== 'string') return '';
  return SYSTEMS[system] ?? (system.startsWith('urn:oid:') ? system.slice('urn:oid:'.length) : system.replace(/^https?:\/\//, ''));
}

/** A Quantity as `5 mg`. */
export function formatQuantity(quantity: Json | undefined): string {
  if (!quantity || quantity.value === undefined) return '';
  const unit = quantity.unit ?? quantity.code ?? '';
  return `${quantity.comparator ?? ''}${quantity.value}${unit ? ` ${unit}` : ''}`;
}

/** A HumanName as `GIVEN FAMILY`, or its text. */
export function formatName(names: Json[] | undefined): string {
  const name = names?.find((n) => n.use === 'official') ?? names?.find((n) => n.use === 'usual') ?? names?.[0];
  if (!name) return '';
  if (name.text) return String(name.text);
  return [...(name.prefix ?? []), ...(name.given ?? []), name.family ? String(name.family).toUpperCase() : undefined].filter(Boolean).join(' ');
}

/** A Dosage (MedicationStatement.dosage, MedicationRequest.dosageInstruction) as a line a GP reads. */
export function formatDosage(dosages: Json[] | undefined, language: SummaryLanguage): string {
  return (dosages ?? [])
    .map((dosage) => {
      if (dosage.text) return String(dosage.text);
      const asNeeded = dosage.asNeededBoolean === true ? LABELS[language].asNeeded : dosage.asNeededCodeableConcept ? `${LABELS[language].asNeeded} : ${formatConcept(dosage.asNeededCodeableConcept)}` : '';
      const dose = dosage.doseAndRate?.[0]?.doseQuantity;
      const repeat = dosage.timing?.repeat;
      const timing = repeat?.frequency !== undefined && repeat?.period !== undefined ? `${repeat.frequency} × / ${repeat.period} ${repeat.periodUnit ?? ''}`.trim() : formatConcept(dosage.timing?.code);
      return [formatQuantity(dose), timing, formatConcept(dosage.route), asNeeded].filter((part) => part !== '').join(', ');
    })
    .filter((text) => text !== '')
    .join(' ; ');
}

/** Status codes (FHIR's, in English) as a French GP reads them; English keeps the code, spaced. */
const FRENCH_STATUS: Record<string, string> = {
  active: 'actif',
  inactive: 'inactif',
  resolved: 'résolu',
  remission: 'en rémission',
  recurrence: 'récidive',
  relapse: 'rechute',
  confirmed: 'confirmé',
  unconfirmed: 'non confirmé',
  provisional: 'provisoire',
  differential: 'diagnostic différentiel',
  completed: 'fait',
  'in-progress': 'en cours',
  intended: 'prévu',
  'on-hold': 'suspendu',
  stopped: 'arrêté',
  unknown: 'inconnu',
  final: 'validé',
  amended: 'modifié',
  corrected: 'corrigé',
  preliminary: 'préliminaire',
  partial: 'partiel',
  draft: 'brouillon',
  current: 'en vigueur',
  high: 'élevée',
  low: 'faible',
  'unable-to-assess': 'non évaluable',
  prescribed: 'prescrit',
};

export function statusText(code: string | undefined, language: SummaryLanguage): string {
  if (code === undefined || code === '') return '';
  return language === 'fr' ? FRENCH_STATUS[code] ?? code : code.replace(/-/g, ' ');
}
