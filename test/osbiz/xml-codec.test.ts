import t from 'tap'
import type { CstaDecoded } from '../../gateway/src/adapters/osbiz/csta/codec.js'
import { createCstaCodec, CSTA_CODEC_NAMES } from '../../gateway/src/adapters/osbiz/csta/codec-registry.js'
import { normaliseDeviceId } from '../../gateway/src/adapters/osbiz/csta/device-id.js'
import { CSTA_ED3_NAMESPACE, ECMA354_NAMESPACE, XmlCstaCodec } from '../../gateway/src/adapters/osbiz/csta/xml-codec.js'
import { encodeXmlFrame } from '../../gateway/src/adapters/osbiz/csta/xml-framing.js'
import { samples } from './fixtures/csta-samples.js'

function decodeAll(codec: XmlCstaCodec, frame: Buffer): CstaDecoded[] {
  return codec.createDecoder().push(frame)
}

/** Frames raw XML the way a switch would and decodes it. */
function decodeXml(xml: string, codec = new XmlCstaCodec(), invokeId = 9999): CstaDecoded {
  const [result, ...rest] = decodeAll(codec, encodeXmlFrame(invokeId, Buffer.from(xml, 'utf8')))
  if (result === undefined || rest.length > 0) throw new Error('expected exactly one result')
  return result
}

t.test('every model message round-trips, with and without xmlns', async (t) => {
  for (const includeNamespace of [true, false]) {
    const codec = new XmlCstaCodec({ includeNamespace })
    for (const message of Object.values(samples)) {
      const results = decodeAll(codec, codec.encode(12, message))
      t.same(results, [{ ok: true, invokeId: 12, message, bytes: codec.encode(12, message).length }], `${message.kind} (xmlns ${includeNamespace})`)
    }
  }
})

t.test('what we send carries the ed3 namespace, and ECMA-354 on session messages', async (t) => {
  const codec = new XmlCstaCodec()
  const text = (frame: Buffer): string => frame.subarray(8).toString('utf8')
  t.match(text(codec.encode(1, samples.MonitorStart)), `<MonitorStart xmlns="${CSTA_ED3_NAMESPACE}">`)
  t.match(text(codec.encode(1, samples.StartApplicationSession)), `<StartApplicationSession xmlns="${ECMA354_NAMESPACE}">`)
  t.match(text(codec.encode(1, samples.MonitorStart)), /^<\?xml version="1.0" encoding="UTF-8"\?>/)
  t.notMatch(text(new XmlCstaCodec({ includeNamespace: false }).encode(1, samples.DeliveredEvent)), 'xmlns')
  t.match(text(codec.encode(1, samples.StartApplicationSession)), 'p&lt;&amp;&gt;&quot;&apos;w', 'values are escaped')
})

t.test('the codec registry offers xml', async (t) => {
  t.same(CSTA_CODEC_NAMES, ['xml'])
  t.equal(createCstaCodec('xml').name, 'xml')
})

t.test('both device forms, with or without namespace prefix, any edition', async (t) => {
  const nested = `<?xml version="1.0" encoding="UTF-8"?>
    <csta:DeliveredEvent xmlns:csta="http://www.ecma-international.org/standards/ecma-323/csta/ed5">
      <csta:monitorCrossRefID>3</csta:monitorCrossRefID>
      <csta:connection><csta:callID>17</csta:callID><csta:deviceID typeOfNumber="dialingNumber">201</csta:deviceID></csta:connection>
      <csta:alertingDevice><csta:deviceIdentifier typeOfNumber="dialingNumber">201</csta:deviceIdentifier></csta:alertingDevice>
      <csta:callingDevice><csta:deviceIdentifier typeOfNumber="dialingNumber">0301234</csta:deviceIdentifier></csta:callingDevice>
      <csta:calledDevice><csta:deviceIdentifier>201</csta:deviceIdentifier></csta:calledDevice>
      <csta:lastRedirectionDevice><csta:notRequired/></csta:lastRedirectionDevice>
      <csta:localConnectionInfo>alerting</csta:localConnectionInfo>
      <csta:cause>newCall</csta:cause>
    </csta:DeliveredEvent>`
  const flat = `<DeliveredEvent xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed4">
      <monitorCrossRefID>3</monitorCrossRefID><connection><callID>17</callID><deviceID>201</deviceID></connection>
      <alertingDevice>201</alertingDevice><callingDevice>0301234</callingDevice><calledDevice>201</calledDevice>
      <localConnectionInfo>alerting</localConnectionInfo><cause>newCall</cause></DeliveredEvent>`
  const expected = {
    kind: 'DeliveredEvent', monitorCrossRefId: '3', connection: { callId: '17', deviceId: '201' },
    alertingDevice: '201', callingDevice: '0301234', calledDevice: '201', localConnectionInfo: 'alerting', cause: 'newCall',
  }
  t.same(decodeXml(nested), { ok: true, invokeId: 9999, message: expected, bytes: Buffer.byteLength(nested) + 8 }, 'nested, prefixed, ed5')
  t.match(decodeXml(flat), { ok: true, message: expected }, 'flat, default namespace, ed4')
  t.match(decodeXml('<DoNotDisturbEvent><monitorCrossRefID>3</monitorCrossRefID><device><deviceIdentifier>201</deviceIdentifier></device><doNotDisturbOn>TRUE</doNotDisturbOn></DoNotDisturbEvent>'),
    { ok: true, message: { kind: 'DoNotDisturbEvent', device: '201', doNotDisturbOn: true } }, 'no namespace at all, nested device')
})

t.test('device ids are normalised to the extension', async (t) => {
  const codec = new XmlCstaCodec({ devicePrefix: '+49301234' })
  // N<...> arrives escaped, as any "<" in XML text must.
  for (const raw of ['201', 'tel:201;phone-context=dialstring', 'N&lt;+49301234201&gt;', '+49301234201', '0049301234201', ' +49 30 1234 201 ']) {
    t.match(decodeXml(`<MonitorStart><monitorObject><deviceObject>${raw}</deviceObject></monitorObject></MonitorStart>`, codec),
      { ok: true, message: { kind: 'MonitorStart', device: '201' } }, JSON.stringify(raw))
  }
  t.equal(normaliseDeviceId('+4989123456', '+49301234'), '+4989123456', 'an outside number stays as it is')
  t.equal(normaliseDeviceId('sip:202@pbx.local;transport=tcp'), '202')
  t.equal(normaliseDeviceId('N<+49301234201>'), '+49301234201', 'without a prefix only the wrapper goes')
  t.equal(normaliseDeviceId('+49301234', '+49301234'), '+49301234', 'the prefix alone is not an extension')
})

t.test('unknown elements decode as Unknown, keeping the name', async (t) => {
  const xml = '<ns:GetForwardingResponse xmlns:ns="urn:x"><forwardingList/></ns:GetForwardingResponse>'
  t.same(decodeXml(xml, new XmlCstaCodec(), 33),
    { ok: true, invokeId: 33, message: { kind: 'Unknown', element: 'GetForwardingResponse' }, bytes: Buffer.byteLength(xml) + 8 })
})

t.test('bad bodies become per-frame errors, never exceptions', async (t) => {
  t.match(decodeXml('this is not xml'), { ok: false, error: { code: 'XML_PARSE', inSync: true, invokeId: 9999 } }, 'plain text')
  t.match(decodeXml('{"json": true}'), { ok: false, error: { code: 'XML_PARSE' } }, 'JSON')
  t.match(decodeXml(''), { ok: false, error: { code: 'XML_PARSE' } }, 'empty')
  t.match(decodeXml('<a><b></a>'), { ok: false, error: { code: 'XML_PARSE' } }, 'not well-formed')
  t.match(decodeXml('<a/><b/>'), { ok: false, error: { code: 'XML_PARSE' } }, 'two roots')
  const laughs = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><SystemStatus><systemStatus>&lol2;</systemStatus></SystemStatus>'
  t.match(decodeXml(laughs), { ok: false, error: { code: 'XML_DOCTYPE' } }, 'DTDs are refused')
  const invalidUtf8 = Buffer.concat([Buffer.from('<a>'), Buffer.from([0xff, 0xfe]), Buffer.from('</a>')])
  t.match(new XmlCstaCodec().createDecoder().push(encodeXmlFrame(1, invalidUtf8)), [{ ok: false, error: { code: 'BODY_ENCODING' } }], 'invalid UTF-8')
  t.match(decodeXml('<MonitorStartResponse/>'), { ok: false, error: { code: 'MESSAGE_FIELDS', element: 'MonitorStartResponse' } }, 'missing field')
  t.match(decodeXml('<GetDoNotDisturbResponse><doNotDisturbOn>maybe</doNotDisturbOn></GetDoNotDisturbResponse>'),
    { ok: false, error: { code: 'MESSAGE_FIELDS' } }, 'invalid boolean')
  t.match(decodeXml('<HeldEvent><monitorCrossRefID>1</monitorCrossRefID><heldConnection><deviceID>201</deviceID></heldConnection></HeldEvent>'),
    { ok: false, error: { code: 'MESSAGE_FIELDS', reason: /callID/ } }, 'connection without callID')
})

t.test('text: entities, character references and declared ISO-8859-1', async (t) => {
  t.match(decodeXml('<SystemStatus><systemStatus>a&amp;b&#228;&#x41;&unknown;</systemStatus></SystemStatus>'),
    { ok: true, message: { systemStatus: 'a&bäA&unknown;' } })
  const latin1 = Buffer.concat([Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?><SystemStatus><systemStatus>'), Buffer.from([0xe4]), Buffer.from('</systemStatus></SystemStatus>')])
  t.match(new XmlCstaCodec().createDecoder().push(encodeXmlFrame(1, latin1)), [{ ok: true, message: { systemStatus: 'ä' } }])
})

t.test('tolerated variants of errors, snapshots and session responses', async (t) => {
  t.match(decodeXml('<CSTAErrorCode><privateErrorCode>URM Denied</privateErrorCode></CSTAErrorCode>'),
    { ok: true, message: { kind: 'CSTAErrorCode', category: 'privateErrorCode', value: 'URM Denied' } })
  t.match(decodeXml('<CSTAErrorCode><operation><invalidDeviceID/></operation></CSTAErrorCode>'),
    { ok: true, message: { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' } })
  t.match(decodeXml(`<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData>
      <snapshotDeviceResponseInfo><connectionIdentifier><callID>5</callID></connectionIdentifier>
      <localConnectionInfo>alerting</localConnectionInfo></snapshotDeviceResponseInfo>
      <snapshotDeviceResponseInfo><connectionIdentifier><callID>6</callID></connectionIdentifier></snapshotDeviceResponseInfo>
    </snapshotData></crossRefIDorSnapshotData></SnapshotDeviceResponse>`),
  { ok: true, message: { calls: [{ callId: '5', localConnectionState: 'alerting' }, { callId: '6', localConnectionState: 'connected' }] } },
  'simpler state element; a listed call without state counts as connected')
  t.match(decodeXml('<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData/></crossRefIDorSnapshotData></SnapshotDeviceResponse>'),
    { ok: true, message: { kind: 'SnapshotDeviceResponse', calls: [] } }, 'no calls')
  t.match(decodeXml('<ResetApplicationSessionTimerResponse><actualSessionDuration>60</actualSessionDuration></ResetApplicationSessionTimerResponse>'),
    { ok: true, message: { kind: 'ResetApplicationSessionTimerPosResponse', actualSessionDurationS: 60 } }, '"Response" spelling')
  t.match(decodeXml('<SystemStatus/>'), { ok: true, message: { kind: 'SystemStatus', systemStatus: 'unspecified' } },
    'a SystemStatus without status still decodes, so it can be answered')
  t.match(decodeXml('<deliveredEvent><monitorCrossRefID>1</monitorCrossRefID><connection><callID>2</callID></connection></deliveredEvent>'),
    { ok: true, message: { kind: 'DeliveredEvent' } }, 'element names are matched without regard to case')
})
