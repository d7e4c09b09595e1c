/**
 * Parquet input, read with hyparquet (pure JavaScript) and hyparquet-compressors (snappy, gzip,
 * brotli, zstd, lz4). A chunk reads the row groups that begin inside its byte range, as it
 * reads the lines that begin inside it: row groups tile the file, so byte ranges that tile it
 * read every row group exactly once. Only the columns a job asks for are read.
 *
 * Records are plain JSON-safe objects (docs/FORMATS.md):
 * - INT64 (and INT96) values become numbers when exactly representable (|v| ≤ 2^53 - 1), else
 *   decimal strings, so no value is rounded silently;
 * - DATE, TIMESTAMP and TIME values with a date become ISO 8601 strings (UTC);
 * - byte arrays that are not UTF-8 strings become base64 strings;
 * - nulls stay null; lists and structs become arrays and objects, converted the same way.
 */
import { parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { readAll } from '#core/base/bytes.ts';
import { CorruptInputError } from '#core/base/errors.ts';
import type { ObjectInfo, ObjectStore } from '#core/base/ports.ts';

/** A Parquet file in S3 as hyparquet reads it: ranged, pinned reads. Counts the bytes read. */
function objectBuffer(store: ObjectStore, object: ObjectInfo, onRead: (bytes: number) => void) {
  return {
    byteLength: object.size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const bytes = await readAll(store.readRange(object, start, end ?? object.size));
      onRead(bytes.length);
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer;
    },
  };
}

/** Where a row group begins: its first column chunk's first page (dictionary or data). */
function rowGroupStart(group: {
  columns: { meta_data?: { dictionary_page_offset?: bigint; data_page_offset: bigint } }[];
}): number {
  const meta = group.columns[0]?.meta_data;
  return Number(meta?.dictionary_page_offset ?? meta?.data_page_offset ?? 0n);
}

/** A value as JSON can carry it (see the module comment). */
function jsonSafe(value: unknown): unknown {
  if (typeof value === 'bigint') {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value.toString();
  }
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map(jsonSafe);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = jsonSafe(v);
    return out;
  }
  return value;
}

const corrupt = (object: ObjectInfo, error: unknown) =>
  new CorruptInputError(
    `${object.key} is not a readable Parquet file (${(error as Error).message})`,
    { cause: error, context: { key: object.key } },
  );

/** What the worker gets for a Parquet segment: its rows, each with the offset of its group. */
export type ParquetSegmentReader = (
  store: ObjectStore,
  segment: { object: ObjectInfo; start: number; end: number },
  columns: readonly string[] | undefined,
  onRead: (bytes: number) => void,
) => AsyncIterable<{ row: unknown; offset: number }>;

/** The rows of the row groups that begin in `[start, end)` of the object, in file order. */
export const readParquetSegment: ParquetSegmentReader = async function* (
  store,
  { object, start, end },
  columns,
  onRead,
) {
  const file = objectBuffer(store, object, onRead);
  const metadata = await parquetMetadataAsync(file).catch((error: unknown) => {
    throw corrupt(object, error);
  });
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rows = Number(group.num_rows);
    const offset = rowGroupStart(group);
    if (offset >= start && offset < end && rows > 0) {
      const read = await parquetReadObjects({
        file,
        metadata,
        rowStart,
        rowEnd: rowStart + rows,
        compressors,
        ...(columns !== undefined && { columns: [...columns] }),
      }).catch((error: unknown) => {
        throw corrupt(object, error);
      });
      for (const row of read) yield { row: jsonSafe(row), offset };
    }
    rowStart += rows;
  }
};

/** Where each row group of a whole Parquet file (its bytes) begins: its tasks, for planning. */
export async function parquetRowGroupStarts(bytes: Uint8Array): Promise<number[]> {
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  const metadata = await parquetMetadataAsync(buffer as ArrayBuffer);
  return metadata.row_groups.filter((g) => Number(g.num_rows) > 0).map(rowGroupStart);
}
