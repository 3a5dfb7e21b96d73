import type { SqlClient } from '../store/sql-client.js'

export type ConsoleRole = 'operator' | 'tenant-admin'

export interface ConsoleAccount {
  id: number
  username: string
  role: ConsoleRole
  /** The tenant a tenant admin manages; null for operators. */
  tenantId: string | null
  /** A disabled account cannot sign in and has no sessions (migration 9). */
  disabled: boolean
  createdAt: Date
}

export interface ConsoleSessionRow {
  account: ConsoleAccount
  csrfToken: string
  expiresAt: Date
}

type AccountRow = { id: number; username: string; password_hash: string; role: ConsoleRole; tenant_id: string | null; disabled_at: Date | string | null; created_at: Date | string }

const toAccount = (r: AccountRow): ConsoleAccount => ({ id: r.id, username: r.username, role: r.role, tenantId: r.tenant_id, disabled: r.disabled_at !== null && r.disabled_at !== undefined, createdAt: new Date(r.created_at) })

/** Console accounts and sessions in the relay's database (migrations 8 and 9). */
export class ConsoleStore {
  constructor(private readonly db: SqlClient) {}

  async countAccounts(): Promise<number> {
    const rows = await this.db.query<{ n: number | string }>('SELECT count(*)::int AS n FROM console_accounts')
    return Number(rows[0]?.n ?? 0)
  }

  /** Inserts an account; the first-run insert passes onlyIfEmpty so two racing first visits cannot both win. */
  async createAccount(a: { username: string; passwordHash: string; role: ConsoleRole; tenantId: string | null }, onlyIfEmpty = false): Promise<ConsoleAccount | undefined> {
    const rows = await this.db.query<AccountRow>(
      onlyIfEmpty
        ? 'INSERT INTO console_accounts (username, password_hash, role, tenant_id) SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM console_accounts) ON CONFLICT (username) DO NOTHING RETURNING *'
        : 'INSERT INTO console_accounts (username, password_hash, role, tenant_id) VALUES ($1, $2, $3, $4) ON CONFLICT (username) DO NOTHING RETURNING *',
      [a.username, a.passwordHash, a.role, a.tenantId],
    )
    return rows[0] ? toAccount(rows[0]) : undefined
  }

  async findByUsername(username: string): Promise<(ConsoleAccount & { passwordHash: string }) | undefined> {
    const rows = await this.db.query<AccountRow>('SELECT * FROM console_accounts WHERE username = $1', [username])
    const row = rows[0]
    return row ? { ...toAccount(row), passwordHash: row.password_hash } : undefined
  }

  async listAccounts(): Promise<ConsoleAccount[]> {
    return (await this.db.query<AccountRow>('SELECT * FROM console_accounts ORDER BY id')).map(toAccount)
  }

  async findById(id: number): Promise<ConsoleAccount | undefined> {
    const row = (await this.db.query<AccountRow>('SELECT * FROM console_accounts WHERE id = $1', [id]))[0]
    return row ? toAccount(row) : undefined
  }

  /** Sessions go with the account (ON DELETE CASCADE). */
  async deleteAccount(id: number): Promise<boolean> {
    return (await this.db.query('DELETE FROM console_accounts WHERE id = $1 RETURNING id', [id])).length > 0
  }

  /** Disabling also ends the account's sessions. */
  async setDisabled(id: number, disabled: boolean): Promise<boolean> {
    const rows = await this.db.query(`UPDATE console_accounts SET disabled_at = ${disabled ? 'COALESCE(disabled_at, now())' : 'NULL'} WHERE id = $1 RETURNING id`, [id])
    if (disabled) await this.db.query('DELETE FROM console_sessions WHERE account_id = $1', [id])
    return rows.length > 0
  }

  async countEnabledOperators(): Promise<number> {
    const rows = await this.db.query<{ n: number | string }>("SELECT count(*)::int AS n FROM console_accounts WHERE role = 'operator' AND disabled_at IS NULL")
    return Number(rows[0]?.n ?? 0)
  }

  async setPasswordHash(id: number, passwordHash: string): Promise<void> {
    await this.db.query('UPDATE console_accounts SET password_hash = $2 WHERE id = $1', [id, passwordHash])
  }

  /** Ends every session of an account but one (the one that changed the password); returns the ended token hashes. */
  async deleteSessionsOf(accountId: number, exceptTokenHash?: string): Promise<string[]> {
    const rows = await this.db.query<{ token_hash: string }>('DELETE FROM console_sessions WHERE account_id = $1 AND token_hash <> $2 RETURNING token_hash', [accountId, exceptTokenHash ?? ''])
    return rows.map((r) => r.token_hash)
  }

  /** Of these session token hashes, those still valid at `now` (live sockets are checked against it). */
  async validSessions(tokenHashes: readonly string[], now: Date): Promise<Set<string>> {
    if (tokenHashes.length === 0) return new Set()
    const rows = await this.db.query<{ token_hash: string }>(
      'SELECT s.token_hash FROM console_sessions s JOIN console_accounts a ON a.id = s.account_id WHERE s.token_hash = ANY($1::text[]) AND s.expires_at > $2 AND a.disabled_at IS NULL',
      [tokenHashes, now],
    )
    return new Set(rows.map((r) => r.token_hash))
  }

  async createSession(s: { tokenHash: string; accountId: number; csrfToken: string; createdAt: Date; expiresAt: Date }): Promise<void> {
    await this.db.query('INSERT INTO console_sessions (token_hash, account_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)', [s.tokenHash, s.accountId, s.csrfToken, s.createdAt, s.expiresAt])
  }

  async findSession(tokenHash: string, now: Date): Promise<ConsoleSessionRow | undefined> {
    const rows = await this.db.query<AccountRow & { csrf_token: string; expires_at: Date | string }>(
      'SELECT a.*, s.csrf_token, s.expires_at FROM console_sessions s JOIN console_accounts a ON a.id = s.account_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.disabled_at IS NULL',
      [tokenHash, now],
    )
    const row = rows[0]
    return row ? { account: toAccount(row), csrfToken: row.csrf_token, expiresAt: new Date(row.expires_at) } : undefined
  }

  async deleteSession(tokenHash: string): Promise<void> {
    await this.db.query('DELETE FROM console_sessions WHERE token_hash = $1', [tokenHash])
  }

  async deleteExpiredSessions(now: Date): Promise<void> {
    await this.db.query('DELETE FROM console_sessions WHERE expires_at <= $1', [now])
  }
}
