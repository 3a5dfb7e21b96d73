import t from 'tap'
import { CstaCodecError } from '../../gateway/src/adapters/osbiz/csta/codec.js'
import { XmlCstaCodec } from '../../gateway/src/adapters/osbiz/csta/xml-codec.js'
import {
  encodeXmlFrame,
  XML_MAX_BODY_BYTES,
  XmlFrameReader,
  type XmlFrame,
} from '../../gateway/src/adapters/osbiz/csta/xml-framing.js'

const body = (text: string): Buffer => Buffer.from(text, 'utf8')

function okFrames(frames: XmlFrame[]): Array<{ invokeId: number; body: string }> {
  return frames.map((frame) => {
    if (!frame.ok) throw new Error(`unexpected error frame ${frame.error.code}`)
    return { invokeId: frame.invokeId, body: frame.body.toString('utf8') }
  })
}

t.test('the header: 0x00 0x00, total length including the header, invoke id as 4 ASCII digits', async (t) => {
  const frame = encodeXmlFrame(42, body('<a/>'))
  t.same([...frame.subarray(0, 2)], [0, 0])
  t.equal(frame.readUInt16BE(2), 4 + 8)
  t.equal(frame.subarray(4, 8).toString('ascii'), '0042')
  t.equal(frame.subarray(8).toString('utf8'), '<a/>')
  t.equal(encodeXmlFrame(9999, body('<a/>')).subarray(4, 8).toString('ascii'), '9999', 'event invoke id')
  t.throws(() => encodeXmlFrame(10000, body('<a/>')), { code: 'FRAME_INVOKE_ID' })
  t.throws(() => encodeXmlFrame(-1, body('<a/>')), { code: 'FRAME_INVOKE_ID' })
})

t.test('reassembles a frame delivered one byte at a time', async (t) => {
  const frame = encodeXmlFrame(7, body('<MonitorStart/>'))
  const reader = new XmlFrameReader()
  const frames: XmlFrame[] = []
  for (const byte of frame) frames.push(...reader.push(Buffer.from([byte])))
  t.same(okFrames(frames), [{ invokeId: 7, body: '<MonitorStart/>' }])
  t.equal(reader.bufferedBytes, 0)
})

t.test('splits many frames in one chunk and keeps a trailing partial one', async (t) => {
  const frames = [1, 2, 3, 4].map((id) => encodeXmlFrame(id, body(`<m n="${id}"/>`)))
  const stream = Buffer.concat(frames)
  const cut = stream.length - 5
  const reader = new XmlFrameReader()
  t.same(okFrames(reader.push(stream.subarray(0, cut))).map((f) => f.invokeId), [1, 2, 3])
  t.equal(reader.bufferedBytes, frames[3]!.length - 5)
  t.same(okFrames(reader.push(stream.subarray(cut))), [{ invokeId: 4, body: '<m n="4"/>' }])
})

t.test('lengths are UTF-8 byte lengths, so non-ASCII names survive', async (t) => {
  const text = '<n>Jürgen Müller-Øster 李 😀</n>'
  t.ok(Buffer.byteLength(text) > text.length, 'the test text has multi-byte characters')
  const frame = encodeXmlFrame(1, body(text))
  t.equal(frame.readUInt16BE(2), Buffer.byteLength(text) + 8)
  const reader = new XmlFrameReader()
  const next = encodeXmlFrame(2, body('<after/>'))
  t.same(okFrames(reader.push(Buffer.concat([frame, next]))), [{ invokeId: 1, body: text }, { invokeId: 2, body: '<after/>' }])
})

t.test('a length shorter than the header loses sync for good', async (t) => {
  const bad = Buffer.from([0, 0, 0, 5, 0x30, 0x30, 0x30, 0x31])
  const reader = new XmlFrameReader()
  const [frame, ...rest] = reader.push(Buffer.concat([bad, encodeXmlFrame(1, body('<a/>'))]))
  t.same(rest, [], 'nothing after the bad header is trusted')
  t.match(frame, { ok: false, error: { code: 'FRAME_LENGTH', inSync: false } })
  t.equal(reader.inSync, false)
  t.same(reader.push(encodeXmlFrame(2, body('<b/>'))), [], 'later input is discarded')
})

t.test('bytes that are not a frame start lose sync at once', async (t) => {
  const reader = new XmlFrameReader()
  t.match(reader.push(Buffer.from('HTTP/1.1 400 Bad Request\r\n')), [{ ok: false, error: { code: 'FRAME_HEADER', inSync: false } }])
  const partial = new XmlFrameReader()
  t.match(partial.push(Buffer.from([0x00, 0x26])), [{ ok: false, error: { code: 'FRAME_HEADER' } }], 'detected from the second byte')
})

t.test('an invoke id that is not 4 digits drops that frame only', async (t) => {
  const frame = encodeXmlFrame(1, body('<bad/>'))
  frame.write('12ab', 4, 'ascii')
  const reader = new XmlFrameReader()
  const frames = reader.push(Buffer.concat([frame, encodeXmlFrame(2, body('<good/>'))]))
  t.match(frames[0], { ok: false, error: { code: 'FRAME_INVOKE_ID', inSync: true } })
  t.same(okFrames(frames.slice(1)), [{ invokeId: 2, body: '<good/>' }])
  t.ok(reader.inSync)
})

t.test('the largest frame (65535 bytes) round-trips; one byte more cannot be framed', async (t) => {
  const text = `<a>${'x'.repeat(XML_MAX_BODY_BYTES - 7)}</a>`
  t.equal(Buffer.byteLength(text), XML_MAX_BODY_BYTES)
  const frame = encodeXmlFrame(3, body(text))
  t.equal(frame.readUInt16BE(2), 65535, 'read unsigned')
  const reader = new XmlFrameReader()
  const [decoded] = reader.push(frame)
  t.ok(decoded?.ok && decoded.body.toString('utf8') === text, 'body intact')
  t.throws(() => encodeXmlFrame(3, body(`${text}x`)), { code: 'FRAME_TOO_LARGE' })
})

t.test('a 70 KB message: the encoder refuses it, and a naive sender desynchronises the stream', async (t) => {
  const codec = new XmlCstaCodec()
  const huge = 'x'.repeat(70 * 1024)
  t.throws(() => codec.encode(1, { kind: 'SystemStatus', systemStatus: huge }), CstaCodecError)
  t.throws(() => codec.encode(1, { kind: 'SystemStatus', systemStatus: huge }), { code: 'FRAME_TOO_LARGE' })

  // A sender that writes the length into 16 bits without checking wraps it around.
  const text = Buffer.from(`<SystemStatus><systemStatus>${huge}</systemStatus></SystemStatus>`)
  const header = Buffer.alloc(8)
  header.writeUInt16BE((text.length + 8) & 0xffff, 2)
  header.write('9000', 4, 'ascii')
  const decoder = codec.createDecoder()
  const results = decoder.push(Buffer.concat([header, text]))
  t.match(results, [{ ok: false, error: { code: 'XML_PARSE', inSync: true } }, { ok: false, error: { code: 'FRAME_HEADER', inSync: false } }])
  t.equal(decoder.inSync, false)
})

t.test('a configured limit skips oversized frames by their length and stays in sync', async (t) => {
  const reader = new XmlFrameReader({ maxFrameBytes: 100 })
  const big = encodeXmlFrame(1, body(`<a>${'y'.repeat(300)}</a>`))
  const small = encodeXmlFrame(2, body('<b/>'))
  const stream = Buffer.concat([big, small])
  const first = reader.push(stream.subarray(0, 50))
  t.match(first, [{ ok: false, error: { code: 'FRAME_TOO_LARGE', inSync: true } }])
  const rest = reader.push(stream.subarray(50))
  t.same(okFrames(rest), [{ invokeId: 2, body: '<b/>' }])
})
