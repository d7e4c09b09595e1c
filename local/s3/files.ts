/**
 * Read-only file buckets: a local directory served in place as an S3 bucket, so `fanout run
 * FILE|DIR` reads its input where it lies, through the same S3 API (HEAD, ranged GET with
 * If-Match, ListObjectsV2) that workers use on AWS, without copying a byte into the S3 server.
 *
 * An object is a regular file under the directory; its key is the file's path relative to it,
 * with `/` separators. Its ETag is derived from the file's identity and change times (device,
 * inode, size, mtime and ctime in nanoseconds), so any write to the file, in place or by
 * replacing it, gives it a new ETag, and a read pinned to the old one fails with 412, which the
 * worker reports as DatasetChangedError. The ETag is not an MD5 of the bytes (S3 makes no such
 * promise either); it carries a `-1` suffix, as multipart ETags do, so clients that would check
 * a body against an MD5-looking ETag do not.
 */
import { createHash } from 'node:crypto';
import {
  type BigIntStats,
  closeSync,
  constants,
  createReadStream,
  fstatSync,
  lstatSync,
  openSync,
  read,
  readSync,
  realpathSync,
} from 'node:fs';
import { readdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { crc64nvme, crc64ToBase64 } from '#core/base/crc64.ts';
import { keyProblem } from '#core/model/keys.ts';
import {
  byUtf8,
  decodeCursor,
  encodeCursor,
  type ListCursor,
  listPage,
  parseRange,
  renderListV2,
  sendS3Error,
} from './protocol.ts';

const readAt = promisify(read);

/** Bodies up to this size are read into memory and checked for a change before they are sent. */
const SMALL_BODY = 1024 * 1024;

/** The ETag of a file as it is now: changes with every write to it or replacement of it. */
export function fileEtag(stats: BigIntStats): string {
  const identity = `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
  return `"${createHash('md5').update(identity).digest('hex')}-1"`;
}

/** One directory served as a read-only bucket. */
export class FileBucket {
  /** Listings in progress: the sorted keys of one walk, reused by its later pages. */
  private readonly walks = new Map<string, { keys: string[]; at: number }>();
  /** Directories (by key prefix) whose real path was checked to lie under the root. */
  private readonly dirs = new Map<string, boolean>();
  /** Each file version's CRC-64/NVME, by ETag: computed once, when a HEAD first asks. */
  private readonly checksums = new Map<string, string>();
  private nextWalk = 1;

  constructor(
    readonly name: string,
    /** The directory, as a real path (symlinks resolved). */
    readonly root: string,
  ) {}

  /**
   * Serves one request; `key` is the decoded object key ('' for bucket-level requests). With
   * `denyMissing`, a missing key is a 403, as S3 answers a caller that may not list the bucket.
   */
  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    key: string,
    query: URLSearchParams,
    denyMissing = false,
  ): Promise<void> {
    req.resume();
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      return sendS3Error(res, 403, 'AccessDenied', `bucket ${this.name} is read-only`);
    }
    if (key === '') {
      if (method === 'HEAD') return void res.writeHead(200, { 'content-length': 0 }).end();
      if (query.get('list-type') !== '2') {
        return sendS3Error(
          res,
          501,
          'NotImplemented',
          'a file bucket answers ListObjectsV2 (list-type=2) only',
        );
      }
      return this.list(res, query);
    }
    // The server refuses such keys before they get here; a file bucket never relies on it.
    const problem = keyProblem(key);
    if (problem !== undefined) {
      return sendS3Error(res, 400, 'InvalidArgument', `the key ${JSON.stringify(key)} ${problem}`);
    }
    const fd = this.open(key);
    if (fd === undefined) {
      return denyMissing
        ? sendS3Error(res, 403, 'AccessDenied', 'Access Denied')
        : sendS3Error(res, 404, 'NoSuchKey', 'The specified key does not exist.');
    }
    let streaming = false;
    try {
      const stats = fstatSync(fd, { bigint: true });
      if (!stats.isFile()) {
        return sendS3Error(res, 404, 'NoSuchKey', 'The specified key does not exist.');
      }
      const etag = fileEtag(stats);
      const ifMatch = req.headers['if-match'];
      if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== etag) {
        return sendS3Error(
          res,
          412,
          'PreconditionFailed',
          'At least one of the pre-conditions you specified did not hold',
          '<Condition>If-Match</Condition>',
        );
      }
      const size = Number(stats.size);
      const range = parseRange(req.headers.range, size);
      if (range === 'invalid') {
        return sendS3Error(res, 416, 'InvalidRange', 'The requested range is not satisfiable');
      }
      const [start, end] = range ?? [0, size - 1];
      const length = size === 0 ? 0 : end - start + 1;
      const headers: Record<string, string | number> = {
        'content-type': 'application/octet-stream',
        'content-length': length,
        etag,
        'last-modified': new Date(Number(stats.mtimeMs)).toUTCString(),
        'accept-ranges': 'bytes',
        ...(range !== undefined && { 'content-range': `bytes ${start}-${end}/${size}` }),
      };
      const status = range === undefined ? 200 : 206;
      if (method === 'HEAD') await this.addChecksum(req, headers, fd, size, etag);
      if (method === 'HEAD' || length === 0) return void res.writeHead(status, headers).end();
      if (length <= SMALL_BODY) {
        // Small reads are synchronous: from the page cache they cost microseconds, far less
        // than a round trip through libuv's thread pool.
        const body = Buffer.allocUnsafe(length);
        const read = readSync(fd, body, 0, length, start);
        // A write during the read may have torn it: answer as if the condition failed.
        if (read !== length || fileEtag(fstatSync(fd, { bigint: true })) !== etag) {
          return sendS3Error(
            res,
            412,
            'PreconditionFailed',
            'The object changed while it was read',
            '<Condition>If-Match</Condition>',
          );
        }
        return void res.writeHead(status, headers).end(body);
      }
      // A large body streams; if the file changes meanwhile, the response is cut short, which
      // the client sees as a failed read (and its retry, pinned, as 412).
      res.writeHead(status, headers);
      streaming = true;
      const stream = createReadStream('', {
        fd,
        start,
        end,
        highWaterMark: SMALL_BODY,
        autoClose: false,
      });
      const done = () => closeSync(fd);
      stream.on('error', () => {
        res.destroy();
        done();
      });
      stream.pipe(res, { end: false });
      stream.once('end', () => {
        try {
          if (fileEtag(fstatSync(fd, { bigint: true })) === etag) res.end();
          else res.destroy();
        } finally {
          done();
        }
      });
      res.once('close', () => {
        if (!stream.readableEnded) {
          stream.destroy();
          done();
        }
      });
    } finally {
      if (!streaming) closeSync(fd);
    }
  }

  /** S3's ChecksumMode: the full-object CRC-64/NVME that S3 keeps for new objects. */
  private async addChecksum(
    req: IncomingMessage,
    headers: Record<string, string | number>,
    fd: number,
    size: number,
    etag: string,
  ): Promise<void> {
    if (String(req.headers['x-amz-checksum-mode']).toUpperCase() !== 'ENABLED') return;
    const crc = await this.checksumOf(fd, size, etag);
    if (crc === undefined) return;
    headers['x-amz-checksum-crc64nvme'] = crc64ToBase64(crc);
    headers['x-amz-checksum-type'] = 'FULL_OBJECT';
  }

  /**
   * A file's CRC-64/NVME, read in 4 MiB pieces off the event loop's thread; undefined when the
   * file changed while it was read.
   */
  private async checksumOf(fd: number, size: number, etag: string): Promise<string | undefined> {
    const known = this.checksums.get(etag);
    if (known !== undefined) return known;
    const buffer = Buffer.allocUnsafe(Math.min(size, 4 * 1024 * 1024));
    let crc = crc64nvme(new Uint8Array());
    for (let at = 0; at < size; ) {
      const { bytesRead } = await readAt(fd, buffer, 0, Math.min(buffer.length, size - at), at);
      if (bytesRead === 0) return undefined;
      crc = crc64nvme(buffer.subarray(0, bytesRead), crc);
      at += bytesRead;
    }
    if (fileEtag(fstatSync(fd, { bigint: true })) !== etag) return undefined;
    this.checksums.set(etag, crc);
    return crc;
  }

  /**
   * Opens the file a key names, if it is a regular file that really lies under the root: the
   * file itself is opened without following a symlink, and each directory on its path is
   * checked once (its real path must lie under the root).
   */
  private open(key: string): number | undefined {
    const slash = key.lastIndexOf('/');
    const dir = slash < 0 ? '' : key.slice(0, slash);
    let inside = this.dirs.get(dir);
    if (inside === undefined) {
      try {
        const real = realpathSync(join(this.root, ...dir.split('/')));
        inside = real === this.root || real.startsWith(this.root + sep);
      } catch {
        inside = false;
      }
      if (this.dirs.size > 10_000) this.dirs.clear();
      this.dirs.set(dir, inside);
    }
    if (!inside) return undefined;
    try {
      return openSync(
        join(this.root, ...key.split('/')),
        constants.O_RDONLY | constants.O_NOFOLLOW,
      );
    } catch {
      return undefined;
    }
  }

  /** ListObjectsV2 over the directory's regular files, in UTF-8 key order. */
  private async list(res: ServerResponse, query: URLSearchParams) {
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') ?? '';
    const maxKeys = Math.min(1000, Math.max(0, Number(query.get('max-keys') ?? 1000) || 0));
    const token = query.get('continuation-token');
    let walkId: string;
    let after: ListCursor | undefined;
    if (token) {
      const decoded = decodeCursor(token);
      if (decoded === undefined || typeof decoded.extra[0] !== 'string') {
        return sendS3Error(
          res,
          400,
          'InvalidArgument',
          'The continuation token provided is incorrect',
        );
      }
      after = decoded.cursor;
      walkId = decoded.extra[0];
    } else {
      walkId = String(this.nextWalk++);
      const startAfter = query.get('start-after');
      if (startAfter !== null) after = { after: startAfter, isPrefix: false };
    }
    // A listing walks the directory once; its later pages reuse that walk (while it is fresh).
    let walk = this.walks.get(walkId);
    if (walk === undefined) {
      walk = { keys: await this.walk(), at: performance.now() };
      this.walks.set(walkId, walk);
    }
    for (const [id, w] of this.walks) if (performance.now() - w.at > 60_000) this.walks.delete(id);
    const page = listPage(walk.keys, { prefix, delimiter, maxKeys, ...(after && { after }) });
    const contents: { key: string; size: number; etag: string; lastModified: Date }[] = [];
    for (const key of page.keys) {
      const stats = this.statKey(key);
      if (stats === undefined) continue; // removed since the walk
      contents.push({
        key,
        size: Number(stats.size),
        etag: fileEtag(stats),
        lastModified: new Date(Number(stats.mtimeMs)),
      });
    }
    if (page.next === undefined) this.walks.delete(walkId);
    res.writeHead(200, { 'content-type': 'application/xml' });
    res.end(
      renderListV2({
        bucket: this.name,
        prefix,
        delimiter,
        maxKeys,
        ...(token !== null && { token }),
        contents,
        prefixes: page.prefixes,
        ...(page.next !== undefined && { next: encodeCursor(page.next, [walkId]) }),
      }),
    );
  }

  private statKey(key: string): BigIntStats | undefined {
    try {
      const stats = lstatSync(join(this.root, ...key.split('/')), { bigint: true });
      return stats.isFile() ? stats : undefined;
    } catch {
      return undefined; // removed since the walk
    }
  }

  /**
   * Every regular file under the root (symlinks are not followed), recursively, as keys, in S3
   * order. Dotfiles and whatever is under a dot-directory (.git, .DS_Store, editors' swap files)
   * are not data: they are skipped.
   */
  private async walk(): Promise<string[]> {
    const entries = await readdir(this.root, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => e.isFile())
      .map((e) => relative(this.root, join(e.parentPath, e.name)).split(sep).join('/'))
      .filter((key) => !key.split('/').some((segment) => segment.startsWith('.')))
      .sort(byUtf8);
  }
}
