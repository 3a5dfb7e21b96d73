import { createHash, randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { Clock } from '../../../gateway/src/core/clock.js'
import { ConsoleError } from './console-errors.js'
import type { ConsoleAccount, ConsoleRole, ConsoleStore } from './console-store.js'
import { hashPassword, verifyPassword } from './passwords.js'

export const SESSION_COOKIE = 'pbx_console'
export const CSRF_HEADER = 'x-csrf-token'
export const MIN_PASSWORD_LENGTH = 10

/** Who made a console request: the account and the CSRF token its state changes must carry. */
export interface ConsolePrincipal {
  kind: 'session'
  account: ConsoleAccount
  csrfToken: string
  tokenHash: string
}

export interface ConsoleSession {
  token: string
  csrfToken: string
  account: ConsoleAccount
  expiresAt: Date
}

export interface ConsoleAuthOptions {
  sessionTtlMs?: number
  /** Failed sign-ins per address per window before 429. */
  maxFailures?: number
  failureWindowMs?: number
}

export interface ConsoleAuthDeps {
  store: ConsoleStore
  clock: Clock
  logger: Logger
  /** Tenant ids from the relay config: a tenant admin must be bound to one of them. */
  tenants: () => readonly string[]
}

const sha256 = (value: string) => createHash('sha256').update(value, 'utf8').digest('hex')
const USERNAME = /^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$/

/** Reads one cookie from a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim())
  }
  return undefined
}

export function sessionCookie(token: string, maxAgeS: number): string {
  return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=${maxAgeS}`
}

export const CLEARED_SESSION_COOKIE = `${SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0`

/**
 * Local console accounts: the first-run operator, sign-in with a per-address failure limit, sessions kept as
 * token hashes in the store (a stolen database holds no usable cookie), accounts an operator creates.
 */
export class ConsoleAuth {
  readonly #deps: ConsoleAuthDeps
  readonly #ttlMs: number
  readonly #maxFailures: number
  readonly #windowMs: number
  readonly #failures = new Map<string, number[]>()
  readonly #log: Logger
  #dummyHash: Promise<string> | undefined

  constructor(options: ConsoleAuthOptions, deps: ConsoleAuthDeps) {
    this.#deps = deps
    this.#ttlMs = options.sessionTtlMs ?? 12 * 3600_000
    this.#maxFailures = options.maxFailures ?? 5
    this.#windowMs = options.failureWindowMs ?? 5 * 60_000
    this.#log = deps.logger.child({ component: 'console-auth' })
  }

  get sessionTtlMs(): number {
    return this.#ttlMs
  }

  async needsFirstRun(): Promise<boolean> {
    return (await this.#deps.store.countAccounts()) === 0
  }

  /** The first visit creates the first operator; afterwards this refuses (409). */
  async createFirstAdmin(username: string, password: string): Promise<ConsoleSession> {
    this.#checkNew(username, password)
    const account = await this.#deps.store.createAccount({ username, passwordHash: await hashPassword(password), role: 'operator', tenantId: null }, true)
    if (!account) throw new ConsoleError('CONSOLE_CONFLICT', 'The console already has an administrator: sign in instead, or ask an operator for an account.')
    this.#log.info({ username }, 'first console operator created')
    return this.#newSession(account)
  }

  async createAccount(by: ConsoleAccount, a: { username: string; password: string; role: ConsoleRole; tenantId: string | null }): Promise<ConsoleAccount> {
    if (by.role !== 'operator') throw new ConsoleError('CONSOLE_FORBIDDEN', 'Only an operator can create console accounts.')
    this.#checkNew(a.username, a.password)
    if (a.role === 'tenant-admin' && (!a.tenantId || !this.#deps.tenants().includes(a.tenantId))) {
      throw new ConsoleError('CONSOLE_INVALID', `A tenant admin needs a tenant from the relay config (${this.#deps.tenants().join(', ') || 'none configured'}).`)
    }
    const account = await this.#deps.store.createAccount({ username: a.username, passwordHash: await hashPassword(a.password), role: a.role, tenantId: a.role === 'operator' ? null : a.tenantId })
    if (!account) throw new ConsoleError('CONSOLE_CONFLICT', `The username "${a.username}" is taken: choose another.`)
    this.#log.info({ username: a.username, role: a.role, tenantId: account.tenantId, by: by.username }, 'console account created')
    return account
  }

  async listAccounts(): Promise<ConsoleAccount[]> {
    return this.#deps.store.listAccounts()
  }

  async login(username: string, password: string, address: string): Promise<ConsoleSession> {
    const now = this.#deps.clock.now()
    const recent = (this.#failures.get(address) ?? []).filter((at) => at > now - this.#windowMs)
    if (recent.length >= this.#maxFailures) {
      const retryAfterS = Math.max(1, Math.ceil((recent[0]! + this.#windowMs - now) / 1000))
      throw new ConsoleError('CONSOLE_RATE_LIMITED', `Too many failed sign-ins from your address: wait ${Math.ceil(retryAfterS / 60)} minute(s) and try again, or ask an operator to check your account.`, retryAfterS)
    }
    const account = await this.#deps.store.findByUsername(username)
    // An unknown username costs the same scrypt as a wrong password, so timing does not tell which it was.
    this.#dummyHash ??= hashPassword(randomBytes(16).toString('hex'))
    const ok = await verifyPassword(password, account?.passwordHash ?? await this.#dummyHash)
    if (!account || !ok) {
      recent.push(now)
      this.#failures.set(address, recent)
      this.#log.info({ address, failures: recent.length }, 'console sign-in refused')
      const left = this.#maxFailures - recent.length
      throw new ConsoleError('CONSOLE_BAD_LOGIN', `The username or password is wrong: check both (passwords are case-sensitive) and try again${left > 0 ? ` (${left} more attempt${left === 1 ? '' : 's'} before a 5-minute pause)` : ''}.`)
    }
    this.#failures.delete(address)
    const { passwordHash: _hash, ...plain } = account
    return this.#newSession(plain)
  }

  async authenticate(cookieHeader: string | undefined): Promise<ConsolePrincipal | undefined> {
    const token = readCookie(cookieHeader, SESSION_COOKIE)
    if (!token || token.length > 200) return undefined
    const tokenHash = sha256(token)
    const found = await this.#deps.store.findSession(tokenHash, new Date(this.#deps.clock.now()))
    return found ? { kind: 'session', account: found.account, csrfToken: found.csrfToken, tokenHash } : undefined
  }

  async logout(principal: ConsolePrincipal): Promise<void> {
    await this.#deps.store.deleteSession(principal.tokenHash)
  }

  async #newSession(account: ConsoleAccount): Promise<ConsoleSession> {
    const now = this.#deps.clock.now()
    const token = randomBytes(32).toString('base64url')
    const csrfToken = randomBytes(24).toString('base64url')
    const expiresAt = new Date(now + this.#ttlMs)
    await this.#deps.store.deleteExpiredSessions(new Date(now))
    await this.#deps.store.createSession({ tokenHash: sha256(token), accountId: account.id, csrfToken, createdAt: new Date(now), expiresAt })
    return { token, csrfToken, account, expiresAt }
  }

  #checkNew(username: string, password: string): void {
    if (!USERNAME.test(username)) throw new ConsoleError('CONSOLE_INVALID', 'Choose a username of letters, digits and . _ @ + - (up to 64 characters, starting with a letter or digit).')
    if (password.length < MIN_PASSWORD_LENGTH) throw new ConsoleError('CONSOLE_INVALID', `Choose a password of at least ${MIN_PASSWORD_LENGTH} characters.`)
  }
}
