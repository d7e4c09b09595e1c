/**
 * ListObjectsV2 paging as the local S3 server does it (local/s3/protocol.ts listPage): keys and
 * common prefixes count together against MaxKeys, and following the pages gives exactly the
 * one-page listing, with no prefix twice and none lost, whatever the page size.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { byUtf8, type ListCursor, listPage } from '#local/s3/protocol.ts';

const KEYS = ['d/a/1', 'd/a/2', 'd/b', 'd/c/1', 'd/d', 'd/e/1', 'd/f/1', 'e/x'].sort(byUtf8);

function all(sorted: string[], prefix: string, delimiter: string, maxKeys: number) {
  const pages: { keys: string[]; prefixes: string[] }[] = [];
  let after: ListCursor | undefined;
  for (let i = 0; i < 1000; i++) {
    const page = listPage(sorted, { prefix, delimiter, maxKeys, ...(after && { after }) });
    pages.push(page);
    if (page.next === undefined) return pages;
    after = page.next;
  }
  throw new Error('listing did not end');
}

describe('listPage', () => {
  it('counts common prefixes against MaxKeys and resumes after the last prefix', () => {
    const pages = all(KEYS, 'd/', '/', 2);
    expect(pages.map((p) => [...p.keys, ...p.prefixes].sort(byUtf8))).toEqual([
      ['d/a/', 'd/b'],
      ['d/c/', 'd/d'],
      ['d/e/', 'd/f/'],
    ]);
    const one = all(KEYS, 'd/', '/', 1).map((p) => [...p.keys, ...p.prefixes]);
    expect(one).toEqual([['d/a/'], ['d/b'], ['d/c/'], ['d/d'], ['d/e/'], ['d/f/']]);
  });

  it('lists in S3 order (UTF-8 bytes), not file-name order', () => {
    const sorted = ['a/b', 'a-b', 'a0'].sort(byUtf8);
    expect(sorted).toEqual(['a-b', 'a/b', 'a0']);
    expect(all(sorted, '', '', 1).flatMap((p) => p.keys)).toEqual(['a-b', 'a/b', 'a0']);
  });

  it('property: the pages of any size make the one-page listing, in order, once', () => {
    const key = fc
      .array(fc.constantFrom('a', 'b', '/', '-', '0', 'é'), { minLength: 1, maxLength: 6 })
      .map((c) => c.join(''));
    fc.assert(
      fc.property(
        fc.uniqueArray(key, { maxLength: 40 }),
        fc.constantFrom('', 'a', 'a/', 'b'),
        fc.constantFrom('', '/', '-'),
        fc.integer({ min: 1, max: 7 }),
        (keys, prefix, delimiter, maxKeys) => {
          const sorted = [...keys].sort(byUtf8);
          const whole = listPage(sorted, { prefix, delimiter, maxKeys: 1e9 });
          const pages = all(sorted, prefix, delimiter, maxKeys);
          for (const p of pages)
            expect(p.keys.length + p.prefixes.length).toBeLessThanOrEqual(maxKeys);
          expect(pages.flatMap((p) => p.keys)).toEqual(whole.keys);
          expect(pages.flatMap((p) => p.prefixes)).toEqual(whole.prefixes);
        },
      ),
    );
  });
});

describe('listPage with StartAfter', () => {
  it('skips a common prefix at or before StartAfter, as S3 does, but not one after it', () => {
    const page = (after: string) =>
      listPage(KEYS, {
        prefix: 'd/',
        delimiter: '/',
        maxKeys: 2,
        after: { after, isPrefix: false },
      });
    expect(page('d/a/')).toMatchObject({ keys: ['d/b'], prefixes: ['d/c/'] });
    expect(page('d/a')).toMatchObject({ keys: ['d/b'], prefixes: ['d/a/'] });
  });
});
