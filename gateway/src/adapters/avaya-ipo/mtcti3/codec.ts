import { messageType } from './schema.js'
import type { MtctiMessage, MtctiOutgoing } from './model.js'

/**
 * MTCTI-3 framing (research A.2 [C]): every WebSocket binary frame, in both directions, is the 4-byte
 * prefix 00 00 00 01 followed by one serialized `Message`. The prefix is a constant, not a length.
 */
export const FRAME_PREFIX = Buffer.from([0x00, 0x00, 0x00, 0x01])

export type MtctiDecodeErrorCode =
  /** 4 bytes or fewer: a prefix and nothing else (gomtcti3 rejects these too [C]). */
  | 'FRAME_TOO_SHORT'
  /** A prefix other than 00 00 00 01; other values are [U], so the frame is dropped. */
  | 'FRAME_PREFIX'
  /** The bytes after the prefix are not a valid `Message` (truncated, wrong wire type). */
  | 'PROTOBUF_DECODE'
  /** A valid `Message` whose oneof case we do not know (or none set). */
  | 'UNKNOWN_PAYLOAD'
  /** A text frame; MTCTI-3 uses binary frames only. */
  | 'TEXT_FRAME'

export interface MtctiDecodeError {
  code: MtctiDecodeErrorCode
  reason: string
  bytes: number
  /** Top-level field numbers found on the wire, for UNKNOWN_PAYLOAD. */
  fields?: number[]
  /** First bytes as hex, for FRAME_PREFIX. */
  prefix?: string
}

export type MtctiDecoded = { ok: true; message: MtctiMessage } | { ok: false; error: MtctiDecodeError }

const KNOWN_CASES = new Set(['response', 'generalcmd', 'subscribe', 'subscribecmd', 'subscribeend', 'subscribeterminated', 'generaldata', 'notify', 'notifyack'])

export function encodeFrame(message: MtctiOutgoing): Buffer {
  const type = messageType()
  const body = type.encode(type.fromObject(message)).finish()
  return Buffer.concat([FRAME_PREFIX, body])
}

export function decodeFrame(frame: Uint8Array): MtctiDecoded {
  const bytes = frame.byteLength
  if (bytes <= 4) {
    return { ok: false, error: { code: 'FRAME_TOO_SHORT', reason: `a frame of ${bytes} bytes carries no message (4-byte prefix plus protobuf expected)`, bytes } }
  }
  if (frame[0] !== 0 || frame[1] !== 0 || frame[2] !== 0 || frame[3] !== 1) {
    const prefix = Buffer.from(frame.subarray(0, 4)).toString('hex')
    return { ok: false, error: { code: 'FRAME_PREFIX', reason: `prefix ${prefix} instead of 00000001`, bytes, prefix } }
  }
  const body = frame.subarray(4)
  const type = messageType()
  let decoded: MtctiMessage
  try {
    // The schema is the validator: whatever decode returns has the declared field types, hence the cast.
    decoded = type.toObject(type.decode(body), { longs: Number, enums: Number, defaults: false, oneofs: true }) as MtctiMessage
  } catch (error) {
    return { ok: false, error: { code: 'PROTOBUF_DECODE', reason: error instanceof Error ? error.message : String(error), bytes } }
  }
  if (decoded.payload === undefined || !KNOWN_CASES.has(decoded.payload)) {
    const fields = topLevelFields(body)
    return {
      ok: false,
      error: { code: 'UNKNOWN_PAYLOAD', reason: `Message with no known payload (fields ${fields.length === 0 ? 'none' : fields.join(', ')})`, bytes, fields },
    }
  }
  return { ok: true, message: decoded }
}

/** Field numbers at the top level of a protobuf message, best effort (stops at the first thing it cannot read). */
export function topLevelFields(body: Uint8Array): number[] {
  const fields: number[] = []
  let offset = 0
  const varint = (): number | undefined => {
    let value = 0
    for (let shift = 0; shift < 35 && offset < body.length; shift += 7) {
      const byte = body[offset++] ?? 0
      value += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return value
    }
    return undefined
  }
  while (offset < body.length && fields.length < 32) {
    const tag = varint()
    if (tag === undefined) break
    const field = Math.floor(tag / 8)
    if (!fields.includes(field)) fields.push(field)
    switch (tag & 7) {
      case 0: if (varint() === undefined) return fields; break
      case 1: offset += 8; break
      case 2: { const length = varint(); if (length === undefined) return fields; offset += length; break }
      case 5: offset += 4; break
      default: return fields
    }
  }
  return fields
}

/** 16 raw GUID bytes → 8-4-4-4-12 hex, as a UUID formatter prints them (research A.4, A.8). */
export function formatGuid(guid: Uint8Array | undefined): string | undefined {
  if (guid === undefined || guid.byteLength !== 16) return undefined
  const hex = Buffer.from(guid).toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

export function parseGuid(text: string): Buffer {
  const hex = text.replaceAll('-', '')
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`not a GUID: ${text}`)
  return Buffer.from(hex, 'hex')
}
