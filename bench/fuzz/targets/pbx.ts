import fc from 'fast-check'
import { decodeFrame as decodeMtcti, encodeFrame as encodeMtcti } from '../../../gateway/src/adapters/avaya-ipo/mtcti3/codec.js'
import type { MtctiOutgoing } from '../../../gateway/src/adapters/avaya-ipo/mtcti3/model.js'
import { messageType } from '../../../gateway/src/adapters/avaya-ipo/mtcti3/schema.js'
import { applyNotifyUser, directoryEntry, legStateOf, lostCall } from '../../../gateway/src/adapters/avaya-ipo/normalise.js'
import {
  AppChallengeResultSchema, AppLoginResultSchema, CallInfoSchema, decodeFrame as decodeInno, PresenceUpdateSchema, readAs, ReplicateRowMessageSchema,
  SetPresenceResultSchema, UserInfoSchema, UserInitializeResultSchema, UserRowSchema, type UserRow,
} from '../../../gateway/src/adapters/innovaphone/messages.js'
import { callInfoOutcome, displayName, dndFromPresence, primaryEmail } from '../../../gateway/src/adapters/innovaphone/normalise.js'
import type { CstaDecoded } from '../../../gateway/src/adapters/osbiz/csta/codec.js'
import { isEvent } from '../../../gateway/src/adapters/osbiz/csta/model.js'
import { CSTA_ED3_NAMESPACE, XmlCstaCodec } from '../../../gateway/src/adapters/osbiz/csta/xml-codec.js'
import { encodeXmlFrame, EVENT_INVOKE_ID, XML_HEADER_BYTES } from '../../../gateway/src/adapters/osbiz/csta/xml-framing.js'
import { normaliseEvent, normaliseSnapshot } from '../../../gateway/src/adapters/osbiz/normalise.js'
// The codec tests' sample of every message kind: the fuzzer starts from the same valid frames.
import { samples } from '../../../test/osbiz/fixtures/csta-samples.js'
import { mutatedBytes, mutatedJson, mutatedText, randomBytes, splitAt } from '../mutate.js'
import type { FuzzSession, FuzzTarget } from '../runner.js'

// --- OSBiz CSTA XML ---------------------------------------------------------------------------------------

const cstaCodec = new XmlCstaCodec({ devicePrefix: '+49301234' })
const CSTA_FRAMES = Object.values(samples).map((message, i) => cstaCodec.encode(message.kind.endsWith('Event') ? EVENT_INVOKE_ID : i + 1, message))
const CSTA_BODIES = CSTA_FRAMES.map((frame) => frame.subarray(XML_HEADER_BYTES).toString('utf8'))
/** Monitor cross-reference ids the normaliser knows, as the driver's table after MonitorStart. */
const MONITORS: ReadonlyMap<string, string> = new Map([['1', '201'], ['2', '202']])

/** A frame around a damaged XML body (header right), a damaged frame, deep nesting, or random bytes. */
function cstaFrame(): fc.Arbitrary<Buffer> {
  const bodies = fc.constantFrom(...CSTA_BODIES)
  const framed = (text: fc.Arbitrary<string>): fc.Arbitrary<Buffer> => fc.tuple(text, fc.integer({ min: 0, max: 9999 })).map(([body, invokeId]) => {
    const bytes = Buffer.from(body, 'utf8')
    return bytes.length + XML_HEADER_BYTES > 0xffff ? encodeXmlFrame(invokeId, bytes.subarray(0, 0xffff - XML_HEADER_BYTES)) : encodeXmlFrame(invokeId, bytes)
  })
  const deep = fc.tuple(fc.integer({ min: 100, max: 8000 }), fc.constantFrom('a', 'x:a', 'connection'), fc.boolean()).map(([depth, name, attrs]) =>
    `<DeliveredEvent xmlns="${CSTA_ED3_NAMESPACE}">${`<${name}${attrs ? ' b="1"' : ''}>`.repeat(depth)}${`</${name}>`.repeat(depth)}</DeliveredEvent>`)
  const manyAttributes = fc.integer({ min: 100, max: 5000 }).map((n) =>
    `<DeliveredEvent ${Array.from({ length: n }, (_v, i) => `a${i}="${i}"`).join(' ')}><monitorCrossRefID>1</monitorCrossRefID></DeliveredEvent>`)
  return fc.oneof(
    { weight: 6, arbitrary: framed(mutatedText(bodies)) },
    { weight: 3, arbitrary: mutatedBytes(fc.constantFrom(...CSTA_FRAMES)) },
    { weight: 1, arbitrary: framed(fc.oneof(deep, manyAttributes)) },
    { weight: 1, arbitrary: framed(bodies) },
    { weight: 1, arbitrary: randomBytes },
  )
}

/** What the driver does with decoded frames: events through the normaliser, snapshots into observations. */
function applyCsta(results: readonly CstaDecoded[]): string[] {
  const codes: string[] = []
  for (const result of results) {
    if (!result.ok) {
      codes.push(result.error.code)
      continue
    }
    const message = result.message
    if (isEvent(message)) codes.push(`ok:${normaliseEvent(message, MONITORS, 1_700_000_000_000).action}`)
    else if (message.kind === 'SnapshotDeviceResponse') codes.push(`ok:snapshot:${normaliseSnapshot('201', message, false, 1_700_000_000_000).kind}`)
    else codes.push(message.kind === 'Unknown' ? 'ok:unknown' : 'ok')
  }
  return codes
}

export const cstaXmlTarget: FuzzTarget<Buffer> = {
  name: 'csta-xml',
  what: 'OSBiz CSTA XML frames (ECMA-323 + Annex J.2 header) through the XML codec and the event normaliser',
  arbitrary: cstaFrame,
  open: async (): Promise<FuzzSession<Buffer>> => ({
    run: (frame) => [...new Set(applyCsta(cstaCodec.createDecoder().push(frame)))].join(',') || 'incomplete',
    close: async () => undefined,
  }),
}

interface CstaStream { frames: Buffer[]; cuts: number[] }

/**
 * Several frames in one TCP stream, cut at generated points. The decoder must give the same messages for the
 * cut stream as for the whole one (up to the first loss of sync), and must not hold more than one frame.
 */
export const cstaFramingTarget: FuzzTarget<CstaStream> = {
  name: 'csta-framing',
  what: 'OSBiz CSTA byte streams of valid and damaged frames, split at random points, through the stream decoder',
  arbitrary: () => fc.record({
    frames: fc.array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...CSTA_FRAMES) }, { weight: 1, arbitrary: cstaFrame() }), { minLength: 1, maxLength: 12 }),
    cuts: fc.array(fc.nat(), { maxLength: 24 }),
  }),
  open: async (): Promise<FuzzSession<CstaStream>> => ({
    run: ({ frames, cuts }) => {
      const stream = Buffer.concat(frames)
      const whole = cstaCodec.createDecoder().push(stream)
      const decoder = cstaCodec.createDecoder()
      const pieces: CstaDecoded[] = []
      for (const chunk of splitAt(stream, cuts)) {
        pieces.push(...decoder.push(chunk))
        if (decoder.bufferedBytes > 0xffff + chunk.length) throw new Error(`the decoder holds ${decoder.bufferedBytes} bytes, more than one frame`)
      }
      const summary = (results: readonly CstaDecoded[]): string[] => {
        const out: string[] = []
        for (const r of results) {
          out.push(r.ok ? `${r.invokeId}:${JSON.stringify(r.message)}` : r.error.code)
          if (!r.ok && !r.error.inSync) break
        }
        return out
      }
      const a = summary(whole)
      const b = summary(pieces)
      if (a.join('\n') !== b.join('\n')) throw new Error(`the stream cut into pieces decoded differently:\n whole: ${a.join(' | ')}\n split: ${b.join(' | ')}`)
      applyCsta(pieces)
      return [...new Set(pieces.map((r) => (r.ok ? 'ok' : r.error.code)))].sort().join(',') || 'incomplete'
    },
    close: async () => undefined,
  }),
}

// --- Avaya IP Office MTCTI-3 --------------------------------------------------------------------------------

const GUID = Buffer.from('00112233445566778899aabbccddeeff', 'hex')

/** Messages as the PBX sends them (encoded with our schema: the same bytes the simulator puts on the wire). */
function mtctiSamples(): Buffer[] {
  const type = messageType()
  const raw = (object: Record<string, unknown>): Buffer => Buffer.concat([Buffer.from([0, 0, 0, 1]), type.encode(type.fromObject(object)).finish()])
  const outgoing: MtctiOutgoing[] = [
    { subscribe: { requestid: 1, subscribe_id: 1000, timeout: 3600, label: 'lines', lines: { flags: 7 } } },
    { notifyack: { subscribe_id: 1000, notify_id: 3 } },
  ]
  return [
    ...outgoing.map((m) => encodeMtcti(m)),
    raw({ response: { requestid: 1, result: 0 } }),
    raw({ response: { requestid: 2, result: 5, additional: 'not allowed' } }),
    raw({ generaldata: { responseid: 3, versioninfo: '11.1.3.0 build 23' } }),
    raw({ subscribeterminated: { subscribe_id: 1000, reason: 'timeout' } }),
    raw({ subscribeend: { requestid: 4, subscribe_id: 1000, reason: 'bye' } }),
    raw({ notify: { subscribe_id: 1000, notify_id: 1, lines: { flags: 1, adduser: [{ guid: GUID, extn: '201', name: 'Alice' }], deleteuser: [{ guid: GUID }], changeuser: [{ guid: GUID, extn: '202', name: 'Bob' }] } } }),
    raw({ notify: { subscribe_id: 1001, notify_id: 2, user: { extn: '201', name: 'Alice', fullname: 'Alice Adams', email: 'alice@contoso.example', dnd: true } } }),
    raw({ notify: { subscribe_id: 1001, notify_id: 3, callcontrol: { refreshinstance: 1, callinfo: [{ callid: 17, referencecallid: 4, relatedcallid: 0, state: 6, direction: 2, gcid: GUID }], calllost: [{ callid: 16, reason: 3, thisenddropped: true, description: 'normal' }] } } }),
  ]
}

const MTCTI_FRAMES = mtctiSamples()

export const mtcti3Target: FuzzTarget<Buffer> = {
  name: 'mtcti3',
  what: 'Avaya IP Office MTCTI-3 frames (prefix + protobuf Message) through the codec and the notify normalisers',
  arbitrary: () => fc.oneof(
    { weight: 6, arbitrary: mutatedBytes(fc.constantFrom(...MTCTI_FRAMES)) },
    { weight: 1, arbitrary: fc.constantFrom(...MTCTI_FRAMES) },
    // A valid prefix with random protobuf after it.
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 512 }).map((body) => Buffer.concat([Buffer.from([0, 0, 0, 1]), body])) },
    { weight: 1, arbitrary: randomBytes },
  ),
  open: async (): Promise<FuzzSession<Buffer>> => ({
    run: (frame) => {
      const decoded = decodeMtcti(frame)
      if (!decoded.ok) return decoded.error.code
      const notify = decoded.message.notify
      if (notify !== undefined) {
        for (const info of notify.callcontrol?.callinfo ?? []) legStateOf(info)
        for (const lost of notify.callcontrol?.calllost ?? []) lostCall(lost)
        if (notify.user !== undefined) {
          const { data } = applyNotifyUser(undefined, notify.user)
          directoryEntry(notify.user.extn ?? '201', notify.user.name, data)
        }
        for (const user of [...notify.lines?.adduser ?? [], ...notify.lines?.changeuser ?? []]) directoryEntry(user.extn ?? '', user.name, undefined)
      }
      return `ok:${decoded.message.payload ?? 'none'}`
    },
    close: async () => undefined,
  }),
}

// --- innovaphone AppWebsocket JSON --------------------------------------------------------------------------

const INNO_SAMPLES: readonly Record<string, unknown>[] = [
  { mt: 'AppChallengeResult', challenge: 'f0f0e1e1' },
  { mt: 'AppLoginResult', ok: true },
  { mt: 'AppLoginResult', error: 1, errorText: 'wrong password' },
  { mt: 'UserInfo', api: 'RCC', src: 'u1', guid: 'a1', cn: 'alice', dn: 'Alice', h323: 'alice', e164: '201', alert: 1, channel: 0, regs: [{}] },
  { mt: 'UserInitializeResult', api: 'RCC', src: 'u1', user: 17 },
  { mt: 'CallInfo', api: 'RCC', src: 'u1', user: 17, call: 5, state: 0x105, msg: 'r-alert', info: [{ type: 'peer', vali: 1, vals: '202' }] },
  { mt: 'CallInfo', api: 'RCC', src: 'u1', user: 17, call: 5, state: 0x107, msg: 'del' },
  { mt: 'PresenceUpdate', api: 'PbxApi', src: 'p1', presence: [{ contact: 'tel:', status: 'closed', activity: 'dnd', note: 'x' }] },
  { mt: 'SetPresenceResult', api: 'PbxApi', src: 'p1', error: 0 },
  { mt: 'ReplicateNextResult', api: 'PbxTableUsers', src: 't1', columns: { guid: 'g1', h323: 'alice', cn: 'alice', dn: 'Alice', e164: '201', 'h323-email': false, emails: [{ email: 'alice@contoso.example' }] } },
  { mt: 'ReplicateAdd', api: 'PbxTableUsers', columns: { guid: 'g2', h323: 'bob', 'h323-email': true } },
  { mt: 'ReplicateDel', api: 'PbxTableUsers', columns: { guid: 'g2' } },
  { mt: 'KeepAlive' },
]

/** What the adapter reads from a message, by mt, through the same checks and normalisers. */
function applyInno(message: Record<string, unknown> & { mt: string }): string {
  switch (message.mt) {
    case 'AppChallengeResult': return readAs(AppChallengeResultSchema, message).ok ? 'ok' : 'MALFORMED'
    case 'AppLoginResult': return readAs(AppLoginResultSchema, message).ok ? 'ok' : 'MALFORMED'
    case 'UserInitializeResult': return readAs(UserInitializeResultSchema, message).ok ? 'ok' : 'MALFORMED'
    case 'SetPresenceResult': return readAs(SetPresenceResultSchema, message).ok ? 'ok' : 'MALFORMED'
    case 'UserInfo': {
      const info = readAs(UserInfoSchema, message)
      if (!info.ok) return 'MALFORMED'
      displayName(info.value)
      return 'ok'
    }
    case 'CallInfo': {
      const info = readAs(CallInfoSchema, message)
      if (!info.ok) return 'MALFORMED'
      return `ok:${callInfoOutcome(info.value.state, info.value.msg).action}`
    }
    case 'PresenceUpdate': {
      const update = readAs(PresenceUpdateSchema, message)
      if (!update.ok) return 'MALFORMED'
      dndFromPresence(update.value.presence)
      return 'ok'
    }
    case 'ReplicateNextResult':
    case 'ReplicateAdd':
    case 'ReplicateUpdate': {
      const rowMessage = readAs(ReplicateRowMessageSchema, message)
      if (!rowMessage.ok || rowMessage.value.columns === undefined) return 'MALFORMED'
      const row = readAs(UserRowSchema, rowMessage.value.columns)
      if (!row.ok) return 'MALFORMED_ROW'
      const merged: UserRow = { ...row.value }
      primaryEmail(merged)
      displayName(merged)
      return 'ok'
    }
    default:
      return 'ok:other'
  }
}

export const innovaphoneTarget: FuzzTarget<{ text: string; binary: boolean }> = {
  name: 'innovaphone',
  what: 'innovaphone AppWebsocket JSON frames through decodeFrame, the message shapes and the normalisers',
  arbitrary: () => fc.record({
    text: fc.oneof({ weight: 50, arbitrary: mutatedJson(fc.constantFrom(...INNO_SAMPLES)) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 1_100_000 }).map((n) => `{"mt":"${'x'.repeat(n)}"}`) }),
    binary: fc.oneof({ weight: 19, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  }),
  open: async (): Promise<FuzzSession<{ text: string; binary: boolean }>> => ({
    run: ({ text, binary }) => {
      const decoded = decodeInno(Buffer.from(text, 'utf8'), binary)
      if (!decoded.ok) return decoded.code
      return applyInno(decoded.message)
    },
    close: async () => undefined,
  }),
}

export const PBX_TARGETS = [cstaXmlTarget, cstaFramingTarget, mtcti3Target, innovaphoneTarget] as const
