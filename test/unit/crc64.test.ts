import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc64FromBase64, crc64nvme, crc64ToBase64 } from '#core/base/crc64.ts';

describe('crc64nvme', () => {
  it("gives CRC-64/NVME's check value, and carries on from a prefix's value", () => {
    expect(crc64nvme(new TextEncoder().encode('123456789'))).toBe('ae8b14860a799888');
    // S3's header form of the empty object's CRC.
    expect(crc64ToBase64(crc64nvme(new Uint8Array()))).toBe('AAAAAAAAAAA=');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (a, b) => {
        const whole = new Uint8Array(a.length + b.length);
        whole.set(a);
        whole.set(b, a.length);
        expect(crc64nvme(b, crc64nvme(a))).toBe(crc64nvme(whole));
        const crc = crc64nvme(whole);
        expect(crc64FromBase64(crc64ToBase64(crc))).toBe(crc);
      }),
    );
    expect(crc64FromBase64('not base64!')).toBeUndefined();
    expect(crc64FromBase64('AAAA')).toBeUndefined();
  });
});
