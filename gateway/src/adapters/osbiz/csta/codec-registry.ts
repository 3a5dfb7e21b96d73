import type { CstaCodecOptions, CstaWireCodec } from './codec.js'
import { XmlCstaCodec } from './xml-codec.js'

/**
 * Wire codecs by name. The config's `codec` picks one; a BER codec (ECMA-285, 0x26 framing) registers here
 * under 'ber' without any change to the driver or adapter.
 */
export const CSTA_CODECS = {
  xml: (options: CstaCodecOptions): CstaWireCodec => new XmlCstaCodec(options),
} as const satisfies Record<string, (options: CstaCodecOptions) => CstaWireCodec>

export type CstaCodecName = keyof typeof CSTA_CODECS

export const CSTA_CODEC_NAMES = Object.keys(CSTA_CODECS) as CstaCodecName[]

export function createCstaCodec(name: CstaCodecName, options: CstaCodecOptions = {}): CstaWireCodec {
  return CSTA_CODECS[name](options)
}
