import { crc32 } from 'node:zlib'

/**
 * On-disk framing of the outbox log. The file starts with MAGIC; then records, each
 *   u32 LE body length | u32 LE CRC32 of the body | body
 * A body is one operation:
 *   put:  u8 1 | f64 seq | f64 at | u8 flags | u16 key length | key | u16 topic length | topic | payload
 *   drop: u8 2 | f64 seq          (delivered, or dropped by a bound: the record with this seq is gone)
 * A record whose length runs past the end of the file or whose CRC does not match is where a power cut
 * stopped a write: reading stops there.
 */
export const MAGIC = Buffer.from('PBXOBX1\n', 'latin1')
export const FRAME_HEADER_BYTES = 8
/** A body larger than this cannot be ours (the protocol caps payloads at 1 MiB): treat as corruption. */
export const MAX_BODY_BYTES = 2 * 1024 * 1024

const OP_PUT = 1
const OP_DROP = 2
const FLAG_RETAIN = 1

export interface OutboxRecord {
  /** Coalescing key, e.g. `endpoint/<connector>/<endpoint>`. */
  key: string
  /** The envelope's seq: replay order, and what an ack names. */
  seq: number
  /** When it was put (ms since epoch, the box's clock): the age bound. */
  at: number
  topic: string
  retain: boolean
  /** The encoded envelope, exactly as it goes on the wire. */
  payload: Buffer
}

export type LogOperation = { op: 'put'; record: OutboxRecord } | { op: 'drop'; seq: number }

export function encodePut(record: OutboxRecord): Buffer {
  const key = Buffer.from(record.key, 'utf8')
  const topic = Buffer.from(record.topic, 'utf8')
  if (key.length > 0xffff || topic.length > 0xffff) throw new Error('outbox key or topic longer than 65535 bytes')
  const bodyLength = 1 + 8 + 8 + 1 + 2 + key.length + 2 + topic.length + record.payload.length
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bodyLength)
  let o = FRAME_HEADER_BYTES
  o = frame.writeUInt8(OP_PUT, o)
  o = frame.writeDoubleLE(record.seq, o)
  o = frame.writeDoubleLE(record.at, o)
  o = frame.writeUInt8(record.retain ? FLAG_RETAIN : 0, o)
  o = frame.writeUInt16LE(key.length, o)
  o += key.copy(frame, o)
  o = frame.writeUInt16LE(topic.length, o)
  o += topic.copy(frame, o)
  record.payload.copy(frame, o)
  return seal(frame, bodyLength)
}

export function encodeDrop(seq: number): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 9)
  frame.writeUInt8(OP_DROP, FRAME_HEADER_BYTES)
  frame.writeDoubleLE(seq, FRAME_HEADER_BYTES + 1)
  return seal(frame, 9)
}

function seal(frame: Buffer, bodyLength: number): Buffer {
  frame.writeUInt32LE(bodyLength, 0)
  frame.writeUInt32LE(crc32(frame.subarray(FRAME_HEADER_BYTES)), 4)
  return frame
}

export type ReadResult =
  | { ok: true; operation: LogOperation; next: number }
  | { ok: false; reason: string }
  | { ok: 'end' }

/** Reads the frame at `offset`. Never throws: a torn or corrupt frame is a reason. */
export function readFrame(file: Buffer, offset: number): ReadResult {
  if (offset === file.length) return { ok: 'end' }
  if (file.length - offset < FRAME_HEADER_BYTES) return { ok: false, reason: 'torn frame header' }
  const length = file.readUInt32LE(offset)
  const crc = file.readUInt32LE(offset + 4)
  if (length < 9 || length > MAX_BODY_BYTES) return { ok: false, reason: `impossible record length ${length}` }
  const start = offset + FRAME_HEADER_BYTES
  const end = start + length
  if (end > file.length) return { ok: false, reason: `torn record: ${length} bytes announced, ${file.length - start} present` }
  const body = file.subarray(start, end)
  if (crc32(body) !== crc) return { ok: false, reason: 'CRC mismatch' }
  const operation = decodeBody(body)
  if (!operation) return { ok: false, reason: 'undecodable record body' }
  return { ok: true, operation, next: end }
}

function decodeBody(body: Buffer): LogOperation | undefined {
  const op = body.readUInt8(0)
  if (op === OP_DROP) {
    if (body.length !== 9) return undefined
    return { op: 'drop', seq: body.readDoubleLE(1) }
  }
  if (op !== OP_PUT || body.length < 22) return undefined
  let o = 1
  const seq = body.readDoubleLE(o)
  o += 8
  const at = body.readDoubleLE(o)
  o += 8
  const flags = body.readUInt8(o)
  o += 1
  const keyLength = body.readUInt16LE(o)
  o += 2
  if (o + keyLength + 2 > body.length) return undefined
  const key = body.toString('utf8', o, o + keyLength)
  o += keyLength
  const topicLength = body.readUInt16LE(o)
  o += 2
  if (o + topicLength > body.length) return undefined
  const topic = body.toString('utf8', o, o + topicLength)
  o += topicLength
  if (!Number.isSafeInteger(seq) || !Number.isFinite(at)) return undefined
  // Copy: the file buffer is released after open.
  return { op: 'put', record: { key, seq, at, topic, retain: (flags & FLAG_RETAIN) !== 0, payload: Buffer.from(body.subarray(o)) } }
}

/** Bytes a live record occupies in the log. */
export function putFrameBytes(record: Pick<OutboxRecord, 'key' | 'topic' | 'payload'>): number {
  return FRAME_HEADER_BYTES + 22 + Buffer.byteLength(record.key) + Buffer.byteLength(record.topic) + record.payload.length
}
