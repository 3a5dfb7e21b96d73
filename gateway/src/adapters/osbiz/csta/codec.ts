import type { CstaMessage } from './model.js'

/**
 * THE CODEC BOUNDARY. The driver and the simulator see only this interface and the model. OSBiz documents
 * ECMA-285 BER (3-byte 0x26 header) on its CSTA port; we implement ECMA-323 XML (8-byte header) first. A BER
 * codec is added by implementing this interface and registering it in codec-registry.ts.
 */
export interface CstaWireCodec {
  readonly name: string
  /** Encodes one message as a complete frame (header included). Throws CstaCodecError (e.g. FRAME_TOO_LARGE). */
  encode(invokeId: number, message: CstaMessage): Buffer
  /** A fresh stateful decoder for one byte stream (one per TCP connection). */
  createDecoder(): CstaFrameDecoder
}

export interface CstaFrameDecoder {
  /** Feeds stream bytes; returns every frame completed by them, in stream order. Never throws. */
  push(chunk: Buffer): CstaDecoded[]
  /** False once the stream lost its framing; everything after that is discarded. The link must be reset. */
  readonly inSync: boolean
  /** Bytes waiting for the rest of their frame. */
  readonly bufferedBytes: number
}

export type CstaDecoded =
  | { ok: true; invokeId: number; message: CstaMessage; bytes: number }
  | { ok: false; error: CstaDecodeError }

export type CstaDecodeErrorCode =
  /** The header's fixed bytes are wrong: not a frame start; the stream is out of sync. */
  | 'FRAME_HEADER'
  /** The length field is impossible (shorter than the header); the stream is out of sync. */
  | 'FRAME_LENGTH'
  /** A message that cannot be represented in one frame (encode side), or exceeds the decoder's limit. */
  | 'FRAME_TOO_LARGE'
  /** The invoke id field is not what the framing demands; the frame is skipped by its length. */
  | 'FRAME_INVOKE_ID'
  /** The body is not text in a supported encoding. */
  | 'BODY_ENCODING'
  /** The body is not well-formed XML (or has several roots). */
  | 'XML_PARSE'
  /** The body carries a DTD; refused so entity expansion can never be abused. */
  | 'XML_DOCTYPE'
  /** A known message lacks a required field or has an invalid value. */
  | 'MESSAGE_FIELDS'

export interface CstaDecodeError {
  code: CstaDecodeErrorCode
  /** One line, for the log. */
  reason: string
  /** False when this error means the stream position is lost. */
  inSync: boolean
  invokeId?: number
  /** The root element (or operation) name, when it was readable. */
  element?: string
  /** Frame size in bytes, when known. */
  bytes?: number
}

export interface CstaCodecOptions {
  /**
   * The PBX's public number prefix (e.g. "+49301234"): stripped from E.164 and N<...> device ids so
   * "+49301234201" becomes extension "201".
   */
  devicePrefix?: string
}

/** Thrown by encode(); decoders report errors as values instead. */
export class CstaCodecError extends Error {
  constructor(readonly code: CstaDecodeErrorCode, message: string) {
    super(message)
    this.name = 'CstaCodecError'
  }
}
