/**
 * CRC-64/NVME, the full-object checksum S3 keeps for every object uploaded since 2025 unless
 * the uploader chose another (`x-amz-checksum-crc64nvme`, base64 of its 8 bytes big-endian).
 * Reuse uses it to prove that an object is an older version with bytes appended, reading only
 * the appended bytes: a CRC carries on from its value over a prefix (as zlib's crc32 does), so
 * crc(old + tail) = crc64nvme(tail, crc(old)).
 *
 * Reflected, polynomial 0xAD93D23594C93659, initial value and final XOR all ones: check value
 * (of the nine bytes "123456789") 0xAE8B14860A799888. Table-driven over two 32-bit halves
 * (a BigInt per byte would be some ten times slower).
 */

/** The reflected polynomial's halves. */
const POLY_HI = 0x9a6c9329;
const POLY_LO = 0xac4bc9b5;

const TABLE_HI = new Uint32Array(256);
const TABLE_LO = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let hi = 0;
  let lo = n;
  for (let k = 0; k < 8; k++) {
    const carry = lo & 1;
    lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
    hi >>>= 1;
    if (carry) {
      hi = (hi ^ POLY_HI) >>> 0;
      lo = (lo ^ POLY_LO) >>> 0;
    }
  }
  TABLE_HI[n] = hi;
  TABLE_LO[n] = lo;
}

/**
 * The CRC-64/NVME of `bytes`, or of a prefix's bytes followed by these when `previous` is that
 * prefix's CRC (as 16 hex digits).
 */
export function crc64nvme(bytes: Uint8Array, previous = '0000000000000000'): string {
  let hi = ~Number.parseInt(previous.slice(0, 8), 16) >>> 0;
  let lo = ~Number.parseInt(previous.slice(8), 16) >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    const index = (lo ^ (bytes[i] as number)) & 0xff;
    lo = (((lo >>> 8) | (hi << 24)) ^ (TABLE_LO[index] as number)) >>> 0;
    hi = ((hi >>> 8) ^ (TABLE_HI[index] as number)) >>> 0;
  }
  return hex(~hi >>> 0) + hex(~lo >>> 0);
}

const hex = (n: number) => n.toString(16).padStart(8, '0');

/** S3's header form (base64 of the 8 bytes, big-endian) of a CRC as 16 hex digits. */
export function crc64ToBase64(crc: string): string {
  const bytes = new Uint8Array(8);
  for (let i = 0; i < 8; i++) bytes[i] = Number.parseInt(crc.slice(2 * i, 2 * i + 2), 16);
  return btoa(String.fromCharCode(...bytes));
}

/** A CRC as 16 hex digits from S3's header form; undefined when it is not 8 bytes of base64. */
export function crc64FromBase64(value: string): string | undefined {
  let raw: string;
  try {
    raw = atob(value);
  } catch {
    return undefined;
  }
  if (raw.length !== 8) return undefined;
  return [...raw].map((c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
}
