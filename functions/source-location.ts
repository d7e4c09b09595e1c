/**
 * Where in the user's own code an error was thrown: the first frame of its stack that is not
 * fanout's or a library's, mapped through the bundle's source map to the job file and its line.
 * The map is read only when a job's code throws (node:module's SourceMap, no flag needed), so
 * sandboxes do not pay `--enable-source-maps` at every start. Where the runtime maps stacks
 * already (the deployed functions run with that flag), the frames name the sources themselves.
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `at fn (file:line:col)` or `at file:line:col`: the place, as a stack line ends. */
const FRAME = /\(?((?:file:\/\/)?\/[^\s()]*|[A-Za-z]:\\[^\s()]*):(\d+):(\d+)\)?$/;

/** fanout's own code and libraries: a frame there is not the user's. */
const NOT_THE_USERS =
  /[\\/](node_modules|shared[\\/]core|shared[\\/]adapters|functions|local)[\\/]/;

/** Source maps by bundle file (null: it has none), read once per sandbox. */
const maps = new Map<string, SourceMap | null>();

function mapOf(file: string): SourceMap | null {
  let map = maps.get(file);
  if (map === undefined) {
    const path = `${file}.map`;
    map = existsSync(path) ? new SourceMap(JSON.parse(readFileSync(path, 'utf8'))) : null;
    maps.set(file, map);
  }
  return map;
}

/**
 * The user's frame of a stack as `path:line:column` (the job file's path, 1-based line and
 * column), or undefined when no frame is theirs or a stack cannot be read.
 */
export function userFrame(stack: string | undefined): string | undefined {
  if (stack === undefined) return undefined;
  for (const text of stack.split('\n').slice(1)) {
    const match = FRAME.exec(text.trim());
    if (match === null) continue;
    const file = match[1]!.startsWith('file://') ? fileURLToPath(match[1]!) : match[1]!;
    let place = { file, line: Number(match[2]), column: Number(match[3]) };
    try {
      const map = mapOf(file);
      if (map !== null) {
        const entry = map.findEntry(place.line - 1, place.column - 1) as {
          originalSource?: string;
          originalLine?: number;
          originalColumn?: number;
        };
        if (entry.originalSource === undefined) continue;
        place = {
          file: entry.originalSource.startsWith('file://')
            ? fileURLToPath(entry.originalSource)
            : resolve(dirname(file), entry.originalSource),
          line: (entry.originalLine ?? 0) + 1,
          column: (entry.originalColumn ?? 0) + 1,
        };
      }
    } catch {
      return undefined; // an unreadable map: the error keeps its message as it is
    }
    if (NOT_THE_USERS.test(place.file)) continue;
    return `${place.file}:${place.line}:${place.column}`;
  }
  return undefined;
}

/**
 * An error from a job's own code, its message ending with where the user's code threw it
 * (`… (at /path/job.ts:11:13)`); any other error as it is.
 */
export function withUserFrame(error: unknown): unknown {
  if (!(error instanceof Error) || (error as { code?: unknown }).code !== 'JOB_CODE') return error;
  const at = userFrame((error.cause as Error | undefined)?.stack);
  if (at !== undefined && !error.message.includes(' (at ')) error.message += ` (at ${at})`;
  return error;
}
