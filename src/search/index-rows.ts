/** The index rows of one resource, one array per index table (HAPI FHIR JPA's layout). */
export interface IndexRows {
  token: Array<{ param: string; system: string | null; code: string | null; text: string | null }>;
  string: Array<{ param: string; value: string; normalized: string }>;
  /** A composite ending with a date (`code-value-date`) puts its date here too, with `compositeKey` the key of its other components. */
  date: Array<{ param: string; low: string; high: string; compositeKey: string | null }>;
  reference: Array<{ param: string } & ReferenceValue>;
  uri: Array<{ param: string; uri: string }>;
  number: Array<{ param: string; value: string }>;
  /**
   * With a UCUM code, also in base units (ucum.ts): what a search with a UCUM unit compares. A composite
   * whose last component is a quantity (`component-code-value-quantity`) puts its quantity here too, with
   * `compositeKey` the key of its other components (extract.ts); a quantity parameter's rows have none.
   */
  quantity: Array<{
    param: string;
    value: string;
    system: string | null;
    code: string | null;
    unit: string | null;
    canonicalValue: string | null;
    canonicalUnit: string | null;
    compositeKey: string | null;
  }>;
  composite: Array<{ param: string; key: string }>;
  /** A WGS84 point (Location.position), for `near`. */
  position: Array<{ param: string; latitude: number; longitude: number }>;
}

export type IndexTable = keyof IndexRows;

export interface ReferenceValue {
  targetType: string | null;
  targetId: string | null;
  url: string | null;
  identifierSystem: string | null;
  identifierValue: string | null;
}
