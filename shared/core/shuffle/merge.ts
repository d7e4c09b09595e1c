/**
 * A k-way merge of sorted sources, each read in batches: a binary heap of the sources' heads,
 * ties broken by source index (so equal keys come in source order: map chunk 0 before chunk 1,
 * which is the order `merge(a, b)` expects). Memory: one batch per source.
 */

/** Compares two items: negative, zero or positive. */
export type Compare<T> = (a: T, b: T) => number;

class Cursor<T> {
  batch: T[] = [];
  at = 0;

  constructor(
    private readonly source: AsyncIterator<T[]>,
    readonly index: number,
  ) {}

  get head(): T {
    return this.batch[this.at] as T;
  }

  /** Moves to the next item, reading the next batch when this one is done; false at the end. */
  async fill(): Promise<boolean> {
    while (this.at >= this.batch.length) {
      const next = await this.source.next();
      if (next.done === true) return false;
      this.batch = next.value;
      this.at = 0;
    }
    return true;
  }
}

/**
 * Calls `emit` with every item of every source in ascending order (`compare`, then source
 * index). Each source must be sorted by `compare`. `emit` may return a promise (backpressure).
 */
export async function mergeSorted<T>(
  sources: readonly AsyncIterable<T[]>[],
  compare: Compare<T>,
  emit: (item: T, source: number) => undefined | Promise<void>,
): Promise<void> {
  const heap: Cursor<T>[] = [];
  const before = (a: Cursor<T>, b: Cursor<T>) => {
    const c = compare(a.head, b.head);
    return c < 0 || (c === 0 && a.index < b.index);
  };
  const up = (i: number) => {
    const item = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = item;
  };
  const down = (i: number) => {
    const item = heap[i]!;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= heap.length) break;
      if (child + 1 < heap.length && before(heap[child + 1]!, heap[child]!)) child += 1;
      if (!before(heap[child]!, item)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = item;
  };
  const cursors = sources.map((s, i) => new Cursor(s[Symbol.asyncIterator](), i));
  const ready = await Promise.all(cursors.map((c) => c.fill()));
  cursors.forEach((c, i) => {
    if (ready[i]) {
      heap.push(c);
      up(heap.length - 1);
    }
  });
  while (heap.length > 0) {
    const top = heap[0]!;
    const pending = emit(top.head, top.index);
    if (pending !== undefined) await pending;
    top.at += 1;
    if (top.at < top.batch.length || (await top.fill())) {
      down(0);
    } else {
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        down(0);
      }
    }
  }
}

/** Run lines by key (JavaScript string order). */
export const byKey: Compare<{ key: string }> = (a, b) =>
  a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
