/** Parsing of CLI values, with usage errors that list what is accepted. */
import { ValidationError } from '#core/base/errors.ts';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/** Parses a byte size such as `8MiB`, `512KiB`, `1MB` or `1048576`. */
export function parseSize(flag: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match ? UNITS[(match[2] ?? '').toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new ValidationError(
      `${flag} ${JSON.stringify(text)} is not a size; expected a number of bytes with an optional unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. 8MiB`,
    );
  }
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new ValidationError(`${flag} must be at least 1 byte; got ${JSON.stringify(text)}`);
  }
  return bytes;
}

/** Parses a positive integer flag. */
export function parsePositiveInt(flag: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < 1) {
    throw new ValidationError(`${flag} must be a positive integer; got ${JSON.stringify(text)}`);
  }
  return value;
}

/** Parses a JSON object flag (job params). */
export function parseJsonObject(flag: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ValidationError(
      `${flag} is not valid JSON (${(error as Error).message}); expected an object such as '{"year":2020}'`,
    );
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ValidationError(`${flag} must be a JSON object; got ${text}`);
  }
  return value as Record<string, unknown>;
}

/** Formats a byte count for people. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Parses a non-negative integer flag (counts, seeds). */
export function parseCount(flag: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) {
    throw new ValidationError(
      `${flag} must be a non-negative integer; got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

/** Parses a percentage from 0 to 100. */
export function parsePercent(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !(value >= 0 && value <= 100)) {
    throw new ValidationError(
      `${flag} must be a number from 0 to 100; got ${JSON.stringify(text)}`,
    );
  }
  return value;
}
