/**
 * A bounded byte pipe: the producer writes while the consumer (an S3 upload) drains, and the
 * producer waits when more than `highWaterMark` bytes are buffered. This is what keeps a worker's
 * memory flat however large its chunk's output is.
 */
export interface BytePipe {
  /** Queues bytes; returns a promise to await when the buffer is full (backpressure). */
  write(bytes: Uint8Array): undefined | Promise<void>;
  /** No more writes: the consumer ends after draining. */
  close(): void;
  /** Aborts both sides: pending and future writes reject, the consumer throws `error`. */
  fail(error: unknown): void;
  /** The consumer side. Iterate it once. */
  readonly readable: AsyncIterable<Uint8Array>;
}

/** Creates a {@link BytePipe}. */
export function createBytePipe(highWaterMark = 8 * 1024 * 1024): BytePipe {
  const queue: Uint8Array[] = [];
  let buffered = 0;
  let closed = false;
  let failure: { error: unknown } | undefined;
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: { resolve: () => void; reject: (e: unknown) => void } | undefined;

  const notifyConsumer = () => {
    const wake = wakeConsumer;
    wakeConsumer = undefined;
    wake?.();
  };

  return {
    write(bytes) {
      if (failure !== undefined) return Promise.reject(failure.error);
      if (closed) throw new Error('write after close');
      if (bytes.length === 0) return undefined;
      queue.push(bytes);
      buffered += bytes.length;
      notifyConsumer();
      if (buffered <= highWaterMark) return undefined;
      return new Promise<void>((resolve, reject) => {
        wakeProducer = { resolve, reject };
      });
    },
    close() {
      closed = true;
      notifyConsumer();
    },
    fail(error) {
      failure = { error };
      wakeProducer?.reject(error);
      wakeProducer = undefined;
      notifyConsumer();
    },
    readable: {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          if (failure !== undefined) throw failure.error;
          const next = queue.shift();
          if (next !== undefined) {
            buffered -= next.length;
            if (buffered <= highWaterMark / 2 && wakeProducer !== undefined) {
              wakeProducer.resolve();
              wakeProducer = undefined;
            }
            yield next;
            continue;
          }
          if (closed) return;
          await new Promise<void>((resolve) => {
            wakeConsumer = resolve;
          });
        }
      },
    },
  };
}
