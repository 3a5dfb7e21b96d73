import { randomUUID } from 'node:crypto'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import type { TSchema } from '@sinclair/typebox'
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
  command: ['cmd.setDnd', 'cmd.resync', 'cmd.ping'],
}

export type DecodeErrorCode =
  | 'PROTO_TOPIC'
  | 'PROTO_TOO_LARGE'
  | 'PROTO_JSON'
  | 'PROTO_ENVELOPE'
  | 'PROTO_TYPE'
  | 'PROTO_DATA'
  | 'PROTO_GATEWAY_MISMATCH'

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
  if (payload.byteLength > MAX_PAYLOAD_BYTES) {
    return { ok: false, code: 'PROTO_TOO_LARGE', reason: `payload of ${payload.byteLength} bytes exceeds ${MAX_PAYLOAD_BYTES}` }
  }
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'))
  } catch (err) {
    return { ok: false, code: 'PROTO_JSON', reason: `payload is not JSON: ${(err as Error).message}` }
  }
  if (!headerCheck.Check(value)) return { ok: false, code: 'PROTO_ENVELOPE', reason: describeErrors(headerCheck, value) }
  const allowed = TYPES_BY_TOPIC[parsed.kind]
  if (!(allowed as readonly string[]).includes(value.type)) {
    return { ok: false, code: 'PROTO_TYPE', reason: `type "${value.type}" is not allowed on a ${parsed.kind} topic` }
  }
  const type = value.type as MessageType
  const check = dataChecks[type]
  if (!check.Check(value.data)) return { ok: false, code: 'PROTO_DATA', reason: `${type}: ${describeErrors(check, value.data)}` }
  if (value.gatewayId !== parsed.gatewayId) {
    return { ok: false, code: 'PROTO_GATEWAY_MISMATCH', reason: `envelope gatewayId ${value.gatewayId} differs from topic ${parsed.gatewayId}` }
  }
  if (parsed.kind === 'command' && type !== `cmd.${parsed.name}`) {
    return { ok: false, code: 'PROTO_TYPE', reason: `type "${type}" does not match command topic ${parsed.name}` }
  }
  if (parsed.kind === 'link' && (value.data as { connectorId: string }).connectorId !== parsed.connectorId) {
    return { ok: false, code: 'PROTO_DATA', reason: 'link connectorId differs from topic' }
  }
  return { ok: true, topic: parsed, envelope: value as AnyEnvelope }
}

function describeErrors(check: TypeCheck<TSchema>, value: unknown): string {
  const out: string[] = []
  for (const error of check.Errors(value)) {
    out.push(`${error.path || '/'}: ${error.message}`)
    if (out.length >= 3) break
  }
  return out.join('; ')
}
