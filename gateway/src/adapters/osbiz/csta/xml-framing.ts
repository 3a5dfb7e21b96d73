import { CstaCodecError, type CstaDecodeError } from './codec.js'

/**
 * ECMA-323 Annex J.2 framing ("CSTA XML over TCP without SOAP"): every XML document is preceded by 8 bytes:
 *   0-1  0x00 0x00
 *   2-3  big-endian uint16: total frame length INCLUDING these 8 bytes
 *   4-7  the invokeID as 4 ASCII digits (%04d); switch events use 9999
 * Lengths are byte lengths of the UTF-8 body (known implementations count characters, which breaks on
 * non-ASCII names) and unsigned (reading them signed breaks above 32767).
 */

export const XML_HEADER_BYTES = 8
export const XML_MAX_FRAME_BYTES = 0xffff
export const XML_MAX_BODY_BYTES = XML_MAX_FRAME_BYTES - XML_HEADER_BYTES
export const EVENT_INVOKE_ID = 9999

const ASCII_0 = 0x30
const ASCII_9 = 0x39

export function encodeXmlFrame(invokeId: number, body: Buffer): Buffer {
  if (!Number.isInteger(invokeId) || invokeId < 0 || invokeId > 9999) {
    throw new CstaCodecError('FRAME_INVOKE_ID', `invoke id ${invokeId} does not fit 4 decimal digits`)
  }
  const total = body.length + XML_HEADER_BYTES
  if (total > XML_MAX_FRAME_BYTES) {
    throw new CstaCodecError('FRAME_TOO_LARGE', `message of ${body.length} bytes exceeds the ${XML_MAX_BODY_BYTES}-byte frame limit`)
  }
  const frame = Buffer.allocUnsafe(total)
  frame.writeUInt16BE(0, 0)
  frame.writeUInt16BE(total, 2)
  frame.write(String(invokeId).padStart(4, '0'), 4, 4, 'ascii')
  body.copy(frame, XML_HEADER_BYTES)
  return frame
}

export type XmlFrame =
  | { ok: true; invokeId: number; body: Buffer; bytes: number }
  | { ok: false; error: CstaDecodeError }

export interface XmlFrameReaderOptions {
  /** Frames longer than this are skipped (by their length, so the stream stays in sync). Default 65535. */
  maxFrameBytes?: number
}

/** Reassembles frames from a TCP byte stream: partial chunks, several frames per chunk. Never throws. */
export class XmlFrameReader {
  readonly #maxFrameBytes: number
  #buffer: Buffer = Buffer.alloc(0)
  /** Bytes still to discard from an oversized frame. */
  #skip = 0
  #inSync = true

  constructor(options: XmlFrameReaderOptions = {}) {
    this.#maxFrameBytes = options.maxFrameBytes ?? XML_MAX_FRAME_BYTES
  }

  get inSync(): boolean {
    return this.#inSync
  }

  get bufferedBytes(): number {
    return this.#buffer.length
  }

  push(chunk: Buffer): XmlFrame[] {
    if (!this.#inSync) return []
    let data = chunk
    if (this.#skip > 0) {
      const skipped = Math.min(this.#skip, data.length)
      this.#skip -= skipped
      data = data.subarray(skipped)
    }
    this.#buffer = this.#buffer.length === 0 ? data : Buffer.concat([this.#buffer, data])
    const frames: XmlFrame[] = []
    for (;;) {
      const frame = this.#next()
      if (frame === undefined) break
      frames.push(frame)
      if (!frame.ok && !frame.error.inSync) break
    }
    return frames
  }

  #next(): XmlFrame | undefined {
    const buffer = this.#buffer
    // Check the fixed bytes as soon as they arrive, so garbage is reported without waiting for 8 bytes.
    if ((buffer.length >= 1 && buffer[0] !== 0) || (buffer.length >= 2 && buffer[1] !== 0)) {
      return this.#lose('FRAME_HEADER', `frame does not start with 0x00 0x00 (got 0x${buffer.subarray(0, 2).toString('hex')})`)
    }
    if (buffer.length < 4) return undefined
    const length = buffer.readUInt16BE(2)
    if (length < XML_HEADER_BYTES) {
      return this.#lose('FRAME_LENGTH', `frame length ${length} is shorter than the ${XML_HEADER_BYTES}-byte header`)
    }
    if (length > this.#maxFrameBytes) {
      const available = Math.min(buffer.length, length)
      this.#skip = length - available
      this.#buffer = buffer.subarray(available)
      return {
        ok: false,
        error: { code: 'FRAME_TOO_LARGE', reason: `frame of ${length} bytes exceeds the limit of ${this.#maxFrameBytes}`, inSync: true, bytes: length },
      }
    }
    if (buffer.length < length) return undefined
    const header = buffer.subarray(4, XML_HEADER_BYTES)
    const body = buffer.subarray(XML_HEADER_BYTES, length)
    this.#buffer = buffer.subarray(length)
    if (!header.every((byte) => byte >= ASCII_0 && byte <= ASCII_9)) {
      return {
        ok: false,
        error: { code: 'FRAME_INVOKE_ID', reason: `invoke id field is not 4 ASCII digits (0x${header.toString('hex')})`, inSync: true, bytes: length },
      }
    }
    return { ok: true, invokeId: Number(header.toString('ascii')), body, bytes: length }
  }

  #lose(code: 'FRAME_HEADER' | 'FRAME_LENGTH', reason: string): XmlFrame {
    this.#inSync = false
    const discarded = this.#buffer.length
    this.#buffer = Buffer.alloc(0)
    return { ok: false, error: { code, reason, inSync: false, bytes: discarded } }
  }
}
