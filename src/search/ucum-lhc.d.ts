// The part of @lhncbc/ucum-lhc (which ships no declarations) that ucum.ts uses.
declare module '@lhncbc/ucum-lhc' {
  export interface BaseUnitsConversion {
    status: 'succeeded' | 'invalid' | 'failed' | 'error';
    /** `fromVal` in base units. */
    magnitude?: number;
    /** The base units and their exponents: `mg/dL` → { m: -3, g: 1 }. */
    unitToExp?: Record<string, number>;
    /** A unit converted by a function rather than a factor (`Cel`, `[pH]`). */
    fromUnitIsSpecial?: boolean;
    msg: string[];
  }
  export class UcumLhcUtils {
    static getInstance(): UcumLhcUtils;
    convertToBaseUnits(fromUnit: string, fromVal: number): BaseUnitsConversion;
  }
  const ucum: { UcumLhcUtils: typeof UcumLhcUtils };
  export default ucum;
}
