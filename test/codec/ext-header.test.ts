import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ROUTE_KEY, decodeExtHeader, encodeExtHeader, routeOnly } from '../../lib/codec/index.js';
import { MsgTransErrorCode } from '../../lib/errors/error-codes.js';
import { MsgTransError } from '../../lib/errors/msgtrans-error.js';
import { MsgTransProtocolError } from '../../lib/errors/msgtrans-protocol-error.js';

function hasCode(code: string, cls: typeof MsgTransError = MsgTransError): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.equal((err as MsgTransError).code, code);
    return true;
  };
}

const text = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('extension header: encode', () => {
  test('nothing to say -> empty buffer', () => {
    assert.equal(encodeExtHeader(undefined).length, 0);
    assert.equal(encodeExtHeader(undefined, {}).length, 0);
    assert.ok(Buffer.isBuffer(encodeExtHeader(undefined)));
  });

  test('route then metadata, one key:value per line, separated by \\n', () => {
    assert.equal(ROUTE_KEY, 'route');
    assert.equal(encodeExtHeader('math.sum').toString('utf8'), 'route:math.sum');
    assert.equal(
      encodeExtHeader('math.sum', { 'trace-id': '4bf92f35' }).toString('utf8'),
      'route:math.sum\ntrace-id:4bf92f35',
    );
    assert.equal(encodeExtHeader(undefined, { a: '1', b: '2' }).toString('utf8'), 'a:1\nb:2');
    assert.equal(encodeExtHeader('', undefined).toString('utf8'), 'route:', 'an empty route is still a route');
  });

  test('%, \\n and \\r in values are written %25, %0A and %0D (exact bytes)', () => {
    const buf = encodeExtHeader('a%b\nc\rd', { k: '100%\r\n' });
    assert.deepEqual(buf, text('route:a%25b%0Ac%0Dd\nk:100%25%0D%0A'));
    assert.equal(buf.toString('hex'), text('route:a%25b%0Ac%0Dd\nk:100%25%0D%0A').toString('hex'));
    // no raw CR/LF inside an entry, exactly one LF between the two entries
    assert.equal([...buf].filter((b) => b === 0x0a).length, 1);
    assert.equal([...buf].filter((b) => b === 0x0d).length, 0);
  });

  test('a value that contains ":" is written as is', () => {
    assert.equal(encodeExtHeader('a:b', { url: 'http://x:1/' }).toString('utf8'), 'route:a:b\nurl:http://x:1/');
  });

  test('UTF-8 values are written as UTF-8', () => {
    assert.deepEqual(encodeExtHeader('日本', { emoji: '🎉' }), text('route:日本\nemoji:🎉'));
  });

  test('metadata key "route", "", or one containing ":" or "\\n" throws ERR_MSGTRANS_INVALID_METADATA', () => {
    for (const key of ['route', '', 'a:b', 'a\nb', ':', '\n']) {
      assert.throws(
        () => encodeExtHeader('r', { [key]: 'v' }),
        hasCode(MsgTransErrorCode.INVALID_METADATA),
        JSON.stringify(key),
      );
      assert.throws(
        () => encodeExtHeader(undefined, { ok: 'fine', [key]: 'v' }),
        hasCode(MsgTransErrorCode.INVALID_METADATA),
        JSON.stringify(key),
      );
    }
  });
});

describe('extension header: decode', () => {
  test('empty -> no route, no metadata', () => {
    assert.deepEqual(decodeExtHeader(Buffer.alloc(0)), { route: undefined, metadata: undefined });
  });

  test('"route:math.sum\\ntrace-id:4bf92f35" -> route + metadata', () => {
    assert.deepEqual(decodeExtHeader(text('route:math.sum\ntrace-id:4bf92f35')), {
      route: 'math.sum',
      metadata: { 'trace-id': '4bf92f35' },
    });
  });

  test('route only, metadata only, route not first', () => {
    assert.deepEqual(decodeExtHeader(text('route:abc')), { route: 'abc', metadata: undefined });
    assert.deepEqual(decodeExtHeader(text('tenant:acme')), { route: undefined, metadata: { tenant: 'acme' } });
    assert.deepEqual(decodeExtHeader(text('a:1\nroute:r\nb:2')), { route: 'r', metadata: { a: '1', b: '2' } });
  });

  test('the golden fixtures’ ext headers parse', () => {
    assert.deepEqual(decodeExtHeader(Buffer.from('726f7574653a616263', 'hex')), { route: 'abc', metadata: undefined });
    assert.deepEqual(decodeExtHeader(Buffer.from('726f7574653a6d7367', 'hex')), { route: 'msg', metadata: undefined });
  });

  test('the key runs to the first ":"; the value may contain ":"', () => {
    assert.deepEqual(decodeExtHeader(text('route:a:b:c\nurl:http://x:1/\nempty:')), {
      route: 'a:b:c',
      metadata: { url: 'http://x:1/', empty: '' },
    });
  });

  test('escapes are decoded', () => {
    assert.deepEqual(decodeExtHeader(text('route:a%25b%0Ac%0Dd\nk:%2525')), {
      route: 'a%b\nc\rd',
      metadata: { k: '%25' },
    });
  });

  test('empty lines are tolerated', () => {
    assert.deepEqual(decodeExtHeader(text('\nroute:x\n\nk:v\n')), { route: 'x', metadata: { k: 'v' } });
  });

  test('invalid UTF-8 throws ERR_MSGTRANS_BAD_EXT_HEADER', () => {
    const bad = [
      Buffer.from([0x72, 0x3a, 0xff]), // 0xFF never appears in UTF-8
      Buffer.from([0x6b, 0x3a, 0xe6, 0x97]), // truncated 3-byte sequence
      Buffer.from([0x6b, 0x3a, 0xc0, 0xaf]), // overlong '/'
      Buffer.from([0x6b, 0x3a, 0xed, 0xa0, 0x80]), // UTF-16 surrogate
    ];
    for (const b of bad) {
      assert.throws(
        () => decodeExtHeader(b),
        hasCode(MsgTransErrorCode.BAD_EXT_HEADER, MsgTransProtocolError),
        b.toString('hex'),
      );
    }
  });

  test('a line without ":" throws ERR_MSGTRANS_BAD_EXT_HEADER', () => {
    for (const s of ['nocolon', 'route:x\nnocolon', 'k:v\nno colon here\nz:1']) {
      assert.throws(
        () => decodeExtHeader(text(s)),
        hasCode(MsgTransErrorCode.BAD_EXT_HEADER, MsgTransProtocolError),
        JSON.stringify(s),
      );
    }
  });

  test('a "__proto__" key stays an own data property and does not touch prototypes', () => {
    const { metadata } = decodeExtHeader(text('__proto__:polluted\nconstructor:x\npolluted:no'));
    assert.ok(metadata);
    assert.ok(Object.prototype.hasOwnProperty.call(metadata, '__proto__'));
    const desc = Object.getOwnPropertyDescriptor(metadata, '__proto__');
    assert.equal(desc?.value, 'polluted');
    assert.equal(desc?.enumerable, true);
    assert.equal(Object.getPrototypeOf(metadata), Object.prototype);
    assert.deepEqual(Object.keys(metadata), ['__proto__', 'constructor', 'polluted']);
    assert.equal(metadata.constructor, 'x');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    // and it encodes back the same way
    assert.equal(encodeExtHeader(undefined, metadata).toString('utf8'), '__proto__:polluted\nconstructor:x\npolluted:no');
  });
});

describe('extension header: round trip', () => {
  const values = [
    'plain',
    '',
    '%',
    '%%',
    '%25',
    '%0A',
    '%0d',
    '100% sure',
    '\n',
    '\r',
    '\r\n',
    'line1\nline2\r\nline3',
    'a:b:c',
    ' spaced ',
    '日本語 🎉',
    '%\n\r:%',
  ];

  for (const v of values) {
    test(`value ${JSON.stringify(v)} round-trips as route and as metadata`, () => {
      const buf = encodeExtHeader(v, { k: v, other: 'x' });
      assert.ok(!buf.includes(0x0d), 'no raw CR on the wire');
      assert.equal([...buf].filter((b) => b === 0x0a).length, 2, 'only the two separators are raw LFs');
      assert.deepEqual(decodeExtHeader(buf), { route: v, metadata: { k: v, other: 'x' } });
    });
  }

  test('metadata values are stringified', () => {
    const meta = { n: 42 as unknown as string };
    assert.deepEqual(decodeExtHeader(encodeExtHeader(undefined, meta)), { route: undefined, metadata: { n: '42' } });
  });
});

describe('decodeExtHeader on headers seen before', () => {
  test('each decode of the same bytes gets a metadata object of its own', () => {
    const buf = encodeExtHeader('orders.get', { 'msgtrans-timeout': '5000', tenant: 'a' });
    const first = decodeExtHeader(buf);
    first.metadata!.tenant = 'changed by a handler';
    delete first.metadata!['msgtrans-timeout'];
    const second = decodeExtHeader(Buffer.from(buf));
    assert.deepEqual(second, { route: 'orders.get', metadata: { 'msgtrans-timeout': '5000', tenant: 'a' } });
    assert.notEqual(second.metadata, first.metadata);
  });

  test('thousands of different headers, each decoded twice in turn, decode to what they say', () => {
    for (let i = 0; i < 3000; i++) {
      const route = `r${i % 37}`;
      const metadata = i % 5 === 0 ? undefined : { n: String(i), ...(i % 3 === 0 ? { __proto__x: 'y' } : {}) };
      const buf = encodeExtHeader(route, metadata);
      for (let round = 0; round < 2; round++) assert.deepEqual(decodeExtHeader(buf), { route, metadata }, `header ${i}, round ${round}`);
    }
  });

  test('a "__proto__" entry stays data when the header is decoded again', () => {
    const buf = Buffer.from('route:x\n__proto__:polluted');
    for (let round = 0; round < 2; round++) {
      const { metadata } = decodeExtHeader(buf);
      assert.equal(Object.getPrototypeOf(metadata), Object.prototype);
      assert.equal(Object.getOwnPropertyDescriptor(metadata, '__proto__')?.value, 'polluted');
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('routeOnly on headers seen before', () => {
  test('thousands of routes in turn, each read twice, and headers that are not route-only among them', () => {
    for (let i = 0; i < 3000; i++) {
      const route = `orders.r${i % 41}`;
      const plain = encodeExtHeader(route);
      const withMetadata = encodeExtHeader(route, { n: String(i) });
      for (let round = 0; round < 2; round++) {
        assert.equal(routeOnly(plain), route, `route ${i}, round ${round}`);
        assert.equal(routeOnly(withMetadata), undefined);
        assert.equal(routeOnly(Buffer.from(`route:${route}%0A`)), undefined);
      }
    }
  });
});
