import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Clock } from '#kernel/clock.js'
import { writeFileAtomic } from '../identity/atomic-file.js'
import { AttemptLimiter, type AttemptLimits } from './attempt-limiter.js'
import { SetupCodeStore } from './setup-code.js'

export const MIN_PASSWORD_LENGTH = 10
/** scrypt cost for new hashes: N=2^17, r=8 needs 128 MiB per hash (hence maxmem below, and one hash at a time). */
export const SCRYPT_COST = { N: 2 ** 17, r: 8, p: 1 } as const
/** Older or tampered files: refuse costs that would take the box's memory. */
const MAX_N = 2 ** 20

function scryptAsync(password: string, salt: Buffer, length: number, cost: { N: number; r: number; p: number }): Promise<Buffer> {
  // Node refuses when 128 * N * r exceeds maxmem; leave headroom for its own bookkeeping.
  const maxmem = 128 * cost.N * cost.r * cost.p + 32 * 1024 * 1024
  return new Promise((resolve, reject) => scrypt(password, salt, length, { ...cost, maxmem }, (err, key) => (err ? reject(err) : resolve(key))))
}

export const LOGIN_LIMITS: AttemptLimits = { perKey: 5, total: 30, windowMs: 5 * 60_000 }
export const SETUP_CODE_LIMITS: AttemptLimits = { perKey: 5, total: 20, windowMs: 5 * 60_000 }

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
  constructor(readonly code: string, message: string, readonly status: number, readonly retryAfterS?: number, readonly field = 'password') {
    super(message)
    this.name = 'AuthError'
  }
}

/**
 * The setup page's single admin: the password (no default: the first visit sets it, with the box's setup code;
 * scrypt hash in `<dataDir>/web/admin.json`), server-side sessions with idle expiry, each with its CSRF token, and
 * attempt limits for sign-in and setup code per client address and for the whole box.
 */
export class AdminAuth {
  readonly #file: string
  readonly #clock: Clock
  readonly #idleMs: number
  readonly #sessions = new Map<string, Session>()
  readonly #sessionEnded = new Set<(id: string) => void>()
  readonly #logins: AttemptLimiter
  readonly #setupCodes: AttemptLimiter
  readonly #setupCode: SetupCodeStore
  #stored: StoredPassword | undefined | null = null // null: not read yet
  /** Setup runs one at a time: of racing first visits exactly one sets the password. */
  #setupQueue: Promise<unknown> = Promise.resolve()
  /** scrypt at N=2^17 takes 128 MiB: one hash at a time keeps a burst of sign-ins from exhausting the box. */
  #hashQueue: Promise<unknown> = Promise.resolve()

  constructor(options: { dataDir: string; idleMs: number; loginLimits?: AttemptLimits; setupCodeLimits?: AttemptLimits }, deps: { clock: Clock }) {
    this.#file = join(options.dataDir, 'web', 'admin.json')
    this.#idleMs = options.idleMs
    this.#clock = deps.clock
    this.#logins = new AttemptLimiter(options.loginLimits ?? LOGIN_LIMITS, deps)
    this.#setupCodes = new AttemptLimiter(options.setupCodeLimits ?? SETUP_CODE_LIMITS, deps)
    this.#setupCode = new SetupCodeStore(options.dataDir)
  }

  async hasPassword(): Promise<boolean> {
    return (await this.#load()) !== undefined
  }

  /** The setup code while the box is unclaimed (made and stored on first use); undefined once a password is set. */
  async pendingSetupCode(): Promise<string | undefined> {
    if (await this.hasPassword()) {
      await this.#setupCode.remove()
      return undefined
    }
    return this.#setupCode.ensure()
  }

  /** First visit only, with the box's setup code: refuses once a password exists. */
  setInitialPassword(password: string, setupCode: string | undefined, client: string): Promise<Session> {
    const run = this.#setupQueue.then(async () => {
      if (await this.hasPassword()) throw new AuthError('WEB_PASSWORD_EXISTS', 'The admin password is already set: sign in with it. Forgot it? Run factory-reset on the box.', 409)
      const attempt = this.#setupCodes.take(client)
      if (!attempt.allowed) {
        throw new AuthError('WEB_SETUP_CODE_RATE_LIMITED', `Too many wrong setup codes ${attempt.scope === 'key' ? 'from this computer' : 'on this box'}: wait ${Math.ceil(attempt.retryAfterS / 60)} minute(s), then type the code exactly as the box's console shows it.`, 429, attempt.retryAfterS, 'setupCode')
      }
      if (!setupCode || !(await this.#setupCode.matches(setupCode))) {
        throw new AuthError('WEB_SETUP_CODE', 'Wrong or missing setup code. It is printed on the box\'s console (a screen plugged into the box, or journalctl -u pbx-gateway) every time the box starts: type it as shown, e.g. 7KQX-M3DW-9TPA.', 403, undefined, 'setupCode')
      }
      attempt.release()
      await this.#save(password, { exclusive: true })
      await this.#setupCode.remove()
      return this.#newSession()
    })
    this.#setupQueue = run.catch(() => undefined)
    return run
  }

  async login(password: string, client: string): Promise<Session> {
    // Counted before the (slow) check, so parallel guesses cannot all slip past the limit.
    const attempt = this.#logins.take(client)
    if (!attempt.allowed) {
      throw new AuthError('WEB_LOGIN_RATE_LIMITED', `Too many wrong passwords ${attempt.scope === 'key' ? 'from this computer' : 'on this box'}: wait ${Math.ceil(attempt.retryAfterS / 60)} minute(s) and try again.`, 429, attempt.retryAfterS)
    }
    const stored = await this.#load()
    if (!stored) {
      attempt.release()
      throw new AuthError('WEB_NO_PASSWORD', 'No admin password is set yet: reload the page to set one.', 409)
    }
    if (!(await this.#verify(password, stored))) {
      throw new AuthError('WEB_WRONG_PASSWORD', 'Wrong password: check Caps Lock and try again (after 5 wrong passwords in 5 minutes this computer has to wait).', 401)
    }
    attempt.release()
    // Hashed with older settings: rehash now that we have the password.
    if (stored.N < SCRYPT_COST.N || stored.r < SCRYPT_COST.r) await this.#save(password, { exclusive: false })
    return this.#newSession()
  }

  /** The live session for a cookie value, its idle timer refreshed; undefined when absent or expired. */
  session(id: string | undefined): Session | undefined {
    const session = this.peek(id)
    if (session) session.lastSeen = this.#clock.now()
    return session
  }

  /** Like session(), without counting as activity (for the live log tail, which must not keep a session alive). */
  peek(id: string | undefined): Session | undefined {
    if (!id) return undefined
    const session = this.#sessions.get(id)
    if (!session) return undefined
    if (this.#clock.now() - session.lastSeen > this.#idleMs) {
      this.#end(id)
      return undefined
    }
    return session
  }

  /** Called with the id of each session that ends (sign-out, idle expiry, factory reset). */
  onSessionEnd(listener: (id: string) => void): () => void {
    this.#sessionEnded.add(listener)
    return () => this.#sessionEnded.delete(listener)
  }

  logout(id: string | undefined): void {
    if (id && this.#sessions.has(id)) this.#end(id)
  }

  /** Factory reset: every session ends, the password is forgotten (its file is wiped with the data folder). */
  reset(): void {
    for (const id of [...this.#sessions.keys()]) this.#end(id)
    this.#logins.clear()
    this.#setupCodes.clear()
    this.#stored = null
  }

  #end(id: string): void {
    this.#sessions.delete(id)
    for (const listener of this.#sessionEnded) listener(id)
  }

  #oneHashAtATime<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#hashQueue.then(work)
    this.#hashQueue = run.catch(() => undefined)
    return run
  }

  #verify(password: string, stored: StoredPassword): Promise<boolean> {
    return this.#oneHashAtATime(async () => {
      if (!(stored.N >= 2 && stored.N <= MAX_N && stored.r >= 1 && stored.r <= 32 && stored.p >= 1 && stored.p <= 4)) {
        throw new Error(`${this.#file} holds scrypt settings out of range (N=${stored.N}, r=${stored.r}, p=${stored.p}): run factory-reset on the box`)
      }
      const expected = Buffer.from(stored.hash, 'base64')
      const hash = await scryptAsync(password, Buffer.from(stored.salt, 'base64'), expected.length || 64, stored)
      return hash.length === expected.length && timingSafeEqual(hash, expected)
    })
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

  /** exclusive: the first password, created only if no file exists (never overwrites one another process set). */
  async #save(password: string, options: { exclusive: boolean }): Promise<void> {
    const salt = randomBytes(16)
    const hash = await this.#oneHashAtATime(() => scryptAsync(password, salt, 64, SCRYPT_COST))
    const stored: StoredPassword = {
      algorithm: 'scrypt', ...SCRYPT_COST,
      salt: salt.toString('base64'), hash: hash.toString('base64'), setAt: new Date(this.#clock.now()).toISOString(),
    }
    const text = JSON.stringify(stored, null, 2)
    await mkdir(dirname(this.#file), { recursive: true, mode: 0o700 })
    try {
      await writeFileAtomic(this.#file, text, 0o600, { exclusive: options.exclusive })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AuthError('WEB_PASSWORD_EXISTS', 'The admin password is already set: sign in with it. Forgot it? Run factory-reset on the box.', 409)
      throw err
    }
    this.#stored = stored
  }
}
