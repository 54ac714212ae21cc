/** Types for the data entry point of `@tgwf/co2` (the package ships no declarations). */
declare module '@tgwf/co2/data' {
  /** Annual average grid intensities, gCO2e/kWh, keyed by ISO 3166-1 alpha-3 and region names. */
  export const averageIntensity: { data: Record<string, number>; type: string };
}
