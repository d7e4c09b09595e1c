/** Bounded-parallel work whose results come out in order. */

/**
 * Maps `fn` over `0..count-1` with at most `parallelism` calls in flight and yields the results
 * in index order: ordered output with parallel fetching.
 */
export async function* orderedMap<T>(
  count: number,
  parallelism: number,
  fn: (index: number) => Promise<T>,
): AsyncGenerator<T> {
  const window: Promise<T>[] = [];
  let next = 0;
  const fill = () => {
    while (next < count && window.length < parallelism) {
      const p = fn(next++);
      p.catch(() => undefined); // observed when its turn comes
      window.push(p);
    }
  };
  fill();
  while (window.length > 0) {
    const value = await window.shift()!;
    fill();
    yield value;
  }
}
