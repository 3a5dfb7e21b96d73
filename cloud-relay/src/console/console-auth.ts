import { createHash, randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { Clock } from '#kernel/clock.js'
import { sameSecret } from '../broker/secrets.js'
import { AttemptLimiter } from './attempt-limiter.js'
import { ConsoleError } from './console-errors.js'
import type { ConsoleAccount, ConsoleRole, ConsoleStore } from './console-store.js'
import { hashPassword, needsRehash, verifyPassword } from './passwords.js'
import { SetupSecret } from './setup-secret.js'

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
  /** Sign-in attempts per address and per account per window (counted before the check; a success gives its own back). */
  maxFailures?: number
  failureWindowMs?: number
  /** Where the first-run setup secret is written (mode 0600) while no account exists. */
  setupSecretFile?: string
  /** The relay's bearer token, accepted in place of the setup secret. */
  apiToken?: string | undefined
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

/** Reads one cookie from a Cookie header; a value that is not valid percent-encoding reads as an empty one. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim())
      } catch {
        return ''
      }
    }
  }
  return undefined
}

/** A secret someone sent against the expected one, in constant time; either missing never matches. */
export function sameOptionalSecret(given: string | undefined, expected: string | undefined): boolean {
  return typeof given === 'string' && typeof expected === 'string' && sameSecret(given, expected)
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
  readonly #windowMs: number
  readonly #signIns: AttemptLimiter
  readonly #setupGuesses: AttemptLimiter
  readonly #setup: SetupSecret | undefined
  readonly #apiToken: string | undefined
  readonly #log: Logger
  #dummyHash: Promise<string> | undefined
  /** Account changes one at a time, so two parallel requests cannot disable the last two operators. */
  #accountChanges: Promise<unknown> = Promise.resolve()

  constructor(options: ConsoleAuthOptions, deps: ConsoleAuthDeps) {
    this.#deps = deps
    this.#ttlMs = options.sessionTtlMs ?? 12 * 3600_000
    this.#windowMs = options.failureWindowMs ?? 5 * 60_000
    const limits = { maxAttempts: options.maxFailures ?? 5, windowMs: this.#windowMs }
    this.#signIns = new AttemptLimiter(limits, deps.clock)
    this.#setupGuesses = new AttemptLimiter(limits, deps.clock)
    this.#setup = options.setupSecretFile ? new SetupSecret(options.setupSecretFile) : undefined
    this.#apiToken = options.apiToken
    this.#log = deps.logger.child({ component: 'console-auth' })
  }

  /**
   * At start: while no account exists, a new setup secret goes to the log and to its file; once one exists, a
   * leftover file is removed. Returns the secret (undefined when the console already has accounts).
   */
  async prepareFirstRun(consoleUrl: string): Promise<string | undefined> {
    if (!this.#setup) return undefined
    if (!(await this.needsFirstRun())) {
      await this.#setup.remove()
      return undefined
    }
    const setupSecret = await this.#setup.create()
    // The secret is in the message text, not in a field: the service logger redacts every field named like a secret.
    this.#log.warn({ file: this.#setup.file, console: consoleUrl },
      `no console account yet: open ${consoleUrl} and enter the setup secret ${setupSecret} to create the first operator (it is also in the file named here, readable by the relay's user only; the relay's API token works too)`)
    return setupSecret
  }

  /** The current first-run setup secret, while no account exists. */
  get setupSecret(): string | undefined {
    return this.#setup?.value
  }

  get sessionTtlMs(): number {
    return this.#ttlMs
  }

  async needsFirstRun(): Promise<boolean> {
    return (await this.#deps.store.countAccounts()) === 0
  }

  /**
   * The first visit creates the first operator with the setup secret (or the API token); afterwards this refuses
   * (409). Guesses at the secret are limited per address like sign-ins.
   */
  async createFirstAdmin(username: string, password: string, secret: string | undefined, address: string): Promise<ConsoleSession> {
    const taken = this.#alreadySetUp()
    if (!(await this.needsFirstRun())) throw taken
    const keys = [`address:${address}`]
    const retryAfterS = this.#setupGuesses.take(keys)
    if (retryAfterS !== undefined) {
      this.#log.warn({ address }, 'console setup secret guesses paused for an address')
      throw new ConsoleError('CONSOLE_RATE_LIMITED', `Too many wrong setup secrets from your address: wait ${Math.ceil(retryAfterS / 60)} minute(s) and try again with the secret from the relay's log.`, retryAfterS)
    }
    const where = this.#setup ? `the relay printed it in its log at start ("setupSecret") and wrote it to ${this.#setup.file}` : 'the relay printed it in its log at start'
    if (!secret) throw new ConsoleError('CONSOLE_SETUP_SECRET', `Creating the first administrator needs the setup secret: ${where}. The relay's API token (http.apiToken) works too.`)
    if (!sameOptionalSecret(secret, this.#setup?.value) && !sameOptionalSecret(secret, this.#apiToken)) {
      this.#log.warn({ address }, 'wrong console setup secret')
      throw new ConsoleError('CONSOLE_SETUP_SECRET', `That is not the setup secret of this relay start: ${where} (a restart makes a new one). Copy it again and try once more.`)
    }
    this.#checkNew(username, password)
    const account = await this.#deps.store.createAccount({ username, passwordHash: await hashPassword(password), role: 'operator', tenantId: null }, true)
    if (!account) throw taken
    this.#setupGuesses.succeeded(keys)
    await this.#setup?.remove()
    this.#log.info({ username, address }, 'first console operator created; the setup secret no longer works')
    return this.#newSession(account)
  }

  #alreadySetUp(): ConsoleError {
    return new ConsoleError('CONSOLE_CONFLICT', 'The console already has an administrator: sign in instead, or ask an operator for an account.')
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

  /**
   * Sign-in. The attempt is counted (per address and per account) before the password is checked, so parallel
   * guesses cannot all pass the limit while their checks run; a success gives its attempt back and clears only its
   * account's count.
   */
  async login(username: string, password: string, address: string): Promise<ConsoleSession> {
    const addressKey = `address:${address}`
    const accountKey = `account:${username.toLowerCase()}`
    const retryAfterS = this.#signIns.take([addressKey, accountKey])
    if (retryAfterS !== undefined) {
      this.#log.info({ address, username }, 'console sign-in paused')
      throw new ConsoleError('CONSOLE_RATE_LIMITED', `Too many failed sign-ins from your address or for this account: wait ${Math.ceil(retryAfterS / 60)} minute(s) and try again, or ask an operator to check your account.`, retryAfterS)
    }
    const account = await this.#deps.store.findByUsername(username)
    const ok = await this.#verify(password, account?.passwordHash)
    if (!account || !ok) {
      const left = Math.min(this.#signIns.left(addressKey), this.#signIns.left(accountKey))
      this.#log.info({ address, username, left }, 'console sign-in refused')
      throw new ConsoleError('CONSOLE_BAD_LOGIN', `The username or password is wrong: check both (passwords are case-sensitive) and try again${left > 0 ? ` (${left} more attempt${left === 1 ? '' : 's'} before a ${Math.round(this.#windowMs / 60_000)}-minute pause)` : ''}.`)
    }
    this.#signIns.succeeded([addressKey], [accountKey])
    if (account.disabled) {
      this.#log.info({ address, username }, 'console sign-in of a disabled account refused')
      throw new ConsoleError('CONSOLE_BAD_LOGIN', 'This account is disabled: ask an operator to enable it again.')
    }
    if (needsRehash(account.passwordHash)) {
      await this.#deps.store.setPasswordHash(account.id, await hashPassword(password))
      this.#log.info({ username }, 'console password rehashed with the current scrypt parameters')
    }
    const { passwordHash: _hash, ...plain } = account
    return this.#newSession(plain)
  }

  /** Checks a password; an unknown account costs the same scrypt as a wrong password, so timing does not tell which. */
  async #verify(password: string, stored: string | undefined): Promise<boolean> {
    this.#dummyHash ??= hashPassword(randomBytes(16).toString('hex'))
    const ok = await verifyPassword(password, stored ?? await this.#dummyHash)
    return ok && stored !== undefined
  }

  /** Sessions of live sockets still valid (not expired, signed out, or of a disabled or deleted account). */
  async validSessions(tokenHashes: readonly string[]): Promise<Set<string>> {
    return this.#deps.store.validSessions(tokenHashes, new Date(this.#deps.clock.now()))
  }

  /** An operator disables or enables an account; disabling ends its sessions. The last enabled operator stays. */
  async setDisabled(by: ConsoleAccount, id: number, disabled: boolean): Promise<ConsoleAccount> {
    return this.#serial(async () => {
      const account = await this.#account(by, id)
      if (disabled && !account.disabled) await this.#keepAnOperator(account, 'disable')
      await this.#deps.store.setDisabled(id, disabled)
      this.#log.info({ username: account.username, by: by.username }, disabled ? 'console account disabled' : 'console account enabled')
      return { ...account, disabled }
    })
  }

  /** An operator deletes an account and its sessions. The last enabled operator stays. */
  async deleteAccount(by: ConsoleAccount, id: number): Promise<ConsoleAccount> {
    return this.#serial(async () => {
      const account = await this.#account(by, id)
      if (!account.disabled) await this.#keepAnOperator(account, 'delete')
      await this.#deps.store.deleteAccount(id)
      this.#log.info({ username: account.username, by: by.username }, 'console account deleted')
      return account
    })
  }

  /** Anyone changes their own password with the current one; the account's other sessions end. */
  async changePassword(principal: ConsolePrincipal, currentPassword: string, newPassword: string): Promise<void> {
    const { account } = principal
    if (newPassword.length < MIN_PASSWORD_LENGTH) throw new ConsoleError('CONSOLE_INVALID', `Choose a new password of at least ${MIN_PASSWORD_LENGTH} characters.`)
    const accountKey = `account:${account.username.toLowerCase()}`
    const retryAfterS = this.#signIns.take([accountKey])
    if (retryAfterS !== undefined) throw new ConsoleError('CONSOLE_RATE_LIMITED', `Too many wrong passwords for this account: wait ${Math.ceil(retryAfterS / 60)} minute(s) and try again.`, retryAfterS)
    const stored = await this.#deps.store.findByUsername(account.username)
    if (!(await this.#verify(currentPassword, stored?.passwordHash))) {
      this.#log.info({ username: account.username }, 'console password change refused: wrong current password')
      throw new ConsoleError('CONSOLE_FORBIDDEN', 'The current password is wrong: type the password you signed in with (passwords are case-sensitive).')
    }
    this.#signIns.succeeded([], [accountKey])
    await this.#deps.store.setPasswordHash(account.id, await hashPassword(newPassword))
    const ended = await this.#deps.store.deleteSessionsOf(account.id, principal.tokenHash)
    this.#log.info({ username: account.username, endedSessions: ended.length }, 'console password changed; the account\'s other sessions ended')
  }

  async #account(by: ConsoleAccount, id: number): Promise<ConsoleAccount> {
    if (by.role !== 'operator') throw new ConsoleError('CONSOLE_FORBIDDEN', 'Only an operator manages console accounts: ask an operator.')
    const account = await this.#deps.store.findById(id)
    if (!account) throw new ConsoleError('CONSOLE_NOT_FOUND', `No console account has id ${id}: GET /api/v1/console/accounts lists them.`)
    return account
  }

  async #keepAnOperator(account: ConsoleAccount, what: 'disable' | 'delete'): Promise<void> {
    if (account.role === 'operator' && (await this.#deps.store.countEnabledOperators()) <= 1) {
      throw new ConsoleError('CONSOLE_CONFLICT', `${account.username} is the last enabled operator: create or enable another operator first, then ${what} this one.`)
    }
  }

  #serial<T>(change: () => Promise<T>): Promise<T> {
    const next = this.#accountChanges.then(change, change)
    this.#accountChanges = next.catch(() => undefined)
    return next
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
