import { createHash, randomBytes } from 'node:crypto'

/**
 * One-time enrollment codes: 16 characters of Crockford base32 (80 random bits), shown as XXXX-XXXX-XXXX-XXXX.
 * Typed in by a person, so input is case-insensitive, dashes and spaces are ignored, and the letters Crockford
 * reads as digits (I, L → 1; O → 0) are accepted. Only the SHA-256 of the normalised form is stored.
 */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
export const CODE_LENGTH = 16

export function generateCode(): string {
  const bytes = randomBytes(10)
  let bits = 0n
  for (const b of bytes) bits = (bits << 8n) | BigInt(b)
  let code = ''
  for (let i = CODE_LENGTH - 1; i >= 0; i--) code += ALPHABET[Number((bits >> BigInt(i * 5)) & 31n)]
  return formatCode(code)
}

/** XXXX-XXXX-XXXX-XXXX */
export function formatCode(normalised: string): string {
  return normalised.match(/.{1,4}/g)?.join('-') ?? normalised
}

/** The canonical 16 characters, or undefined when the input cannot be a code (wrong length or characters). */
export function normaliseCode(input: string): string | undefined {
  const cleaned = input.toUpperCase().replace(/[\s-]/g, '').replace(/[IL]/g, '1').replace(/O/g, '0')
  if (cleaned.length !== CODE_LENGTH) return undefined
  for (const ch of cleaned) if (!ALPHABET.includes(ch)) return undefined
  return cleaned
}

export function hashCode(normalised: string): string {
  return createHash('sha256').update(normalised, 'utf8').digest('hex')
}
