import { randomUUID } from 'node:crypto'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import type { TSchema } from '@sinclair/typebox'
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors'
import { DIRECTORY_MAX_ENTRIES, MAX_PAYLOAD_BYTES_BY_KIND } from './limits.js'
import { EnvelopeHeaderSchema, MessageSchemas, type AnyEnvelope, type Envelope, type MessageData, type MessageType } from './schemas.js'
import { parseTopic, type ParsedTopic } from './topics.js'
import { ENVELOPE_VERSION, MAX_PAYLOAD_BYTES } from './version.js'

const headerCheck = TypeCompiler.Compile(EnvelopeHeaderSchema)
const dataChecks = Object.fromEntries(
  Object.entries(MessageSchemas).map(([name, schema]) => [name, TypeCompiler.Compile(schema as TSchema)]),
) as Record<MessageType, TypeCheck<TSchema>>

/** Which envelope types may travel on which topic kind. */
const TYPES_BY_TOPIC: Record<ParsedTopic['kind'], readonly MessageType[]> = {
  status: ['status'],
  link: ['link'],
  endpoint: ['endpoint'],
  directory: ['directory'],
  telemetry: ['telemetry'],
  result: ['result'],
  update: ['update'],
  command: ['cmd.setDnd', 'cmd.resync', 'cmd.ping', 'cmd.update'],
}

export type DecodeErrorCode =
  | 'PROTO_TOPIC'
  | 'PROTO_TOO_LARGE'
  | 'PROTO_JSON'
  | 'PROTO_ENVELOPE'
  | 'PROTO_TYPE'
  | 'PROTO_DATA'
  | 'PROTO_GATEWAY_MISMATCH'
  /** A value beyond the contract's limits: a number too large, a text too long, too many items. */
  | 'PROTO_LIMIT'

export type DecodeResult =
  | { ok: true; topic: ParsedTopic; envelope: AnyEnvelope }
  | { ok: false; code: DecodeErrorCode; reason: string }

export function createEnvelope<T extends MessageType>(
  type: T,
  data: MessageData<T>,
  header: { gatewayId: string; seq: number; ts?: number; id?: string },
): Envelope<T> {
  return {
    v: ENVELOPE_VERSION,
    id: header.id ?? randomUUID(),
    ts: header.ts ?? Date.now(),
    gatewayId: header.gatewayId,
    seq: header.seq,
    type,
    data,
  }
}

export function encodeEnvelope(envelope: AnyEnvelope | Envelope): Buffer {
  return Buffer.from(JSON.stringify(envelope))
}

/** Checks data against its schema; used before publishing so a sender never emits what the peer would drop. */
export function validateData<T extends MessageType>(type: T, data: unknown): string | undefined {
  const check = dataChecks[type]
  if (check.Check(data)) return undefined
  return describeErrors(check, data)
}

/**
 * Decodes and validates one MQTT message. Never throws: every failure is a code and a reason that the caller
 * counts and logs before dropping the message.
 */
export function decodeMessage(topic: string, payload: Uint8Array): DecodeResult {
  const parsed = parseTopic(topic)
  if (!parsed) return { ok: false, code: 'PROTO_TOPIC', reason: `topic outside the contract: ${topic.slice(0, 200)}` }
  const cap = Math.min(MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES_BY_KIND[parsed.kind])
  if (payload.byteLength > cap) {
    const hint = parsed.kind === 'directory' ? `: send the directory in parts (part, parts) of at most ${DIRECTORY_MAX_ENTRIES} entries and ${cap} bytes each` : ''
    return { ok: false, code: 'PROTO_TOO_LARGE', reason: `a ${parsed.kind} message may be at most ${cap} bytes; this one has ${payload.byteLength}${hint}` }
  }
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'))
  } catch (err) {
    return { ok: false, code: 'PROTO_JSON', reason: `payload is not JSON: ${(err as Error).message.slice(0, 200)}` }
  }
  if (!headerCheck.Check(value)) return refusal('PROTO_ENVELOPE', 'envelope', headerCheck, value)
  const allowed = TYPES_BY_TOPIC[parsed.kind]
  if (!(allowed as readonly string[]).includes(value.type)) {
    return { ok: false, code: 'PROTO_TYPE', reason: `type "${value.type}" is not allowed on a ${parsed.kind} topic` }
  }
  const type = value.type as MessageType
  const check = dataChecks[type]
  if (!check.Check(value.data)) return refusal('PROTO_DATA', type, check, value.data)
  if (value.gatewayId !== parsed.gatewayId) {
    return { ok: false, code: 'PROTO_GATEWAY_MISMATCH', reason: `envelope gatewayId ${value.gatewayId} differs from topic ${parsed.gatewayId}` }
  }
  if (parsed.kind === 'command' && type !== `cmd.${parsed.name}`) {
    return { ok: false, code: 'PROTO_TYPE', reason: `type "${type}" does not match command topic ${parsed.name}` }
  }
  if (parsed.kind === 'link' && (value.data as { connectorId: string }).connectorId !== parsed.connectorId) {
    return { ok: false, code: 'PROTO_DATA', reason: 'link connectorId differs from topic' }
  }
  if (parsed.kind === 'result' && (value.data as { correlationId: string }).correlationId !== parsed.correlationId) {
    return { ok: false, code: 'PROTO_DATA', reason: 'result correlationId differs from topic' }
  }
  if (type === 'directory') {
    const { part, parts } = value.data as { part?: number; parts?: number }
    if ((part === undefined) !== (parts === undefined) || (part ?? 1) > (parts ?? 1)) {
      return { ok: false, code: 'PROTO_DATA', reason: `directory: part ${part ?? '(none)'} of ${parts ?? '(none)'}: give both, with part between 1 and parts` }
    }
  }
  if (type === 'update') {
    const { bytes, total } = value.data as { bytes?: number; total?: number }
    if (bytes !== undefined && total !== undefined && bytes > total) {
      return { ok: false, code: 'PROTO_DATA', reason: `update: ${bytes} bytes downloaded of a bundle of ${total}: bytes can be at most total` }
    }
  }
  if (type === 'cmd.update') {
    const { installAt } = value.data as { installAt: string }
    if (installAt !== 'now' && !Number.isFinite(Date.parse(installAt))) {
      return { ok: false, code: 'PROTO_DATA', reason: `update: installAt "${installAt}" is not a real time: give "now" or an ISO 8601 time such as 2026-12-04T02:00:00Z` }
    }
  }
  return { ok: true, topic: parsed, envelope: value as AnyEnvelope }
}

/** Upper bounds: a value that is well-formed but too large, too long or too many. */
const LIMIT_ERRORS = new Set<ValueErrorType>([
  ValueErrorType.IntegerMaximum, ValueErrorType.IntegerExclusiveMaximum, ValueErrorType.NumberMaximum, ValueErrorType.NumberExclusiveMaximum,
  ValueErrorType.StringMaxLength, ValueErrorType.ArrayMaxItems, ValueErrorType.ObjectMaxProperties,
])

/** A refusal in words: PROTO_LIMIT when the first problem is a value beyond the contract's limits. */
function refusal(code: 'PROTO_ENVELOPE' | 'PROTO_DATA', what: string, check: TypeCheck<TSchema>, value: unknown): DecodeResult {
  const first = check.Errors(value).First()
  if (first && LIMIT_ERRORS.has(first.type)) return { ok: false, code: 'PROTO_LIMIT', reason: `${what} ${describeLimit(first)}` }
  return { ok: false, code, reason: code === 'PROTO_DATA' ? `${what}: ${describeErrors(check, value)}` : describeErrors(check, value) }
}

function describeLimit(error: ValueError): string {
  const schema = error.schema as { maximum?: number; exclusiveMaximum?: number; maxLength?: number; maxItems?: number; maxProperties?: number; description?: string }
  const why = schema.description ? ` (${schema.description})` : ''
  const path = error.path || '/'
  const v = error.value
  switch (error.type) {
    case ValueErrorType.StringMaxLength:
      return `${path}: a text of ${(v as string).length} characters is longer than the limit of ${schema.maxLength}${why}`
    case ValueErrorType.ArrayMaxItems:
      return `${path}: ${(v as unknown[]).length} items are more than the limit of ${schema.maxItems}${why}`
    case ValueErrorType.ObjectMaxProperties:
      return `${path}: ${Object.keys(v as object).length} fields are more than the limit of ${schema.maxProperties}${why}`
    default:
      return `${path}: ${String(v).slice(0, 40)} is above the limit of ${schema.maximum ?? schema.exclusiveMaximum}${why}`
  }
}

/** Problems a schema's description explains better than the checker's own words (a pattern is no help to a reader). */
const DESCRIBED_ERRORS = new Set<ValueErrorType>([
  ValueErrorType.StringPattern, ValueErrorType.StringFormat, ValueErrorType.StringMinLength, ValueErrorType.IntegerMinimum, ValueErrorType.NumberMinimum,
])

function describeErrors(check: TypeCheck<TSchema>, value: unknown): string {
  const out: string[] = []
  for (const error of check.Errors(value)) {
    const description = (error.schema as { description?: string }).description
    out.push(`${error.path || '/'}: ${description && DESCRIBED_ERRORS.has(error.type) ? `expected ${description}` : error.message}`)
    if (out.length >= 3) break
  }
  return out.join('; ')
}
