import { hashSecret, verifySecret } from '../broker/secrets.js'

/**
 * Console passwords: the same scrypt hashes as the broker's secrets (`scrypt$N$r$p$salt$hash`, N = 2^17, r = 8,
 * async and at most two at once, stored parameters bounded), of the NFC form so the same password typed on another
 * keyboard matches.
 */
export const hashPassword = (password: string): Promise<string> => hashSecret(password.normalize('NFC'))

export const verifyPassword = (password: string, stored: string): Promise<boolean> => verifySecret(password.normalize('NFC'), stored)

/** Parameters below today's (N = 2^17, r = 8), or a hash that does not parse: rehash at the next successful sign-in. */
export function needsRehash(stored: string): boolean {
  const [scheme, n, r] = stored.split('$')
  return scheme !== 'scrypt' || !(Number(n) >= 2 ** 17) || !(Number(r) >= 8)
}
