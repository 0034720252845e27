/**
 * Tiny structural checks for messages that cross the webview boundary. A webview is a web page: whatever
 * it posts is treated as untrusted input and checked field by field before the host acts on it.
 */
export type Check<T> = (value: unknown) => value is T;

export const isString: Check<string> = (v): v is string => typeof v === 'string';
export const isBoolean: Check<boolean> = (v): v is boolean => typeof v === 'boolean';
export const isFiniteNumber: Check<number> = (v): v is number => typeof v === 'number' && Number.isFinite(v);
export const isInteger = (min: number, max: number): Check<number> =>
  (v): v is number => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
export const isOneOf = <T extends string>(...values: T[]): Check<T> => (v): v is T => values.includes(v as T);
export const isArrayOf = <T>(item: Check<T>, maxLength = 10_000): Check<T[]> =>
  (v): v is T[] => Array.isArray(v) && v.length <= maxLength && v.every(item);

type Shape = Record<string, Check<unknown>>;
type FromShape<S extends Shape> = { [K in keyof S]: S[K] extends Check<infer T> ? T : never };

/** An object with exactly these fields (no extra ones) and a literal `type`. */
export function isMessage<K extends string, S extends Shape>(type: K, fields: S): Check<{ type: K } & FromShape<S>> {
  const allowed = new Set(['type', ...Object.keys(fields)]);
  return (v): v is { type: K } & FromShape<S> => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
    const record = v as Record<string, unknown>;
    if (record.type !== type) return false;
    if (!Object.keys(record).every((key) => allowed.has(key))) return false;
    return Object.entries(fields).every(([key, check]) => check(record[key]));
  };
}

export function firstMatch<T>(value: unknown, checks: ReadonlyArray<Check<T>>): T | undefined {
  for (const check of checks) if (check(value)) return value;
  return undefined;
}
