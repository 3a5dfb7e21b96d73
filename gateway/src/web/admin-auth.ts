import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Clock } from '../core/clock.js'
import { writeFileAtomic } from '../identity/atomic-file.js'

export const MIN_PASSWORD_LENGTH = 10
const SCRYPT: ScryptOptions = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }

function scryptAsync(password: string, salt: Buffer, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, length, SCRYPT, (err, key) => (err ? reject(err) : resolve(key))))
}

interface StoredPassword {
  algorithm: 'scrypt'
  N: number
  r: number
  p: number
  salt: string
  hash: string
  setAt: string
}

export interface Session {
  id: string
  csrfToken: string
  createdAt: number
  lastSeen: number
}

export class AuthError extends Error {
  constructor(readonly code: string, message: string, readonly status: number, readonly retryAfterS?: number) {
    super(message)
    this.name = 'AuthError'
  }
}

/**
 * The setup page's single admin: the password (no default: the first visit sets it; scrypt hash in
 * `<dataDir>/web/admin.json`), server-side sessions with idle expiry, each with its CSRF token, and a login rate
 * limit per client address.
 */
export class AdminAuth {
  readonly #file: string
  readonly #clock: Clock
  readonly #idleMs: number
  readonly #sessions = new Map<string, Session>()
  readonly #failures = new Map<string, number[]>()
  readonly #maxFailures: number
  readonly #windowMs: number
  #stored: StoredPassword | undefined | null = null // null: not read yet

  constructor(options: { dataDir: string; idleMs: number; maxFailures?: number; windowMs?: number }, deps: { clock: Clock }) {
    this.#file = join(options.dataDir, 'web', 'admin.json')
    this.#idleMs = options.idleMs
    this.#maxFailures = options.maxFailures ?? 5
    this.#windowMs = options.windowMs ?? 5 * 60_000
    this.#clock = deps.clock
  }

  async hasPassword(): Promise<boolean> {
    return (await this.#load()) !== undefined
  }

  /** First visit only: refuses once a password exists. */
  async setInitialPassword(password: string): Promise<Session> {
    if (await this.hasPassword()) throw new AuthError('WEB_PASSWORD_EXISTS', 'The admin password is already set: sign in with it. Forgot it? Run factory-reset on the box.', 409)
    await this.#save(password)
    return this.#newSession()
  }

  async login(password: string, client: string): Promise<Session> {
    const now = this.#clock.now()
    const recent = (this.#failures.get(client) ?? []).filter((at) => now - at < this.#windowMs)
    this.#failures.set(client, recent)
    if (recent.length >= this.#maxFailures) {
      const retryAfterS = Math.max(1, Math.ceil(((recent[0] ?? now) + this.#windowMs - now) / 1000))
      throw new AuthError('WEB_LOGIN_RATE_LIMITED', `Too many wrong passwords from this computer: wait ${Math.ceil(retryAfterS / 60)} minute(s) and try again.`, 429, retryAfterS)
    }
    const stored = await this.#load()
    if (!stored) throw new AuthError('WEB_NO_PASSWORD', 'No admin password is set yet: reload the page to set one.', 409)
    const hash = await scryptAsync(password, Buffer.from(stored.salt, 'base64'), 64)
    if (!timingSafeEqual(hash, Buffer.from(stored.hash, 'base64'))) {
      recent.push(now)
      const left = this.#maxFailures - recent.length
      throw new AuthError('WEB_WRONG_PASSWORD', left > 0
        ? `Wrong password: check Caps Lock and try again (${left} attempt(s) left before a 5-minute wait).`
        : 'Wrong password: too many attempts, wait 5 minutes before trying again.', 401)
    }
    this.#failures.delete(client)
    return this.#newSession()
  }

  /** The live session for a cookie value, its idle timer refreshed; undefined when absent or expired. */
  session(id: string | undefined): Session | undefined {
    if (!id) return undefined
    const session = this.#sessions.get(id)
    if (!session) return undefined
    const now = this.#clock.now()
    if (now - session.lastSeen > this.#idleMs) {
      this.#sessions.delete(id)
      return undefined
    }
    session.lastSeen = now
    return session
  }

  logout(id: string | undefined): void {
    if (id) this.#sessions.delete(id)
  }

  /** Factory reset: every session ends, the password is forgotten (its file is wiped with the data folder). */
  reset(): void {
    this.#sessions.clear()
    this.#failures.clear()
    this.#stored = null
  }

  #newSession(): Session {
    const now = this.#clock.now()
    const session: Session = { id: randomBytes(32).toString('base64url'), csrfToken: randomBytes(32).toString('base64url'), createdAt: now, lastSeen: now }
    this.#sessions.set(session.id, session)
    return session
  }

  async #load(): Promise<StoredPassword | undefined> {
    if (this.#stored !== null) return this.#stored
    try {
      this.#stored = JSON.parse(await readFile(this.#file, 'utf8')) as StoredPassword
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      this.#stored = undefined
    }
    return this.#stored
  }

  async #save(password: string): Promise<void> {
    const salt = randomBytes(16)
    const hash = await scryptAsync(password, salt, 64)
    const stored: StoredPassword = {
      algorithm: 'scrypt', N: SCRYPT.N ?? 16384, r: SCRYPT.r ?? 8, p: SCRYPT.p ?? 1,
      salt: salt.toString('base64'), hash: hash.toString('base64'), setAt: new Date(this.#clock.now()).toISOString(),
    }
    await mkdir(join(this.#file, '..'), { recursive: true, mode: 0o700 })
    await writeFileAtomic(this.#file, JSON.stringify(stored, null, 2), 0o600)
    this.#stored = stored
  }
}
