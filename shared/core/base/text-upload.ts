/**
 * A streamed text object: text appended in small pieces goes up as one streamed upload, encoded
 * in pieces of about 64K characters, with the pipe's backpressure. What a partition's part and
 * a keyed result are written through.
 */
import { createBytePipe } from './pipe.ts';
import type { ObjectStore } from './ports.ts';

/** Text is encoded and sent in pieces of about this many characters. */
const PIECE_CHARS = 64 * 1024;

/** See the module's comment. */
export interface TextUpload {
  /** Appends text; returns a promise to await when the pipe is full (backpressure). */
  write(text: string): undefined | Promise<void>;
  /** Sends what is left and ends the object: its ETag and size in bytes. */
  finish(): Promise<{ etag: string; size: number }>;
  /** Aborts the upload: nothing is stored. */
  fail(error: unknown): void;
}

const encoder = new TextEncoder();

/** Starts a streamed upload of text to `key`. */
export function textUpload(
  store: ObjectStore,
  bucket: string,
  key: string,
  contentType: string,
): TextUpload {
  const pipe = createBytePipe();
  const upload = store.upload(bucket, key, pipe.readable, { contentType });
  upload.catch(() => undefined); // observed by finish(); a failed writer fails the pipe first
  let text = '';
  return {
    write(more) {
      text += more;
      if (text.length < PIECE_CHARS) return undefined;
      const piece = encoder.encode(text);
      text = '';
      return pipe.write(piece);
    },
    async finish() {
      if (text !== '') await pipe.write(encoder.encode(text));
      text = '';
      pipe.close();
      return upload;
    },
    fail(error) {
      pipe.fail(error);
    },
  };
}
