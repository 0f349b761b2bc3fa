// The few DER (ASN.1) encodings an X.509 certificate needs: enough to issue
// development certificates with node:crypto alone, so the package depends on
// no certificate library and no `openssl` binary.

/** One DER element: tag, definite length, contents. */
export function derElement(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const length = body.length;
  let header: Buffer;
  if (length < 0x80) {
    header = Buffer.from([tag, length]);
  } else {
    const bytes: number[] = [];
    for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, body]);
}

export const derSequence = (...items: Buffer[]): Buffer => derElement(0x30, ...items);
export const derSet = (...items: Buffer[]): Buffer => derElement(0x31, ...items);
export const derOctetString = (bytes: Buffer): Buffer => derElement(0x04, bytes);
export const derUtf8String = (text: string): Buffer => derElement(0x0c, Buffer.from(text, 'utf8'));
export const derBoolean = (value: boolean): Buffer => derElement(0x01, Buffer.from([value ? 0xff : 0x00]));
/** Context-specific, constructed, explicit tag `[n]`. */
export const derExplicit = (n: number, inner: Buffer): Buffer => derElement(0xa0 | n, inner);

/** A non-negative INTEGER from big-endian magnitude bytes. */
export function derUnsignedInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  // A set top bit would read as negative: prefix a zero byte.
  return derElement(0x02, trimmed[0] & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export const derSmallInteger = (value: number): Buffer => derUnsignedInteger(Buffer.from([value]));

/** BIT STRING of whole bytes (no unused bits). */
export const derBitString = (bytes: Buffer): Buffer => derElement(0x03, Buffer.from([0]), bytes);

/** BIT STRING of named bits (bit 0 is the most significant bit of the first byte), trailing zero bits trimmed. */
export function derNamedBits(bits: number[]): Buffer {
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3] |= 0x80 >> (bit & 7);
  const unused = 7 - (highest & 7);
  return derElement(0x03, Buffer.from([unused]), bytes);
}

export function derOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const bytes: number[] = [arcs[0] * 40 + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) chunk.unshift(0x80 | (n & 0x7f));
    bytes.push(...chunk);
  }
  return derElement(0x06, Buffer.from(bytes));
}

/** UTCTime (years 1950-2049) or GeneralizedTime, as RFC 5280 asks. */
export function derTime(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '') + 'Z';
  const year = date.getUTCFullYear();
  return year >= 1950 && year < 2050
    ? derElement(0x17, Buffer.from(digits.slice(2), 'ascii'))
    : derElement(0x18, Buffer.from(digits, 'ascii'));
}

/** A Name with a single common name. */
export const derCommonName = (cn: string): Buffer => derSequence(derSet(derSequence(derOid('2.5.4.3'), derUtf8String(cn))));
