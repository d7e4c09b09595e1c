/**
 * JSON objects whose key order matters to a reader (wordcount's "most frequent first").
 * A plain JS object cannot carry that order: integer-like keys ("2017") always enumerate first.
 * So a job's `finish` may return an {@link OrderedEntries}, and {@link stringifyResult} writes
 * its entries in the given order.
 */
export class OrderedEntries<V = unknown> {
  constructor(readonly entries: ReadonlyArray<readonly [string, V]>) {}

  /** A plain object, for callers that do not care about order (tests, JS consumers). */
  toObject(): Record<string, V> {
    return Object.fromEntries(this.entries);
  }
}

/** Serialises a job result; an {@link OrderedEntries} at the top level keeps its key order. */
export function stringifyResult(value: unknown): string {
  if (value instanceof OrderedEntries) {
    const body = value.entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    return `{${body.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * A string-keyed table of values that is safe for any key: keys such as `__proto__` or
 * `constructor` come from user data, so tables never inherit from Object.prototype.
 * Accepts a table parsed from JSON (which has Object.prototype) and copies it when needed.
 */
export function table<V>(from?: Record<string, V>): Record<string, V> {
  if (from !== undefined && Object.getPrototypeOf(from) === null) return from;
  const out = Object.create(null) as Record<string, V>;
  if (from !== undefined) {
    for (const key of Object.keys(from)) out[key] = from[key] as V;
  }
  return out;
}
