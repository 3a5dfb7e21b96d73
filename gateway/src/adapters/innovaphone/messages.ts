import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

/**
 * The AppWebsocket JSON messages we use (research B.2-B.5): one JSON object per text frame, `mt` names the
 * message, `api` the PBX API, `src` is ours and comes back on results and on every indication of what we
 * started with it [C]. Results are `<mt>Result` [C]. Extra fields are allowed everywhere: the PBX adds fields
 * between versions.
 */

export type InnoMessage = { mt: string; api?: string; src?: string } & Record<string, unknown>

/** Frames above this are refused unread (a 500-user UserInfo burst is many small frames, not one big one). */
export const MAX_FRAME_BYTES = 1024 * 1024

export type DecodeResult =
  | { ok: true; message: InnoMessage }
  | { ok: false; code: 'BINARY_FRAME' | 'TOO_LARGE' | 'NOT_JSON' | 'NOT_AN_OBJECT' | 'NO_MT'; reason: string }

/** One received frame → a message with a string `mt`, or why not. */
export function decodeFrame(data: string | Buffer, isBinary: boolean): DecodeResult {
  if (isBinary) return { ok: false, code: 'BINARY_FRAME', reason: `binary frame of ${data.length} bytes (the AppWebsocket protocol uses text frames)` }
  const text = typeof data === 'string' ? data : data.toString('utf8')
  if (text.length > MAX_FRAME_BYTES) return { ok: false, code: 'TOO_LARGE', reason: `frame of ${text.length} bytes exceeds ${MAX_FRAME_BYTES}` }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    return { ok: false, code: 'NOT_JSON', reason: `${error instanceof Error ? error.message : String(error)}; starts with ${JSON.stringify(text.slice(0, 40))}` }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, code: 'NOT_AN_OBJECT', reason: `JSON ${Array.isArray(value) ? 'array' : typeof value} instead of an object` }
  }
  const record = value as Record<string, unknown>
  if (typeof record.mt !== 'string' || record.mt === '') return { ok: false, code: 'NO_MT', reason: 'no "mt" string in the object' }
  if (record.api !== undefined && typeof record.api !== 'string') return { ok: false, code: 'NO_MT', reason: '"api" is not a string' }
  if (record.src !== undefined && typeof record.src !== 'string') return { ok: false, code: 'NO_MT', reason: '"src" is not a string' }
  return { ok: true, message: record as InnoMessage }
}

// --- Shapes of the messages whose fields we read ---------------------------------------------------------

const Str = Type.String({ maxLength: 4096 })

export const AppChallengeResultSchema = Type.Object({ challenge: Type.String({ minLength: 1, maxLength: 256 }) })

export const AppLoginResultSchema = Type.Object({
  ok: Type.Optional(Type.Boolean()),
  error: Type.Optional(Type.Unknown()),
  errorText: Type.Optional(Str),
})

/** RCC UserInfo [C: RCC.htm; alert/channel per the RCC tutorial and SOAP UserInfo]. */
export const UserInfoSchema = Type.Object({
  guid: Type.Optional(Str),
  cn: Type.Optional(Str),
  dn: Type.Optional(Str),
  h323: Type.Optional(Str),
  e164: Type.Optional(Str),
  node: Type.Optional(Str),
  pbx: Type.Optional(Str),
  alert: Type.Optional(Type.Integer({ minimum: 0 })),
  channel: Type.Optional(Type.Integer({ minimum: 0 })),
  regs: Type.Optional(Type.Array(Type.Unknown())),
  update: Type.Optional(Str),
})
export type UserInfo = Static<typeof UserInfoSchema>

export const UserInitializeResultSchema = Type.Object({
  user: Type.Optional(Type.Union([Type.Integer(), Type.String()])),
  error: Type.Optional(Type.Unknown()),
  errorText: Type.Optional(Str),
})

/** RCC CallInfo [C]: state is the PBX-centric bitfield, msg the event name, `del` ends the call. */
export const CallInfoSchema = Type.Object({
  user: Type.Optional(Type.Union([Type.Integer(), Type.String()])),
  call: Type.Union([Type.Integer({ minimum: 0 }), Type.String({ minLength: 1, maxLength: 64 })]),
  state: Type.Optional(Type.Integer({ minimum: 0 })),
  msg: Type.Optional(Str),
  info: Type.Optional(Type.Array(Type.Object({ type: Type.Optional(Str), vali: Type.Optional(Type.Number()), vals: Type.Optional(Str) }))),
})
export type CallInfo = Static<typeof CallInfoSchema>

export const PresenceItemSchema = Type.Object({
  contact: Type.Optional(Str),
  status: Type.Optional(Str),
  activity: Type.Optional(Str),
  note: Type.Optional(Str),
})
export type PresenceItem = Static<typeof PresenceItemSchema>

/** PbxApi PresenceUpdate [C]: the newest item first. */
export const PresenceUpdateSchema = Type.Object({ presence: Type.Array(PresenceItemSchema, { maxItems: 1000 }) })

export const SetPresenceResultSchema = Type.Object({
  error: Type.Optional(Type.Union([Type.Integer(), Type.Boolean(), Str])),
  errorText: Type.Optional(Str),
})

export const EmailSchema = Type.Object({ email: Type.Optional(Str) })

/** One row of the PbxTableUsers replication [C: PbxTableUsers.htm]. */
export const UserRowSchema = Type.Object({
  guid: Str,
  h323: Type.Optional(Str),
  cn: Type.Optional(Str),
  dn: Type.Optional(Str),
  e164: Type.Optional(Str),
  'h323-email': Type.Optional(Type.Boolean()),
  emails: Type.Optional(Type.Array(EmailSchema, { maxItems: 100 })),
})
export type UserRow = Static<typeof UserRowSchema>

/** ReplicateNextResult/Add/Update/Del carry the row in `columns`; a ReplicateNextResult without one ends the table [I]. */
export const ReplicateRowMessageSchema = Type.Object({ columns: Type.Optional(Type.Unknown()) })

/** Checks a message against a shape; on failure returns the first problem in words. */
export function readAs<S extends TSchema>(schema: S, value: unknown): { ok: true; value: Static<S> } | { ok: false; reason: string } {
  if (Value.Check(schema, value)) return { ok: true, value: value as Static<S> }
  const first = Value.Errors(schema, value).First()
  return { ok: false, reason: first === undefined ? 'does not match' : `${first.path || '/'}: ${first.message}` }
}

/** Every mt the adapter knows; anything else is counted as unknown and logged. */
export const KNOWN_INDICATIONS = new Set([
  'UserInfo', 'CallInfo', 'PresenceState', 'PresenceUpdate', 'ReplicateAdd', 'ReplicateUpdate', 'ReplicateDel',
  // Sent by some PBX versions and harmless to us.
  'KeepAlive', 'KeepAliveResult',
])
