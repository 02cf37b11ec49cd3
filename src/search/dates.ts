/**
 * FHIR dates as ranges (R4 search.html#date): a value stands for every instant within its precision,
 * so `2021` is [2021-01-01T00:00Z, 2022-01-01T00:00Z). Ranges here are half-open: [low, high).
 * A value without a time zone is read as UTC.
 */
export interface DateRange {
  low: Date;
  high: Date;
}

const DATE_PATTERN =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

export function parseDateRange(value: string): DateRange | undefined {
  const m = DATE_PATTERN.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, fraction, zone] = m;
  const year = Number(y);
  const month = mo === undefined ? undefined : Number(mo);
  const day = d === undefined ? undefined : Number(d);
  if (month !== undefined && (month < 1 || month > 12)) return undefined;
  if (day !== undefined && (day < 1 || day > daysInMonth(year, month!))) return undefined;
  if (h !== undefined && (Number(h) > 23 || Number(mi) > 59 || (s !== undefined && Number(s) > 59))) return undefined;

  const offsetMinutes = zone === undefined || zone === 'Z' ? 0 : (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)));
  const utc = (yy: number, mm: number, dd: number, hh = 0, mn = 0, ss = 0, ms = 0) =>
    new Date(Date.UTC(yy, mm - 1, dd, hh, mn, ss, ms) - offsetMinutes * 60_000);

  if (month === undefined) return { low: utc(year, 1, 1), high: utc(year + 1, 1, 1) };
  if (day === undefined) return { low: utc(year, month, 1), high: utc(year, month + 1, 1) };
  if (h === undefined) return { low: utc(year, month, day), high: utc(year, month, day + 1) };
  if (s === undefined) {
    const low = utc(year, month, day, Number(h), Number(mi));
    return { low, high: new Date(low.getTime() + 60_000) };
  }
  const millis = fraction === undefined ? 0 : Number(fraction.slice(0, 3).padEnd(3, '0'));
  const low = utc(year, month, day, Number(h), Number(mi), Number(s), millis);
  // Precision below the millisecond is kept to the millisecond the database stores.
  const step = fraction === undefined ? 1000 : 1;
  return { low, high: new Date(low.getTime() + step) };
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}
