import { randomBytes, scrypt, timingSafeEqual, createHash } from 'node:crypto'

/** scrypt cost for new hashes: 2^17 × r 8 is 128 MiB and about a third of a second per attempt, off the event loop. */
const N = 2 ** 17
const R = 8
const P = 1
const KEY_LENGTH = 32
/** Stored parameters beyond these are refused rather than computed (a corrupt or planted hash must not pin a core). */
const MAX_N = 2 ** 20
const MAX_R = 16
const MAX_P = 4
/** At most this many derivations at once: each needs 128 × N × r bytes of memory. */
const MAX_PARALLEL = 2

let running = 0
const waiting: Array<() => void> = []

async function derive(secret: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  if (running >= MAX_PARALLEL) await new Promise<void>((resolve) => waiting.push(resolve))
  running++
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      scrypt(secret, salt, KEY_LENGTH, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)))
    })
  } finally {
    running--
    waiting.shift()?.()
  }
}

/** scrypt password hashes: `scrypt$N$r$p$salt$hash` (base64); the parameters travel with the hash. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16)
  const hash = await derive(secret, salt, N, R, P)
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${hash.toString('base64')}`
}

/** Checks a secret against a stored hash with the hash's own parameters (older hashes used N = 16384). */
export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$')
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !hash) return false
  const [cost, blockSize, parallel] = [Number(n), Number(r), Number(p)]
  if (!Number.isInteger(cost) || cost < 2 || cost > MAX_N || (cost & (cost - 1)) !== 0) return false
  if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > MAX_R || !Number.isInteger(parallel) || parallel < 1 || parallel > MAX_P) return false
  const expected = Buffer.from(hash, 'base64')
  if (expected.length !== KEY_LENGTH) return false
  const actual = await derive(secret, Buffer.from(salt, 'base64'), cost, blockSize, parallel)
  return timingSafeEqual(actual, expected)
}

/** Compares two secrets in constant time (digests of equal length, so the length does not leak either). */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}
