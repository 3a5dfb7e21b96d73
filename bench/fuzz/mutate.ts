import fc from 'fast-check'

/**
 * Structure-aware generators: valid messages taken from the codecs, then damaged the way a broken peer or an
 * attacker would (bytes flipped, inserted, deleted, truncated, lengths changed, values swapped for huge numbers,
 * wrong types, unicode, prototype keys, deep nesting, very long strings), mixed with pure random input.
 */

type ByteEdit =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; length: number }
  | { op: 'truncate'; at: number }
  | { op: 'repeat'; at: number; length: number; times: number }

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x3c, 0x3e, 0x26, 0x22, 0x0a, 0xc0, 0xef]

const byteEdit: fc.Arbitrary<ByteEdit> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(...INTERESTING_BYTES), fc.nat(255)) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 32 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('repeat' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }), times: fc.integer({ min: 2, max: 200 }) }),
)

function applyByteEdit(bytes: Buffer, edit: ByteEdit): Buffer {
  const at = bytes.length === 0 ? 0 : edit.at % (bytes.length + 1)
  switch (edit.op) {
    case 'flip': {
      if (bytes.length === 0) return bytes
      const copy = Buffer.from(bytes)
      const i = edit.at % bytes.length
      copy[i] = copy[i]! ^ (1 << edit.bit)
      return copy
    }
    case 'set': {
      if (bytes.length === 0) return Buffer.from([edit.value])
      const copy = Buffer.from(bytes)
      copy[edit.at % bytes.length] = edit.value
      return copy
    }
    case 'insert':
      return Buffer.concat([bytes.subarray(0, at), edit.bytes, bytes.subarray(at)])
    case 'delete':
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + edit.length)])
    case 'truncate':
      return bytes.subarray(0, at)
    case 'repeat': {
      const piece = bytes.subarray(at, at + edit.length)
      return Buffer.concat([bytes.subarray(0, at), ...Array.from({ length: edit.times }, () => piece), bytes.subarray(at)])
    }
  }
}

/** A seed damaged by 1-4 byte edits. */
export function mutatedBytes(seeds: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.tuple(seeds, fc.array(byteEdit, { minLength: 1, maxLength: 4 })).map(([seed, edits]) => edits.reduce(applyByteEdit, seed))
}

/** Pure random bytes, short and long. */
export const randomBytes: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096 }) },
).map((array) => Buffer.from(array))

// --- Text -----------------------------------------------------------------------------------------------

/** Tokens that break or stretch text formats (XML, JSON, PEM). */
const NASTY_TOKENS = [
  '<', '>', '&', '"', "'", '&amp;', '&lt;', '&#0;', '&#x0;', '&#1114112;', '&#99999999999;', '&unknown;', ']]>', '<![CDATA[x]]>', '<!-- -->', '<!--',
  '<?xml version="1.0" encoding="UTF-16"?>', '<!DOCTYPE a [<!ENTITY x "xx">]>', '<!ENTITY', 'xmlns="urn:x"', 'xmlns:a="urn:a"', 'a:b', '</a>', '<a/>',
  '\u0000', '\uFFFF', '\uFEFF', '\uD800', '\u202E', '😀', 'ß', '\r\n', '\t', ' ', '-1', '-0', '1e309', '99999999999999999999999', '9007199254740993',
  'NaN', 'Infinity', 'null', 'true', '[]', '{}', '__proto__', 'constructor', 'prototype', '\\', '\\u0000', '\\ud800', '%00', '%', '=', ':', ';', '/',
]

type TextEdit =
  | { op: 'insert'; at: number; text: string }
  | { op: 'delete'; at: number; length: number }
  | { op: 'truncate'; at: number }
  | { op: 'repeat'; at: number; length: number; times: number }
  | { op: 'replace'; at: number; length: number; text: string }

const textPiece: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...NASTY_TOKENS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 12, unit: 'grapheme' }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 8, unit: 'binary' }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => 'x'.repeat(n)) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 100, max: 50_000 }), fc.constantFrom('[', '{"a":', '<a>', '<a:b xmlns:a="u">')).map(([n, open]) => open.repeat(n)) },
)

const textEdit: fc.Arbitrary<TextEdit> = fc.oneof(
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: textPiece }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('repeat' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }), times: fc.integer({ min: 2, max: 300 }) }),
  fc.record({ op: fc.constant('replace' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 20 }), text: textPiece }),
)

function applyTextEdit(text: string, edit: TextEdit): string {
  const at = edit.at % (text.length + 1)
  switch (edit.op) {
    case 'insert':
      return text.slice(0, at) + edit.text + text.slice(at)
    case 'delete':
      return text.slice(0, at) + text.slice(at + edit.length)
    case 'truncate':
      return text.slice(0, at)
    case 'repeat':
      return text.slice(0, at) + text.slice(at, at + edit.length).repeat(edit.times) + text.slice(at)
    case 'replace':
      return text.slice(0, at) + edit.text + text.slice(at + edit.length)
  }
}

/** A seed text damaged by 1-4 edits with format-breaking tokens. */
export function mutatedText(seeds: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(seeds, fc.array(textEdit, { minLength: 1, maxLength: 4 })).map(([seed, edits]) => edits.reduce(applyTextEdit, seed))
}

// --- JSON -----------------------------------------------------------------------------------------------

/** Values that stretch a schema: huge and odd numbers, wrong types, long and odd strings, deep nesting. */
export const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    null, true, false, 0, -1, -0, 1.5, 2 ** 31, 2 ** 32, 2 ** 53, 9007199254740993, -(2 ** 53), 1e21, 1e308, -1e308, 8.64e15, 8.64e15 + 1, 5e-324,
    '', ' ', '\u0000', '\uD800', '\uFFFF', '😀', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'NaN', '-1', '1e999', '2026-13-45T99:99:99Z',
    [], {}, [null], [[[]]], { __proto__x: 1 },
  ),
  fc.integer(),
  fc.double(),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((n) => Number(n)),
  fc.string({ maxLength: 40, unit: 'grapheme' }),
  fc.string({ maxLength: 20, unit: 'binary' }),
  fc.integer({ min: 1_000, max: 100_000 }).map((n) => 'A'.repeat(n)),
  fc.integer({ min: 100, max: 10_000 }).map((n) => Array.from({ length: n }, (_v, i) => i)),
  // Deeper nesting comes as text (see textPiece): JSON.stringify itself overflows the stack far below 5,000.
  fc.integer({ min: 50, max: 800 }).map((depth) => nest(depth)),
  fc.jsonValue({ maxDepth: 3 }),
)

function nest(depth: number): unknown {
  let value: unknown = 0
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { a: value }
  return value
}

const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '']

type JsonEdit =
  | { op: 'replace'; path: number; value: unknown }
  | { op: 'delete'; path: number }
  | { op: 'add'; path: number; key: string; value: unknown }
  | { op: 'pollute'; path: number; key: string; value: unknown }

const jsonEdit: fc.Arbitrary<JsonEdit> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('replace' as const), path: fc.nat(), value: nastyValue }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), path: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('add' as const), path: fc.nat(), key: fc.string({ maxLength: 10 }), value: nastyValue }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('pollute' as const), path: fc.nat(), key: fc.constantFrom(...PROTO_KEYS), value: fc.constantFrom<unknown>({ polluted: 1 }, { prototype: { polluted: 1 } }, 1, null, 'x') }) },
)

type Container = Record<string, unknown> | unknown[]
interface Slot { parent: Container | undefined; key: string | number; value: unknown }

function slots(root: unknown): Slot[] {
  const out: Slot[] = [{ parent: undefined, key: '', value: root }]
  const visit = (value: unknown): void => {
    if (out.length > 2000 || typeof value !== 'object' || value === null) return
    const container = value as Container
    for (const key of Object.keys(container)) {
      const child = (container as Record<string, unknown>)[key]
      out.push({ parent: container, key: Array.isArray(container) ? Number(key) : key, value: child })
      visit(child)
    }
  }
  visit(root)
  return out
}

function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  // defineProperty so "__proto__" becomes an own key that JSON.stringify writes, as a peer would send it.
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

/** Generated constants are shared between cases: insert a copy, so a later edit never changes the original. */
function fresh(value: unknown): unknown {
  return typeof value === 'object' && value !== null ? JSON.parse(JSON.stringify(value)) as unknown : value
}

function applyJsonEdit(root: unknown, rawEdit: JsonEdit): unknown {
  const edit = 'value' in rawEdit ? { ...rawEdit, value: fresh(rawEdit.value) } : rawEdit
  const all = slots(root)
  const slot = all[edit.path % all.length]!
  switch (edit.op) {
    case 'replace':
      if (slot.parent === undefined) return edit.value
      if (Array.isArray(slot.parent)) slot.parent[slot.key as number] = edit.value
      else setOwn(slot.parent, String(slot.key), edit.value)
      return root
    case 'delete':
      if (slot.parent === undefined) return root
      if (Array.isArray(slot.parent)) slot.parent.splice(slot.key as number, 1)
      else delete slot.parent[String(slot.key)]
      return root
    case 'add':
    case 'pollute': {
      const target = typeof slot.value === 'object' && slot.value !== null ? slot.value as Container : slot.parent
      if (target === undefined) return root
      if (Array.isArray(target)) target.push(edit.value)
      else setOwn(target, edit.key, edit.value)
      return root
    }
  }
}

/**
 * JSON text from a valid seed object: 1-3 structural edits, then sometimes text edits on the serialised form
 * (truncated, broken escapes). Seeds are deep-copied first, so they stay valid.
 */
export function mutatedJson(seeds: fc.Arbitrary<unknown>): fc.Arbitrary<string> {
  const structural = fc.tuple(seeds, fc.array(jsonEdit, { minLength: 1, maxLength: 3 }))
    .map(([seed, edits]) => JSON.stringify(edits.reduce(applyJsonEdit, structuredClone(seed))) ?? 'null')
  return fc.oneof(
    { weight: 6, arbitrary: structural },
    { weight: 2, arbitrary: mutatedText(structural) },
    { weight: 1, arbitrary: seeds.map((seed) => JSON.stringify(seed)) },
    { weight: 1, arbitrary: fc.oneof(fc.json({ maxDepth: 4 }), fc.string({ maxLength: 200, unit: 'binary' })) },
  )
}

/** A structurally edited copy of a seed, as a value (for targets that take objects, e.g. HTTP bodies). */
export function mutatedValue(seeds: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.tuple(seeds, fc.array(jsonEdit, { minLength: 1, maxLength: 3 })).map(([seed, edits]) => edits.reduce(applyJsonEdit, structuredClone(seed)))
}

/** Cuts a byte stream into chunks at generated points, as TCP may deliver it. */
export function splitAt(stream: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (stream.length === 0 ? 0 : c % stream.length)))].sort((a, b) => a - b)
  const chunks: Buffer[] = []
  let from = 0
  for (const point of points) {
    if (point <= from) continue
    chunks.push(stream.subarray(from, point))
    from = point
  }
  chunks.push(stream.subarray(from))
  return chunks
}
