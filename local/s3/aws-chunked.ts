/**
 * Decoder for `Content-Encoding: aws-chunked` request bodies (SigV4 streaming uploads and the
 * SDKs' default trailing checksums). s3rver stores such bodies verbatim, chunk headers and
 * trailers included, which corrupts the object; the compatibility layer decodes them first.
 *
 * Wire format: `<hex size>[;chunk-signature=…]\r\n<data>\r\n` repeated, then a zero-size chunk,
 * optional trailer lines (`x-amz-checksum-crc32:…\r\n`) and a final `\r\n`.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** True when a request's headers announce an aws-chunked body. */
export function isAwsChunked(headers: Record<string, string | string[] | undefined>): boolean {
  const encoding = String(headers['content-encoding'] ?? '');
  const sha = String(headers['x-amz-content-sha256'] ?? '');
  return (
    encoding.split(',').some((e) => e.trim() === 'aws-chunked') || sha.startsWith('STREAMING-')
  );
}

/** A Transform from an aws-chunked body to the object's bytes. */
export function createAwsChunkedDecoder(): Transform {
  let buffer: Buffer = Buffer.alloc(0);
  let remaining = -1; // bytes left in the current chunk's data; -1 while reading a header
  let ended = false; // the zero-size chunk was seen: the rest is trailers

  return new Transform({
    transform(piece: Buffer, _encoding, callback: TransformCallback) {
      if (ended) return callback();
      buffer = buffer.length === 0 ? piece : Buffer.concat([buffer, piece]);
      for (;;) {
        if (remaining > 0) {
          if (buffer.length === 0) break;
          const take = Math.min(remaining, buffer.length);
          this.push(buffer.subarray(0, take));
          buffer = buffer.subarray(take);
          remaining -= take;
          continue;
        }
        if (remaining === 0) {
          // The CRLF after a chunk's data.
          if (buffer.length < 2) break;
          buffer = buffer.subarray(2);
          remaining = -1;
          continue;
        }
        const eol = buffer.indexOf('\r\n');
        if (eol < 0) {
          if (buffer.length > 4096) return callback(new Error('malformed aws-chunked body'));
          break;
        }
        const size = Number.parseInt(
          buffer.subarray(0, eol).toString('latin1').split(';')[0] ?? '',
          16,
        );
        if (!Number.isSafeInteger(size) || size < 0) {
          return callback(new Error('malformed aws-chunked chunk header'));
        }
        buffer = buffer.subarray(eol + 2);
        if (size === 0) {
          ended = true;
          break;
        }
        remaining = size;
      }
      callback();
    },
  });
}
