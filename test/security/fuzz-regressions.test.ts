import t from 'tap'
import { CSTA_ED3_NAMESPACE, XmlCstaCodec } from '../../gateway/src/adapters/osbiz/csta/xml-codec.js'
import { encodeXmlFrame, EVENT_INVOKE_ID } from '../../gateway/src/adapters/osbiz/csta/xml-framing.js'

/** Minimised inputs the fuzz suite (bench/fuzz) found, one test each. */

const codec = new XmlCstaCodec()
const frame = (xml: string): Buffer => encodeXmlFrame(EVENT_INVOKE_ID, Buffer.from(xml, 'utf8'))

t.test('a CSTA frame with thousands of attributes is refused unread, not parsed for most of a second', async (t) => {
  // Found by csta-xml: fast-xml-parser is quadratic in the attributes of one element (5,000 in a 62 KB frame
  // took 880 ms of event loop on a desktop core; a box is several times slower).
  const attributes = Array.from({ length: 5000 }, (_v, i) => `a${i}="${i}"`).join(' ')
  const [decoded] = codec.createDecoder().push(frame(`<DeliveredEvent ${attributes}><monitorCrossRefID>1</monitorCrossRefID></DeliveredEvent>`))
  t.match(decoded, { ok: false, error: { code: 'XML_PARSE', reason: /attributes|characters/, inSync: true } })
})

t.test('a CSTA frame with thousands of elements carrying an attribute each is refused unread', async (t) => {
  // Found by csta-xml: 5,000 elements with one attribute each took 470 ms.
  const [decoded] = codec.createDecoder().push(frame(`<DeliveredEvent xmlns="${CSTA_ED3_NAMESPACE}">${'<a b="1"/>'.repeat(5000)}</DeliveredEvent>`))
  t.match(decoded, { ok: false, error: { code: 'XML_PARSE', reason: /attributes/, inSync: true } })
})

t.test('ordinary CSTA messages still decode after the shape check', async (t) => {
  const event = codec.encode(EVENT_INVOKE_ID, {
    kind: 'DeliveredEvent', monitorCrossRefId: '1', connection: { callId: '5', deviceId: '201' }, alertingDevice: '201', localConnectionInfo: 'alerting', cause: 'newCall',
  })
  t.match(codec.createDecoder().push(event), [{ ok: true, message: { kind: 'DeliveredEvent', monitorCrossRefId: '1', connection: { callId: '5', deviceId: '201' } } }])
  const snapshot = codec.encode(7, { kind: 'SnapshotDeviceResponse', calls: [{ callId: '5', deviceId: '201', localConnectionState: 'alerting' }] })
  t.match(codec.createDecoder().push(snapshot), [{ ok: true, message: { kind: 'SnapshotDeviceResponse' } }])
})

t.test('a CSTA frame whose tag runs on for 60 KB is refused before the parser scans it', async (t) => {
  // Found by csta-xml (seed 12, case 61664): an unterminated tag filling the frame took the parser 100-200 ms
  // unloaded and over a second on a busy machine; no CSTA tag is longer than a few hundred characters.
  const head = `<HeldEvent xmlns="${CSTA_ED3_NAMESPACE}"><monitorCrossRefID>1</monitorCrossRefID><localCo`
  const [decoded] = codec.createDecoder().push(frame(head + '{"a":'.repeat(12_000)))
  t.match(decoded, { ok: false, error: { code: 'XML_PARSE', reason: /characters/, inSync: true } })
})
