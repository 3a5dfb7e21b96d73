import {
  CstaCodecError,
  type CstaCodecOptions,
  type CstaDecodeError,
  type CstaDecoded,
  type CstaFrameDecoder,
  type CstaWireCodec,
} from './codec.js'
import { normaliseDeviceId } from './device-id.js'
import {
  LOCAL_CONNECTION_STATES,
  type CstaCallEvent,
  type CstaConnection,
  type CstaMessage,
  type LocalConnectionState,
  type SnapshotCall,
} from './model.js'
import { encodeXmlFrame, XmlFrameReader } from './xml-framing.js'
import {
  childElement,
  findDescendant,
  findDescendants,
  parseXmlDocument,
  serializeXml,
  xmlElement,
  XmlSyntaxError,
  type XmlElement,
} from './xml-tree.js'

/** ECMA-323 edition 3: what we put on the CSTA messages we send. Received messages may use any edition. */
export const CSTA_ED3_NAMESPACE = 'http://www.ecma-international.org/standards/ecma-323/csta/ed3'
/** ECMA-354 application session services live in their own namespace. */
export const ECMA354_NAMESPACE = 'http://www.ecma-international.org/standards/ecma-354/appl_session'

export interface XmlCodecOptions extends CstaCodecOptions {
  /** Put xmlns on encoded root elements (default true). Off mimics switches that omit it. */
  includeNamespace?: boolean
  /** Frame size limit for the decoder (default 65535, the most the 16-bit length can say). */
  maxFrameBytes?: number
}

type DecodedBody = { ok: true; message: CstaMessage } | { ok: false; error: CstaDecodeError }

/** ECMA-323 XML in the 8-byte-header framing of ECMA-323 Annex J.2. */
export class XmlCstaCodec implements CstaWireCodec {
  readonly name = 'xml'
  readonly #options: XmlCodecOptions

  constructor(options: XmlCodecOptions = {}) {
    this.#options = options
  }

  encode(invokeId: number, message: CstaMessage): Buffer {
    const root = toXml(message)
    if (this.#options.includeNamespace !== false && message.kind !== 'Unknown') {
      root.attributes = { xmlns: SESSION_KINDS.has(message.kind) ? ECMA354_NAMESPACE : CSTA_ED3_NAMESPACE, ...root.attributes }
    }
    let text: string
    try {
      text = serializeXml(root)
    } catch (error) {
      throw new CstaCodecError('MESSAGE_FIELDS', error instanceof Error ? error.message : String(error))
    }
    return encodeXmlFrame(invokeId, Buffer.from(text, 'utf8'))
  }

  createDecoder(): CstaFrameDecoder {
    const reader = new XmlFrameReader(this.#options.maxFrameBytes === undefined ? {} : { maxFrameBytes: this.#options.maxFrameBytes })
    const decodeBody = (body: Buffer): DecodedBody => this.decodeBody(body)
    return {
      get inSync() {
        return reader.inSync
      },
      get bufferedBytes() {
        return reader.bufferedBytes
      },
      push(chunk: Buffer): CstaDecoded[] {
        return reader.push(chunk).map((frame): CstaDecoded => {
          if (!frame.ok) return frame
          const decoded = decodeBody(frame.body)
          if (decoded.ok) return { ok: true, invokeId: frame.invokeId, message: decoded.message, bytes: frame.bytes }
          return { ok: false, error: { ...decoded.error, invokeId: frame.invokeId, bytes: frame.bytes } }
        })
      },
    }
  }

  /** Decodes one XML document (no header). Never throws. */
  decodeBody(body: Buffer): DecodedBody {
    const text = decodeText(body)
    if (text === undefined) {
      return { ok: false, error: { code: 'BODY_ENCODING', reason: 'body is neither UTF-8 nor a declared ISO-8859-1 document', inSync: true } }
    }
    let root: XmlElement
    try {
      root = parseXmlDocument(text)
    } catch (error) {
      const code = error instanceof XmlSyntaxError ? error.code : 'XML_PARSE'
      return { ok: false, error: { code, reason: error instanceof Error ? error.message : String(error), inSync: true } }
    }
    const decoder = DECODERS.get(root.name.toLowerCase())
    if (decoder === undefined) return { ok: true, message: { kind: 'Unknown', element: root.name } }
    try {
      return { ok: true, message: decoder(root, new FieldReader(this.#options.devicePrefix)) }
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error)
      return { ok: false, error: { code: 'MESSAGE_FIELDS', reason: `${root.name}: ${reason}`, inSync: true, element: root.name } }
    }
  }
}

function decodeText(body: Buffer): string | undefined {
  let bytes = body
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3)
  const declared = /^<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']/.exec(bytes.subarray(0, 200).toString('latin1'))?.[1]?.toLowerCase()
  if (declared === 'iso-8859-1' || declared === 'latin1' || declared === 'iso-8859-15') return bytes.toString('latin1')
  if (declared !== undefined && declared !== 'utf-8' && declared !== 'utf8' && declared !== 'us-ascii') return undefined
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    return undefined
  }
}

// --- Decoding ---------------------------------------------------------------------------------------------

class FieldError extends Error {}

/** Field access with the tolerance CSTA peers need: either device form, any case, absent optional fields. */
class FieldReader {
  constructor(private readonly devicePrefix: string | undefined) {}

  text(parent: XmlElement, ...names: string[]): string | undefined {
    const value = childElement(parent, ...names)?.text
    return value === '' ? undefined : value
  }

  requiredText(parent: XmlElement, name: string): string {
    const value = this.text(parent, name)
    if (value === undefined) throw new FieldError(`missing ${name}`)
    return value
  }

  /** Flat `<device>201</device>` or nested `<device><deviceIdentifier>201</deviceIdentifier></device>`. */
  device(parent: XmlElement | undefined, ...names: string[]): string | undefined {
    if (parent === undefined) return undefined
    const element = childElement(parent, ...names)
    if (element === undefined) return undefined
    const raw = deepText(element)
    return raw === undefined ? undefined : normaliseDeviceId(raw, this.devicePrefix)
  }

  requiredDevice(parent: XmlElement | undefined, name: string): string {
    const value = this.device(parent, name)
    if (value === undefined) throw new FieldError(`missing ${name}`)
    return value
  }

  boolean(parent: XmlElement, name: string): boolean {
    const value = this.requiredText(parent, name).toLowerCase()
    if (value === 'true' || value === '1') return true
    if (value === 'false' || value === '0') return false
    throw new FieldError(`${name} is not a boolean: ${JSON.stringify(value)}`)
  }

  seconds(parent: XmlElement, name: string): number | undefined {
    const element = findDescendant(parent, name)
    if (element === undefined || element.text === '') return undefined
    const value = Number(element.text)
    if (!Number.isFinite(value) || value < 0) throw new FieldError(`${name} is not a duration: ${JSON.stringify(element.text)}`)
    return value
  }

  connection(parent: XmlElement, name: string): CstaConnection {
    // Tolerate editions or vendors that name the connection differently: any child ending in "connection".
    const element = childElement(parent, name) ?? parent.children.find((child) => /connection$/i.test(child.name))
    if (element === undefined) throw new FieldError(`missing ${name}`)
    const callId = this.text(element, 'callID')
    if (callId === undefined) throw new FieldError(`${name} has no callID`)
    const deviceId = this.device(element, 'deviceID')
    return deviceId === undefined ? { callId } : { callId, deviceId }
  }

  localConnectionState(parent: XmlElement, ...names: string[]): LocalConnectionState | undefined {
    const value = this.text(parent, ...names)
    return value === undefined ? undefined : asLocalConnectionState(value)
  }
}

function asLocalConnectionState(value: string): LocalConnectionState | undefined {
  return LOCAL_CONNECTION_STATES.find((state) => state.toLowerCase() === value.toLowerCase())
}

/** The first non-empty text in the element or below it (the value inside any wrapper). */
function deepText(element: XmlElement): string | undefined {
  if (element.text !== '') return element.text
  for (const child of element.children) {
    const value = deepText(child)
    if (value !== undefined) return value
  }
  return undefined
}

/** An enumerated value in either form: `<x>value</x>` or `<x><value/></x>`. */
function leafValue(element: XmlElement | undefined): string | undefined {
  if (element === undefined) return undefined
  if (element.text !== '') return element.text
  const [first] = element.children
  if (first === undefined) return undefined
  return leafValue(first) ?? first.name
}

function omitUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as T
}

type Decoder = (root: XmlElement, fields: FieldReader) => CstaMessage

function callEventBase(root: XmlElement, fields: FieldReader, connectionName: string) {
  return {
    monitorCrossRefId: fields.requiredText(root, 'monitorCrossRefID'),
    connection: fields.connection(root, connectionName),
    localConnectionInfo: fields.localConnectionState(root, 'localConnectionInfo'),
    cause: fields.text(root, 'cause'),
  }
}

/** The element that names the connection, per call event (ECMA-323). */
const CONNECTION_ELEMENT: Record<CstaCallEvent['kind'], string> = {
  DeliveredEvent: 'connection',
  EstablishedEvent: 'establishedConnection',
  ConnectionClearedEvent: 'droppedConnection',
  HeldEvent: 'heldConnection',
  RetrievedEvent: 'retrievedConnection',
  OriginatedEvent: 'originatedConnection',
  ServiceInitiatedEvent: 'initiatedConnection',
}

/**
 * The decoder of one call event: its common fields, the connection ECMA-323 names per event, and the devices
 * it may carry (each optional). The device names are checked against the event's type in the model.
 */
function callEventDecoder<K extends CstaCallEvent['kind']>(
  kind: K,
  devices: ReadonlyArray<Exclude<keyof Extract<CstaCallEvent, { kind: K }>, 'kind' | keyof ReturnType<typeof callEventBase>>>,
): [K, Decoder] {
  return [kind, (root, fields) => omitUndefined({
    kind,
    ...callEventBase(root, fields, CONNECTION_ELEMENT[kind]),
    ...Object.fromEntries(devices.map((name) => [name, fields.device(root, String(name))])),
  }) as Extract<CstaCallEvent, { kind: K }>]
}

const DECODER_ENTRIES: Array<[string, Decoder]> = [
  ['StartApplicationSession', (root, fields) => {
    const applicationId = findDescendant(root, 'applicationID')?.text
    if (applicationId === undefined || applicationId === '') throw new FieldError('missing applicationInfo/applicationID')
    return omitUndefined({
      kind: 'StartApplicationSession',
      applicationId,
      username: findDescendant(root, 'user', 'userID', 'userName', 'loginID')?.text,
      password: findDescendant(root, 'password')?.text,
      protocolVersion: findDescendant(root, 'protocolVersion')?.text,
      requestedSessionDurationS: fields.seconds(root, 'requestedSessionDuration'),
    })
  }],
  ['StartApplicationSessionPosResponse', (root, fields) => omitUndefined({
    kind: 'StartApplicationSessionPosResponse',
    sessionId: fields.requiredText(root, 'sessionID'),
    protocolVersion: fields.text(root, 'actualProtocolVersion'),
    actualSessionDurationS: fields.seconds(root, 'actualSessionDuration'),
  })],
  ['StartApplicationSessionNegResponse', (root) => ({
    kind: 'StartApplicationSessionNegResponse',
    errorCode: leafValue(findDescendant(root, 'errorCode')) ?? 'unspecified',
  })],
  ['ResetApplicationSessionTimer', (root, fields) => omitUndefined({
    kind: 'ResetApplicationSessionTimer',
    sessionId: fields.requiredText(root, 'sessionID'),
    requestedSessionDurationS: fields.seconds(root, 'requestedSessionDuration'),
  })],
  ['ResetApplicationSessionTimerPosResponse', (root, fields) => omitUndefined({
    kind: 'ResetApplicationSessionTimerPosResponse',
    actualSessionDurationS: fields.seconds(root, 'actualSessionDuration'),
  })],
  ['ResetApplicationSessionTimerNegResponse', (root) => ({
    kind: 'ResetApplicationSessionTimerNegResponse',
    errorCode: leafValue(findDescendant(root, 'errorCode')) ?? 'unspecified',
  })],
  ['StopApplicationSession', (root, fields) => ({
    kind: 'StopApplicationSession',
    sessionId: fields.requiredText(root, 'sessionID'),
    reason: leafValue(findDescendant(root, 'sessionEndReason')) ?? 'normal',
  })],
  ['StopApplicationSessionPosResponse', () => ({ kind: 'StopApplicationSessionPosResponse' })],
  // A SystemStatus must be answered even when its status is unreadable, or the switch drops the link.
  ['SystemStatus', (root) => ({ kind: 'SystemStatus', systemStatus: leafValue(childElement(root, 'systemStatus')) ?? 'unspecified' })],
  ['SystemStatusResponse', () => ({ kind: 'SystemStatusResponse' })],
  ['RequestSystemStatus', () => ({ kind: 'RequestSystemStatus' })],
  ['RequestSystemStatusResponse', (root) => {
    const systemStatus = leafValue(childElement(root, 'systemStatus'))
    if (systemStatus === undefined) throw new FieldError('missing systemStatus')
    return { kind: 'RequestSystemStatusResponse', systemStatus }
  }],
  ['MonitorStart', (root, fields) => {
    const device = fields.device(childElement(root, 'monitorObject'), 'deviceObject') ?? fields.device(root, 'monitorObject')
    if (device === undefined) throw new FieldError('missing monitorObject/deviceObject')
    return { kind: 'MonitorStart', device }
  }],
  ['MonitorStartResponse', (root, fields) => ({ kind: 'MonitorStartResponse', monitorCrossRefId: fields.requiredText(root, 'monitorCrossRefID') })],
  ['MonitorStop', (root, fields) => ({ kind: 'MonitorStop', monitorCrossRefId: fields.requiredText(root, 'monitorCrossRefID') })],
  ['MonitorStopResponse', () => ({ kind: 'MonitorStopResponse' })],
  ['SnapshotDevice', (root, fields) => ({ kind: 'SnapshotDevice', device: fields.requiredDevice(root, 'snapshotObject') })],
  ['SnapshotDeviceResponse', (root, fields) => {
    const calls: SnapshotCall[] = []
    for (const info of findDescendants(root, 'snapshotDeviceResponseInfo')) {
      const callId = findDescendant(info, 'callID')?.text
      if (callId === undefined || callId === '') throw new FieldError('snapshotDeviceResponseInfo has no callID')
      const connectionIdentifier = findDescendant(info, 'connectionIdentifier')
      const deviceId = fields.device(connectionIdentifier, 'deviceID')
      const stateText = findDescendant(info, 'localConnectionState', 'localConnectionInfo')?.text
      // A listed call without a readable state still means the device is in a call: count it as connected.
      const localConnectionState = (stateText === undefined ? undefined : asLocalConnectionState(stateText)) ?? 'connected'
      calls.push(deviceId === undefined ? { callId, localConnectionState } : { callId, deviceId, localConnectionState })
    }
    return { kind: 'SnapshotDeviceResponse', calls }
  }],
  ['GetDoNotDisturb', (root, fields) => ({ kind: 'GetDoNotDisturb', device: fields.requiredDevice(root, 'device') })],
  ['GetDoNotDisturbResponse', (root, fields) => ({ kind: 'GetDoNotDisturbResponse', doNotDisturbOn: fields.boolean(root, 'doNotDisturbOn') })],
  ['SetDoNotDisturb', (root, fields) => ({
    kind: 'SetDoNotDisturb',
    device: fields.requiredDevice(root, 'device'),
    doNotDisturbOn: fields.boolean(root, 'doNotDisturbOn'),
  })],
  ['SetDoNotDisturbResponse', () => ({ kind: 'SetDoNotDisturbResponse' })],
  callEventDecoder('DeliveredEvent', ['alertingDevice', 'callingDevice', 'calledDevice']),
  callEventDecoder('EstablishedEvent', ['answeringDevice', 'callingDevice', 'calledDevice']),
  callEventDecoder('ConnectionClearedEvent', ['releasingDevice']),
  callEventDecoder('HeldEvent', ['holdingDevice']),
  callEventDecoder('RetrievedEvent', ['retrievingDevice']),
  callEventDecoder('OriginatedEvent', ['callingDevice', 'calledDevice']),
  callEventDecoder('ServiceInitiatedEvent', ['initiatingDevice']),
  ['DoNotDisturbEvent', (root, fields) => omitUndefined({
    kind: 'DoNotDisturbEvent',
    monitorCrossRefId: fields.requiredText(root, 'monitorCrossRefID'),
    device: fields.device(root, 'device'),
    doNotDisturbOn: fields.boolean(root, 'doNotDisturbOn'),
  })],
  ['CSTAErrorCode', (root) => {
    const [first] = root.children
    if (first === undefined) return { kind: 'CSTAErrorCode', category: 'unspecified', value: root.text === '' ? 'unspecified' : root.text }
    return { kind: 'CSTAErrorCode', category: first.name, value: leafValue(first) ?? 'generic' }
  }],
]

/** Keyed by lower-case element name. */
const DECODERS = new Map<string, Decoder>(DECODER_ENTRIES.map(([name, decoder]): [string, Decoder] => [name.toLowerCase(), decoder]))
// Some peers spell the ECMA-354 positive responses without "Pos".
for (const name of ['ResetApplicationSessionTimer', 'StopApplicationSession']) {
  const decoder = DECODERS.get(`${name}PosResponse`.toLowerCase())
  if (decoder !== undefined) DECODERS.set(`${name}Response`.toLowerCase(), decoder)
}

// --- Encoding ---------------------------------------------------------------------------------------------

const SESSION_KINDS = new Set<CstaMessage['kind']>([
  'StartApplicationSession', 'StartApplicationSessionPosResponse', 'StartApplicationSessionNegResponse',
  'ResetApplicationSessionTimer', 'ResetApplicationSessionTimerPosResponse', 'ResetApplicationSessionTimerNegResponse',
  'StopApplicationSession', 'StopApplicationSessionPosResponse',
])

function leaf(name: string, value: string | number | boolean | undefined): XmlElement | undefined {
  return value === undefined ? undefined : xmlElement(name, String(value))
}

/** SubjectDeviceID-type fields carry a nested deviceIdentifier in ECMA-323. */
function subjectDevice(name: string, value: string | undefined): XmlElement | undefined {
  return value === undefined ? undefined : xmlElement(name, [xmlElement('deviceIdentifier', value)])
}

function connectionElement(name: string, connection: CstaConnection): XmlElement {
  return xmlElement(name, [leaf('callID', connection.callId), leaf('deviceID', connection.deviceId)])
}

function callEvent(event: CstaCallEvent, devices: Array<XmlElement | undefined>): XmlElement {
  return xmlElement(event.kind, [
    leaf('monitorCrossRefID', event.monitorCrossRefId),
    connectionElement(CONNECTION_ELEMENT[event.kind], event.connection),
    ...devices,
    leaf('localConnectionInfo', event.localConnectionInfo),
    leaf('cause', event.cause),
  ])
}

function errorCodeElement(errorCode: string): XmlElement {
  return xmlElement('errorCode', [xmlElement('definedError', errorCode)])
}

function toXml(message: CstaMessage): XmlElement {
  switch (message.kind) {
    case 'StartApplicationSession':
      return xmlElement(message.kind, [
        xmlElement('applicationInfo', [
          leaf('applicationID', message.applicationId),
          // Where OSBiz expects user and password is not public [U]; they travel in applicationSpecificInfo.
          message.username === undefined && message.password === undefined
            ? undefined
            : xmlElement('applicationSpecificInfo', [leaf('user', message.username), leaf('password', message.password)]),
        ]),
        xmlElement('requestedProtocolVersions', [leaf('protocolVersion', message.protocolVersion ?? CSTA_ED3_NAMESPACE)]),
        leaf('requestedSessionDuration', message.requestedSessionDurationS),
      ])
    case 'StartApplicationSessionPosResponse':
      return xmlElement(message.kind, [
        leaf('sessionID', message.sessionId),
        leaf('actualProtocolVersion', message.protocolVersion),
        leaf('actualSessionDuration', message.actualSessionDurationS),
      ])
    case 'StartApplicationSessionNegResponse':
    case 'ResetApplicationSessionTimerNegResponse':
      return xmlElement(message.kind, [errorCodeElement(message.errorCode)])
    case 'ResetApplicationSessionTimer':
      return xmlElement(message.kind, [
        leaf('sessionID', message.sessionId),
        leaf('requestedSessionDuration', message.requestedSessionDurationS),
      ])
    case 'ResetApplicationSessionTimerPosResponse':
      return xmlElement(message.kind, [leaf('actualSessionDuration', message.actualSessionDurationS)])
    case 'StopApplicationSession':
      return xmlElement(message.kind, [
        leaf('sessionID', message.sessionId),
        xmlElement('sessionEndReason', [leaf('definedEndReason', message.reason)]),
      ])
    case 'SystemStatus':
    case 'RequestSystemStatusResponse':
      return xmlElement(message.kind, [leaf('systemStatus', message.systemStatus)])
    case 'StopApplicationSessionPosResponse':
    case 'SystemStatusResponse':
    case 'RequestSystemStatus':
    case 'MonitorStopResponse':
    case 'SetDoNotDisturbResponse':
      return xmlElement(message.kind)
    case 'MonitorStart':
      return xmlElement(message.kind, [
        xmlElement('monitorObject', [leaf('deviceObject', message.device)]),
        leaf('monitorType', 'device'),
      ])
    case 'MonitorStartResponse':
    case 'MonitorStop':
      return xmlElement(message.kind, [leaf('monitorCrossRefID', message.monitorCrossRefId)])
    case 'SnapshotDevice':
      return xmlElement(message.kind, [leaf('snapshotObject', message.device)])
    case 'SnapshotDeviceResponse':
      return xmlElement(message.kind, [
        xmlElement('crossRefIDorSnapshotData', [
          xmlElement('snapshotData', message.calls.map((call) => xmlElement('snapshotDeviceResponseInfo', [
            xmlElement('connectionIdentifier', [leaf('callID', call.callId), leaf('deviceID', call.deviceId)]),
            xmlElement('localCallState', [
              xmlElement('compoundCallState', [leaf('localConnectionState', call.localConnectionState)]),
            ]),
          ]))),
        ]),
      ])
    case 'GetDoNotDisturb':
      return xmlElement(message.kind, [leaf('device', message.device)])
    case 'GetDoNotDisturbResponse':
      return xmlElement(message.kind, [leaf('doNotDisturbOn', message.doNotDisturbOn)])
    case 'SetDoNotDisturb':
      return xmlElement(message.kind, [leaf('device', message.device), leaf('doNotDisturbOn', message.doNotDisturbOn)])
    case 'DeliveredEvent':
      return callEvent(message, [
        subjectDevice('alertingDevice', message.alertingDevice),
        subjectDevice('callingDevice', message.callingDevice),
        subjectDevice('calledDevice', message.calledDevice),
      ])
    case 'EstablishedEvent':
      return callEvent(message, [
        subjectDevice('answeringDevice', message.answeringDevice),
        subjectDevice('callingDevice', message.callingDevice),
        subjectDevice('calledDevice', message.calledDevice),
      ])
    case 'ConnectionClearedEvent':
      return callEvent(message, [subjectDevice('releasingDevice', message.releasingDevice)])
    case 'HeldEvent':
      return callEvent(message, [subjectDevice('holdingDevice', message.holdingDevice)])
    case 'RetrievedEvent':
      return callEvent(message, [subjectDevice('retrievingDevice', message.retrievingDevice)])
    case 'OriginatedEvent':
      return callEvent(message, [
        subjectDevice('callingDevice', message.callingDevice),
        subjectDevice('calledDevice', message.calledDevice),
      ])
    case 'ServiceInitiatedEvent':
      return callEvent(message, [subjectDevice('initiatingDevice', message.initiatingDevice)])
    case 'DoNotDisturbEvent':
      return xmlElement(message.kind, [
        leaf('monitorCrossRefID', message.monitorCrossRefId),
        leaf('device', message.device),
        leaf('doNotDisturbOn', message.doNotDisturbOn),
      ])
    case 'CSTAErrorCode':
      return xmlElement(message.kind, [xmlElement(message.category, message.value)])
    case 'Unknown':
      return xmlElement(message.element)
  }
}
