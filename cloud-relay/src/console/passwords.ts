import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

// N = 2^17 (128 MiB of memory per hash with r = 8): the floor OWASP gives for scrypt. One hash takes a few hundred
// milliseconds of one libuv thread, never the event loop (scrypt is async; scryptSync is not used here).
const N = 2 ** 17
const R = 8
const P = 1
const KEY_LENGTH = 32
/** Hashes made with other parameters still verify (with their own); the largest N accepted from a stored hash. */
const MAX_N = 2 ** 20

function derive(password: string, salt: Buffer, options: { N: number; r: number; p: number }): Promise<Buffer> {
  // scrypt needs 128 × N × r bytes; maxmem leaves room above that.
  const scryptOptions: ScryptOptions = { ...options, maxmem: 256 * options.N * options.r }
  return new Promise((resolve, reject) => scrypt(password.normalize('NFC'), salt, KEY_LENGTH, scryptOptions, (err, key) => (err ? reject(err) : resolve(key))))
}

/** scrypt$N$r$p$salt$hash (base64): the parameters travel with the hash so they can be raised later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await derive(password, salt, { N, r: R, p: P })
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`
}

function parse(stored: string): { N: number; r: number; p: number; salt: Buffer; hash: Buffer } | undefined {
  const [scheme, n, r, p, salt, hash] = stored.split('$')
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !hash) return undefined
  const params = { N: Number(n), r: Number(r), p: Number(p) }
  if (!Number.isInteger(params.N) || params.N < 2 || params.N > MAX_N || !Number.isInteger(params.r) || params.r < 1 || params.r > 32 || params.p !== 1) return undefined
  return { ...params, salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') }
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parse(stored)
  if (!parsed) return false
  const key = await derive(password, parsed.salt, parsed)
  return key.length === parsed.hash.length && timingSafeEqual(key, parsed.hash)
}

/** A hash made with weaker parameters than today's: rehash it at the next successful sign-in. */
export function needsRehash(stored: string): boolean {
  const parsed = parse(stored)
  return !parsed || parsed.N < N || parsed.r < R
}
